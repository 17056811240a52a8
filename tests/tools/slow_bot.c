/*
 * slow_bot: a bot that takes its time, for the dispatcher's tests and benchmark.
 *
 *   slow_bot --dir DIR [--port PORT] [--listen ADDR] [--seed N] [--quiet]
 *
 * A real HTTP/1.1 server (h2o's evloop, plain HTTP, keep-alive, any number of concurrent
 * requests) standing where the bot's /api/messages would be. Every POST, to any path, is
 * recorded in DIR/received.jsonl when it arrives and answered after a delay that runs on the
 * event loop (a timer, never a sleep), so that a thousand slow answers cost a thousand timer
 * entries, not a thousand threads. What it answers is read from files in DIR on every
 * request, so that a test changes the bot's behaviour live, without a restart:
 *
 *   DIR/delay_ms          "N": every answer waits N ms; "random MIN MAX": uniform per request
 *   DIR/statuses          one answer a line, consumed in order; the last line repeats
 *   DIR/status_<id>       the same for the activity with that id; wins over DIR/statuses
 *   DIR/retry_after       sent as Retry-After with 429 and 503 answers
 *   DIR/body              the answer's body (Content-Type: application/json)
 *   DIR/hang              exists: requests are never answered (their connection stays open)
 *   DIR/ready             written once listening: the port and a newline; removed on exit
 *   DIR/received.jsonl    one line per request arrival, one per request end
 *
 * GET /stats answers {"received","in_flight","max_in_flight",...}; POST /stats/reset zeroes
 * the counters (max_in_flight restarts from the requests in flight). See tests/tools/README.md.
 */
#include "tool_common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <h2o.h>
#include <jansson.h>

#define PROG "slow_bot"
#define PATH_CAP TOOL_PATH_CAP
#define MAX_DELAY_MS 3600000L /* an hour: longer is a typo */
#define MAX_ENTITY (64u * 1024 * 1024)
#define WATCH_MS 50 /* how often held requests' sockets are checked for a client gone */
#define INVOKE_DEFAULT_BODY "{\"status\":200,\"body\":{\"ok\":true}}"

const char tool_prog[] = PROG;

static int64_t
wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the server's state ---------------------------------------------------------------------- */

/* What a request gets: an HTTP answer, nothing ever (hang), or its connection closed without
 * an answer (close). */
typedef enum action { ACT_ANSWER, ACT_HANG, ACT_CLOSE } action;

/*
 * A request not answered yet (delayed or hung). It lives in the request's pool with a dispose
 * callback (h2o_mem_alloc_shared), because the request may be freed first (its connection
 * closed): the callback then unlinks the timer entry and records the end as "gone", and
 * nothing touches the freed request afterwards. Once answered, `req` is NULL and the callback
 * only frees what is malloc'd.
 *
 * h2o 2.2's HTTP/1 does not read a connection while its request is being handled, so it would
 * notice a client that went away only when the answer fails to be written (never, for a hung
 * request). The watch (on_watch) therefore peeks at the sockets of held requests.
 */
typedef struct held {
    h2o_timeout_entry_t entry; /* in srv.base.delay_queue while the delay runs */
    h2o_linklist_t link;       /* in srv.held while req is not NULL */
    h2o_req_t *req;
    tool_conn *c; /* the request's connection; NULL when not found or already closed */
    unsigned long seq;
    char *activity_id; /* malloc'd; NULL when the activity had none */
    action act;
    int status;
    h2o_iovec_t body;        /* in the request's pool */
    h2o_iovec_t retry_after; /* in the request's pool; len 0 = none */
    int64_t t_us;            /* arrival, wall-clock µs */
} held;

typedef struct server {
    tool_server base; /* the listener, the connections, the delay queue (a one-shot timer of
                       * any delay, as H2O-NOTES describes) */
    bool quiet;
    h2o_linklist_t held; /* every request not answered yet */
    /* a fixed WATCH_MS queue holding one entry while requests are held: the watch */
    h2o_timeout_t watch_queue;
    h2o_timeout_entry_t watch;
    uint64_t rng;
    unsigned long seq; /* requests recorded since start (never reset): the "seq" of a line */
    int record_fd;     /* DIR/received.jsonl */
    unsigned long received, in_flight, max_in_flight, answered, closed, gone;
} server;

