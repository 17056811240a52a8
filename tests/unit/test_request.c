#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "botgate/error.h"
#include "botgate/request.h"

#define S(x) x, strlen(x)

static void
test_json_media_type(void **state)
{
    (void)state;
    assert_true(bg_request_is_json(S("application/json")));
    assert_true(bg_request_is_json(S("Application/JSON")));
    assert_true(bg_request_is_json(S("application/json; charset=utf-8")));
    assert_true(bg_request_is_json(S("application/json ;charset=utf-8")));
    assert_true(bg_request_is_json(S(" application/json")));
    assert_false(bg_request_is_json(S("")));
    assert_false(bg_request_is_json(S("text/plain")));
    assert_false(bg_request_is_json(S("application/jsonx")));
    assert_false(bg_request_is_json(S("application/json-patch+json")));
    assert_false(bg_request_is_json(S("application/jso")));
}

static void
test_bearer(void **state)
{
    (void)state;
    const char *tok;
    size_t n;
    assert_int_equal(bg_request_bearer(S("Bearer abc.def.ghi"), &tok, &n), 0);
    assert_int_equal(n, 11);
    assert_memory_equal(tok, "abc.def.ghi", 11);
    assert_int_equal(bg_request_bearer(S("Bearer "), &tok, &n), BG_EAUTH_MALFORMED);
    assert_int_equal(bg_request_bearer(S("Bearer"), &tok, &n), BG_EAUTH_MALFORMED);
    assert_int_equal(bg_request_bearer(S("Bearer  abc"), &tok, &n), BG_EAUTH_MALFORMED);
    assert_int_equal(bg_request_bearer(S("Bearer abc def"), &tok, &n), BG_EAUTH_MALFORMED);
    assert_int_equal(bg_request_bearer(S("Bearer abc\t"), &tok, &n), BG_EAUTH_MALFORMED);
    assert_int_equal(bg_request_bearer(S("bearer abc"), &tok, &n), BG_EAUTH_MALFORMED);
    assert_int_equal(bg_request_bearer(S("Basic abc"), &tok, &n), BG_EAUTH_MALFORMED);
    assert_int_equal(bg_request_bearer(S(""), &tok, &n), BG_EAUTH_MALFORMED);
}

static void
test_request_id(void **state)
{
    (void)state;
    assert_true(bg_request_id_is_valid(S("abc-DEF_1.2")));
    assert_false(bg_request_id_is_valid(S("")));
    assert_false(bg_request_id_is_valid(S("a b")));
    assert_false(bg_request_id_is_valid(S("a\"b")));
    char long_id[66];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    assert_false(bg_request_id_is_valid(S(long_id)));
    long_id[64] = '\0';
    assert_true(bg_request_id_is_valid(S(long_id)));
}

static void
test_error_table(void **state)
{
    (void)state;
    assert_int_equal(bg_error_status(BG_EBODY_TOO_LARGE), 413);
    assert_string_equal(bg_error_code(BG_EBODY_TOO_LARGE), "body_too_large");
    assert_int_equal(bg_error_status(BG_EMEDIA_TYPE), 415);
    assert_int_equal(bg_error_status(BG_EJSON), 400);
    assert_int_equal(bg_error_status(BG_EAUTH_MISSING), 401);
    assert_int_equal(bg_error_status(BG_EREDIS_DOWN), 503);
    assert_string_equal(bg_error_code(12345), "unknown_error");
    assert_int_equal(bg_error_status(12345), 500);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_media_type),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_request_id),
        cmocka_unit_test(test_error_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
