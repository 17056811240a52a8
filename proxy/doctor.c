/*
 * `botgate doctor URL` (botgate/doctor.h): the runbook's steps against a live endpoint.
 *
 * Each step observes, then asks policy/doctor.c what the observation means. The order
 * is the runbook's, and a step that needs an earlier one (tls needs tcp, http needs a
 * connection) is skipped when that one failed; token and redis stand alone.
 *
 *   dns, tcp, tls   getaddrinfo, a non-blocking connect per address with --connect-ms,
 *                   OpenSSL on that socket: plain calls so that "refused", "timed out",
 *                   "expired" and "self-signed" come out as such, not as one curl code.
 *                   The verify callback records every X509_V_ERR_* and lets the handshake
 *                   go on, so one run names every certificate problem at once.
 *   http            libcurl easy, a fresh connection, deadline --fail-ms (the Connector's
 *                   15 s). When the chain did not verify the ping still goes out,
 *                   unverified, so that a bad certificate does not hide a slow bot.
 *   token           libcurl easy: client credentials for MicrosoftAppId against the
 *                   login endpoint. The secret is in the request body only; the answer is
 *                   read for AAD's error members and whether an access_token came, and
 *                   both buffers are wiped: neither the secret nor a token is printed.
 *   redis           redis_sync.h, as `botgate dlq` and `botgate failures` connect.
 *
 * Output: one line per step ("✓ tcp    ..."; ✗ failed, ! warning, - skipped) and
 * "verdict: <sentence>", or with --json one object: {"url", "steps": [{"step", "status",
 * "detail", ...}], "verdict": {"code", "text"}, "ok"}.
 */
#include "botgate/clock.h"
#include "botgate/cli.h"
#include "botgate/config.h"
#include "botgate/config_file.h"
#include "botgate/dispatcher.h"
#include "botgate/dlq.h"
#include "botgate/doctor.h"
#include "botgate/error.h"
#include "botgate/failure.h"
#include "botgate/failures.h"
#include "botgate/redis_sync.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };
enum { STEP_DNS, STEP_TCP, STEP_TLS, STEP_HTTP, STEP_TOKEN, STEP_REDIS, N_STEPS };

static const char *const step_names[N_STEPS] = {"dns", "tcp", "tls", "http", "token", "redis"};

#define PING_BODY "{\"type\":\"ping\"}"
#define TOKEN_TIMEOUT_MS 15000
#define BODY_MAX (64 * 1024)
#define MAX_VERIFY_ERRORS 8
#define FAILURES_WINDOW_MS (15 * 60 * 1000LL)
#define FAILURES_READ_MAX "1000"

struct st_args {
    const char *url, *ca_file, *config_file, *login_url;
    bool json;
    long warn_ms, fail_ms, connect_ms;
};

struct st_step {
    bg_doctor_result r;
    char detail[768];
    json_t *data; /* more members for --json; NULL when none */
};

/* The URL, taken apart once. */
struct st_target {
    bool tls;
    bool host_is_ip;
    char host[256]; /* without IPv6 brackets */
    char port[8];
};

struct st_doctor {
    struct st_args a;
    struct st_target t;
    bg_config cfg;
    struct st_step steps[N_STEPS];
    int fd;                /* the tcp step's connection, -1 when none */
    bool connected;        /* the tcp step passed */
    bool tls_unverified;   /* the chain or the name did not verify: ping without checks */
    bool tls_handshake_ok; /* http can run */
};

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: botgate doctor URL [--json] [--ca-file FILE] [-c CONFIG] [--login-url URL]\n"
            "                      [--warn-ms N] [--fail-ms N] [--connect-ms N]\n"
            "\n"
            "Runs the Teams \"Bot: service unavailable / 502\" runbook against URL (the bot's\n"
            "messaging endpoint, https:// or http://) and names the most likely cause:\n"
            "  dns    the host name resolves\n"
            "  tcp    a connection is made (refused? timed out?)\n"
            "  tls    handshake, chain (system CAs, or --ca-file), hostname, days to expiry\n"
            "  http   POST {\"type\":\"ping\"}: status and time; over --warn-ms (10000) a\n"
            "         warning, over --fail-ms (15000, the Connector's timeout) a failure\n"
            "  token  with MicrosoftAppId and MicrosoftAppPassword (environment or CONFIG):\n"
            "         a client-credentials token from the login endpoint (--login-url;\n"
            "         default relay.token_url, or login.microsoftonline.com/<tenant>)\n"
            "  redis  with -c CONFIG: Redis reachable, stream length, pending, oldest pending\n"
            "         age, dead letters, failure classes of the last 15 minutes\n"
            "\n"
            "--json        one JSON object: steps and verdict\n"
            "--connect-ms  deadline of the connection and of the TLS handshake (5000)\n"
            "Exit status: 0 no step failed (warnings allowed), 1 a step failed, 2 bad usage or\n"
            "configuration.\n");
}

