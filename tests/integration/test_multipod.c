/*
 * Many pods on one Redis (issue #7, item 3): three botgate processes (role all, one port
 * each) share one Redis and one queue split into 16 partitions (redis.partitions), each
 * delivered by the one botgate that holds its lease. A bot (tests/tools/slow_bot, 0-10 ms
 * at random) records what arrives.
 *
 * MULTIPOD_COUNT activities (default 10,000) over 200 conversations are sent round-robin to
 * the three, by 4 client threads that each own 50 conversations and send each
 * conversation's activities one after another, in bursts of 5 (so the stream order of a
 * conversation is its sequence, and a conversation often has several entries queued). When half are
 * sent, one botgate is killed with SIGKILL; the clients send to the two others from then on,
 * re-sending (same activity id) what got no answer, as the Connector would. Then:
 *
 *   - every activity arrives at the bot and is answered (at least once: 0 lost);
 *   - in each conversation, the first arrivals are in sequence order: a re-delivery (an
 *     activity arriving again, the one the killed botgate had in flight) is the only thing
 *     allowed out of line, and those are counted and printed;
 *   - before the kill, the leases were spread over all three;
 *   - a botgate stopped with SIGTERM hands its leases over as it exits, and the last one
 *     left ends up with every partition.
 *
 * The longest stall of a conversation across the kill (last arrival before it → first
 * after it) is printed: the fail-over time, about bot.claim_idle_s (the lease, 2 s here).
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

#include "botgate/partition.h"
#include "harness.h"

#define STREAM "multipod:activities"
#define PODS 3
#define CONVERSATIONS 200
#define THREADS 4
#define PARTITIONS 16
#define BURST 5
/* refused once by the bot (400: dead-lettered), replayed at the end, then accepted */
#define DEAD_ID "mp-007-000003"

static bgt_env env;
static bgt_redis redis;
static bgt_botgate gates[PODS];
static char bases[PODS][64];
static volatile int dead_pod = -1; /* set once that pod was killed */
static char bot_dir[BGT_PATH_MAX];
static int bot_port;
static long total;                   /* activities to send */
static volatile long sent;           /* answered 202 */
static volatile long transport_errs; /* re-sent elsewhere */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- the clients ----------------------------------------------------------------------- */

struct client {
    int index;
    long failures; /* answers other than 202 after every retry: reported by main */
};

/* POSTs one activity, to gate `pod` first, then to the others, until one answers 202. */
static int
post_until_acked(int pod, const char *id, const char *conv)
{
    const char *headers[] = {"Content-Type: application/json", NULL};
    char *body = bgt_teams_message(id, conv, BGT_CONNECTOR_SERVICE_URL, 400);
    int ok = 0;
    for (int attempt = 0; attempt < 60 && !ok; attempt++) {
        int p = (pod + attempt) % PODS;
        if (p == dead_pod)
            continue;
        char url[128];
        bgt_url(url, sizeof(url), bases[p], "/api/messages");
        bgt_http_resp resp;
        bgt_http_post(url, BGT_HTTP_1_1, NULL, headers, body, strlen(body), &resp);
        ok = resp.status == 202;
        if (resp.status == 0) {
            pthread_mutex_lock(&mu);
            transport_errs++;
            pthread_mutex_unlock(&mu);
        }
        bgt_http_resp_free(&resp);
        if (!ok && resp.status != 0)
            bgt_sleep_ms(50); /* a 503: the Connector would retry too */
    }
    free(body);
    return ok;
}

/*
 * Each conversation gets its activities in bursts of BURST, back to back, each to the next
 * botgate: so a conversation has several entries queued at once, which a design that let
 * two dispatchers read one conversation would deliver side by side (and the bot's random
 * delay would reorder).
 */
