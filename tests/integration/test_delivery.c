/*
 * Delivery, end to end: a real botgate (serve --role all) between a real redis-server and the
 * slow bot (tests/tools/slow_bot), driven over plain HTTP/1.1 with libcurl.
 *
 * The contract under test (issue 4, dispatcher.h, delivery.h): every acknowledged activity
 * reaches the bot at least once, however slow the bot; in stream order within a
 * conversation, one at a time, conversations in parallel within bot.concurrency; 408/429/5xx
 * retried with a growing back-off (Retry-After honoured), other 4xx dead-lettered at once,
 * out of attempts or with a forwarded token that expired in the queue dead-lettered to
 * <stream>:dlq; `botgate dlq replay` puts one back; entries of a consumer killed with -9 are
 * claimed by another member after bot.claim_idle_s, and resumed at once by a restart under
 * the same name; invokes and expectReplies are proxied synchronously with a deadline and
 * never stored; SIGTERM lets deliveries in flight finish within shutdown_grace_s and leaves
 * the rest pending.
 *
 * The timings are scaled down (a 5 s bot instead of 20 s, back-off 100 ms doubling
 * to 1 s, claim after 2 s) so that the program stays under three minutes under ASan. Every
 * wait is a poll with a deadline; time assertions are lower bounds the rule guarantees
 * (a back-off cannot be shorter than half its base) with generous upper slack.
 *
 * One redis-server serves the program; every test uses a stream of its own (so its own
 * group, retry hash and dead-letter stream), its own slow bot and its own botgate(s), which
 * the teardown kills whatever happened.
 */
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
#include <curl/curl.h>

#include "botgate/entry.h"
#include "harness.h"

#define GROUP "botgate"
#define APP_ID "4f2c9a1e-7b3d-4e8a-9c61-0d5e2f8b7a13"
#define SERVICE_URL BGT_CONNECTOR_SERVICE_URL
#define BACKOFF_INITIAL_MS 100
#define BACKOFF_MAX_MS 1000
#define SYNC_DEADLINE_MS 2000
#define COMPOSE_DEADLINE_MS 300
/* Below a guaranteed lower bound: timers and clocks round to the millisecond, and the bot
 * stamps arrivals, not the moment botgate decided. */
#define EARLY_SLACK_MS 30
/* Above an expected time: a loaded machine under ASan. */
#define LATE_SLACK_MS 1500

static bgt_env env;
static bgt_redis redis;

/* What a test starts: the teardown kills whatever is still running. */
static bgt_botgate gate, gate2;
static char base[64], base2[64];
static char bot_dir[BGT_PATH_MAX];
static int bot_port;
static char conn_dir[BGT_PATH_MAX];
static int conn_port;
/* The test's stream, and its companions. */
static char stream[64], stream_dlq[80], stream_retry[80];

/* ---- helpers ---------------------------------------------------------------------------- */

static void
use_stream(const char *name)
{
    snprintf(stream, sizeof(stream), "%s:activities", name);
    snprintf(stream_dlq, sizeof(stream_dlq), "%s:dlq", stream);
    snprintf(stream_retry, sizeof(stream_retry), "%s:retry", stream);
}

/* A tag no other test (nor an earlier run) uses: activity ids are built on it. */
static void
fresh_tag(char *out, size_t cap, const char *prefix)
{
    static int counter;
    snprintf(out, cap, "%s%d-%lld-%d", prefix, (int)getpid(), (long long)bgt_wall_us() % 100000000,
             ++counter);
}

/*
 * An activity as the Connector POSTs it. name and delivery_mode NULL: left out. The values
 * need no JSON escaping. malloc'd.
 */
static char *
activity(const char *type, const char *id, const char *conv, const char *name,
         const char *delivery_mode)
{
    char namefield[128] = "", modefield[64] = "";
    if (name != NULL)
        snprintf(namefield, sizeof(namefield), "\"name\":\"%s\",", name);
    if (delivery_mode != NULL)
        snprintf(modefield, sizeof(modefield), "\"deliveryMode\":\"%s\",", delivery_mode);
    const char *fmt = "{\"type\":\"%s\",\"id\":\"%s\",%s%s\"channelId\":\"msteams\","
                      "\"serviceUrl\":\"%s\",\"from\":{\"id\":\"29:1a2b3c\",\"name\":\"Ada\"},"
                      "\"conversation\":{\"id\":\"%s\"},"
                      "\"recipient\":{\"id\":\"28:bot\",\"name\":\"Slow Bot\"},"
                      "\"text\":\"hello slow bot\"}";
    int n = snprintf(NULL, 0, fmt, type, id, namefield, modefield, SERVICE_URL, conv);
    char *out = malloc((size_t)n + 1);
    assert_non_null(out);
    snprintf(out, (size_t)n + 1, fmt, type, id, namefield, modefield, SERVICE_URL, conv);
    return out;
}

/* POSTs body to b/api/messages (token NULL: no Authorization), timeout generous. */
static void
post(const char *b, const char *token, const char *body, bgt_http_resp *resp)
{
    char u[128], authz[8192];
    const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
    if (token != NULL) {
        snprintf(authz, sizeof(authz), "Authorization: Bearer %s", token);
        headers[1] = authz;
    }
    snprintf(u, sizeof(u), "%s/api/messages", b);
    bgt_http_req req = {.method = "POST",
                        .url = u,
                        .headers = headers,
                        .body = body,
                        .body_len = strlen(body),
                        .version = BGT_HTTP_1_1,
                        .timeout_ms = 30000};
    bgt_http_request(&req, resp);
}

/* POSTs a message activity and asserts the 202; returns how long the answer took. */
static int64_t
post_message(const char *b, const char *token, const char *id, const char *conv)
{
    char *body = activity("message", id, conv, NULL, NULL);
    bgt_http_resp resp;
    post(b, token, body, &resp);
    free(body);
    bgt_expect_status(&resp, 202);
    int64_t ms = resp.elapsed_ms;
    bgt_http_resp_free(&resp);
    return ms;
}

/* ---- Redis -------------------------------------------------------------------------------- */

static long long
xlen(const char *s)
{
    long long n = bgt_redis_xlen(&redis, s);
    assert_true(n >= 0);
    return n;
}

/* Entries pending in the group (XPENDING summary); 0 when the group does not exist yet. */
static long long
xpending(void)
{
    redisReply *r = bgt_redis_cmd(&redis, "XPENDING %s " GROUP, stream);
    assert_non_null(r);
    long long n = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER)
        n = r->element[0]->integer;
    else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0)
        n = 0;
    else
        fprintf(stderr, "XPENDING %s: unexpected reply type %d %s\n", stream, r->type,
                r->type == REDIS_REPLY_ERROR ? r->str : "");
    freeReplyObject(r);
    assert_true(n >= 0);
    return n;
}

static long long
hlen(const char *key)
{
    redisReply *r = bgt_redis_cmd(&redis, "HLEN %s", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/* Polls until the stream is empty and nothing is pending: every entry was acknowledged
 * (delivered entries are deleted) or dead-lettered. */
static void
wait_drained(int timeout_ms)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    long long len, pending;
    for (;;) {
        len = xlen(stream);
        pending = xpending();
        if (len == 0 && pending == 0)
            return;
        if (bgt_mono_ms() >= deadline)
            break;
        bgt_sleep_ms(50);
    }
    fail_msg("%s not drained within %d ms: XLEN %lld, XPENDING %lld", stream, timeout_ms, len,
             pending);
}

/* XINFO STREAM's last-generated-id is 0-0: nothing was ever added (or no stream at all). */
static bool
stream_never_added(void)
{
    redisReply *r = bgt_redis_cmd(&redis, "XINFO STREAM %s", stream);
    assert_non_null(r);
    bool never = r->type == REDIS_REPLY_ERROR; /* no such key */
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < r->elements; i += 2)
            if (r->element[i]->type == REDIS_REPLY_STRING &&
                strcmp(r->element[i]->str, "last-generated-id") == 0)
                never = strcmp(r->element[i + 1]->str, "0-0") == 0;
    }
    freeReplyObject(r);
    return never;
}

/* A dead letter: the fields of an entry of <stream>:dlq. */
typedef struct dead_letter {
    char id[48];
    char reason[64];
    long attempts;
    long last_status;
    char error[256];
    char original_id[48];
    int64_t failed_at_ms;
    char activity_id[128]; /* from the decoded `entry` */
    int64_t token_exp;
    int fields; /* how many of the seven fields were there */
} dead_letter;

