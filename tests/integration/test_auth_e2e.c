/*
 * Authentication, end to end: a real botgate with auth.app_id set, fetching its signing
 * keys over HTTPS from the fake Connector (tests/tools/fake_connector, its own CA), in
 * front of a real redis-server, driven over TLS with libcurl.
 *
 * The contract under test (issue 3, README.md): a request whose Bearer token the Bot
 * Framework SDK would accept is stored and answered 202, with the token's exp and the
 * Authorization header in the entry; every other request gets the 401 (403, 400, 503)
 * whose JSON `code` names the rule, and nothing is stored. The verified-token cache never
 * skips the checks against the request. Keys: fetched at start (until then /readyz and
 * POST say 503 keys_unavailable), refreshed once, single flight, when a token names an
 * unknown kid (at most once a minute), kept when a refresh fails, and a key rotated out
 * takes its tokens with it.
 *
 * Tokens are minted in this process with the connector's key files (bgt_connector_mint_ex),
 * so each test knows exactly the claims it sends.
 *
 * One redis-server and one fake Connector serve the whole program. The first group shares
 * one botgate; the second starts a botgate per test (another configuration, or a test
 * that needs botgate's once-a-minute unknown-kid refresh for itself), and a connector of
 * its own when the test changes the connector's keys or takes it down. local_teardown stops
 * whatever a test started, so that a failed assertion never leaves a server behind.
 */
#include <pthread.h>
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
#include <curl/curl.h>

#include "botgate/auth.h"
#include "botgate/entry.h"
#include "harness.h"

#define STREAM "botgate:activities"
#define APP_ID "4f2c9a1e-7b3d-4e8a-9c61-0d5e2f8b7a13"
#define SERVICE_URL BGT_CONNECTOR_SERVICE_URL
#define OTHER_SERVICE_URL "https://smba.trafficmanager.net/emea/"
#define META_PATH "/v1/.well-known/openidconfiguration"
#define JWKS_PATH "/v1/keys"
#define EMU_META_PATH "/emulator/.well-known/openid-configuration"
#define EMU_JWKS_PATH "/emulator/keys"
#define EMU_ISSUER_V1 "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/"
#define EMU_ISSUER_V2 "https://login.microsoftonline.com/d6d49420-f39b-4df7-a1dc-d59a935871db/v2.0"
#define EMU_TENANT "d6d49420-f39b-4df7-a1dc-d59a935871db"
#define SKEW_S 300
#define SINGLE_FLIGHT_REQUESTS 20

static bgt_env env;
static char cert[BGT_PATH_MAX], key[BGT_PATH_MAX];

/* Shared by every test: one Redis, one connector whose keys never change. */
static bgt_redis redis;
static char conn_dir[BGT_PATH_MAX];
static int conn_port;

/* The shared botgate of the first group. */
static bgt_botgate gate;
static char base[64];

/* A test's own botgate and, when it needs one, its own connector: local_teardown stops
 * both whatever happened. */
static bgt_botgate local_gate;
static char local_base[64];
static char local_conn_dir[BGT_PATH_MAX];
static int local_conn_port;

/* ---- helpers ---------------------------------------------------------------------------- */

/*
 * A message activity with fresh id and conversation. service_url / channel_id NULL: the
 * field is left out. Values are written into the JSON as given (no escaping needed for
 * the test's values). malloc'd.
 */
static char *
activity(const char *service_url, const char *channel_id)
{
    char id[64], conv[64], su[256] = "", ch[128] = "";
    bgt_fresh_id(id, sizeof(id), "1:auth-");
    bgt_fresh_id(conv, sizeof(conv), "a:auth-");
    if (service_url != NULL)
        snprintf(su, sizeof(su), "\"serviceUrl\":\"%s\",", service_url);
    if (channel_id != NULL)
        snprintf(ch, sizeof(ch), "\"channelId\":\"%s\",", channel_id);
    const char *fmt = "{\"type\":\"message\",\"id\":\"%s\",%s%s"
                      "\"from\":{\"id\":\"29:1a2b3c\",\"name\":\"Ada Lovelace\"},"
                      "\"conversation\":{\"id\":\"%s\"},"
                      "\"recipient\":{\"id\":\"28:bot\",\"name\":\"Echo Bot\"},"
                      "\"text\":\"hello botgate\"}";
    int n = snprintf(NULL, 0, fmt, id, su, ch, conv);
    char *out = malloc((size_t)n + 1);
    assert_non_null(out);
    snprintf(out, (size_t)n + 1, fmt, id, su, ch, conv);
    return out;
}

/* What a token says; every field has a default that makes a valid channel token. */
typedef struct tok {
    const char *set;        /* key directory: NULL = "keys" */
    const char *sign_kid;   /* key file that signs: NULL = "key-1" */
    const char *kid;        /* header kid: NULL = sign_kid */
    const char *alg;        /* NULL = RS256 */
    const char *iss;        /* NULL = BGT_CONNECTOR_ISSUER */
    const char *aud;        /* NULL = APP_ID */
    const char *serviceurl; /* NULL = SERVICE_URL; "" = no serviceurl claim */
    long exp_in;            /* exp = now + exp_in; 0 = 3600 */
    long nbf_in;            /* nbf = now + nbf_in; 0 = -60 */
    const char *extra;      /* more raw JSON members */
} tok;

/* Mints t with the connector's key in dir; *exp_out (may be NULL) receives the exp claim.
 * Every token carries a unique jti: never the same bytes twice (the token cache). */