static server srv;

/* xorshift64*: random delays, reproducible with --seed. */
static uint64_t
next_random(void)
{
    srv.rng ^= srv.rng >> 12;
    srv.rng ^= srv.rng << 25;
    srv.rng ^= srv.rng >> 27;
    return srv.rng * 0x2545F4914F6CDD1DULL;
}

/* ---- behaviour files --------------------------------------------------------------------------
 */

/* DIR/delay_ms: "N" or "random MIN MAX" (milliseconds); absent or unreadable = 0. */
static long
delay_ms(void)
{
    char path[PATH_CAP];
    char *text = tool_read_file(tool_join(path, srv.base.dir, "delay_ms"), NULL, NULL);
    if (text == NULL)
        return 0;
    long ms = 0, lo, hi;
    if (sscanf(text, " random %ld %ld", &lo, &hi) == 2) {
        if (lo < 0)
            lo = 0;
        if (hi > MAX_DELAY_MS)
            hi = MAX_DELAY_MS;
        ms = hi > lo ? lo + (long)(next_random() % (uint64_t)(hi - lo + 1)) : lo;
    } else if (sscanf(text, " %ld", &ms) != 1) {
        fprintf(stderr, PROG ": %s: not \"N\" nor \"random MIN MAX\", no delay\n", path);
        ms = 0;
    }
    free(text);
    return ms < 0 ? 0 : ms > MAX_DELAY_MS ? MAX_DELAY_MS : ms;
}

/* A line of a statuses file that says something: not blank, not a '#' comment. */
static bool
meaningful(const char *line, size_t len)
{
    while (len > 0 && (*line == ' ' || *line == '\t' || *line == '\r')) {
        line++;
        len--;
    }
    return len > 0 && *line != '#';
}

/* Parses one statuses line: an HTTP status (200..599), "hang" or "close". */
static void
parse_token(const char *line, size_t len, const char *path, action *act, int *status)
{
    char word[32];
    size_t i = 0;
    while (len > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    while (i < len && i < sizeof(word) - 1 && line[i] != ' ' && line[i] != '\t' &&
           line[i] != '\r' && line[i] != '#') {
        word[i] = line[i];
        i++;
    }
    word[i] = '\0';
    *act = ACT_ANSWER;
    if (strcmp(word, "hang") == 0) {
        *act = ACT_HANG;
        return;
    }
    if (strcmp(word, "close") == 0) {
        *act = ACT_CLOSE;
        return;
    }
    char *end;
    long v = strtol(word, &end, 10);
    if (end == word || *end != '\0' || v < 200 || v > 599) {
        fprintf(stderr, PROG ": %s: '%s' is no status (200..599, hang, close): answering 500\n",
                path, word);
        v = 500;
    }
    *status = (int)v;
}

/*
 * Takes the first meaningful line of a statuses file and removes it from the file, unless it
 * is the last one, which stays and repeats. The event loop is one thread, so the requests
 * consume the lines in the order they arrived. Returns false when the file is absent or holds
 * no meaningful line.
 */
static bool
consume_status(const char *path, action *act, int *status)
{
    size_t len;
    struct stat read_st, now_st;
    char *text = tool_read_file(path, &len, &read_st);
    if (text == NULL)
        return false;
    const char *first = NULL, *rest = NULL;
    size_t first_len = 0;
    for (const char *p = text; p < text + len;) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(text + len - p);
        if (meaningful(p, n)) {
            if (first == NULL) {
                first = p;
                first_len = n;
            } else {
                rest = first + first_len + (first[first_len] == '\n');
                break;
            }
        }
        p += n + (nl != NULL);
    }
    if (first == NULL) {
        free(text);
        return false;
    }
    parse_token(first, first_len, path, act, status);
    /* More lines follow: this one is used up, unless the test replaced or rewrote the file
     * meanwhile (its new sequence wins; this request had the old one's first line). */
    if (rest != NULL && stat(path, &now_st) == 0 && now_st.st_ino == read_st.st_ino &&
        now_st.st_size == read_st.st_size && now_st.st_mtim.tv_sec == read_st.st_mtim.tv_sec &&
        now_st.st_mtim.tv_nsec == read_st.st_mtim.tv_nsec)
        tool_write_file_atomic(path, rest, (size_t)(text + len - rest), 0644);
    free(text);
    return true;
}

