/*
 * Ingress, end to end: a real botgate in front of a real redis-server, driven over real TLS
 * with libcurl (HTTP/1.1 and HTTP/2) and over plain HTTP/1.1.
 *
 * The contract under test: POST /api/messages is answered 202 only after the activity is in
 * the stream `botgate:activities` as one msgpack `entry`; every refusal carries the JSON
 * error code of error.c's table and stores nothing; a Redis that is down or stalled turns
 * into 503 within redis.timeout_ms, and botgate recovers by itself when Redis returns.
 *
 * The first group shares one Redis and one botgate (started once, in the group setup);
 * tests that need a differently configured pair start their own and stop them in their
 * teardown, so a failed assertion never leaves a server behind for the next test.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "botgate/entry.h"
#include "botgate/error.h"
#include "harness.h"

#define STREAM "botgate:activities"
#define SERVICE_URL "https://smba.trafficmanager.net/emea/"
#define TOKEN "abc.def.ghi"
#define MAIN_TIMEOUT_MS 2000
#define BODY_MAX 4096

static bgt_env env;
static char cert[BGT_PATH_MAX], key[BGT_PATH_MAX];

/* The shared pair of the first group. */
static bgt_redis redis;
static bgt_botgate gate;
static int tls_port, plain_port;
static char https_base[64], http_base[64];

/* A test's own pair (second group): stopped by local_teardown whatever happened. */
static bgt_redis local_redis;
static bgt_redis local_replica;
static bgt_botgate local_gate;

/* Authentication is off in these tests (no auth.app_id): as with the SDK, a request
 * carries no token. test_auth.c covers authentication. */
static const char *const good_headers[] = {"Content-Type: application/json", NULL};

/* ---- helpers ---------------------------------------------------------------------------- */

static long long
xlen(bgt_redis *r)
{
    long long n = bgt_redis_xlen(r, STREAM);
    assert_true(n >= 0);
    return n;
}

static int
post(const char *base, int version, const char *const *headers, const char *body, size_t len,
     bgt_http_resp *resp)
{
    char u[128];
    return bgt_http_post(bgt_url(u, sizeof(u), base, "/api/messages"), version, cert, headers, body,
                         len, resp);
}

/* POSTs body with the given headers and asserts the refusal: status, code, nothing stored. */
static void
expect_refused(const char *const *headers, const char *body, size_t len, long status,
               const char *code)
{
    long long before = xlen(&redis);
    bgt_http_resp resp;
    post(https_base, BGT_HTTP_1_1, headers, body, len, &resp);
    bgt_expect_error(&resp, status, code);
    bgt_http_resp_free(&resp);
    assert_int_equal(xlen(&redis), before);
}

/* Counts the entries of the stream whose activity id is `id`. */
static int
count_activity(bgt_redis *r, const char *id)
{
    bgt_stream_entry *v;
    size_t n;
    assert_int_equal(bgt_redis_xrange(r, STREAM, &v, &n), 0);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        bg_entry e;
        assert_non_null(v[i].entry);
        assert_int_equal(bg_entry_decode(&e, v[i].entry, v[i].entry_len), 0);
        if (bgt_slice_eq(e.activity_id, id))
            count++;
    }
    bgt_stream_entries_free(v, n);
    return count;
}

/*
 * The heart of the contract: one POST, one 202 with an empty body and an X-Request-Id,
 * and exactly one new stream entry that carries the request byte for byte together with
 * the fields botgate read from it.
 */
static void
assert_accepted_and_stored(const char *base, int version, const char *content_type)
{
    char id[64], conv[64], ct[128];
    bgt_fresh_id(id, sizeof(id), "1:");
    bgt_fresh_id(conv, sizeof(conv), "a:conv-");
    snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
    const char *headers[] = {ct, "MS-CV: abc.1", "X-Ms-Tenant-Id: t-1", "Cookie: secret=1", NULL};
    char *body = bgt_teams_message(id, conv, SERVICE_URL, 1024);
    size_t len = strlen(body);

    long long before = xlen(&redis);
    int64_t t0 = bgt_wall_us();
    bgt_http_resp resp;
    post(base, version, headers, body, len, &resp);
    int64_t t1 = bgt_wall_us();
    bgt_expect_status(&resp, 202);
    assert_int_equal(resp.body_len, 0);
    assert_int_equal(resp.http_version,
                     version == BGT_HTTP_2 ? CURL_HTTP_VERSION_2_0 : CURL_HTTP_VERSION_1_1);
    char request_id[256];
    assert_non_null(bgt_http_header(&resp, "X-Request-Id", request_id, sizeof(request_id)));
    assert_true(strlen(request_id) > 0);
    bgt_http_resp_free(&resp);

    /* 202 means Redis confirmed: the entry is there now, not eventually. */
    assert_int_equal(xlen(&redis), before + 1);
    bgt_stream_entry *v;
    size_t n;
    assert_int_equal(bgt_redis_xrange(&redis, STREAM, &v, &n), 0);
    assert_true(n >= 1);
    bgt_stream_entry *last = &v[n - 1];
    assert_int_equal(last->n_fields, 1);
    assert_non_null(last->entry); /* the one field is named "entry" */

    bg_entry e;
    assert_int_equal(bg_entry_decode(&e, last->entry, last->entry_len), 0);
    assert_int_equal(e.version, 1);
    assert_int_equal(e.body.len, len);
    assert_memory_equal(e.body.p, body, len);
    assert_true(bgt_slice_eq(e.type, "message"));
    assert_true(bgt_slice_eq(e.activity_id, id));
    assert_true(bgt_slice_eq(e.channel_id, "msteams"));
    assert_true(bgt_slice_eq(e.conversation_id, conv));
    assert_true(bgt_slice_eq(e.service_url, SERVICE_URL));
    assert_true(bgt_slice_eq(e.request_id, request_id));
    assert_in_range(e.received_at_us, t0, t1);
    assert_int_equal(e.attempt, 0);
    assert_null(bgt_entry_header(&e, "authorization").p);
    assert_true(bgt_slice_eq(bgt_entry_header(&e, "content-type"), content_type));
    assert_true(bgt_slice_eq(bgt_entry_header(&e, "ms-cv"), "abc.1"));
    assert_true(bgt_slice_eq(bgt_entry_header(&e, "x-ms-tenant-id"), "t-1"));
    assert_null(bgt_entry_header(&e, "cookie").p); /* only the headers the bot needs */
    assert_int_equal(e.token_exp, 0);

    bgt_stream_entries_free(v, n);
    free(body);
}

