/*
 * The doctor's judgement (policy/doctor.c): the verdict over the steps, and each step's
 * classification — connect errors, OpenSSL verify codes, certificate expiry, the ping's
 * status and time against the budgets, AAD's errors, the queue's state — branch by branch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/x509_vfy.h>
#include <string.h>

#include "botgate/doctor.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const bg_doctor_result PASS = {BG_DOCTOR_PASS, BG_DOCTOR_OK};

static void
expect_result_at(bg_doctor_result got, bg_doctor_status status, bg_doctor_cause cause,
                 const char *what, int line)
{
    if (got.status != status || got.cause != cause)
        fail_msg("line %d, %s: %s/%s, want %s/%s", line, what, bg_doctor_status_name(got.status),
                 bg_doctor_cause_code(got.cause), bg_doctor_status_name(status),
                 bg_doctor_cause_code(cause));
}
#define expect_result(got, ...) expect_result_at((got), __VA_ARGS__, #got, __LINE__)
#define FAIL_WITH(c) BG_DOCTOR_FAIL, (c)
#define WARN_WITH(c) BG_DOCTOR_WARN, (c)
#define PASSES BG_DOCTOR_PASS, BG_DOCTOR_OK

static void
test_causes_have_codes_and_sentences(void **state)
{
    (void)state;
    for (int c = 0; c < BG_DOCTOR_CAUSE_COUNT; c++) {
        const char *code = bg_doctor_cause_code((bg_doctor_cause)c);
        const char *text = bg_doctor_cause_text((bg_doctor_cause)c);
        assert_non_null(code);
        assert_non_null(text);
        assert_string_not_equal(code, "unknown");
        assert_true(strlen(text) > 10);
        for (int k = 0; k < c; k++)
            if (strcmp(code, bg_doctor_cause_code((bg_doctor_cause)k)) == 0)
                fail_msg("code '%s' used twice", code);
    }
    assert_string_equal(bg_doctor_cause_code(BG_DOCTOR_CAUSE_COUNT), "unknown");
    assert_string_equal(bg_doctor_cause_text((bg_doctor_cause)-1), "unknown cause");
    /* the sentences the integration test and the README quote */
    assert_string_equal(bg_doctor_cause_text(BG_DOCTOR_OK), "all checks pass");
    assert_string_equal(bg_doctor_cause_text(BG_DOCTOR_HTTP_TOO_SLOW),
                        "the bot is too slow: the Connector gives up at 15 s");
    assert_string_equal(bg_doctor_cause_code(BG_DOCTOR_CONNECT_REFUSED), "connect_refused");
    assert_string_equal(bg_doctor_status_name(BG_DOCTOR_PASS), "pass");
    assert_string_equal(bg_doctor_status_name(BG_DOCTOR_WARN), "warn");
    assert_string_equal(bg_doctor_status_name(BG_DOCTOR_FAIL), "fail");
    assert_string_equal(bg_doctor_status_name(BG_DOCTOR_SKIP), "skip");
}

