#include "botgate/clock.h"
#include "botgate/access_log.h"
#include "botgate/error.h"
#include "botgate/jsonw.h"
#include "botgate/partition.h" /* bg_fnv1a64: request ids are random, any fair hash will do */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <h2o.h>

/*
 * Two buffers: the loop appends to `pending` under the mutex; the writer thread swaps it
 * with its own empty one and writes that without the lock. So the loop waits at most for
 * a swap, never for a write(2).
 *
 * The writer is not woken per line: a wake-up (a futex call and a context switch) would
 * cost more than the line. It wakes every FLUSH_MS, or at once when FLUSH_BYTES are
 * waiting, so a line reaches its destination within FLUSH_MS.
 */
#define FLUSH_MS 50
#define FLUSH_BYTES (256u << 10)
struct bg_access_log {
    int fd, own_fd;
    bg_log_level min_level;
    unsigned sample_1_in;
    unsigned long unsampled; /* lines without a request id, for the 1-in-N choice */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *pending;
    size_t pending_len;
    int stopping;
    bg_access_log_stats stats; /* under mu */
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *
bg_access_log_level_name(bg_log_level level)
{
    return level >= BG_LOG_DEBUG && level <= BG_LOG_ERROR ? level_names[level] : "info";
}

/* Writes all of p, retrying after a signal or a short write; -1 on any other failure. */
static int
write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void *
writer_main(void *arg)
{
    bg_access_log *log = arg;
    char *mine = malloc(BG_ACCESS_LOG_BUFFER);
    pthread_mutex_lock(&log->mu);
    for (;;) {
        while (log->pending_len < FLUSH_BYTES && !log->stopping) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += FLUSH_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&log->cv, &log->mu, &until) == ETIMEDOUT &&
                log->pending_len > 0)
                break;
        }
        if (log->pending_len == 0)
            break; /* stopping, and all written */
        size_t len = log->pending_len;
        if (mine != NULL) {
            char *t = log->pending;
            log->pending = mine;
            mine = t;
            log->pending_len = 0;
            pthread_mutex_unlock(&log->mu);
            int rc = write_all(log->fd, mine, len);
            pthread_mutex_lock(&log->mu);
            if (rc != 0)
                log->stats.write_errors++;
        } else {
            /* no second buffer: write under the lock (the loop waits); only after the
             * allocation above failed */
            if (write_all(log->fd, log->pending, len) != 0)
                log->stats.write_errors++;
            log->pending_len = 0;
        }
    }
    pthread_mutex_unlock(&log->mu);
    free(mine);
    return NULL;
}

/* Closes the file and frees what open made; the writer thread is not running. */
static void
log_free(bg_access_log *log)
{
    if (log->own_fd)
        close(log->fd);
    pthread_cond_destroy(&log->cv);
    pthread_mutex_destroy(&log->mu);
    free(log->pending);
    free(log);
}

