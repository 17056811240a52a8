/*
 * Failure records, end to end (failures.h, failure.h): a real botgate delivering to a bot
 * that refuses connections, one that hangs past bot.timeout_s, and one that answers 500;
 * each failed attempt must land in <stream>:failures with its class, the bot's URL as
 * target, the request id the Connector was given (X-Request-Id) and a detail; and
 * `botgate failures` must show them newest first with a summary line per class, as JSON
 * lines that parse, filtered by --since, with the documented exit statuses. Also: a
 * synchronous call (an invoke) answered 500, an entry whose token expired in the queue, and
 * a failed fetch of the Connector's key documents.
 *
 * Back-off is 100 ms and max_attempts small, so that every test takes seconds.
 */
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

#include "botgate/entry.h"
#include "botgate/failures.h"
#include "harness.h"

#define SERVICE_URL BGT_CONNECTOR_SERVICE_URL
#define RUN_TIMEOUT_MS 20000

static bgt_env env;
static bgt_redis redis;
static bgt_botgate gate;
static char base[64];
static char bot_dir[BGT_PATH_MAX];
static int bot_port;
static char stream[64], failures_key[96];
static char bot_url[128];

/* ---- helpers ------------------------------------------------------------------------------ */

static void
use_stream(const char *name)
{
    snprintf(stream, sizeof(stream), "%s:activities", name);
    snprintf(failures_key, sizeof(failures_key), "%s" BG_FAILURES_SUFFIX, stream);
}

static void
start_bot(const char *name)
{
    assert_int_equal(bgt_bot_start_named(bot_dir, env.dir, name, &bot_port), 0);
    bgt_bot_url(bot_url, sizeof(bot_url), bot_port, NULL);
}

/* botgate delivering to bot_url, with timeout_s and max_attempts as given. */
static void
start_gate(const char *name, int timeout_s, int max_attempts)
{
    char state_dir[BGT_PATH_MAX], health[128], redis_extra[128], extra[1024];
    bgt_pathf(state_dir, sizeof(state_dir), env.dir, "state-%s", name);
    mkdir(state_dir, 0700);
    snprintf(redis_extra, sizeof(redis_extra), "  stream: \"%s\"\n  failures_maxlen: 1000\n",
             stream);
    snprintf(extra, sizeof(extra),
             "bot:\n"
             "  url: \"%s\"\n"
             "  timeout_s: %d\n"
             "  max_attempts: %d\n"
             "  backoff_initial_ms: 100\n"
             "  backoff_max_ms: 200\n"
             "  consumer_suffix: \"-%s\"\n",
             bot_url, timeout_s, max_attempts, name);
    bgt_botgate_conf c = {.plain_port = bgt_free_port(),
                          .redis_url = redis.url,
                          .state_dir = state_dir,
                          .redis_extra = redis_extra,
                          .extra = extra};
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", c.plain_port);
    snprintf(health, sizeof(health), "%s/healthz", base);
    assert_int_equal(bgt_botgate_start_conf(&gate, env.dir, name, &c, health), 0);
}

static int
teardown(void **state)
{
    (void)state;
    bgt_botgate_kill(&gate);
    bgt_bot_kill_clear(bot_dir);
    return 0;
}

static void
stop_all(void)
{
    if (gate.pid != 0)
        assert_int_equal(bgt_botgate_stop(&gate), 0);
    assert_int_equal(bgt_bot_stop_clear(bot_dir), 0);
}

/* POSTs a message activity; asserts the 202 and returns its X-Request-Id in rid. */
static void
post_message(const char *tag, char *rid, size_t cap)
{
    char body[1024], u[128];
    snprintf(body, sizeof(body),
             "{\"type\":\"message\",\"id\":\"%s\",\"channelId\":\"msteams\",\"serviceUrl\":\"%s\","
             "\"from\":{\"id\":\"29:1\"},\"conversation\":{\"id\":\"a:%s\"},"
             "\"recipient\":{\"id\":\"28:bot\"},\"text\":\"hi\"}",
             tag, SERVICE_URL, tag);
    const char *headers[] = {"Content-Type: application/json", NULL};
    bgt_http_resp resp;
    bgt_http_post(bgt_url(u, sizeof(u), base, "/api/messages"), BGT_HTTP_1_1, NULL, headers, body,
                  strlen(body), &resp);
    bgt_expect_status(&resp, 202);
    assert_non_null(bgt_http_header(&resp, "X-Request-Id", rid, cap));
    bgt_http_resp_free(&resp);
}