static void
test_verdict(void **state)
{
    (void)state;
    bool failed = true;
    assert_int_equal(bg_doctor_verdict(NULL, 0, &failed), BG_DOCTOR_OK);
    assert_false(failed);

    const bg_doctor_result skip = {BG_DOCTOR_SKIP, BG_DOCTOR_OK};
    bg_doctor_result all_pass[] = {PASS, skip, PASS};
    assert_int_equal(bg_doctor_verdict(all_pass, N(all_pass), &failed), BG_DOCTOR_OK);
    assert_false(failed);

    /* warnings alone: the first names the verdict, and nothing failed */
    bg_doctor_result warns[] = {
        PASS, {BG_DOCTOR_WARN, BG_DOCTOR_CERT_EXPIRING}, {BG_DOCTOR_WARN, BG_DOCTOR_HTTP_SLOW}};
    assert_int_equal(bg_doctor_verdict(warns, N(warns), &failed), BG_DOCTOR_CERT_EXPIRING);
    assert_false(failed);

    /* a failure wins over an earlier warning; the first failure over later ones */
    bg_doctor_result mixed[] = {PASS,
                                {BG_DOCTOR_WARN, BG_DOCTOR_CERT_EXPIRING},
                                {BG_DOCTOR_FAIL, BG_DOCTOR_HTTP_TOO_SLOW},
                                {BG_DOCTOR_FAIL, BG_DOCTOR_AAD_BAD_SECRET}};
    assert_int_equal(bg_doctor_verdict(mixed, N(mixed), &failed), BG_DOCTOR_HTTP_TOO_SLOW);
    assert_true(failed);

    bg_doctor_result first[] = {{BG_DOCTOR_FAIL, BG_DOCTOR_CONNECT_REFUSED},
                                skip,
                                {BG_DOCTOR_FAIL, BG_DOCTOR_REDIS_UNREACHABLE}};
    assert_int_equal(bg_doctor_verdict(first, N(first), &failed), BG_DOCTOR_CONNECT_REFUSED);
    assert_true(failed);
}

static void
test_connect(void **state)
{
    (void)state;
    expect_result(bg_doctor_connect_result(0), PASSES);
    expect_result(bg_doctor_connect_result(ECONNREFUSED), FAIL_WITH(BG_DOCTOR_CONNECT_REFUSED));
    expect_result(bg_doctor_connect_result(ETIMEDOUT), FAIL_WITH(BG_DOCTOR_CONNECT_TIMEOUT));
    expect_result(bg_doctor_connect_result(EHOSTUNREACH), FAIL_WITH(BG_DOCTOR_CONNECT_ERROR));
    expect_result(bg_doctor_connect_result(ENETUNREACH), FAIL_WITH(BG_DOCTOR_CONNECT_ERROR));
}

static void
test_tls_verify_codes(void **state)
{
    (void)state;
    static const struct {
        long code;
        bg_doctor_cause cause;
    } rows[] = {
        {X509_V_ERR_CERT_HAS_EXPIRED, BG_DOCTOR_CERT_EXPIRED},
        {X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD, BG_DOCTOR_CERT_EXPIRED},
        {X509_V_ERR_CERT_NOT_YET_VALID, BG_DOCTOR_CERT_NOT_YET_VALID},
        {X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD, BG_DOCTOR_CERT_NOT_YET_VALID},
        {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, BG_DOCTOR_CERT_SELF_SIGNED},
        {X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, BG_DOCTOR_CERT_SELF_SIGNED},
        {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, BG_DOCTOR_CERT_UNTRUSTED},
        {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, BG_DOCTOR_CERT_UNTRUSTED},
        {X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, BG_DOCTOR_CERT_UNTRUSTED},
        {X509_V_ERR_CERT_UNTRUSTED, BG_DOCTOR_CERT_UNTRUSTED},
        {X509_V_ERR_HOSTNAME_MISMATCH, BG_DOCTOR_CERT_HOSTNAME},
        {X509_V_ERR_IP_ADDRESS_MISMATCH, BG_DOCTOR_CERT_HOSTNAME},
        {X509_V_ERR_CERT_SIGNATURE_FAILURE, BG_DOCTOR_CERT_INVALID},
        {X509_V_ERR_CERT_REVOKED, BG_DOCTOR_CERT_INVALID},
        {X509_V_ERR_INVALID_PURPOSE, BG_DOCTOR_CERT_INVALID},
    };
    for (size_t i = 0; i < N(rows); i++) {
        bg_doctor_result r = bg_doctor_tls_verify_result(&rows[i].code, 1);
        if (r.status != BG_DOCTOR_FAIL || r.cause != rows[i].cause)
            fail_msg("verify code %ld: %s, want %s", rows[i].code, bg_doctor_cause_code(r.cause),
                     bg_doctor_cause_code(rows[i].cause));
    }
    expect_result(bg_doctor_tls_verify_result(NULL, 0), PASSES);
    /* the first reported names the cause */
    long expired_self[] = {X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT};
    expect_result(bg_doctor_tls_verify_result(expired_self, 2), FAIL_WITH(BG_DOCTOR_CERT_EXPIRED));
    long self_expired[] = {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_CERT_HAS_EXPIRED};
    expect_result(bg_doctor_tls_verify_result(self_expired, 2),
                  FAIL_WITH(BG_DOCTOR_CERT_SELF_SIGNED));
}