/* Every dead letter, oldest first (at most cap). */
static size_t
dead_letters(dead_letter *out, size_t cap)
{
    redisReply *r = bgt_redis_cmd(&redis, "XRANGE %s - +", stream_dlq);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    size_t n = 0;
    for (size_t i = 0; i < r->elements && n < cap; i++) {
        redisReply *e = r->element[i];
        dead_letter *d = &out[n++];
        memset(d, 0, sizeof(*d));
        bgt_reply_copy(d->id, sizeof(d->id), e->element[0]);
        redisReply *f = e->element[1];
        for (size_t k = 0; k + 1 < f->elements; k += 2) {
            const char *name = f->element[k]->str;
            redisReply *v = f->element[k + 1];
            char text[64];
            bgt_reply_copy(text, sizeof(text), v);
            if (strcmp(name, "entry") == 0) {
                bg_entry en;
                if (bg_entry_decode(&en, v->str, v->len) == 0) {
                    snprintf(d->activity_id, sizeof(d->activity_id), "%.*s",
                             (int)en.activity_id.len, en.activity_id.p ? en.activity_id.p : "");
                    d->token_exp = en.token_exp;
                }
                d->fields++;
            } else if (strcmp(name, "reason") == 0) {
                bgt_reply_copy(d->reason, sizeof(d->reason), v);
                d->fields++;
            } else if (strcmp(name, "attempts") == 0) {
                d->attempts = atol(text);
                d->fields++;
            } else if (strcmp(name, "last_status") == 0) {
                d->last_status = atol(text);
                d->fields++;
            } else if (strcmp(name, "error") == 0) {
                bgt_reply_copy(d->error, sizeof(d->error), v);
                d->fields++;
            } else if (strcmp(name, "original_id") == 0) {
                bgt_reply_copy(d->original_id, sizeof(d->original_id), v);
                d->fields++;
            } else if (strcmp(name, "failed_at_ms") == 0) {
                d->failed_at_ms = atoll(text);
                d->fields++;
            }
        }
    }
    freeReplyObject(r);
    return n;
}

/* The dead letter of activity id, polled for up to timeout_ms. */
static dead_letter
wait_dead_letter(const char *activity_id, int timeout_ms)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    dead_letter v[32];
    for (;;) {
        size_t n = dead_letters(v, 32);
        for (size_t i = 0; i < n; i++)
            if (strcmp(v[i].activity_id, activity_id) == 0)
                return v[i];
        if (bgt_mono_ms() >= deadline)
            fail_msg("no dead letter for %s in %s within %d ms (%zu others)", activity_id,
                     stream_dlq, timeout_ms, n);
        bgt_sleep_ms(50);
    }
}

/* The stream id of the (only) entry of activity_id in the stream, polled. */
static void
wait_stream_id(const char *activity_id, char *out, size_t cap, int timeout_ms)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    for (;;) {
        bgt_stream_entry *v;
        size_t n;
        assert_int_equal(bgt_redis_xrange(&redis, stream, &v, &n), 0);
        bool found = false;
        for (size_t i = 0; i < n && !found; i++) {
            bg_entry e;
            if (v[i].entry != NULL && bg_entry_decode(&e, v[i].entry, v[i].entry_len) == 0 &&
                bgt_slice_eq(e.activity_id, activity_id)) {
                snprintf(out, cap, "%s", v[i].id);
                found = true;
            }
        }
        bgt_stream_entries_free(v, n);
        if (found)
            return;
        if (bgt_mono_ms() >= deadline)
            fail_msg("activity %s not in %s within %d ms", activity_id, stream, timeout_ms);
        bgt_sleep_ms(20);
    }
}

/* ---- the slow bot ------------------------------------------------------------------------- */

static void
start_bot(const char *name)
{
    assert_int_equal(bgt_bot_start_named(bot_dir, env.dir, name, &bot_port), 0);
}

/* The requests the bot received for activity_id, in arrival order (at most cap), copied
 * into out; their strings belong to *all (every request: bgt_bot_requests_free it after
 * use). */
static size_t
requests_for(const char *activity_id, bgt_bot_request *out, size_t cap, bgt_bot_request **all,
             size_t *n_all)
{
    assert_int_equal(bgt_bot_received(bot_dir, all, n_all), 0);
    size_t n = 0;
    for (size_t i = 0; i < *n_all && n < cap; i++)
        if ((*all)[i].activity_id != NULL && strcmp((*all)[i].activity_id, activity_id) == 0)
            out[n++] = (*all)[i];
    return n;
}

/* Polls until n requests for activity_id have ended at the bot (answered with any status,
 * closed, or given up by the client). */
static void
wait_requests_ended(const char *activity_id, size_t n, int timeout_ms)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    size_t ended = 0, seen = 0;
    for (;;) {
        bgt_bot_request *all, mine[64];
        size_t n_all;
        seen = requests_for(activity_id, mine, 64, &all, &n_all);
        ended = 0;
        for (size_t i = 0; i < seen; i++)
            ended += mine[i].outcome[0] != '\0';
        bgt_bot_requests_free(all, n_all);
        if (ended >= n)
            return;
        if (bgt_mono_ms() >= deadline)
            break;
        bgt_sleep_ms(20);
    }
    fail_msg("the bot saw %zu requests for %s (%zu ended) within %d ms, expected %zu ended", seen,
             activity_id, ended, timeout_ms, n);
}

static long
bot_count(const char *activity_id)
{
    long n = bgt_bot_count_activity(bot_dir, activity_id);
    assert_true(n >= 0);
    return n;
}

/* Requests for activity_id the bot answered with a 2xx. */
static size_t
bot_delivered(const char *activity_id)
{
    bgt_bot_request *all, mine[64];
    size_t n_all, ok = 0;
    size_t n = requests_for(activity_id, mine, 64, &all, &n_all);
    for (size_t i = 0; i < n; i++)
        ok += strcmp(mine[i].outcome, "answered") == 0 && mine[i].status / 100 == 2;
    bgt_bot_requests_free(all, n_all);
    return ok;
}

/* ---- the fake Connector (authentication on) ------------------------------------------------ */

static void
start_connector(void)
{
    bgt_path(conn_dir, sizeof(conn_dir), env.dir, "connector");
    conn_port = 0;
    assert_int_equal(bgt_connector_start(conn_dir, &conn_port), 0);
}

/* A channel token for APP_ID and SERVICE_URL whose exp is now + exp_in_s. */
static char *
mint(long exp_in_s)
{
    char *t = bgt_connector_mint(conn_dir, NULL, APP_ID, SERVICE_URL, exp_in_s);
    assert_non_null(t);
    return t;
}

/* ---- botgate ------------------------------------------------------------------------------ */

typedef struct gate_opts {
    int concurrency;    /* 0: 8 */
    int max_attempts;   /* 0: 10 */
    int timeout_s;      /* bot.timeout_s; 0: 30 */
    int claim_idle_s;   /* 0: 2 */
    int grace_s;        /* shutdown_grace_s; 0: 10 */
    int backoff_max_ms; /* bot.backoff_max_ms; 0: BACKOFF_MAX_MS */
    const char *suffix; /* bot.consumer_suffix; NULL: "-<name>" */
    bool auth;          /* against the test's connector */
} gate_opts;

/* Starts g as `name` (plain HTTP on a free port, base URL into b), delivering the test's
 * stream to the test's bot. With authentication on, waits until the keys are held. */