/* An activity id usable in a file name: not empty, no '/', not "." nor "..", not too long. */
static bool
id_fits_file_name(const char *id)
{
    size_t n = strlen(id);
    return n > 0 && n <= 200 && strchr(id, '/') == NULL && strcmp(id, ".") != 0 &&
           strcmp(id, "..") != 0;
}

/* The answer for the request with this activity id: DIR/hang, else DIR/status_<id>, else
 * DIR/statuses, else 200. Only the file that decides is consumed. */
static void
choose_answer(const char *activity_id, action *act, int *status)
{
    char path[PATH_CAP], name[PATH_CAP];
    *act = ACT_ANSWER;
    *status = 200;
    if (tool_exists(tool_join(path, srv.base.dir, "hang"))) {
        *act = ACT_HANG;
        return;
    }
    if (activity_id != NULL && id_fits_file_name(activity_id)) {
        snprintf(name, sizeof(name), "status_%s", activity_id);
        if (consume_status(tool_join(path, srv.base.dir, name), act, status))
            return;
    }
    consume_status(tool_join(path, srv.base.dir, "statuses"), act, status);
}

/* The text of DIR/<name> copied into the request's pool, trailing blanks and newlines cut
 * when `trim`; len 0 when absent. */
static h2o_iovec_t
file_in_pool(h2o_req_t *req, const char *name, bool trim, bool *present)
{
    char path[PATH_CAP];
    size_t len = 0;
    char *text = tool_read_file(tool_join(path, srv.base.dir, name), &len, NULL);
    if (present != NULL)
        *present = text != NULL;
    if (text == NULL)
        return h2o_iovec_init(NULL, 0);
    while (trim && len > 0 && strchr(" \t\r\n", text[len - 1]) != NULL)
        len--;
    h2o_iovec_t v = h2o_strdup(&req->pool, text, len);
    free(text);
    return v;
}

/* ---- the record: DIR/received.jsonl -------------------------------------------------------- */

/* Appends one or two JSON lines (second may be NULL) to DIR/received.jsonl in one write(),
 * before the answer they describe is sent, so that a test that has its answer finds the lines
 * in the file. The file stays open (O_APPEND): a test that wants a fresh record truncates it;
 * a removed file would go on receiving the lines unseen. */
static void
record_lines(json_t *first, json_t *second)
{
    char *a = json_dumps(first, JSON_COMPACT);
    char *b = second != NULL ? json_dumps(second, JSON_COMPACT) : NULL;
    json_decref(first);
    json_decref(second);
    size_t na = a != NULL ? strlen(a) : 0, nb = b != NULL ? strlen(b) : 0;
    char *out = malloc(na + nb + 2);
    if (a != NULL && (second == NULL || b != NULL) && out != NULL) {
        memcpy(out, a, na);
        out[na] = '\n';
        size_t n = na + 1;
        if (b != NULL) {
            memcpy(out + n, b, nb);
            out[n + nb] = '\n';
            n += nb + 1;
        }
        if (tool_write_all(srv.record_fd, out, n) != 0)
            fprintf(stderr, PROG ": append to received.jsonl: %s\n", strerror(errno));
    } else {
        fprintf(stderr, PROG ": out of memory for a received.jsonl line\n");
    }
    free(out);
    free(a);
    free(b);
}

static json_t *
json_str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

/* Bytes from the wire as a JSON string; jansson refuses to dump what is not UTF-8. */
static json_t *
json_bytes(const char *p, size_t n)
{
    json_t *s = json_stringn(p, n);
    return s != NULL ? s : json_string("(not UTF-8)");
}