static void
test_expiry(void **state)
{
    (void)state;
    const int64_t now = 1800000000, day = 86400;
    int64_t days = 99;
    expect_result(bg_doctor_expiry_result(now + 365 * day, now, &days), PASSES);
    assert_int_equal(days, 365);
    expect_result(bg_doctor_expiry_result(now + 30 * day, now, &days), PASSES);
    assert_int_equal(days, 30);
    expect_result(bg_doctor_expiry_result(now + 30 * day - 1, now, &days),
                  WARN_WITH(BG_DOCTOR_CERT_EXPIRING));
    assert_int_equal(days, 29);
    expect_result(bg_doctor_expiry_result(now + 1, now, &days), WARN_WITH(BG_DOCTOR_CERT_EXPIRING));
    assert_int_equal(days, 0);
    /* the last second is gone: expired, day 0 until a whole day has passed */
    expect_result(bg_doctor_expiry_result(now, now, &days), FAIL_WITH(BG_DOCTOR_CERT_EXPIRED));
    assert_int_equal(days, 0);
    expect_result(bg_doctor_expiry_result(now - 1, now, &days), FAIL_WITH(BG_DOCTOR_CERT_EXPIRED));
    assert_int_equal(days, 0);
    expect_result(bg_doctor_expiry_result(now - day, now, &days),
                  FAIL_WITH(BG_DOCTOR_CERT_EXPIRED));
    assert_int_equal(days, -1);
    expect_result(bg_doctor_expiry_result(now - 2 * day - 1, now, &days),
                  FAIL_WITH(BG_DOCTOR_CERT_EXPIRED));
    assert_int_equal(days, -2);
}

static void
test_http(void **state)
{
    (void)state;
    const int64_t W = 10000, F = 15000;
    expect_result(bg_doctor_http_result(true, false, 200, 3, W, F), PASSES);
    expect_result(bg_doctor_http_result(true, false, 204, W, W, F), PASSES); /* at the budget */
    expect_result(bg_doctor_http_result(true, false, 200, W + 1, W, F),
                  WARN_WITH(BG_DOCTOR_HTTP_SLOW));
    expect_result(bg_doctor_http_result(true, false, 202, F, W, F), WARN_WITH(BG_DOCTOR_HTTP_SLOW));
    /* over the failure budget: too slow, whatever came back */
    expect_result(bg_doctor_http_result(true, false, 200, F + 1, W, F),
                  FAIL_WITH(BG_DOCTOR_HTTP_TOO_SLOW));
    expect_result(bg_doctor_http_result(true, false, 500, F + 1, W, F),
                  FAIL_WITH(BG_DOCTOR_HTTP_TOO_SLOW));
    expect_result(bg_doctor_http_result(false, true, 0, F, W, F),
                  FAIL_WITH(BG_DOCTOR_HTTP_TOO_SLOW));
    /* scaled budgets, as the integration test runs them */
    expect_result(bg_doctor_http_result(false, true, 0, 400, 200, 400),
                  FAIL_WITH(BG_DOCTOR_HTTP_TOO_SLOW));
    expect_result(bg_doctor_http_result(true, false, 200, 250, 200, 400),
                  WARN_WITH(BG_DOCTOR_HTTP_SLOW));
    expect_result(bg_doctor_http_result(false, false, 0, 5, W, F),
                  FAIL_WITH(BG_DOCTOR_HTTP_NO_ANSWER));
    expect_result(bg_doctor_http_result(true, false, 500, 5, W, F), FAIL_WITH(BG_DOCTOR_HTTP_5XX));
    expect_result(bg_doctor_http_result(true, false, 503, 5, W, F), FAIL_WITH(BG_DOCTOR_HTTP_5XX));
    expect_result(bg_doctor_http_result(true, false, 0, 5, W, F), FAIL_WITH(BG_DOCTOR_HTTP_5XX));
    expect_result(bg_doctor_http_result(true, false, 401, 5, W, F),
                  WARN_WITH(BG_DOCTOR_HTTP_UNAUTHORIZED));
    expect_result(bg_doctor_http_result(true, false, 403, 5, W, F),
                  WARN_WITH(BG_DOCTOR_HTTP_UNAUTHORIZED));
    expect_result(bg_doctor_http_result(true, false, 404, 5, W, F), FAIL_WITH(BG_DOCTOR_HTTP_4XX));
    expect_result(bg_doctor_http_result(true, false, 415, 5, W, F), FAIL_WITH(BG_DOCTOR_HTTP_4XX));
    expect_result(bg_doctor_http_result(true, false, 301, 5, W, F),
                  FAIL_WITH(BG_DOCTOR_HTTP_REDIRECT));
    expect_result(bg_doctor_http_result(true, false, 101, 5, W, F),
                  FAIL_WITH(BG_DOCTOR_HTTP_REDIRECT));
    /* a refusal that took long: the slowness is the cause, the refusal a detail */
    expect_result(bg_doctor_http_result(true, false, 401, W + 1, W, F),
                  WARN_WITH(BG_DOCTOR_HTTP_UNAUTHORIZED));
}

