/*
 * The access log, end to end (issue 5, items 1 and 2; README.md, "Operating botgate"): a
 * real botgate (authentication on, against the fake Connector; its dispatcher delivering
 * to the slow bot) writing log.access to a file, and the lines read back.
 *
 * Under test: one JSON line per request and one per delivery attempt; every line parses;
 * each carries the request id that X-Request-Id returned, the activity's id, type,
 * channel and conversation, the status and the error code, the timings (auth, with the
 * token cache's hit or miss; the Redis round trip; libcurl's times for an attempt; the
 * whole way to the bot's 2xx); the token and the body never appear; log.level drops the
 * lines under it; log.access_sample_1_in keeps exactly the request ids it says (the test
 * computes the same hash); a destination that does not read (a FIFO nobody empties) does
 * not stop botgate answering, and the lines arrive once it reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

#define APP_ID "5b0e9f0a-7c1d-4e2a-8f3b-6a5d4c3b2a19"
#define SERVICE_URL BGT_CONNECTOR_SERVICE_URL
#define MARKER "do-not-log-this-text-7f3a"

static bgt_env env;
static char cert[BGT_PATH_MAX], key[BGT_PATH_MAX];
static bgt_redis redis;
static char conn_dir[BGT_PATH_MAX], bot_dir[BGT_PATH_MAX];
static int conn_port, bot_port;

static bgt_botgate gate;
static char base[64], log_path[BGT_PATH_MAX];

/* each test's own botgate (teardown kills it) */
static bgt_botgate local_gate;

/* ---- helpers ------------------------------------------------------------------------------ */

/* Every line of path, parsed; the test fails on a line that is not one JSON object ending
 * in "\n" (a partial last line is left for the next read). A JSON array, owned by the
 * caller. */
static json_t *
read_lines(const char *path)
{
    json_t *lines = json_array();
    size_t len = 0;
    char *text = bgt_read_file(path, &len);
    if (text == NULL)
        return lines;
    char *p = text;
    for (char *nl; (nl = memchr(p, '\n', len - (size_t)(p - text))) != NULL; p = nl + 1) {
        json_error_t err;
        json_t *v = json_loadb(p, (size_t)(nl - p), 0, &err);
        if (v == NULL || !json_is_object(v))
            fail_msg("access log line is not a JSON object (%s): %.*s", err.text, (int)(nl - p), p);
        json_array_append_new(lines, v);
    }
    free(text);
    return lines;
}

static const char *
str_of(const json_t *line, const char *key)
{
    return json_string_value(json_object_get(line, key));
}

static json_int_t
int_of(const json_t *line, const char *key)
{
    json_t *v = json_object_get(line, key);
    if (!json_is_integer(v))
        fail_msg("member %s is missing or not an integer", key);
    return json_integer_value(v);
}

/* The n-th (0-based) line of `kind` whose `key` equals value, or NULL. */
static json_t *
find_line(json_t *lines, const char *kind, const char *key, const char *value, int n)
{
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        const char *k = str_of(line, "kind"), *v = str_of(line, key);
        if (k != NULL && v != NULL && strcmp(k, kind) == 0 && strcmp(v, value) == 0 && n-- == 0)
            return line;
    }
    return NULL;
}

/* How many lines are of route messages: the harness's /readyz polls at start may add a
 * warn line (a 503 while Redis connects) that is no business of these counts. */
static size_t
count_messages(json_t *lines)
{
    size_t i, n = 0;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        const char *route = str_of(line, "route");
        n += route != NULL && strcmp(route, "messages") == 0;
    }
    return n;
}

/* Polls path until find_line(kind, key, value, n) exists; returns all the lines read
 * (the caller frees them) with *line set. */
static json_t *
wait_line(const char *path, const char *kind, const char *key, const char *value, int n,
          json_t **line)
{
    int64_t deadline = bgt_mono_ms() + 20000;
    for (;;) {
        json_t *lines = read_lines(path);
        if ((*line = find_line(lines, kind, key, value, n)) != NULL)
            return lines;
        json_decref(lines);
        if (bgt_mono_ms() > deadline)
            fail_msg("no %s line #%d with %s=%s in %s", kind, n, key, value, path);
        bgt_sleep_ms(50);
    }
}

