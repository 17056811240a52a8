/*
 * Partitions of the queue (policy/partition.c): the hash is FNV-1a 64 exactly (the README
 * documents it for bots that consume the streams themselves), a conversation always lands
 * in the same partition within range, and the stream names are the documented ones.
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fnv1a64_vectors),
        cmocka_unit_test(test_partition_of),
        cmocka_unit_test(test_partition_stream),
    };
    return cmocka_run_group_tests_name("partition", tests, NULL, NULL);
}