static void *
client_main(void *arg)
{
    struct client *c = arg;
    long per_conv = total / CONVERSATIONS;
    long n = 0;
    for (long round = 0; round * BURST < per_conv; round++) {
        for (int k = c->index; k < CONVERSATIONS; k += THREADS) {
            for (long seq = round * BURST; seq < (round + 1) * BURST && seq < per_conv; seq++) {
                char id[48], conv[32];
                snprintf(conv, sizeof(conv), "mp-conv-%03d", k);
                snprintf(id, sizeof(id), "mp-%03d-%06ld", k, seq);
                if (!post_until_acked((int)(n++ % PODS), id, conv))
                    c->failures++;
                pthread_mutex_lock(&mu);
                sent++;
                pthread_mutex_unlock(&mu);
            }
        }
    }
    return NULL;
}

/* ---- the gates ------------------------------------------------------------------------ */

static void
start_pod(int i)
{
    char name[16], state_dir[BGT_PATH_MAX], health[128], bot_url[128], extra[1024];
    snprintf(name, sizeof(name), "pod%d", i);
    bgt_pathf(state_dir, sizeof(state_dir), env.dir, "state-%s", name);
    mkdir(state_dir, 0700);
    bgt_bot_url(bot_url, sizeof(bot_url), bot_port, NULL);
    snprintf(extra, sizeof(extra),
             "bot:\n  url: \"%s\"\n  concurrency: 16\n  backoff_initial_ms: 100\n"
             "  backoff_max_ms: 1000\n  claim_idle_s: 2\n  consumer_suffix: \"-%s\"\n",
             bot_url, name);
    bgt_botgate_conf c = {.plain_port = bgt_free_port(),
                          .redis_url = redis.url,
                          .state_dir = state_dir,
                          .log_level = "info",
                          .redis_extra = "  stream: \"" STREAM "\"\n  partitions: 16\n",
                          .extra = extra};
    snprintf(bases[i], sizeof(bases[i]), "http://127.0.0.1:%d", c.plain_port);
    snprintf(health, sizeof(health), "%s/readyz", bases[i]);
    assert_int_equal(bgt_botgate_start_conf(&gates[i], env.dir, name, &c, health), 0);
}

/* How many distinct consumers hold the partitions' leases now; *of_pod counts the leases
 * held by the consumer whose name ends in suffix (may be NULL). */
static int
lease_owners_ex(const char *suffix, int *of_pod)
{
    char owners[PARTITIONS][64];
    int n = 0;
    if (of_pod != NULL)
        *of_pod = 0;
    for (int k = 0; k < PARTITIONS; k++) {
        redisReply *r = bgt_redis_cmd(&redis, "GET " STREAM ":lease:%d", k);
        if (r != NULL && r->type == REDIS_REPLY_STRING) {
            int seen = 0;
            for (int j = 0; j < n; j++)
                seen |= strcmp(owners[j], r->str) == 0;
            if (!seen)
                snprintf(owners[n++], sizeof(owners[0]), "%s", r->str);
            size_t len = strlen(r->str);
            if (suffix != NULL && of_pod != NULL && len >= strlen(suffix) &&
                strcmp(r->str + len - strlen(suffix), suffix) == 0)
                (*of_pod)++;
        }
        if (r != NULL)
            freeReplyObject(r);
    }
    return n;
}

static int
lease_owners(void)
{
    return lease_owners_ex(NULL, NULL);
}

/* ---- the checks ---------------------------------------------------------------------- */

/* "mp-<conv>-<seq>" → conv, seq; -1 when not one of ours. */
static int
parse_id(const char *id, int *conv, long *seq)
{
    return id != NULL && sscanf(id, "mp-%d-%ld", conv, seq) == 2 && *conv >= 0 &&
                   *conv < CONVERSATIONS
               ? 0
               : -1;
}

