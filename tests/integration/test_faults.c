/*
 * Faults under load (issue 9): real processes broken on purpose while a client loop
 * (harness_load.h) keeps POSTing activities, and afterwards a count of what botgate
 * acknowledged against what reached the bot. Each fault prints one line
 *
 *   fault=<name> acked=N delivered=N lost=0 duplicates=K
 *
 * and fails unless lost is 0: every 202 reached the bot (at least once; K counts the
 * extra deliveries that at-least-once allows). The faults:
 *
 *  - redis_kill: redis-server (appendonly yes, appendfsync always) killed with SIGKILL for
 *    3 s under load, then restarted on its data: requests that began and ended in the gap
 *    got 503, never 202;
 *  - bot_down: the bot killed for 4 s (the 60 s, scaled down) under load: all is
 *    delivered once it is back;
 *  - botgate_kill: botgate killed with SIGKILL under load and restarted (same consumer
 *    name, so it resumes what it had read): every 202 still reaches the bot;
 *  - keys_down: the key service (tests/tools/fake_connector) down: the keys already held
 *    keep serving (the token the load reuses, and a fresh token of the same key); a token
 *    of a key botgate has not seen is refused (503 keys_unavailable: botgate tries one refresh,
 *    which fails, and refuses — never 202) and stores nothing; once the service is back,
 *    botgate's retry of the failed fetch learns the new key and its tokens get 202. The
 *    issue's "for an hour" is not simulated: a failed fetch is retried with back-off (1 s
 *    doubling to 60 s) and keeps the keys held, whatever the time — what this shows in
 *    seconds is the same code path an hour would run through;
 *  - redis_oom: Redis's maxmemory set tiny (noeviction) under load: 503, no 202, and
 *    service resumes when the limit is lifted.
 *
 * Every process is started by the test (its own redis-server, botgate, slow bot,
 * connector) and killed in the teardown whatever happened. botgate speaks plain HTTP/1.1
 * here: the faults are behind the listener, and test_wire covers TLS.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "harness_load.h"

#define APP_ID "9b1e2c3d-4f5a-6b7c-8d9e-0f1a2b3c4d5e"
#define STREAM "faults:activities"
/* The load: a steady trickle the machine keeps up with under ASan, so that what a fault
 * breaks is the fault's doing, not a backlog's. */
#define RATE_PER_S 150
#define CONCURRENCY 8
#define DELIVERY_TIMEOUT_MS 60000

static bgt_env env;
static bgt_redis redis;
static bgt_botgate gate;
static char base[64];
static char bot_dir[BGT_PATH_MAX];
static int bot_port;
static char conn_dir[BGT_PATH_MAX];
static int conn_port;
static bgt_load *load;

static int
teardown(void **state)
{
    (void)state;
    bgt_load_free(load);
    load = NULL;
    bgt_botgate_kill(&gate);
    bgt_bot_kill_clear(bot_dir);
    bgt_connector_kill_clear(conn_dir);
    if (redis.pid != 0)
        bgt_kill_wait(redis.pid, SIGKILL, 5000);
    redis.pid = 0;
    bgt_redis_stop(&redis); /* frees the harness's connection */
    return 0;
}

/* A fresh tag for the test's activity ids. */
static void
fresh_tag(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s-%d-%lld", name, (int)getpid(), (long long)(bgt_wall_us() % 1000000000));
}

static void
start_redis(const char *name)
{
    bgt_redis_opts o = {.aof = true};
    assert_int_equal(bgt_redis_start(&redis, env.dir, name, &o), 0);
}

static void
start_bot(const char *name)
{
    assert_int_equal(bgt_bot_start_named(bot_dir, env.dir, name, &bot_port), 0);
}

/* botgate (serve --role all) on a free plain port, delivering to the test's bot with a
 * short back-off and attempts enough to outlast every outage here. auth_yaml NULL:
 * authentication off. With a given port (restart), the same port again. */