/* One record of <stream>:failures. */
typedef struct record {
    char id[48];
    long long t_ms;
    char cls[32], target[256], request_id[128], detail[512];
    int fields;
} record;

/* Every record, oldest first (at most cap). */
static size_t
read_records(record *out, size_t cap)
{
    redisReply *r = bgt_redis_cmd(&redis, "XRANGE %s - +", failures_key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    size_t n = 0;
    for (size_t i = 0; i < r->elements && n < cap; i++) {
        const redisReply *e = r->element[i];
        record *rec = &out[n++];
        memset(rec, 0, sizeof(*rec));
        bgt_reply_copy(rec->id, sizeof(rec->id), e->element[0]);
        const redisReply *f = e->element[1];
        for (size_t j = 0; j + 1 < f->elements; j += 2) {
            const char *k = f->element[j]->str;
            const redisReply *v = f->element[j + 1];
            rec->fields++;
            if (strcmp(k, "t_ms") == 0)
                rec->t_ms = strtoll(v->str, NULL, 10);
            else if (strcmp(k, "class") == 0)
                bgt_reply_copy(rec->cls, sizeof(rec->cls), v);
            else if (strcmp(k, "target") == 0)
                bgt_reply_copy(rec->target, sizeof(rec->target), v);
            else if (strcmp(k, "request_id") == 0)
                bgt_reply_copy(rec->request_id, sizeof(rec->request_id), v);
            else if (strcmp(k, "detail") == 0)
                bgt_reply_copy(rec->detail, sizeof(rec->detail), v);
            else
                rec->fields = -100; /* an unknown field */
        }
    }
    freeReplyObject(r);
    return n;
}

/* Polls until at least n records exist; returns how many. */
static size_t
wait_records(record *out, size_t cap, size_t n, int timeout_ms)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    size_t got;
    while ((got = read_records(out, cap)) < n) {
        if (bgt_mono_ms() >= deadline)
            fail_msg("%s: %zu failure records after %d ms, want %zu", failures_key, got, timeout_ms,
                     n);
        bgt_sleep_ms(50);
    }
    return got;
}

/* Asserts the records are all of class cls, for the bot, for request rid, with detail. */
static void
expect_records(const record *v, size_t n, const char *cls, const char *rid, const char *detail)
{
    long long now = bgt_wall_us() / 1000;
    for (size_t i = 0; i < n; i++) {
        if (v[i].fields != 5)
            fail_msg("record %s has %d fields, want the 5", v[i].id, v[i].fields);
        assert_string_equal(v[i].cls, cls);
        assert_string_equal(v[i].target, bot_url);
        assert_string_equal(v[i].request_id, rid);
        if (strstr(v[i].detail, detail) == NULL)
            fail_msg("record %s: detail '%s' does not mention '%s'", v[i].id, v[i].detail, detail);
        assert_true(strlen(v[i].detail) <= BG_FAILURES_DETAIL_MAX + 32);
        assert_true(v[i].t_ms > now - 60000 && v[i].t_ms <= now + 1000);
        if (i > 0)
            assert_true(v[i].t_ms >= v[i - 1].t_ms);
    }
}

/* Runs `botgate failures ARGS... ` (NULL-terminated). Returns the exit status; *out and
 * *err (malloc'd, never NULL) its stdout and stderr. */
static int
run_failures(char **out, char **err, ...)
{
    const char *args[24];
    int n = 0;
    args[n++] = "failures";
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 22;)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return bgt_botgate_run_output(args, env.dir, "failures-run", RUN_TIMEOUT_MS, out, err);
}

static void
expect_exit(int want, int rc, const char *out, const char *err)
{
    if (rc != want)
        fail_msg("botgate failures: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", rc, want, out,
                 err);
}