static char *
mint_in(const char *dir, const tok *t, int64_t *exp_out)
{
    static unsigned long counter;
    int64_t now = bgt_wall_s();
    char extra[512];
    snprintf(extra, sizeof(extra), "\"jti\":\"auth-%d-%lu\"%s%s", (int)getpid(), ++counter,
             t->extra != NULL ? "," : "", t->extra != NULL ? t->extra : "");
    const char *sign_kid = t->sign_kid != NULL ? t->sign_kid : "key-1";
    const char *su = t->serviceurl != NULL ? t->serviceurl : SERVICE_URL;
    bgt_mint m = {.alg = t->alg != NULL ? t->alg : "RS256",
                  .kid = t->kid != NULL ? t->kid : sign_kid,
                  .iss = t->iss != NULL ? t->iss : BGT_CONNECTOR_ISSUER,
                  .aud = t->aud != NULL ? t->aud : APP_ID,
                  .serviceurl = su[0] != '\0' ? su : NULL,
                  .nbf = now + (t->nbf_in != 0 ? t->nbf_in : -60),
                  .nbf_set = 1,
                  .iat = now,
                  .iat_set = 1,
                  .exp = now + (t->exp_in != 0 ? t->exp_in : 3600),
                  .exp_set = 1,
                  .extra_claims = extra};
    char *token = bgt_connector_mint_ex(dir, t->set, sign_kid, &m);
    assert_non_null(token);
    if (exp_out != NULL)
        *exp_out = m.exp;
    return token;
}

static char *
mint(const tok *t, int64_t *exp_out)
{
    return mint_in(conn_dir, t, exp_out);
}

/* A valid channel token from the shared connector's key-1. */
static char *
valid_token(int64_t *exp_out)
{
    tok t = {0};
    return mint(&t, exp_out);
}

static long long
xlen(void)
{
    long long n = bgt_redis_xlen(&redis, STREAM);
    assert_true(n >= 0);
    return n;
}

/*
 * POSTs body to b/api/messages. authorization is the whole header line ("Authorization:
 * ...") or NULL for none; extra one more header line or NULL.
 */
static void
post_raw(const char *b, int version, const char *authorization, const char *extra, const char *body,
         bgt_http_resp *resp)
{
    const char *headers[4] = {"Content-Type: application/json", NULL, NULL, NULL};
    int n = 1;
    if (authorization != NULL)
        headers[n++] = authorization;
    if (extra != NULL)
        headers[n++] = extra;
    char u[128];
    bgt_http_post(bgt_url(u, sizeof(u), b, "/api/messages"), version, cert, headers, body,
                  strlen(body), resp);
}

/* "Authorization: Bearer <token>", malloc'd. */
static char *
bearer(const char *token)
{
    size_t n = strlen(token) + 32;
    char *h = malloc(n);
    assert_non_null(h);
    snprintf(h, n, "Authorization: Bearer %s", token);
    return h;
}

static void
post_token(const char *b, int version, const char *token, const char *extra, const char *body,
           bgt_http_resp *resp)
{
    char *h = token != NULL ? bearer(token) : NULL;
    post_raw(b, version, h, extra, body, resp);
    free(h);
}

/* Asserts the refusal of a POST: status, error code, and nothing stored. */
static void
expect_refused_raw(const char *b, const char *authorization, const char *extra, const char *body,
                   long status, const char *code)
{
    long long before = xlen();
    bgt_http_resp resp;
    post_raw(b, BGT_HTTP_1_1, authorization, extra, body, &resp);
    bgt_expect_error(&resp, status, code);
    bgt_http_resp_free(&resp);
    assert_int_equal(xlen(), before);
}

static void
expect_refused(const char *b, const char *token, const char *extra, const char *body, long status,
               const char *code)
{
    char *h = token != NULL ? bearer(token) : NULL;
    expect_refused_raw(b, h, extra, body, status, code);
    free(h);
}

/* A fresh valid activity POSTed with token: the refusal, nothing stored. */
static void
expect_token_refused(const char *b, const char *token, const char *code)
{
    char *body = activity(SERVICE_URL, "msteams");
    expect_refused(b, token, NULL, body, 401, code);
    free(body);
}

/*
 * POSTs body with token and asserts the whole acceptance: 202 with an empty body over the
 * protocol asked for, exactly one new entry, which is this request's (its body byte for
 * byte), whose token_exp is the token's exp (0: not checked) and whose headers carry the
 * Authorization header as sent.
 */
static void
expect_stored(const char *b, int version, const char *token, int64_t exp, const char *extra,
              const char *body)
{
    long long before = xlen();
    bgt_http_resp resp;
    post_token(b, version, token, extra, body, &resp);
    bgt_expect_status(&resp, 202);
    assert_int_equal(resp.body_len, 0);
    assert_int_equal(resp.http_version,
                     version == BGT_HTTP_2 ? CURL_HTTP_VERSION_2_0 : CURL_HTTP_VERSION_1_1);
    bgt_http_resp_free(&resp);
    assert_int_equal(xlen(), before + 1);

    bgt_stream_entry *v;
    size_t n;
    assert_int_equal(bgt_redis_xrange(&redis, STREAM, &v, &n), 0);
    assert_true(n >= 1);
    bg_entry e;
    assert_non_null(v[n - 1].entry);
    assert_int_equal(bg_entry_decode(&e, v[n - 1].entry, v[n - 1].entry_len), 0);
    assert_int_equal(e.body.len, strlen(body));
    assert_memory_equal(e.body.p, body, e.body.len);
    if (exp != 0)
        assert_int_equal(e.token_exp, exp);
    else
        assert_true(e.token_exp > 0);
    char want[BG_AUTH_MAX_TOKEN + 64];
    snprintf(want, sizeof(want), "Bearer %s", token);
    assert_true(bgt_slice_eq(bgt_entry_header(&e, "authorization"), want));
    bgt_stream_entries_free(v, n);
}

/* A fresh activity for SERVICE_URL/msteams, stored with token. */
static void
expect_accepted(const char *b, const char *token, int64_t exp)
{
    char *body = activity(SERVICE_URL, "msteams");
    expect_stored(b, BGT_HTTP_1_1, token, exp, NULL, body);
    free(body);
}