/*
 * POSTs body until it gets 202 or timeout_ms passes. Anything but a 503 on the way is a
 * failure: a recovering botgate may refuse, never acknowledge wrongly or answer garbage.
 */
static void
post_until_accepted(const char *base, const char *body, int timeout_ms)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    for (;;) {
        bgt_http_resp resp;
        post(base, BGT_HTTP_1_1, good_headers, body, strlen(body), &resp);
        if (resp.curl_code == CURLE_OK && resp.status == 202) {
            bgt_http_resp_free(&resp);
            return;
        }
        if (resp.curl_code != CURLE_OK || resp.status != 503 || bgt_mono_ms() >= deadline) {
            bgt_http_resp_print("while waiting for 202", &resp);
            bgt_http_resp_free(&resp);
            fail_msg("no 202 within %d ms", timeout_ms);
        }
        bgt_http_resp_free(&resp);
        bgt_sleep_ms(100);
    }
}

/* ---- the shared pair ---------------------------------------------------------------------- */

static int
group_setup(void **state)
{
    (void)state;
    if (bgt_redis_start(&redis, env.dir, "main", NULL) != 0)
        return -1;
    tls_port = bgt_free_port();
    plain_port = bgt_free_port();
    snprintf(https_base, sizeof(https_base), "https://127.0.0.1:%d", tls_port);
    snprintf(http_base, sizeof(http_base), "http://127.0.0.1:%d", plain_port);
    char state_dir[BGT_PATH_MAX], health[128];
    bgt_path(state_dir, sizeof(state_dir), env.dir, "state");
    mkdir(state_dir, 0700);
    bgt_botgate_conf c = {.tls_port = tls_port,
                          .plain_port = plain_port,
                          .cert_file = cert,
                          .key_file = key,
                          .redis_url = redis.url,
                          .redis_timeout_ms = MAIN_TIMEOUT_MS,
                          .state_dir = state_dir,
                          .extra = "policy:\n  body_max_bytes: 4096\n"};
    char *yaml = bgt_config_yaml(&c);
    /* /readyz: Redis connected, so that the first POST is not a 503 on a loaded machine */
    int rc = bgt_botgate_start(&gate, env.dir, "main", yaml,
                               bgt_url(health, sizeof(health), https_base, "/readyz"), cert);
    free(yaml);
    return rc;
}

static int
group_teardown(void **state)
{
    (void)state;
    if (gate.pid != 0) {
        fprintf(stderr, "test_graceful_stop did not run to the end: killing botgate\n");
        bgt_botgate_kill(&gate);
    }
    bgt_redis_stop(&redis);
    return 0;
}

/* ---- tests on the shared pair ------------------------------------------------------------- */

/* /healthz and /readyz answer on every listener, over both protocols. */
static void
test_probes(void **state)
{
    (void)state;
    const char *bases[] = {https_base, http_base};
    for (int i = 0; i < 2; i++) {
        char u[128];
        bgt_http_resp resp;
        bgt_http_get(bgt_url(u, sizeof(u), bases[i], "/healthz"), BGT_HTTP_1_1, cert, &resp);
        bgt_expect_status(&resp, 200);
        bgt_http_resp_free(&resp);
        bgt_http_get(bgt_url(u, sizeof(u), bases[i], "/readyz"), BGT_HTTP_1_1, cert, &resp);
        bgt_expect_status(&resp, 200);
        bgt_http_resp_free(&resp);
    }
    char u[128];
    bgt_http_resp resp;
    bgt_http_get(bgt_url(u, sizeof(u), https_base, "/healthz"), BGT_HTTP_2, cert, &resp);
    bgt_expect_status(&resp, 200);
    assert_int_equal(resp.http_version, CURL_HTTP_VERSION_2_0);
    bgt_http_resp_free(&resp);
}

static void
test_accept_http1_tls(void **state)
{
    (void)state;
    assert_accepted_and_stored(https_base, BGT_HTTP_1_1, "application/json");
}

