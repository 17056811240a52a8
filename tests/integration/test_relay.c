/*
 * The Connector relay (issue 6), end to end with real parts: a redis-server, the fake
 * Connector (tests/tools/fake_connector: HTTPS, OpenID keys, the AAD token endpoint and
 * the /v3 routes, which record what they receive) and a botgate with authentication on and
 * the relay on a free loopback port, started afresh for each test so that its token
 * manager starts empty. botgate runs --role ingress: no dispatcher, the relay alone talks
 * to the Connector.
 *
 * What the tests prove, through the Connector's records (DIR/token_requests.jsonl,
 * DIR/v3_requests.jsonl) and the relay's answers, never through timing:
 *   - an authenticated activity for C puts C's serviceUrl in the directory, and relay calls
 *     for C reach the Connector there, with the token the token endpoint issued, the body
 *     unchanged, the Connector's answer passed back; one token request for many calls;
 *   - a token is refreshed in the background before it lapses (its refresh is recorded
 *     before any caller asked again, and the next call carries the new token without a
 *     second fetch);
 *   - the token endpoint down while the token held is usable: no failed call;
 *   - invalid_client: 502 with AAD's reason, a failure record, never the secret;
 *   - unknown conversation: 404 naming it; a serviceUrl never seen in a verified token is
 *     never called, whatever the path, Host, X-Forwarded-Host, request-target or body say;
 *   - retries only for 502/503/429+Retry-After, counted; other statuses passed through;
 *   - a 401 from the Connector (the token refused): one fetch forced at once and one retry
 *     with the new token, counted; a second 401 passed back; calls refused with the same
 *     token share one fetch; forced fetches at most one per BG_RELAY_TOKEN_FORCE_INTERVAL_MS;
 *   - a non-loopback relay.listen is refused at start (exit 2, the key named); relay.secret
 *     is required when set and never forwarded; with authentication off nothing is stored
 *     and the relay does not listen (the log says why);
 *   - the official SDK's ConnectorClient (npm botframework-connector) pointed at the relay.
 */
#include "exposition.h"
#include "harness.h"

#include "botgate/relay_path.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <jansson.h>

#define APP_ID "relay-app-id"
#define APP_SECRET "s3cret-Value~with/odd+chars"
#define STREAM "botgate:activities"
/* A Teams-like id: ':', '@', ';' and '=' must travel percent-encoded. */
#define CONV "a:1Xy-Z_9@thread.skype;messageid=17"
#define CONV_ENC "a%3A1Xy-Z_9%40thread.skype%3Bmessageid%3D17"

static bgt_env env;
static bgt_redis redis;
static char conn_dir[BGT_PATH_MAX];
static int conn_port;
static char service_url[128]; /* the legitimate one: the connector under /teams/ */
static bgt_botgate gate;
static int plain_port, relay_port, admin_port;
static char relay_base[64];

/* ---- the Connector's records ------------------------------------------------------------ */

/* Every line of dir/name as a JSON array (empty when there is no file). */
static json_t *
records_in(const char *dir, const char *name)
{
    char path[BGT_PATH_MAX];
    json_t *all = json_array();
    char *text = bgt_read_file(bgt_path(path, sizeof(path), dir, name), NULL);
    for (char *line = text, *nl; line != NULL && *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        *nl = '\0';
        json_t *doc = json_loads(line, 0, NULL);
        assert_non_null(doc);
        json_array_append_new(all, doc);
    }
    free(text);
    return all;
}

/* The Connector's records: conn_dir/name. */
static json_t *
records(const char *name)
{
    return records_in(conn_dir, name);
}

static size_t
count_records(const char *name)
{
    json_t *all = records(name);
    size_t n = json_array_size(all);
    json_decref(all);
    return n;
}

static const char *
field(json_t *rec, const char *name)
{
    const char *v = json_string_value(json_object_get(rec, name));
    assert_non_null(v);
    return v;
}

/* Polls until conn_dir/name holds at least n records (30 s: ASan, a loaded machine). */
static void
wait_records(const char *name, size_t n)
{
    int64_t deadline = bgt_mono_ms() + 30000;
    while (count_records(name) < n) {
        if (bgt_mono_ms() > deadline)
            fail_msg("%s: %zu records, expected %zu", name, count_records(name), n);
        bgt_sleep_ms(50);
    }
}

static void
clear_records(void)
{
    char path[BGT_PATH_MAX];
    unlink(bgt_path(path, sizeof(path), conn_dir, "token_requests.jsonl"));
    unlink(bgt_path(path, sizeof(path), conn_dir, "v3_requests.jsonl"));
    const char *switches[] = {"token_down",  "token_error", "token_expires_in",
                              "v3_statuses", "revoke",      "slow_ms"};
    for (size_t i = 0; i < sizeof(switches) / sizeof(switches[0]); i++)
        unlink(bgt_path(path, sizeof(path), conn_dir, switches[i]));
}

