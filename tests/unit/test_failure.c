/*
 * The failure classifier (policy/failure.c): every curl error number and every status
 * class lands in the documented class, and only 2xx is not a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <string.h>

#include "botgate/failure.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void
expect_class(int code, long status, int64_t connect_us, const char *want)
{
    const char *got = bg_failure_class(code, status, connect_us);
    if (want == NULL) {
        if (got != NULL)
            fail_msg("curl %d, status %ld: '%s', want no failure", code, status, got);
        return;
    }
    if (got == NULL || strcmp(got, want) != 0)
        fail_msg("curl %d, status %ld, connect %lld: '%s', want '%s'", code, status,
                 (long long)connect_us, got != NULL ? got : "(null)", want);
}

static const struct {
    CURLcode code;
    const char *cls;
} named[] = {
    {CURLE_COULDNT_CONNECT, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_RECV_ERROR, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_SEND_ERROR, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_GOT_NOTHING, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_PARTIAL_FILE, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_WEIRD_SERVER_REPLY, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_HTTP2, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_HTTP2_STREAM, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_FILESIZE_EXCEEDED, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_OUT_OF_MEMORY, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_URL_MALFORMAT, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_UNSUPPORTED_PROTOCOL, BG_FAILURE_CONNECT_REFUSED},
    {CURLE_COULDNT_RESOLVE_HOST, BG_FAILURE_DNS},
    {CURLE_COULDNT_RESOLVE_PROXY, BG_FAILURE_DNS},
    {CURLE_SSL_CONNECT_ERROR, BG_FAILURE_TLS},
    {CURLE_SSL_ENGINE_NOTFOUND, BG_FAILURE_TLS},
    {CURLE_SSL_ENGINE_SETFAILED, BG_FAILURE_TLS},
    {CURLE_SSL_CERTPROBLEM, BG_FAILURE_TLS},
    {CURLE_SSL_CIPHER, BG_FAILURE_TLS},
    {CURLE_PEER_FAILED_VERIFICATION, BG_FAILURE_TLS},
    {CURLE_USE_SSL_FAILED, BG_FAILURE_TLS},
    {CURLE_SSL_ENGINE_INITFAILED, BG_FAILURE_TLS},
    {CURLE_SSL_CACERT_BADFILE, BG_FAILURE_TLS},
    {CURLE_SSL_SHUTDOWN_FAILED, BG_FAILURE_TLS},
    {CURLE_SSL_CRL_BADFILE, BG_FAILURE_TLS},
    {CURLE_SSL_ISSUER_ERROR, BG_FAILURE_TLS},
    {CURLE_SSL_PINNEDPUBKEYNOTMATCH, BG_FAILURE_TLS},
    {CURLE_SSL_INVALIDCERTSTATUS, BG_FAILURE_TLS},
    {CURLE_SSL_CLIENTCERT, BG_FAILURE_TLS},
};

static void
test_named_curl_codes(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(named); i++) {
        /* the connect time does not matter for these, nor a stray status */
        expect_class(named[i].code, 0, 0, named[i].cls);
        expect_class(named[i].code, 0, 1500, named[i].cls);
        expect_class(named[i].code, 200, 1500, named[i].cls);
    }
}

static void
test_timeouts_split_on_the_connection(void **state)
{
    (void)state;
    expect_class(CURLE_OPERATION_TIMEDOUT, 0, 0, BG_FAILURE_CONNECT_TIMEOUT);
    expect_class(CURLE_OPERATION_TIMEDOUT, 0, -1, BG_FAILURE_CONNECT_TIMEOUT);
    expect_class(CURLE_OPERATION_TIMEDOUT, 0, 1, BG_FAILURE_TIMEOUT);
    expect_class(CURLE_OPERATION_TIMEDOUT, 0, 250000, BG_FAILURE_TIMEOUT);
}

/* Every error number curl has: a class, never "not a failure", and the named ones as
 * above; every other one connect_refused. */