static void
start_gate(bgt_botgate *g, char *b, size_t cap, const char *name, const gate_opts *o)
{
    char state_dir[BGT_PATH_MAX], health[128], bot_url[128], suffix[64];
    bgt_pathf(state_dir, sizeof(state_dir), env.dir, "state-%s", name);
    mkdir(state_dir, 0700);
    if (o->suffix != NULL)
        snprintf(suffix, sizeof(suffix), "%s", o->suffix);
    else
        snprintf(suffix, sizeof(suffix), "-%s", name);
    char redis_extra[128];
    snprintf(redis_extra, sizeof(redis_extra), "  stream: \"%s\"\n", stream);
    char *auth = o->auth ? bgt_connector_auth_yaml(conn_dir, conn_port, APP_ID, NULL) : NULL;
    const char *fmt = "bot:\n"
                      "  url: \"%s\"\n"
                      "  timeout_s: %d\n"
                      "  concurrency: %d\n"
                      "  max_attempts: %d\n"
                      "  backoff_initial_ms: %d\n"
                      "  backoff_max_ms: %d\n"
                      "  claim_idle_s: %d\n"
                      "  consumer_suffix: \"%s\"\n"
                      "policy:\n"
                      "  sync_deadline_ms: %d\n"
                      "  sync_compose_deadline_ms: %d\n"
                      "shutdown_grace_s: %d\n"
                      "%s";
    bgt_bot_url(bot_url, sizeof(bot_url), bot_port, NULL);
    char extra[8192];
    snprintf(extra, sizeof(extra), fmt, bot_url, o->timeout_s > 0 ? o->timeout_s : 30,
             o->concurrency > 0 ? o->concurrency : 8, o->max_attempts > 0 ? o->max_attempts : 10,
             BACKOFF_INITIAL_MS, o->backoff_max_ms > 0 ? o->backoff_max_ms : BACKOFF_MAX_MS,
             o->claim_idle_s > 0 ? o->claim_idle_s : 2, suffix, SYNC_DEADLINE_MS,
             COMPOSE_DEADLINE_MS, o->grace_s > 0 ? o->grace_s : 10, auth != NULL ? auth : "");
    free(auth);
    bgt_botgate_conf c = {.plain_port = bgt_free_port(),
                          .redis_url = redis.url,
                          .state_dir = state_dir,
                          .redis_extra = redis_extra,
                          .extra = extra};
    snprintf(b, cap, "http://127.0.0.1:%d", c.plain_port);
    /* /readyz: 200 once Redis is connected (and, with authentication on, the signing keys
     * are held). /healthz answers before that, and a POST right after it could get 503
     * queue_unavailable on a loaded machine. */
    snprintf(health, sizeof(health), "%s/readyz", b);
    assert_int_equal(bgt_botgate_start_conf(g, env.dir, name, &c, health), 0);
}

static int
teardown(void **state)
{
    (void)state;
    bgt_botgate_kill(&gate);
    bgt_botgate_kill(&gate2);
    bgt_botgate_role = NULL;
    bgt_bot_kill_clear(bot_dir);
    bgt_connector_kill_clear(conn_dir);
    return 0;
}

/* Stops the test's botgate(s) and bot cleanly: exit 0 (under ASan, no leak). */
static void
stop_all(void)
{
    if (gate.pid != 0)
        assert_int_equal(bgt_botgate_stop(&gate), 0);
    if (gate2.pid != 0)
        assert_int_equal(bgt_botgate_stop(&gate2), 0);
    assert_int_equal(bgt_bot_stop_clear(bot_dir), 0);
    assert_int_equal(bgt_connector_stop_clear(conn_dir), 0);
}

/* ---- the tests ------------------------------------------------------------------------------ */

/*
 * A bot that takes 5 s (the 20 s, scaled down): the Connector's POST is answered 202
 * at once, the bot gets the activity exactly once (attempt 1, the original body, botgate's
 * two headers), and afterwards nothing is pending and the delivered entry is gone.
 */
static void
test_slow_bot(void **state)
{
    (void)state;
    use_stream("slow");
    start_bot("slow");
    assert_int_equal(bgt_bot_set_delay(bot_dir, 5000), 0);
    start_gate(&gate, base, sizeof(base), "slow", &(gate_opts){0});

    char tag[64], id[96], conv[96];
    fresh_tag(tag, sizeof(tag), "slow-");
    snprintf(id, sizeof(id), "%s.0", tag);
    snprintf(conv, sizeof(conv), "a:%s", tag);
    char *body = activity("message", id, conv, NULL, NULL);
    size_t body_len = strlen(body);
    int64_t t0 = bgt_wall_us();
    bgt_http_resp resp;
    post(base, NULL, body, &resp);
    free(body);
    bgt_expect_status(&resp, 202);
    /* "at once": far below the bot's 5 s (the 202 waits for Redis only) */
    if (resp.elapsed_ms >= 2000)
        fail_msg("the 202 took %lld ms: ingress waited for the bot?", (long long)resp.elapsed_ms);
    bgt_http_resp_free(&resp);

    assert_int_equal(bgt_bot_wait_received(bot_dir, 1, 10000), 0);
    wait_requests_ended(id, 1, 15000);
    wait_drained(5000);

    bgt_bot_request *all, mine[8];
    size_t n_all;
    size_t n = requests_for(id, mine, 8, &all, &n_all);
    if (n != 1)
        fail_msg("the bot received %s %zu times, expected once", id, n);
    assert_string_equal(mine[0].outcome, "answered");
    assert_int_equal(mine[0].status, 200);
    assert_int_equal(mine[0].attempt, 1);
    assert_non_null(mine[0].received_at); /* X-Botgate-Received-At */
    int64_t received_at = atoll(mine[0].received_at);
    assert_true(received_at >= t0 - 1000000 && received_at <= mine[0].t_us);
    assert_int_equal(mine[0].body_len, body_len); /* the original bytes */
    assert_true(mine[0].done_us - mine[0].t_us >= 5000 * 1000 - EARLY_SLACK_MS * 1000);
    bgt_bot_requests_free(all, n_all);
    assert_int_equal(n_all, 1); /* nothing else reached the bot */
    assert_int_equal(hlen(stream_retry), 0);
    assert_int_equal(xlen(stream_dlq), 0);
    stop_all();
}

/* Activity ids of the order test: "<tag>.<conversation>.<sequence>". */
static bool
parse_seq_id(const char *id, const char *tag, int *conv, int *seq)
{
    size_t tl = strlen(tag);
    if (id == NULL || strncmp(id, tag, tl) != 0 || id[tl] != '.')
        return false;
    return sscanf(id + tl + 1, "%d.%d", conv, seq) == 2;
}

#define ORDER_CONVS 5
#define ORDER_PER_CONV 20

/*
 * 5 conversations × 20 activities queued, then delivered by a botgate with concurrency 8 to a
 * bot that takes 0–30 ms at random: each conversation's activities arrive in stream order and
 * one at a time (the next arrives only after the previous was answered); conversations run in
 * parallel (their time spans overlap; several requests in flight at the bot) and never more
 * than bot.concurrency at once.
 */
static void
test_order_per_conversation(void **state)
{
    (void)state;
    use_stream("order");
    start_bot("order");
    assert_int_equal(bgt_bot_set_delay_random(bot_dir, 0, 30), 0);

    /* Queue the whole backlog first (an ingress alone), so that the dispatcher finds every
     * conversation ready at once: parallelism does not depend on how fast the test posts. */
    char tag[64];
    fresh_tag(tag, sizeof(tag), "ord-");
    bgt_botgate_role = "ingress";
    start_gate(&gate2, base2, sizeof(base2), "order-ingress", &(gate_opts){0});
    for (int s = 0; s < ORDER_PER_CONV; s++) {
        for (int c = 0; c < ORDER_CONVS; c++) {
            char id[96], conv[96];
            snprintf(id, sizeof(id), "%s.%d.%d", tag, c, s);
            snprintf(conv, sizeof(conv), "a:%s-conv-%d", tag, c);
            post_message(base2, NULL, id, conv);
        }
    }
    assert_int_equal(xlen(stream), ORDER_CONVS * ORDER_PER_CONV);
    assert_int_equal(bgt_botgate_stop(&gate2), 0);
    bgt_botgate_role = NULL;

    start_gate(&gate, base, sizeof(base), "order", &(gate_opts){.concurrency = 8});
    assert_int_equal(bgt_bot_wait_answered(bot_dir, ORDER_CONVS * ORDER_PER_CONV, 60000), 0);
    wait_drained(5000);

    bgt_bot_request *v;
    size_t n;
    assert_int_equal(bgt_bot_received(bot_dir, &v, &n), 0);
    if (n != ORDER_CONVS * ORDER_PER_CONV)
        fail_msg("the bot received %zu requests, expected %d (each activity once)", n,
                 ORDER_CONVS * ORDER_PER_CONV);
    int next[ORDER_CONVS] = {0};
    int64_t first[ORDER_CONVS] = {0}, last[ORDER_CONVS] = {0}, prev_done[ORDER_CONVS] = {0};
    for (size_t i = 0; i < n; i++) {
        int c, s;
        if (!parse_seq_id(v[i].activity_id, tag, &c, &s) || c < 0 || c >= ORDER_CONVS)
            fail_msg("unexpected activity %s at the bot", v[i].activity_id);
        if (s != next[c])
            fail_msg("conversation %d: activity %d arrived where %d was due (out of order or "
                     "twice)",
                     c, s, next[c]);
        assert_int_equal(v[i].attempt, 1);
        assert_string_equal(v[i].outcome, "answered");
        /* one at a time: this one arrived after the previous one was answered */
        if (s > 0 && v[i].t_us < prev_done[c])
            fail_msg("conversation %d: activity %d arrived %lld µs before %d was answered", c, s,
                     (long long)(prev_done[c] - v[i].t_us), s - 1);
        prev_done[c] = v[i].done_us;
        if (s == 0)
            first[c] = v[i].t_us;
        last[c] = v[i].t_us;
        next[c]++;
    }
    bgt_bot_requests_free(v, n);
    for (int c = 0; c < ORDER_CONVS; c++)
        assert_int_equal(next[c], ORDER_PER_CONV);
    /* parallel: some conversation began before another one ended */
    int overlapping = 0;
    for (int a = 0; a < ORDER_CONVS; a++)
        for (int b = 0; b < ORDER_CONVS; b++)
            overlapping += a != b && first[a] < last[b] && first[b] < last[a];
    if (overlapping == 0)
        fail_msg("the conversations were delivered one after the other, not in parallel");
    long received, max_in_flight;
    assert_int_equal(bgt_bot_stats(bot_dir, &received, &max_in_flight), 0);
    fprintf(stderr, "order: %d conversation pairs overlap; at most %ld requests in flight\n",
            overlapping / 2, max_in_flight);
    assert_true(max_in_flight > 1);
    assert_true(max_in_flight <= 8);           /* bot.concurrency */
    assert_true(max_in_flight <= ORDER_CONVS); /* one head per conversation */
    stop_all();
}

