/*
 * Entries outside redis.partitions' layout (README.md, "Scaling out"): a queue written under
 * one redis.partitions and read under another leaves acknowledged activities in streams no
 * dispatcher reads. botgate says so: an error line on every connection to Redis naming the
 * first such stream, its count, the total and what to do, and the gauge
 * botgate_queue_orphaned_entries on every scrape.
 *
 * a. redis.partitions 2 over entries in "<stream>:p3" (3) and "<stream>" itself (2), beside
 *    keys that must not count (the dead-letter stream, a hash at "<stream>:p7"): the error
 *    line once, the gauge 5, the queue's own length 0; without Redis the gauge is left out;
 *    after Redis restarts (AOF: the entries are still there) the line again, once more.
 * b. redis.partitions 1 with entries in "<stream>" only, and a hash at "<stream>:p2": the
 *    gauge 0, the length 3, no error line and no warning.
 *
 * A real redis-server (appendonly, so that a restart keeps the streams) and a real botgate
 * in the ingress role (no dispatcher: nothing is consumed under the test's eyes), scraped on
 * its admin listener.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "harness.h"

#define STREAM_A "layout:a"
#define STREAM_B "layout:b"
/* What the error line says of its stream, and what only that line says. */
#define STUCK "no dispatcher reads"

static bgt_env env;
static bgt_redis redis;
static bgt_botgate gate;

/* ---- helpers ---------------------------------------------------------------------------- */

static void
xadd(const char *stream, int n)
{
    for (int i = 0; i < n; i++) {
        redisReply *r = bgt_redis_cmd(&redis, "XADD %s * f v%d", stream, i);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        freeReplyObject(r);
    }
}

static void
redis_ok(redisReply *r)
{
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s", r->str);
    freeReplyObject(r);
}

/* Lines of the log at path containing needle. */
static int
count_lines(const char *path, const char *needle)
{
    char *text = bgt_read_file(path, NULL);
    int n = 0;
    for (char *p = text; p != NULL && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(text);
    return n;
}

/* Polls until the log holds want lines with needle (timeout_ms); fails otherwise. */
static void
wait_lines(const char *path, const char *needle, int want, int timeout_ms)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    int n;
    while ((n = count_lines(path, needle)) != want && bgt_mono_ms() < deadline)
        bgt_sleep_ms(50);
    if (n != want)
        fail_msg("%d log lines with \"%s\", not %d, after %d ms", n, needle, want, timeout_ms);
}

/* Scrapes until the sample name (no labels) equals want or timeout_ms passes; x keeps the
 * last scrape (the caller frees it). */
static void
scrape_until(const char *base, xpo *x, const char *name, double want, int timeout_ms)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    for (;;) {
        bgt_scrape(base, x);
        double got = x_get(x, name, NULL);
        if (got == want)
            return;
        if (bgt_mono_ms() > deadline)
            fail_msg("%s: %g, not %g, after %d ms", name, got, want, timeout_ms);
        x_free(x);
        bgt_sleep_ms(50);
    }
}

static void
assert_metric(const xpo *x, const char *name, double want)
{
    double got = x_get(x, name, NULL);
    if (got != want)
        fail_msg("%s: %g, not %g", name, got, want);
}

/* Starts gate (role ingress) on the stream with partitions, its admin listener's base URL
 * into admin_base. */
static void
start_gate(const char *name, const char *stream, int partitions, char *admin_base, size_t cap)
{
    char state_dir[BGT_PATH_MAX], redis_extra[128], admin[64], base[64], health[128];
    bgt_pathf(state_dir, sizeof(state_dir), env.dir, "state-%s", name);
    mkdir(state_dir, 0700);
    snprintf(redis_extra, sizeof(redis_extra), "  stream: \"%s\"\n  partitions: %d\n", stream,
             partitions);
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", bgt_free_port());
    snprintf(admin_base, cap, "http://%s", admin);
    bgt_botgate_conf c = {.plain_port = bgt_free_port(),
                          .redis_url = redis.url,
                          .redis_extra = redis_extra,
                          .state_dir = state_dir,
                          .admin = admin};
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", c.plain_port);
    bgt_botgate_role = "ingress";
    /* /readyz: 200 once Redis is connected, so the check was sent */
    assert_int_equal(bgt_botgate_start_conf(&gate, env.dir, name, &c,
                                            bgt_url(health, sizeof(health), base, "/readyz")),
                     0);
}

