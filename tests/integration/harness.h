/*
 * The integration harness: real processes, real sockets, no mocks.
 *
 * A test program gets one temporary directory (bgt_env) that holds everything the run
 * makes: redis-server's socket and data, the generated certificate, botgate's
 * configuration files and the logs of every process. The directory is removed at the end,
 * after the logs were printed if a test failed (BOTGATE_KEEP_TMP=1 keeps it).
 *
 *   /tmp/botgate-it-XXXXXX/
 *     cert.pem key.pem                 bgt_tls_make_cert
 *     redis-<name>/redis.sock *.log    bgt_redis_start
 *     botgate-<name>.yaml .log         bgt_botgate_start
 *
 * Every child this harness starts is registered, so that bgt_env_finish() kills what a
 * failed test (cmocka longjmps out of it) left running, and every child gets
 * PR_SET_PDEATHSIG, so that a test killed by ctest's timeout leaves no server behind.
 *
 * Functions return 0 (or a value) on success and -1 on failure, after printing what went
 * wrong to stderr; tests wrap them in assert_int_equal(..., 0).
 */
#ifndef BOTGATE_TEST_HARNESS_H
#define BOTGATE_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "botgate/entry.h"
#include "exposition.h"
#include "mint.h"

#define BGT_PATH_MAX 256

/* ---- the run's temporary directory ---------------------------------------------------- */

typedef struct bgt_env {
    char dir[BGT_PATH_MAX];
} bgt_env;

/* Makes /tmp/botgate-it-XXXXXX and initialises libcurl. */
int bgt_env_init(bgt_env *env);

/* Kills the children still running, prints every *.log under the directory when `failed`,
 * then removes the directory (unless BOTGATE_KEEP_TMP is set). */
void bgt_env_finish(bgt_env *env, bool failed);

/* The end of a test program's main: bgt_env_finish, then, when failed is not 0, exit status
 * 1 at once (_exit): a failed assertion longjmps out of its test and strands the test's
 * buffers, and LeakSanitizer's exit check would only bury the real failure under their
 * report. Returns 0 (main's status) otherwise. */
int bgt_env_exit(bgt_env *env, int failed);