/* When one attempt arrived at the bot and when it ended there. */
typedef struct attempt_times {
    int64_t t_us, done_us;
} attempt_times;

/*
 * The bot received exactly n requests for id, carrying X-Botgate-Attempt 1..n, ended with
 * statuses[i] (0: no answer: the connection was closed, or botgate gave up waiting). Their
 * times go to out.
 */
static void
expect_attempts(const char *id, size_t n, const int *statuses, attempt_times *out)
{
    bgt_bot_request *all, r[16];
    size_t n_all;
    size_t got = requests_for(id, r, 16, &all, &n_all);
    if (got != n) {
        bgt_bot_requests_free(all, n_all);
        fail_msg("the bot received %s %zu times, expected %zu", id, got, n);
    }
    for (size_t i = 0; i < n; i++) {
        bool answered = strcmp(r[i].outcome, "answered") == 0;
        if (r[i].attempt != (int)i + 1 ||
            (statuses[i] != 0 && (!answered || r[i].status != statuses[i])) ||
            (statuses[i] == 0 && answered))
            fail_msg("%s, request %zu: X-Botgate-Attempt %d, %s %d; expected attempt %zu, %d", id,
                     i + 1, r[i].attempt, r[i].outcome, r[i].status, i + 1, statuses[i]);
        out[i] = (attempt_times){r[i].t_us, r[i].done_us};
    }
    bgt_bot_requests_free(all, n_all);
}

/* The wait before attempt i + 1 (i >= 1): from the end of attempt i at the bot to the next
 * arrival. It is at least half the back-off base (the jitter spreads it over [base/2,
 * base)); the upper bound only catches a retry that never came in time. */
static int64_t
expect_backoff(const char *id, const attempt_times *t, size_t i, int64_t base_ms)
{
    int64_t gap = (t[i].t_us - t[i - 1].done_us) / 1000;
    fprintf(stderr, "retry: %s attempt %zu → %zu after %lld ms (base %lld)\n", id, i, i + 1,
            (long long)gap, (long long)base_ms);
    if (gap < base_ms / 2 - EARLY_SLACK_MS || gap > base_ms + LATE_SLACK_MS)
        fail_msg("%s: wait before attempt %zu was %lld ms, outside [%lld, %lld)", id, i + 1,
                 (long long)gap, (long long)(base_ms / 2), (long long)base_ms);
    return gap;
}

/*
 * Retries: 503, 503, 200 → delivered on the third attempt, once acknowledged; the attempts
 * carry X-Botgate-Attempt 1, 2, 3, and each wait is at least half its back-off base (100 ms
 * doubling: ≥ 50 ms, then ≥ 100 ms). A second activity (its own conversation) answered 503
 * four times shows the growth past the jitter: its fourth wait (base 800 ms, ≥ 400 ms) is
 * longer than its first (< 100 ms plus overhead). The other retryable outcomes: 408; no
 * answer within bot.timeout_s (1 s); the connection closed without an answer.
 */
static void
test_retry_backoff(void **state)
{
    (void)state;
    use_stream("retry");
    start_bot("retry");
    char tag[64], a[96], b[96], c408[96], chang[96], cclose[96];
    fresh_tag(tag, sizeof(tag), "retry-");
    snprintf(a, sizeof(a), "%s.a", tag);
    snprintf(b, sizeof(b), "%s.b", tag);
    snprintf(c408, sizeof(c408), "%s.408", tag);
    snprintf(chang, sizeof(chang), "%s.hang", tag);
    snprintf(cclose, sizeof(cclose), "%s.close", tag);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, a, "503\n503\n200\n"), 0);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, b, "503\n503\n503\n503\n200\n"), 0);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, c408, "408\n200\n"), 0);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, chang, "hang\n200\n"), 0);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, cclose, "close\n200\n"), 0);
    start_gate(&gate, base, sizeof(base), "retry", &(gate_opts){.timeout_s = 1});

    const char *ids[] = {a, b, c408, chang};
    for (size_t i = 0; i < 4; i++) {
        char conv[128];
        snprintf(conv, sizeof(conv), "a:%s", ids[i]);
        post_message(base, NULL, ids[i], conv);
    }
    wait_requests_ended(a, 3, 15000);
    wait_requests_ended(b, 5, 15000);
    wait_requests_ended(c408, 2, 15000);
    wait_requests_ended(chang, 2, 15000);
    wait_drained(5000);

    attempt_times ta[3], tb[5], t408[2], thang[2], tclose[2];
    expect_attempts(a, 3, (const int[]){503, 503, 200}, ta);
    expect_attempts(b, 5, (const int[]){503, 503, 503, 503, 200}, tb);
    expect_attempts(c408, 2, (const int[]){408, 200}, t408);
    expect_attempts(chang, 2, (const int[]){0, 200}, thang);
    expect_backoff(a, ta, 1, BACKOFF_INITIAL_MS);
    expect_backoff(a, ta, 2, BACKOFF_INITIAL_MS * 2);
    int64_t first = expect_backoff(b, tb, 1, BACKOFF_INITIAL_MS);
    expect_backoff(b, tb, 2, BACKOFF_INITIAL_MS * 2);
    expect_backoff(b, tb, 3, BACKOFF_INITIAL_MS * 4);
    int64_t fourth = expect_backoff(b, tb, 4, BACKOFF_INITIAL_MS * 8);
    if (fourth <= first)
        fail_msg("no back-off growth: the 4th wait (%lld ms) is not longer than the 1st (%lld ms)",
                 (long long)fourth, (long long)first);
    expect_backoff(c408, t408, 1, BACKOFF_INITIAL_MS);
    /* the hung attempt was given up after bot.timeout_s, then retried after the back-off */
    int64_t hung_ms = (thang[1].t_us - thang[0].t_us) / 1000;
    fprintf(stderr, "retry: %s retried %lld ms after the attempt that got no answer\n", chang,
            (long long)hung_ms);
    if (hung_ms < 1000 + BACKOFF_INITIAL_MS / 2 - EARLY_SLACK_MS ||
        hung_ms > 1000 + BACKOFF_INITIAL_MS + LATE_SLACK_MS)
        fail_msg("%s: the retry after a 1 s timeout came %lld ms after the first attempt", chang,
                 (long long)hung_ms);

    /* The connection closed without an answer, on a kept-alive connection (botgate's pool
     * holds idle ones from the deliveries above, as it does in production): one failed
     * attempt, then a retry after the back-off, counted as attempt 2. */
    char conv[128];
    snprintf(conv, sizeof(conv), "a:%s", cclose);
    post_message(base, NULL, cclose, conv);
    wait_requests_ended(cclose, 2, 15000);
    wait_drained(5000);
    expect_attempts(cclose, 2, (const int[]){0, 200}, tclose);
    expect_backoff(cclose, tclose, 1, BACKOFF_INITIAL_MS);

    /* once acknowledged: gone from the stream, nothing pending, no retry state, no dead letter */
    assert_int_equal(hlen(stream_retry), 0);
    assert_int_equal(xlen(stream_dlq), 0);
    stop_all();
}