static void
test_aadsts(void **state)
{
    (void)state;
    assert_int_equal(bg_doctor_aadsts(NULL), 0);
    assert_int_equal(bg_doctor_aadsts(""), 0);
    assert_int_equal(bg_doctor_aadsts("Invalid client secret provided."), 0);
    assert_int_equal(bg_doctor_aadsts("AADSTS: no number"), 0);
    assert_int_equal(bg_doctor_aadsts("AADSTS7000215: Invalid client secret provided."), 7000215);
    assert_int_equal(bg_doctor_aadsts("x AADSTS700016: Application with identifier ..."), 700016);
    /* at most 9 digits: no overflow on garbage */
    assert_int_equal(bg_doctor_aadsts("AADSTS12345678901234"), 123456789);
}

static void
test_aad(void **state)
{
    (void)state;
    expect_result(bg_doctor_aad_result(200, NULL, NULL, 0), PASSES);
    expect_result(bg_doctor_aad_result(0, NULL, NULL, 0), FAIL_WITH(BG_DOCTOR_AAD_UNREACHABLE));
    /* the AADSTS code, from error_codes or the description, wins over the OAuth error */
    expect_result(bg_doctor_aad_result(401, "invalid_client", NULL, 7000215),
                  FAIL_WITH(BG_DOCTOR_AAD_BAD_SECRET));
    expect_result(bg_doctor_aad_result(401, "invalid_client",
                                       "AADSTS7000215: Invalid client secret provided.", 0),
                  FAIL_WITH(BG_DOCTOR_AAD_BAD_SECRET));
    expect_result(
        bg_doctor_aad_result(401, "invalid_client",
                             "AADSTS7000222: The provided client secret keys are expired.", 0),
        FAIL_WITH(BG_DOCTOR_AAD_SECRET_EXPIRED));
    expect_result(
        bg_doctor_aad_result(400, "unauthorized_client", "AADSTS700016: Application ...", 0),
        FAIL_WITH(BG_DOCTOR_AAD_APP_NOT_FOUND));
    expect_result(bg_doctor_aad_result(400, "invalid_request", NULL, 90002),
                  FAIL_WITH(BG_DOCTOR_AAD_TENANT_NOT_FOUND));
    /* error_codes says which when it and the description disagree */
    expect_result(bg_doctor_aad_result(401, "invalid_client", "AADSTS7000215: ...", 7000222),
                  FAIL_WITH(BG_DOCTOR_AAD_SECRET_EXPIRED));
    /* an AADSTS code without a row: the OAuth error decides */
    expect_result(bg_doctor_aad_result(401, "invalid_client", "AADSTS1234: ...", 0),
                  FAIL_WITH(BG_DOCTOR_AAD_INVALID_CLIENT));
    expect_result(bg_doctor_aad_result(401, "invalid_client", NULL, 0),
                  FAIL_WITH(BG_DOCTOR_AAD_INVALID_CLIENT));
    expect_result(bg_doctor_aad_result(400, "unauthorized_client", NULL, 0),
                  FAIL_WITH(BG_DOCTOR_AAD_UNAUTHORIZED_CLIENT));
    expect_result(bg_doctor_aad_result(400, "invalid_request", "AADSTS900144: ...", 0),
                  FAIL_WITH(BG_DOCTOR_AAD_INVALID_REQUEST));
    expect_result(bg_doctor_aad_result(400, "invalid_scope", NULL, 0),
                  FAIL_WITH(BG_DOCTOR_AAD_INVALID_SCOPE));
    expect_result(bg_doctor_aad_result(503, "temporarily_unavailable", NULL, 0),
                  FAIL_WITH(BG_DOCTOR_AAD_OUTAGE));
    expect_result(bg_doctor_aad_result(400, "temporarily_unavailable", NULL, 0),
                  FAIL_WITH(BG_DOCTOR_AAD_OUTAGE));
    expect_result(bg_doctor_aad_result(500, "server_error", NULL, 0),
                  FAIL_WITH(BG_DOCTOR_AAD_OUTAGE));
    expect_result(bg_doctor_aad_result(502, NULL, NULL, 0), FAIL_WITH(BG_DOCTOR_AAD_OUTAGE));
    expect_result(bg_doctor_aad_result(400, "invalid_grant", NULL, 0),
                  FAIL_WITH(BG_DOCTOR_AAD_ERROR));
    expect_result(bg_doctor_aad_result(404, NULL, NULL, 0), FAIL_WITH(BG_DOCTOR_AAD_ERROR));
}