/* A positive number of ms for flag, or -1 after printing why. */
static long
parse_ms(const char *flag, const char *s)
{
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || n < 1 || n > 3600000) {
        fprintf(stderr, "botgate doctor: %s takes a number of ms in 1..3600000, not '%s'\n", flag,
                s);
        return -1;
    }
    return n;
}

static int
parse_args(int argc, char **argv, struct st_args *a)
{
    *a = (struct st_args){.warn_ms = BG_DOCTOR_WARN_MS,
                          .fail_ms = BG_DOCTOR_FAIL_MS,
                          .connect_ms = BG_DOCTOR_CONNECT_MS};
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        bool has_value = i + 1 < argc;
        long *ms = NULL;
        if (strcmp(w, "--json") == 0) {
            a->json = true;
        } else if ((strcmp(w, "-c") == 0 || strcmp(w, "--config") == 0) && has_value) {
            a->config_file = argv[++i];
        } else if (strcmp(w, "--ca-file") == 0 && has_value) {
            a->ca_file = argv[++i];
        } else if (strcmp(w, "--login-url") == 0 && has_value) {
            a->login_url = argv[++i];
        } else if ((ms = strcmp(w, "--warn-ms") == 0      ? &a->warn_ms
                         : strcmp(w, "--fail-ms") == 0    ? &a->fail_ms
                         : strcmp(w, "--connect-ms") == 0 ? &a->connect_ms
                                                          : NULL) != NULL &&
                   has_value) {
            if ((*ms = parse_ms(w, argv[++i])) < 0)
                return EXIT_USAGE;
        } else if (w[0] != '-' && a->url == NULL) {
            a->url = w;
        } else {
            fprintf(stderr, "botgate doctor: unexpected argument '%s'\n", w);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (a->url == NULL) {
        fprintf(stderr, "botgate doctor: which URL? (the bot's messaging endpoint)\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (a->warn_ms > a->fail_ms && a->warn_ms == BG_DOCTOR_WARN_MS)
        a->warn_ms = a->fail_ms; /* only --fail-ms given, under the default warning */
    if (a->warn_ms > a->fail_ms) {
        fprintf(stderr, "botgate doctor: --warn-ms %ld is over --fail-ms %ld\n", a->warn_ms,
                a->fail_ms);
        return EXIT_USAGE;
    }
    if (a->ca_file != NULL && access(a->ca_file, R_OK) != 0) {
        fprintf(stderr, "botgate doctor: --ca-file %s: %s\n", a->ca_file, strerror(errno));
        return EXIT_USAGE;
    }
    return 0;
}

/* Splits url into t. Returns 0, or -1 after printing why (a usage error). */
static int
parse_target(const char *url, struct st_target *t)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = -1;
    memset(t, 0, sizeof(*t));
    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        fprintf(stderr, "botgate doctor: '%s' is not a URL\n", url);
        goto out;
    }
    if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) {
        fprintf(stderr, "botgate doctor: '%s': only https:// and http:// URLs\n", url);
        goto out;
    }
    t->tls = strcmp(scheme, "https") == 0;
    size_t n = strlen(host);
    const char *h = host;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        h = host + 1;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(t->host) || strlen(port) >= sizeof(t->port)) {
        fprintf(stderr, "botgate doctor: '%s': bad host or port\n", url);
        goto out;
    }
    memcpy(t->host, h, n);
    snprintf(t->port, sizeof(t->port), "%s", port);
    unsigned char buf[sizeof(struct in6_addr)];
    t->host_is_ip = inet_pton(AF_INET, t->host, buf) == 1 || inet_pton(AF_INET6, t->host, buf) == 1;
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