/*
 * The bot is down (connection refused) when the activity comes: botgate keeps retrying,
 * with the attempt count and "no answer" (status 0) in the retry hash, and delivers it once
 * the bot is back on its port.
 */
static void
test_bot_down_then_back(void **state)
{
    (void)state;
    use_stream("down");
    start_bot("down");
    start_gate(&gate, base, sizeof(base), "down", &(gate_opts){0});
    assert_int_equal(bgt_bot_stop(bot_dir), 0);
    char tag[64], id[96], conv[96], sid[48];
    fresh_tag(tag, sizeof(tag), "down-");
    snprintf(id, sizeof(id), "%s.0", tag);
    snprintf(conv, sizeof(conv), "a:%s", tag);
    post_message(base, NULL, id, conv);
    wait_stream_id(id, sid, sizeof(sid), 2000);
    int attempt = 0;
    long long next_ms = 0;
    long status = -1;
    int64_t deadline = bgt_mono_ms() + 10000;
    while (attempt < 2) {
        redisReply *r = bgt_redis_cmd(&redis, "HGET %s %s", stream_retry, sid);
        assert_non_null(r);
        if (r->type == REDIS_REPLY_STRING)
            sscanf(r->str, "%d %lld %ld", &attempt, &next_ms, &status);
        freeReplyObject(r);
        if (attempt < 2 && bgt_mono_ms() >= deadline)
            fail_msg("no second failed attempt recorded for %s while the bot is down", sid);
        bgt_sleep_ms(20);
    }
    assert_int_equal(status, 0); /* no HTTP answer */
    int port = bot_port;
    assert_int_equal(bgt_bot_start(bot_dir, &port), 0);
    assert_int_equal(port, bot_port);
    wait_requests_ended(id, 1, 10000);
    wait_drained(5000);
    bgt_bot_request *all, r[4];
    size_t n_all;
    size_t n = requests_for(id, r, 4, &all, &n_all);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].outcome, "answered");
    fprintf(stderr, "down: delivered on attempt %d once the bot was back\n", r[0].attempt);
    assert_true(r[0].attempt >= 3); /* the count went on through the outage */
    bgt_bot_requests_free(all, n_all);
    assert_int_equal(xlen(stream_dlq), 0);
    stop_all();
}

/*
 * 429 with Retry-After: 1 → the next attempt waits the second the bot asked for (the own
 * back-off would be 50–100 ms), and meanwhile the retry state (attempt count, next time,
 * last status) is in the hash <stream>:retry, so that a restart would keep it.
 */
static void
test_retry_after(void **state)
{
    (void)state;
    use_stream("retryafter");
    start_bot("retryafter");
    char tag[64], id[96], conv[96];
    fresh_tag(tag, sizeof(tag), "ra-");
    snprintf(id, sizeof(id), "%s.0", tag);
    snprintf(conv, sizeof(conv), "a:%s", tag);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, id, "429\n200\n"), 0);
    assert_int_equal(bgt_bot_set_retry_after(bot_dir, "1"), 0);
    start_gate(&gate, base, sizeof(base), "retryafter", &(gate_opts){0});

    post_message(base, NULL, id, conv);
    wait_requests_ended(id, 1, 10000);
    /* between the attempts: the retry state is in Redis */
    char sid[48];
    wait_stream_id(id, sid, sizeof(sid), 2000);
    int64_t deadline = bgt_mono_ms() + 2000;
    int attempt = 0;
    long long next_ms = 0;
    long status = 0;
    for (;;) {
        redisReply *r = bgt_redis_cmd(&redis, "HGET %s %s", stream_retry, sid);
        assert_non_null(r);
        if (r->type == REDIS_REPLY_STRING)
            sscanf(r->str, "%d %lld %ld", &attempt, &next_ms, &status);
        freeReplyObject(r);
        if (attempt > 0 || bgt_mono_ms() >= deadline)
            break;
        bgt_sleep_ms(10);
    }
    if (attempt != 1 || status != 429)
        fail_msg("retry state of %s: attempt %d, status %ld; expected attempt 1 after a 429", sid,
                 attempt, status);
    wait_requests_ended(id, 2, 10000);
    wait_drained(5000);

    bgt_bot_request *all, r[4];
    size_t n_all;
    size_t n = requests_for(id, r, 4, &all, &n_all);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].status, 429);
    assert_int_equal(r[1].status, 200);
    assert_int_equal(r[1].attempt, 2);
    int64_t gap = (r[1].t_us - r[0].done_us) / 1000;
    int64_t first_end_ms = r[0].done_us / 1000;
    bgt_bot_requests_free(all, n_all);
    fprintf(stderr,
            "retry-after: second attempt %lld ms after the 429; next time recorded %lld "
            "ms after it\n",
            (long long)gap, next_ms - (long long)first_end_ms);
    if (gap < 1000 - EARLY_SLACK_MS || gap > 1000 + LATE_SLACK_MS)
        fail_msg("the attempt after 429 + Retry-After: 1 came %lld ms later, not ~1000 ms",
                 (long long)gap);
    assert_true(next_ms >= first_end_ms + 1000 - EARLY_SLACK_MS);
    assert_int_equal(hlen(stream_retry), 0);
    stop_all();
}

/*
 * The retry state lives in Redis: a botgate killed during a back-off (503 + Retry-After: 3)
 * and restarted at once under the same consumer name neither retries early nor starts the
 * attempt count over.
 */
static void
test_retry_state_survives_restart(void **state)
{
    (void)state;
    use_stream("keepstate");
    start_bot("keepstate");
    char tag[64], id[96], conv[96], sid[48];
    fresh_tag(tag, sizeof(tag), "keep-");
    snprintf(id, sizeof(id), "%s.0", tag);
    snprintf(conv, sizeof(conv), "a:%s", tag);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, id, "503\n200\n"), 0);
    assert_int_equal(bgt_bot_set_retry_after(bot_dir, "3"), 0);
    gate_opts o = {.suffix = "-keepstate", .claim_idle_s = 60, .backoff_max_ms = 5000};
    start_gate(&gate, base, sizeof(base), "keepstate-1", &o);
    post_message(base, NULL, id, conv);
    wait_requests_ended(id, 1, 10000);
    wait_stream_id(id, sid, sizeof(sid), 2000);
    int attempt = 0;
    long long next_ms = 0;
    long status = 0;
    int64_t deadline = bgt_mono_ms() + 5000;
    while (attempt < 1) {
        redisReply *r = bgt_redis_cmd(&redis, "HGET %s %s", stream_retry, sid);
        assert_non_null(r);
        if (r->type == REDIS_REPLY_STRING)
            sscanf(r->str, "%d %lld %ld", &attempt, &next_ms, &status);
        freeReplyObject(r);
        if (attempt < 1 && bgt_mono_ms() >= deadline)
            fail_msg("no retry state recorded for %s after the 503", sid);
        bgt_sleep_ms(10);
    }
    assert_int_equal(status, 503);
    bgt_botgate_kill(&gate);
    start_gate(&gate, base, sizeof(base), "keepstate-2", &o);
    int64_t restarted_ms = bgt_wall_us() / 1000;
    fprintf(stderr, "keepstate: restarted %lld ms before the recorded next attempt\n",
            next_ms - (long long)restarted_ms);
    /* the test means something only if the restart beat the back-off */
    assert_true(restarted_ms < next_ms);
    wait_requests_ended(id, 2, 10000);
    wait_drained(5000);
    attempt_times t[2];
    expect_attempts(id, 2, (const int[]){503, 200}, t); /* attempt 2, not 1 again */
    int64_t gap = (t[1].t_us - t[0].done_us) / 1000;
    fprintf(stderr, "keepstate: attempt 2 came %lld ms after the 503 (Retry-After: 3)\n",
            (long long)gap);
    if (gap < 3000 - EARLY_SLACK_MS || t[1].t_us / 1000 < next_ms - EARLY_SLACK_MS)
        fail_msg("attempt 2 came %lld ms after the 503: the restart reset the back-off",
                 (long long)gap);
    stop_all();
}