/* out = dir "/" name. Returns out. */
char *bgt_path(char *out, size_t cap, const char *dir, const char *name);
/* out = dir "/" the name that fmt and its arguments print ("botgate-%s.log", name). */
char *bgt_pathf(char *out, size_t cap, const char *dir, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes len bytes (len < 0: strlen) to path, mode 0600. */
int bgt_write_file(const char *path, const char *data, long len);

/* Reads a whole file into a NUL-terminated malloc'd buffer; NULL on failure. */
char *bgt_read_file(const char *path, size_t *len);

/* Prints a file to stderr between banners (at most its last `max_bytes`). */
void bgt_dump_file(const char *path, size_t max_bytes);

/* Microseconds since the Unix epoch (the clock botgate stamps entries with). */
int64_t bgt_wall_us(void);
/* Seconds since the Unix epoch (what a token's exp, nbf and iat count). */
int64_t bgt_wall_s(void);
/* Monotonic milliseconds, for deadlines. */
int64_t bgt_mono_ms(void);
/* Sleeps ms milliseconds: the step of a poll loop, never a wait for an event. */
void bgt_sleep_ms(int ms);

/* A TCP port that was free a moment ago on 127.0.0.1 (bind port 0, read it, close). */
int bgt_free_port(void);

/* A blocking TCP connection to 127.0.0.1:port; the fd, or -1. */
int bgt_tcp_connect(int port);

/* An id no other test (nor an earlier run within botgate's de-duplication TTL) uses:
 * prefix, then the pid, the time in µs and a counter. */
void bgt_fresh_id(char *out, size_t cap, const char *prefix);

/* ---- processes ------------------------------------------------------------------------ */

/* Starts argv[0] (looked up in PATH) with stdin from /dev/null, stdout appended to out_path
 * and stderr to err_path (NULL: to out_path too). BOTGATE_* and MicrosoftApp* variables are
 * removed from the child's environment so the caller's shell cannot change what a test
 * configures. Returns the pid or -1. */
pid_t bgt_spawn(char *const argv[], const char *out_path, const char *err_path);

/* More "NAME=value" variables (NULL-terminated; NULL, the default: none) that bgt_spawn
 * adds to the environment of every child started afterwards, after the scrub: how a test
 * gives a command line MicrosoftAppId and MicrosoftAppPassword. */
extern const char *const *bgt_spawn_env;

/* Waits up to timeout_ms for pid. Returns 0 and the wait status in *status, or -1 on
 * timeout (the child keeps running). */
int bgt_wait_pid(pid_t pid, int timeout_ms, int *status);

/* Describes a wait status: "exit status 2", "killed by signal 9". */
const char *bgt_describe_status(int status, char *buf, size_t cap);

/* Sends sig to pid and waits up to timeout_ms; then SIGKILL. Returns the wait status. */
int bgt_kill_wait(pid_t pid, int sig, int timeout_ms);

/* ---- TLS -------------------------------------------------------------------------------- */

/* Writes a self-signed EC P-256 certificate for DNS:localhost and IP:127.0.0.1 (valid from
 * an hour ago for 30 days, CA:TRUE so that it can serve as its own trust anchor) and its key
 * to dir/cert.pem and dir/key.pem; the paths go to cert_out and key_out. */
int bgt_tls_make_cert(const char *dir, char *cert_out, char *key_out);
/* The same, valid for `days`, written to dir/<prefix>cert.pem and dir/<prefix>key.pem: a
 * second and third certificate in one directory (each with its own key and serial). */
int bgt_tls_make_cert_ex(const char *dir, const char *prefix, long days, char *cert_out,
                         char *key_out);

/* ---- redis-server ----------------------------------------------------------------------- */

typedef struct bgt_redis_opts {
    bool aof;           /* --appendonly yes --appendfsync always (default: appendonly no) */
    bool debug_command; /* --enable-debug-command local, for DEBUG SLEEP */
    int port;           /* also listen on 127.0.0.1:port (0: unix socket only) */
    int replicaof_port; /* --replicaof 127.0.0.1 port (0: a master) */
} bgt_redis_opts;

typedef struct bgt_redis {
    pid_t pid; /* 0 when stopped */
    bgt_redis_opts opts;
    char dir[BGT_PATH_MAX];     /* --dir */
    char sock[BGT_PATH_MAX];    /* --unixsocket */
    char url[BGT_PATH_MAX + 8]; /* unix:///...: what botgate's redis.url takes */
    char log[BGT_PATH_MAX];
    redisContext *ctx; /* the harness's own connection, made on first use */
} bgt_redis;

/* Starts redis-server in env_dir/redis-<name> on a unix socket only (--port 0) and waits
 * until it answers PING (10 s). opts may be NULL. */
int bgt_redis_start(bgt_redis *r, const char *env_dir, const char *name,
                    const bgt_redis_opts *opts);

/* SHUTDOWN NOSAVE, then waitpid; SIGTERM and SIGKILL if it lingers. A stopped Redis is a
 * no-op. Returns 0 once the process is gone. */
int bgt_redis_stop(bgt_redis *r);

/* Starts the same server again on the same socket and directory, and waits for PING. */
int bgt_redis_restart(bgt_redis *r);

/* SIGKILL (a crash: nothing is flushed) and waitpid; a stopped one is a no-op. */
void bgt_redis_kill(bgt_redis *r);

/* Starts a Redis Sentinel (redis-server --sentinel) in env_dir/sentinel-<name>, listening on
 * 127.0.0.1:port (r->opts.port; no unix socket), monitoring master_name at
 * 127.0.0.1:master_port with quorum 2, down-after-milliseconds down_after_ms and
 * failover-timeout failover_timeout_ms, and waits until it answers PING (10 s). Stop it with
 * bgt_redis_kill. */
int bgt_sentinel_start(bgt_redis *r, const char *env_dir, const char *name, int port,
                       const char *master_name, int master_port, int down_after_ms,
                       int failover_timeout_ms);

/* A command to 127.0.0.1:port on a connection of its own (2 s timeout): for sentinels and
 * for a server's TCP port. The reply or NULL; the caller frees it. */
redisReply *bgt_redis_tcp_cmd(int port, const char *fmt, ...);

struct CMUnitTest;

/* The whole main of a test program whose tests share one redis-server ("main"), without
 * group setup: bgt_env_init, the redis, the n tests as group, both stopped. Returns the
 * program's exit status (bgt_env_exit's; 1 when env cannot be set up). */
int bgt_main_with_redis(bgt_env *env, bgt_redis *redis, const char *group,
                        const struct CMUnitTest *tests, size_t n);

/* Connects (timeout_ms for connect and every reply). The caller frees it. */
redisContext *bgt_redis_connect(const char *sock, int timeout_ms);

/* Runs a command on the harness's connection, reconnecting once if the server was
 * restarted. Returns the reply (the caller frees it) or NULL. */
redisReply *bgt_redis_cmd(bgt_redis *r, const char *fmt, ...);

/* XLEN stream, or -1. */
long long bgt_redis_xlen(bgt_redis *r, const char *stream);

/* A string reply's bytes into out, as text cut to cap. */
void bgt_reply_copy(char *out, size_t cap, const redisReply *v);

/* One stream entry as XRANGE returns it. */
typedef struct bgt_stream_entry {
    char *id;        /* "1700000000000-0" */
    size_t n_fields; /* field-value pairs in the entry */
    char *entry;     /* the value of the field named "entry"; NULL if there is none */
    size_t entry_len;
} bgt_stream_entry;

/* XRANGE stream - +: every entry, oldest first (*out may be NULL when *n is 0). */
int bgt_redis_xrange(bgt_redis *r, const char *stream, bgt_stream_entry **out, size_t *n);
void bgt_stream_entries_free(bgt_stream_entry *v, size_t n);

/* ---- queue entries ---------------------------------------------------------------------- */

/* s equals the NUL-terminated string want (a NULL want matches an absent slice only). */
bool bgt_slice_eq(bg_slice s, const char *want);

/* The value of the header named `name` (lower case) in e, or an absent slice. */
bg_slice bgt_entry_header(const bg_entry *e, const char *name);

/* A Bot Framework message activity from Microsoft Teams, as the Connector POSTs it, padded
 * with text to about `size` bytes. id or conversation_id NULL = the field is left out.
 * malloc'd; the caller frees it. */
char *bgt_teams_message(const char *id, const char *conversation_id, const char *service_url,
                        size_t size);

/* ---- HTTP client (libcurl easy, one connection per request) ----------------------------- */

enum { BGT_HTTP_1_1 = 1, BGT_HTTP_2 = 2 };

typedef struct bgt_http_req {
    const char *method;         /* "GET", "POST", anything else as a custom method */
    const char *url;            /* http:// or https:// */
    const char *const *headers; /* NULL-terminated "Name: value"; may be NULL */
    const char *body;           /* POST body, may contain NUL bytes */
    size_t body_len;
    int version;         /* BGT_HTTP_1_1 or BGT_HTTP_2 (h2 via ALPN over TLS) */
    const char *ca_file; /* trust anchor for https:// */
    bool chunked;        /* HTTP/1.1: Transfer-Encoding: chunked, no Content-Length */
    long timeout_ms;     /* whole request; 0 = 15000 */
} bgt_http_req;

typedef struct bgt_http_resp {
    int curl_code; /* CURLE_OK when a response came back */
    char curl_error[256];
    long status;       /* 0 when no response */
    long http_version; /* CURLINFO_HTTP_VERSION: CURL_HTTP_VERSION_1_1, _2_0 */
    char *body;        /* NUL-terminated, malloc'd */
    size_t body_len;
    char *headers; /* the final response's header block, NUL-terminated */
    size_t headers_len;
    int64_t elapsed_ms;
} bgt_http_resp;

/* Sends req. The harness sends exactly the headers given: curl's own Content-Type for POST
 * and its Expect: 100-continue are suppressed unless the caller sets them. Redirects are
 * never followed. Returns 0 when a response arrived, -1 on a transport error (reset,
 * closed, timeout: resp->curl_code says which). resp is filled either way. */
int bgt_http_request(const bgt_http_req *req, bgt_http_resp *resp);

/* Shorthands over bgt_http_request. */
int bgt_http_get(const char *url, int version, const char *ca_file, bgt_http_resp *resp);
int bgt_http_post(const char *url, int version, const char *ca_file, const char *const *headers,
                  const char *body, size_t len, bgt_http_resp *resp);

/* The value of the first response header `name` (case-insensitive), copied into buf
 * without surrounding blanks; NULL if absent. */
const char *bgt_http_header(const bgt_http_resp *resp, const char *name, char *buf, size_t cap);

/* The `code` of a botgate JSON error body {"error":{"code":...,"message":...}} copied into
 * buf; NULL if the body is not that shape (message must be a non-empty string too). */
const char *bgt_http_error_code(const bgt_http_resp *resp, char *buf, size_t cap);

void bgt_http_resp_free(bgt_http_resp *resp);

/* GET base/metrics (base "http://host:port"): 200, parsed into x, which the caller x_frees;
 * the test fails (cmocka) otherwise, with the body printed when it does not parse. */
void bgt_scrape(const char *base, xpo *x);

/* out = base path ("https://127.0.0.1:8443" "/healthz"). Returns out. */
char *bgt_url(char *out, size_t cap, const char *base, const char *path);

/* Prints resp to stderr after `what`: curl's code and error, status, HTTP version, time,
 * the header block and (at most 2000 bytes of) the body. */
void bgt_http_resp_print(const char *what, const bgt_http_resp *resp);

/* Polls GET base+path (HTTP/1.1, ca_file the trust anchor for https) every 50 ms until it
 * answers `status` or timeout_ms passes. *last receives the last status, or -curl_code
 * when no answer came. */
bool bgt_poll_status(const char *base, const char *path, const char *ca_file, long status,
                     int timeout_ms, long *last);

/* ---- assertions (cmocka): these fail the running test, at the caller's line ------------- */

/* resp came back with `status`; otherwise prints it and fails. */
#define bgt_expect_status(resp, status) bgt_expect_status_at((resp), (status), __FILE__, __LINE__)
/* ...and its body is botgate's JSON error with `code` (error.c's table). */
#define bgt_expect_error(resp, status, code)                                                       \
    bgt_expect_error_at((resp), (status), (code), __FILE__, __LINE__)

void bgt_expect_status_at(const bgt_http_resp *resp, long status, const char *file, int line);
void bgt_expect_error_at(const bgt_http_resp *resp, long status, const char *code, const char *file,
                         int line);

/* ---- botgate ------------------------------------------------------------------------------ */

/* What bgt_config_yaml writes: a configuration for the tests, everything else default. */
typedef struct bgt_botgate_conf {
    int tls_port;          /* 0 = no TLS listener */
    int plain_port;        /* 0 = no plain listener */
    const char *cert_file; /* tls.cert_file, tls.key_file */
    const char *key_file;
    const char *redis_url; /* "" = botgate's private redis-server */
    int redis_timeout_ms;  /* 0 = 2000 */
    const char *state_dir;
    const char *log_level;   /* NULL = info */
    const char *log_access;  /* log.access; NULL = off */
    const char *log_extra;   /* more "key: value" lines inside log:, already indented */
    const char *redis_extra; /* more "key: value" lines inside redis:, already indented */
    const char *relay;       /* the lines inside relay:, indented; NULL = listen: "" (off) */
    const char *admin;       /* admin.listen; NULL = "" (off) */
    const char *extra;       /* more top-level YAML appended verbatim (policy:, auth:, ...) */
} bgt_botgate_conf;

/* Renders c as YAML (block style) into a malloc'd string. */
char *bgt_config_yaml(const bgt_botgate_conf *c);

typedef struct bgt_botgate {
    pid_t pid; /* 0 when not running */
    char config[BGT_PATH_MAX];
    char log[BGT_PATH_MAX];
    char health_url[BGT_PATH_MAX]; /* GET here answers 200 once botgate serves */
    char ca_file[BGT_PATH_MAX];
} bgt_botgate;

/* Writes yaml to env_dir/botgate-<name>.yaml, runs `$BOTGATE_BIN serve -c FILE` with its
 * output in env_dir/botgate-<name>.log, and waits (20 s: the binary may run under ASan)
 * until GET health_url answers 200. ca_file is the trust anchor for an https health_url.
 * On failure prints the log and leaves b stopped. */
/* `serve --role <this>` for every botgate started afterwards; NULL (the default) = all.
 * Tests of the ingress alone set "ingress", so that no dispatcher consumes the stream
 * they inspect. */
extern const char *bgt_botgate_role;

int bgt_botgate_start(bgt_botgate *b, const char *env_dir, const char *name, const char *yaml,
                      const char *health_url, const char *ca_file);

/* bgt_botgate_start with the YAML of c (bgt_config_yaml), without a CA file: the tests
 * that build a configuration and start it in one step. */
int bgt_botgate_start_conf(bgt_botgate *b, const char *env_dir, const char *name,
                           const bgt_botgate_conf *c, const char *health_url);

/* SIGTERM and waitpid (40 s). Returns 0 only when botgate exited with status 0: under ASan
 * a leak makes the status non-zero, so this is how a leak fails a test. Otherwise prints
 * the status and the log and returns -1. */
int bgt_botgate_stop(bgt_botgate *b);

/* SIGKILL without judgement: for teardowns after a test already failed. */
void bgt_botgate_kill(bgt_botgate *b);

/* Runs `$BOTGATE_BIN args...` (args NULL-terminated) expecting it to exit by itself
 * within timeout_ms. Its stdout goes to log_path, its stderr to log_path + ".stderr.log";
 * *err_out (malloc'd; may be NULL) receives the stderr text. Returns the exit status
 * (0..255), 128+signal when a signal killed it, or -1 when it had to be killed after the
 * timeout. */
int bgt_botgate_run(const char *const *args, const char *log_path, int timeout_ms, char **err_out);

/* bgt_botgate_run for a command line under test: the log is env_dir/<prefix>-<n>.log (n
 * counting up), and *out and *err (malloc'd, NUL-terminated, never NULL) receive its
 * stdout and stderr. Returns the exit status as bgt_botgate_run. */
int bgt_botgate_run_output(const char *const *args, const char *env_dir, const char *prefix,
                           int timeout_ms, char **out, char **err);

/* BOTGATE_BIN, or NULL (printed) when unset. */
const char *bgt_botgate_bin(void);

/* Polls path (a log) until a line contains every one of the NUL-terminated needles
 * (case-insensitively) or timeout_ms passes. Returns true when found. */
bool bgt_log_has_line(const char *path, const char *const *needles, int timeout_ms);

/* ---- /proc --------------------------------------------------------------------------------- */

/* Number of live processes named `comm` (e.g. "redis-server") whose working directory or
 * command line mentions path. */
int bgt_count_procs_using(const char *comm, const char *path);

/* ---- the fake Connector (tests/tools/fake_connector; see tests/tools/README.md) ------------ */

/* What the tool's documents and tokens say unless told otherwise. */
#define BGT_CONNECTOR_ISSUER "https://api.botframework.com"
#define BGT_CONNECTOR_SERVICE_URL "https://smba.trafficmanager.net/teams/"
/* The channels keys/key-1 is endorsed for when the tool makes it. */
#define BGT_CONNECTOR_CHANNELS "msteams,webchat,directline,test"

/* Starts `$BOTGATE_TOOLS_DIR/fake_connector serve --dir dir --port *port` (*port 0: the
 * tool picks a free port, written back to *port; pass the old port to restart in place),
 * its output in dir/fake_connector.log, and waits (20 s: the tool may run under ASan) for
 * dir/ready and a 200 from GET /stats (which answers even when dir/down exists, so that a
 * connector can start down, and is not counted: every count starts at 0). dir is made if
 * missing;
 * on first use the tool makes dir/ca.pem (botgate's auth.ca_file), keys/key-1 (endorsed for
 * BGT_CONNECTOR_CHANNELS) and emulator-keys/emulator-key-1 (no endorsements). Put dir under
 * the bgt_env directory so that its log is printed when a test fails. At most 8 run at once;
 * the last one started is the one bgt_connector_stats() asks. */
int bgt_connector_start(const char *dir, int *port);

/* SIGTERM and waitpid (20 s). Returns 0 only when the tool exited with status 0 (under ASan
 * a leak makes it non-zero); otherwise prints the status and the log and returns -1. The
 * directory and its keys stay: a restart on the same dir serves the same CA and keys. */
int bgt_connector_stop(const char *dir);

/* SIGKILL without judgement (teardown after a failure). */
void bgt_connector_kill(const char *dir);

/* For a test's connector directory that is "" when none runs: bgt_connector_stop's
 * result (0 when none runs) and bgt_connector_kill, each leaving dir "". */
int bgt_connector_stop_clear(char *dir);
void bgt_connector_kill_clear(char *dir);

/* out = "https://127.0.0.1:<port><path>", e.g. path "/v1/.well-known/openidconfiguration",
 * "/emulator/.well-known/openid-configuration". Returns out. */
char *bgt_connector_url(char *out, size_t cap, int port, const char *path);

/* The auth: section of a botgate configuration that trusts the connector in dir at port:
 * app_id, openid_metadata_url, emulator_openid_metadata_url, ca_file, then `more`
 * ("  key: value\n" lines, already indented; may be NULL). malloc'd; the caller frees it.
 * Goes into bgt_botgate_conf.extra. */
char *bgt_connector_auth_yaml(const char *dir, int port, const char *app_id, const char *more);

/* Requests the last connector started has received for path (without the query), e.g.
 * "/v1/keys", counting every answer (200, 503 while down, 404); 0 for a path never asked
 * for, -1 when /stats cannot be read. /stats itself is never counted. */
long bgt_connector_stats(const char *path);
/* The same for the connector of dir. */
long bgt_connector_stats_of(const char *dir, const char *path);
/* Zeroes the last started connector's counters. */
int bgt_connector_stats_reset(void);

/* Outage and latency, toggled without a restart: down makes every request but /stats answer
 * 503 (dir/down); slow_ms > 0 holds every answer that long (dir/slow_ms), 0 ends it. */
int bgt_connector_set_down(const char *dir, bool down);
int bgt_connector_set_slow(const char *dir, int slow_ms);

/* Key sets: set is "keys" (channel tokens, /v1/keys; NULL means this) or "emulator-keys"
 * (/emulator/keys). Adds a fresh RSA-2048 key <set>/<kid>.pem, visible in the next JWKS
 * answer; endorse is a comma-separated channel list ("" = an empty list, NULL = no
 * "endorsements" member at all). The endorsements are written before the key, and both
 * through rename(), so that the server never serves half a key. */
int bgt_connector_add_key(const char *dir, const char *set, const char *kid, const char *endorse);
/* Removes <set>/<kid>.pem and its endorsements. */
int bgt_connector_drop_key(const char *dir, const char *set, const char *kid);
/* add_key(new_kid, endorse) then, when drop_kid is not NULL, drop_key(drop_kid), in "keys". */
int bgt_connector_rotate(const char *dir, const char *new_kid, const char *drop_kid,
                         const char *endorse);

/* A channel token as the Connector sends it, minted in-process (no subprocess) with
 * dir/keys/<kid>.pem (kid NULL: "key-1"): RS256, header kid; iss BGT_CONNECTOR_ISSUER, aud
 * app_id, serviceurl service_url (NULL: left out), nbf now-60, iat now, exp now+exp_in_s
 * (negative: already expired), and a jti unique to the call, so that two tokens are never
 * the same bytes. malloc'd; NULL (printed) on failure. */
char *bgt_connector_mint(const char *dir, const char *kid, const char *app_id,
                         const char *service_url, long exp_in_s);

/* The general form: every field of m as given (see mint.h: alg, claims, header/payload
 * overrides), signed with dir/<set>/<kid>.pem (set NULL: "keys"); m->key is ignored and m
 * is not changed. malloc'd; NULL (printed) on failure. */
char *bgt_connector_mint_ex(const char *dir, const char *set, const char *kid, const bgt_mint *m);

/* ---- the slow bot (tests/tools/slow_bot; see tests/tools/README.md) ------------------------ */

/* Starts `$BOTGATE_TOOLS_DIR/slow_bot --dir dir --port *port` (*port 0: the tool picks a free
 * port, written back to *port; pass the old port to restart in place), its output in
 * dir/slow_bot.log, and waits (20 s: the tool may run under ASan) for dir/ready and a 200
 * from GET /stats. dir is made if missing; files a test wrote there before the start (delay_ms,
 * statuses, hang, ...) apply from the first request, and dir/received.jsonl is appended to, not
 * truncated (a restart keeps the record). Put dir under the bgt_env directory so that its log
 * is printed when a test fails. At most 8 run at once. */
int bgt_bot_start(const char *dir, int *port);

/* bgt_bot_start in env_dir/bot-<name>, that path left in dir (BGT_PATH_MAX bytes) and
 * *port set to 0 first. */
int bgt_bot_start_named(char *dir, const char *env_dir, const char *name, int *port);

/* SIGTERM and waitpid (20 s): requests still held are dropped (their connections closed
 * without an answer). Returns 0 only when the tool exited with status 0 (under ASan a leak
 * makes it non-zero); otherwise prints the status and the log and returns -1. */
int bgt_bot_stop(const char *dir);

/* SIGKILL without judgement (a crashed bot; teardown after a failure). */
void bgt_bot_kill(const char *dir);

/* For a test's bot directory that is "" when none runs: bgt_bot_stop's result (0 when
 * none runs) and bgt_bot_kill, each leaving dir "". */
int bgt_bot_stop_clear(char *dir);
void bgt_bot_kill_clear(char *dir);

/* out = "http://127.0.0.1:<port><path>" (path NULL: "/api/messages", the bot.url default's
 * path). Returns out. */
char *bgt_bot_url(char *out, size_t cap, int port, const char *path);

/* Behaviour, changed live (the bot reads its files on every request; each is written through
 * rename(), so a request never sees half a file):
 *   set_delay: every answer waits ms (0: at once);
 *   set_delay_random: each answer waits a uniform random time in [min_ms, max_ms];
 *   set_statuses: one answer a line, consumed in order, the last repeating ("503\n503\n200\n";
 *     a line may also be "hang" or "close"); NULL removes the file (200 from then on);
 *   set_activity_statuses: the same for the one activity id, winning over set_statuses;
 *   set_retry_after: the Retry-After value of 429 and 503 answers (NULL: none);
 *   set_body: the body of every answer (NULL: empty, or {"status":200,"body":{"ok":true}}
 *     for an invoke);
 *   set_hang: requests that arrive while on are never answered (until the client leaves). */
int bgt_bot_set_delay(const char *dir, int ms);
int bgt_bot_set_delay_random(const char *dir, int min_ms, int max_ms);
int bgt_bot_set_statuses(const char *dir, const char *statuses);
int bgt_bot_set_activity_statuses(const char *dir, const char *activity_id, const char *statuses);
int bgt_bot_set_retry_after(const char *dir, const char *value);
int bgt_bot_set_body(const char *dir, const char *body);
int bgt_bot_set_hang(const char *dir, bool hang);

/* One request the bot received (a line of dir/received.jsonl), with how it ended. */
typedef struct bgt_bot_request {
    unsigned long seq; /* the bot's request number (starts at 1 again when the bot restarts) */
    int64_t t_us;      /* arrival, wall-clock µs (bgt_wall_us's clock) */
    char *path;
    char *activity_id; /* these four: NULL when the body had no such string */
    char *conversation_id;
    char *type;
    char *name;          /* an invoke's name */
    char *delivery_mode; /* deliveryMode */
    int attempt;         /* X-Botgate-Attempt; -1 when absent or not a number */
    char *received_at;   /* X-Botgate-Received-At as sent; NULL when absent */
    bool authorization;  /* an Authorization header was present */
    size_t body_len;
    char action[8];   /* "answer", "hang" (never answered), "close" (closed unanswered) */
    int status;       /* the status it answers with ("answer"); 0 otherwise */
    long delay_ms;    /* the delay it applies; -1 for "hang" */
    long in_flight;   /* requests in flight at the bot, this one included, on arrival */
    int64_t done_us;  /* when it ended (answer sent, connection closed); 0 while pending */
    char outcome[12]; /* "answered", "closed", "gone" (the client left first), "dropped" (the
                       * bot stopped); "" while pending */
} bgt_bot_request;

/* Every request in dir/received.jsonl, in arrival order, each with its end when recorded.
 * *out may be NULL when *n is 0 (no file yet counts as no request). */
int bgt_bot_received(const char *dir, bgt_bot_request **out, size_t *n);
void bgt_bot_requests_free(bgt_bot_request *v, size_t n);

/* How many requests for activity_id the bot has received (every attempt), or -1. */
long bgt_bot_count_activity(const char *dir, const char *activity_id);

/* Truncates dir/received.jsonl: a fresh record (the bot keeps appending to the same file). */
int bgt_bot_clear_received(const char *dir);

/* GET /stats: requests received since start or reset, and the most in flight at once (to
 * check bot.concurrency); either pointer may be NULL. bgt_bot_in_flight: the requests in
 * flight now, or -1. */
int bgt_bot_stats(const char *dir, long *received, long *max_in_flight);
long bgt_bot_in_flight(const char *dir);
/* POST /stats/reset: counters to 0, max_in_flight to the requests in flight now. */
int bgt_bot_stats_reset(const char *dir);

/* Polls dir/received.jsonl until at least n requests have arrived (n ended with an answer)
 * or timeout_ms passes. Returns 0, or -1 after printing how many there were. */
int bgt_bot_wait_received(const char *dir, size_t n, int timeout_ms);
int bgt_bot_wait_answered(const char *dir, size_t n, int timeout_ms);

#endif