static void set_step(struct st_step *s, bg_doctor_result r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_step(struct st_step *s, bg_doctor_result r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s->r = r;
    vsnprintf(s->detail, sizeof(s->detail), fmt, ap);
    va_end(ap);
}

static void
skip_step(struct st_step *s, const char *why)
{
    set_step(s, (bg_doctor_result){BG_DOCTOR_SKIP, BG_DOCTOR_OK}, "skipped: %s", why);
}

static void
add_data(struct st_step *s, const char *key, json_t *v)
{
    if (s->data == NULL)
        s->data = json_object();
    if (s->data != NULL && v != NULL)
        json_object_set_new(s->data, key, v);
    else
        json_decref(v);
}

/* Text from a remote party, made fit for a terminal line and a JSON string: control bytes
 * and bytes past ASCII become '?', cut to cap - 1 bytes, stopping at the first line break. */
static void
clean_text(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s != NULL && *s != '\0' && *s != '\r' && *s != '\n' && n + 1 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        out[n++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    out[n] = '\0';
}

/* ---- dns, tcp -------------------------------------------------------------------------- */

static void
addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
    const void *a = sa->sa_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (inet_ntop(sa->sa_family, a, out, (socklen_t)cap) == NULL)
        snprintf(out, cap, "?");
}

/* Connects to one address within timeout_ms. Returns the connected (blocking) socket, or
 * -1 with the errno of the failure in *err (ETIMEDOUT when the deadline passed). */
static int
connect_one(const struct addrinfo *ai, long timeout_ms, int *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            *err = errno;
            close(fd);
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n;
        while ((n = poll(&p, 1, (int)timeout_ms)) < 0 && errno == EINTR)
            ;
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (n == 0)
            soerr = ETIMEDOUT;
        else if (n < 0)
            soerr = errno;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
            soerr = errno;
        if (soerr != 0) {
            *err = soerr;
            close(fd);
            return -1;
        }
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

static void
step_dns_tcp(struct st_doctor *d)
{
    struct st_step *dns = &d->steps[STEP_DNS], *tcp = &d->steps[STEP_TCP];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL;
    int64_t t0 = bg_mono_us();
    int rc = getaddrinfo(d->t.host, d->t.port, &hints, &list);
    if (rc != 0) {
        set_step(dns, (bg_doctor_result){BG_DOCTOR_FAIL, BG_DOCTOR_DNS}, "%s: %s", d->t.host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        skip_step(tcp, "the name did not resolve");
        return;
    }
    char addrs[256] = "";
    size_t used = 0;
    json_t *jaddrs = json_array();
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        char a[INET6_ADDRSTRLEN];
        addr_text(ai->ai_addr, a, sizeof(a));
        json_array_append_new(jaddrs, json_string(a));
        if (used < sizeof(addrs))
            used +=
                (size_t)snprintf(addrs + used, sizeof(addrs) - used, "%s%s", used ? ", " : "", a);
    }
    if (d->t.host_is_ip)
        set_step(dns, (bg_doctor_result){BG_DOCTOR_PASS, BG_DOCTOR_OK},
                 "%s is an address: nothing to resolve", d->t.host);
    else
        set_step(dns, (bg_doctor_result){BG_DOCTOR_PASS, BG_DOCTOR_OK}, "%s → %s in %.1f ms",
                 d->t.host, addrs, (double)(bg_mono_us() - t0) / 1000.0);
    add_data(dns, "addresses", jaddrs);

    /* every address in turn, as a client does; the first one's error names the cause */
    char tried[512] = "";
    used = 0;
    int first_err = 0;
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        char a[INET6_ADDRSTRLEN];
        addr_text(ai->ai_addr, a, sizeof(a));
        int err = 0;
        t0 = bg_mono_us();
        d->fd = connect_one(ai, d->a.connect_ms, &err);
        if (d->fd >= 0) {
            double ms = (double)(bg_mono_us() - t0) / 1000.0;
            set_step(tcp, bg_doctor_connect_result(0), "connected to %s port %s in %.1f ms", a,
                     d->t.port, ms);
            add_data(tcp, "address", json_string(a));
            add_data(tcp, "connect_ms", json_real(ms));
            d->connected = true;
            break;
        }
        if (first_err == 0)
            first_err = err;
        if (used < sizeof(tried))
            used += (size_t)snprintf(
                tried + used, sizeof(tried) - used, "%s%s port %s: %s", used ? "; " : "", a,
                d->t.port, err == ETIMEDOUT ? "no answer within --connect-ms" : strerror(err));
    }
    if (d->fd < 0)
        set_step(tcp, bg_doctor_connect_result(first_err), "%s", tried);
    freeaddrinfo(list);
}

/* ---- tls ------------------------------------------------------------------------------- */

struct st_verify {
    long errors[MAX_VERIFY_ERRORS];
    int depths[MAX_VERIFY_ERRORS];
    size_t n;
};

/* OpenSSL's verify callback: records what failed and lets the handshake go on, so that
 * one run reports every problem of the certificate (expired and self-signed, say). */
static int
on_verify(int ok, X509_STORE_CTX *xs)
{
    if (ok)
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct st_verify *v = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    long e = X509_STORE_CTX_get_error(xs);
    if (v == NULL)
        return 1;
    for (size_t i = 0; i < v->n; i++)
        if (v->errors[i] == e)
            return 1;
    if (v->n < MAX_VERIFY_ERRORS) {
        v->errors[v->n] = e;
        v->depths[v->n++] = X509_STORE_CTX_get_error_depth(xs);
    }
    return 1;
}

/* "CN=localhost" (or the whole one-line name when it has no CN). */
static void
name_text(const X509_NAME *name, char *out, size_t cap)
{
    char cn[200];
    if (X509_NAME_get_text_by_NID((X509_NAME *)name, NID_commonName, cn, sizeof(cn)) > 0) {
        char clean[200];
        clean_text(clean, sizeof(clean), cn);
        snprintf(out, cap, "CN=%s", clean);
    } else {
        X509_NAME_oneline(name, out, (int)cap);
    }
}

/* The handshake failed: why, from OpenSSL's queue or the socket. */
static void
handshake_error(SSL *ssl, int ret, char *out, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    int kind = SSL_get_error(ssl, ret);
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(out, cap, "%s", buf);
    } else if (kind == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        snprintf(out, cap, "no answer within --connect-ms");
    } else if (kind == SSL_ERROR_SYSCALL && errno != 0) {
        snprintf(out, cap, "%s", strerror(errno));
    } else {
        snprintf(out, cap, "the server closed the connection");
    }
    ERR_clear_error();
}