static void
set_switch(const char *name, const char *content)
{
    char path[BGT_PATH_MAX], tmp[BGT_PATH_MAX + 8];
    bgt_path(path, sizeof(path), conn_dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_equal(bgt_write_file(tmp, content, -1), 0);
    assert_int_equal(rename(tmp, path), 0);
}

/* ---- botgate ------------------------------------------------------------------------------ */

/* Starts gate with the relay on a free port; relay_more: more lines inside relay:,
 * auth_more: inside auth: (both may be NULL). */
static void
start_gate_with(const char *name, const char *relay_more, const char *auth_more)
{
    char state_dir[BGT_PATH_MAX], health[128], relay[1024], more_auth[512], access[BGT_PATH_MAX];
    bgt_pathf(state_dir, sizeof(state_dir), env.dir, "state-%s", name);
    bgt_pathf(access, sizeof(access), env.dir, "access-%s.log", name);
    mkdir(state_dir, 0700);
    snprintf(more_auth, sizeof(more_auth), "  app_password: \"%s\"\n%s", APP_SECRET,
             auth_more != NULL ? auth_more : "");
    char *extra = bgt_connector_auth_yaml(conn_dir, conn_port, APP_ID, more_auth);
    plain_port = bgt_free_port();
    relay_port = bgt_free_port();
    admin_port = bgt_free_port();
    char admin[64];
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", admin_port);
    snprintf(relay, sizeof(relay),
             "  listen: \"127.0.0.1:%d\"\n"
             "  token_url: \"https://127.0.0.1:%d/botframework.com/oauth2/v2.0/token\"\n"
             "  timeout_ms: 10000\n%s",
             relay_port, conn_port, relay_more != NULL ? relay_more : "");
    snprintf(relay_base, sizeof(relay_base), "http://127.0.0.1:%d", relay_port);
    bgt_botgate_conf c = {.plain_port = plain_port,
                          .redis_url = redis.url,
                          .state_dir = state_dir,
                          .relay = relay,
                          .admin = admin,
                          .log_access = access,
                          .extra = extra};
    char base[64];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", plain_port);
    char *yaml = bgt_config_yaml(&c);
    bgt_botgate_role = "ingress";
    int rc = bgt_botgate_start(&gate, env.dir, name, yaml,
                               bgt_url(health, sizeof(health), base, "/healthz"), NULL);
    free(yaml);
    free(extra);
    assert_int_equal(rc, 0);
    long last;
    if (!bgt_poll_status(base, "/readyz", NULL, 200, 20000, &last))
        fail_msg("/readyz answers %ld", last);
}

static void
start_gate(const char *name, const char *relay_more)
{
    start_gate_with(name, relay_more, NULL);
}

static void
stop_gate(void)
{
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

/* An authenticated activity of conversation conv, its body's serviceUrl body_url and its
 * token's serviceurl claim claim_url; returns the status. */
static long
inbound(const char *conv, const char *body_url, const char *claim_url)
{
    char url[128], id[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/messages", plain_port);
    bgt_fresh_id(id, sizeof(id), "act");
    char *token = bgt_connector_mint(conn_dir, NULL, APP_ID, claim_url, 600);
    assert_non_null(token);
    char authz[4096];
    snprintf(authz, sizeof(authz), "Authorization: Bearer %s", token);
    const char *headers[] = {"Content-Type: application/json", authz, NULL};
    char *body = bgt_teams_message(id, conv, body_url, 0);
    bgt_http_resp resp;
    bgt_http_post(url, BGT_HTTP_1_1, NULL, headers, body, strlen(body), &resp);
    long status = resp.status;
    if (status != 202 && status != 401)
        bgt_http_resp_print("inbound", &resp);
    bgt_http_resp_free(&resp);
    free(body);
    free(token);
    return status;
}

/* An authenticated invoke (proxied synchronously: no bot listens, so 502) of conv. */
static long
inbound_invoke(const char *conv)
{
    char url[128], id[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/messages", plain_port);
    bgt_fresh_id(id, sizeof(id), "inv");
    char *token = bgt_connector_mint(conn_dir, NULL, APP_ID, service_url, 600);
    assert_non_null(token);
    char authz[4096], body[1024];
    snprintf(authz, sizeof(authz), "Authorization: Bearer %s", token);
    snprintf(body, sizeof(body),
             "{\"type\":\"invoke\",\"name\":\"task/fetch\",\"id\":\"%s\",\"channelId\":"
             "\"msteams\",\"serviceUrl\":\"%s\",\"conversation\":{\"id\":\"%s\","
             "\"tenantId\":\"tenant-inv\"}}",
             id, service_url, conv);
    const char *headers[] = {"Content-Type: application/json", authz, NULL};
    bgt_http_resp resp;
    bgt_http_post(url, BGT_HTTP_1_1, NULL, headers, body, strlen(body), &resp);
    long status = resp.status;
    bgt_http_resp_free(&resp);
    free(token);
    return status;
}

/* A relay call: method, path (as sent), body (NULL: none); extra headers may be NULL. */
static void
relay_call(const char *method, const char *path, const char *body, const char *const *extra,
           bgt_http_resp *resp)
{
    char url[1024];
    const char *headers[8] = {"Content-Type: application/json; charset=utf-8"};
    size_t n = 1;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 7; i++)
        headers[n++] = extra[i];
    headers[n] = NULL;
    snprintf(url, sizeof(url), "%s%s", relay_base, path);
    bgt_http_req req = {.method = method,
                        .url = url,
                        .headers = headers,
                        .body = body,
                        .body_len = body != NULL ? strlen(body) : 0,
                        .version = BGT_HTTP_1_1};
    bgt_http_request(&req, resp);
}

static long
relay_status(const char *method, const char *path, const char *body)
{
    bgt_http_resp resp;
    relay_call(method, path, body, NULL, &resp);
    long status = resp.status;
    bgt_http_resp_free(&resp);
    return status;
}

/* Sends raw bytes to the relay port and returns the status of the answer (0: none). */
static long
relay_raw(const char *bytes)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)relay_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(write(fd, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
    char buf[4096];
    size_t got = 0;
    ssize_t k;
    while (got < sizeof(buf) - 1 && (k = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)k;
    buf[got] = '\0';
    close(fd);
    long status = 0;
    sscanf(buf, "HTTP/1.%*d %ld", &status);
    return status;
}

/* The token of the n-th (0-based) token request the Connector answered 200. */
static char *
issued_token(size_t n)
{
    json_t *all = records("token_requests.jsonl");
    size_t seen = 0;
    char *out = NULL;
    for (size_t i = 0; i < json_array_size(all) && out == NULL; i++) {
        json_t *r = json_array_get(all, i);
        if (json_integer_value(json_object_get(r, "status")) == 200 && seen++ == n)
            out = strdup(field(r, "access_token"));
    }
    json_decref(all);
    assert_non_null(out);
    return out;
}

/* The Authorization header of the n-th /v3 request. */
static char *
v3_authorization(size_t n)
{
    json_t *all = records("v3_requests.jsonl");
    assert_true(n < json_array_size(all));
    char *out = strdup(field(json_array_get(all, n), "authorization"));
    json_decref(all);
    return out;
}

static void
expect_bearer(size_t v3_index, size_t token_index)
{
    char *authz = v3_authorization(v3_index);
    char *token = issued_token(token_index);
    char want[256];
    snprintf(want, sizeof(want), "Bearer %s", token);
    assert_string_equal(authz, want);
    free(authz);
    free(token);
}

/* The status the Connector answered the n-th /v3 request. */
static long
v3_status(size_t n)
{
    json_t *all = records("v3_requests.jsonl");
    assert_true(n < json_array_size(all));
    long st = (long)json_integer_value(json_object_get(json_array_get(all, n), "status"));
    json_decref(all);
    return st;
}

/* The t_ms of the n-th record of name. */
static int64_t
record_t_ms(const char *name, size_t n)
{
    json_t *all = records(name);
    assert_true(n < json_array_size(all));
    int64_t t = (int64_t)json_integer_value(json_object_get(json_array_get(all, n), "t_ms"));
    json_decref(all);
    return t;
}

/* The relay lines of access log `name` (in env.dir), as a JSON array. */
static json_t *
relay_access_lines(const char *name)
{
    json_t *all = records_in(env.dir, name), *out = json_array();
    for (size_t i = 0; i < json_array_size(all); i++)
        if (strcmp(field(json_array_get(all, i), "kind"), "relay") == 0)
            json_array_append(out, json_array_get(all, i));
    json_decref(all);
    return out;
}

/* One sample of botgate's /metrics, with up to two labels (l1 NULL: none; l2 NULL: one). */
static double
metric(const char *name, const char *l1, const char *v1, const char *l2, const char *v2)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", admin_port);
    bgt_http_resp resp;
    assert_int_equal(bgt_http_get(url, BGT_HTTP_1_1, NULL, &resp), 0);
    bgt_expect_status(&resp, 200);
    xpo x;
    if (x_parse(&x, resp.body) != 0)
        fail_msg("/metrics: %s", x.err);
    double v = l1 == NULL   ? x_get(&x, name, NULL)
               : l2 == NULL ? x_get(&x, name, l1, v1, NULL)
                            : x_get(&x, name, l1, v1, l2, v2, NULL);
    x_free(&x);
    bgt_http_resp_free(&resp);
    return v;
}

/* Every record of <stream>:failures as "class target detail" lines, joined. */
static char *
failure_records(void)
{
    redisReply *r = bgt_redis_cmd(&redis, "XRANGE %s:failures - +", STREAM);
    assert_non_null(r);
    size_t cap = 1, len = 0;
    char *out = calloc(1, 1);
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *fields = r->element[i]->element[1];
        for (size_t j = 0; j + 1 < fields->elements; j += 2) {
            const char *v = fields->element[j + 1]->str;
            size_t need = len + strlen(v) + 2;
            if (need > cap) {
                cap = need * 2;
                out = realloc(out, cap);
            }
            len += (size_t)sprintf(out + len, "%s%c", v, j + 2 < fields->elements ? ' ' : '\n');
        }
    }
    freeReplyObject(r);
    return out;
}

/* ---- tests --------------------------------------------------------------------------------- */

static int
test_setup(void **state)
{
    (void)state;
    clear_records();
    redisReply *r = bgt_redis_cmd(&redis, "FLUSHALL");
    freeReplyObject(r);
    return 0;
}

static int
test_teardown(void **state)
{
    (void)state;
    bgt_botgate_kill(&gate);
    return 0;
}

static void
test_reply_reaches_connector(void **state)
{
    (void)state;
    start_gate("reply", NULL);
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    /* the directory entry, written by the enqueue script */
    redisReply *r = bgt_redis_cmd(&redis, "HGET %s:conversations:%s service_url", STREAM, CONV);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, service_url);
    freeReplyObject(r);
    r = bgt_redis_cmd(&redis, "TTL %s:conversations:%s", STREAM, CONV);
    assert_true(r->integer > 7776000 - 100 && r->integer <= 7776000);
    freeReplyObject(r);

    const char *body = "{\"type\":\"message\",\"text\":\"hello from the bot\"}";
    bgt_http_resp resp;
    relay_call("POST", "/v3/conversations/" CONV_ENC "/activities/act-1", body, NULL, &resp);
    bgt_expect_status(&resp, 200);
    assert_non_null(strstr(resp.body, "\"id\""));
    bgt_http_resp_free(&resp);
    assert_int_equal(count_records("v3_requests.jsonl"), 1);
    json_t *all = records("v3_requests.jsonl");
    json_t *rec = json_array_get(all, 0);
    assert_string_equal(field(rec, "method"), "POST");
    assert_string_equal(field(rec, "path"),
                        "/teams/v3/conversations/" CONV_ENC "/activities/act-1");
    assert_string_equal(field(rec, "body"), body);
    assert_string_equal(field(rec, "content_type"), "application/json; charset=utf-8");
    json_decref(all);
    expect_bearer(0, 0);

    /* many calls, every route: one token request in all */
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 200);
    assert_int_equal(relay_status("PUT", "/v3/conversations/" CONV_ENC "/activities/act-1", body),
                     200);
    assert_int_equal(
        relay_status("DELETE", "/v3/conversations/" CONV_ENC "/activities/act-1", NULL), 200);
    for (int i = 0; i < 5; i++)
        assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body),
                         200);
    all = records("v3_requests.jsonl");
    assert_int_equal(json_array_size(all), 9);
    assert_string_equal(field(json_array_get(all, 1), "path"),
                        "/teams/v3/conversations/" CONV_ENC "/activities");
    assert_string_equal(field(json_array_get(all, 2), "method"), "PUT");
    assert_string_equal(field(json_array_get(all, 3), "method"), "DELETE");
    json_decref(all);
    for (size_t i = 1; i < 9; i++)
        expect_bearer(i, 0);
    all = records("token_requests.jsonl");
    assert_int_equal(json_array_size(all), 1);
    rec = json_array_get(all, 0);
    assert_string_equal(field(rec, "tenant"), "botframework.com");
    assert_string_equal(field(rec, "grant_type"), "client_credentials");
    assert_string_equal(field(rec, "client_id"), APP_ID);
    assert_string_equal(field(rec, "client_secret"), APP_SECRET);
    assert_string_equal(field(rec, "scope"), "https://api.botframework.com/.default");
    json_decref(all);
    /* counted: 9 relay requests answered 200, 9 calls answered, none retried, one token */
    assert_true(metric("botgate_requests_total", "route", "relay", "code", "200") == 9);
    assert_true(metric("botgate_relay_attempts_total", "outcome", "answered", NULL, NULL) == 9);
    assert_true(metric("botgate_relay_attempts_total", "outcome", "retry", NULL, NULL) == 0);
    assert_true(metric("botgate_relay_token_requests_total", "outcome", "ok", NULL, NULL) == 1);
    assert_true(metric("botgate_relay_token_expiry_seconds", NULL, NULL, NULL, NULL) > 3000);
    assert_true(metric("botgate_relay_seconds_count", NULL, NULL, NULL, NULL) == 9);
    stop_gate();

    /* the access log: one relay line a call, with what was called and how long it took;
     * neither the Connector token nor the app's secret */
    all = records_in(env.dir, "access-reply.log");
    size_t n_relay = 0;
    json_t *first = NULL;
    for (size_t i = 0; i < json_array_size(all); i++) {
        json_t *line = json_array_get(all, i);
        if (strcmp(field(line, "kind"), "relay") == 0 && n_relay++ == 0)
            first = line;
    }
    assert_int_equal(n_relay, 9);
    assert_string_equal(field(first, "operation"), "reply");
    assert_string_equal(field(first, "conversation_id"), CONV);
    assert_string_equal(field(first, "activity_id"), "act-1");
    assert_string_equal(field(first, "outcome"), "answered");
    assert_string_equal(field(first, "level"), "info");
    assert_int_equal(json_integer_value(json_object_get(first, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(first, "attempt")), 1);
    assert_non_null(strstr(field(first, "target"), "/teams/v3/conversations/" CONV_ENC));
    assert_true(json_integer_value(json_object_get(first, "total_us")) > 0);
    json_decref(all);
    char path[BGT_PATH_MAX];
    char *text = bgt_read_file(bgt_path(path, sizeof(path), env.dir, "access-reply.log"), NULL);
    assert_non_null(text);
    assert_null(strstr(text, APP_SECRET));
    all = records("v3_requests.jsonl");
    const char *bearer = field(json_array_get(all, 0), "authorization");
    assert_null(strstr(text, bearer + strlen("Bearer ")));
    json_decref(all);
    free(text);
}