static void
test_redis(void **state)
{
    (void)state;
    bg_doctor_queue q = {.reachable = false};
    expect_result(bg_doctor_redis_result(&q), FAIL_WITH(BG_DOCTOR_REDIS_UNREACHABLE));
    q = (bg_doctor_queue){.reachable = true, .length = 5, .pending = 2, .oldest_pending_s = 3};
    expect_result(bg_doctor_redis_result(&q), PASSES);
    q.oldest_pending_s = BG_DOCTOR_PENDING_WARN_S;
    expect_result(bg_doctor_redis_result(&q), PASSES);
    q.oldest_pending_s = BG_DOCTOR_PENDING_WARN_S + 1;
    expect_result(bg_doctor_redis_result(&q), WARN_WITH(BG_DOCTOR_QUEUE_BACKLOG));
    /* backlog first, then dead letters, then failures */
    q.dead_letters = 1;
    q.recent_failures = 4;
    expect_result(bg_doctor_redis_result(&q), WARN_WITH(BG_DOCTOR_QUEUE_BACKLOG));
    q.pending = 0; /* an age without pending entries is no backlog */
    expect_result(bg_doctor_redis_result(&q), WARN_WITH(BG_DOCTOR_DEAD_LETTERS));
    q.dead_letters = 0;
    expect_result(bg_doctor_redis_result(&q), WARN_WITH(BG_DOCTOR_RECENT_FAILURES));
    q.recent_failures = 0;
    expect_result(bg_doctor_redis_result(&q), PASSES);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_causes_have_codes_and_sentences),
        cmocka_unit_test(test_verdict),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_tls_verify_codes),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_aadsts),
        cmocka_unit_test(test_aad),
        cmocka_unit_test(test_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