static void
step_tls(struct st_doctor *d)
{
    struct st_step *s = &d->steps[STEP_TLS];
    if (!d->t.tls) {
        skip_step(s, "http:// URL (the Connector calls only https:// endpoints)");
        d->tls_handshake_ok = true;
        return;
    }
    if (d->fd < 0) {
        skip_step(s, "no connection");
        return;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    X509 *cert = NULL;
    struct st_verify v = {.n = 0};
    if (ctx == NULL)
        goto oom;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); /* what the Connector speaks */
    if (d->a.ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, d->a.ca_file, NULL) != 1
                             : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        set_step(s, (bg_doctor_result){BG_DOCTOR_FAIL, BG_DOCTOR_CERT_UNTRUSTED},
                 "cannot load the trusted CAs%s%s", d->a.ca_file ? " from " : "",
                 d->a.ca_file ? d->a.ca_file : "");
        goto out;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, on_verify);
    if ((ssl = SSL_new(ctx)) == NULL)
        goto oom;
    SSL_set_app_data(ssl, &v);
    SSL_set_fd(ssl, d->fd);
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (d->t.host_is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(param, d->t.host);
    } else {
        SSL_set_tlsext_host_name(ssl, d->t.host);
        X509_VERIFY_PARAM_set1_host(param, d->t.host, 0);
    }
    errno = 0;
    int ret = SSL_connect(ssl);
    if (ret != 1) {
        char why[256];
        handshake_error(ssl, ret, why, sizeof(why));
        set_step(s, (bg_doctor_result){BG_DOCTOR_FAIL, BG_DOCTOR_TLS_HANDSHAKE},
                 "handshake failed: %s", why);
        goto out;
    }
    d->tls_handshake_ok = true;
    if ((cert = SSL_get1_peer_certificate(ssl)) == NULL) {
        set_step(s, (bg_doctor_result){BG_DOCTOR_FAIL, BG_DOCTOR_CERT_INVALID},
                 "%s, but the server sent no certificate", SSL_get_version(ssl));
        d->tls_unverified = true;
        goto out;
    }
    char subject[256], issuer[256];
    name_text(X509_get_subject_name(cert), subject, sizeof(subject));
    name_text(X509_get_issuer_name(cert), issuer, sizeof(issuer));
    struct tm tm;
    int64_t days = 0;
    bg_doctor_result expiry = {BG_DOCTOR_FAIL, BG_DOCTOR_CERT_INVALID};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
        expiry = bg_doctor_expiry_result((int64_t)timegm(&tm), (int64_t)time(NULL), &days);
    bg_doctor_result r = bg_doctor_tls_verify_result(v.errors, v.n);
    if (r.status == BG_DOCTOR_PASS)
        r = expiry;
    d->tls_unverified = v.n > 0;

    char problems[512] = "";
    size_t used = 0;
    json_t *jerr = json_array();
    for (size_t i = 0; i < v.n; i++) {
        const char *what = X509_verify_cert_error_string(v.errors[i]);
        json_array_append_new(jerr, json_string(what));
        if (used < sizeof(problems))
            used += (size_t)snprintf(problems + used, sizeof(problems) - used, "%s%s (depth %d)",
                                     used ? "; " : "", what, v.depths[i]);
    }
    const char *trust = d->a.ca_file != NULL ? "--ca-file" : "the system CAs";
    char when[80];
    if (expiry.cause == BG_DOCTOR_CERT_EXPIRED && days == 0)
        snprintf(when, sizeof(when), "expired less than a day ago");
    else if (expiry.cause == BG_DOCTOR_CERT_EXPIRED)
        snprintf(when, sizeof(when), "expired %" PRId64 " days ago", -days);
    else
        snprintf(when, sizeof(when), "%" PRId64 " days left", days);
    if (v.n == 0)
        set_step(s, r, "%s, %s issued by %s, %s; chain verified against %s, name %s matches",
                 SSL_get_version(ssl), subject, issuer, when, trust, d->t.host);
    else
        set_step(s, r, "%s, %s issued by %s, %s; not verified against %s: %s", SSL_get_version(ssl),
                 subject, issuer, when, trust, problems);
    add_data(s, "protocol", json_string(SSL_get_version(ssl)));
    add_data(s, "subject", json_string(subject));
    add_data(s, "issuer", json_string(issuer));
    add_data(s, "days_left", json_integer(days));
    add_data(s, "verify_errors", jerr);
    goto out;
oom:
    set_step(s, (bg_doctor_result){BG_DOCTOR_FAIL, BG_DOCTOR_TLS_HANDSHAKE}, "out of memory");
