/*
 * policy/relay_path.c: the relay's routes and id rules, the Connector URL built from a
 * stored serviceUrl, the token URL for a tenant, the token schedule and the retry rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "botgate/error.h"
#include "botgate/relay_path.h"

static int
parse(const char *method, const char *path, bg_relay_path *out)
{
    char why[200];
    const char *allow;
    return bg_relay_path_parse(method, strlen(method), path, strlen(path), out, &allow, why,
                               sizeof(why));
}

static void
test_routes(void **state)
{
    (void)state;
    bg_relay_path p;
    assert_int_equal(parse("POST", "/v3/conversations/c1/activities", &p), 0);
    assert_int_equal(p.op, BG_RELAY_SEND);
    assert_string_equal(p.conversation_id, "c1");
    assert_string_equal(p.activity_id, "");
    assert_int_equal(parse("POST", "/v3/conversations/c1/activities/a1", &p), 0);
    assert_int_equal(p.op, BG_RELAY_REPLY);
    assert_string_equal(p.activity_id, "a1");
    assert_int_equal(parse("PUT", "/v3/conversations/c1/activities/a1", &p), 0);
    assert_int_equal(p.op, BG_RELAY_UPDATE);
    assert_int_equal(parse("DELETE", "/v3/conversations/c1/activities/a1", &p), 0);
    assert_int_equal(p.op, BG_RELAY_DELETE);
    assert_string_equal(bg_relay_op_method(BG_RELAY_UPDATE), "PUT");
    assert_string_equal(bg_relay_op_method(BG_RELAY_REPLY), "POST");
    assert_string_equal(bg_relay_op_name(BG_RELAY_DELETE), "delete");
}

static void
test_teams_ids_decoded(void **state)
{
    (void)state;
    bg_relay_path p;
    /* what encodeURIComponent makes of Teams ids */
    assert_int_equal(parse("POST",
                           "/v3/conversations/19%3Ameeting_Zm9v%40thread.v2%3Bmessageid%3D1700/"
                           "activities/1700%7C0001",
                           &p),
                     0);
    assert_string_equal(p.conversation_id, "19:meeting_Zm9v@thread.v2;messageid=1700");
    assert_string_equal(p.activity_id, "1700|0001");
    /* pchar bytes may also come raw */
    assert_int_equal(parse("POST", "/v3/conversations/a:1X-y_z@t;m=1/activities", &p), 0);
    assert_string_equal(p.conversation_id, "a:1X-y_z@t;m=1");
}