static void
test_unknown_conversation(void **state)
{
    (void)state;
    start_gate("unknown", NULL);
    bgt_http_resp resp;
    relay_call("POST", "/v3/conversations/never-seen-conv/activities", "{\"type\":\"message\"}",
               NULL, &resp);
    bgt_expect_error(&resp, 404, "unknown_conversation");
    assert_non_null(strstr(resp.body, "never-seen-conv"));
    bgt_http_resp_free(&resp);
    /* routes that are not the relay's, methods that are not */
    relay_call("GET", "/v3/conversations/x/members", NULL, NULL, &resp);
    bgt_expect_error(&resp, 404, "not_found");
    bgt_http_resp_free(&resp);
    relay_call("GET", "/v3/conversations/x/activities", NULL, NULL, &resp);
    bgt_expect_error(&resp, 405, "method_not_allowed");
    bgt_http_resp_free(&resp);
    /* bodies: the ingress's limit (policy.body_max_bytes, 256 KiB), JSON only */
    size_t big_len = 300 * 1024;
    char *big = malloc(big_len + 1);
    memset(big, ' ', big_len);
    big[0] = '{', big[big_len - 1] = '}', big[big_len] = '\0';
    relay_call("POST", "/v3/conversations/never-seen-conv/activities", big, NULL, &resp);
    assert_int_equal(resp.status, 413);
    bgt_http_resp_free(&resp);
    free(big);
    const char *text[] = {"Content-Type: text/plain", NULL};
    char url[256];
    snprintf(url, sizeof(url), "%s/v3/conversations/never-seen-conv/activities", relay_base);
    bgt_http_post(url, BGT_HTTP_1_1, NULL, text, "{}", 2, &resp);
    bgt_expect_error(&resp, 415, "unsupported_media_type");
    bgt_http_resp_free(&resp);
    assert_int_equal(count_records("v3_requests.jsonl"), 0);
    stop_gate();
}