out:
    X509_free(cert);
    if (ssl != NULL && d->tls_handshake_ok)
        SSL_shutdown(ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
}

/* ---- http, token (libcurl easy) --------------------------------------------------------- */

struct st_body {
    char *p;
    size_t len;
};

static size_t
on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct st_body *b = userdata;
    size_t n = size * nmemb;
    size_t keep = b->len < BODY_MAX ? BODY_MAX - b->len : 0;
    if (keep > n)
        keep = n;
    if (keep > 0) {
        char *p = realloc(b->p, b->len + keep + 1);
        if (p == NULL)
            return 0;
        memcpy(p + b->len, data, keep);
        b->p = p;
        b->len += keep;
        b->p[b->len] = '\0';
    }
    return n;
}

/* Wipes and frees: the token's answer holds an access token. */
static void
body_free(struct st_body *b)
{
    if (b->p != NULL)
        explicit_bzero(b->p, b->len);
    free(b->p);
    b->p = NULL;
    b->len = 0;
}

/* The `code` of botgate's JSON error ({"error":{"code":...}}) into out, else "". */
static void
error_code_of(const struct st_body *b, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *root = b->p != NULL ? json_loadb(b->p, b->len, 0, NULL) : NULL;
    json_t *code = json_object_get(json_object_get(root, "error"), "code");
    if (json_is_string(code))
        clean_text(out, cap, json_string_value(code));
    json_decref(root);
}

static void
step_http(struct st_doctor *d)
{
    struct st_step *s = &d->steps[STEP_HTTP];
    if (!d->connected || !d->tls_handshake_ok) {
        skip_step(s, !d->connected ? "no connection" : "no TLS session");
        return;
    }
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h2 = h != NULL ? curl_slist_append(h, "Expect:") : NULL;
    struct st_body body = {0};
    char curl_err[CURL_ERROR_SIZE] = "";
    if (c == NULL || h2 == NULL) {
        set_step(s, (bg_doctor_result){BG_DOCTOR_FAIL, BG_DOCTOR_HTTP_NO_ANSWER}, "out of memory");
        goto out;
    }
    h = h2;
    curl_easy_setopt(c, CURLOPT_URL, d->a.url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, PING_BODY);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "botgate-doctor/" BOTGATE_VERSION);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, d->a.fail_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, d->a.connect_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    if (d->a.ca_file != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, d->a.ca_file);
    if (d->tls_unverified) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_off_t total_us = 0, connect_us = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME_T, &total_us);
    curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &connect_us);
    int64_t ms = (int64_t)total_us / 1000;
    bool timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    bg_doctor_result r =
        bg_doctor_http_result(rc == CURLE_OK, timed_out, status, ms, d->a.warn_ms, d->a.fail_ms);
    const char *unverified = d->tls_unverified ? " (certificate not verified)" : "";
    if (timed_out) {
        set_step(s, r, "POST " PING_BODY ": no answer within %ld ms (--fail-ms)%s", d->a.fail_ms,
                 unverified);
    } else if (rc != CURLE_OK) {
        set_step(s, r, "POST " PING_BODY ": no answer after %" PRId64 " ms: %s%s", ms,
                 curl_err[0] ? curl_err : curl_easy_strerror(rc), unverified);
    } else {
        char code[64], with[80] = "";
        error_code_of(&body, code, sizeof(code));
        if (code[0] != '\0')
            snprintf(with, sizeof(with), " %s", code);
        set_step(s, r,
                 "POST " PING_BODY " → %ld%s in %" PRId64 " ms (warning over %ld ms, failure "
                 "over %ld ms)%s",
                 status, with, ms, d->a.warn_ms, d->a.fail_ms, unverified);
    }
    if (rc == CURLE_OK)
        add_data(s, "http_status", json_integer(status));
    add_data(s, "time_ms", json_integer(ms));
    add_data(s, "warn_ms", json_integer(d->a.warn_ms));
    add_data(s, "fail_ms", json_integer(d->a.fail_ms));
out:
    body_free(&body);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

/* Where the token comes from: --login-url; else relay.token_url when it is not the
 * default; else, for a SingleTenant app, login.microsoftonline.com/<auth.tenant_id>; else
 * the default (the botframework.com tenant, as the SDKs ask for a MultiTenant app). */
static char *
token_url(const struct st_doctor *d)
{
    static const char def[] =
        "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token";
    char *url = NULL;
    if (d->a.login_url != NULL)
        return strdup(d->a.login_url);
    if (strcmp(d->cfg.relay.token_url, def) != 0 || d->cfg.auth.tenant_id[0] == '\0' ||
        strcmp(d->cfg.auth.app_type, "SingleTenant") != 0)
        return strdup(d->cfg.relay.token_url);
    char *tenant = curl_easy_escape(NULL, d->cfg.auth.tenant_id, 0);
    if (tenant != NULL &&
        asprintf(&url, "https://login.microsoftonline.com/%s/oauth2/v2.0/token", tenant) < 0)
        url = NULL;
    curl_free(tenant);
    return url;
}