static void
test_accept_http2_tls(void **state)
{
    (void)state;
    assert_accepted_and_stored(https_base, BGT_HTTP_2, "application/json");
}

static void
test_accept_http1_plain(void **state)
{
    (void)state;
    assert_accepted_and_stored(http_base, BGT_HTTP_1_1, "application/json");
}

static void
test_content_type_with_charset(void **state)
{
    (void)state;
    assert_accepted_and_stored(https_base, BGT_HTTP_1_1, "application/json; charset=utf-8");
}

static void
test_content_type_refused(void **state)
{
    (void)state;
    char *body = bgt_teams_message("1:ct", "a:ct", SERVICE_URL, 1024);
    const char *text_plain[] = {"Content-Type: text/plain", "Authorization: Bearer " TOKEN, NULL};
    expect_refused(text_plain, body, strlen(body), 415, "unsupported_media_type");
    const char *none[] = {"Authorization: Bearer " TOKEN, NULL};
    expect_refused(none, body, strlen(body), 415, "unsupported_media_type");
    free(body);
}

static void
test_malformed_bodies(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *code;
    } cases[] = {
        {"this is not json", "malformed_json"},
        {"{\"type\":\"message\"", "malformed_json"},
        {"[{\"type\":\"message\"}]", "malformed_json"},
        {"{\"id\":\"1\",\"text\":\"no type\"}", "malformed_activity"},
        {"{\"type\":5,\"id\":\"1\"}", "malformed_activity"},
        {"{\"type\":\"\",\"id\":\"1\"}", "malformed_activity"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fprintf(stderr, "case: %s\n", cases[i].body);
        expect_refused(good_headers, cases[i].body, strlen(cases[i].body), 400, cases[i].code);
    }
}

/* Authentication off, as the SDK without an app id: no token is accepted (the other tests),
 * a token is refused — no token can name an empty audience — and so is a malformed
 * Authorization header. */
static void
test_auth_off_token_refused(void **state)
{
    (void)state;
    char *body = bgt_teams_message("1:auth", "a:auth", SERVICE_URL, 1024);
    const char *with_token[] = {"Content-Type: application/json", "Authorization: Bearer " TOKEN,
                                NULL};
    expect_refused(with_token, body, strlen(body), 401, "bad_audience");
    static const char *const malformed[] = {"Authorization: Basic x", "Authorization: Bearer ",
                                            "Authorization: Bearer  two-spaces"};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        fprintf(stderr, "case: %s\n", malformed[i]);
        const char *headers[] = {"Content-Type: application/json", malformed[i], NULL};
        expect_refused(headers, body, strlen(body), 401, "malformed_token");
    }
    free(body);
}

/* {"type":"ping"} is answered 200 by botgate itself (policy.answer_ping): nothing stored. */
static void
test_ping_answered(void **state)
{
    (void)state;
    long long before = xlen(&redis);
    bgt_http_resp resp;
    post(https_base, BGT_HTTP_1_1, good_headers, "{\"type\":\"ping\"}", 15, &resp);
    assert_int_equal(resp.status, 200);
    bgt_http_resp_free(&resp);
    assert_int_equal(xlen(&redis), before);
}

/* policy.body_max_bytes = 4096; a valid 5000-byte activity with Content-Length. */
static void
test_body_too_large_http1(void **state)
{
    (void)state;
    char id[64];
    bgt_fresh_id(id, sizeof(id), "1:big-");
    char *body = bgt_teams_message(id, "a:big", SERVICE_URL, 5000);
    assert_true(strlen(body) >= 5000);
    expect_refused(good_headers, body, strlen(body), 413, "body_too_large");
    assert_int_equal(count_activity(&redis, id), 0);
    free(body);
}

/* Over HTTP/2 h2o may reset the stream instead of answering: either is a refusal, as long
 * as nothing is stored and, if an answer comes, it is botgate's 413. */
static void
test_body_too_large_http2(void **state)
{
    (void)state;
    char id[64];
    bgt_fresh_id(id, sizeof(id), "1:big2-");
    char *body = bgt_teams_message(id, "a:big", SERVICE_URL, 5000);
    long long before = xlen(&redis);
    bgt_http_resp resp;
    post(https_base, BGT_HTTP_2, good_headers, body, strlen(body), &resp);
    fprintf(stderr, "h2 over the limit: curl %d (%s), status %ld, version %ld\n", resp.curl_code,
            resp.curl_error, resp.status, resp.http_version);
    if (resp.curl_code == CURLE_OK) {
        assert_int_equal(resp.http_version, CURL_HTTP_VERSION_2_0);
        bgt_expect_error(&resp, 413, "body_too_large");
    } else {
        assert_int_not_equal(resp.curl_code, CURLE_OPERATION_TIMEDOUT);
    }
    bgt_http_resp_free(&resp);
    assert_int_equal(xlen(&redis), before);
    assert_int_equal(count_activity(&redis, id), 0);
    free(body);
}