static void
test_token_refreshed_before_expiry(void **state)
{
    (void)state;
    /* the first token lives 10 s and is refreshed at 30% of it (3 s); usable until 9 s */
    set_switch("token_expires_in", "10");
    start_gate("refresh", "  token_refresh_pct: 30\n");
    wait_records("token_requests.jsonl", 1); /* fetched at start */
    set_switch("token_expires_in", "3600");
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    const char *body = "{\"type\":\"message\",\"text\":\"one\"}";
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 200);
    if (count_records("token_requests.jsonl") == 1)
        expect_bearer(0, 0); /* made before the refresh: the first token */
    /* the refresh comes by itself: no caller asked */
    wait_records("token_requests.jsonl", 2);
    size_t before = count_records("v3_requests.jsonl");
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 200);
    expect_bearer(before, 1);
    assert_int_equal(count_records("token_requests.jsonl"), 2); /* no fetch on the call's path */
    stop_gate();
}

static void
test_token_endpoint_down_token_valid(void **state)
{
    (void)state;
    /* 60 s token refreshed at 10% (6 s), usable until 54 s */
    set_switch("token_expires_in", "60");
    start_gate("down", "  token_refresh_pct: 10\n");
    wait_records("token_requests.jsonl", 1);
    set_switch("token_down", "");
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    wait_records("token_requests.jsonl", 2); /* the refresh, answered 503 */
    json_t *all = records("token_requests.jsonl");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(all, 1), "status")), 503);
    json_decref(all);
    const char *body = "{\"type\":\"message\"}";
    for (int i = 0; i < 3; i++)
        assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body),
                         200);
    for (size_t i = 0; i < 3; i++)
        expect_bearer(i, 0);
    char *f = failure_records();
    assert_non_null(strstr(f, "http_5xx https://127.0.0.1:"));
    assert_non_null(strstr(f, "temporarily_unavailable"));
    free(f);
    /* back up: the back-off retry gets a new token */
    char path[BGT_PATH_MAX];
    unlink(bgt_path(path, sizeof(path), conn_dir, "token_down"));
    int64_t deadline = bgt_mono_ms() + 30000;
    for (;;) {
        all = records("token_requests.jsonl");
        json_t *last = json_array_get(all, json_array_size(all) - 1);
        int ok = json_integer_value(json_object_get(last, "status")) == 200;
        json_decref(all);
        if (ok)
            break;
        assert_true(bgt_mono_ms() < deadline);
        bgt_sleep_ms(100);
    }
    stop_gate();
}