static void
test_not_routes(void **state)
{
    (void)state;
    bg_relay_path p;
    const char *paths[] = {
        "/",
        "/api/messages",
        "/v3/conversations",
        "/v3/conversations/",
        "/v3/conversations/c1",
        "/v3/conversations/c1/members",
        "/v3/conversations/c1/activities/a1/members",
        "/v3/conversations/c1/Activities",
        "/v3/conversations/c1/activities/a1/x/y",
        "https://evil.example/v3/conversations/c1/activities",
        "//evil.example/v3/conversations/c1/activities",
        "/V3/conversations/c1/activities",
        "/v3/attachments/x",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (parse("POST", paths[i], &p) != BG_ENOTFOUND)
            fail_msg("%s: not refused as not_found", paths[i]);
}

static void
test_methods(void **state)
{
    (void)state;
    bg_relay_path p;
    char why[200];
    const char *allow = NULL;
    assert_int_equal(bg_relay_path_parse("GET", 3, "/v3/conversations/c/activities", 30, &p, &allow,
                                         why, sizeof(why)),
                     BG_EMETHOD);
    assert_string_equal(allow, "POST");
    const char *path = "/v3/conversations/c/activities/a";
    assert_int_equal(
        bg_relay_path_parse("PATCH", 5, path, strlen(path), &p, &allow, why, sizeof(why)),
        BG_EMETHOD);
    assert_string_equal(allow, "POST, PUT, DELETE");
    assert_int_equal(parse("PUT", "/v3/conversations/c/activities", &p), BG_EMETHOD);
    assert_int_equal(parse("post", "/v3/conversations/c/activities", &p), BG_EMETHOD);
}

static void
test_hostile_ids(void **state)
{
    (void)state;
    bg_relay_path p;
    const char *paths[] = {
        "/v3/conversations/../activities",
        "/v3/conversations/./activities",
        "/v3/conversations/%2e%2e/activities",
        "/v3/conversations/%2E/activities",
        "/v3/conversations/.%2e/activities",
        "/v3/conversations/c/activities/..",
        "/v3/conversations/c/activities/%2e%2E",
        "/v3/conversations/c%2F..%2Fx/activities",
        "/v3/conversations/c%2f..%2fx/activities",
        "/v3/conversations/c%252F..%252Fx/activities",
        "/v3/conversations/c%25/activities",
        "/v3/conversations/c%5C..%5Cx/activities",
        "/v3/conversations/c\\..\\x/activities",
        "/v3/conversations/c%00/activities",
        "/v3/conversations/c%0d%0aHost:%20x/activities",
        "/v3/conversations/c%20d/activities",
        "/v3/conversations/c d/activities",
        "/v3/conversations/c%/activities",
        "/v3/conversations/c%4/activities",
        "/v3/conversations/c%zz/activities",
        "/v3/conversations/c%3f/activities",
        "/v3/conversations/c%23/activities",
        "/v3/conversations/c%C3%A9/activities",
        "/v3/conversations/c\xc3\xa9/activities",
        "/v3/conversations/c\"/activities",
        "/v3/conversations/c/activities?x=1",
        "/v3/conversations/c/activities#f",
        "/v3/conversations/c/activities/",
        "/v3/conversations//activities",
        "/v3/conversations/c/activities/a?serviceUrl=https://evil",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        int rc = parse("POST", paths[i], &p);
        if (rc != BG_ERELAY_PATH && rc != BG_ENOTFOUND)
            fail_msg("%s: accepted (%d)", paths[i], rc);
    }
    /* an id of the longest length passes, one more byte does not */
    char path[2048], id[BG_RELAY_ID_MAX + 2];
    memset(id, 'x', BG_RELAY_ID_MAX);
    id[BG_RELAY_ID_MAX] = '\0';
    snprintf(path, sizeof(path), "/v3/conversations/%s/activities", id);
    assert_int_equal(parse("POST", path, &p), 0);
    snprintf(path, sizeof(path), "/v3/conversations/%sx/activities", id);
    assert_int_equal(parse("POST", path, &p), BG_ERELAY_PATH);
}

static void
test_target_url(void **state)
{
    (void)state;
    bg_relay_path p = {.op = BG_RELAY_REPLY};
    char out[4096], why[200];
    strcpy(p.conversation_id, "19:x@thread.v2;messageid=1");
    strcpy(p.activity_id, "1|2");
    assert_int_equal(bg_relay_target_url("https://smba.trafficmanager.net/teams/", &p, out,
                                         sizeof(out), why, sizeof(why)),
                     0);
    assert_string_equal(out, "https://smba.trafficmanager.net/teams/v3/conversations/"
                             "19%3Ax%40thread.v2%3Bmessageid%3D1/activities/1%7C2");
    p.op = BG_RELAY_SEND;
    assert_int_equal(bg_relay_target_url("https://smba.trafficmanager.net/amer", &p, out,
                                         sizeof(out), why, sizeof(why)),
                     0);
    assert_string_equal(out, "https://smba.trafficmanager.net/amer/v3/conversations/"
                             "19%3Ax%40thread.v2%3Bmessageid%3D1/activities");
    /* an id that names a path cannot become one */
    strcpy(p.conversation_id, "../../evil");
    assert_int_equal(
        bg_relay_target_url("https://a.example/", &p, out, sizeof(out), why, sizeof(why)), 0);
    assert_string_equal(out, "https://a.example/v3/conversations/..%2F..%2Fevil/activities");
    const char *bad[] = {"http://a.example/",
                         "https://",
                         "https:///x",
                         "https://u@a.example/",
                         "https://a.example/?q",
                         "https://a.example/#f",
                         "https://a .example/",
                         "ftp://a.example/",
                         "https://a.example\\x/",
                         "https://:443/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (bg_relay_target_url(bad[i], &p, out, sizeof(out), why, sizeof(why)) != BG_EINVAL)
            fail_msg("%s: accepted", bad[i]);
        assert_int_equal(bg_relay_service_url_ok(bad[i]), 0);
    }
    assert_int_equal(bg_relay_target_url("https://a.example/", &p, out, 20, why, sizeof(why)),
                     BG_EINVAL);
}

static void
test_pct_encode(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(bg_relay_pct_encode("aZ0-._~ /%+=&", 13, out, sizeof(out)), 25);
    assert_string_equal(out, "aZ0-._~%20%2F%25%2B%3D%26");
    assert_int_equal(bg_relay_pct_encode("abc", 3, out, 3), -1);
    assert_string_equal(out, "");
    assert_int_equal(bg_relay_pct_encode("abc", 3, out, 4), 3);
}

static void
test_token_url(void **state)
{
    (void)state;
    char out[256];
    const char *def = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token";
    assert_int_equal(bg_relay_token_url(def, "MultiTenant", "t-1", out, sizeof(out)), 0);
    assert_string_equal(out, def);
    assert_int_equal(bg_relay_token_url(def, "SingleTenant", "t-1", out, sizeof(out)), 0);
    assert_string_equal(out, "https://login.microsoftonline.com/t-1/oauth2/v2.0/token");
    assert_int_equal(
        bg_relay_token_url("https://x/other/token", "SingleTenant", "t-1", out, sizeof(out)), 0);
    assert_string_equal(out, "https://x/other/token");
    assert_int_equal(bg_relay_token_url(def, "SingleTenant", "t-1", out, 10), BG_EINVAL);
}

static void
test_token_schedule(void **state)
{
    (void)state;
    /* an hour's token: refreshed at 45 min, handed out until 59 min */
    assert_int_equal(bg_relay_token_refresh_at(1000, 3600, 75), 1000 + 2700000);
    assert_int_equal(bg_relay_token_usable_until(1000, 3600), 1000 + 3540000);
    /* a 10 s token: refreshed at 3 s (30%), handed out until 9 s */
    assert_int_equal(bg_relay_token_refresh_at(0, 10, 30), 3000);
    assert_int_equal(bg_relay_token_usable_until(0, 10), 9000);
    /* the refresh always comes before the end of the hand-out window (pct <= 90) */
    for (int64_t life = 1; life < 100000; life = life * 3 + 1)
        assert_true(bg_relay_token_refresh_at(0, life, 90) <= bg_relay_token_usable_until(0, life));
}

static void
test_retry_rules(void **state)
{
    (void)state;
    assert_true(bg_relay_retryable(CURLE_COULDNT_CONNECT, 0, 0, 0));
    assert_true(bg_relay_retryable(CURLE_COULDNT_RESOLVE_HOST, 0, 0, 0));
    assert_true(bg_relay_retryable(CURLE_OPERATION_TIMEDOUT, 0, 0, 0));
    /* connected: the request may have been taken */
    assert_false(bg_relay_retryable(CURLE_OPERATION_TIMEDOUT, 1200, 0, 0));
    assert_false(bg_relay_retryable(CURLE_RECV_ERROR, 1200, 0, 0));
    assert_false(bg_relay_retryable(CURLE_SSL_CONNECT_ERROR, 0, 0, 0));
    assert_true(bg_relay_retryable(CURLE_OK, 900, 502, 0));
    assert_true(bg_relay_retryable(CURLE_OK, 900, 503, 0));
    assert_true(bg_relay_retryable(CURLE_OK, 900, 429, 1));
    assert_false(bg_relay_retryable(CURLE_OK, 900, 429, 0));
    assert_false(bg_relay_retryable(CURLE_OK, 900, 500, 0));
    assert_false(bg_relay_retryable(CURLE_OK, 900, 504, 1));
    assert_false(bg_relay_retryable(CURLE_OK, 900, 200, 0));
    assert_int_equal(bg_relay_retry_delay_ms(1, -1), 250);
    assert_int_equal(bg_relay_retry_delay_ms(2, -1), 500);
    assert_int_equal(bg_relay_retry_delay_ms(3, -1), 1000);
    assert_int_equal(bg_relay_retry_delay_ms(4, -1), -1);
    assert_int_equal(bg_relay_retry_delay_ms(0, -1), -1);
    assert_int_equal(bg_relay_retry_delay_ms(1, 2), 2000);
    assert_int_equal(bg_relay_retry_delay_ms(1, 0), 0);
    assert_int_equal(bg_relay_retry_delay_ms(1, BG_RELAY_MAX_RETRY_AFTER_S + 1), -1);
}

static void
test_refusal_rules(void **state)
{
    (void)state;
    /* a 401, once a call, within the budget */
    assert_true(bg_relay_refusal_retryable(CURLE_OK, 401, 0, 0));
    assert_true(bg_relay_refusal_retryable(CURLE_OK, 401, BG_RELAY_MAX_RETRIES - 1, 0));
    assert_false(bg_relay_refusal_retryable(CURLE_OK, 401, 0, 1));
    assert_false(bg_relay_refusal_retryable(CURLE_OK, 401, BG_RELAY_MAX_RETRIES, 0));
    /* other statuses are bg_relay_retryable's, or final */
    assert_false(bg_relay_refusal_retryable(CURLE_OK, 403, 0, 0));
    assert_false(bg_relay_refusal_retryable(CURLE_OK, 200, 0, 0));
    assert_false(bg_relay_refusal_retryable(CURLE_OK, 503, 0, 0));
    assert_false(bg_relay_refusal_retryable(CURLE_RECV_ERROR, 401, 0, 0));
    /* forced fetches: the first at once, then one per window */
    int64_t t0 = 1700000000000;
    assert_true(bg_relay_token_force_allowed(t0, 0));
    assert_false(bg_relay_token_force_allowed(t0, t0));
    assert_false(bg_relay_token_force_allowed(t0 + BG_RELAY_TOKEN_FORCE_INTERVAL_MS - 1, t0));
    assert_true(bg_relay_token_force_allowed(t0 + BG_RELAY_TOKEN_FORCE_INTERVAL_MS, t0));
    assert_int_equal(BG_RELAY_TOKEN_FORCE_INTERVAL_MS, 10000); /* the README says 10 s */
}

static void
test_error_codes(void **state)
{
    (void)state;
    assert_string_equal(bg_error_code(BG_ERELAY_PATH), "bad_relay_path");
    assert_int_equal(bg_error_status(BG_ERELAY_PATH), 400);
    assert_string_equal(bg_error_code(BG_ERELAY_CONVERSATION), "unknown_conversation");
    assert_int_equal(bg_error_status(BG_ERELAY_CONVERSATION), 404);
    assert_int_equal(bg_error_status(BG_ERELAY_TOKEN), 502);
    assert_int_equal(bg_error_status(BG_ERELAY_TIMEOUT), 504);
    assert_int_equal(bg_error_status(BG_ERELAY_SECRET), 401);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),         cmocka_unit_test(test_teams_ids_decoded),
        cmocka_unit_test(test_not_routes),     cmocka_unit_test(test_methods),
        cmocka_unit_test(test_hostile_ids),    cmocka_unit_test(test_target_url),
        cmocka_unit_test(test_pct_encode),     cmocka_unit_test(test_token_url),
        cmocka_unit_test(test_token_schedule), cmocka_unit_test(test_retry_rules),
        cmocka_unit_test(test_refusal_rules),  cmocka_unit_test(test_error_codes),
    };
    return cmocka_run_group_tests_name("relay_path", tests, NULL, NULL);
}