int
bg_access_log_open(bg_access_log **out, const char *dest, bg_log_level min_level,
                   unsigned sample_1_in, char *why, size_t whylen)
{
    *out = NULL;
    if (strcmp(dest, "off") == 0)
        return 0;
    bg_access_log *log = calloc(1, sizeof(*log));
    if (log == NULL || (log->pending = malloc(BG_ACCESS_LOG_BUFFER)) == NULL) {
        free(log);
        snprintf(why, whylen, "out of memory");
        return BG_ENOMEM;
    }
    log->min_level = min_level;
    log->sample_1_in = sample_1_in > 0 ? sample_1_in : 1;
    if (strcmp(dest, "stdout") == 0) {
        log->fd = STDOUT_FILENO;
    } else if (strcmp(dest, "stderr") == 0) {
        log->fd = STDERR_FILENO;
    } else {
        log->fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (log->fd < 0) {
            snprintf(why, whylen, "cannot open %s: %s", dest, strerror(errno));
            free(log->pending);
            free(log);
            return BG_EIO;
        }
        log->own_fd = 1;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the timed wait's clock */
    pthread_mutex_init(&log->mu, NULL);
    pthread_cond_init(&log->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&log->thread, NULL, writer_main, log);
    if (rc != 0) {
        snprintf(why, whylen, "cannot start the writer thread: %s", strerror(rc));
        log_free(log);
        return BG_EIO;
    }
    *out = log;
    return 0;
}

void
bg_access_log_close(bg_access_log *log)
{
    if (log == NULL)
        return;
    pthread_mutex_lock(&log->mu);
    log->stopping = 1;
    pthread_cond_signal(&log->cv);
    pthread_mutex_unlock(&log->mu);
    pthread_join(log->thread, NULL);
    log_free(log);
}

int
bg_access_log_wants(bg_access_log *log, bg_log_level level, const char *request_id)
{
    if (log == NULL || level < log->min_level)
        return 0;
    if (level >= BG_LOG_WARN || log->sample_1_in == 1)
        return 1;
    if (request_id != NULL && request_id[0] != '\0')
        return bg_fnv1a64(request_id, strlen(request_id)) % log->sample_1_in == 0;
    return log->unsampled++ % log->sample_1_in == 0;
}

void
bg_access_log_write(bg_access_log *log, const char *line, size_t len)
{
    if (log == NULL)
        return;
    pthread_mutex_lock(&log->mu);
    if (log->pending_len + len > BG_ACCESS_LOG_BUFFER) {
        log->stats.dropped++;
    } else {
        memcpy(log->pending + log->pending_len, line, len);
        if (log->pending_len < FLUSH_BYTES && log->pending_len + len >= FLUSH_BYTES)
            pthread_cond_signal(&log->cv);
        log->pending_len += len;
        log->stats.written++;
    }
    pthread_mutex_unlock(&log->mu);
}

bg_access_log_stats
bg_access_log_get_stats(bg_access_log *log)
{
    bg_access_log_stats s = {0};
    if (log != NULL) {
        pthread_mutex_lock(&log->mu);
        s = log->stats;
        pthread_mutex_unlock(&log->mu);
    }
    return s;
}

/* ---- the lines -------------------------------------------------------------------------- */

bg_log_level
bg_access_request_level(const char *route, int status)
{
    if (status == 0 || (status >= 400 && status < 500))
        return BG_LOG_WARN;
    if (status >= 500)
        return BG_LOG_ERROR;
    if (route != NULL && strcmp(route, "messages") != 0 && strcmp(route, "other") != 0)
        return BG_LOG_DEBUG; /* a probe or a scrape that went well: every few seconds */
    return BG_LOG_INFO;
}

bg_log_level
bg_access_delivery_level(const char *outcome)
{
    if (outcome == NULL)
        return BG_LOG_INFO;
    if (strcmp(outcome, "dead") == 0 || strcmp(outcome, "failed") == 0)
        return BG_LOG_ERROR;
    if (strcmp(outcome, "retry") == 0 || strcmp(outcome, "rejected") == 0 ||
        strcmp(outcome, "abandoned") == 0)
        return BG_LOG_WARN;
    return BG_LOG_INFO;
}

/* bg_jsonw_time, with the date and time of the second formatted once a second: lines are
 * made on the event loop's thread alone. */
static void
line_time(char ts[28], int64_t us)
{
    static int64_t cached_sec = -1;
    static char prefix[20]; /* "2026-11-27T06:35:48" */
    int64_t sec = us / 1000000;
    if (sec != cached_sec) {
        bg_jsonw_time(ts, us);
        memcpy(prefix, ts, 19);
        cached_sec = sec;
        return;
    }
    memcpy(ts, prefix, 19);
    snprintf(ts + 19, 9, ".%06uZ", (unsigned)(us - sec * 1000000) % 1000000u);
}

/* The members every line starts with. */
static void
begin_line(bg_jsonw *w, char *buf, bg_log_level level, const char *kind)
{
    char ts[28];
    line_time(ts, bg_wall_us());
    bg_jsonw_begin(w, buf, BG_ACCESS_LOG_LINE);
    bg_jsonw_cstr(w, "ts", ts);
    bg_jsonw_cstr(w, "level", bg_access_log_level_name(level));
    bg_jsonw_cstr(w, "kind", kind);
}

static void
put_us(bg_jsonw *w, const char *key, int64_t us)
{
    if (us >= 0)
        bg_jsonw_int(w, key, us);
}

static void
put_slice(bg_jsonw *w, const char *key, bg_slice v)
{
    bg_jsonw_str(w, key, v.p, v.len);
}

static void
write_request(bg_access_log *log, bg_log_level level, const bg_access_request *r)
{
    char buf[BG_ACCESS_LOG_LINE];
    bg_jsonw w;
    begin_line(&w, buf, level, "request");
    bg_jsonw_cstr(&w, "request_id", r->request_id);
    bg_jsonw_cstr(&w, "route", r->route);
    bg_jsonw_cstr(&w, "method", r->method);
    bg_jsonw_cstr(&w, "protocol", r->protocol);
    bg_jsonw_cstr(&w, "remote", r->remote);
    bg_jsonw_int(&w, "status", r->status);
    bg_jsonw_cstr(&w, "code", r->code);
    bg_jsonw_cstr(&w, "activity_id", r->activity_id);
    bg_jsonw_cstr(&w, "activity_type", r->activity_type);
    bg_jsonw_cstr(&w, "channel_id", r->channel_id);
    bg_jsonw_cstr(&w, "conversation_id", r->conversation_id);
    bg_jsonw_cstr(&w, "token_cache", r->token_cache);
    if (r->duplicate)
        bg_jsonw_bool(&w, "duplicate", 1);
    bg_jsonw_int(&w, "bytes_in", r->bytes_in);
    put_us(&w, "headers_us", r->headers_us);
    put_us(&w, "body_us", r->body_us);
    put_us(&w, "keys_wait_us", r->keys_wait_us);
    put_us(&w, "auth_us", r->auth_us);
    put_us(&w, "enqueue_us", r->enqueue_us);
    put_us(&w, "bot_us", r->bot_us);
    put_us(&w, "total_us", r->total_us);
    bg_access_log_write(log, buf, bg_jsonw_end(&w));
}

void
bg_access_log_h2o_request(bg_access_log *log, bg_access_request *r, h2o_req_t *req)
{
    if (log == NULL)
        return;
    bg_log_level level = bg_access_request_level(r->route, req->res.status);
    if (!bg_access_log_wants(log, level, r->request_id))
        return;
    char method[16], remote[64];
    bg_access_request_from_h2o(r, req, method, remote);
    write_request(log, level, r);
}

void
bg_access_log_delivery(bg_access_log *log, const bg_access_delivery *d)
{
    bg_log_level level = bg_access_delivery_level(d->outcome);
    char rid[65];
    size_t rlen = d->request_id.len < sizeof(rid) - 1 ? d->request_id.len : sizeof(rid) - 1;
    if (rlen > 0)
        memcpy(rid, d->request_id.p, rlen);
    rid[rlen] = '\0';
    if (!bg_access_log_wants(log, level, rid))
        return;
    char buf[BG_ACCESS_LOG_LINE];
    bg_jsonw w;
    begin_line(&w, buf, level, d->kind != NULL ? d->kind : "delivery");
    put_slice(&w, "request_id", d->request_id);
    bg_jsonw_cstr(&w, "operation", d->operation);
    bg_jsonw_cstr(&w, "target", d->target);
    bg_jsonw_cstr(&w, "entry_id", d->entry_id);
    put_slice(&w, "activity_id", d->activity_id);
    put_slice(&w, "activity_type", d->activity_type);
    put_slice(&w, "channel_id", d->channel_id);
    put_slice(&w, "conversation_id", d->conversation_id);
    bg_jsonw_int(&w, "attempt", d->attempt);
    bg_jsonw_cstr(&w, "outcome", d->outcome);
    bg_jsonw_int(&w, "status", d->status);
    bg_jsonw_cstr(&w, "reason", d->reason);
    bg_jsonw_cstr(&w, "error", d->error);
    put_us(&w, "queue_wait_us", d->queue_wait_us);
    put_us(&w, "connect_us", d->connect_us);
    put_us(&w, "tls_us", d->tls_us);
    put_us(&w, "first_byte_us", d->first_byte_us);
    put_us(&w, "total_us", d->total_us);
    put_us(&w, "e2e_us", d->e2e_us);
    if (d->retry_in_ms >= 0)
        bg_jsonw_int(&w, "retry_in_ms", d->retry_in_ms);
    bg_access_log_write(log, buf, bg_jsonw_end(&w));
}

void
bg_access_request_from_h2o(bg_access_request *r, h2o_req_t *req, char method[16], char remote[64])
{
    size_t mlen = req->method.len < 15 ? req->method.len : 15;
    memcpy(method, req->method.base, mlen);
    method[mlen] = '\0';
    r->method = mlen > 0 ? method : NULL;
    r->protocol = req->version >= 0x200   ? "HTTP/2"
                  : req->version == 0x100 ? "HTTP/1.0"
                                          : "HTTP/1.1";
    struct sockaddr_storage ss;
    socklen_t sslen = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    r->remote = NULL;
    if (sslen != 0 && ss.ss_family == AF_INET)
        r->remote = inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, remote, 64);
    else if (sslen != 0 && ss.ss_family == AF_INET6)
        r->remote = inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, remote, 64);
    r->status = req->res.status;
    r->bytes_in = (int64_t)req->entity.len;
    int64_t us;
    r->headers_us = h2o_time_compute_header_time(req, &us) ? us : -1;
    r->body_us = h2o_time_compute_body_time(req, &us) ? us : -1;
    /* to now, on the real clock: h2o's own stamps are the loop's cached time, which would
     * make a request answered within one loop iteration take 0 µs. At dispose the answer
     * has been written (or the client has left). */
    if (!h2o_timeval_is_null(&req->timestamps.request_begin_at)) {
        struct timeval now;
        gettimeofday(&now, NULL);
        us = h2o_timeval_subtract(&req->timestamps.request_begin_at, &now);
        r->total_us = us > 0 ? us : 0;
    } else {
        r->total_us = -1;
    }
}