static void
test_invalid_client(void **state)
{
    (void)state;
    set_switch("token_error", "{\"error\":\"invalid_client\",\"error_description\":"
                              "\"AADSTS7000215: Invalid client secret provided.\"}");
    start_gate("invalid", NULL);
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    wait_records("token_requests.jsonl", 1);
    bgt_sleep_ms(1100); /* past the second in which the last failure is repeated at once */
    bgt_http_resp resp;
    relay_call("POST", "/v3/conversations/" CONV_ENC "/activities", "{\"type\":\"message\"}", NULL,
               &resp);
    bgt_expect_error(&resp, 502, "connector_token_unavailable");
    assert_non_null(strstr(resp.body, "invalid_client"));
    assert_non_null(strstr(resp.body, "AADSTS7000215"));
    assert_null(strstr(resp.body, APP_SECRET));
    bgt_http_resp_free(&resp);
    assert_int_equal(count_records("v3_requests.jsonl"), 0);
    char *f = failure_records();
    assert_non_null(strstr(f, "http_4xx https://127.0.0.1:"));
    assert_non_null(strstr(f, "invalid_client: AADSTS7000215"));
    assert_null(strstr(f, APP_SECRET));
    free(f);
    assert_true(metric("botgate_relay_token_requests_total", "outcome", "error", NULL, NULL) >= 1);
    assert_true(metric("botgate_requests_total", "route", "relay", "code", "502") == 1);
    char *log = bgt_read_file(gate.log, NULL);
    assert_non_null(log);
    assert_null(strstr(log, APP_SECRET));
    free(log);
    stop_gate();
}

static void
test_unseen_service_url_unreachable(void **state)
{
    (void)state;
    start_gate("unseen", NULL);
    /* the same server under another name and path: trusted, so reaching it would show */
    char evil[128], evil_enc[512], path[2048], raw[2048];
    snprintf(evil, sizeof(evil), "https://localhost:%d/evil/", conn_port);
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    /* a body whose serviceUrl the token does not vouch for: refused, nothing stored */
    assert_int_equal(inbound("conv-evil", evil, service_url), 401);
    assert_int_equal(relay_status("POST", "/v3/conversations/conv-evil/activities", "{}"), 404);

    long st;
    const char *refused[] = {
        "/v3/conversations/..%2F..%2Fevil/activities",
        "/v3/conversations/" CONV_ENC "%2F..%2F..%2Fevil/activities",
        "/v3/conversations/" CONV_ENC "%2f..%2f..%2fevil/activities",
        "/v3/conversations/" CONV_ENC "%252F..%252Fevil/activities",
        "/v3/conversations/%2e%2e/activities",
        "/v3/conversations/../activities",
        "/v3/conversations/" CONV_ENC "/activities/..",
        "/v3/conversations/" CONV_ENC "/activities/%2E%2E%2Fx",
        "/v3/conversations/" CONV_ENC "/activities?serviceUrl=https://localhost/evil/",
        "/v3/conversations/" CONV_ENC "\\..\\evil/activities",
        "/v3/conversations/" CONV_ENC "%5C..%5Cevil/activities",
        "/v3/conversations/" CONV_ENC "%00/activities",
        "/v3/conversations/" CONV_ENC "/activities/",
        "/v3/conversations//activities",
        "/v3/conversations/" CONV_ENC "/../../evil/v3/conversations/" CONV_ENC "/activities",
        "//localhost/evil/v3/conversations/" CONV_ENC "/activities",
        "/api/../v3/conversations/" CONV_ENC "/activities",
    };
    /* sent raw: libcurl would remove the dot segments itself */
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        snprintf(raw, sizeof(raw),
                 "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                 refused[i]);
        st = relay_raw(raw);
        if (st != 400 && st != 404)
            fail_msg("%s: answered %ld, not 400/404", refused[i], st);
    }
    assert_true(bg_relay_pct_encode(evil, strlen(evil), evil_enc, sizeof(evil_enc)) > 0);
    snprintf(path, sizeof(path), "/v3/conversations/%s/activities", evil_enc);
    st = relay_status("POST", path, "{}");
    assert_true(st == 400 || st == 404);
    /* absolute-form request-targets */
    snprintf(raw, sizeof(raw),
             "POST %sv3/conversations/%s/activities HTTP/1.1\r\nHost: localhost\r\n"
             "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
             evil, CONV_ENC);
    st = relay_raw(raw);
    assert_true(st != 200);
    snprintf(raw, sizeof(raw),
             "POST %sv3/conversations/%s/activities HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
             evil, CONV_ENC);
    relay_raw(raw);
    /* Host and X-Forwarded-* games on a legitimate path: the call goes to C's serviceUrl */
    char host[128], xfh[128];
    snprintf(host, sizeof(host), "Host: localhost:%d", conn_port);
    snprintf(xfh, sizeof(xfh), "X-Forwarded-Host: localhost:%d", conn_port);
    const char *games[] = {host, xfh, "X-Forwarded-Proto: https", "X-Original-URL: /evil/", NULL};
    bgt_http_resp resp;
    snprintf(raw, sizeof(raw), "{\"type\":\"message\",\"serviceUrl\":\"%s\"}", evil);
    relay_call("POST", "/v3/conversations/" CONV_ENC "/activities", raw, games, &resp);
    bgt_expect_status(&resp, 200);
    bgt_http_resp_free(&resp);

    /* what reached the Connector: only C's serviceUrl */
    json_t *all = records("v3_requests.jsonl");
    assert_true(json_array_size(all) >= 1);
    for (size_t i = 0; i < json_array_size(all); i++) {
        const char *p = field(json_array_get(all, i), "path");
        if (strncmp(p, "/teams/v3/conversations/" CONV_ENC "/activities",
                    strlen("/teams/v3/conversations/" CONV_ENC "/activities")) != 0)
            fail_msg("the Connector received %s", p);
    }
    json_decref(all);
    stop_gate();
}

