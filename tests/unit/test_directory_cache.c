/*
 * The directory-write cache (policy/directory_cache.c): a write is skipped only for the
 * same four fields noted less than the refresh interval before; any change of a field, the
 * interval passing, or another entry taking the slot brings the write back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "botgate/directory_cache.h"

#define URL "https://smba.trafficmanager.net/teams/"
#define HOUR (3600 * 1000LL)

static void
test_fresh_within_interval_only(void **state)
{
    (void)state;
    bg_directory_cache *c = bg_directory_cache_new(1024);
    assert_non_null(c);
    assert_false(bg_directory_cache_fresh(c, "a:1", URL, "msteams", "t", 1000, HOUR));
    bg_directory_cache_note(c, "a:1", URL, "msteams", "t", 1000);
    assert_true(bg_directory_cache_fresh(c, "a:1", URL, "msteams", "t", 1000, HOUR));
    assert_true(bg_directory_cache_fresh(c, "a:1", URL, "msteams", "t", 1000 + HOUR - 1, HOUR));
    assert_false(bg_directory_cache_fresh(c, "a:1", URL, "msteams", "t", 1000 + HOUR, HOUR));
    /* a clock that went back: written again rather than trusted */
    assert_false(bg_directory_cache_fresh(c, "a:1", URL, "msteams", "t", 999, HOUR));
    bg_directory_cache_free(c);
}

/* Each field is part of the identity: a new serviceUrl (the Connector moved the
 * conversation to another region) is written at once. */
static void
test_any_field_change_writes(void **state)
{
    (void)state;
    bg_directory_cache *c = bg_directory_cache_new(1024);
    bg_directory_cache_note(c, "a:1", URL, "msteams", "t", 0);
    assert_false(bg_directory_cache_fresh(c, "a:2", URL, "msteams", "t", 1, HOUR));
    assert_false(bg_directory_cache_fresh(c, "a:1", URL "x", "msteams", "t", 1, HOUR));
    assert_false(bg_directory_cache_fresh(c, "a:1", URL, "webchat", "t", 1, HOUR));
    assert_false(bg_directory_cache_fresh(c, "a:1", URL, "msteams", "u", 1, HOUR));
    assert_false(bg_directory_cache_fresh(c, "a:1", URL, "msteams", NULL, 1, HOUR));
    /* field boundaries count: ("a:1", "x...") is not ("a:1x", "...") */
    bg_directory_cache_note(c, "ab", "c", "d", "", 0);
    assert_false(bg_directory_cache_fresh(c, "a", "bc", "d", "", 1, HOUR));
    /* NULL tenant and "" are the same entry */
    assert_true(bg_directory_cache_fresh(c, "ab", "c", "d", NULL, 1, HOUR));
    bg_directory_cache_free(c);
}

/* A full table forgets: with one slot, the second entry evicts the first, which is then
 * written again. */
static void
test_eviction_forgets(void **state)
{
    (void)state;
    bg_directory_cache *c = bg_directory_cache_new(1);
    bg_directory_cache_note(c, "a:1", URL, "msteams", "t", 0);
    bg_directory_cache_note(c, "a:2", URL, "msteams", "t", 0);
    assert_false(bg_directory_cache_fresh(c, "a:1", URL, "msteams", "t", 1, HOUR));
    assert_true(bg_directory_cache_fresh(c, "a:2", URL, "msteams", "t", 1, HOUR));
    bg_directory_cache_free(c);
    /* many conversations in a large table: each one noted is found */
    c = bg_directory_cache_new(1 << 16);
    int found = 0;
    for (int i = 0; i < 1000; i++) {
        char conv[32];
        snprintf(conv, sizeof(conv), "a:%d", i);
        bg_directory_cache_note(c, conv, URL, "msteams", "t", 0);
    }
    for (int i = 0; i < 1000; i++) {
        char conv[32];
        snprintf(conv, sizeof(conv), "a:%d", i);
        found += bg_directory_cache_fresh(c, conv, URL, "msteams", "t", 1, HOUR);
    }
    assert_true(found >= 990); /* a few may share a slot in 65536 */
    bg_directory_cache_free(c);
}

static void
test_refresh_interval(void **state)
{
    (void)state;
    assert_int_equal(bg_directory_refresh_ms(7776000), HOUR); /* the default TTL: an hour */
    assert_int_equal(bg_directory_refresh_ms(60), 2500);      /* the least TTL: 2.5 s */
    assert_int_equal(bg_directory_refresh_ms(86400), HOUR);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_within_interval_only),
        cmocka_unit_test(test_any_field_change_writes),
        cmocka_unit_test(test_eviction_forgets),
        cmocka_unit_test(test_refresh_interval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