static int
teardown(void **state)
{
    (void)state;
    if (gate.pid != 0)
        bgt_botgate_kill(&gate);
    return 0;
}

/* ---- the cases ---------------------------------------------------------------------------- */

/* a. Entries left by other layouts, under redis.partitions 2. */
static void
test_orphans_reported(void **state)
{
    (void)state;
    xadd(STREAM_A ":p3", 3); /* a layout of 4 or more partitions */
    xadd(STREAM_A, 2);       /* a layout of one */
    xadd(STREAM_A ":dlq", 1);
    redis_ok(bgt_redis_cmd(&redis, "HSET %s f v", STREAM_A ":p7"));
    char admin_base[80];
    start_gate("a", STREAM_A, 2, admin_base, sizeof(admin_base));

    /* the first outside stream is redis.stream itself (2); 5 in all */
    const char *needles[] = {"error",
                             "queue:",
                             "stream " STREAM_A " holds 2 entries that " STUCK,
                             "5 in all outside the layout of redis.partitions 2",
                             "set redis.partitions back to the value those entries were written "
                             "with until they are delivered",
                             "Scaling out",
                             NULL};
    if (!bgt_log_has_line(gate.log, needles, 10000)) {
        bgt_dump_file(gate.log, 8000);
        fail_msg("no error line naming %s and the 5 entries outside the layout", STREAM_A);
    }

    xpo x;
    scrape_until(admin_base, &x, "botgate_queue_orphaned_entries", 5, 5000);
    assert_metric(&x, "botgate_queue_length", 0); /* p0 and p1: empty */
    assert_metric(&x, "botgate_redis_up", 1);
    x_free(&x);
    /* scrapes count, they do not log: still the one line of the one connection */
    bgt_scrape(admin_base, &x);
    assert_metric(&x, "botgate_queue_orphaned_entries", 5);
    x_free(&x);
    assert_int_equal(count_lines(gate.log, STUCK), 1);

    /* Redis gone: the gauge is left out, not a stale 5 */
    assert_int_equal(bgt_redis_stop(&redis), 0);
    long last;
    if (!bgt_poll_status(admin_base, "/readyz", NULL, 503, 5000, &last))
        fail_msg("/readyz answers %ld, not 503, with Redis down", last);
    bgt_scrape(admin_base, &x);
    assert_metric(&x, "botgate_redis_up", 0);
    assert_null(x_fam(&x, "botgate_queue_orphaned_entries"));
    x_free(&x);

    /* back, with its append-only file: a new connection, checked again */
    assert_int_equal(bgt_redis_restart(&redis), 0);
    scrape_until(admin_base, &x, "botgate_redis_reconnects_total", 1, 10000);
    x_free(&x);
    scrape_until(admin_base, &x, "botgate_queue_orphaned_entries", 5, 5000);
    x_free(&x);
    wait_lines(gate.log, STUCK, 2, 5000);

    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

/* b. One partition, entries in redis.stream only: nothing outside, nothing said. */
static void
test_no_orphans(void **state)
{
    (void)state;
    xadd(STREAM_B, 3);
    /* outside the layout of 1, but no stream: skipped, not an error */
    redis_ok(bgt_redis_cmd(&redis, "HSET %s f v", STREAM_B ":p2"));
    char admin_base[80];
    start_gate("b", STREAM_B, 1, admin_base, sizeof(admin_base));

    /* the check was sent at the connection, before any scrape's query on the same
     * connection: once a scrape has its answer, so has the check */
    xpo x;
    scrape_until(admin_base, &x, "botgate_queue_orphaned_entries", 0, 5000);
    assert_metric(&x, "botgate_queue_length", 3);
    assert_metric(&x, "botgate_redis_up", 1);
    x_free(&x);
    assert_int_equal(count_lines(gate.log, STUCK), 0);
    assert_int_equal(count_lines(gate.log, "outside the layout"), 0);
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_orphans_reported, teardown),
        cmocka_unit_test_teardown(test_no_orphans, teardown),
    };
    if (bgt_env_init(&env) != 0)
        return 1;
    int failed = 1;
    bgt_redis_opts opts = {.aof = true};
    if (bgt_redis_start(&redis, env.dir, "main", &opts) == 0)
        failed = cmocka_run_group_tests_name("layout", tests, NULL, NULL);
    bgt_redis_stop(&redis);
    return bgt_env_exit(&env, failed);
}