/* Chunked (no Content-Length): the limit must hold while the body streams in. */
static void
test_body_too_large_chunked(void **state)
{
    (void)state;
    char id[64], u[128];
    bgt_fresh_id(id, sizeof(id), "1:chunked-");
    char *body = bgt_teams_message(id, "a:big", SERVICE_URL, 5000);
    long long before = xlen(&redis);
    bgt_http_req req = {.method = "POST",
                        .url = bgt_url(u, sizeof(u), https_base, "/api/messages"),
                        .headers = good_headers,
                        .body = body,
                        .body_len = strlen(body),
                        .version = BGT_HTTP_1_1,
                        .ca_file = cert,
                        .chunked = true};
    bgt_http_resp resp;
    bgt_http_request(&req, &resp);
    fprintf(stderr, "chunked over the limit: curl %d (%s), status %ld\n", resp.curl_code,
            resp.curl_error, resp.status);
    if (resp.curl_code == CURLE_OK)
        bgt_expect_error(&resp, 413, "body_too_large");
    else
        assert_int_not_equal(resp.curl_code, CURLE_OPERATION_TIMEDOUT);
    bgt_http_resp_free(&resp);
    assert_int_equal(xlen(&redis), before);
    assert_int_equal(count_activity(&redis, id), 0);

    /* A chunked body under the limit is accepted: the refusal above was about size. */
    char id2[64];
    bgt_fresh_id(id2, sizeof(id2), "1:chunked-ok-");
    char *small = bgt_teams_message(id2, "a:chunked", SERVICE_URL, 1024);
    req.body = small;
    req.body_len = strlen(small);
    bgt_http_request(&req, &resp);
    bgt_expect_status(&resp, 202);
    bgt_http_resp_free(&resp);
    assert_int_equal(count_activity(&redis, id2), 1);
    free(small);
    free(body);
}

static void
post_expect_202_at(const char *base, const char *body)
{
    bgt_http_resp resp;
    post(base, BGT_HTTP_1_1, good_headers, body, strlen(body), &resp);
    bgt_expect_status(&resp, 202);
    bgt_http_resp_free(&resp);
}

static void
post_expect_202(const char *body)
{
    post_expect_202_at(https_base, body);
}

/* The Connector re-sends: the same (conversation.id, id) is stored once, acknowledged twice. */
static void
test_duplicate_stored_once(void **state)
{
    (void)state;
    char id[64], conv[64];
    bgt_fresh_id(id, sizeof(id), "1:dup-");
    bgt_fresh_id(conv, sizeof(conv), "a:dup-");
    char *body = bgt_teams_message(id, conv, SERVICE_URL, 1024);
    long long before = xlen(&redis);
    post_expect_202(body);
    post_expect_202(body);
    assert_int_equal(xlen(&redis), before + 1);
    assert_int_equal(count_activity(&redis, id), 1);
    free(body);
}

/* Activity ids are unique per conversation only: another conversation's is another one. */
static void
test_same_id_other_conversation(void **state)
{
    (void)state;
    char id[64], conv1[64], conv2[64];
    bgt_fresh_id(id, sizeof(id), "1:same-");
    bgt_fresh_id(conv1, sizeof(conv1), "a:one-");
    bgt_fresh_id(conv2, sizeof(conv2), "a:two-");
    char *b1 = bgt_teams_message(id, conv1, SERVICE_URL, 1024);
    char *b2 = bgt_teams_message(id, conv2, SERVICE_URL, 1024);
    long long before = xlen(&redis);
    post_expect_202(b1);
    post_expect_202(b2);
    assert_int_equal(xlen(&redis), before + 2);
    assert_int_equal(count_activity(&redis, id), 2);
    free(b1);
    free(b2);
}

/* Nothing to de-duplicate on: every POST is stored. */
static void
test_no_id_always_stored(void **state)
{
    (void)state;
    char conv[64];
    bgt_fresh_id(conv, sizeof(conv), "a:noid-");
    char *body = bgt_teams_message(NULL, conv, SERVICE_URL, 1024);
    long long before = xlen(&redis);
    post_expect_202(body);
    post_expect_202(body);
    post_expect_202(body);
    assert_int_equal(xlen(&redis), before + 3);
    free(body);
}

static void
test_routes(void **state)
{
    (void)state;
    char u[128];
    long long before = xlen(&redis);
    bgt_http_resp resp;
    bgt_http_get(bgt_url(u, sizeof(u), https_base, "/no/such/route"), BGT_HTTP_1_1, cert, &resp);
    bgt_expect_status(&resp, 404);
    bgt_http_resp_free(&resp);
    const char *body = "{\"type\":\"message\",\"id\":\"1:route\"}";
    bgt_http_post(bgt_url(u, sizeof(u), https_base, "/api/other"), BGT_HTTP_1_1, cert, good_headers,
                  body, strlen(body), &resp);
    bgt_expect_status(&resp, 404);
    bgt_http_resp_free(&resp);
    bgt_http_get(bgt_url(u, sizeof(u), https_base, "/api/messages"), BGT_HTTP_1_1, cert, &resp);
    bgt_expect_status(&resp, 405);
    bgt_http_resp_free(&resp);
    bgt_http_get(bgt_url(u, sizeof(u), https_base, "/api/messages"), BGT_HTTP_2, cert, &resp);
    bgt_expect_status(&resp, 405);
    bgt_http_resp_free(&resp);
    assert_int_equal(xlen(&redis), before);
}