/* GET b+path once: status and error code (code NULL: not checked). */
static void
expect_get(const char *b, const char *path, long status, const char *code)
{
    char u[128];
    bgt_http_resp resp;
    bgt_http_get(bgt_url(u, sizeof(u), b, path), BGT_HTTP_1_1, cert, &resp);
    if (code != NULL)
        bgt_expect_error(&resp, status, code);
    else
        bgt_expect_status(&resp, status);
    bgt_http_resp_free(&resp);
}

/* Polls GET b+path until it answers `status` with the JSON error `code`. */
static void
poll_error(const char *b, const char *path, long status, const char *code, int timeout_ms)
{
    char u[128], got[64] = "";
    bgt_url(u, sizeof(u), b, path);
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    for (;;) {
        bgt_http_resp resp;
        bgt_http_get(u, BGT_HTTP_1_1, cert, &resp);
        bool match = resp.curl_code == CURLE_OK && resp.status == status &&
                     bgt_http_error_code(&resp, got, sizeof(got)) != NULL && strcmp(got, code) == 0;
        if (!match && bgt_mono_ms() >= deadline) {
            bgt_http_resp_print("still not the expected answer", &resp);
            bgt_http_resp_free(&resp);
            fail_msg("GET %s: no %ld %s within %d ms", path, status, code, timeout_ms);
        }
        bgt_http_resp_free(&resp);
        if (match)
            return;
        bgt_sleep_ms(50);
    }
}

static void
wait_ready(const char *b, int timeout_ms)
{
    long last;
    if (!bgt_poll_status(b, "/readyz", cert, 200, timeout_ms, &last))
        fail_msg("/readyz answers %ld, not 200, after %d ms", last, timeout_ms);
}

/* The connector in dir counted requests for path (every status counted). */
static long
stats(const char *dir, const char *path)
{
    long n = bgt_connector_stats_of(dir, path);
    assert_true(n >= 0);
    return n;
}

/* Starts a botgate named `name` against the connector in dir:port with `more` auth lines
 * and `policy` (a whole "policy:" section or NULL); TLS listener only. */
static int
start_gate(bgt_botgate *g, char *b, size_t cap, const char *name, const char *dir, int port,
           const char *more_auth, const char *policy)
{
    char state_dir[BGT_PATH_MAX], health[128];
    bgt_pathf(state_dir, sizeof(state_dir), env.dir, "state-%s", name);
    mkdir(state_dir, 0700);
    char *auth = bgt_connector_auth_yaml(dir, port, APP_ID, more_auth);
    size_t n = strlen(auth) + (policy != NULL ? strlen(policy) : 0) + 1;
    char *extra = malloc(n);
    snprintf(extra, n, "%s%s", auth, policy != NULL ? policy : "");
    free(auth);
    bgt_botgate_conf c = {.tls_port = bgt_free_port(),
                          .cert_file = cert,
                          .key_file = key,
                          .redis_url = redis.url,
                          .state_dir = state_dir,
                          .extra = extra};
    snprintf(b, cap, "https://127.0.0.1:%d", c.tls_port);
    char *yaml = bgt_config_yaml(&c);
    int rc = bgt_botgate_start(g, env.dir, name, yaml,
                               bgt_url(health, sizeof(health), b, "/healthz"), cert);
    free(yaml);
    free(extra);
    return rc;
}

/* local_gate against the shared connector, ready (keys held). */
static void
start_local(const char *name, const char *more_auth, const char *policy)
{
    assert_int_equal(start_gate(&local_gate, local_base, sizeof(local_base), name, conn_dir,
                                conn_port, more_auth, policy),
                     0);
    wait_ready(local_base, 15000);
}

/* A connector of the test's own in env/connector-<name>: its keys may change. */
static void
start_local_connector(const char *name)
{
    bgt_pathf(local_conn_dir, sizeof(local_conn_dir), env.dir, "connector-%s", name);
    local_conn_port = 0;
    assert_int_equal(bgt_connector_start(local_conn_dir, &local_conn_port), 0);
}

/* local_gate against the test's own connector (not waited for: the test decides). */
static void
start_local_on_own_connector(const char *name, const char *more_auth)
{
    assert_int_equal(start_gate(&local_gate, local_base, sizeof(local_base), name, local_conn_dir,
                                local_conn_port, more_auth, NULL),
                     0);
}

/* SIGTERM: botgate exits 0 (under ASan: no leak); then the own connector, likewise. */
static void
stop_local(void)
{
    assert_int_equal(bgt_botgate_stop(&local_gate), 0);
    if (local_conn_dir[0] != '\0') {
        int rc = bgt_connector_stop(local_conn_dir);
        local_conn_dir[0] = '\0';
        assert_int_equal(rc, 0);
    }
}

static int
local_teardown(void **state)
{
    (void)state;
    bgt_botgate_kill(&local_gate);
    bgt_connector_kill_clear(local_conn_dir);
    return 0;
}

/* ---- the shared botgate --------------------------------------------------------------- */