/* POSTs body to base with token (NULL: no Authorization) and Content-Type JSON (or
 * content_type); the X-Request-Id answered goes into rid. Returns the status. */
static long
post_as(const char *at, const char *token, const char *content_type, const char *request_id,
        const char *body, char rid[80])
{
    char auth[4096], ct[128], xrid[128], u[128];
    const char *headers[4];
    size_t n = 0;
    snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
    headers[n++] = ct;
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        headers[n++] = auth;
    }
    if (request_id != NULL) {
        snprintf(xrid, sizeof(xrid), "X-Request-Id: %s", request_id);
        headers[n++] = xrid;
    }
    headers[n] = NULL;
    bgt_http_resp resp;
    bgt_http_post(bgt_url(u, sizeof(u), at, "/api/messages"), BGT_HTTP_1_1, cert, headers, body,
                  strlen(body), &resp);
    long status = resp.status;
    if (bgt_http_header(&resp, "X-Request-Id", rid, 80) == NULL)
        rid[0] = '\0';
    if (status == 0)
        bgt_http_resp_print("POST", &resp);
    bgt_http_resp_free(&resp);
    return status;
}

static long
post(const char *token, const char *body, char rid[80])
{
    return post_as(base, token, "application/json", NULL, body, rid);
}

/* A Teams message with fresh ids and MARKER in its text. */
static char *
message(char id[64], char conv[64])
{
    bgt_fresh_id(id, 64, "1:al-");
    bgt_fresh_id(conv, 64, "a:al-");
    char *body = bgt_teams_message(id, conv, SERVICE_URL, 1100); /* text: > 100 bytes */
    char *text = body != NULL ? strstr(body, "\"text\":\"") : NULL;
    if (text != NULL)
        memcpy(text + 8, MARKER, strlen(MARKER)); /* over the padding */
    return body;
}

static char *
token(void)
{
    return bgt_connector_mint(conn_dir, NULL, APP_ID, SERVICE_URL, 3600);
}

/* botgate's sampling choice, computed the same way: FNV-1a of the id, kept when 0 mod n. */
static int
sampled(const char *id, unsigned n)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a 64's offset basis */
    for (const char *p = id; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h % n == 0;
}

/* Starts local_gate (plain port, the shared Redis, its own stream, no dispatcher) with the
 * log settings given; its base URL into at. */
static void
start_local(const char *name, const char *access, const char *level, const char *log_extra,
            char at[64])
{
    char state_dir[BGT_PATH_MAX], health[128], stream[128];
    bgt_pathf(state_dir, sizeof(state_dir), env.dir, "state-%s", name);
    mkdir(state_dir, 0700);
    snprintf(stream, sizeof(stream), "  stream: \"al:%s\"\n", name);
    bgt_botgate_conf c = {.plain_port = bgt_free_port(),
                          .redis_url = redis.url,
                          .redis_extra = stream,
                          .state_dir = state_dir,
                          .log_access = access,
                          .log_level = level,
                          .log_extra = log_extra};
    snprintf(at, 64, "http://127.0.0.1:%d", c.plain_port);
    bgt_botgate_role = "ingress";
    char *yaml = bgt_config_yaml(&c);
    int rc = bgt_botgate_start(&local_gate, env.dir, name, yaml,
                               bgt_url(health, sizeof(health), at, "/readyz"), NULL);
    free(yaml);
    assert_int_equal(rc, 0);
}

static int
local_teardown(void **state)
{
    (void)state;
    bgt_botgate_kill(&local_gate);
    return 0;
}

/* ---- the shared botgate -------------------------------------------------------------------- */