/* A header's value as a JSON integer when it is one, else as a string; null when absent. */
static json_t *
header_json(h2o_req_t *req, const char *lower_name, size_t name_len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, lower_name, name_len, -1);
    if (i < 0)
        return json_null();
    h2o_iovec_t v = req->headers.entries[i].value;
    char text[64];
    if (v.len > 0 && v.len < sizeof(text)) {
        memcpy(text, v.base, v.len);
        text[v.len] = '\0';
        char *end;
        errno = 0;
        long long n = strtoll(text, &end, 10);
        if (errno == 0 && *end == '\0' && (text[0] == '-' || (text[0] >= '0' && text[0] <= '9')))
            return json_integer((json_int_t)n);
    }
    return json_bytes(v.base, v.len);
}

static const char *
action_name(action a)
{
    return a == ACT_HANG ? "hang" : a == ACT_CLOSE ? "close" : "answer";
}

/* The line that ends a request: "answered" (status sent), "closed" (closed without an answer, as
 * the statuses file said), "gone" (the client went away first), "dropped" (slow_bot stopped). */
static json_t *
end_line(unsigned long seq, const char *activity_id, const char *outcome, int status)
{
    return json_pack("{s:b,s:I,s:o,s:I,s:s,s:o}", "done", 1, "seq", (json_int_t)seq, "activity_id",
                     json_str_or_null(activity_id), "t_us", (json_int_t)wall_us(), "outcome",
                     outcome, "status", status > 0 ? json_integer(status) : json_null());
}