/* The shared Redis runs with appendonly no: an acknowledged activity could be lost. */
static void
test_durability_warning(void **state)
{
    (void)state;
    const char *needles[] = {"warn", "appendonly", NULL};
    if (!bgt_log_has_line(gate.log, needles, 5000)) {
        bgt_dump_file(gate.log, 16 * 1024);
        fail_msg("no line with \"warn\" and \"appendonly\" in %s", gate.log);
    }
}

/*
 * Redis goes away: botgate refuses with 503 (never 202), in time, reports not ready, stays
 * alive; Redis comes back on the same socket: botgate stores again without a restart.
 */
static void
test_redis_down_and_back(void **state)
{
    (void)state;
    char id[64], conv[64], u[128];
    bgt_fresh_id(id, sizeof(id), "1:down-");
    bgt_fresh_id(conv, sizeof(conv), "a:down-");
    char *body = bgt_teams_message(id, conv, SERVICE_URL, 1024);

    assert_int_equal(bgt_redis_stop(&redis), 0);

    bgt_http_resp resp;
    post(https_base, BGT_HTTP_1_1, good_headers, body, strlen(body), &resp);
    bgt_expect_status(&resp, 503);
    char code[64];
    if (bgt_http_error_code(&resp, code, sizeof(code)) == NULL ||
        (strcmp(code, "queue_unavailable") != 0 && strcmp(code, "queue_timeout") != 0)) {
        bgt_http_resp_print("Redis down", &resp);
        fail_msg("expected queue_unavailable or queue_timeout");
    }
    fprintf(stderr, "POST with Redis down: %s after %lld ms\n", code, (long long)resp.elapsed_ms);
    assert_in_range(resp.elapsed_ms, 0, MAIN_TIMEOUT_MS + 1000);
    bgt_http_resp_free(&resp);

    long last;
    if (!bgt_poll_status(https_base, "/readyz", cert, 503, 5000, &last))
        fail_msg("/readyz answers %ld, not 503, with Redis down", last);
    bgt_http_get(bgt_url(u, sizeof(u), https_base, "/healthz"), BGT_HTTP_1_1, cert, &resp);
    bgt_expect_status(&resp, 200);
    bgt_http_resp_free(&resp);

    assert_int_equal(bgt_redis_restart(&redis), 0);
    post_until_accepted(https_base, body, 10000);
    /* SHUTDOWN NOSAVE emptied Redis: the stream holds exactly what was acknowledged since. */
    assert_int_equal(xlen(&redis), 1);
    assert_int_equal(count_activity(&redis, id), 1);
    if (!bgt_poll_status(https_base, "/readyz", cert, 200, 10000, &last))
        fail_msg("/readyz answers %ld, not 200, after Redis came back", last);
    free(body);
}

/* Last of the group: SIGTERM stops botgate with status 0 (under ASan: and no leak). */
static void
test_graceful_stop(void **state)
{
    (void)state;
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

/* ---- tests with their own Redis and botgate --------------------------------------------- */

static int
local_teardown(void **state)
{
    (void)state;
    bgt_botgate_kill(&local_gate);
    bgt_redis_stop(&local_redis);
    bgt_redis_stop(&local_replica);
    return 0;
}

/* Starts local_gate with a TLS listener on a fresh port; base receives its https URL. */
static void
start_local_gate(const char *name, bgt_botgate_conf *c, char *base, size_t cap)
{
    c->tls_port = bgt_free_port();
    c->cert_file = cert;
    c->key_file = key;
    snprintf(base, cap, "https://127.0.0.1:%d", c->tls_port);
    char health[128];
    char *yaml = bgt_config_yaml(c);
    int rc = bgt_botgate_start(&local_gate, env.dir, name, yaml,
                               bgt_url(health, sizeof(health), base, "/healthz"), cert);
    free(yaml);
    assert_int_equal(rc, 0);
}

typedef struct sleeper {
    const char *sock;
    bool ok;
} sleeper;

static void *
on_sleeper_run(void *arg)
{
    sleeper *s = arg;
    redisContext *c = bgt_redis_connect(s->sock, 10000);
    if (c == NULL)
        return NULL;
    redisReply *rep = redisCommand(c, "DEBUG SLEEP 3");
    s->ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
    if (rep != NULL)
        freeReplyObject(rep);
    redisFree(c);
    return NULL;
}

/* True once a PING on a new connection goes unanswered for 150 ms: Redis is asleep. */
static bool
redis_is_stalled(const char *sock)
{
    redisContext *c = bgt_redis_connect(sock, 150);
    if (c == NULL)
        return false;
    redisReply *rep = redisCommand(c, "PING");
    bool stalled = rep == NULL && c->err == REDIS_ERR_IO; /* hiredis 0.14: a timeout is EAGAIN */
    if (rep != NULL)
        freeReplyObject(rep);
    redisFree(c);
    return stalled;
}

/*
 * Redis alive but not answering (DEBUG SLEEP 3) with redis.timeout_ms 500: the POST gets
 * 503 queue_timeout well before the stall ends. Whether Redis applied the write afterwards
 * is open; what is not: a retry is acknowledged, and the stream then holds it exactly once.
 */
static void
test_redis_stall(void **state)
{
    (void)state;
    bgt_redis_opts opts = {.debug_command = true};
    assert_int_equal(bgt_redis_start(&local_redis, env.dir, "stall", &opts), 0);
    char base[64];
    bgt_botgate_conf c = {.redis_url = local_redis.url, .redis_timeout_ms = 500};
    start_local_gate("stall", &c, base, sizeof(base));

    char id[64], conv[64];
    bgt_fresh_id(id, sizeof(id), "1:warm-");
    bgt_fresh_id(conv, sizeof(conv), "a:stall-");
    char *warm = bgt_teams_message(id, conv, SERVICE_URL, 1024);
    post_until_accepted(base, warm, 10000);
    free(warm);

    bgt_fresh_id(id, sizeof(id), "1:stall-");
    char *body = bgt_teams_message(id, conv, SERVICE_URL, 1024);
    sleeper s = {.sock = local_redis.sock};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, on_sleeper_run, &s), 0);
    int64_t deadline = bgt_mono_ms() + 2000;
    bool stalled;
    while (!(stalled = redis_is_stalled(local_redis.sock)) && bgt_mono_ms() < deadline)
        bgt_sleep_ms(10);
    if (!stalled) {
        pthread_join(th, NULL);
        fail_msg("DEBUG SLEEP did not stall Redis within 2 s");
    }

    bgt_http_resp resp;
    post(base, BGT_HTTP_1_1, good_headers, body, strlen(body), &resp);
    pthread_join(th, NULL);
    assert_true(s.ok);
    fprintf(stderr, "POST during the stall: status %ld after %lld ms\n", resp.status,
            (long long)resp.elapsed_ms);
    bgt_expect_error(&resp, 503, "queue_timeout");
    assert_in_range(resp.elapsed_ms, 0, 1500);
    bgt_http_resp_free(&resp);

    post_until_accepted(base, body, 10000);
    assert_int_equal(count_activity(&local_redis, id), 1);
    free(body);
    assert_int_equal(bgt_botgate_stop(&local_gate), 0);
}

