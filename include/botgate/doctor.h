/*
 * `botgate doctor URL`: the Teams "Bot: service unavailable / 502" runbook, run against a
 * live endpoint, one line per step and a verdict naming the most likely cause.
 *
 *   step    what is checked                                      fails as
 *   ------  ---------------------------------------------------  -------------------------
 *   dns     the host name resolves                               dns
 *   tcp     a connection is made (each address, --connect-ms)    connect_refused/_timeout
 *   tls     handshake; chain against the system store or         tls_handshake,
 *           --ca-file; hostname; days to expiry                  cert_expired, ...
 *   http    POST {"type":"ping"}: status and time against        http_too_slow, http_5xx,
 *           --warn-ms (10 s) and --fail-ms (15 s)                ...
 *   token   with an app id and password: client-credentials      aad_bad_secret, ...
 *           token request to the login endpoint
 *   redis   with -c: reachable, stream length, pending, oldest   redis_unreachable
 *           pending age, dead letters, recent failure classes
 *
 * The verdict is the cause of the first failed step in that order (a later step cannot
 * be trusted when an earlier one failed: a refused connection also fails the ping), else
 * of the first warning, else "all checks pass". Exit status 0 when no step failed
 * (warnings included), 1 otherwise, 2 bad usage or configuration.
 *
 * This header has two halves. The pure half (policy/doctor.c) turns observations into a
 * status and a cause — no I/O, the current time a parameter — so that every rule is a unit
 * test. The command (proxy/doctor.c) makes the observations: plain sockets and OpenSSL for
 * dns, tcp and tls (so each failure is named precisely, with its own timeout), libcurl easy
 * for http and token, redis_sync.h for redis. A command line may block.
 */
#ifndef BOTGATE_DOCTOR_H
#define BOTGATE_DOCTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults of the budget flags: the Connector's own limits. */
#define BG_DOCTOR_WARN_MS 10000
#define BG_DOCTOR_FAIL_MS 15000
#define BG_DOCTOR_CONNECT_MS 5000
/* A serving certificate with fewer days left is a warning (as in botgate's certificate
 * watch). */
#define BG_DOCTOR_CERT_WARN_DAYS 30
/* The oldest pending entry older than this is a warning: the README's backlog alert. */
#define BG_DOCTOR_PENDING_WARN_S 300

typedef enum bg_doctor_status {
    BG_DOCTOR_SKIP = 0, /* not run: no input for it, or an earlier step failed */
    BG_DOCTOR_PASS,
    BG_DOCTOR_WARN,
    BG_DOCTOR_FAIL,
} bg_doctor_status;

/* The verdict's vocabulary: every cause has a code (JSON, tests) and a sentence. */
typedef enum bg_doctor_cause {
    BG_DOCTOR_OK = 0,
    /* dns, tcp */
    BG_DOCTOR_DNS,
    BG_DOCTOR_CONNECT_REFUSED,
    BG_DOCTOR_CONNECT_TIMEOUT,
    BG_DOCTOR_CONNECT_ERROR,
    /* tls */
    BG_DOCTOR_TLS_HANDSHAKE,
    BG_DOCTOR_CERT_EXPIRED,
    BG_DOCTOR_CERT_NOT_YET_VALID,
    BG_DOCTOR_CERT_SELF_SIGNED,
    BG_DOCTOR_CERT_UNTRUSTED,
    BG_DOCTOR_CERT_HOSTNAME,
    BG_DOCTOR_CERT_INVALID,
    BG_DOCTOR_CERT_EXPIRING, /* warning */
    /* http */
    BG_DOCTOR_HTTP_TOO_SLOW,
    BG_DOCTOR_HTTP_SLOW, /* warning */
    BG_DOCTOR_HTTP_NO_ANSWER,
    BG_DOCTOR_HTTP_5XX,
    BG_DOCTOR_HTTP_UNAUTHORIZED, /* warning: up, and checks tokens */
    BG_DOCTOR_HTTP_4XX,
    BG_DOCTOR_HTTP_REDIRECT,
    /* token */
    BG_DOCTOR_AAD_BAD_SECRET,
    BG_DOCTOR_AAD_SECRET_EXPIRED,
    BG_DOCTOR_AAD_APP_NOT_FOUND,
    BG_DOCTOR_AAD_TENANT_NOT_FOUND,
    BG_DOCTOR_AAD_INVALID_CLIENT,
    BG_DOCTOR_AAD_UNAUTHORIZED_CLIENT,
    BG_DOCTOR_AAD_INVALID_REQUEST,
    BG_DOCTOR_AAD_INVALID_SCOPE,
    BG_DOCTOR_AAD_OUTAGE,
    BG_DOCTOR_AAD_UNREACHABLE,
    BG_DOCTOR_AAD_ERROR,
    /* redis */
    BG_DOCTOR_REDIS_UNREACHABLE,
    BG_DOCTOR_QUEUE_BACKLOG,   /* warning */
    BG_DOCTOR_DEAD_LETTERS,    /* warning */
    BG_DOCTOR_RECENT_FAILURES, /* warning */
    BG_DOCTOR_CAUSE_COUNT
} bg_doctor_cause;

