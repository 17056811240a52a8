/*
 * Redis Sentinel (issue #7, item 4): botgate follows a fail-over, and nothing it
 * acknowledged is lost.
 *
 * One master and one replica on loopback ports, three sentinels watching them (quorum 2,
 * down-after 1 s), botgate with redis.sentinels, redis.min_replicas_ack: 1 and an empty
 * redis.url, a slow bot answering in 0-5 ms. A client thread sends activities one after
 * another and records every answer. The master is killed with SIGKILL; the sentinels
 * promote the replica; the old master comes back as the new master's replica (as a
 * restarted pod would), so that WAIT can be satisfied again. Then:
 *
 *   - every activity answered 202 is in the new master's stream or was delivered to the
 *     bot: 0 lost;
 *   - the requests during the switch were answered 503 with a queue code, never 202 and
 *     never anything else;
 *   - botgate answers 202 again (it followed the sentinels) and delivers everything.
 *
 * The same again with a planned fail-over (SENTINEL FAILOVER): the old master is demoted
 * alive, so botgate must notice READONLY / a ROLE that is no longer master, not a lost
 * connection; 503s are then allowed but not required.
 *
 * The fail-over time (first 503 → first 202 after it) is printed, not asserted.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "botgate/entry.h"
#include "harness.h"

#define MASTER_NAME "bgmaster"
#define STREAM "sentinel:activities"
#define MAX_SENT 200000

static bgt_env env;
static bgt_redis master, replica, sentinels[3];
static bgt_botgate gate;
static char bot_dir[BGT_PATH_MAX];
static int bot_port;

/* ---- the client: one request at a time, every answer recorded ----------------------- */

typedef struct sent {
    char id[32];
    long status;    /* 0: no answer (transport error) */
    char code[40];  /* the JSON error code of a refusal */
    int64_t t0, t1; /* monotonic ms: sent, answered */
} sent;

static sent *log_v;
static size_t log_n;
static volatile int load_stop;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char gate_base[64];

static void *
load_main(void *arg)
{
    (void)arg;
    char url[128];
    bgt_url(url, sizeof(url), gate_base, "/api/messages");
    const char *headers[] = {"Content-Type: application/json", NULL};
    for (size_t i = 0; !load_stop && i < MAX_SENT; i++) {
        sent s = {0};
        char conv[32];
        snprintf(s.id, sizeof(s.id), "act-%zu", i);
        snprintf(conv, sizeof(conv), "conv-%zu", i % 8);
        char *body = bgt_teams_message(s.id, conv, BGT_CONNECTOR_SERVICE_URL, 600);
        bgt_http_req req = {.method = "POST",
                            .url = url,
                            .headers = headers,
                            .body = body,
                            .body_len = strlen(body),
                            .version = BGT_HTTP_1_1,
                            .timeout_ms = 10000};
        bgt_http_resp resp;
        s.t0 = bgt_mono_ms();
        bgt_http_request(&req, &resp);
        s.t1 = bgt_mono_ms();
        s.status = resp.status;
        if (resp.status != 202 && bgt_http_error_code(&resp, s.code, sizeof(s.code)) == NULL)
            snprintf(s.code, sizeof(s.code), "%.39s", resp.curl_error);
        bgt_http_resp_free(&resp);
        free(body);
        pthread_mutex_lock(&log_mu);
        log_v[log_n++] = s;
        pthread_mutex_unlock(&log_mu);
    }
    return NULL;
}

/* The first record from index `from` with status st (and t0 at or after t), or -1. */
static long
find_status(size_t from, long st, int64_t t)
{
    pthread_mutex_lock(&log_mu);
    long found = -1;
    for (size_t i = from; i < log_n && found < 0; i++)
        if (log_v[i].status == st && log_v[i].t0 >= t)
            found = (long)i;
    pthread_mutex_unlock(&log_mu);
    return found;
}

/* ---- sentinels ------------------------------------------------------------------------- */

/* Elements of an array reply of `cmd` to the sentinel at port; -1 when no array came. */
static long
sentinel_count(int port, const char *what)
{
    redisReply *r = bgt_redis_tcp_cmd(port, "SENTINEL %s " MASTER_NAME, what);
    long n = r != NULL && r->type == REDIS_REPLY_ARRAY ? (long)r->elements : -1;
    if (r != NULL)
        freeReplyObject(r);
    return n;
}