static size_t
count_lines_with(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        char line[2048];
        snprintf(line, sizeof(line), "%.*s", (int)len, p);
        if (strstr(line, needle) != NULL)
            n++;
        p += len + (nl != NULL);
    }
    return n;
}

/*
 * The text view: one line per record holding class, target, request id and detail, then
 * "<class>: <n>, last <age> ago"; the JSON view: every line an object, the records
 * (newest first) with the five fields and the summary objects with the count.
 */
static void
check_cli(const char *cls, size_t n_records, const char *rid)
{
    char *out, *err;
    int rc = run_failures(&out, &err, "-c", gate.config, NULL);
    expect_exit(0, rc, out, err);
    size_t lines = count_lines_with(out, rid);
    if (lines != n_records)
        fail_msg("%zu lines with %s, want %zu:\n%s", lines, rid, n_records, out);
    assert_int_equal(count_lines_with(out, bot_url), n_records);
    char summary[96];
    snprintf(summary, sizeof(summary), "%s: %zu, last ", cls, n_records);
    if (count_lines_with(out, summary) != 1 || count_lines_with(out, " ago") != 1)
        fail_msg("no summary line '%s... ago':\n%s", summary, out);
    free(out);
    free(err);

    rc = run_failures(&out, &err, "--json", "-c", gate.config, NULL);
    expect_exit(0, rc, out, err);
    size_t n_rec = 0, n_sum = 0;
    long long prev = -1;
    for (char *p = out, *nl; *p != '\0'; p = nl + 1) {
        nl = strchr(p, '\n');
        assert_non_null(nl);
        *nl = '\0';
        json_error_t jerr;
        json_t *o = json_loads(p, 0, &jerr);
        if (o == NULL)
            fail_msg("not JSON: %s (%s)", p, jerr.text);
        json_t *s = json_object_get(o, "summary");
        if (s != NULL) {
            assert_string_equal(json_string_value(s), cls);
            assert_int_equal(json_integer_value(json_object_get(o, "count")), n_records);
            assert_true(json_integer_value(json_object_get(o, "last_t_ms")) > 0);
            n_sum++;
        } else {
            assert_string_equal(json_string_value(json_object_get(o, "class")), cls);
            assert_string_equal(json_string_value(json_object_get(o, "target")), bot_url);
            assert_string_equal(json_string_value(json_object_get(o, "request_id")), rid);
            assert_non_null(json_string_value(json_object_get(o, "detail")));
            assert_non_null(json_string_value(json_object_get(o, "id")));
            assert_non_null(json_string_value(json_object_get(o, "time")));
            long long t = json_integer_value(json_object_get(o, "t_ms"));
            if (prev >= 0)
                assert_true(t <= prev); /* newest first */
            prev = t;
            n_rec++;
        }
        json_decref(o);
    }
    assert_int_equal(n_rec, n_records);
    assert_int_equal(n_sum, 1);
    free(out);
    free(err);
}

/* ---- the tests ------------------------------------------------------------------------------ */

/* Nothing listens at bot.url: every attempt is connect_refused, the last one too (the
 * entry is dead-lettered after max_attempts). */
static void
test_refused(void **state)
{
    (void)state;
    use_stream("refused");
    snprintf(bot_url, sizeof(bot_url), "http://127.0.0.1:%d/api/messages", bgt_free_port());
    start_gate("refused", 5, 3);
    char rid[128];
    post_message("refused-1", rid, sizeof(rid));
    record v[16];
    wait_records(v, 16, 3, 10000);
    bgt_sleep_ms(300); /* no fourth: max_attempts is 3 */
    size_t n = read_records(v, 16);
    assert_int_equal(n, 3);
    expect_records(v, n, "connect_refused", rid, "onnect");
    check_cli("connect_refused", n, rid);
    stop_all();
}

/* The bot takes the request and never answers: after bot.timeout_s, class timeout (the
 * connection was made), not connect_timeout. */