/* appendonly yes + appendfsync always: nothing to warn about. */
static void
test_no_durability_warning_with_aof(void **state)
{
    (void)state;
    bgt_redis_opts opts = {.aof = true};
    assert_int_equal(bgt_redis_start(&local_redis, env.dir, "aof", &opts), 0);
    char base[64], id[64], conv[64];
    bgt_botgate_conf c = {.redis_url = local_redis.url};
    start_local_gate("aof", &c, base, sizeof(base));
    long last;
    if (!bgt_poll_status(base, "/readyz", cert, 200, 10000, &last))
        fail_msg("/readyz answers %ld", last);
    bgt_fresh_id(id, sizeof(id), "1:aof-");
    bgt_fresh_id(conv, sizeof(conv), "a:aof-");
    char *body = bgt_teams_message(id, conv, SERVICE_URL, 1024);
    post_until_accepted(base, body, 10000);
    free(body);
    assert_int_equal(count_activity(&local_redis, id), 1);
    /* The log is judged whole, after botgate flushed it on exit. */
    int stopped = bgt_botgate_stop(&local_gate);
    const char *needles[] = {"warn", "appendonly", NULL};
    if (bgt_log_has_line(local_gate.log, needles, 0)) {
        bgt_dump_file(local_gate.log, 16 * 1024);
        fail_msg("durability warning although Redis runs with appendfsync always");
    }
    assert_int_equal(stopped, 0);
}

/* Polls the master's INFO until `replicas` replicas are online. */
static bool
wait_replicas(bgt_redis *master, int replicas, int timeout_ms)
{
    char want[32];
    snprintf(want, sizeof(want), "connected_slaves:%d", replicas);
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    do {
        redisReply *rep = bgt_redis_cmd(master, "INFO replication");
        bool ok = rep != NULL && rep->type == REDIS_REPLY_STRING && strstr(rep->str, want) != NULL;
        if (rep != NULL)
            freeReplyObject(rep);
        if (ok)
            return true;
        bgt_sleep_ms(50);
    } while (bgt_mono_ms() < deadline);
    return false;
}

/*
 * redis.min_replicas_ack 1: a 202 only once WAIT saw a replica take the write, so the
 * replica holds the entry when the client hears 202; with the replica gone, 503
 * replica_ack_missing instead of an acknowledgement that one lost host would undo.
 */