static void
test_retries(void **state)
{
    (void)state;
    start_gate("retries", NULL);
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    const char *body = "{\"type\":\"message\"}";
    /* 503, 502, 429 with Retry-After: nothing was created, retried; then 200 */
    set_switch("v3_statuses", "503\n502\n429 1\n200\n");
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 200);
    assert_int_equal(count_records("v3_requests.jsonl"), 4);
    /* out of retries: the fourth 503 is the answer */
    set_switch("v3_statuses", "503\n");
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 503);
    assert_int_equal(count_records("v3_requests.jsonl"), 4 + 4);
    /* 500 and 429 without Retry-After: the activity may exist; passed through at once */
    set_switch("v3_statuses", "500\n200\n");
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 500);
    assert_int_equal(count_records("v3_requests.jsonl"), 9);
    set_switch("v3_statuses", "429\n200\n");
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 429);
    assert_int_equal(count_records("v3_requests.jsonl"), 10);
    /* each retry counted: 3 in the first call, 3 in the second */
    assert_true(metric("botgate_relay_attempts_total", "outcome", "retry", NULL, NULL) == 6);
    assert_true(metric("botgate_relay_attempts_total", "outcome", "answered", NULL, NULL) == 4);
    char *f = failure_records();
    assert_non_null(strstr(f, "http_5xx https://127.0.0.1:"));
    assert_non_null(strstr(f, "/teams/v3/conversations/" CONV_ENC "/activities"));
    free(f);
    stop_gate();
}

/* A 401 from the Connector: the token is refused, not the activity. One fetch is forced at
 * once and the call retried with the new token: the bot gets the second answer. */
static void
test_401_token_refreshed_retried(void **state)
{
    (void)state;
    start_gate("refused", NULL);
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    wait_records("token_requests.jsonl", 1); /* the first token, fetched at start */
    set_switch("v3_statuses", "401\n200\n");
    bgt_http_resp resp;
    relay_call("POST", "/v3/conversations/" CONV_ENC "/activities", "{\"type\":\"message\"}", NULL,
               &resp);
    bgt_expect_status(&resp, 200);
    assert_non_null(strstr(resp.body, "\"id\""));
    bgt_http_resp_free(&resp);
    /* two /v3 requests: 401 with the first token, 200 with a second, fetched for it */
    assert_int_equal(count_records("v3_requests.jsonl"), 2);
    assert_int_equal(v3_status(0), 401);
    assert_int_equal(v3_status(1), 200);
    char *a0 = v3_authorization(0), *a1 = v3_authorization(1);
    assert_string_not_equal(a0, a1);
    free(a0);
    free(a1);
    expect_bearer(0, 0);
    expect_bearer(1, 1);
    assert_int_equal(count_records("token_requests.jsonl"), 2); /* initial + forced */
    /* counted as a retry, said in the log, the 401 recorded as a failure */
    assert_true(metric("botgate_relay_attempts_total", "outcome", "retry", NULL, NULL) == 1);
    assert_true(metric("botgate_relay_attempts_total", "outcome", "answered", NULL, NULL) == 1);
    assert_true(metric("botgate_requests_total", "route", "relay", "code", "200") == 1);
    const char *needles[] = {"401 from the Connector: token refreshed, retry 1", NULL};
    assert_true(bgt_log_has_line(gate.log, needles, 5000));
    char *f = failure_records();
    assert_non_null(strstr(f, "http_4xx https://127.0.0.1:"));
    assert_non_null(strstr(f, "HTTP 401"));
    free(f);
    /* the next call goes with the new token, and fetches nothing */
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", "{}"), 200);
    expect_bearer(2, 1);
    assert_int_equal(count_records("token_requests.jsonl"), 2);
    stop_gate();
    /* the access log: one line for the call, its second attempt answered */
    json_t *lines = relay_access_lines("access-refused.log");
    assert_int_equal(json_array_size(lines), 2);
    json_t *first = json_array_get(lines, 0);
    assert_int_equal(json_integer_value(json_object_get(first, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(first, "attempt")), 2);
    assert_string_equal(field(first, "outcome"), "answered");
    json_decref(lines);
}

/* The new token refused too: the second 401 is the answer; one forced fetch, not two. */
static void
test_401_twice_passed_back(void **state)
{
    (void)state;
    start_gate("refused2", NULL);
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    wait_records("token_requests.jsonl", 1);
    set_switch("v3_statuses", "401\n401\n");
    bgt_http_resp resp;
    relay_call("POST", "/v3/conversations/" CONV_ENC "/activities", "{\"type\":\"message\"}", NULL,
               &resp);
    assert_int_equal(resp.status, 401);
    assert_non_null(strstr(resp.body, "v3_statuses said so")); /* the Connector's own body */
    bgt_http_resp_free(&resp);
    assert_int_equal(count_records("v3_requests.jsonl"), 2);
    expect_bearer(0, 0);
    expect_bearer(1, 1);
    assert_int_equal(count_records("token_requests.jsonl"), 2);
    /* the second refusal fetched nothing: the token it refused is still the one held, so the
     * next call goes out with it at once (a third token would have been waited for) */
    set_switch("v3_statuses", "200\n");
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", "{}"), 200);
    assert_int_equal(count_records("v3_requests.jsonl"), 3);
    expect_bearer(2, 1);
    assert_int_equal(count_records("token_requests.jsonl"), 2);
    assert_true(metric("botgate_relay_attempts_total", "outcome", "retry", NULL, NULL) == 1);
    assert_true(metric("botgate_requests_total", "route", "relay", "code", "401") == 1);
    stop_gate();
}

/* Two calls refused in a row within the rate limit's window: one forced fetch. The first
 * call is retried with the new token; the second, refused with that new token, is not. */
static void
test_401_forced_fetch_rate_limited(void **state)
{
    (void)state;
    start_gate("ratelimit", NULL);
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    wait_records("token_requests.jsonl", 1);
    set_switch("v3_statuses", "401\n200\n401\n200\n");
    const char *body = "{\"type\":\"message\"}";
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 200);
    assert_int_equal(count_records("token_requests.jsonl"), 2);
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 401);
    assert_int_equal(count_records("v3_requests.jsonl"), 3); /* not retried */
    expect_bearer(2, 1);
    /* the window held: the second refusal came within it of the forced fetch */
    int64_t since = record_t_ms("v3_requests.jsonl", 2) - record_t_ms("token_requests.jsonl", 1);
    if (since >= BG_RELAY_TOKEN_FORCE_INTERVAL_MS)
        fail_msg("the second call came %lld ms after the forced fetch: past the window",
                 (long long)since);
    /* the token it refused was kept: the next call goes out with it, nothing fetched */
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 200);
    expect_bearer(3, 1);
    assert_int_equal(count_records("token_requests.jsonl"), 2);
    const char *needles[] = {"at most one forced fetch per 10 s", NULL};
    assert_true(bgt_log_has_line(gate.log, needles, 5000));
    assert_true(metric("botgate_relay_attempts_total", "outcome", "retry", NULL, NULL) == 1);
    stop_gate();
}