/* grant_type=client_credentials&client_id=..&client_secret=..&scope=.. (malloc'd; holds
 * the secret: the caller wipes it). */
static char *
token_form(CURL *c, const bg_config *cfg)
{
    char *id = curl_easy_escape(c, cfg->auth.app_id, 0);
    char *secret = curl_easy_escape(c, cfg->auth.app_password, 0);
    char *scope = curl_easy_escape(c, cfg->relay.scope, 0);
    char *form = NULL;
    if (id != NULL && secret != NULL && scope != NULL &&
        asprintf(&form, "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s", id,
                 secret, scope) < 0)
        form = NULL;
    if (secret != NULL)
        explicit_bzero(secret, strlen(secret));
    curl_free(id);
    curl_free(secret);
    curl_free(scope);
    return form;
}

static void
step_token(struct st_doctor *d)
{
    struct st_step *s = &d->steps[STEP_TOKEN];
    const bg_config *cfg = &d->cfg;
    if (cfg->auth.app_id[0] == '\0' || cfg->auth.app_password[0] == '\0') {
        skip_step(s, "MicrosoftAppId and MicrosoftAppPassword are not both set");
        return;
    }
    if (strcmp(cfg->auth.app_type, "UserAssignedMSI") == 0) {
        skip_step(s, "a UserAssignedMSI app gets its tokens from the managed identity");
        return;
    }
    CURL *c = curl_easy_init();
    char *url = token_url(d), *form = NULL;
    struct st_body body = {0};
    char curl_err[CURL_ERROR_SIZE] = "";
    json_t *root = NULL;
    if (c == NULL || url == NULL || (form = token_form(c, cfg)) == NULL) {
        set_step(s, (bg_doctor_result){BG_DOCTOR_FAIL, BG_DOCTOR_AAD_ERROR}, "out of memory");
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "botgate-doctor/" BOTGATE_VERSION);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)TOKEN_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, d->a.connect_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    if (cfg->auth.ca_file[0] != '\0')
        curl_easy_setopt(c, CURLOPT_CAINFO, cfg->auth.ca_file);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    add_data(s, "url", json_string(url));
    add_data(s, "app_id", json_string(cfg->auth.app_id));
    if (rc != CURLE_OK) {
        set_step(s, bg_doctor_aad_result(0, NULL, NULL, 0), "POST %s: %s", url,
                 curl_err[0] ? curl_err : curl_easy_strerror(rc));
        goto out;
    }
    add_data(s, "http_status", json_integer(status));
    root = body.p != NULL ? json_loadb(body.p, body.len, 0, NULL) : NULL;
    if (status == 200) {
        json_t *exp = json_object_get(root, "expires_in");
        if (json_is_string(json_object_get(root, "access_token")))
            set_step(s, bg_doctor_aad_result(200, NULL, NULL, 0),
                     "token for app %s from %s, expires in %" JSON_INTEGER_FORMAT " s",
                     cfg->auth.app_id, url, json_is_integer(exp) ? json_integer_value(exp) : 0);
        else
            set_step(s, (bg_doctor_result){BG_DOCTOR_FAIL, BG_DOCTOR_AAD_ERROR},
                     "%s answered 200 without an access_token", url);
        goto out;
    }
    const char *error = json_string_value(json_object_get(root, "error"));
    const char *desc = json_string_value(json_object_get(root, "error_description"));
    json_t *codes = json_object_get(root, "error_codes");
    long aadsts = json_is_integer(json_array_get(codes, 0))
                      ? (long)json_integer_value(json_array_get(codes, 0))
                      : 0;
    bg_doctor_result r = bg_doctor_aad_result(status == 200 ? 500 : status, error, desc, aadsts);
    char e[64], why[200];
    clean_text(e, sizeof(e), error != NULL ? error : "no error member");
    clean_text(why, sizeof(why), desc != NULL ? desc : "");
    set_step(s, r, "app %s: %s answered %ld %s%s%s", cfg->auth.app_id, url, status, e,
             why[0] ? ": " : "", why);
    if (error != NULL)
        add_data(s, "error", json_string(e));
    if (aadsts != 0 || bg_doctor_aadsts(desc) != 0)
        add_data(s, "aadsts", json_integer(aadsts != 0 ? aadsts : bg_doctor_aadsts(desc)));
out:
    json_decref(root);
    body_free(&body);
    if (form != NULL)
        explicit_bzero(form, strlen(form));
    free(form);
    free(url);
    curl_easy_cleanup(c);
}

/* ---- redis ------------------------------------------------------------------------------ */

/* A command whose failure makes the step fail with why: NULL then. An error reply is a
 * failure too, but for NOGROUP (no dispatcher ever made the group: nothing is pending),
 * which is returned. Not bg_redis_sync_command: its messages go to stderr, ours into the
 * step. */