static int
group_setup(void **state)
{
    (void)state;
    int tls_port = bgt_free_port();
    snprintf(base, sizeof(base), "https://127.0.0.1:%d", tls_port);
    bgt_path(log_path, sizeof(log_path), env.dir, "access.log");
    char state_dir[BGT_PATH_MAX], health[128], bot_url[128];
    bgt_path(state_dir, sizeof(state_dir), env.dir, "state-main");
    mkdir(state_dir, 0700);
    bgt_bot_url(bot_url, sizeof(bot_url), bot_port, NULL);
    char *auth = bgt_connector_auth_yaml(conn_dir, conn_port, APP_ID, NULL);
    size_t n = strlen(auth) + 256;
    char *extra = malloc(n);
    snprintf(extra, n, "%sbot:\n  url: \"%s\"\n  backoff_initial_ms: 50\n  backoff_max_ms: 100\n",
             auth, bot_url);
    free(auth);
    bgt_botgate_conf c = {.tls_port = tls_port,
                          .cert_file = cert,
                          .key_file = key,
                          .redis_url = redis.url,
                          .redis_extra = "  stream: \"al:main\"\n",
                          .state_dir = state_dir,
                          .log_access = log_path,
                          .extra = extra};
    char *yaml = bgt_config_yaml(&c);
    free(extra);
    bgt_botgate_role = NULL; /* ingress and dispatcher */
    int rc = bgt_botgate_start(&gate, env.dir, "main", yaml,
                               bgt_url(health, sizeof(health), base, "/readyz"), cert);
    free(yaml);
    return rc;
}

/* An orderly stop: under ASan a leak (or a line written after the log closed) fails it. */
static int
group_teardown(void **state)
{
    (void)state;
    return gate.pid != 0 ? bgt_botgate_stop(&gate) : 0;
}

/*
 * Accepted activities: the line of each carries what the request was (ids, route,
 * protocol, peer, size) and how long each step took; the first use of a token is a cache
 * miss, the second a hit; a repeat of an activity is marked duplicate. Neither the token
 * nor the body's text is anywhere in the log.
 */
static void
test_accepted_lines(void **state)
{
    (void)state;
    char *tok = token();
    assert_non_null(tok);
    char id1[64], conv1[64], id2[64], conv2[64], rid1[80], rid2[80], rid3[80];
    char *b1 = message(id1, conv1), *b2 = message(id2, conv2);
    assert_int_equal(post(tok, b1, rid1), 202);
    assert_int_equal(post(tok, b2, rid2), 202);
    assert_int_equal(post(tok, b1, rid3), 202); /* the same activity again */
    assert_true(rid1[0] != '\0' && rid2[0] != '\0' && rid3[0] != '\0');

    json_t *line, *lines = wait_line(log_path, "request", "request_id", rid3, 0, &line);
    json_t *l1 = find_line(lines, "request", "request_id", rid1, 0);
    json_t *l2 = find_line(lines, "request", "request_id", rid2, 0);
    assert_non_null(l1);
    assert_non_null(l2);
    assert_string_equal(str_of(l1, "level"), "info");
    assert_string_equal(str_of(l1, "route"), "messages");
    assert_string_equal(str_of(l1, "method"), "POST");
    assert_string_equal(str_of(l1, "protocol"), "HTTP/1.1");
    assert_string_equal(str_of(l1, "remote"), "127.0.0.1");
    assert_int_equal(int_of(l1, "status"), 202);
    assert_null(json_object_get(l1, "code"));
    assert_string_equal(str_of(l1, "activity_id"), id1);
    assert_string_equal(str_of(l1, "activity_type"), "message");
    assert_string_equal(str_of(l1, "channel_id"), "msteams");
    assert_string_equal(str_of(l1, "conversation_id"), conv1);
    assert_int_equal(int_of(l1, "bytes_in"), strlen(b1));
    assert_string_equal(str_of(l1, "token_cache"), "miss");
    assert_string_equal(str_of(l2, "token_cache"), "hit");
    assert_null(json_object_get(l1, "duplicate"));
    assert_true(json_is_true(json_object_get(line, "duplicate")));
    const char *timings[] = {"auth_us", "enqueue_us", "total_us", "headers_us", "body_us"};
    for (size_t i = 0; i < sizeof(timings) / sizeof(timings[0]); i++)
        assert_true(int_of(l1, timings[i]) >= 0);
    assert_true(int_of(l1, "total_us") >= int_of(l1, "enqueue_us"));
    assert_null(json_object_get(l1, "keys_wait_us")); /* the keys were there */
    assert_null(json_object_get(l1, "bot_us"));
    const char *ts = str_of(l1, "ts");
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 27); /* 2026-11-27T06:35:48.123456Z */
    assert_int_equal(ts[26], 'Z');
    json_decref(lines);

    /* the token's signature and the body's text appear nowhere */
    char *text = bgt_read_file(log_path, NULL);
    assert_non_null(text);
    assert_null(strstr(text, strrchr(tok, '.') + 1));
    assert_null(strstr(text, MARKER));
    free(text);
    free(tok);
    free(b1);
    free(b2);
}