/*
 * Dead letters, with authentication on (the token travels with the entry): a 400 goes to
 * the DLQ at once (http_4xx, 1 attempt, last status 400); 500 until bot.max_attempts (3) →
 * max_attempts, 3 attempts, 500; a token that expired 10 s ago (ingress still accepts it
 * within the 300 s clock skew) → token_expired_in_queue without any attempt; a good one is
 * delivered with its Authorization header. Then `botgate dlq replay` of the 400 (the bot
 * now accepts it) puts it back, and it is delivered, attempt count reset.
 */
static void
test_dead_letters(void **state)
{
    (void)state;
    use_stream("dlq");
    start_connector();
    start_bot("dlq");
    char tag[64], id400[96], id500[96], idexp[96], idok[96], conv[4][96];
    fresh_tag(tag, sizeof(tag), "dlq-");
    snprintf(id400, sizeof(id400), "%s.400", tag);
    snprintf(id500, sizeof(id500), "%s.500", tag);
    snprintf(idexp, sizeof(idexp), "%s.exp", tag);
    snprintf(idok, sizeof(idok), "%s.ok", tag);
    for (int i = 0; i < 4; i++)
        snprintf(conv[i], sizeof(conv[i]), "a:%s-%d", tag, i);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, id400, "400\n"), 0);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, id500, "500\n"), 0);
    start_gate(&gate, base, sizeof(base), "dlq", &(gate_opts){.max_attempts = 3, .auth = true});

    char *good = mint(3600);
    char *expired = mint(-10);
    int64_t t0_ms = bgt_wall_us() / 1000;
    post_message(base, good, id400, conv[0]);
    post_message(base, good, id500, conv[1]);
    post_message(base, expired, idexp, conv[2]);
    post_message(base, good, idok, conv[3]);
    int64_t t1_ms = bgt_wall_us() / 1000;

    dead_letter d400 = wait_dead_letter(id400, 10000);
    dead_letter d500 = wait_dead_letter(id500, 10000);
    dead_letter dexp = wait_dead_letter(idexp, 10000);
    wait_requests_ended(idok, 1, 10000);
    wait_drained(5000);

    assert_int_equal(d400.fields, 7);
    assert_string_equal(d400.reason, "http_4xx");
    assert_int_equal(d400.attempts, 1);
    assert_int_equal(d400.last_status, 400);
    assert_true(d400.failed_at_ms >= t0_ms && d400.failed_at_ms <= bgt_wall_us() / 1000);
    /* the original id: an id of the main stream, from when it was posted */
    long long orig_ms = atoll(d400.original_id);
    assert_non_null(strchr(d400.original_id, '-'));
    assert_true(orig_ms >= t0_ms - 1000 && orig_ms <= t1_ms + 1000);
    assert_int_equal(bot_count(id400), 1); /* at once: no retry of a 400 */

    assert_int_equal(d500.fields, 7);
    assert_string_equal(d500.reason, "max_attempts");
    assert_int_equal(d500.attempts, 3);
    assert_int_equal(d500.last_status, 500);
    assert_int_equal(bot_count(id500), 3);

    assert_int_equal(dexp.fields, 7);
    assert_string_equal(dexp.reason, "token_expired_in_queue");
    assert_int_equal(dexp.attempts, 0);
    assert_true(dexp.token_exp > 0 && dexp.token_exp < bgt_wall_s());
    assert_int_equal(bot_count(idexp), 0); /* never delivered */

    /* the good one reached the bot with the token (a legacy bot checks it) */
    bgt_bot_request *all, r[4];
    size_t n_all;
    size_t n = requests_for(idok, r, 4, &all, &n_all);
    assert_int_equal(n, 1);
    assert_true(r[0].authorization);
    assert_int_equal(r[0].status, 200);
    bgt_bot_requests_free(all, n_all);
    assert_int_equal(xlen(stream_dlq), 3);

    /* dlq replay: the bot accepts it now; back in the stream, delivered, attempt 1 again */
    char log[BGT_PATH_MAX];
    bgt_path(log, sizeof(log), env.dir, "dlq-list.log");
    const char *list[] = {"dlq", "list", "-c", gate.config, NULL};
    char *err = NULL;
    int rc = bgt_botgate_run(list, log, 20000, &err);
    if (rc == 2 && err != NULL && strstr(err, "unknown command") != NULL) {
        fprintf(stderr, "SKIPPED: this botgate has no `dlq` command: dlq replay not tested\n");
        free(err);
    } else {
        if (rc != 0)
            fail_msg("botgate dlq list: exit %d: %s", rc, err != NULL ? err : "");
        free(err);
        /* one line per letter, naming its reason */
        char *out = bgt_read_file(log, NULL);
        assert_non_null(out);
        assert_non_null(strstr(out, d400.id));
        assert_non_null(strstr(out, "http_4xx"));
        assert_non_null(strstr(out, "max_attempts"));
        assert_non_null(strstr(out, "token_expired_in_queue"));
        free(out);

        assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, id400, "200\n"), 0);
        bgt_path(log, sizeof(log), env.dir, "dlq-replay.log");
        const char *replay[] = {"dlq", "replay", d400.id, "-c", gate.config, NULL};
        rc = bgt_botgate_run(replay, log, 20000, &err);
        if (rc != 0)
            fail_msg("botgate dlq replay %s: exit %d: %s", d400.id, rc, err != NULL ? err : "");
        free(err);
        wait_requests_ended(id400, 2, 10000);
        wait_drained(5000);
        n = requests_for(id400, r, 4, &all, &n_all);
        assert_int_equal(n, 2);
        assert_int_equal(r[1].attempt, 1); /* the attempt count starts over */
        assert_int_equal(r[1].status, 200);
        assert_true(r[1].authorization);
        bgt_bot_requests_free(all, n_all);
        assert_int_equal(xlen(stream_dlq), 2); /* the replayed letter left the DLQ */
        dead_letter left[4];
        size_t nl = dead_letters(left, 4);
        for (size_t i = 0; i < nl; i++)
            assert_string_not_equal(left[i].activity_id, id400);
    }
    free(good);
    free(expired);
    stop_all();
}

#define CRASH_CONVS 10
#define CRASH_PER_CONV 4
#define CRASH_TOTAL (CRASH_CONVS * CRASH_PER_CONV)

/*
 * kill -9 while deliveries are in flight, then another member of the group (another
 * consumer name) takes over after bot.claim_idle_s: every acknowledged activity reaches the
 * bot at least once, duplicates are at most what was in flight at the kill, and within a
 * conversation the arrivals stay in order (a duplicate repeats the one that was in flight).
 */