/* The port of the master as the sentinel at port names it, or 0. */
static int
sentinel_master_port(int port)
{
    redisReply *r = bgt_redis_tcp_cmd(port, "SENTINEL get-master-addr-by-name " MASTER_NAME);
    int p = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? atoi(r->element[1]->str)
                                                                          : 0;
    if (r != NULL)
        freeReplyObject(r);
    return p;
}

/* ---- checks --------------------------------------------------------------------------- */

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
in_sorted(char **v, size_t n, const char *id)
{
    return n > 0 && bsearch(&id, v, n, sizeof(char *), cmp_str) != NULL;
}

/* The activity ids in the new master's stream, sorted. */
static char **
stream_ids(bgt_redis *r, size_t *n_out)
{
    bgt_stream_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(bgt_redis_xrange(r, STREAM, &v, &n), 0);
    char **ids = calloc(n + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bg_entry e;
        if (v[i].entry != NULL && bg_entry_decode(&e, v[i].entry, v[i].entry_len) == 0 &&
            e.activity_id.p != NULL)
            ids[k++] = strndup(e.activity_id.p, e.activity_id.len);
    }
    bgt_stream_entries_free(v, n);
    qsort(ids, k, sizeof(char *), cmp_str);
    *n_out = k;
    return ids;
}

/* The activity ids the bot answered 2xx, sorted. */
static char **
bot_ids(size_t *n_out)
{
    bgt_bot_request *v = NULL;
    size_t n = 0;
    assert_int_equal(bgt_bot_received(bot_dir, &v, &n), 0);
    char **ids = calloc(n + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].activity_id != NULL && strcmp(v[i].outcome, "answered") == 0 &&
            v[i].status / 100 == 2)
            ids[k++] = strdup(v[i].activity_id);
    bgt_bot_requests_free(v, n);
    qsort(ids, k, sizeof(char *), cmp_str);
    *n_out = k;
    return ids;
}

