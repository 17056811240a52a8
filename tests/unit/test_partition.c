/*
 * Partitions of the queue (policy/partition.c): the hash is FNV-1a 64 exactly (the README
 * documents it for bots that consume the streams themselves), a conversation always lands
 * in the same partition within range, the stream names are the documented ones, and the
 * streams outside a layout are exactly the names no partition of it has.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "botgate/partition.h"

/* The reference vectors of FNV-1a 64 (Fowler, Noll, Vo). */
static void
test_fnv1a64_vectors(void **state)
{
    (void)state;
    assert_true(bg_fnv1a64("", 0) == 0xcbf29ce484222325ULL);
    assert_true(bg_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(bg_fnv1a64("foobar", 6) == 0x85944171f73967e8ULL);
}

static void
test_partition_of(void **state)
{
    (void)state;
    const char *conv = "19:meeting_abc@thread.v2";
    /* one partition, or no conversation id: partition 0 */
    assert_int_equal(bg_partition_of(conv, strlen(conv), 1), 0);
    assert_int_equal(bg_partition_of(NULL, 0, 16), 0);
    /* the hash modulo the count, the same every time */
    assert_int_equal(bg_partition_of(conv, strlen(conv), 16),
                     (unsigned)(bg_fnv1a64(conv, strlen(conv)) % 16));
    assert_int_equal(bg_partition_of("foobar", 6, 1000), (unsigned)(0x85944171f73967e8ULL % 1000));
    /* in range, and spread: 1000 conversations touch every one of 16 partitions */
    int seen[16] = {0};
    for (int i = 0; i < 1000; i++) {
        char id[32];
        int n = snprintf(id, sizeof(id), "a:conv-%d", i);
        unsigned k = bg_partition_of(id, (size_t)n, 16);
        assert_true(k < 16);
        seen[k]++;
    }
    for (int k = 0; k < 16; k++)
        assert_true(seen[k] > 0);
    /* bytes, not C strings: an id with a NUL inside is hashed whole */
    assert_true(bg_fnv1a64("a\0b", 3) != bg_fnv1a64("a", 1));
}

static void
test_partition_stream(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(bg_partition_stream(out, sizeof(out), "botgate:activities", 1, 0), 18);
    assert_string_equal(out, "botgate:activities");
    assert_int_equal(bg_partition_stream(out, sizeof(out), "botgate:activities", 16, 15), 22);
    assert_string_equal(out, "botgate:activities:p15");
    /* too small: refused, never cut */
    assert_int_equal(bg_partition_stream(out, 10, "botgate:activities", 16, 3), -1);
}

/* Whether name is one of the streams of the layout of partitions, by bg_partition_stream. */
static int
in_layout(const char *name, int partitions)
{
    for (int j = 0; j < partitions; j++) {
        char s[64];
        bg_partition_stream(s, sizeof(s), "q", partitions, (unsigned)j);
        if (strcmp(s, name) == 0)
            return 1;
    }
    return 0;
}

/* The streams outside a layout, at the edges: one partition (the base stream is the
 * layout, every :p<k> is outside), two, and the most (only the base stream is outside). */
static void
test_partition_outside_edges(void **state)
{
    (void)state;
    bg_partition_outside o = bg_partition_outside_of(1);
    assert_int_equal(o.base, 0);
    assert_int_equal(o.first, 0);
    o = bg_partition_outside_of(2);
    assert_int_equal(o.base, 1);
    assert_int_equal(o.first, 2);
    o = bg_partition_outside_of(16);
    assert_int_equal(o.base, 1);
    assert_int_equal(o.first, 16);
    o = bg_partition_outside_of(BG_PARTITIONS_MAX);
    assert_int_equal(o.base, 1);
    assert_int_equal(o.first, BG_PARTITIONS_MAX);
    /* outside the configuration's range: taken as its nearest end */
    o = bg_partition_outside_of(0);
    assert_int_equal(o.base, 0);
    assert_int_equal(o.first, 0);
    o = bg_partition_outside_of(BG_PARTITIONS_MAX + 1);
    assert_int_equal(o.base, 1);
    assert_int_equal(o.first, BG_PARTITIONS_MAX);
}

/* The rule against the names themselves: every name a valid configuration can write
 * ("q", "q:p0" … "q:p1023") is outside exactly when no partition of the layout is that
 * stream. */
static void
test_partition_outside_names(void **state)
{
    (void)state;
    const int counts[] = {1, 2, 3, 16, 1023, BG_PARTITIONS_MAX};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        int n = counts[i];
        bg_partition_outside o = bg_partition_outside_of(n);
        assert_int_equal(o.base, !in_layout("q", n));
        for (unsigned k = 0; k < BG_PARTITIONS_MAX; k++) {
            char name[32];
            snprintf(name, sizeof(name), "q:p%u", k);
            assert_int_equal(k >= o.first, !in_layout(name, n));
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fnv1a64_vectors),
        cmocka_unit_test(test_partition_of),
        cmocka_unit_test(test_partition_stream),
        cmocka_unit_test(test_partition_outside_edges),
        cmocka_unit_test(test_partition_outside_names),
    };
    return cmocka_run_group_tests_name("partition", tests, NULL, NULL);
}