static void
test_replica_ack(void **state)
{
    (void)state;
    bgt_redis_opts master_opts = {.port = bgt_free_port()};
    assert_int_equal(bgt_redis_start(&local_redis, env.dir, "primary", &master_opts), 0);
    bgt_redis_opts replica_opts = {.replicaof_port = master_opts.port};
    assert_int_equal(bgt_redis_start(&local_replica, env.dir, "replica", &replica_opts), 0);
    if (!wait_replicas(&local_redis, 1, 10000))
        fail_msg("the replica did not attach within 10 s");

    char base[64], id[64], conv[64];
    bgt_botgate_conf c = {.redis_url = local_redis.url,
                          .redis_timeout_ms = 2000,
                          .redis_extra = "  min_replicas_ack: 1\n"};
    start_local_gate("replica", &c, base, sizeof(base));
    bgt_fresh_id(id, sizeof(id), "1:replica-");
    bgt_fresh_id(conv, sizeof(conv), "a:replica-");
    char *body = bgt_teams_message(id, conv, SERVICE_URL, 1024);
    post_until_accepted(base, body, 10000);
    free(body);
    /* acknowledged means the replica already has it: no polling here */
    assert_int_equal(count_activity(&local_replica, id), 1);

    assert_int_equal(bgt_redis_stop(&local_replica), 0);
    assert_true(wait_replicas(&local_redis, 0, 10000));
    bgt_fresh_id(id, sizeof(id), "1:alone-");
    body = bgt_teams_message(id, conv, SERVICE_URL, 1024);
    bgt_http_resp resp;
    post(base, BGT_HTTP_1_1, good_headers, body, strlen(body), &resp);
    free(body);
    bgt_expect_error(&resp, 503, "replica_ack_missing");
    bgt_http_resp_free(&resp);
    assert_int_equal(bgt_botgate_stop(&local_gate), 0);
}

/* The first unix socket under dir (recursively) into out; false if there is none. */
static bool
find_socket(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[BGT_PATH_MAX];
        struct stat st;
        bgt_path(p, sizeof(p), dir, de->d_name);
        if (lstat(p, &st) != 0)
            continue;
        if (S_ISSOCK(st.st_mode)) {
            snprintf(out, cap, "%s", p);
            found = true;
        } else if (S_ISDIR(st.st_mode)) {
            found = find_socket(p, out, cap);
        }
    }
    closedir(d);
    return found;
}