static void
test_crash_claimed_by_another(void **state)
{
    (void)state;
    use_stream("crash");
    start_bot("crash");
    assert_int_equal(bgt_bot_set_delay(bot_dir, 2000), 0);
    start_gate(&gate, base, sizeof(base), "crash-a",
               &(gate_opts){.concurrency = 4, .claim_idle_s = 2, .suffix = "-crash-a"});
    char tag[64];
    fresh_tag(tag, sizeof(tag), "crash-");
    for (int s = 0; s < CRASH_PER_CONV; s++)
        for (int c = 0; c < CRASH_CONVS; c++) {
            char id[96], conv[96];
            snprintf(id, sizeof(id), "%s.%d.%d", tag, c, s);
            snprintf(conv, sizeof(conv), "a:%s-conv-%d", tag, c);
            post_message(base, NULL, id, conv); /* 202: acknowledged */
        }

    /* Kill while a batch is in flight and the one before it is acknowledged: a first batch
     * answered and its entries gone from the stream (XACK + XDEL recorded), the next 4 at
     * the bot, their answers 2 s away. Then "in flight at the kill" is exactly those 4. */
    int64_t deadline = bgt_mono_ms() + 20000;
    for (;;) {
        bgt_bot_request *v;
        size_t n, answered = 0, pending = 0;
        assert_int_equal(bgt_bot_received(bot_dir, &v, &n), 0);
        for (size_t i = 0; i < n; i++) {
            answered += strcmp(v[i].outcome, "answered") == 0;
            pending += v[i].outcome[0] == '\0';
        }
        bgt_bot_requests_free(v, n);
        long long len = xlen(stream);
        if (answered >= 4 && pending == 4 && len == CRASH_TOTAL - (long long)answered)
            break;
        if (bgt_mono_ms() >= deadline)
            fail_msg("no moment with a batch acknowledged and 4 in flight (%zu answered, %zu "
                     "in flight, XLEN %lld)",
                     answered, pending, len);
        bgt_sleep_ms(10);
    }
    /* 10 conversations ready, bot.concurrency 4: never more than 4 at the bot */
    long max_in_flight;
    assert_int_equal(bgt_bot_stats(bot_dir, NULL, &max_in_flight), 0);
    assert_int_equal(max_in_flight, 4);
    int64_t kill_us = bgt_wall_us();
    bgt_botgate_kill(&gate);                              /* SIGKILL */
    assert_int_equal(bgt_bot_set_delay(bot_dir, 100), 0); /* the rest quickly */

    /* What was in flight at the kill: arrived before it, not answered before it. */
    bgt_bot_request *v;
    size_t n;
    assert_int_equal(bgt_bot_received(bot_dir, &v, &n), 0);
    long in_flight = 0;
    for (size_t i = 0; i < n; i++)
        in_flight += v[i].t_us < kill_us && (v[i].done_us == 0 || v[i].done_us >= kill_us ||
                                             strcmp(v[i].outcome, "answered") != 0);
    bgt_bot_requests_free(v, n);
    fprintf(stderr, "crash: %ld deliveries in flight at the kill\n", in_flight);
    assert_int_equal(in_flight, 4); /* bot.concurrency */

    int64_t b_start = bgt_mono_ms();
    start_gate(&gate2, base2, sizeof(base2), "crash-b",
               &(gate_opts){.concurrency = 4, .claim_idle_s = 2, .suffix = "-crash-b"});
    /* every acknowledged activity reaches the bot (the claim, then 36 × 100 ms / 4) */
    deadline = bgt_mono_ms() + 30000;
    int seen[CRASH_CONVS][CRASH_PER_CONV];
    size_t missing;
    for (;;) {
        memset(seen, 0, sizeof(seen));
        assert_int_equal(bgt_bot_received(bot_dir, &v, &n), 0);
        for (size_t i = 0; i < n; i++) {
            int c, s;
            if (parse_seq_id(v[i].activity_id, tag, &c, &s) && c >= 0 && c < CRASH_CONVS &&
                s >= 0 && s < CRASH_PER_CONV && strcmp(v[i].outcome, "answered") == 0)
                seen[c][s]++;
        }
        bgt_bot_requests_free(v, n);
        missing = 0;
        for (int c = 0; c < CRASH_CONVS; c++)
            for (int s = 0; s < CRASH_PER_CONV; s++)
                missing += seen[c][s] == 0;
        if (missing == 0)
            break;
        if (bgt_mono_ms() >= deadline)
            fail_msg("%zu acknowledged activities never reached the bot after the crash", missing);
        bgt_sleep_ms(50);
    }
    wait_drained(10000);
    fprintf(stderr, "crash: the second member delivered the rest %lld ms after its start\n",
            (long long)(bgt_mono_ms() - b_start));

    /* duplicates, and order within each conversation */
    assert_int_equal(bgt_bot_received(bot_dir, &v, &n), 0);
    long dups = (long)n - CRASH_TOTAL;
    int last_seq[CRASH_CONVS];
    for (int c = 0; c < CRASH_CONVS; c++)
        last_seq[c] = -1;
    for (size_t i = 0; i < n; i++) {
        int c, s;
        if (!parse_seq_id(v[i].activity_id, tag, &c, &s) || c < 0 || c >= CRASH_CONVS)
            fail_msg("unexpected activity %s at the bot", v[i].activity_id);
        if (s < last_seq[c])
            fail_msg("conversation %d: activity %d arrived after %d", c, s, last_seq[c]);
        last_seq[c] = s;
    }
    bgt_bot_requests_free(v, n);
    fprintf(stderr, "crash: %zu requests for %d activities: %ld duplicates (%ld in flight)\n", n,
            CRASH_TOTAL, dups, in_flight);
    assert_true(dups >= 0);
    if (dups > in_flight)
        fail_msg("%ld duplicates, but only %ld deliveries were in flight at the kill", dups,
                 in_flight);
    stop_all();
}

/*
 * A restart under the SAME consumer name takes back its own pending entries at once: with
 * bot.claim_idle_s 60, nothing could have been claimed within the test's 15 s, yet every
 * activity is delivered.
 */
static void
test_restart_same_consumer(void **state)
{
    (void)state;
    use_stream("same");
    start_bot("same");
    assert_int_equal(bgt_bot_set_delay(bot_dir, 2000), 0);
    gate_opts o = {.concurrency = 4, .claim_idle_s = 60, .suffix = "-same"};
    start_gate(&gate, base, sizeof(base), "same-1", &o);
    char tag[64], ids[6][96];
    fresh_tag(tag, sizeof(tag), "same-");
    for (int c = 0; c < 6; c++) {
        char conv[96];
        snprintf(ids[c], sizeof(ids[c]), "%s.%d.0", tag, c);
        snprintf(conv, sizeof(conv), "a:%s-conv-%d", tag, c);
        post_message(base, NULL, ids[c], conv);
    }
    assert_int_equal(bgt_bot_wait_received(bot_dir, 4, 10000), 0);
    bgt_botgate_kill(&gate);
    assert_int_equal(bgt_bot_set_delay(bot_dir, 0), 0);
    assert_int_equal(xpending(), 6); /* all six read, four in flight, all pending */

    int64_t t0 = bgt_mono_ms();
    start_gate(&gate, base, sizeof(base), "same-2", &o);
    for (int c = 0; c < 6; c++) {
        int64_t deadline = t0 + 15000;
        while (bot_delivered(ids[c]) < 1) { /* every one, at least once */
            if (bgt_mono_ms() >= deadline)
                fail_msg("%s not delivered within 15 s of the restart (claim_idle_s is 60)",
                         ids[c]);
            bgt_sleep_ms(20);
        }
    }
    wait_drained(5000);
    fprintf(stderr, "same consumer: drained %lld ms after the restart\n",
            (long long)(bgt_mono_ms() - t0));
    bgt_bot_request *v;
    size_t n;
    assert_int_equal(bgt_bot_received(bot_dir, &v, &n), 0);
    bgt_bot_requests_free(v, n);
    assert_true(n >= 6 && n <= 6 + 4); /* at most the four in flight again */
    stop_all();
}

/* POSTs an invoke named name, or (mode set) a message with that deliveryMode. */
static void
invoke(const char *name, const char *mode, const char *id, bgt_http_resp *resp)
{
    char conv[160];
    snprintf(conv, sizeof(conv), "a:%s", id);
    char *body = mode != NULL ? activity("message", id, conv, NULL, mode)
                              : activity("invoke", id, conv, name, NULL);
    post(base, NULL, body, resp);
    free(body);
}

static void
expect_deadline(const bgt_http_resp *r, int deadline_ms)
{
    bgt_expect_error(r, 504, "bot_timeout");
    fprintf(stderr, "sync: fallback after %lld ms (deadline %d ms)\n", (long long)r->elapsed_ms,
            deadline_ms);
    if (r->elapsed_ms < deadline_ms - EARLY_SLACK_MS || r->elapsed_ms > deadline_ms + LATE_SLACK_MS)
        fail_msg("the fallback came after %lld ms, not at the %d ms deadline",
                 (long long)r->elapsed_ms, deadline_ms);
}

/*
 * Synchronous activities: an invoke is proxied to the bot and its status and body come
 * back; a bot slower than policy.sync_deadline_ms gets the fallback (504, bot_timeout) at
 * the deadline; composeExtension/... has its own, shorter deadline; expectReplies is
 * synchronous too; a bot that is down → 502 bot_unavailable. None of them is stored.
 */