static void
start_gate(const char *name, const char *auth_yaml, int port)
{
    char state_dir[BGT_PATH_MAX], health[128], bot_url[128], extra[8192];
    bgt_pathf(state_dir, sizeof(state_dir), env.dir, "state-%s", name);
    mkdir(state_dir, 0700);
    bgt_bot_url(bot_url, sizeof(bot_url), bot_port, NULL);
    snprintf(extra, sizeof(extra),
             "bot:\n"
             "  url: \"%s\"\n"
             "  timeout_s: 5\n"
             "  concurrency: 16\n"
             "  max_attempts: 1000\n"
             "  backoff_initial_ms: 100\n"
             "  backoff_max_ms: 500\n"
             "  claim_idle_s: 2\n"
             "  consumer_suffix: \"-faults\"\n"
             "shutdown_grace_s: 5\n"
             "%s",
             bot_url, auth_yaml != NULL ? auth_yaml : "");
    bgt_botgate_conf c = {.plain_port = port > 0 ? port : bgt_free_port(),
                          .redis_url = redis.url,
                          .redis_timeout_ms = 1000,
                          .state_dir = state_dir,
                          .redis_extra = "  stream: \"" STREAM "\"\n",
                          .extra = extra};
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", c.plain_port);
    snprintf(health, sizeof(health), "%s/%s", base, auth_yaml != NULL ? "readyz" : "healthz");
    assert_int_equal(bgt_botgate_start_conf(&gate, env.dir, name, &c, health), 0);
}

static int
gate_port(void)
{
    return atoi(strrchr(base, ':') + 1);
}

static void
new_load(const char *tag)
{
    static char url[128];
    snprintf(url, sizeof(url), "%s/api/messages", base);
    bgt_load_opts o = {.url = url,
                       .tag = tag,
                       .conversations = 16,
                       .concurrency = CONCURRENCY,
                       .rate_per_s = RATE_PER_S};
    load = bgt_load_new(&o);
    assert_non_null(load);
}

/* The usual start of a fault: a tag for its ids, its own Redis (AOF), bot and botgate
 * (authentication off), and the load aimed at it (not started). */
static void
begin(const char *name, char *tag, size_t cap)
{
    fresh_tag(tag, cap, name);
    start_redis(name);
    start_bot(name);
    start_gate(name, NULL, 0);
    new_load(tag);
}

/* The fault's summary line, then lost = 0 and at least one acknowledgement. */
static void
report(const char *fault)
{
    bgt_delivery_count c;
    assert_int_equal(bgt_load_count_delivered(load, bot_dir, DELIVERY_TIMEOUT_MS, &c), 0);
    size_t n;
    bgt_load_shots(load, &n);
    printf("fault=%s acked=%ld delivered=%ld lost=%ld duplicates=%ld\n", fault, c.acked,
           c.delivered, c.lost, c.duplicates);
    fprintf(stderr,
            "fault=%s: %zu requests: %zu × 202, %zu × 503, %zu without an answer; %ld delivered "
            "without a 202\n",
            fault, n, bgt_load_count_status(load, 202), bgt_load_count_status(load, 503),
            bgt_load_count_status(load, 0), c.unacked_delivered);
    fflush(stdout);
    assert_true(c.acked > 0);
    if (c.lost != 0)
        fail_msg("fault=%s: %ld acknowledged activities never reached the bot", fault, c.lost);
}

/* Every shot answered is 202 or one of the statuses allowed (0 ends the list). */
static void
expect_only(const char *fault, ...)
{
    size_t n;
    const bgt_shot *s = bgt_load_shots(load, &n);
    for (size_t i = 0; i < n; i++) {
        if (s[i].end_ms == 0 || s[i].status == 0 || s[i].status == 202)
            continue;
        va_list ap;
        va_start(ap, fault);
        bool ok = false;
        for (long want; (want = va_arg(ap, long)) != 0;)
            ok = ok || s[i].status == want;
        va_end(ap);
        if (!ok)
            fail_msg("fault=%s: %s got %ld %s", fault, s[i].id, s[i].status, s[i].code);
    }
}

/*
 * Redis killed with SIGKILL for 3 s under load and restarted on its AOF: every 202 was on
 * disk, so it reaches the bot; every request that began after the kill and ended before the
 * restart got 503 (queue_unavailable: the connection is gone), never 202.
 */