static redisReply *
redis_query(bg_redis_sync *rs, int argc, const char **argv, char *why, size_t cap)
{
    redisReply *r = redisCommandArgv(rs->c, argc, argv, NULL);
    if (r == NULL) {
        snprintf(why, cap, "%s: %s failed: %s", rs->where, argv[0],
                 rs->c->errstr[0] != '\0' ? rs->c->errstr : "no answer");
    } else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) != 0) {
        snprintf(why, cap, "%s: %s refused: %.200s", rs->where, argv[0], r->str);
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

static void
step_redis(struct st_doctor *d)
{
    struct st_step *s = &d->steps[STEP_REDIS];
    if (d->a.config_file == NULL) {
        skip_step(s, "no -c CONFIG");
        return;
    }
    const char *stream = d->cfg.redis.stream;
    bg_doctor_queue q = {.reachable = false};
    bg_redis_sync rs = {0};
    char err[512], why[600] = "";
    char *dlq = NULL, *failures = NULL;
    redisReply *r = NULL;
    if (bg_redis_sync_target(&rs, "botgate doctor", &d->cfg, err, sizeof(err)) != 0) {
        snprintf(why, sizeof(why), "%s", err);
        goto out;
    }
    if (bg_redis_sync_connect(&rs, d->cfg.redis.timeout_ms) != 0) {
        snprintf(why, sizeof(why), "cannot connect to %s: %s", rs.where,
                 rs.c != NULL && rs.c->errstr[0] != '\0' ? rs.c->errstr : "refused");
        goto out;
    }
    if (asprintf(&dlq, "%s" BG_DLQ_SUFFIX, stream) < 0 ||
        asprintf(&failures, "%s" BG_FAILURES_SUFFIX, stream) < 0) {
        dlq = failures = NULL;
        snprintf(why, sizeof(why), "out of memory");
        goto out;
    }
    const char *xlen[] = {"XLEN", stream};
    if ((r = redis_query(&rs, 2, xlen, why, sizeof(why))) == NULL)
        goto out;
    q.length = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);

    /* XPENDING's summary: [count, smallest id, greatest id, consumers]; no group yet (no
     * dispatcher ever ran) is nothing pending */
    const char *xpending[] = {"XPENDING", stream, BG_CONSUMER_GROUP};
    if ((r = redis_query(&rs, 3, xpending, why, sizeof(why))) == NULL)
        goto out;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        q.pending = r->element[0]->integer;
        if (q.pending > 0 && r->element[1]->type == REDIS_REPLY_STRING) {
            int64_t age = bg_cli_wall_ms() - (int64_t)strtoll(r->element[1]->str, NULL, 10);
            q.oldest_pending_s = age > 0 ? age / 1000 : 0;
        }
    }
    freeReplyObject(r);

    const char *xlen_dlq[] = {"XLEN", dlq};
    if ((r = redis_query(&rs, 2, xlen_dlq, why, sizeof(why))) == NULL)
        goto out;
    q.dead_letters = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);

    /* the failure classes of the last 15 minutes: the newest 1000 records at most */
    char min[32];
    snprintf(min, sizeof(min), "%" PRId64, (int64_t)(bg_cli_wall_ms() - FAILURES_WINDOW_MS));
    const char *xrev[] = {"XREVRANGE", failures, "+", min, "COUNT", FAILURES_READ_MAX};
    if ((r = redis_query(&rs, 6, xrev, why, sizeof(why))) == NULL)
        goto out;
    long counts[16] = {0};
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        const redisReply *f = e->element[1];
        for (size_t k = 0; k + 1 < f->elements; k += 2) {
            if (f->element[k]->type != REDIS_REPLY_STRING ||
                strcmp(f->element[k]->str, BG_FAILURES_FIELD_CLASS) != 0 ||
                f->element[k + 1]->type != REDIS_REPLY_STRING)
                continue;
            for (size_t ci = 0; bg_failure_classes[ci] != NULL && ci < 16; ci++)
                if (strcmp(bg_failure_classes[ci], f->element[k + 1]->str) == 0)
                    counts[ci]++;
        }
        q.recent_failures++;
    }
    freeReplyObject(r);
    r = NULL;
    q.reachable = true;

    char classes[256] = "";
    size_t used = 0;
    json_t *jf = json_object();
    for (size_t ci = 0; bg_failure_classes[ci] != NULL && ci < 16; ci++) {
        if (counts[ci] == 0)
            continue;
        json_object_set_new(jf, bg_failure_classes[ci], json_integer(counts[ci]));
        if (used < sizeof(classes))
            used += (size_t)snprintf(classes + used, sizeof(classes) - used, "%s%s %ld",
                                     used ? ", " : "", bg_failure_classes[ci], counts[ci]);
    }
    set_step(s, bg_doctor_redis_result(&q),
             "%s: stream %s length %lld, pending %lld (oldest %" PRId64
             " s), dead letters %lld; failures in the last 15 min: %s",
             rs.where, stream, q.length, q.pending, q.oldest_pending_s, q.dead_letters,
             classes[0] ? classes : "none");
    add_data(s, "stream", json_string(stream));
    add_data(s, "stream_length", json_integer(q.length));
    add_data(s, "pending", json_integer(q.pending));
    add_data(s, "oldest_pending_s", json_integer(q.oldest_pending_s));
    add_data(s, "dead_letters", json_integer(q.dead_letters));
    add_data(s, "failures", jf);
