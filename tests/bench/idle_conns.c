/*
 * idle_conns: holds N keep-alive TLS connections open to a server, for botgate's benchmark
 * (tests/bench/run.sh, target `idle`: 1,000 idle connections beside the wrk load).
 *
 *   idle_conns HOST PORT N READY_FILE [PING_S]
 *
 * Opens N TCP connections to HOST:PORT, completes a TLS handshake on each (the server's
 * certificate is not checked: loopback, the benchmark's own self-signed one) and sends one
 * `GET /healthz` on each, reading its answer: each is then an established HTTP/1.1
 * keep-alive connection, as the Connector's pooled ones are between two activities. Then
 * writes "N" to READY_FILE and keeps them open until SIGTERM or SIGINT.
 *
 * A server closes a keep-alive connection that stays silent past its idle timeout (h2o's
 * default, botgate's: 10 s). So that the connections stay open for the whole measurement,
 * each one sends another `GET /healthz` every PING_S seconds (default 5; 0: never),
 * spread evenly: N / PING_S small requests a second in all (200/s for 1,000 and 5 s),
 * nothing next to the load. A connection found closed by the server is reopened and
 * counted. On exit prints one line for the benchmark:
 *
 *   IDLE opened=N open=K reopened=R pings=P errors=E
 *
 * where `open` is how many of the N were open and answering at the end. Blocking I/O, one
 * thread: this is a client for a benchmark, not part of botgate. Exit status 0, or 1 when
 * the N connections could not be opened at the start.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    SSL *ssl;
} conn;

static volatile sig_atomic_t stop;
static const char *host;
static const char *port;
static SSL_CTX *ctx;
static struct addrinfo *addr;

static void
on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void
conn_close(conn *c)
{
    if (c->ssl != NULL)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}

/* One GET /healthz and its whole answer (headers, then Content-Length bytes of body).
 * Returns 0 on a 2xx answer, -1 otherwise (the connection is then closed). */
static int
conn_ping(conn *c)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    char buf[4096];
    size_t got = 0;
    if (SSL_write(c->ssl, req, (int)sizeof(req) - 1) != (int)sizeof(req) - 1)
        goto fail;
    for (;;) {
        if (got == sizeof(buf) - 1)
            goto fail;
        int n = SSL_read(c->ssl, buf + got, (int)(sizeof(buf) - 1 - got));
        if (n <= 0)
            goto fail;
        got += (size_t)n;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end == NULL)
            continue;
        size_t head = (size_t)(end + 4 - buf);
        long len = 0;
        char *cl = strcasestr(buf, "\r\ncontent-length:");
        if (cl != NULL && cl < end)
            len = strtol(cl + 17, NULL, 10);
        if (len < 0 || len > (long)(sizeof(buf) - 1 - head))
            goto fail;
        if (got < head + (size_t)len)
            continue;
        if (got > head + (size_t)len || strncmp(buf, "HTTP/1.1 2", 10) != 0)
            goto fail;
        return 0;
    }
fail:
    conn_close(c);
    return -1;
}

static int
conn_open(conn *c)
{
    c->fd = socket(addr->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    c->ssl = NULL;
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(c->fd, addr->ai_addr, addr->ai_addrlen) != 0)
        goto fail;
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_connect(c->ssl) != 1)
        goto fail;
    return conn_ping(c);
fail:
    conn_close(c);
    return -1;
}

/* Whether the server closed c (or sent something unasked): readable while idle. */
static int
conn_closed_by_peer(const conn *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0 || SSL_pending(c->ssl) > 0;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: idle_conns HOST PORT N READY_FILE [PING_S]\n");
        return 2;
    }
    host = argv[1];
    port = argv[2];
    long n = strtol(argv[3], NULL, 10);
    double ping_s = argc == 6 ? strtod(argv[5], NULL) : 5.0;
    if (n < 1 || n > 100000 || ping_s < 0) {
        fprintf(stderr, "idle_conns: N in [1, 100000], PING_S >= 0\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max : (rlim_t)n + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (getaddrinfo(host, port, &hints, &addr) != 0) {
        fprintf(stderr, "idle_conns: cannot resolve %s:%s\n", host, port);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return 1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);

    conn *cs = calloc((size_t)n, sizeof(*cs));
    if (cs == NULL)
        return 1;
    long opened = 0, reopened = 0, pings = 0, errors = 0;
    for (long i = 0; i < n && !stop; i++) {
        if (conn_open(&cs[i]) != 0) {
            unsigned long e = ERR_get_error();
            fprintf(stderr, "idle_conns: connection %ld of %ld to %s:%s failed: %s\n", i + 1, n,
                    host, port, e != 0 ? ERR_reason_error_string(e) : strerror(errno));
            return 1;
        }
        opened++;
    }
    FILE *f = fopen(argv[4], "w");
    if (f == NULL || fprintf(f, "%ld\n", opened) < 0 || fclose(f) != 0) {
        fprintf(stderr, "idle_conns: cannot write %s\n", argv[4]);
        return 1;
    }

    /* Round robin: connection i is pinged every ping_s seconds, one every ping_s / n. */
    double step = ping_s > 0 ? ping_s / (double)n : 0.2;
    double next = now_s() + step;
    long i = 0;
    while (!stop) {
        double wait = next - now_s();
        if (wait > 0) {
            struct timespec ts = {.tv_sec = (time_t)wait,
                                  .tv_nsec = (long)((wait - (long)wait) * 1e9)};
            nanosleep(&ts, NULL);
            continue;
        }
        next += step;
        if (ping_s == 0)
            continue;
        conn *c = &cs[i];
        i = (i + 1) % n;
        if (c->fd < 0 || conn_closed_by_peer(c)) {
            conn_close(c);
            if (conn_open(c) != 0)
                errors++;
            else
                reopened++;
            continue;
        }
        pings++;
        if (conn_ping(c) != 0)
            errors++;
    }

    /* The end: how many of them are still open and answering. */
    long open = 0;
    for (long k = 0; k < n; k++) {
        if (cs[k].fd >= 0 && !conn_closed_by_peer(&cs[k]) && conn_ping(&cs[k]) == 0)
            open++;
        conn_close(&cs[k]);
    }
    printf("IDLE opened=%ld open=%ld reopened=%ld pings=%ld errors=%ld\n", opened, open, reopened,
           pings, errors);
    free(cs);
    SSL_CTX_free(ctx);
    freeaddrinfo(addr);
    return 0;
}