static void
free_ids(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- the test ---------------------------------------------------------------------------- */

/*
 * planned: the master is not killed but handed over (SENTINEL FAILOVER, as for an upgrade):
 * it is demoted alive, so botgate's connections to it meet READONLY or a ROLE that is no
 * longer master, and it becomes the new master's replica by itself.
 */
static void
failover(const char *tag, bool planned)
{
    char name[32];
    log_n = 0;
    load_stop = 0;
    int pm = bgt_free_port(), pr = bgt_free_port();
    snprintf(name, sizeof(name), "%s-master", tag);
    assert_int_equal(bgt_redis_start(&master, env.dir, name, &(bgt_redis_opts){.port = pm}), 0);
    snprintf(name, sizeof(name), "%s-replica", tag);
    assert_int_equal(bgt_redis_start(&replica, env.dir, name,
                                     &(bgt_redis_opts){.port = pr, .replicaof_port = pm}),
                     0);
    /* no 5 s wait before a full sync: a replica is ready in moments */
    for (int i = 0; i < 2; i++) {
        redisReply *r =
            bgt_redis_cmd(i == 0 ? &master : &replica, "CONFIG SET repl-diskless-sync-delay 0");
        assert_non_null(r);
        freeReplyObject(r);
    }
    int sp[3];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "%s-s%d", tag, i);
        sp[i] = bgt_free_port();
        assert_int_equal(
            bgt_sentinel_start(&sentinels[i], env.dir, name, sp[i], MASTER_NAME, pm, 1000, 4000),
            0);
    }
    /* Each sentinel must know the replica and the two other sentinels, or there is nobody
     * to promote and no quorum to do it. */
    int64_t deadline = bgt_mono_ms() + 30000;
    for (int i = 0; i < 3; i++) {
        while (sentinel_count(sp[i], "replicas") < 1 || sentinel_count(sp[i], "sentinels") < 2) {
            if (bgt_mono_ms() > deadline)
                fail_msg("sentinel %d does not see the replica and its peers", i);
            bgt_sleep_ms(100);
        }
    }

    assert_int_equal(bgt_bot_start_named(bot_dir, env.dir, tag, &bot_port), 0);
    assert_int_equal(bgt_bot_set_delay_random(bot_dir, 0, 5), 0);
    char redis_extra[512], extra[512], bot_url[128], health[128], state_dir[BGT_PATH_MAX];
    snprintf(redis_extra, sizeof(redis_extra),
             "  stream: \"" STREAM "\"\n"
             "  min_replicas_ack: 1\n"
             "  master_name: " MASTER_NAME "\n"
             "  sentinels: [\"127.0.0.1:%d\", \"127.0.0.1:%d\", \"127.0.0.1:%d\"]\n",
             sp[0], sp[1], sp[2]);
    bgt_bot_url(bot_url, sizeof(bot_url), bot_port, NULL);
    snprintf(extra, sizeof(extra),
             "bot:\n  url: \"%s\"\n  concurrency: 8\n  backoff_initial_ms: 100\n"
             "  backoff_max_ms: 1000\n  claim_idle_s: 2\n",
             bot_url);
    bgt_pathf(state_dir, sizeof(state_dir), env.dir, "state-%s", tag);
    mkdir(state_dir, 0700);
    bgt_botgate_conf c = {.plain_port = bgt_free_port(),
                          .redis_url = "",
                          .state_dir = state_dir,
                          .redis_extra = redis_extra,
                          .extra = extra};
    snprintf(gate_base, sizeof(gate_base), "http://127.0.0.1:%d", c.plain_port);
    snprintf(health, sizeof(health), "%s/readyz", gate_base);
    assert_int_equal(bgt_botgate_start_conf(&gate, env.dir, tag, &c, health), 0);

    log_v = calloc(MAX_SENT, sizeof(sent));
    pthread_t load;
    assert_int_equal(pthread_create(&load, NULL, load_main, NULL), 0);
    /* some acknowledged load before the crash */
    deadline = bgt_mono_ms() + 20000;
    while (find_status(0, 202, 0) < 0 || log_n < 300) {
        if (bgt_mono_ms() > deadline) {
            load_stop = 1;
            pthread_join(load, NULL);
            fail_msg("no 202 before the fail-over (%zu answers)", log_n);
        }
        bgt_sleep_ms(20);
    }

    int64_t t_kill = bgt_mono_ms();
    if (planned) {
        redisReply *r = bgt_redis_tcp_cmd(sp[0], "SENTINEL FAILOVER " MASTER_NAME);
        assert_non_null(r);
        if (r->type == REDIS_REPLY_ERROR)
            fail_msg("SENTINEL FAILOVER refused: %s", r->str);
        freeReplyObject(r);
    } else {
        bgt_redis_kill(&master);
    }
    deadline = t_kill + 60000;
    while (sentinel_master_port(sp[0]) != pr) {
        if (bgt_mono_ms() > deadline) {
            load_stop = 1;
            pthread_join(load, NULL);
            fail_msg("the sentinels did not promote the replica within 60 s");
        }
        bgt_sleep_ms(50);
    }
    int64_t t_promoted = bgt_mono_ms();
    /* A killed master returns as the new one's replica, so that WAIT 1 can succeed; a
     * demoted one is made a replica by the sentinels. */
    if (!planned) {
        master.opts.replicaof_port = pr;
        assert_int_equal(bgt_redis_restart(&master), 0);
    }
    int64_t t_back = bgt_mono_ms();

    /* 202s again, for requests sent after the promotion (and after the first 503, if any) */
    long first_503 = find_status(0, 503, t_kill);
    deadline = bgt_mono_ms() + 60000;
    long after = -1;
    while ((after = find_status(first_503 >= 0 ? (size_t)first_503 : 0, 202, t_promoted)) < 0 ||
           (!planned && first_503 < 0)) {
        if (bgt_mono_ms() > deadline) {
            load_stop = 1;
            pthread_join(load, NULL);
            fail_msg("botgate did not answer 202 again within 60 s of the promotion");
        }
        bgt_sleep_ms(20);
        if (first_503 < 0)
            first_503 = find_status(0, 503, t_kill);
    }
    bgt_sleep_ms(1000); /* some load on the new master */
    load_stop = 1;
    pthread_join(load, NULL);

    /* Every answer was a 202 or a 503 with a queue code. */
    size_t n202 = 0, n503 = 0;
    for (size_t i = 0; i < log_n; i++) {
        if (log_v[i].status == 202) {
            n202++;
            continue;
        }
        if (log_v[i].status != 503 || (strcmp(log_v[i].code, "queue_unavailable") != 0 &&
                                       strcmp(log_v[i].code, "queue_timeout") != 0 &&
                                       strcmp(log_v[i].code, "queue_error") != 0 &&
                                       strcmp(log_v[i].code, "replica_ack_missing") != 0))
            fail_msg("%s answered %ld (%s): only 202 or a queue 503 is allowed", log_v[i].id,
                     log_v[i].status, log_v[i].code);
        n503++;
    }

    /* 0 lost: every 202 is in the new master's stream or at the bot. */
    size_t ns, nb;
    char **in_stream = stream_ids(&replica, &ns);
    char **at_bot = bot_ids(&nb);
    size_t lost = 0;
    for (size_t i = 0; i < log_n; i++) {
        if (log_v[i].status == 202 && !in_sorted(in_stream, ns, log_v[i].id) &&
            !in_sorted(at_bot, nb, log_v[i].id)) {
            if (lost++ < 10)
                fprintf(stderr, "LOST: %s was answered 202\n", log_v[i].id);
        }
    }
    free_ids(in_stream, ns);
    free_ids(at_bot, nb);
    fprintf(stderr,
            "sentinel (%s): %zu requests, %zu answered 202, %zu answered 503, %zu lost\n"
            "sentinel (%s): %s -> promotion seen %lld ms, old master back as replica %lld ms\n"
            "sentinel (%s): fail-over as the client saw it: first 503 -> first 202 after it = "
            "%lld ms (the 202 came %lld ms after the promotion)\n",
            tag, log_n, n202, n503, lost, tag, planned ? "SENTINEL FAILOVER" : "kill -9",
            (long long)(t_promoted - t_kill), (long long)(t_back - t_kill), tag,
            first_503 >= 0 ? (long long)(log_v[after].t1 - log_v[first_503].t0) : 0LL,
            (long long)(log_v[after].t1 - t_promoted));
    assert_int_equal(lost, 0);
    if (!planned)
        assert_true(n503 > 0);

    /* And the dispatcher followed too: every 202 reaches the bot. */
    deadline = bgt_mono_ms() + 60000;
    for (;;) {
        at_bot = bot_ids(&nb);
        size_t missing = 0;
        const char *example = NULL;
        for (size_t i = 0; i < log_n; i++)
            if (log_v[i].status == 202 && !in_sorted(at_bot, nb, log_v[i].id)) {
                missing++;
                example = log_v[i].id;
            }
        if (missing == 0) {
            free_ids(at_bot, nb);
            break;
        }
        if (bgt_mono_ms() > deadline) {
            fprintf(stderr, "%zu acknowledged activities not delivered, e.g. %s\n", missing,
                    example);
            free_ids(at_bot, nb);
            fail_msg("not every acknowledged activity reached the bot after the fail-over");
        }
        free_ids(at_bot, nb);
        bgt_sleep_ms(200);
    }
    free(log_v);
    log_v = NULL;

    /* The command lines find the new master through the sentinels too (with redis.url
     * empty and no sentinels they would look for a private redis and exit 1). */
    const char *cli[][5] = {{"dlq", "list", "-c", gate.config, NULL},
                            {"failures", "-c", gate.config, NULL, NULL}};
    for (int i = 0; i < 2; i++) {
        char *out = NULL, *err = NULL;
        int status = bgt_botgate_run_output(cli[i], env.dir, "cli", 30000, &out, &err);
        if (status != 0)
            fprintf(stderr, "botgate %s: status %d\n%s\n%s\n", cli[i][0], status, out, err);
        free(out);
        free(err);
        assert_int_equal(status, 0);
    }
    assert_int_equal(bgt_botgate_stop(&gate), 0);
    assert_int_equal(bgt_bot_stop_clear(bot_dir), 0);
}

static void
test_failover_master_killed(void **state)
{
    (void)state;
    failover("killed", false);
}

static void
test_failover_planned(void **state)
{
    (void)state;
    failover("planned", true);
}

static int
teardown(void **state)
{
    (void)state;
    bgt_botgate_kill(&gate);
    bgt_bot_kill_clear(bot_dir);
    for (int i = 0; i < 3; i++)
        bgt_redis_kill(&sentinels[i]);
    bgt_redis_kill(&master);
    bgt_redis_kill(&replica);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_failover_master_killed, teardown),
        cmocka_unit_test_teardown(test_failover_planned, teardown),
    };
    if (bgt_env_init(&env) != 0)
        return 1;
    int failed = cmocka_run_group_tests_name("sentinel", tests, NULL, NULL);
    return bgt_env_exit(&env, failed);
}