out:
    if (!q.reachable)
        set_step(s, bg_doctor_redis_result(&q), "%s", why);
    freeReplyObject(r);
    free(dlq);
    free(failures);
    bg_redis_sync_close(&rs);
}

/* ---- output ------------------------------------------------------------------------------ */

static const char *
mark(bg_doctor_status s)
{
    switch (s) {
    case BG_DOCTOR_PASS:
        return "✓";
    case BG_DOCTOR_WARN:
        return "!";
    case BG_DOCTOR_FAIL:
        return "✗";
    default:
        return "-";
    }
}

static int
print_text(const struct st_doctor *d, bg_doctor_cause verdict)
{
    printf("botgate doctor %s\n", d->a.url);
    for (size_t i = 0; i < N_STEPS; i++)
        printf("%s %-6s%s\n", mark(d->steps[i].r.status), step_names[i], d->steps[i].detail);
    printf("verdict: %s\n", bg_doctor_cause_text(verdict));
    return fflush(stdout) == 0 ? 0 : -1;
}

static int
print_json(struct st_doctor *d, bg_doctor_cause verdict, bool failed)
{
    json_t *o = json_object(), *steps = json_array(), *v = json_object();
    for (size_t i = 0; i < N_STEPS; i++) {
        struct st_step *s = &d->steps[i];
        json_t *j = json_object();
        json_object_set_new(j, "step", json_string(step_names[i]));
        json_object_set_new(j, "status", json_string(bg_doctor_status_name(s->r.status)));
        if (s->r.status == BG_DOCTOR_WARN || s->r.status == BG_DOCTOR_FAIL)
            json_object_set_new(j, "cause", json_string(bg_doctor_cause_code(s->r.cause)));
        json_object_set_new(j, "detail", json_string(s->detail));
        if (s->data != NULL)
            json_object_update(j, s->data);
        json_array_append_new(steps, j);
    }
    json_object_set_new(v, "code", json_string(bg_doctor_cause_code(verdict)));
    json_object_set_new(v, "text", json_string(bg_doctor_cause_text(verdict)));
    json_object_set_new(o, "url", json_string(d->a.url));
    json_object_set_new(o, "steps", steps);
    json_object_set_new(o, "verdict", v);
    json_object_set_new(o, "ok", json_boolean(!failed));
    char *line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (line == NULL)
        return -1;
    int rc = puts(line) < 0 || fflush(stdout) != 0 ? -1 : 0;
    free(line);
    return rc;
}

int
bg_doctor_run(int argc, char **argv, char *const *envp)
{
    if (argc >= 1 && (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0 ||
                      strcmp(argv[0], "-h") == 0)) {
        usage(stdout);
        return EXIT_OK;
    }
    /* a server that resets while we close TLS must not kill the report (SIGPIPE) */
    signal(SIGPIPE, SIG_IGN);
    struct st_doctor d = {.fd = -1};
    int rc = parse_args(argc, argv, &d.a);
    if (rc != 0)
        return rc;
    if (parse_target(d.a.url, &d.t) != 0)
        return EXIT_USAGE;
    char err[512];
    if ((rc = bg_config_read(&d.cfg, d.a.config_file, envp, err, sizeof(err))) != 0) {
        fprintf(stderr, "botgate: %s%s\n", rc == BG_ECONFIG ? "configuration: " : "", err);
        return rc == BG_ECONFIG ? EXIT_USAGE : EXIT_FAIL;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    step_dns_tcp(&d);
    step_tls(&d);
    if (d.fd >= 0)
        close(d.fd); /* the ping goes out on curl's own connection */
    d.fd = -1;
    step_http(&d);
    step_token(&d);
    step_redis(&d);
    curl_global_cleanup();

    bg_doctor_result results[N_STEPS];
    for (size_t i = 0; i < N_STEPS; i++)
        results[i] = d.steps[i].r;
    bool failed;
    bg_doctor_cause verdict = bg_doctor_verdict(results, N_STEPS, &failed);
    int out = d.a.json ? print_json(&d, verdict, failed) : print_text(&d, verdict);
    for (size_t i = 0; i < N_STEPS; i++)
        json_decref(d.steps[i].data);
    bg_config_free(&d.cfg);
    if (out != 0) {
        fprintf(stderr, "botgate doctor: cannot write the report\n");
        return EXIT_FAIL;
    }
    return failed ? EXIT_FAIL : EXIT_OK;
}