/* A relay call in a child process; returns its pid. The exit status is the HTTP status
 * minus 200 (255: none or below 200). */
static pid_t
relay_status_child(const char *path, const char *body)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        long st = relay_status("POST", path, body);
        _exit(st >= 200 && st < 455 ? (int)(st - 200) : 255);
    }
    return pid;
}

static long
child_status(pid_t pid)
{
    int status = 0;
    assert_int_equal(bgt_wait_pid(pid, 60000, &status), 0);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status) == 255 ? 0 : 200 + WEXITSTATUS(status);
}

/* Calls in flight together, refused with the same token: one fetch, each retried with the new
 * token. The Connector holds every answer 1 s so that both go out before either is refused. */
static void
test_401_concurrent_one_fetch(void **state)
{
    (void)state;
    start_gate("refusedpar", NULL);
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    wait_records("token_requests.jsonl", 1);
    set_switch("v3_statuses", "401\n401\n200\n");
    assert_int_equal(bgt_connector_set_slow(conn_dir, 1000), 0);
    const char *path = "/v3/conversations/" CONV_ENC "/activities";
    pid_t a = relay_status_child(path, "{\"type\":\"message\",\"text\":\"a\"}");
    pid_t b = relay_status_child(path, "{\"type\":\"message\",\"text\":\"b\"}");
    long sa = child_status(a), sb = child_status(b);
    assert_int_equal(bgt_connector_set_slow(conn_dir, 0), 0);
    /* both went out with the first token and were refused */
    assert_int_equal(count_records("v3_requests.jsonl"), 4);
    if (v3_status(0) != 401 || v3_status(1) != 401)
        fail_msg("the calls did not overlap (statuses %ld %ld): the test proves nothing",
                 v3_status(0), v3_status(1));
    expect_bearer(0, 0);
    expect_bearer(1, 0);
    /* one fetch for both; both retried with its token */
    assert_int_equal(count_records("token_requests.jsonl"), 2);
    expect_bearer(2, 1);
    expect_bearer(3, 1);
    assert_int_equal(sa, 200);
    assert_int_equal(sb, 200);
    assert_true(metric("botgate_relay_attempts_total", "outcome", "retry", NULL, NULL) == 2);
    stop_gate();
}

/* The fake Connector revokes the tokens it issued (a rotated secret): the bot's next reply
 * still gets through, with a token fetched for it. */
static void
test_revoked_token_replaced(void **state)
{
    (void)state;
    start_gate("revoked", NULL);
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    const char *body = "{\"type\":\"message\"}";
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 200);
    set_switch("revoke", "");
    assert_int_equal(relay_status("POST", "/v3/conversations/" CONV_ENC "/activities", body), 200);
    assert_int_equal(count_records("v3_requests.jsonl"), 3);
    assert_int_equal(v3_status(1), 401);
    assert_int_equal(v3_status(2), 200);
    expect_bearer(0, 0);
    expect_bearer(1, 0);
    expect_bearer(2, 1);
    assert_int_equal(count_records("token_requests.jsonl"), 2);
    stop_gate();
}

static void
test_non_loopback_refused(void **state)
{
    (void)state;
    char cfg[BGT_PATH_MAX];
    bgt_path(cfg, sizeof(cfg), env.dir, "nonloopback.yaml");
    assert_int_equal(bgt_write_file(cfg, "relay:\n  listen: \"0.0.0.0:3979\"\n", -1), 0);
    const char *args[] = {"serve", "-c", cfg, NULL};
    char *out = NULL, *err = NULL;
    int rc = bgt_botgate_run_output(args, env.dir, "nonloopback", 20000, &out, &err);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err, "relay.listen"));
    assert_non_null(strstr(err, "loopback"));
    free(out);
    free(err);
}

/* SingleTenant: tokens from the tenant's endpoint; a synchronous activity (an invoke) also
 * fills the directory. */
static void
test_single_tenant_and_invoke(void **state)
{
    (void)state;
    start_gate_with("tenant", NULL, "  app_type: SingleTenant\n  tenant_id: \"tenant-xyz\"\n");
    wait_records("token_requests.jsonl", 1);
    json_t *all = records("token_requests.jsonl");
    assert_string_equal(field(json_array_get(all, 0), "tenant"), "tenant-xyz");
    json_decref(all);
    long st = inbound_invoke("conv-invoke");
    assert_true(st == 502 || st == 504); /* no bot: the invoke itself fails */
    int64_t deadline = bgt_mono_ms() + 10000;
    for (;;) {
        redisReply *r =
            bgt_redis_cmd(&redis, "HGET %s:conversations:conv-invoke tenant_id", STREAM);
        int found = r != NULL && r->type == REDIS_REPLY_STRING;
        if (found)
            assert_string_equal(r->str, "tenant-inv");
        freeReplyObject(r);
        if (found)
            break;
        assert_true(bgt_mono_ms() < deadline);
        bgt_sleep_ms(50);
    }
    assert_int_equal(
        relay_status("POST", "/v3/conversations/conv-invoke/activities", "{\"type\":\"message\"}"),
        200);
    expect_bearer(0, 0);
    stop_gate();
}