static void
test_redis_kill(void **state)
{
    (void)state;
    char tag[64];
    begin("redis-kill", tag, sizeof(tag));
    bgt_load_run(load, 1500);

    bgt_kill_wait(redis.pid, SIGKILL, 5000);
    redis.pid = 0;
    int64_t killed_at = bgt_mono_ms(); /* reaped: from here on Redis is gone for sure */
    bgt_load_run(load, 3000);
    int64_t restart_at = bgt_mono_ms();
    assert_int_equal(bgt_redis_restart(&redis), 0);
    bgt_load_run(load, 4000); /* botgate reconnects within its back-off (at most 2 s) */
    assert_int_equal(bgt_load_drain(load, 20000), 0);

    size_t n, in_gap = 0, gap_503 = 0;
    const bgt_shot *s = bgt_load_shots(load, &n);
    for (size_t i = 0; i < n; i++) {
        if (s[i].start_ms < killed_at || s[i].end_ms > restart_at)
            continue;
        in_gap++;
        if (s[i].status == 202)
            fail_msg("%s was acknowledged while Redis was dead", s[i].id);
        if (s[i].status == 503 && s[i].retry_after)
            gap_503++;
    }
    fprintf(stderr, "redis_kill: %zu requests in the gap, %zu answered 503 with Retry-After\n",
            in_gap, gap_503);
    assert_true(in_gap > 0);
    assert_int_equal(gap_503, in_gap);
    expect_only("redis_kill", 503L, 0L);
    /* service resumed: the last requests were acknowledged */
    assert_int_equal(s[n - 1].status, 202);
    report("redis_kill");
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

/*
 * The bot killed for 4 s under load, then started again on its port: meanwhile every
 * activity is acknowledged as usual (the queue does not need the bot), the deliveries
 * fail and are retried, and after the bot returns everything acknowledged arrives.
 */
static void
test_bot_down(void **state)
{
    (void)state;
    char tag[64];
    begin("bot-down", tag, sizeof(tag));
    bgt_load_run(load, 1000);
    char dir[BGT_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", bot_dir);
    bgt_bot_kill_clear(bot_dir);
    bgt_load_run(load, 4000);
    snprintf(bot_dir, sizeof(bot_dir), "%s", dir);
    assert_int_equal(bgt_bot_start(bot_dir, &bot_port), 0);
    bgt_load_run(load, 1500);
    assert_int_equal(bgt_load_drain(load, 20000), 0);
    /* the bot's absence is none of the Connector's business: all acknowledged */
    size_t n;
    bgt_load_shots(load, &n);
    assert_int_equal(bgt_load_count_status(load, 202), n);
    report("bot_down");
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

/*
 * botgate killed with SIGKILL under load, and started again with the same configuration
 * (same consumer name): requests in flight and in the gap fail without an answer (the
 * Connector retries them), and every 202 — also those whose delivery was under way when
 * it died — reaches the bot.
 */
static void
test_botgate_kill(void **state)
{
    (void)state;
    char tag[64];
    fresh_tag(tag, sizeof(tag), "gk");
    start_redis("gate-kill");
    start_bot("gate-kill");
    /* the bot takes a while, so that deliveries are in flight when botgate dies */
    assert_int_equal(bgt_bot_set_delay_random(bot_dir, 0, 50), 0);
    start_gate("gate-kill", NULL, 0);
    int port = gate_port();
    new_load(tag);
    bgt_load_run(load, 2000);
    bgt_botgate_kill(&gate);
    bgt_load_run(load, 1000);
    start_gate("gate-kill", NULL, port);
    bgt_load_run(load, 2000);
    assert_int_equal(bgt_load_drain(load, 20000), 0);
    expect_only("botgate_kill", 0L); /* answered: only 202s */
    assert_true(bgt_load_count_status(load, 0) > 0);
    report("botgate_kill");
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

/* POSTs one activity with token; the status, and botgate's error code into code. */
static long
post_one(const char *token, const char *id, char *code, size_t cap)
{
    char url[128], authz[8192];
    snprintf(url, sizeof(url), "%s/api/messages", base);
    snprintf(authz, sizeof(authz), "Authorization: Bearer %s", token);
    const char *headers[] = {"Content-Type: application/json", authz, NULL};
    char conv[96];
    snprintf(conv, sizeof(conv), "a:%s", id);
    char *body = bgt_teams_message(id, conv, BGT_CONNECTOR_SERVICE_URL, 600);
    bgt_http_resp resp;
    bgt_http_req req = {.method = "POST",
                        .url = url,
                        .headers = headers,
                        .body = body,
                        .body_len = strlen(body),
                        .version = BGT_HTTP_1_1,
                        .timeout_ms = 20000};
    bgt_http_request(&req, &resp);
    free(body);
    long status = resp.status;
    if (code != NULL && bgt_http_error_code(&resp, code, cap) == NULL)
        snprintf(code, cap, "%s", "");
    bgt_http_resp_free(&resp);
    return status;
}

/*
 * The key service down. Before: the load runs with one token of key-1 (verified once, then
 * from the token cache). Down: the load keeps getting 202; a token of key-1 botgate never
 * saw is verified with the keys held (202); a token of key-2, which the service published
 * while down and botgate never fetched, is refused (503 keys_unavailable, never 202)
 * and stored nowhere. Back up: botgate's retry of the failed fetch picks up key-2, and a
 * key-2 token gets 202.
 */
static void
test_keys_down(void **state)
{
    (void)state;
    char tag[64];
    fresh_tag(tag, sizeof(tag), "kd");
    start_redis("keys-down");
    start_bot("keys-down");
    bgt_pathf(conn_dir, sizeof(conn_dir), env.dir, "connector-keys-down");
    conn_port = 0;
    assert_int_equal(bgt_connector_start(conn_dir, &conn_port), 0);
    char *auth = bgt_connector_auth_yaml(conn_dir, conn_port, APP_ID, NULL);
    start_gate("keys-down", auth, 0);
    free(auth);

    char *token = bgt_connector_mint(conn_dir, "key-1", APP_ID, BGT_CONNECTOR_SERVICE_URL, 3600);
    assert_non_null(token);
    new_load(tag);
    bgt_load_set_token(load, token);
    bgt_load_run(load, 1000);

    long fetches_before = bgt_connector_stats("/v1/keys");
    assert_int_equal(bgt_connector_set_down(conn_dir, true), 0);
    assert_int_equal(bgt_connector_add_key(conn_dir, NULL, "key-2", BGT_CONNECTOR_CHANNELS), 0);
    bgt_load_run(load, 1000);

    /* a token of the new key: refused, whatever the refresh it triggers makes of it */
    char id_new[96], code[40];
    snprintf(id_new, sizeof(id_new), "%s.new-key-during-outage", tag);
    char *t2 = bgt_connector_mint(conn_dir, "key-2", APP_ID, BGT_CONNECTOR_SERVICE_URL, 3600);
    assert_non_null(t2);
    long status = post_one(t2, id_new, code, sizeof(code));
    free(t2);
    fprintf(stderr, "keys_down: a token of an unseen key while the key service is down: %ld %s\n",
            status, code);
    if (status == 202)
        fail_msg("a token of a key botgate never fetched was acknowledged");
    /* 503: botgate could not look the key up; the Connector may retry (a 401 would lose it) */
    assert_true(status == 503 && strcmp(code, "keys_unavailable") == 0);

    /* a fresh token of the key held: verified with the keys kept after the failed refresh */
    char id_fresh[96];
    snprintf(id_fresh, sizeof(id_fresh), "%s.fresh-token-during-outage", tag);
    char *t1 = bgt_connector_mint(conn_dir, "key-1", APP_ID, BGT_CONNECTOR_SERVICE_URL, 3600);
    assert_non_null(t1);
    assert_int_equal(post_one(t1, id_fresh, NULL, 0), 202);
    free(t1);
    bgt_load_run(load, 3000);

    /* back: the retry of the failed fetch (back-off from 1 s) learns key-2 */
    assert_int_equal(bgt_connector_set_down(conn_dir, false), 0);
    int64_t deadline = bgt_mono_ms() + 40000;
    int tries = 0;
    for (status = 0; status != 202 && bgt_mono_ms() < deadline; tries++) {
        bgt_load_run(load, 500);
        char id[96];
        snprintf(id, sizeof(id), "%s.new-key-after-%d", tag, tries);
        t2 = bgt_connector_mint(conn_dir, "key-2", APP_ID, BGT_CONNECTOR_SERVICE_URL, 3600);
        assert_non_null(t2);
        status = post_one(t2, id, NULL, 0);
        free(t2);
    }
    fprintf(stderr, "keys_down: key-2 accepted after the service returned (%d tries)\n", tries);
    assert_int_equal(status, 202);
    assert_true(bgt_connector_stats("/v1/keys") > fetches_before);
    assert_int_equal(bgt_load_drain(load, 20000), 0);
    /* the load's reused token was never refused: the keys held kept serving */
    size_t n;
    bgt_load_shots(load, &n);
    assert_int_equal(bgt_load_count_status(load, 202), n);
    report("keys_down");
    assert_int_equal(bgt_bot_count_activity(bot_dir, id_new), 0);
    assert_int_equal(bgt_bot_count_activity(bot_dir, id_fresh), 1);
    free(token);
    assert_int_equal(bgt_botgate_stop(&gate), 0);
    assert_int_equal(bgt_connector_stop_clear(conn_dir), 0);
}

static void
redis_config_set(const char *name, const char *value)
{
    redisReply *r = bgt_redis_cmd(&redis, "CONFIG SET %s %s", name, value);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("CONFIG SET %s %s: %s", name, value, r->str);
    freeReplyObject(r);
}

/*
 * Redis out of memory (maxmemory 1 byte, noeviction): while it lasts every write is refused
 * and every request that began and ended inside it gets 503 queue_error with Retry-After —
 * no 202 — and nothing from them is stored; lifted, the service resumes.
 */
static void
test_redis_oom(void **state)
{
    (void)state;
    char tag[64];
    begin("oom", tag, sizeof(tag));
    bgt_load_run(load, 1000);
    redis_config_set("maxmemory-policy", "noeviction");
    redis_config_set("maxmemory", "1");
    int64_t full_at = bgt_mono_ms(); /* Redis applied it: from here on it is full */
    bgt_load_run(load, 2000);
    int64_t lifted_at = bgt_mono_ms();
    redis_config_set("maxmemory", "0");
    bgt_load_run(load, 1500);
    assert_int_equal(bgt_load_drain(load, 20000), 0);

    size_t n, inside = 0;
    const bgt_shot *s = bgt_load_shots(load, &n);
    for (size_t i = 0; i < n; i++) {
        if (s[i].start_ms < full_at || s[i].end_ms > lifted_at)
            continue;
        inside++;
        if (s[i].status != 503 || strcmp(s[i].code, "queue_error") != 0 || !s[i].retry_after)
            fail_msg("%s, sent while Redis was out of memory: %ld %s%s", s[i].id, s[i].status,
                     s[i].code, s[i].retry_after ? "" : " (no Retry-After)");
    }
    fprintf(stderr, "redis_oom: %zu requests while Redis was full, each 503 queue_error\n", inside);
    assert_true(inside > 0);
    expect_only("redis_oom", 503L, 0L);
    assert_int_equal(s[n - 1].status, 202);
    report("redis_oom");
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_redis_kill, teardown),
        cmocka_unit_test_teardown(test_bot_down, teardown),
        cmocka_unit_test_teardown(test_botgate_kill, teardown),
        cmocka_unit_test_teardown(test_keys_down, teardown),
        cmocka_unit_test_teardown(test_redis_oom, teardown),
    };
    if (bgt_env_init(&env) != 0)
        return 1;
    int failed = cmocka_run_group_tests_name("faults", tests, NULL, NULL);
    return bgt_env_exit(&env, failed);
}