/*
 * Refusals: each line has the status and the error code botgate answered with, at level
 * warn; a request the handler never took (a 404) is logged too; a ping has its 200; a
 * probe that went well is a debug line, not written at level info.
 */
static void
test_refusal_lines(void **state)
{
    (void)state;
    char id[64], conv[64], rid_415[80], rid_401[80], rid_exp[80], rid_ping[80];
    char *body = message(id, conv);
    assert_int_equal(post_as(base, NULL, "text/plain", NULL, body, rid_415), 415);
    assert_int_equal(post(NULL, body, rid_401), 401);
    char *expired = bgt_connector_mint(conn_dir, NULL, APP_ID, SERVICE_URL, -3600);
    assert_non_null(expired);
    assert_int_equal(post(expired, body, rid_exp), 401);
    assert_int_equal(post(NULL, "{\"type\":\"ping\"}", rid_ping), 200);
    char u[128];
    bgt_http_resp resp;
    bgt_http_get(bgt_url(u, sizeof(u), base, "/no/such/path"), BGT_HTTP_1_1, cert, &resp);
    assert_int_equal(resp.status, 404);
    bgt_http_resp_free(&resp);
    bgt_http_get(bgt_url(u, sizeof(u), base, "/healthz"), BGT_HTTP_2, cert, &resp);
    assert_int_equal(resp.status, 200);
    bgt_http_resp_free(&resp);

    json_t *line, *lines = wait_line(log_path, "request", "request_id", rid_ping, 0, &line);
    assert_int_equal(int_of(line, "status"), 200);
    assert_string_equal(str_of(line, "activity_type"), "ping");
    assert_string_equal(str_of(line, "level"), "info");
    static const struct {
        const char *code;
        long status;
        int has_activity;
    } want[] = {
        {"unsupported_media_type", 415, 0}, {"missing_token", 401, 1}, {"token_expired", 401, 1}};
    const char *rids[] = {rid_415, rid_401, rid_exp};
    for (size_t i = 0; i < 3; i++) {
        json_t *l = find_line(lines, "request", "request_id", rids[i], 0);
        if (l == NULL)
            fail_msg("no line for the %s request", want[i].code);
        assert_string_equal(str_of(l, "level"), "warn");
        assert_int_equal(int_of(l, "status"), want[i].status);
        assert_string_equal(str_of(l, "code"), want[i].code);
        /* the activity is read after the cheap checks: a 415 never parsed it */
        assert_int_equal(str_of(l, "activity_id") != NULL, want[i].has_activity);
    }
    json_t *exp_line = find_line(lines, "request", "request_id", rid_exp, 0);
    assert_string_equal(str_of(exp_line, "token_cache"), "miss");
    assert_true(int_of(exp_line, "auth_us") >= 0);
    json_decref(lines);

    lines = wait_line(log_path, "request", "route", "other", 0, &line);
    assert_int_equal(int_of(line, "status"), 404);
    assert_string_equal(str_of(line, "code"), "not_found");
    assert_string_equal(str_of(line, "method"), "GET");
    assert_null(find_line(lines, "request", "route", "healthz", 0));
    json_decref(lines);

    char *text = bgt_read_file(log_path, NULL);
    assert_null(strstr(text, strrchr(expired, '.') + 1));
    free(text);
    free(expired);
    free(body);
}

/*
 * Delivery: an activity the bot answers 503 then 200 has two attempt lines, joined to its
 * request line by the request id: a retry (warn, the status, the failure class, the
 * back-off) and a delivery (info, libcurl's times, the queue wait, the whole way); one the
 * bot refuses with 400 is dead (error).
 */