static void
test_relay_secret(void **state)
{
    (void)state;
    start_gate("secret", "  secret: \"relay-shared-secret\"\n");
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    const char *body = "{\"type\":\"message\"}";
    const char *wrong[] = {"Authorization: Bearer relay-shared-secreT", NULL};
    const char *right[] = {"Authorization: Bearer relay-shared-secret", NULL};
    bgt_http_resp resp;
    relay_call("POST", "/v3/conversations/" CONV_ENC "/activities", body, NULL, &resp);
    bgt_expect_error(&resp, 401, "bad_relay_secret");
    bgt_http_resp_free(&resp);
    relay_call("POST", "/v3/conversations/" CONV_ENC "/activities", body, wrong, &resp);
    bgt_expect_error(&resp, 401, "bad_relay_secret");
    bgt_http_resp_free(&resp);
    assert_int_equal(count_records("v3_requests.jsonl"), 0);
    relay_call("POST", "/v3/conversations/" CONV_ENC "/activities", body, right, &resp);
    bgt_expect_status(&resp, 200);
    bgt_http_resp_free(&resp);
    expect_bearer(0, 0); /* the Connector gets botgate's token, never the relay secret */
    stop_gate();
}

/* Authentication off: no serviceUrl is verified, so nothing is stored and the relay does not
 * listen; the log says why. */
static void
test_auth_off_no_relay(void **state)
{
    (void)state;
    char state_dir[BGT_PATH_MAX], health[128], relay[128], base[64];
    bgt_pathf(state_dir, sizeof(state_dir), env.dir, "state-authoff");
    mkdir(state_dir, 0700);
    plain_port = bgt_free_port();
    relay_port = bgt_free_port();
    snprintf(relay, sizeof(relay), "  listen: \"127.0.0.1:%d\"\n", relay_port);
    snprintf(relay_base, sizeof(relay_base), "http://127.0.0.1:%d", relay_port);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", plain_port);
    bgt_botgate_conf c = {
        .plain_port = plain_port, .redis_url = redis.url, .state_dir = state_dir, .relay = relay};
    char *yaml = bgt_config_yaml(&c);
    bgt_botgate_role = "ingress";
    int rc = bgt_botgate_start(&gate, env.dir, "authoff", yaml,
                               bgt_url(health, sizeof(health), base, "/healthz"), NULL);
    free(yaml);
    assert_int_equal(rc, 0);
    const char *needles[] = {"relay: not started", "authentication is off", NULL};
    assert_true(bgt_log_has_line(gate.log, needles, 10000));
    char url[128], id[64];
    snprintf(url, sizeof(url), "%s/api/messages", base);
    bgt_fresh_id(id, sizeof(id), "act");
    char *body = bgt_teams_message(id, CONV, service_url, 0);
    const char *headers[] = {"Content-Type: application/json", NULL};
    bgt_http_resp resp;
    bgt_http_post(url, BGT_HTTP_1_1, NULL, headers, body, strlen(body), &resp);
    free(body);
    bgt_expect_status(&resp, 202);
    bgt_http_resp_free(&resp);
    redisReply *r = bgt_redis_cmd(&redis, "EXISTS %s:conversations:%s", STREAM, CONV);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    relay_call("POST", "/v3/conversations/" CONV_ENC "/activities", "{}", NULL, &resp);
    assert_int_equal(resp.status, 0); /* nothing listens */
    bgt_http_resp_free(&resp);
    stop_gate();
}

/* tests/relay-sdk/reply.js: botframework-connector's ConnectorClient, baseUri = the relay. */
static void
test_official_sdk_client(void **state)
{
    (void)state;
    const char *src = getenv("BOTGATE_SOURCE_DIR");
    assert_non_null(src);
    char install[BGT_PATH_MAX * 2], script[BGT_PATH_MAX * 2], log[BGT_PATH_MAX];
    snprintf(install, sizeof(install), "%s/tests/relay-sdk/install.sh", src);
    snprintf(script, sizeof(script), "%s/tests/relay-sdk/reply.js", src);
    char *const inst[] = {"bash", install, NULL};
    pid_t pid = bgt_spawn(inst, bgt_path(log, sizeof(log), env.dir, "npm-install.log"), NULL);
    assert_true(pid > 0);
    int status = 0;
    assert_int_equal(bgt_wait_pid(pid, 240000, &status), 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        bgt_dump_file(log, 4000);
        fail_msg("tests/relay-sdk/install.sh failed");
    }
    start_gate("sdk", NULL);
    assert_int_equal(inbound(CONV, service_url, service_url), 202);
    char *const node[] = {"node", script, relay_base, CONV, "act-42", NULL};
    pid = bgt_spawn(node, bgt_path(log, sizeof(log), env.dir, "sdk-client.log"), NULL);
    assert_true(pid > 0);
    assert_int_equal(bgt_wait_pid(pid, 60000, &status), 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        bgt_dump_file(log, 4000);
        fail_msg("the SDK client failed");
    }
    json_t *all = records("v3_requests.jsonl");
    assert_int_equal(json_array_size(all), 1);
    json_t *rec = json_array_get(all, 0);
    assert_string_equal(field(rec, "method"), "POST");
    assert_string_equal(field(rec, "path"),
                        "/teams/v3/conversations/" CONV_ENC "/activities/act-42");
    assert_non_null(strstr(field(rec, "body"), "reply from the official SDK"));
    json_decref(all);
    expect_bearer(0, 0);
    stop_gate();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reply_reaches_connector, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_conversation, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_unseen_service_url_unreachable, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_retries, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_401_token_refreshed_retried, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_401_twice_passed_back, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_401_forced_fetch_rate_limited, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_401_concurrent_one_fetch, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_revoked_token_replaced, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_client, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_token_refreshed_before_expiry, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_token_endpoint_down_token_valid, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_non_loopback_refused, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_relay_secret, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_single_tenant_and_invoke, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_auth_off_no_relay, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_official_sdk_client, test_setup, test_teardown),
    };
    if (bgt_env_init(&env) != 0)
        return 1;
    int failed = 1;
    bgt_pathf(conn_dir, sizeof(conn_dir), env.dir, "connector");
    if (bgt_redis_start(&redis, env.dir, "main", NULL) == 0 &&
        bgt_connector_start(conn_dir, &conn_port) == 0) {
        snprintf(service_url, sizeof(service_url), "https://127.0.0.1:%d/teams/", conn_port);
        failed = cmocka_run_group_tests_name("relay", tests, NULL, NULL);
    }
    bgt_connector_stop(conn_dir);
    bgt_redis_stop(&redis);
    return bgt_env_exit(&env, failed);
}
