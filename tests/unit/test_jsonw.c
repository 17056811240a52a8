/*
 * The log-line writer (policy/jsonw.c): every line it writes parses back (jansson) to the
 * members and values given, whatever the bytes, and a line that does not fit is cut into
 * a shorter valid line that says so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "botgate/jsonw.h"

/* Parses buf[0..len) as one line: a JSON object followed by exactly one "\n". */
static json_t *
parse_line(const char *buf, size_t len)
{
    assert_true(len >= 3);
    assert_int_equal(buf[len - 1], '\n');
    assert_int_equal(strlen(buf), len);
    json_error_t err;
    json_t *v = json_loadb(buf, len - 1, 0, &err);
    if (v == NULL)
        fail_msg("not JSON (%s): %s", err.text, buf);
    assert_true(json_is_object(v));
    return v;
}

static void
test_members_round_trip(void **state)
{
    (void)state;
    char buf[512];
    bg_jsonw w;
    bg_jsonw_begin(&w, buf, sizeof(buf));
    bg_jsonw_cstr(&w, "kind", "request");
    bg_jsonw_int(&w, "status", 202);
    bg_jsonw_int(&w, "neg", -9007199254740993LL);
    bg_jsonw_bool(&w, "hit", 1);
    bg_jsonw_bool(&w, "dup", 0);
    bg_jsonw_cstr(&w, "absent", NULL);
    bg_jsonw_str(&w, "absent2", NULL, 5);
    bg_jsonw_str(&w, "empty", "", 0);
    size_t len = bg_jsonw_end(&w);
    json_t *v = parse_line(buf, len);
    assert_int_equal(json_object_size(v), 6);
    assert_string_equal(json_string_value(json_object_get(v, "kind")), "request");
    assert_int_equal(json_integer_value(json_object_get(v, "status")), 202);
    assert_true(json_integer_value(json_object_get(v, "neg")) == -9007199254740993LL);
    assert_true(json_is_true(json_object_get(v, "hit")));
    assert_true(json_is_false(json_object_get(v, "dup")));
    assert_null(json_object_get(v, "absent"));
    assert_null(json_object_get(v, "absent2"));
    assert_null(json_object_get(v, "truncated"));
    assert_string_equal(json_string_value(json_object_get(v, "empty")), "");
    json_decref(v);
}

static void
test_empty_object(void **state)
{
    (void)state;
    char buf[64];
    bg_jsonw w;
    bg_jsonw_begin(&w, buf, sizeof(buf));
    assert_string_equal(buf, "{");
    size_t len = bg_jsonw_end(&w);
    assert_int_equal(len, 3);
    assert_string_equal(buf, "{}\n");
}

/* Escapes: quotes, backslashes and every control byte come back as the same bytes. */
static void
test_escapes(void **state)
{
    (void)state;
    char in[64];
    size_t n = 0;
    for (int c = 1; c < 0x20; c++)
        in[n++] = (char)c;
    in[n++] = '"';
    in[n++] = '\\';
    in[n++] = 0x7F;
    in[n++] = '/';
    char buf[512];
    bg_jsonw w;
    bg_jsonw_begin(&w, buf, sizeof(buf));
    bg_jsonw_str(&w, "s", in, n);
    size_t len = bg_jsonw_end(&w);
    assert_null(memchr(buf, '\n', len - 1)); /* one line: no raw newline inside */
    json_t *v = parse_line(buf, len);
    const char *s = json_string_value(json_object_get(v, "s"));
    assert_int_equal(json_string_length(json_object_get(v, "s")), n);
    assert_memory_equal(s, in, n);
    json_decref(v);
}

/* An embedded NUL byte is escaped, not an end of the string. */
static void
test_nul_byte(void **state)
{
    (void)state;
    char buf[128];
    bg_jsonw w;
    bg_jsonw_begin(&w, buf, sizeof(buf));
    bg_jsonw_str(&w, "s", "a\0b", 3);
    size_t len = bg_jsonw_end(&w);
    assert_non_null(strstr(buf, "a\\u0000b"));
    json_error_t err;
    json_t *v = json_loadb(buf, len - 1, JSON_ALLOW_NUL, &err);
    assert_non_null(v);
    assert_int_equal(json_string_length(json_object_get(v, "s")), 3);
    json_decref(v);
}

/* Valid UTF-8 passes through; anything else becomes U+FFFD, one per bad byte. */
static void
test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"h\xc3\xa9llo", "h\xc3\xa9llo"},         /* é */
        {"\xe2\x82\xac", "\xe2\x82\xac"},         /* € */
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"}, /* an emoji */
        {"a\xff"
         "b",
         "a\xef\xbf\xbd"
         "b"},                                                    /* not a lead byte */
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"x\xe2\x82", "x\xef\xbf\xbd\xef\xbf\xbd"},                               /* cut short */
        {"\x80", "\xef\xbf\xbd"}, /* a lone continuation */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[256];
        bg_jsonw w;
        bg_jsonw_begin(&w, buf, sizeof(buf));
        bg_jsonw_cstr(&w, "s", cases[i].in);
        size_t len = bg_jsonw_end(&w);
        json_t *v = parse_line(buf, len);
        const char *got = json_string_value(json_object_get(v, "s"));
        if (got == NULL || strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: got '%s'", i, got != NULL ? got : "(null)");
        json_decref(v);
    }
}

/* Every capacity from the least to more than needed: the line is valid JSON, fits the
 * buffer, says truncated exactly when something was cut, and what it keeps is a prefix
 * of what was given. */
static void
test_truncation_at_every_size(void **state)
{
    (void)state;
    char value[300];
    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = "ab\"\\\n\xc3\xa9"[i % 7];
    /* the 2-byte é must not be split: make the last character whole */
    size_t vlen = sizeof(value) - (sizeof(value) % 7 == 6 ? 1 : 0);
    for (size_t cap = 64; cap <= 1200; cap++) {
        char buf[1200];
        bg_jsonw w;
        bg_jsonw_begin(&w, buf, cap);
        bg_jsonw_cstr(&w, "first", "one");
        bg_jsonw_str(&w, "value", value, vlen);
        bg_jsonw_int(&w, "n", 1234567890123LL);
        size_t len = bg_jsonw_end(&w);
        assert_true(len < cap);
        json_t *v = parse_line(buf, len);
        int truncated = json_is_true(json_object_get(v, "truncated"));
        json_t *got = json_object_get(v, "value");
        int whole =
            got != NULL && json_string_length(got) == vlen && json_object_get(v, "n") != NULL;
        if (truncated == whole)
            fail_msg("cap %zu: truncated=%d but whole=%d: %s", cap, truncated, whole, buf);
        if (got != NULL)
            assert_memory_equal(json_string_value(got), value, json_string_length(got));
        json_decref(v);
    }
}

static void
test_time(void **state)
{
    (void)state;
    char t[28];
    bg_jsonw_time(t, 1795761348123456LL);
    assert_string_equal(t, "2026-11-27T06:35:48.123456Z");
    bg_jsonw_time(t, 0);
    assert_string_equal(t, "1970-01-01T00:00:00.000000Z");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members_round_trip),
        cmocka_unit_test(test_empty_object),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_truncation_at_every_size),
        cmocka_unit_test(test_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