static int
group_setup(void **state)
{
    (void)state;
    if (start_gate(&gate, base, sizeof(base), "main", conn_dir, conn_port, NULL, NULL) != 0)
        return -1;
    long last;
    if (!bgt_poll_status(base, "/readyz", cert, 200, 15000, &last)) {
        fprintf(stderr, "/readyz answers %ld: the keys were not fetched\n", last);
        bgt_dump_file(gate.log, 16 * 1024);
        return -1;
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    if (gate.pid != 0) {
        fprintf(stderr, "test_main_stop did not run to the end: killing botgate\n");
        bgt_botgate_kill(&gate);
    }
    return 0;
}

/* Ready means the keys are held, and /readyz says authentication is on. */
static void
test_ready_with_keys(void **state)
{
    (void)state;
    char u[128];
    bgt_http_resp resp;
    bgt_http_get(bgt_url(u, sizeof(u), base, "/readyz"), BGT_HTTP_1_1, cert, &resp);
    bgt_expect_status(&resp, 200);
    if (strstr(resp.body, "\"authentication\":\"on\"") == NULL) {
        bgt_http_resp_print("/readyz", &resp);
        fail_msg("/readyz does not say authentication is on");
    }
    bgt_http_resp_free(&resp);
    assert_true(stats(conn_dir, META_PATH) >= 1);
    assert_true(stats(conn_dir, JWKS_PATH) >= 1);
    /* auth.allow_emulator is off: the Emulator's keys are not even fetched */
    assert_int_equal(stats(conn_dir, EMU_JWKS_PATH), 0);
}

static void
test_valid_token_http1(void **state)
{
    (void)state;
    int64_t exp;
    char *token = valid_token(&exp);
    char *body = activity(SERVICE_URL, "msteams");
    expect_stored(base, BGT_HTTP_1_1, token, exp, NULL, body);
    free(body);
    free(token);
}

/* policy.answer_ping (default on): {"type":"ping"} without a token is answered 200 and
 * stored nowhere; any other activity without a token is still 401 missing_token, and a
 * ping WITH a token goes through the whole check (here it has no serviceUrl: 400). */
static void
test_ping_without_token(void **state)
{
    (void)state;
    long long before = xlen();
    bgt_http_resp resp;
    post_raw(base, BGT_HTTP_1_1, NULL, NULL, "{\"type\":\"ping\"}", &resp);
    bgt_expect_status(&resp, 200);
    bgt_http_resp_free(&resp);
    assert_int_equal(xlen(), before);
    char *body = activity(SERVICE_URL, "msteams");
    expect_refused_raw(base, NULL, NULL, body, 401, "missing_token");
    free(body);
    expect_refused_raw(base, "Authorization: Bearer a.b.c", NULL, "{\"type\":\"ping\"}", 400,
                       "malformed_activity");
}

static void
test_valid_token_http2(void **state)
{
    (void)state;
    int64_t exp;
    char *token = valid_token(&exp);
    char *body = activity(SERVICE_URL, "msteams");
    expect_stored(base, BGT_HTTP_2, token, exp, NULL, body);
    free(body);
    /* the same token again (a cache hit) over HTTP/2: stored, same exp */
    body = activity(SERVICE_URL, "msteams");
    expect_stored(base, BGT_HTTP_2, token, exp, NULL, body);
    free(body);
    free(token);
}

/*
 * A token verified once is cached, but the cache skips only the signature: serviceUrl and
 * channelId are checked against every request. A captured token must not carry another
 * serviceUrl (replies would go elsewhere) or a channel its key does not endorse.
 */
static void
test_cache_hit_checks_request(void **state)
{
    (void)state;
    int64_t exp;
    char *token = valid_token(&exp);
    expect_accepted(base, token, exp); /* verified and cached */

    char *body = activity(OTHER_SERVICE_URL, "msteams");
    expect_refused(base, token, NULL, body, 401, "serviceurl_mismatch");
    free(body);
    /* differing only by a trailing slash or case: compared byte for byte */
    body = activity("https://smba.trafficmanager.net/teams", "msteams");
    expect_refused(base, token, NULL, body, 401, "serviceurl_mismatch");
    free(body);
    body = activity("https://SMBA.trafficmanager.net/teams/", "msteams");
    expect_refused(base, token, NULL, body, 401, "serviceurl_mismatch");
    free(body);

    body = activity(SERVICE_URL, "slack");
    expect_refused(base, token, NULL, body, 401, "channel_not_endorsed");
    free(body);
    body = activity(SERVICE_URL, "MSTeams"); /* endorsements are case-sensitive */
    expect_refused(base, token, NULL, body, 401, "channel_not_endorsed");
    free(body);

    /* the refusals did not spoil the token: the right request is still accepted */
    expect_accepted(base, token, exp);
    free(token);
}

/* The same two checks on a token botgate sees for the first time (no cache entry). */
static void
test_fresh_token_checks_request(void **state)
{
    (void)state;
    char *token = valid_token(NULL);
    char *body = activity(OTHER_SERVICE_URL, "msteams");
    expect_refused(base, token, NULL, body, 401, "serviceurl_mismatch");
    free(body);
    free(token);
    token = valid_token(NULL);
    body = activity(SERVICE_URL, "slack");
    expect_refused(base, token, NULL, body, 401, "channel_not_endorsed");
    free(body);
    free(token);
    /* a token without a serviceurl claim never matches */
    tok t = {.serviceurl = ""};
    token = mint(&t, NULL);
    expect_token_refused(base, token, "serviceurl_mismatch");
    free(token);
    /* another endorsed channel of key-1 is fine */
    int64_t exp;
    token = valid_token(&exp);
    body = activity(SERVICE_URL, "webchat");
    expect_stored(base, BGT_HTTP_1_1, token, exp, NULL, body);
    free(body);
    free(token);
}

static void
test_authorization_header(void **state)
{
    (void)state;
    char *token = valid_token(NULL);
    char *body = activity(SERVICE_URL, "msteams");
    expect_refused_raw(base, NULL, NULL, body, 401, "missing_token");

    size_t n = strlen(token) + 64;
    char *h = malloc(n);
    snprintf(h, n, "Authorization: bearer %s", token);
    fprintf(stderr, "case: bearer in lower case\n");
    expect_refused_raw(base, h, NULL, body, 401, "malformed_token");
    snprintf(h, n, "Authorization: Bearer  %s", token);
    fprintf(stderr, "case: two spaces\n");
    expect_refused_raw(base, h, NULL, body, 401, "malformed_token");
    snprintf(h, n, "Authorization: %s", token);
    fprintf(stderr, "case: no scheme\n");
    expect_refused_raw(base, h, NULL, body, 401, "malformed_token");
    fprintf(stderr, "case: Bearer without a token\n");
    expect_refused_raw(base, "Authorization: Bearer ", NULL, body, 401, "malformed_token");
    free(h);

    /* 9 KiB: refused as too large, without being parsed */
    size_t big = 9 * 1024;
    char *huge = malloc(big + 1);
    memset(huge, 'a', big);
    huge[big] = '\0';
    fprintf(stderr, "case: a 9 KiB token\n");
    expect_refused(base, huge, NULL, body, 401, "token_too_large");
    free(huge);

    /* the same valid token in the right form is accepted: the refusals were the header's */
    expect_stored(base, BGT_HTTP_1_1, token, 0, NULL, body);
    free(body);
    free(token);
}

/* exp and nbf with auth.clock_skew_s (300 s by default). */
static void
test_token_times(void **state)
{
    (void)state;
    tok expired = {.exp_in = -(SKEW_S + 100), .nbf_in = -(SKEW_S + 1000)};
    char *token = mint(&expired, NULL);
    expect_token_refused(base, token, "token_expired");
    free(token);

    int64_t exp;
    tok in_skew = {.exp_in = -(SKEW_S - 100), .nbf_in = -(SKEW_S + 1000)};
    token = mint(&in_skew, &exp);
    assert_true(exp < bgt_wall_s());
    expect_accepted(base, token, exp);
    free(token);

    tok not_yet = {.nbf_in = SKEW_S + 100};
    token = mint(&not_yet, NULL);
    expect_token_refused(base, token, "token_not_yet_valid");
    free(token);

    tok nbf_in_skew = {.nbf_in = SKEW_S - 100};
    token = mint(&nbf_in_skew, &exp);
    expect_accepted(base, token, exp);
    free(token);
}

/* Flips one character in the middle of the signature segment (not its last character,
 * whose low bits may be padding: that would be a malformed token, not a bad signature). */
static void
flip_signature(char *token)
{
    char *sig = strrchr(token, '.');
    assert_non_null(sig);
    assert_true(strlen(sig + 1) > 40);
    char *c = sig + 1 + 20;
    *c = *c == 'A' ? 'B' : 'A';
}

static void
test_claims_and_signature(void **state)
{
    (void)state;
    tok wrong_aud = {.aud = "00000000-0000-0000-0000-000000000000"};
    char *token = mint(&wrong_aud, NULL);
    expect_token_refused(base, token, "bad_audience");
    free(token);

    tok channel_aud = {.aud = "https://api.botframework.com"};
    token = mint(&channel_aud, NULL);
    expect_token_refused(base, token, "bad_audience");
    free(token);

    tok wrong_iss = {.iss = "https://api.botframework.example.com"};
    token = mint(&wrong_iss, NULL);
    expect_token_refused(base, token, "bad_issuer");
    free(token);

    token = valid_token(NULL);
    flip_signature(token);
    expect_token_refused(base, token, "bad_signature");
    free(token);

    tok none = {.alg = "none"};
    token = mint(&none, NULL);
    expect_token_refused(base, token, "bad_algorithm");
    free(token);

    tok hs256 = {.alg = "HS256"};
    token = mint(&hs256, NULL);
    expect_token_refused(base, token, "bad_algorithm");
    free(token);

    /* RS384 and RS512 are among the SDK's algorithms */
    int64_t exp;
    tok rs512 = {.alg = "RS512"};
    token = mint(&rs512, &exp);
    expect_accepted(base, token, exp);
    free(token);
}

/*
 * A kid botgate does not hold: one refresh (metadata + JWKS, counted by the connector),
 * then 401 unknown_kid since the connector does not have it either; a second unknown kid
 * within the minute is refused without another fetch.
 */
static void
test_unknown_kid_refresh_once(void **state)
{
    (void)state;
    long meta0 = stats(conn_dir, META_PATH), jwks0 = stats(conn_dir, JWKS_PATH);
    tok unknown = {.kid = "kid-the-connector-never-had"};
    char *token = mint(&unknown, NULL);
    expect_token_refused(base, token, "unknown_kid");
    free(token);
    /* the 401 came after the refresh ended: its fetches are counted by now */
    assert_int_equal(stats(conn_dir, META_PATH), meta0 + 1);
    assert_int_equal(stats(conn_dir, JWKS_PATH), jwks0 + 1);

    tok other = {.kid = "another-kid-never-seen"};
    token = mint(&other, NULL);
    expect_token_refused(base, token, "unknown_kid");
    free(token);
    assert_int_equal(stats(conn_dir, META_PATH), meta0 + 1);
    assert_int_equal(stats(conn_dir, JWKS_PATH), jwks0 + 1);

    /* the keys held still work */
    int64_t exp;
    token = valid_token(&exp);
    expect_accepted(base, token, exp);
    free(token);
}

/* serviceUrl and channelId must be non-blank strings once authentication is on: a 400
 * before any token check (the SDK would skip the serviceUrl comparison). */
static void
test_activity_fields_required(void **state)
{
    (void)state;
    char *token = valid_token(NULL);
    static const struct {
        const char *service_url, *channel_id, *what;
    } cases[] = {
        {NULL, "msteams", "serviceUrl missing"}, {"", "msteams", "serviceUrl empty"},
        {"   ", "msteams", "serviceUrl blank"},  {SERVICE_URL, NULL, "channelId missing"},
        {SERVICE_URL, "", "channelId empty"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fprintf(stderr, "case: %s\n", cases[i].what);
        char *body = activity(cases[i].service_url, cases[i].channel_id);
        expect_refused(base, token, NULL, body, 400, "malformed_activity");
        free(body);
    }
    const char *not_string =
        "{\"type\":\"message\",\"id\":\"1:ns\",\"serviceUrl\":5,\"channelId\":\"msteams\","
        "\"conversation\":{\"id\":\"a:ns\"}}";
    fprintf(stderr, "case: serviceUrl not a string\n");
    expect_refused(base, token, NULL, not_string, 400, "malformed_activity");
    free(token);
}

/* An Emulator token (AAD issuer, the Emulator's keys) with auth.allow_emulator off. */
static void
test_emulator_not_allowed(void **state)
{
    (void)state;
    tok emu = {.set = "emulator-keys",
               .sign_kid = "emulator-key-1",
               .iss = EMU_ISSUER_V1,
               .serviceurl = "",
               .extra = "\"ver\":\"1.0\",\"appid\":\"" APP_ID "\",\"tid\":\"" EMU_TENANT "\""};
    char *token = mint(&emu, NULL);
    expect_token_refused(base, token, "emulator_not_allowed");
    free(token);
}

/* Last of the group: SIGTERM, exit 0 (under ASan: no leak). */
static void
test_main_stop(void **state)
{
    (void)state;
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

/* ---- tests with a botgate of their own ---------------------------------------------------- */

/*
 * Rotation: the connector publishes key-2 and drops key-1. A key-2 token names a kid
 * botgate does not hold: it refreshes and accepts (202, not an hour of 401s). A key-1
 * token verified (and cached) before the rotation is refused afterwards: its key is gone,
 * so the cache entry must go too (pruned on the key change; and check_request looks the
 * kid up again), and a dropped key's tokens are unknown_kid.
 */
static void
test_key_rotation(void **state)
{
    (void)state;
    start_local_connector("rotate");
    start_local_on_own_connector("rotate", NULL);
    wait_ready(local_base, 15000);

    int64_t exp_old;
    tok t1 = {0};
    char *old_token = mint_in(local_conn_dir, &t1, &exp_old);
    expect_accepted(local_base, old_token, exp_old); /* verified, cached */

    assert_int_equal(bgt_connector_rotate(local_conn_dir, "key-2", "key-1", BGT_CONNECTOR_CHANNELS),
                     0);
    long jwks0 = stats(local_conn_dir, JWKS_PATH);
    int64_t exp_new;
    tok t2 = {.sign_kid = "key-2"};
    char *new_token = mint_in(local_conn_dir, &t2, &exp_new);
    expect_accepted(local_base, new_token, exp_new);
    assert_int_equal(stats(local_conn_dir, JWKS_PATH), jwks0 + 1);

    /* the old token, cached before the rotation: its key is no longer held */
    long long before = xlen();
    char *body = activity(SERVICE_URL, "msteams");
    bgt_http_resp resp;
    post_token(local_base, BGT_HTTP_1_1, old_token, NULL, body, &resp);
    fprintf(stderr, "the rotated-out key's cached token: status %ld %.*s\n", resp.status,
            (int)resp.body_len, resp.body);
    assert_int_not_equal(resp.status, 202);
    bgt_expect_error(&resp, 401, "unknown_kid");
    bgt_http_resp_free(&resp);
    free(body);
    assert_int_equal(xlen(), before);

    /* a second request with the new key's token (a cache hit) is still accepted */
    expect_accepted(local_base, new_token, exp_new);
    free(old_token);
    free(new_token);
    stop_local();
}

struct sf_call {
    pthread_barrier_t *start;
    char *token;
    char *body;
    bgt_http_resp resp;
};

static void *
sf_run(void *arg)
{
    struct sf_call *c = arg;
    pthread_barrier_wait(c->start);
    post_token(local_base, BGT_HTTP_1_1, c->token, NULL, c->body, &c->resp);
    return NULL;
}

/*
 * Single flight: 20 requests at once, each with its own token naming a kid botgate does
 * not hold yet. The connector holds every answer 500 ms so that the requests arrive while
 * the refresh is in flight: they all wait for that one fetch, and all get 202.
 */
static void
test_single_flight(void **state)
{
    (void)state;
    start_local_connector("single");
    start_local_on_own_connector("single", NULL);
    wait_ready(local_base, 15000);

    assert_int_equal(
        bgt_connector_add_key(local_conn_dir, "keys", "key-sf", BGT_CONNECTOR_CHANNELS), 0);
    struct sf_call calls[SINGLE_FLIGHT_REQUESTS];
    pthread_t threads[SINGLE_FLIGHT_REQUESTS];
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, SINGLE_FLIGHT_REQUESTS), 0);
    for (int i = 0; i < SINGLE_FLIGHT_REQUESTS; i++) {
        tok t = {.sign_kid = "key-sf"};
        calls[i] = (struct sf_call){.start = &start, .token = mint_in(local_conn_dir, &t, NULL)};
        calls[i].body = activity(SERVICE_URL, "msteams");
    }
    long meta0 = stats(local_conn_dir, META_PATH), jwks0 = stats(local_conn_dir, JWKS_PATH);
    long long before = xlen();
    assert_int_equal(bgt_connector_set_slow(local_conn_dir, 500), 0);
    for (int i = 0; i < SINGLE_FLIGHT_REQUESTS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, sf_run, &calls[i]), 0);
    for (int i = 0; i < SINGLE_FLIGHT_REQUESTS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    assert_int_equal(bgt_connector_set_slow(local_conn_dir, 0), 0);

    int accepted = 0;
    for (int i = 0; i < SINGLE_FLIGHT_REQUESTS; i++) {
        if (calls[i].resp.curl_code == CURLE_OK && calls[i].resp.status == 202)
            accepted++;
        else
            bgt_http_resp_print("single flight", &calls[i].resp);
        bgt_http_resp_free(&calls[i].resp);
        free(calls[i].token);
        free(calls[i].body);
    }
    assert_int_equal(accepted, SINGLE_FLIGHT_REQUESTS);
    assert_int_equal(xlen(), before + SINGLE_FLIGHT_REQUESTS);
    assert_int_equal(stats(local_conn_dir, META_PATH), meta0 + 1);
    assert_int_equal(stats(local_conn_dir, JWKS_PATH), jwks0 + 1);
    stop_local();
}

/*
 * The connector is down when botgate starts: botgate serves (/healthz), but is not ready
 * and refuses POSTs with 503 keys_unavailable (never a 202 without a key). Once the
 * connector is back, botgate's retry (back-off from 1 s) fetches the keys by itself.
 */
static void
test_connector_down_at_start(void **state)
{
    (void)state;
    start_local_connector("down");
    assert_int_equal(bgt_connector_set_down(local_conn_dir, true), 0);
    start_local_on_own_connector("down", NULL);

    /* Redis may still be connecting: its 503 comes first; then the keys' */
    poll_error(local_base, "/readyz", 503, "keys_unavailable", 10000);
    int64_t exp;
    tok t = {0};
    char *token = mint_in(local_conn_dir, &t, &exp);
    char *body = activity(SERVICE_URL, "msteams");
    expect_refused(local_base, token, NULL, body, 503, "keys_unavailable");
    free(body);
    /* botgate did ask (and was told 503) */
    assert_true(stats(local_conn_dir, META_PATH) >= 1);
    assert_int_equal(stats(local_conn_dir, JWKS_PATH), 0);

    assert_int_equal(bgt_connector_set_down(local_conn_dir, false), 0);
    wait_ready(local_base, 10000);
    expect_accepted(local_base, token, exp);
    free(token);
    stop_local();
}

/*
 * A refresh that fails keeps the keys held (the SDK would drop them and refuse every
 * request): with the connector down, an unknown kid's refresh fails and the request gets
 * 503 keys_unavailable (botgate could not look: the Connector may retry), never 202; a
 * token of the key still held is accepted; once the connector is back, the same unknown
 * kid (the connector does not have it either) is a 401 unknown_kid.
 */
static void
test_failed_refresh_keeps_keys(void **state)
{
    (void)state;
    start_local_connector("keep");
    start_local_on_own_connector("keep", NULL);
    wait_ready(local_base, 15000);

    assert_int_equal(bgt_connector_set_down(local_conn_dir, true), 0);
    long meta0 = stats(local_conn_dir, META_PATH);
    tok unknown = {.kid = "kid-during-outage"};
    char *token = mint_in(local_conn_dir, &unknown, NULL);
    char *body = activity(SERVICE_URL, "msteams");
    expect_refused(local_base, token, NULL, body, 503, "keys_unavailable");
    free(body);
    assert_true(stats(local_conn_dir, META_PATH) >= meta0 + 1); /* the refresh was tried */

    int64_t exp;
    tok t = {0};
    char *held = mint_in(local_conn_dir, &t, &exp); /* never seen: verified with the held key */
    expect_accepted(local_base, held, exp);
    free(held);
    expect_get(local_base, "/readyz", 200, NULL);
    assert_int_equal(bgt_connector_set_down(local_conn_dir, false), 0);
    /* the failed fetch's retry (1 s) succeeds: the kid is then known to be unknown */
    body = activity(SERVICE_URL, "msteams");
    int64_t deadline = bgt_mono_ms() + 15000;
    for (;;) {
        bgt_http_resp resp;
        post_token(local_base, BGT_HTTP_1_1, token, NULL, body, &resp);
        char code[64];
        int unknown = resp.status == 401 && bgt_http_error_code(&resp, code, sizeof(code)) &&
                      strcmp(code, "unknown_kid") == 0;
        int still_down = resp.status == 503;
        if (!unknown && !still_down)
            bgt_http_resp_print("unknown kid, connector back", &resp);
        bgt_http_resp_free(&resp);
        assert_true(unknown || still_down);
        if (unknown)
            break;
        if (bgt_mono_ms() > deadline)
            fail_msg("still 503 15 s after the connector came back");
        bgt_sleep_ms(200);
    }
    free(body);
    free(token);
    stop_local();
}

/* policy.allow_cidrs without 127.0.0.1: 403 before anything else is looked at. */
static void
test_allow_cidrs_refused(void **state)
{
    (void)state;
    start_local("cidr-ten", NULL, "policy:\n  allow_cidrs: [10.0.0.0/8]\n");
    char *token = valid_token(NULL);
    char *body = activity(SERVICE_URL, "msteams");
    expect_refused(local_base, token, NULL, body, 403, "source_not_allowed");
    /* before the token is looked at: no token is refused the same way */
    expect_refused(local_base, NULL, NULL, body, 403, "source_not_allowed");
    /* X-Forwarded-For from an untrusted peer is not believed */
    expect_refused(local_base, token, "X-Forwarded-For: 10.1.2.3", body, 403, "source_not_allowed");
    free(body);
    free(token);
    stop_local();
}

static void
test_allow_cidrs_loopback(void **state)
{
    (void)state;
    start_local("cidr-loop", NULL, "policy:\n  allow_cidrs: [127.0.0.0/8]\n");
    int64_t exp;
    char *token = valid_token(&exp);
    expect_accepted(local_base, token, exp);
    free(token);
    stop_local();
}

/* Behind a trusted proxy (127.0.0.1) the client is the right-most X-Forwarded-For address
 * that is not a trusted proxy. */
static void
test_trusted_proxy(void **state)
{
    (void)state;
    start_local("cidr-proxy", NULL,
                "policy:\n  allow_cidrs: [203.0.113.0/24]\n  trusted_proxies: [127.0.0.1/32]\n");
    int64_t exp;
    char *token = valid_token(&exp);
    char *body = activity(SERVICE_URL, "msteams");
    expect_stored(local_base, BGT_HTTP_1_1, token, exp, "X-Forwarded-For: 203.0.113.9", body);
    free(body);
    body = activity(SERVICE_URL, "msteams");
    expect_refused(local_base, token, "X-Forwarded-For: 198.51.100.1", body, 403,
                   "source_not_allowed");
    /* the right-most untrusted hop decides, not the left-most (which a client writes) */
    expect_refused(local_base, token, "X-Forwarded-For: 203.0.113.9, 198.51.100.1", body, 403,
                   "source_not_allowed");
    /* no X-Forwarded-For: the client is the proxy itself, not allowed */
    expect_refused(local_base, token, NULL, body, 403, "source_not_allowed");
    free(body);
    free(token);
    stop_local();
}

/*
 * auth.allow_emulator: Emulator tokens (AAD issuer, signed with the Emulator's keys from
 * emulator_openid_metadata_url) are accepted when the app id claim is ours: appid for
 * ver 1.0, azp for ver 2.0. Channel tokens still work, and a channel-issued token is
 * never verified with the Emulator's keys.
 */
static void
test_emulator_allowed(void **state)
{
    (void)state;
    start_local("emulator", "  allow_emulator: true\n", NULL);
    assert_true(stats(conn_dir, EMU_JWKS_PATH) >= 1);

    int64_t exp;
    tok v1 = {.set = "emulator-keys",
              .sign_kid = "emulator-key-1",
              .iss = EMU_ISSUER_V1,
              .serviceurl = "",
              .extra = "\"ver\":\"1.0\",\"appid\":\"" APP_ID "\",\"tid\":\"" EMU_TENANT "\""};
    char *token = mint(&v1, &exp);
    expect_accepted(local_base, token, exp);
    free(token);

    tok v2 = {.set = "emulator-keys",
              .sign_kid = "emulator-key-1",
              .iss = EMU_ISSUER_V2,
              .serviceurl = "",
              .extra = "\"ver\":\"2.0\",\"azp\":\"" APP_ID "\",\"tid\":\"" EMU_TENANT "\""};
    token = mint(&v2, &exp);
    expect_accepted(local_base, token, exp);
    free(token);

    /* ver 2.0 with the app id in appid (not azp): not ours */
    tok v2_appid = v2;
    v2_appid.extra = "\"ver\":\"2.0\",\"appid\":\"" APP_ID "\",\"tid\":\"" EMU_TENANT "\"";
    token = mint(&v2_appid, NULL);
    expect_token_refused(local_base, token, "bad_app_id");
    free(token);

    /* a channel-issued token signed with the Emulator's key: looked up among the channel
     * keys, where that kid is not */
    tok cross = {.set = "emulator-keys", .sign_kid = "emulator-key-1"};
    token = mint(&cross, NULL);
    expect_token_refused(local_base, token, "unknown_kid");
    free(token);

    token = valid_token(&exp);
    expect_accepted(local_base, token, exp);
    free(token);
    stop_local();
}

/* Last: the shared connector exits 0 on SIGTERM (under ASan: no leak). */
static void
test_connector_stop(void **state)
{
    (void)state;
    int rc = bgt_connector_stop(conn_dir);
    conn_dir[0] = '\0';
    assert_int_equal(rc, 0);
}

int
main(void)
{
    bgt_botgate_role = "ingress"; /* these tests inspect the stream: no consumer */
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_ready_with_keys),
        cmocka_unit_test(test_valid_token_http1),
        cmocka_unit_test(test_ping_without_token),
        cmocka_unit_test(test_valid_token_http2),
        cmocka_unit_test(test_cache_hit_checks_request),
        cmocka_unit_test(test_fresh_token_checks_request),
        cmocka_unit_test(test_authorization_header),
        cmocka_unit_test(test_token_times),
        cmocka_unit_test(test_claims_and_signature),
        cmocka_unit_test(test_unknown_kid_refresh_once),
        cmocka_unit_test(test_activity_fields_required),
        cmocka_unit_test(test_emulator_not_allowed),
        cmocka_unit_test(test_main_stop),
    };
    const struct CMUnitTest own[] = {
        cmocka_unit_test_teardown(test_key_rotation, local_teardown),
        cmocka_unit_test_teardown(test_single_flight, local_teardown),
        cmocka_unit_test_teardown(test_connector_down_at_start, local_teardown),
        cmocka_unit_test_teardown(test_failed_refresh_keeps_keys, local_teardown),
        cmocka_unit_test_teardown(test_allow_cidrs_refused, local_teardown),
        cmocka_unit_test_teardown(test_allow_cidrs_loopback, local_teardown),
        cmocka_unit_test_teardown(test_trusted_proxy, local_teardown),
        cmocka_unit_test_teardown(test_emulator_allowed, local_teardown),
        cmocka_unit_test(test_connector_stop),
    };
    if (bgt_env_init(&env) != 0 || bgt_tls_make_cert(env.dir, cert, key) != 0)
        return 1;
    bgt_path(conn_dir, sizeof(conn_dir), env.dir, "connector-main");
    int failed = 0;
    if (bgt_redis_start(&redis, env.dir, "main", NULL) != 0 ||
        bgt_connector_start(conn_dir, &conn_port) != 0) {
        failed = 1;
    } else {
        failed += cmocka_run_group_tests_name("auth", shared, group_setup, group_teardown);
        failed += cmocka_run_group_tests_name("auth_own_instances", own, NULL, NULL);
    }
    if (conn_dir[0] != '\0')
        bgt_connector_kill(conn_dir);
    bgt_redis_stop(&redis);
    return bgt_env_exit(&env, failed);
}