static void
test_every_curl_code_has_a_class(void **state)
{
    (void)state;
    for (int code = 1; code < CURL_LAST; code++) {
        const char *want = BG_FAILURE_CONNECT_REFUSED;
        for (size_t i = 0; i < N(named); i++)
            if ((int)named[i].code == code)
                want = named[i].cls;
        if (code == CURLE_OPERATION_TIMEDOUT)
            want = BG_FAILURE_TIMEOUT;
        expect_class(code, 0, 1000, want);
        const char *got = bg_failure_class(code, 0, 0);
        assert_non_null(got);
        assert_true(bg_failure_class_valid(got));
    }
    /* beyond curl's list (a newer libcurl): still a failure */
    expect_class(CURL_LAST + 7, 0, 0, BG_FAILURE_CONNECT_REFUSED);
}

static void
test_status_classes(void **state)
{
    (void)state;
    static const struct {
        long status;
        const char *cls;
    } cases[] = {
        {200, NULL},
        {201, NULL},
        {202, NULL},
        {204, NULL},
        {299, NULL},
        {400, BG_FAILURE_HTTP_4XX},
        {401, BG_FAILURE_HTTP_4XX},
        {403, BG_FAILURE_HTTP_4XX},
        {404, BG_FAILURE_HTTP_4XX},
        {408, BG_FAILURE_HTTP_4XX},
        {429, BG_FAILURE_HTTP_4XX},
        {499, BG_FAILURE_HTTP_4XX},
        {500, BG_FAILURE_HTTP_5XX},
        {502, BG_FAILURE_HTTP_5XX},
        {503, BG_FAILURE_HTTP_5XX},
        {504, BG_FAILURE_HTTP_5XX},
        {599, BG_FAILURE_HTTP_5XX},
        /* never an acceptance: counted with the refusals */
        {100, BG_FAILURE_HTTP_4XX},
        {199, BG_FAILURE_HTTP_4XX},
        {300, BG_FAILURE_HTTP_4XX},
        {301, BG_FAILURE_HTTP_4XX},
        {302, BG_FAILURE_HTTP_4XX},
        {399, BG_FAILURE_HTTP_4XX},
        /* not HTTP at all: a broken server */
        {0, BG_FAILURE_HTTP_5XX},
        {-1, BG_FAILURE_HTTP_5XX},
        {600, BG_FAILURE_HTTP_5XX},
        {999, BG_FAILURE_HTTP_5XX},
    };
    for (size_t i = 0; i < N(cases); i++) {
        expect_class(CURLE_OK, cases[i].status, 1200, cases[i].cls);
        expect_class(CURLE_OK, cases[i].status, 0, cases[i].cls);
    }
    for (long s = 100; s < 1000; s++) {
        const char *want = s >= 200 && s <= 299   ? NULL
                           : s >= 500 && s <= 599 ? BG_FAILURE_HTTP_5XX
                           : s >= 600             ? BG_FAILURE_HTTP_5XX
                                                  : BG_FAILURE_HTTP_4XX;
        expect_class(CURLE_OK, s, 1000, want);
    }
}

static void
test_class_list(void **state)
{
    (void)state;
    static const char *const want[] = {
        "connect_refused", "connect_timeout",        "dns",  "tls", "timeout", "http_5xx",
        "http_4xx",        "token_expired_in_queue", "redis"};
    size_t n = 0;
    while (bg_failure_classes[n] != NULL)
        n++;
    assert_int_equal(n, N(want));
    for (size_t i = 0; i < N(want); i++) {
        assert_string_equal(bg_failure_classes[i], want[i]);
        assert_true(bg_failure_class_valid(want[i]));
    }
    assert_false(bg_failure_class_valid(NULL));
    assert_false(bg_failure_class_valid(""));
    assert_false(bg_failure_class_valid("http_3xx"));
    assert_false(bg_failure_class_valid("HTTP_5XX"));
    assert_false(bg_failure_class_valid("redis "));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_named_curl_codes),
        cmocka_unit_test(test_timeouts_split_on_the_connection),
        cmocka_unit_test(test_every_curl_code_has_a_class),
        cmocka_unit_test(test_status_classes),
        cmocka_unit_test(test_class_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