static void
test_timeout(void **state)
{
    (void)state;
    use_stream("timeout");
    start_bot("timeout");
    assert_int_equal(bgt_bot_set_hang(bot_dir, true), 0);
    start_gate("timeout", 1, 2);
    char rid[128];
    post_message("timeout-1", rid, sizeof(rid));
    record v[16];
    wait_records(v, 16, 2, 15000);
    size_t n = read_records(v, 16);
    assert_int_equal(n, 2);
    expect_records(v, n, "timeout", rid, "timed out");
    /* the records are at least the timeout apart, plus the back-off */
    assert_true(v[1].t_ms - v[0].t_ms >= 1000);
    check_cli("timeout", n, rid);
    assert_int_equal(bgt_bot_set_hang(bot_dir, false), 0);
    stop_all();
}

/* 500, then 503 with Retry-After (still a 5xx), then 200: two http_5xx records with the
 * status in the detail, and none for the delivery. */
static void
test_http_5xx(void **state)
{
    (void)state;
    use_stream("5xx");
    start_bot("5xx");
    assert_int_equal(bgt_bot_set_statuses(bot_dir, "500\n503\n200\n"), 0);
    start_gate("5xx", 5, 5);
    char rid[128];
    post_message("5xx-1", rid, sizeof(rid));
    assert_int_equal(bgt_bot_wait_answered(bot_dir, 3, 10000), 0);
    record v[16];
    wait_records(v, 16, 2, 5000);
    bgt_sleep_ms(300);
    size_t n = read_records(v, 16);
    assert_int_equal(n, 2);
    expect_records(v, n, "http_5xx", rid, "HTTP 5");
    assert_string_equal(v[0].detail, "HTTP 500");
    assert_string_equal(v[1].detail, "HTTP 503");
    check_cli("http_5xx", n, rid);
    stop_all();
}

/*
 * --since: records written as botgate writes them, two hours and thirty seconds old; 1h
 * shows one, 3h both, the default (15m) the recent one. And the exit statuses: empty 0,
 * bad usage 2, Redis unreachable 1.
 */