static void
record_end(unsigned long seq, const char *activity_id, const char *outcome, int status)
{
    record_lines(end_line(seq, activity_id, outcome, status), NULL);
}

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line to stderr, stamped with the wall-clock time (UTC), unless --quiet. */
static void
log_line(const char *fmt, ...)
{
    if (srv.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    tool_vlog(fmt, ap);
    va_end(ap);
}

/* ---- answering ----------------------------------------------------------------------------- */

/* Sends status and body; Content-Type only with a body (a real bot answers a message with an
 * empty 200), Retry-After only with 429 and 503. */
static void
send_answer(h2o_req_t *req, int status, h2o_iovec_t body, h2o_iovec_t retry_after)
{
    bool bodiless = status == 204 || status == 304 || (status >= 100 && status < 200);
    if (bodiless)
        body = h2o_iovec_init(NULL, 0);
    req->res.status = status;
    req->res.reason = tool_reason(status);
    req->res.content_length = body.len;
    if (body.len > 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/json"));
    if ((status == 429 || status == 503) && retry_after.len > 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, retry_after.base,
                       retry_after.len);
    h2o_send_inline(req, body.base, body.len);
}

static void
end_in_flight(void)
{
    if (srv.in_flight > 0)
        srv.in_flight--;
}

/* The connection a request came on, by its peer address. */
static tool_conn *
conn_of(h2o_req_t *req)
{
    struct sockaddr_storage want;
    socklen_t wlen = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&want);
    if (wlen == 0)
        return NULL;
    for (h2o_linklist_t *l = srv.base.conns.next; l != &srv.base.conns; l = l->next) {
        tool_conn *c = H2O_STRUCT_FROM_MEMBER(tool_conn, link, l);
        if (c->peer_len == wlen && memcmp(&c->peer, &want, wlen) == 0)
            return c;
    }
    return NULL;
}

/* Ends a request without an answer: both directions of its socket shut, then an answer that
 * cannot be written, so that h2o, which is not reading the socket, fails the write, closes
 * the connection and frees the request. The client sees the connection closed before any
 * response byte. */
static void
close_without_answer(h2o_req_t *req, tool_conn *c)
{
    if (c != NULL)
        shutdown(h2o_socket_get_fd(c->sock), SHUT_RDWR);
    else
        fprintf(stderr, PROG ": no socket found for a request to close\n");
    send_answer(req, 500, h2o_iovec_init(NULL, 0), h2o_iovec_init(NULL, 0));
}

typedef enum ending { END_DUE, END_GONE, END_DROP } ending;

/* Finishes a held request: its delay is over (the answer, or the close the statuses file
 * asked for), its client went away, or slow_bot stops. Unlinks it first, so that the dispose
 * callback that h2o may run inside the send finds nothing left to do. */
static void
finish_held(held *h, ending why)
{
    h2o_req_t *req = h->req;
    if (h2o_timeout_is_linked(&h->entry))
        h2o_timeout_unlink(&h->entry);
    h2o_linklist_unlink(&h->link);
    h->req = NULL;
    end_in_flight();
    int64_t took = (wall_us() - h->t_us) / 1000;
    const char *id = h->activity_id != NULL ? h->activity_id : "-";
    if (why == END_DUE && h->act == ACT_ANSWER) {
        srv.answered++;
        record_end(h->seq, h->activity_id, "answered", h->status);
        log_line("#%lu id=%s answered %d after %" PRId64 " ms", h->seq, id, h->status, took);
        send_answer(req, h->status, h->body, h->retry_after);
        return;
    }
    if (why == END_GONE) {
        srv.gone++;
        record_end(h->seq, h->activity_id, "gone", 0);
        log_line("#%lu id=%s: the client went away before the answer (%" PRId64 " ms)", h->seq, id,
                 took);
    } else {
        srv.closed++;
        record_end(h->seq, h->activity_id, why == END_DROP ? "dropped" : "closed", 0);
        log_line("#%lu id=%s closed without an answer%s after %" PRId64 " ms", h->seq, id,
                 why == END_DROP ? " (stopping)" : "", took);
    }
    close_without_answer(req, h->c);
}

/* A client that closed its connection (read end-of-file) or whose connection failed. Bytes
 * waiting (a pipelined request) mean it is still there. */
static bool
client_gone(tool_conn *c)
{
    char byte;
    ssize_t r = recv(h2o_socket_get_fd(c->sock), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void
arm_watch(void)
{
    if (!h2o_timeout_is_linked(&srv.watch) && !h2o_linklist_is_empty(&srv.held))
        h2o_timeout_link(srv.base.loop, &srv.watch_queue, &srv.watch);
}

/* Every WATCH_MS while requests are held: ends those whose client went away. */
static void
on_watch(h2o_timeout_entry_t *entry)
{
    (void)entry;
    h2o_linklist_t *l = srv.held.next;
    while (l != &srv.held) {
        held *h = H2O_STRUCT_FROM_MEMBER(held, link, l);
        l = l->next;
        if (h->c != NULL && client_gone(h->c))
            finish_held(h, END_GONE);
    }
    arm_watch();
}

static void
on_held_due(h2o_timeout_entry_t *entry)
{
    finish_held(H2O_STRUCT_FROM_MEMBER(held, entry, entry), END_DUE);
}

/* The request's pool is being freed: after the answer (nothing to do but free), or because
 * the client went away while the answer was held (or hung). */
static void
on_held_dispose(void *data)
{
    held *h = data;
    if (h->req != NULL) {
        if (h2o_timeout_is_linked(&h->entry))
            h2o_timeout_unlink(&h->entry);
        h2o_linklist_unlink(&h->link);
        h->req = NULL;
        end_in_flight();
        if (srv.base.stopping)
            srv.closed++;
        else
            srv.gone++;
        record_end(h->seq, h->activity_id, srv.base.stopping ? "dropped" : "gone", 0);
        log_line("#%lu id=%s: the client went away before the answer (%" PRId64 " ms)", h->seq,
                 h->activity_id != NULL ? h->activity_id : "-", (wall_us() - h->t_us) / 1000);
    }
    free(h->activity_id);
}

/* Holds req until its arrival + delay (hang: until the client goes away or slow_bot stops).
 * h2o's loop time is gettimeofday() in ms, cached when the loop wakes: the due time is
 * counted from the request's own arrival (rounded up), not from that cached time, which
 * lags behind under load and would make answers early. */
static void
hold(held *h, long delay)
{
    h2o_linklist_insert(&srv.held, &h->link);
    arm_watch();
    if (h->act == ACT_HANG)
        return;
    h->entry.cb = on_held_due;
    tool_server_schedule(&srv.base, &h->entry, (uint64_t)(h->t_us + 999) / 1000 + (uint64_t)delay);
}

/* ---- requests ---------------------------------------------------------------------------------
 */

static void
send_json(h2o_req_t *req, int status, const char *json)
{
    h2o_iovec_t body = h2o_strdup(&req->pool, json, SIZE_MAX);
    send_answer(req, status, body, h2o_iovec_init(NULL, 0));
}

static void
on_stats(h2o_req_t *req, bool reset)
{
    if (reset) {
        srv.received = srv.answered = srv.closed = srv.gone = 0;
        srv.max_in_flight = srv.in_flight;
    }
    char json[256];
    snprintf(json, sizeof(json),
             "{\"received\":%lu,\"in_flight\":%lu,\"max_in_flight\":%lu,\"answered\":%lu,"
             "\"closed\":%lu,\"gone\":%lu}",
             srv.received, srv.in_flight, srv.max_in_flight, srv.answered, srv.closed, srv.gone);
    send_json(req, 200, json);
}

/* The fields of the activity that the record keeps; borrowed from doc (may be NULL). */
typedef struct activity_fields {
    const char *id, *conversation_id, *type, *name, *delivery_mode;
} activity_fields;

static activity_fields
activity_of(json_t *doc)
{
    activity_fields a = {
        .id = json_string_value(json_object_get(doc, "id")),
        .conversation_id =
            json_string_value(json_object_get(json_object_get(doc, "conversation"), "id")),
        .type = json_string_value(json_object_get(doc, "type")),
        .name = json_string_value(json_object_get(doc, "name")),
        .delivery_mode = json_string_value(json_object_get(doc, "deliveryMode")),
    };
    return a;
}

/* A POST: recorded at once, then answered now, later, or never, as DIR says. */
static void
on_activity(h2o_req_t *req)
{
    int64_t t_us = wall_us();
    unsigned long seq = ++srv.seq;
    srv.received++;
    if (++srv.in_flight > srv.max_in_flight)
        srv.max_in_flight = srv.in_flight;

    json_t *doc = json_loadb(req->entity.base, req->entity.len, 0, NULL);
    activity_fields a = activity_of(doc);
    action act;
    int status;
    choose_answer(a.id, &act, &status);
    long delay = act == ACT_HANG ? 0 : delay_ms();
    bool invoke = a.type != NULL && strcmp(a.type, "invoke") == 0;
    bool has_body;
    h2o_iovec_t body = file_in_pool(req, "body", false, &has_body);
    if (!has_body && invoke)
        body = h2o_iovec_init(H2O_STRLIT(INVOKE_DEFAULT_BODY));
    h2o_iovec_t retry_after = status == 429 || status == 503
                                  ? file_in_pool(req, "retry_after", true, NULL)
                                  : h2o_iovec_init(NULL, 0);

    ssize_t auth = h2o_find_header_by_str(&req->headers, H2O_STRLIT("authorization"), -1);
    json_t *line = json_object();
    json_object_set_new(line, "seq", json_integer((json_int_t)seq));
    json_object_set_new(line, "t_us", json_integer((json_int_t)t_us));
    json_object_set_new(line, "path", json_bytes(req->path.base, req->path.len));
    json_object_set_new(line, "activity_id", json_str_or_null(a.id));
    json_object_set_new(line, "conversation_id", json_str_or_null(a.conversation_id));
    json_object_set_new(line, "type", json_str_or_null(a.type));
    json_object_set_new(line, "name", json_str_or_null(a.name));
    json_object_set_new(line, "delivery_mode", json_str_or_null(a.delivery_mode));
    json_object_set_new(line, "attempt", header_json(req, H2O_STRLIT("x-botgate-attempt")));
    json_object_set_new(line, "received_at", header_json(req, H2O_STRLIT("x-botgate-received-at")));
    json_object_set_new(line, "authorization", json_boolean(auth >= 0));
    json_object_set_new(line, "body_len", json_integer((json_int_t)req->entity.len));
    json_object_set_new(line, "action", json_string(action_name(act)));
    json_object_set_new(line, "status", act == ACT_ANSWER ? json_integer(status) : json_null());
    json_object_set_new(line, "delay_ms", act == ACT_HANG ? json_null() : json_integer(delay));
    json_object_set_new(line, "in_flight", json_integer((json_int_t)srv.in_flight));

    const char *id = a.id != NULL ? a.id : "-";
    if (act == ACT_ANSWER)
        log_line("#%lu POST %.*s id=%s conv=%s type=%s: %d in %ld ms (%lu in flight)", seq,
                 (int)req->path.len, req->path.base, id,
                 a.conversation_id != NULL ? a.conversation_id : "-", a.type != NULL ? a.type : "-",
                 status, delay, srv.in_flight);
    else
        log_line("#%lu POST %.*s id=%s conv=%s type=%s: %s%s (%lu in flight)", seq,
                 (int)req->path.len, req->path.base, id,
                 a.conversation_id != NULL ? a.conversation_id : "-", a.type != NULL ? a.type : "-",
                 action_name(act), act == ACT_CLOSE ? " without an answer" : " (never answered)",
                 srv.in_flight);

    if (act == ACT_ANSWER && delay == 0) {
        end_in_flight();
        srv.answered++;
        record_lines(line, end_line(seq, a.id, "answered", status));
        json_decref(doc);
        send_answer(req, status, body, retry_after);
        return;
    }
    record_lines(line, NULL);
    held *h = h2o_mem_alloc_shared(&req->pool, sizeof(*h), on_held_dispose);
    *h = (held){.req = req,
                .c = conn_of(req),
                .seq = seq,
                .activity_id = a.id != NULL ? strdup(a.id) : NULL,
                .act = act,
                .status = status,
                .body = body,
                .retry_after = retry_after,
                .t_us = t_us};
    json_decref(doc);
    hold(h, delay);
}

static int
on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    bool is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    bool is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    /* the test's own window: not recorded, not counted, never slow */
    if (tool_path_is(req, "/stats") && is_get) {
        on_stats(req, false);
    } else if (tool_path_is(req, "/stats/reset") && is_post) {
        on_stats(req, true);
    } else if (is_post && !srv.base.stopping) {
        on_activity(req);
    } else if (is_post) {
        send_json(req, 503, "{\"error\":\"stopping\"}");
    } else {
        send_json(req, 405, "{\"error\":\"a bot takes POST (and GET /stats)\"}");
    }
    return 0;
}

/* ---- connections ------------------------------------------------------------------------------
 */

/* A connection closes: the held requests that came on it lose their socket. */
static void
on_conn_close(tool_conn *c)
{
    for (h2o_linklist_t *l = srv.held.next; l != &srv.held; l = l->next) {
        held *h = H2O_STRUCT_FROM_MEMBER(held, link, l);
        if (h->c == c)
            h->c = NULL;
    }
}

/* The stop: no new connections; held and hung requests dropped (their connections closed
 * without an answer, as a bot that is killed would); the other connections asked to close,
 * then idle keep-alive ones (libcurl's pool in botgate) cut, so that every allocation is
 * returned before exit and ASan's leak check has nothing to report. */
static void
stop_server(void)
{
    tool_server_stop_listening(&srv.base);
    size_t dropped = tool_list_count(&srv.held);
    while (!h2o_linklist_is_empty(&srv.held))
        finish_held(H2O_STRUCT_FROM_MEMBER(held, link, srv.held.next), END_DROP);
    tool_server_close_conns(&srv.base);
    if (dropped > 0)
        fprintf(stderr, PROG ": dropped %zu requests that were not answered yet\n", dropped);
}

/* Many concurrent requests need many descriptors: the soft limit goes up to the hard one. */
static void
raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

typedef struct serve_opts {
    const char *dir;
    const char *listen;
    int port;
    bool seeded;
    uint64_t seed;
    bool quiet;
} serve_opts;

static int
serve(const serve_opts *o)
{
    if (tool_mkdir(o->dir) != 0)
        return 1;

    memset(&srv, 0, sizeof(srv));
    srv.record_fd = -1;
    srv.quiet = o->quiet;
    srv.rng = o->seed;
    if (!o->seeded && getrandom(&srv.rng, sizeof(srv.rng), 0) != sizeof(srv.rng))
        srv.rng = (uint64_t)wall_us() ^ (uint64_t)getpid() << 32;
    if (srv.rng == 0) /* xorshift's one bad state */
        srv.rng = 0x9E3779B97F4A7C15ULL;
    h2o_linklist_init_anchor(&srv.held);
    raise_fd_limit();

    /* plain HTTP/1.1, as a bot behind botgate listens */
    tool_server_init(&srv.base, o->dir, on_req, NULL, MAX_ENTITY);
    srv.base.on_conn_close = on_conn_close;
    h2o_timeout_init(srv.base.loop, &srv.watch_queue, WATCH_MS);
    srv.watch.cb = on_watch;

    int status = 1;
    char path[PATH_CAP];
    srv.record_fd = open(tool_join(path, o->dir, "received.jsonl"),
                         O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (srv.record_fd < 0) {
        fprintf(stderr, PROG ": open %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (tool_server_start(&srv.base, o->listen, o->port) != 0)
        goto out;
    fprintf(stderr, PROG ": listening on http://%s:%d (any path; GET /stats), files in %s\n",
            srv.base.host, srv.base.port, o->dir);

    int sig = tool_server_run(&srv.base);
    if (sig < 0)
        goto out;
    fprintf(stderr, PROG ": %s: stopping (%lu requests recorded, %lu in flight)\n", strsignal(sig),
            srv.seq, srv.in_flight);
    status = 0;
out:
    stop_server();
    if (h2o_timeout_is_linked(&srv.watch))
        h2o_timeout_unlink(&srv.watch);
    h2o_timeout_dispose(srv.base.loop, &srv.watch_queue);
    tool_server_dispose(&srv.base);
    if (srv.record_fd >= 0)
        close(srv.record_fd);
    return status;
}

/* ---- command line -------------------------------------------------------------------------------
 */

static void
usage(FILE *f)
{
    fprintf(f, "usage: " PROG " --dir DIR [--port PORT] [--listen ADDR] [--seed N] [--quiet]\n"
               "See tests/tools/README.md.\n");
}

static bool
number(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)
        return false;
    *out = v;
    return true;
}

int
main(int argc, char **argv)
{
    enum { O_DIR = 1000, O_PORT, O_LISTEN, O_SEED, O_QUIET, O_HELP };
    static const struct option opts[] = {{"dir", required_argument, NULL, O_DIR},
                                         {"port", required_argument, NULL, O_PORT},
                                         {"listen", required_argument, NULL, O_LISTEN},
                                         {"seed", required_argument, NULL, O_SEED},
                                         {"quiet", no_argument, NULL, O_QUIET},
                                         {"help", no_argument, NULL, O_HELP},
                                         {NULL, 0, NULL, 0}};
    serve_opts o = {.listen = "127.0.0.1", .port = 0};
    int c;
    unsigned long long v;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_DIR:
            o.dir = optarg;
            break;
        case O_PORT:
            if (!number(optarg, 65535, &v)) {
                fprintf(stderr, PROG ": --port: bad number '%s'\n", optarg);
                return 2;
            }
            o.port = (int)v;
            break;
        case O_LISTEN:
            o.listen = optarg;
            break;
        case O_SEED:
            if (!number(optarg, UINT64_MAX, &v)) {
                fprintf(stderr, PROG ": --seed: bad number '%s'\n", optarg);
                return 2;
            }
            o.seed = v;
            o.seeded = true;
            break;
        case O_QUIET:
            o.quiet = true;
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o.dir == NULL) {
        fprintf(stderr, PROG ": --dir DIR is required\n");
        usage(stderr);
        return 2;
    }
    return serve(&o);
}