static void
test_delivery_lines(void **state)
{
    (void)state;
    char *tok = token();
    char id[64], conv[64], rid[80], dead_id[64], dead_conv[64], dead_rid[80];
    char *body = message(id, conv);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, id, "503\n200\n"), 0);
    char *dead = message(dead_id, dead_conv);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, dead_id, "400\n"), 0);
    assert_int_equal(post(tok, body, rid), 202);
    assert_int_equal(post(tok, dead, dead_rid), 202);

    json_t *first, *lines = wait_line(log_path, "delivery", "request_id", rid, 1, &first);
    json_t *retry = find_line(lines, "delivery", "request_id", rid, 0);
    json_t *done = first;
    assert_string_equal(str_of(retry, "outcome"), "retry");
    assert_string_equal(str_of(retry, "level"), "warn");
    assert_int_equal(int_of(retry, "attempt"), 1);
    assert_int_equal(int_of(retry, "status"), 503);
    assert_string_equal(str_of(retry, "reason"), "http_5xx");
    assert_true(int_of(retry, "retry_in_ms") >= 0);
    assert_null(json_object_get(retry, "e2e_us"));
    assert_string_equal(str_of(done, "outcome"), "delivered");
    assert_string_equal(str_of(done, "level"), "info");
    assert_int_equal(int_of(done, "attempt"), 2);
    assert_int_equal(int_of(done, "status"), 200);
    assert_null(json_object_get(done, "reason"));
    assert_string_equal(str_of(done, "activity_id"), id);
    assert_string_equal(str_of(done, "conversation_id"), conv);
    assert_string_equal(str_of(done, "channel_id"), "msteams");
    assert_string_equal(str_of(done, "activity_type"), "message");
    assert_string_equal(str_of(done, "entry_id"), str_of(retry, "entry_id"));
    const char *times[] = {"queue_wait_us", "connect_us", "first_byte_us", "total_us", "e2e_us"};
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++)
        assert_true(int_of(done, times[i]) >= 0);
    /* the second attempt waited out the first's back-off; the whole way holds both */
    assert_true(int_of(done, "queue_wait_us") >= int_of(retry, "retry_in_ms") * 1000);
    assert_true(int_of(done, "e2e_us") >= int_of(done, "queue_wait_us"));
    json_decref(lines);

    lines = wait_line(log_path, "delivery", "request_id", dead_rid, 0, &first);
    assert_string_equal(str_of(first, "outcome"), "dead");
    assert_string_equal(str_of(first, "level"), "error");
    assert_int_equal(int_of(first, "status"), 400);
    assert_non_null(str_of(first, "reason"));
    json_decref(lines);
    free(body);
    free(dead);
    free(tok);
}

/* log.level warn: an accepted request leaves no line, a refused one does. */
static void
test_level(void **state)
{
    (void)state;
    char at[64], path[BGT_PATH_MAX], rid_ok[80], rid_bad[80];
    bgt_path(path, sizeof(path), env.dir, "access-warn.log");
    start_local("warn", path, "warn", NULL, at);
    char id[64], conv[64];
    char *body = message(id, conv);
    assert_int_equal(post_as(at, NULL, "application/json", NULL, body, rid_ok), 202);
    assert_int_equal(post_as(at, NULL, "text/plain", NULL, body, rid_bad), 415);
    json_t *line, *lines = wait_line(path, "request", "request_id", rid_bad, 0, &line);
    assert_null(find_line(lines, "request", "request_id", rid_ok, 0));
    assert_int_equal(count_messages(lines), 1);
    json_decref(lines);
    free(body);
    assert_int_equal(bgt_botgate_stop(&local_gate), 0);
}

/* log.access_sample_1_in 3: of the accepted requests, exactly those whose id hashes to 0
 * mod 3 are logged; every refusal is. */
static void
test_sampling(void **state)
{
    (void)state;
    char at[64], path[BGT_PATH_MAX];
    bgt_path(path, sizeof(path), env.dir, "access-sampled.log");
    start_local("sampled", path, "info", "  access_sample_1_in: 3\n", at);
    char ids[30][40], rid[80];
    int kept = 0;
    for (int i = 0; i < 30; i++) {
        snprintf(ids[i], sizeof(ids[i]), "sample-%02d-%d", i, (int)getpid());
        kept += sampled(ids[i], 3);
        char id[64], conv[64];
        char *body = message(id, conv);
        assert_int_equal(post_as(at, NULL, "application/json", ids[i], body, rid), 202);
        assert_string_equal(rid, ids[i]);
        free(body);
    }
    char last[80];
    char id[64], conv[64];
    char *body = message(id, conv);
    assert_int_equal(post_as(at, NULL, "text/plain", "refused-not-sampled", body, last), 415);
    free(body);
    json_t *line,
        *lines = wait_line(path, "request", "request_id", "refused-not-sampled", 0, &line);
    for (int i = 0; i < 30; i++) {
        int logged = find_line(lines, "request", "request_id", ids[i], 0) != NULL;
        if (logged != sampled(ids[i], 3))
            fail_msg("request %s: logged %d, sampled %d", ids[i], logged, sampled(ids[i], 3));
    }
    assert_int_equal(count_messages(lines), (size_t)kept + 1);
    assert_true(kept > 0 && kept < 30); /* the ids above do split */
    json_decref(lines);
    assert_int_equal(bgt_botgate_stop(&local_gate), 0);
}

