/*
 * The serving certificate and its reload (see botgate/tls_reload.h).
 *
 * Why a new SSL_CTX, and not the certificate swapped inside the live one: h2o 2.2.5 calls
 * SSL_new(accept_ctx->ssl_ctx) when it accepts a connection, and SSL_new takes a
 * reference to the SSL_CTX and a copy of its certificate slots. Replacing the pointer in
 * the accept contexts is therefore one assignment on the loop's thread: no connection can
 * see half a change (a new certificate with the old key), a connection mid-handshake keeps
 * the consistent pair it started with, and a change of key type (RSA to ECDSA) leaves no
 * stale certificate behind in another slot of the context, as SSL_CTX_use_certificate on
 * the live context would. The cost: session tickets issued under the old context are not
 * accepted by the new one, so a client resumes with a full handshake once.
 *
 * Reading the files is blocking I/O on the loop; they are two small local files read
 * once per change (or SIGHUP), which is the price of not adding a thread.
 */
#include "botgate/tls_reload.h"
#include "botgate/error.h"
#include "botgate/log.h"
#include "botgate/server.h"
#include "botgate/timer.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509.h>

/* What identifies one version of a file; a change of any field is a change of the file. */
struct st_stamp {
    int err; /* errno of stat(), 0 when it succeeded */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
};

struct bg_tls_watch {
    char *cert_file, *key_file;
    struct st_stamp cert, key;
    int check_s; /* 0: no timer, SIGHUP only */
    bg_timer timer;
    h2o_socket_t *hup; /* the pipe's read end, on the loop */
};

/* SIGHUP's self-pipe: the handler writes a byte, the loop reads it and reloads. A flag
 * checked between two epoll_wait calls would miss a signal that lands just before the
 * next wait, until some other event woke the loop. Signals are per process: one pipe. */
static int hup_pipe[2] = {-1, -1};

SSL_CTX *
bg_tls_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "tls: cannot create an OpenSSL context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* An idle connection gives its 16 KiB+ read and write record buffers back: with 1,000
     * idle keep-alive connections, 24.5 → 15.2 kB of RSS each (tests/bench/README.md,
     * "Profile"), no measurable cost per request. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    const char *key = NULL;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        key = "tls.cert_file";
    else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        key = "tls.key_file";
    else if (SSL_CTX_check_private_key(ctx) != 1)
        key = "tls.key_file";
    if (key != NULL) {
        char ossl[200];
        ERR_error_string_n(ERR_get_error(), ossl, sizeof(ossl));
        ERR_clear_error();
        snprintf(err, errlen, "%s: %s: %s", key,
                 strcmp(key, "tls.cert_file") == 0 ? cert_file : key_file, ossl);
        SSL_CTX_free(ctx);
        return NULL;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ctx;
}

static void
stamp(const char *path, struct st_stamp *out)
{
    struct stat st;
    memset(out, 0, sizeof(*out));
    if (stat(path, &st) != 0) {
        out->err = errno;
        return;
    }
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->size = st.st_size;
    out->mtime = st.st_mtim;
    out->ctime = st.st_ctim;
}

static int
stamp_eq(const struct st_stamp *a, const struct st_stamp *b)
{
    return a->err == b->err && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* "serial 1A2B…, CN=…, expires 2027-01-01T00:00:00Z" of ctx's certificate, for the log. */
static void
describe(SSL_CTX *ctx, char *out, size_t cap)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    BIGNUM *bn = cert != NULL ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL) : NULL;
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    char cn[128] = "";
    if (cert != NULL)
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
    char when[32] = "?";
    struct tm tm;
    const ASN1_TIME *na = cert != NULL ? X509_get0_notAfter(cert) : NULL;
    if (na != NULL && ASN1_TIME_to_tm(na, &tm) == 1)
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(out, cap, "serial %s, CN=%s, expires %s", hex != NULL ? hex : "?", cn, when);
    OPENSSL_free(hex);
    BN_free(bn);
}

static void
count(bg_server *s, int ok)
{
    bg_metric_inc(ok ? s->metrics.tls_reload_ok : s->metrics.tls_reload_failed);
}