/* redis.url "": botgate runs its own redis-server under <state_dir>/redis and stops it. */
static void
test_private_redis(void **state)
{
    (void)state;
    char state_dir[BGT_PATH_MAX], redis_dir[BGT_PATH_MAX], base[64];
    bgt_path(state_dir, sizeof(state_dir), env.dir, "state-private");
    assert_int_equal(mkdir(state_dir, 0700), 0);
    bgt_path(redis_dir, sizeof(redis_dir), state_dir, "redis");
    bgt_botgate_conf c = {.redis_url = "", .state_dir = state_dir};
    start_local_gate("private", &c, base, sizeof(base));
    long last;
    if (!bgt_poll_status(base, "/readyz", cert, 200, 10000, &last))
        fail_msg("/readyz answers %ld with a private Redis", last);

    struct stat st;
    assert_int_equal(stat(redis_dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_true(bgt_count_procs_using("redis-server", state_dir) >= 1);

    char id[64], conv[64];
    bgt_fresh_id(id, sizeof(id), "1:private-");
    bgt_fresh_id(conv, sizeof(conv), "a:private-");
    char *body = bgt_teams_message(id, conv, SERVICE_URL, 1024);
    post_expect_202_at(base, body);
    free(body);

    /* If the private Redis listens on a unix socket, the entry must be in it. */
    char sock[BGT_PATH_MAX];
    bool have_sock = find_socket(state_dir, sock, sizeof(sock));
    if (have_sock) {
        bgt_redis view = {0};
        snprintf(view.sock, sizeof(view.sock), "%s", sock);
        assert_int_equal(count_activity(&view, id), 1);
        bgt_redis_stop(&view); /* pid 0: only closes the connection */
    } else {
        fprintf(stderr, "private Redis has no unix socket under %s: not inspected\n", state_dir);
    }

    /* Whether or not botgate exits cleanly, its Redis must be gone: judged first. */
    int stopped = bgt_botgate_stop(&local_gate);
    int64_t deadline = bgt_mono_ms() + 5000;
    int n;
    while ((n = bgt_count_procs_using("redis-server", state_dir)) > 0 && bgt_mono_ms() < deadline)
        bgt_sleep_ms(50);
    assert_int_equal(n, 0);
    if (have_sock) {
        redisContext *ctx = bgt_redis_connect(sock, 500);
        redisReply *rep = ctx != NULL ? redisCommand(ctx, "PING") : NULL;
        bool answered = rep != NULL;
        if (rep != NULL)
            freeReplyObject(rep);
        if (ctx != NULL)
            redisFree(ctx);
        assert_false(answered);
    }
    assert_int_equal(stopped, 0);
}

/* ---- configuration errors: refused at start, exit status 2, the key named --------------- */

/* A configuration that would start, with `from` replaced by `to` in its text. */
static char *
config_with(const char *from, const char *to, const char *redis_extra, const char *cert_file)
{
    bgt_botgate_conf c = {.tls_port = bgt_free_port(),
                          .plain_port = bgt_free_port(),
                          .cert_file = cert_file != NULL ? cert_file : cert,
                          .key_file = key,
                          .redis_url = "unix:///nonexistent/redis.sock",
                          .redis_extra = redis_extra};
    char *yaml = bgt_config_yaml(&c);
    if (from == NULL)
        return yaml;
    char *at = strstr(yaml, from);
    assert_non_null(at);
    size_t head = (size_t)(at - yaml), fl = strlen(from), tl = strlen(to);
    char *out = malloc(strlen(yaml) - fl + tl + 1);
    memcpy(out, yaml, head);
    memcpy(out + head, to, tl);
    strcpy(out + head + tl, at + fl);
    free(yaml);
    return out;
}

static void
expect_config_refused(const char *name, char *yaml, const char *key_name)
{
    char file[BGT_PATH_MAX], log[BGT_PATH_MAX];
    bgt_pathf(file, sizeof(file), env.dir, "config-%s.yaml", name);
    bgt_pathf(log, sizeof(log), env.dir, "config-%s.log", name);
    assert_int_equal(bgt_write_file(file, yaml, -1), 0);
    const char *args[] = {"serve", "-c", file, NULL};
    char *err = NULL;
    int status = bgt_botgate_run(args, log, 20000, &err);
    if (status != 2 || (key_name != NULL && (err == NULL || strstr(err, key_name) == NULL))) {
        fprintf(stderr, "config:\n%s\nstatus %d, stderr:\n%s\n", yaml, status,
                err != NULL ? err : "");
        bgt_dump_file(log, 16 * 1024);
        free(err);
        free(yaml);
        fail_msg("expected exit status 2 and \"%s\" on stderr", key_name ? key_name : "");
    }
    free(err);
    free(yaml);
}

static void
test_config_unknown_key(void **state)
{
    (void)state;
    expect_config_refused("unknown", config_with(NULL, NULL, "  bogus_key: 1\n", NULL),
                          "redis.bogus_key");
}

/* Sentinels without the master's name are refused rather than guessed at; so is an
 * allowlist entry with host bits set (10.0.0.1/8: a typo, not a network). */
static void
test_config_not_yet_built(void **state)
{
    (void)state;
    expect_config_refused("sentinels",
                          config_with(NULL, NULL, "  sentinels: [127.0.0.1:26379]\n", NULL),
                          "redis.master_name");
    char *yaml = config_with(NULL, NULL, NULL, NULL);
    size_t n = strlen(yaml) + 64;
    char *more = malloc(n);
    snprintf(more, n, "%spolicy:\n  allow_cidrs: [10.0.0.1/8]\n", yaml);
    free(yaml);
    expect_config_refused("allow-cidrs", more, "policy.allow_cidrs");
}

static void
test_config_out_of_range(void **state)
{
    (void)state;
    expect_config_refused("range", config_with("timeout_ms: 2000", "timeout_ms: 0", NULL, NULL),
                          "redis.timeout_ms");
}

static void
test_config_missing_cert(void **state)
{
    (void)state;
    char missing[BGT_PATH_MAX];
    bgt_path(missing, sizeof(missing), env.dir, "no-such-cert.pem");
    expect_config_refused("cert", config_with(NULL, NULL, NULL, missing), "tls.cert_file");
}

static void
test_config_file_missing(void **state)
{
    (void)state;
    char file[BGT_PATH_MAX], log[BGT_PATH_MAX];
    bgt_path(file, sizeof(file), env.dir, "no-such-config.yaml");
    bgt_path(log, sizeof(log), env.dir, "config-nofile.log");
    const char *args[] = {"serve", "-c", file, NULL};
    char *err = NULL;
    int status = bgt_botgate_run(args, log, 20000, &err);
    if (status != 2)
        fprintf(stderr, "status %d, stderr:\n%s\n", status, err != NULL ? err : "");
    free(err);
    assert_int_equal(status, 2);
}

int
main(void)
{
    bgt_botgate_role = "ingress"; /* these tests inspect the stream: no consumer */
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_probes),
        cmocka_unit_test(test_accept_http1_tls),
        cmocka_unit_test(test_accept_http2_tls),
        cmocka_unit_test(test_accept_http1_plain),
        cmocka_unit_test(test_content_type_with_charset),
        cmocka_unit_test(test_content_type_refused),
        cmocka_unit_test(test_malformed_bodies),
        cmocka_unit_test(test_auth_off_token_refused),
        cmocka_unit_test(test_ping_answered),
        cmocka_unit_test(test_body_too_large_http1),
        cmocka_unit_test(test_body_too_large_http2),
        cmocka_unit_test(test_body_too_large_chunked),
        cmocka_unit_test(test_duplicate_stored_once),
        cmocka_unit_test(test_same_id_other_conversation),
        cmocka_unit_test(test_no_id_always_stored),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_durability_warning),
        cmocka_unit_test(test_redis_down_and_back),
        cmocka_unit_test(test_graceful_stop),
    };
    const struct CMUnitTest own[] = {
        cmocka_unit_test_teardown(test_redis_stall, local_teardown),
        cmocka_unit_test_teardown(test_no_durability_warning_with_aof, local_teardown),
        cmocka_unit_test_teardown(test_private_redis, local_teardown),
        cmocka_unit_test_teardown(test_replica_ack, local_teardown),
        cmocka_unit_test(test_config_unknown_key),
        cmocka_unit_test(test_config_out_of_range),
        cmocka_unit_test(test_config_not_yet_built),
        cmocka_unit_test(test_config_missing_cert),
        cmocka_unit_test(test_config_file_missing),
    };
    if (bgt_env_init(&env) != 0 || bgt_tls_make_cert(env.dir, cert, key) != 0)
        return 1;
    int failed = cmocka_run_group_tests_name("ingress", shared, group_setup, group_teardown);
    failed += cmocka_run_group_tests_name("ingress_own_instances", own, NULL, NULL);
    return bgt_env_exit(&env, failed);
}