static void
test_since_and_status(void **state)
{
    (void)state;
    use_stream("since");
    char cfg[BGT_PATH_MAX], yaml[512];
    bgt_path(cfg, sizeof(cfg), env.dir, "since.yaml");
    snprintf(yaml, sizeof(yaml), "redis:\n  url: \"%s\"\n  stream: \"%s\"\n", redis.url, stream);
    assert_int_equal(bgt_write_file(cfg, yaml, -1), 0);

    char *out, *err;
    int rc = run_failures(&out, &err, "-c", cfg, NULL);
    expect_exit(0, rc, out, err); /* nothing yet */
    assert_string_equal(out, "");
    free(out);
    free(err);

    long long now = bgt_wall_us() / 1000;
    long long old = now - 2 * 3600 * 1000LL, recent = now - 30 * 1000;
    redisReply *r = bgt_redis_cmd(&redis,
                                  "XADD %s %lld-0 t_ms %lld class dns target http://old.test/ "
                                  "request_id r-old detail %s",
                                  failures_key, old, old, "Could not resolve host: old.test");
    assert_non_null(r);
    freeReplyObject(r);
    r = bgt_redis_cmd(&redis,
                      "XADD %s %lld-0 t_ms %lld class tls target https://new.test/ "
                      "request_id r-new detail %s",
                      failures_key, recent, recent, "SSL certificate problem");
    assert_non_null(r);
    freeReplyObject(r);

    rc = run_failures(&out, &err, "--since", "1h", "-c", cfg, NULL);
    expect_exit(0, rc, out, err);
    assert_int_equal(count_lines_with(out, "r-new"), 1);
    assert_int_equal(count_lines_with(out, "r-old"), 0);
    assert_int_equal(count_lines_with(out, "tls: 1, last 3"), 1); /* 30s, 31s, ... */
    assert_int_equal(count_lines_with(out, "dns:"), 0);
    free(out);
    free(err);

    rc = run_failures(&out, &err, "-c", cfg, NULL);
    expect_exit(0, rc, out, err);
    assert_int_equal(count_lines_with(out, "r-old"), 0);
    assert_int_equal(count_lines_with(out, "r-new"), 1);
    free(out);
    free(err);

    rc = run_failures(&out, &err, "--since", "3h", "-c", cfg, NULL);
    expect_exit(0, rc, out, err);
    const char *pn = strstr(out, "r-new"), *po = strstr(out, "r-old");
    if (pn == NULL || po == NULL || pn > po)
        fail_msg("want both, newest first:\n%s", out);
    assert_int_equal(count_lines_with(out, "dns: 1, last 2h0"), 1);
    assert_int_equal(count_lines_with(out, "tls: 1, last "), 1);
    free(out);
    free(err);

    rc = run_failures(&out, &err, "--since", "3h", "--limit", "1", "-c", cfg, NULL);
    expect_exit(0, rc, out, err);
    assert_int_equal(count_lines_with(out, "r-new"), 1);
    assert_int_equal(count_lines_with(out, "r-old"), 0);
    assert_int_equal(count_lines_with(out, "dns: 1,"), 1); /* the summary counts them all */
    free(out);
    free(err);

    static const char *const bad[][3] = {
        {"--since", "15", NULL}, {"--since", "5x", NULL}, {"--since", "-1m", NULL},
        {"--limit", "0", NULL},  {"--bogus", NULL, NULL}, {"--since", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rc = run_failures(&out, &err, bad[i][0], bad[i][1], bad[i][2]);
        expect_exit(2, rc, out, err);
        free(out);
        free(err);
    }

    char down[BGT_PATH_MAX], sock[BGT_PATH_MAX];
    bgt_path(down, sizeof(down), env.dir, "down.yaml");
    bgt_path(sock, sizeof(sock), env.dir, "no-such.sock");
    snprintf(yaml, sizeof(yaml), "redis:\n  url: \"unix://%s\"\n  timeout_ms: 500\n", sock);
    assert_int_equal(bgt_write_file(down, yaml, -1), 0);
    rc = run_failures(&out, &err, "-c", down, NULL);
    expect_exit(1, rc, out, err);
    assert_non_null(strstr(err, "cannot connect"));
    free(out);
    free(err);
}

/* A synchronous activity (an invoke, proxied at once) answered 500: recorded too, with the
 * request id the caller got back. */
static void
test_sync(void **state)
{
    (void)state;
    use_stream("sync");
    start_bot("sync");
    assert_int_equal(bgt_bot_set_statuses(bot_dir, "500\n"), 0);
    start_gate("sync", 5, 3);
    static const char body[] =
        "{\"type\":\"invoke\",\"name\":\"task/fetch\",\"id\":\"sync-1\",\"channelId\":\"msteams\","
        "\"serviceUrl\":\"" SERVICE_URL "\",\"conversation\":{\"id\":\"a:sync\"}}";
    const char *headers[] = {"Content-Type: application/json", NULL};
    char u[128], rid[128];
    bgt_http_resp resp;
    bgt_http_post(bgt_url(u, sizeof(u), base, "/api/messages"), BGT_HTTP_1_1, NULL, headers, body,
                  strlen(body), &resp);
    bgt_expect_status(&resp, 500);
    assert_non_null(bgt_http_header(&resp, "X-Request-Id", rid, sizeof(rid)));
    bgt_http_resp_free(&resp);
    record v[4];
    wait_records(v, 4, 1, 5000);
    bgt_sleep_ms(200);
    size_t n = read_records(v, 4);
    assert_int_equal(n, 1);
    expect_records(v, n, "http_5xx", rid, "HTTP 500");
    stop_all();
}

/* An entry whose forwarded token expired in the queue: dead-lettered without an attempt,
 * and recorded as token_expired_in_queue with the entry's request id. */
static void
test_token_expired(void **state)
{
    (void)state;
    use_stream("expired");
    snprintf(bot_url, sizeof(bot_url), "http://127.0.0.1:%d/api/messages", bgt_free_port());
    start_gate("expired", 5, 3);
    static const char body[] = "{\"type\":\"message\",\"id\":\"exp-1\"}";
    bg_entry e;
    memset(&e, 0, sizeof(e));
    e.version = BG_ENTRY_VERSION;
    e.request_id = (bg_slice){"req-expired-1", 13};
    e.received_at_us = bgt_wall_us();
    e.activity_id = (bg_slice){"exp-1", 5};
    e.type = (bg_slice){"message", 7};
    e.conversation_id = (bg_slice){"a:exp", 5};
    e.token_exp = bgt_wall_s() - 10;
    e.body = (bg_slice){body, strlen(body)};
    char *raw;
    size_t len;
    assert_int_equal(bg_entry_encode(&e, &raw, &len), 0);
    redisReply *r = bgt_redis_cmd(&redis, "XADD %s * entry %b", stream, raw, len);
    free(raw);
    assert_non_null(r);
    freeReplyObject(r);
    record v[4];
    wait_records(v, 4, 1, 10000);
    bgt_sleep_ms(200);
    size_t n = read_records(v, 4);
    assert_int_equal(n, 1);
    expect_records(v, n, "token_expired_in_queue", "req-expired-1", "expired");
    stop_all();
}

/* The Connector's key documents answer 503: each failed fetch is an http_5xx record with
 * the document's URL as target and no request id. */
static void
test_key_fetch(void **state)
{
    (void)state;
    use_stream("keys");
    char conn_dir[BGT_PATH_MAX], metadata[256];
    bgt_pathf(conn_dir, sizeof(conn_dir), env.dir, "connector-keys");
    int conn_port = 0;
    assert_int_equal(bgt_connector_start(conn_dir, &conn_port), 0);
    assert_int_equal(bgt_connector_set_down(conn_dir, true), 0);
    bgt_connector_url(metadata, sizeof(metadata), conn_port, "/v1/.well-known/openidconfiguration");
    snprintf(bot_url, sizeof(bot_url), "http://127.0.0.1:%d/api/messages", bgt_free_port());

    char state_dir[BGT_PATH_MAX], health[128], redis_extra[128];
    bgt_pathf(state_dir, sizeof(state_dir), env.dir, "state-keys");
    mkdir(state_dir, 0700);
    snprintf(redis_extra, sizeof(redis_extra), "  stream: \"%s\"\n", stream);
    char *auth =
        bgt_connector_auth_yaml(conn_dir, conn_port, "4f2c9a1e-7b3d-4e8a-9c61-0d5e2f8b7a13", NULL);
    char extra[4096];
    snprintf(extra, sizeof(extra), "bot:\n  url: \"%s\"\n%s", bot_url, auth);
    free(auth);
    bgt_botgate_conf c = {.plain_port = bgt_free_port(),
                          .redis_url = redis.url,
                          .state_dir = state_dir,
                          .redis_extra = redis_extra,
                          .extra = extra};
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", c.plain_port);
    snprintf(health, sizeof(health), "%s/healthz", base);
    int rc = bgt_botgate_start_conf(&gate, env.dir, "keys", &c, health);
    if (rc != 0)
        bgt_connector_kill(conn_dir);
    assert_int_equal(rc, 0);

    record v[16];
    size_t n = wait_records(v, 16, 2, 15000); /* the first fetch, and the retry after 1 s */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i].fields, 5);
        assert_string_equal(v[i].cls, "http_5xx");
        assert_string_equal(v[i].target, metadata);
        assert_string_equal(v[i].request_id, "");
        assert_string_equal(v[i].detail, "HTTP 503");
    }
    int stop = bgt_botgate_stop(&gate);
    int cstop = bgt_connector_stop(conn_dir);
    assert_int_equal(stop, 0);
    assert_int_equal(cstop, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_refused, teardown),
        cmocka_unit_test_teardown(test_timeout, teardown),
        cmocka_unit_test_teardown(test_http_5xx, teardown),
        cmocka_unit_test_teardown(test_sync, teardown),
        cmocka_unit_test_teardown(test_token_expired, teardown),
        cmocka_unit_test_teardown(test_key_fetch, teardown),
        cmocka_unit_test_teardown(test_since_and_status, teardown),
    };
    return bgt_main_with_redis(&env, &redis, "failures", tests, sizeof(tests) / sizeof(tests[0]));
}