static void
test_three_pods_one_redis(void **state)
{
    (void)state;
    const char *count = getenv("MULTIPOD_COUNT");
    total = count != NULL ? atol(count) : 10000;
    total -= total % CONVERSATIONS;
    assert_true(total >= CONVERSATIONS);
    long per_conv = total / CONVERSATIONS;

    assert_int_equal(bgt_bot_start_named(bot_dir, env.dir, "multipod", &bot_port), 0);
    assert_int_equal(bgt_bot_set_delay_random(bot_dir, 0, 10), 0);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, DEAD_ID, "400\n200\n"), 0);
    for (int i = 0; i < PODS; i++)
        start_pod(i);
    /* the three share the partitions out before the load */
    int64_t deadline = bgt_mono_ms() + 20000;
    while (lease_owners() < PODS) {
        if (bgt_mono_ms() > deadline)
            fail_msg("the partitions' leases were not spread over the %d botgates", PODS);
        bgt_sleep_ms(100);
    }

    pthread_t threads[THREADS];
    struct client clients[THREADS];
    int64_t t0 = bgt_mono_ms();
    for (int i = 0; i < THREADS; i++) {
        clients[i] = (struct client){.index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, client_main, &clients[i]), 0);
    }
    while (sent < total / 2)
        bgt_sleep_ms(10);
    int64_t kill_us = bgt_wall_us();
    dead_pod = 1;
    bgt_botgate_kill(&gates[1]); /* SIGKILL */
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    int64_t t_sent = bgt_mono_ms();
    long failures = 0;
    for (int i = 0; i < THREADS; i++)
        failures += clients[i].failures;
    assert_int_equal(failures, 0);

    /* every activity answered by the bot, at least once */
    bgt_bot_request *v = NULL;
    size_t n = 0;
    char *delivered = calloc((size_t)total, 1);
    long distinct = 0;
    deadline = bgt_mono_ms() + 180000;
    for (size_t seen = 0;;) {
        bgt_bot_requests_free(v, n);
        assert_int_equal(bgt_bot_received(bot_dir, &v, &n), 0);
        for (size_t i = seen; i < n; i++) {
            int conv;
            long seq;
            if (strcmp(v[i].outcome, "answered") != 0 ||
                parse_id(v[i].activity_id, &conv, &seq) != 0 || seq >= per_conv)
                continue;
            long slot = conv * per_conv + seq;
            if (!delivered[slot]) {
                delivered[slot] = 1;
                distinct++;
            }
        }
        /* a request still pending has no outcome yet: look at it again next time */
        while (seen < n && v[seen].outcome[0] != '\0')
            seen++;
        if (distinct == total)
            break;
        if (bgt_mono_ms() > deadline)
            fail_msg("%ld of %ld activities reached the bot within 180 s", distinct, total);
        bgt_sleep_ms(200);
    }
    int64_t t_done = bgt_mono_ms();

    /* order: first arrivals in sequence; repeats counted; the stall across the kill */
    long *next = calloc(CONVERSATIONS, sizeof(long));
    int64_t *last_before = calloc(CONVERSATIONS, sizeof(int64_t));
    int64_t *first_after = calloc(CONVERSATIONS, sizeof(int64_t));
    memset(delivered, 0, (size_t)total);
    long redeliveries = 0, out_of_order = 0;
    for (size_t i = 0; i < n; i++) {
        int conv;
        long seq;
        if (parse_id(v[i].activity_id, &conv, &seq) != 0 || seq >= per_conv)
            continue;
        if (v[i].t_us < kill_us)
            last_before[conv] = v[i].t_us;
        else if (first_after[conv] == 0)
            first_after[conv] = v[i].t_us;
        long slot = conv * per_conv + seq;
        if (delivered[slot]) {
            if (redeliveries++ < 20)
                fprintf(stderr, "multipod: re-delivery of %s (attempt %d)\n", v[i].activity_id,
                        v[i].attempt);
            continue;
        }
        delivered[slot] = 1;
        if (seq != next[conv]) {
            if (out_of_order++ < 20)
                fprintf(stderr, "multipod: OUT OF ORDER: %s arrived, expected seq %ld\n",
                        v[i].activity_id, next[conv]);
        }
        next[conv] = seq + 1;
    }
    int64_t stall_us = 0;
    for (int c = 0; c < CONVERSATIONS; c++)
        if (last_before[c] != 0 && first_after[c] != 0 &&
            first_after[c] - last_before[c] > stall_us)
            stall_us = first_after[c] - last_before[c];
    fprintf(stderr,
            "multipod: %ld activities, %d conversations, %d botgates (one killed with -9 after "
            "%ld sent), %d partitions\n"
            "multipod: sent in %lld ms (%ld transport errors re-sent), all delivered %lld ms "
            "later; %zu requests at the bot, %ld re-deliveries, %ld out of order, 0 lost\n"
            "multipod: longest stall of a conversation across the kill: %lld ms\n",
            total, CONVERSATIONS, PODS, total / 2, PARTITIONS, (long long)(t_sent - t0),
            transport_errs, (long long)(t_done - t_sent), n, redeliveries, out_of_order,
            (long long)(stall_us / 1000));
    bgt_bot_requests_free(v, n);
    free(next);
    free(last_before);
    free(first_after);
    free(delivered);
    assert_int_equal(out_of_order, 0);

    /* The dead letter names its partition's stream, and `botgate dlq replay` puts it back
     * there, where it is delivered (the bot takes it the second time). */
    char want_stream[64];
    const char *dead_conv = "mp-conv-007";
    bg_partition_stream(want_stream, sizeof(want_stream), STREAM, PARTITIONS,
                        bg_partition_of(dead_conv, strlen(dead_conv), PARTITIONS));
    redisReply *dl = bgt_redis_cmd(&redis, "XRANGE " STREAM ":dlq - +");
    assert_non_null(dl);
    assert_int_equal(dl->type, REDIS_REPLY_ARRAY);
    assert_int_equal(dl->elements, 1);
    const redisReply *fields = dl->element[0]->element[1];
    const char *got_stream = NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (strcmp(fields->element[i]->str, "stream") == 0)
            got_stream = fields->element[i + 1]->str;
    assert_non_null(got_stream);
    assert_string_equal(got_stream, want_stream);
    freeReplyObject(dl);
    const char *replay[] = {"dlq", "replay", "--all", "-c", gates[0].config, NULL};
    char *out = NULL, *err = NULL;
    int status = bgt_botgate_run_output(replay, env.dir, "dlq", 30000, &out, &err);
    if (status != 0)
        fprintf(stderr, "botgate dlq replay: status %d\n%s\n%s\n", status, out, err);
    free(out);
    free(err);
    assert_int_equal(status, 0);
    deadline = bgt_mono_ms() + 30000;
    for (;;) {
        assert_int_equal(bgt_bot_received(bot_dir, &v, &n), 0);
        int accepted = 0;
        for (size_t i = 0; i < n; i++)
            accepted |= v[i].activity_id != NULL && strcmp(v[i].activity_id, DEAD_ID) == 0 &&
                        v[i].status == 200;
        bgt_bot_requests_free(v, n);
        if (accepted)
            break;
        if (bgt_mono_ms() > deadline)
            fail_msg("the replayed dead letter " DEAD_ID " was not delivered within 30 s");
        bgt_sleep_ms(100);
    }

    /* A botgate stopped with SIGTERM hands its partitions over as it exits (it does not
     * make the others wait for its leases to lapse): right after it is gone, no lease
     * names it, and the last one left takes all of them. */
    int of_pod0 = 0;
    lease_owners_ex("-pod0", &of_pod0);
    assert_true(of_pod0 > 0);
    assert_int_equal(bgt_botgate_stop(&gates[0]), 0);
    lease_owners_ex("-pod0", &of_pod0);
    assert_int_equal(of_pod0, 0);
    deadline = bgt_mono_ms() + 30000;
    for (int of_pod2 = 0; lease_owners_ex("-pod2", &of_pod2), of_pod2 < PARTITIONS;) {
        if (bgt_mono_ms() > deadline)
            fail_msg("the last botgate holds %d of %d partitions 30 s after the others left",
                     of_pod2, PARTITIONS);
        bgt_sleep_ms(100);
    }

    for (int i = 0; i < PODS; i++)
        if (gates[i].pid != 0)
            assert_int_equal(bgt_botgate_stop(&gates[i]), 0);
    assert_int_equal(bgt_bot_stop_clear(bot_dir), 0);
}

static int
teardown(void **state)
{
    (void)state;
    for (int i = 0; i < PODS; i++)
        bgt_botgate_kill(&gates[i]);
    bgt_bot_kill_clear(bot_dir);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_three_pods_one_redis, teardown),
    };
    return bgt_main_with_redis(&env, &redis, "multipod", tests, sizeof(tests) / sizeof(tests[0]));
}