/*
 * A destination that stops reading: log.access is a FIFO whose reader never reads, so the
 * writer thread blocks once the pipe is full. Requests are still answered (the loop never
 * writes); when the reader reads, every line arrives.
 */
static void
test_stalled_destination(void **state)
{
    (void)state;
    char at[64], fifo[BGT_PATH_MAX];
    bgt_path(fifo, sizeof(fifo), env.dir, "access.fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    int rd = open(fifo, O_RDONLY | O_NONBLOCK); /* so that botgate's open does not block */
    assert_true(rd >= 0);
    start_local("fifo", fifo, "info", NULL, at);
    enum { N = 400 }; /* ~450 bytes a line: well over a pipe's 64 KiB */
    char rid[80];
    for (int i = 0; i < N; i++) {
        char id[64], conv[64];
        char *body = message(id, conv);
        assert_int_equal(post_as(at, NULL, "application/json", NULL, body, rid), 202);
        free(body);
    }
    /* now drain: every line arrives, each one whole */
    size_t got = 0, cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    int64_t deadline = bgt_mono_ms() + 20000;
    while (got < N && bgt_mono_ms() < deadline) {
        ssize_t n = read(rd, buf + len, cap - 1 - len);
        if (n > 0) {
            len += (size_t)n;
            assert_true(len < cap - 1);
            buf[len] = '\0';
            got = 0;
            for (const char *p = buf; (p = strstr(p, "\"status\":202")) != NULL; p++)
                got++;
        } else {
            assert_true(n == 0 || errno == EAGAIN);
            bgt_sleep_ms(20);
        }
    }
    assert_int_equal(got, N);
    buf[len] = '\0';
    size_t accepted = 0;
    for (char *p = buf, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        json_error_t err;
        json_t *v = json_loadb(p, (size_t)(nl - p), 0, &err);
        if (v == NULL)
            fail_msg("not JSON: %.*s", (int)(nl - p), p);
        const char *route = json_string_value(json_object_get(v, "route"));
        if (route != NULL && strcmp(route, "messages") == 0) {
            assert_int_equal(json_integer_value(json_object_get(v, "status")), 202);
            accepted++;
        }
        json_decref(v);
    }
    assert_int_equal(accepted, N);
    free(buf);
    assert_int_equal(bgt_botgate_stop(&local_gate), 0);
    close(rd);
}

int
main(void)
{
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_accepted_lines),
        cmocka_unit_test(test_refusal_lines),
        cmocka_unit_test(test_delivery_lines),
    };
    const struct CMUnitTest own[] = {
        cmocka_unit_test_teardown(test_level, local_teardown),
        cmocka_unit_test_teardown(test_sampling, local_teardown),
        cmocka_unit_test_teardown(test_stalled_destination, local_teardown),
    };
    if (bgt_env_init(&env) != 0 || bgt_tls_make_cert(env.dir, cert, key) != 0)
        return 1;
    bgt_path(conn_dir, sizeof(conn_dir), env.dir, "connector");
    int failed = 0;
    if (bgt_redis_start(&redis, env.dir, "main", NULL) != 0 ||
        bgt_connector_start(conn_dir, &conn_port) != 0 ||
        bgt_bot_start_named(bot_dir, env.dir, "main", &bot_port) != 0) {
        failed = 1;
    } else {
        failed += cmocka_run_group_tests_name("access_log", shared, group_setup, group_teardown);
        failed += cmocka_run_group_tests_name("access_log_own", own, NULL, NULL);
    }
    bgt_connector_kill(conn_dir);
    bgt_bot_kill(bot_dir);
    bgt_redis_stop(&redis);
    return bgt_env_exit(&env, failed);
}