/* "connect_refused". Never NULL ("unknown" out of range). */
const char *bg_doctor_cause_code(bg_doctor_cause c);
/* The verdict sentence: "the bot is too slow: the Connector gives up at 15 s". */
const char *bg_doctor_cause_text(bg_doctor_cause c);
/* "pass", "warn", "fail", "skip". */
const char *bg_doctor_status_name(bg_doctor_status s);

/* One step's outcome: what the verdict is made of. */
typedef struct bg_doctor_result {
    bg_doctor_status status;
    bg_doctor_cause cause; /* BG_DOCTOR_OK unless status is WARN or FAIL */
} bg_doctor_result;

/* The cause of the first FAIL, else of the first WARN, else BG_DOCTOR_OK; *failed is set
 * when a step failed (the exit status). steps in runbook order. */
bg_doctor_cause bg_doctor_verdict(const bg_doctor_result *steps, size_t n, bool *failed);

/* tcp: a connect() that ended in errno err (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH...).
 * Refused and timed out are named; anything else is CONNECT_ERROR. */
bg_doctor_result bg_doctor_connect_result(int err);

/*
 * tls, chain verification: the X509_V_ERR_* codes OpenSSL reported during the handshake,
 * in its order (n 0: verified). The first one names the cause: OpenSSL reports trust
 * (self-signed, unknown issuer) before the hostname and the hostname before the dates, the
 * order in which an operator has to fix them.
 */
bg_doctor_result bg_doctor_tls_verify_result(const long *errors, size_t n);

/*
 * tls, expiry of the leaf: not_after_s in Unix seconds against now_s. *days_left gets
 * the whole days left, toward zero (-2: expired two whole days ago; 0 in the last day
 * before or after the end). Expired (not_after_s <= now_s): FAIL cert_expired;
 * under BG_DOCTOR_CERT_WARN_DAYS days: WARN cert_expiring; else PASS.
 */
bg_doctor_result bg_doctor_expiry_result(int64_t not_after_s, int64_t now_s, int64_t *days_left);

/*
 * http: the ping's outcome. answered: an HTTP status came (status); timed_out: no answer
 * within fail_ms (libcurl's deadline). elapsed_ms against warn_ms and fail_ms: over
 * fail_ms a failure whatever the status (the Connector has given up), over warn_ms a
 * warning. 2xx passes; 401/403 is a warning (the endpoint is up and checks tokens: a bot
 * without botgate, or policy.answer_ping off); 3xx, other 4xx and 5xx fail, as does a
 * connection closed without an answer.
 */
bg_doctor_result bg_doctor_http_result(bool answered, bool timed_out, long status,
                                       int64_t elapsed_ms, int64_t warn_ms, int64_t fail_ms);

/* The AADSTS number of an AAD error_description ("AADSTS7000215: Invalid client secret
 * ..."), or 0 when it names none. */
long bg_doctor_aadsts(const char *description);

/*
 * token: AAD's answer to the client-credentials request, explained. http_status the
 * answer's status (0: no answer at all: unreachable); error and description the JSON
 * members `error` and `error_description` (NULL when absent); aadsts the first of
 * `error_codes`, or 0 (then the description's AADSTS number is used). A 200 is a PASS
 * (whoever calls checked it holds an access_token). The AADSTS code is more precise than
 * the OAuth error and wins when known: 7000215 wrong secret, 7000222 expired secret,
 * 700016 app not in the tenant, 90002 tenant not found. Then the OAuth error:
 * invalid_client, unauthorized_client, invalid_request, invalid_scope,
 * temporarily_unavailable (an outage, as is any 5xx); anything else AAD_ERROR.
 */
bg_doctor_result bg_doctor_aad_result(long http_status, const char *error, const char *description,
                                      long aadsts);

/* What step redis saw, for bg_doctor_redis_result. */
typedef struct bg_doctor_queue {
    bool reachable;
    long long length, pending, dead_letters, recent_failures;
    int64_t oldest_pending_s;
} bg_doctor_queue;

/* redis: unreachable FAIL; then the first of: oldest pending over
 * BG_DOCTOR_PENDING_WARN_S (backlog), dead letters, recent failures, each a WARN; else
 * PASS. */
bg_doctor_result bg_doctor_redis_result(const bg_doctor_queue *q);

/* Runs `botgate doctor ARGS...` (argv: what follows "doctor"; envp: environ) and returns
 * the exit status. */
int bg_doctor_run(int argc, char **argv, char *const *envp);

#endif