static void
test_sync(void **state)
{
    (void)state;
    use_stream("sync");
    start_bot("sync");
    start_gate(&gate, base, sizeof(base), "sync", &(gate_opts){0});
    char tag[64], id[128];
    fresh_tag(tag, sizeof(tag), "sync-");
    bgt_http_resp resp;
    char ct[128];

    /* the bot answers in 200 ms: its status and body */
    const char *bot_body = "{\"status\":200,\"body\":{\"ok\":true}}";
    assert_int_equal(bgt_bot_set_delay(bot_dir, 200), 0);
    assert_int_equal(bgt_bot_set_body(bot_dir, bot_body), 0);
    snprintf(id, sizeof(id), "%s.fetch", tag);
    invoke("task/fetch", NULL, id, &resp);
    bgt_expect_status(&resp, 200);
    assert_int_equal(resp.body_len, strlen(bot_body));
    assert_memory_equal(resp.body, bot_body, resp.body_len);
    assert_non_null(bgt_http_header(&resp, "Content-Type", ct, sizeof(ct)));
    assert_non_null(strstr(ct, "application/json"));
    assert_true(resp.elapsed_ms >= 200 - EARLY_SLACK_MS);
    bgt_http_resp_free(&resp);
    /* once, and not through the queue: no X-Botgate-Attempt */
    bgt_bot_request *all, r[4];
    size_t n_all;
    assert_int_equal(requests_for(id, r, 4, &all, &n_all), 1);
    assert_int_equal(r[0].attempt, -1);
    assert_string_equal(r[0].type, "invoke");
    assert_string_equal(r[0].name, "task/fetch");
    bgt_bot_requests_free(all, n_all);

    /* the bot's own status comes back, whatever it is */
    snprintf(id, sizeof(id), "%s.refused", tag);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, id, "500\n"), 0);
    invoke("task/submit", NULL, id, &resp);
    bgt_expect_status(&resp, 500);
    assert_int_equal(resp.body_len, strlen(bot_body));
    bgt_http_resp_free(&resp);

    /* deliveryMode expectReplies: synchronous as well */
    const char *replies = "{\"activities\":[{\"type\":\"message\",\"text\":\"hi\"}]}";
    assert_int_equal(bgt_bot_set_body(bot_dir, replies), 0);
    snprintf(id, sizeof(id), "%s.replies", tag);
    invoke(NULL, "expectReplies", id, &resp);
    bgt_expect_status(&resp, 200);
    assert_int_equal(resp.body_len, strlen(replies));
    assert_memory_equal(resp.body, replies, resp.body_len);
    bgt_http_resp_free(&resp);
    assert_int_equal(bot_count(id), 1);

    /* slower than the deadline: the fallback, at the deadline */
    assert_int_equal(bgt_bot_set_body(bot_dir, bot_body), 0);
    assert_int_equal(bgt_bot_set_delay(bot_dir, SYNC_DEADLINE_MS + 3000), 0);
    snprintf(id, sizeof(id), "%s.slow", tag);
    invoke("task/fetch", NULL, id, &resp);
    expect_deadline(&resp, SYNC_DEADLINE_MS);
    bgt_http_resp_free(&resp);

    /* composeExtension/...: the shorter deadline */
    snprintf(id, sizeof(id), "%s.compose", tag);
    invoke("composeExtension/query", NULL, id, &resp);
    expect_deadline(&resp, COMPOSE_DEADLINE_MS);
    assert_true(resp.elapsed_ms < SYNC_DEADLINE_MS);
    bgt_http_resp_free(&resp);

    /* the bot is down (its record stays) */
    char record_dir[BGT_PATH_MAX];
    snprintf(record_dir, sizeof(record_dir), "%s", bot_dir);
    bot_dir[0] = '\0';
    assert_int_equal(bgt_bot_stop(record_dir), 0);
    snprintf(id, sizeof(id), "%s.down", tag);
    invoke("task/fetch", NULL, id, &resp);
    bgt_expect_error(&resp, 502, "bot_unavailable");
    bgt_http_resp_free(&resp);

    /* none of them was ever stored */
    assert_true(stream_never_added());
    assert_int_equal(xpending(), 0);
    assert_int_equal(bgt_bot_received(record_dir, &all, &n_all), 0);
    assert_int_equal(n_all, 5); /* each call once (the one while down never arrived) */
    for (size_t i = 0; i < n_all; i++)
        assert_int_equal(all[i].attempt, -1);
    bgt_bot_requests_free(all, n_all);
    stop_all();
}

/*
 * SIGTERM with a delivery in flight (bot takes 1 s): botgate waits for it, records the
 * acknowledgement and exits 0; nothing is pending afterwards.
 */
static void
test_sigterm_drains(void **state)
{
    (void)state;
    use_stream("drain");
    start_bot("drain");
    assert_int_equal(bgt_bot_set_delay(bot_dir, 1000), 0);
    start_gate(&gate, base, sizeof(base), "drain", &(gate_opts){0});
    char tag[64], id[96], conv[96];
    fresh_tag(tag, sizeof(tag), "drain-");
    snprintf(id, sizeof(id), "%s.0", tag);
    snprintf(conv, sizeof(conv), "a:%s", tag);
    post_message(base, NULL, id, conv);
    assert_int_equal(bgt_bot_wait_received(bot_dir, 1, 10000), 0);

    int64_t t0 = bgt_mono_ms();
    assert_int_equal(bgt_botgate_stop(&gate), 0); /* exit status 0 */
    int64_t exited_us = bgt_wall_us();
    fprintf(stderr, "drain: exited %lld ms after SIGTERM\n", (long long)(bgt_mono_ms() - t0));

    bgt_bot_request *all, r[4];
    size_t n_all;
    size_t n = requests_for(id, r, 4, &all, &n_all);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].outcome, "answered"); /* the delivery was let finish */
    assert_int_equal(r[0].status, 200);
    assert_true(exited_us >= r[0].done_us); /* botgate waited for the answer */
    bgt_bot_requests_free(all, n_all);
    long long pending = xpending(), len = xlen(stream);
    if (pending != 0 || len != 0)
        fail_msg("after the drain: XPENDING %lld, XLEN %lld (the acknowledgement was not "
                 "recorded before exit)",
                 pending, len);
    stop_all();
}

/*
 * SIGTERM with a delivery the bot never answers, shutdown_grace_s 1: botgate exits 0 after
 * about a second, and the entry stays pending; the next member of the group delivers it.
 */
static void
test_sigterm_grace_leaves_pending(void **state)
{
    (void)state;
    use_stream("grace");
    start_bot("grace");
    assert_int_equal(bgt_bot_set_hang(bot_dir, true), 0);
    start_gate(&gate, base, sizeof(base), "grace", &(gate_opts){.grace_s = 1});
    char tag[64], id[96], conv[96];
    fresh_tag(tag, sizeof(tag), "grace-");
    snprintf(id, sizeof(id), "%s.0", tag);
    snprintf(conv, sizeof(conv), "a:%s", tag);
    post_message(base, NULL, id, conv);
    assert_int_equal(bgt_bot_wait_received(bot_dir, 1, 10000), 0);

    int64_t t0 = bgt_mono_ms();
    assert_int_equal(bgt_botgate_stop(&gate), 0);
    int64_t took = bgt_mono_ms() - t0;
    fprintf(stderr, "grace: exited %lld ms after SIGTERM (grace 1 s)\n", (long long)took);
    if (took < 1000 - EARLY_SLACK_MS || took > 1000 + 4000)
        fail_msg("exit %lld ms after SIGTERM, not after the 1 s grace", (long long)took);
    assert_int_equal(xpending(), 1);
    assert_int_equal(xlen(stream), 1);

    /* the next consumer (another name: after claim_idle_s) delivers it */
    assert_int_equal(bgt_bot_set_hang(bot_dir, false), 0);
    start_gate(&gate2, base2, sizeof(base2), "grace-next", &(gate_opts){.claim_idle_s = 2});
    int64_t deadline = bgt_mono_ms() + 15000;
    for (;;) {
        bgt_bot_request *all, r[4];
        size_t n_all;
        size_t n = requests_for(id, r, 4, &all, &n_all);
        bool answered = n >= 2 && strcmp(r[n - 1].outcome, "answered") == 0;
        bgt_bot_requests_free(all, n_all);
        if (answered)
            break;
        if (bgt_mono_ms() >= deadline)
            fail_msg("the entry left pending was not delivered by the next consumer");
        bgt_sleep_ms(50);
    }
    wait_drained(5000);
    stop_all();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_slow_bot, teardown),
        cmocka_unit_test_teardown(test_order_per_conversation, teardown),
        cmocka_unit_test_teardown(test_retry_backoff, teardown),
        cmocka_unit_test_teardown(test_bot_down_then_back, teardown),
        cmocka_unit_test_teardown(test_retry_state_survives_restart, teardown),
        cmocka_unit_test_teardown(test_retry_after, teardown),
        cmocka_unit_test_teardown(test_dead_letters, teardown),
        cmocka_unit_test_teardown(test_crash_claimed_by_another, teardown),
        cmocka_unit_test_teardown(test_restart_same_consumer, teardown),
        cmocka_unit_test_teardown(test_sync, teardown),
        cmocka_unit_test_teardown(test_sigterm_drains, teardown),
        cmocka_unit_test_teardown(test_sigterm_grace_leaves_pending, teardown),
    };
    return bgt_main_with_redis(&env, &redis, "delivery", tests, sizeof(tests) / sizeof(tests[0]));
}