int
bg_tls_reload(bg_server *s, const char *why)
{
    struct bg_tls_watch *w = s->tls_watch;
    if (w == NULL || s->ssl_ctx == NULL) {
        bg_log_info("tls", "%s: no TLS listener, no certificate to reload", why);
        return 0;
    }
    /* Stamped before reading: a change made while we read is seen by the next check. */
    stamp(w->cert_file, &w->cert);
    stamp(w->key_file, &w->key);
    char err[512], now[200];
    describe(s->ssl_ctx, now, sizeof(now));
    SSL_CTX *ctx = bg_tls_ctx_new(w->cert_file, w->key_file, err, sizeof(err));
    if (ctx != NULL &&
        X509_cmp_current_time(X509_get0_notAfter(SSL_CTX_get0_certificate(ctx))) < 0) {
        snprintf(err, sizeof(err), "tls.cert_file: %s: the certificate has expired", w->cert_file);
        SSL_CTX_free(ctx);
        ctx = NULL;
    }
    if (ctx == NULL) {
        bg_log_error("tls", "certificate reload (%s) refused: %s; still serving %s", why, err, now);
        count(s, 0);
        return -1;
    }
    for (size_t i = 0; i < s->n_listeners; i++) {
        if (s->listeners[i].accept_ctx.ssl_ctx == s->ssl_ctx)
            s->listeners[i].accept_ctx.ssl_ctx = ctx;
    }
    SSL_CTX_free(s->ssl_ctx); /* open connections keep their own references */
    s->ssl_ctx = ctx;
    describe(ctx, now, sizeof(now));
    bg_log_info("tls", "certificate reloaded (%s): now serving %s to new connections", why, now);
    count(s, 1);
    bg_admin_cert_changed(s);
    return 0;
}

static void
on_sighup(int sig)
{
    (void)sig;
    int saved = errno;
    ssize_t n = write(hup_pipe[1], "h", 1); /* full pipe: a reload is pending anyway */
    (void)n;
    errno = saved;
}

static void
on_hup_readable(h2o_socket_t *sock, const char *err)
{
    bg_server *s = sock->data;
    char buf[64];
    while (read(hup_pipe[0], buf, sizeof(buf)) > 0)
        ; /* one reload for any number of signals */
    if (err == NULL)
        bg_tls_reload(s, "SIGHUP");
}

static int
take_sighup(bg_server *s, struct bg_tls_watch *w, char *err, size_t errlen)
{
    if (pipe2(hup_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "tls: cannot make SIGHUP's pipe: %s", strerror(errno));
        return -1;
    }
    w->hup = h2o_evloop_socket_create(s->loop, hup_pipe[0], H2O_SOCKET_FLAG_DONT_READ);
    w->hup->data = s;
    h2o_socket_read_start(w->hup, on_hup_readable);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sighup;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    return 0;
}

static void
on_check(bg_timer *t)
{
    bg_server *s = t->data;
    struct bg_tls_watch *w = s->tls_watch;
    struct st_stamp cert, key;
    stamp(w->cert_file, &cert);
    stamp(w->key_file, &key);
    if (!stamp_eq(&cert, &w->cert) || !stamp_eq(&key, &w->key))
        bg_tls_reload(s, "files changed");
    bg_timer_start(t, (uint64_t)w->check_s * 1000);
}

int
bg_tls_reload_start(bg_server *s, const char *cert_file, const char *key_file, int check_s,
                    char *err, size_t errlen)
{
    if (s->ssl_ctx == NULL)
        return 0;
    struct bg_tls_watch *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->cert_file = strdup(cert_file)) == NULL ||
        (w->key_file = strdup(key_file)) == NULL) {
        if (w != NULL)
            free(w->cert_file);
        free(w);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    stamp(cert_file, &w->cert);
    stamp(key_file, &w->key);
    w->check_s = check_s;
    s->tls_watch = w;
    if (take_sighup(s, w, err, errlen) != 0) {
        w->check_s = 0; /* no timer yet */
        bg_tls_reload_stop(s);
        return -1;
    }
    if (check_s > 0) {
        bg_timer_init(&w->timer, s->loop, on_check, s);
        bg_timer_start(&w->timer, (uint64_t)check_s * 1000);
    }
    return 0;
}

void
bg_tls_reload_stop(bg_server *s)
{
    struct bg_tls_watch *w = s->tls_watch;
    if (w == NULL)
        return;
    if (w->check_s > 0)
        bg_timer_dispose(&w->timer);
    if (w->hup != NULL) {
        signal(SIGHUP, SIG_IGN);
        h2o_socket_close(w->hup); /* closes the read end */
        close(hup_pipe[1]);
        hup_pipe[0] = hup_pipe[1] = -1;
    }
    free(w->cert_file);
    free(w->key_file);
    free(w);
    s->tls_watch = NULL;
}
