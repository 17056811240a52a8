/*
 * Group commit of the queue: the activities botgate accepts in one turn of its event loop
 * are stored by ONE enqueue script call (EVALSHA, chunks of at most 256), each still with
 * its own verdict: stored (202), duplicate (202, nothing stored), queue full (503
 * queue_full) or a Redis error of its own (503 queue_error) that fails it alone.
 *
 * One turn is made deterministic from outside: N plain keep-alive connections are opened
 * and each is used once (a POST answered 202), so that botgate has accepted every one and
 * sits idle; then botgate is stopped (SIGSTOP), one whole request is written on every
 * connection, and botgate is continued (SIGCONT): its next epoll_wait returns all N
 * connections readable at once. The number of script calls is read from Redis's INFO
 * commandstats (cmdstat_evalsha + cmdstat_eval) around the burst.
 *
 * A real redis-server, a real botgate (plain listener, authentication off, role ingress:
 * no dispatcher consumes the stream under inspection). Cases a-c share one botgate on the
 * stream batch:activities; case d has its own with redis.maxlen 10 on batchfull:activities,
 * case e its own with redis.partitions 2 on batchpart:activities.
 * A botgate left stopped by a failed assertion is continued by the test's teardown.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "botgate/partition.h"
#include "harness.h"

#define STREAM "batch:activities"
#define FULL_STREAM "batchfull:activities"
#define FULL_MAXLEN 10
#define PART_STREAM "batchpart:activities"
#define PART_COUNT 2
/* The conversation of the warm-up POSTs (step 1 of a burst) unless a case names another. */
#define WARM_CONV "a:batch-warmup"
#define SERVICE_URL "https://smba.trafficmanager.net/emea/"
#define BODY_SIZE 1024
#define MAX_CONNS 64
/* Every answer of a burst within this (ASan build, loaded machine). */
#define READ_TIMEOUT_MS 20000
/* How long botgate stays stopped while the requests are written: the kernel has them all. */
#define STOPPED_MS 100

static bgt_env env;
static bgt_redis redis;
static bgt_botgate gate;      /* cases a-c */
static bgt_botgate full_gate; /* case d */
static bgt_botgate part_gate; /* case e */
static int gate_port;
static char state_dir[BGT_PATH_MAX];

/* The botgate a burst has stopped, 0 when none: the teardown continues it. */
static pid_t stopped_pid;
/* The burst's connections (-1: closed): the teardown closes what a failure left open. */
static int conns[MAX_CONNS];

/* One activity of a burst and what became of it. */
typedef struct item {
    char conv[64];
    char id[64];
    long status;   /* 0: no complete answer */
    char code[64]; /* the JSON error code of a non-2xx answer, "" if none */
} item;

/* ---- raw HTTP/1.1 over plain TCP ------------------------------------------------------------ */

static int
write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* POST /api/messages with the activity of it as body. malloc'd; *len its length. */
static char *
make_request(const item *it, size_t *len)
{
    char *body = bgt_teams_message(it->id, it->conv, SERVICE_URL, BODY_SIZE);
    size_t bl = strlen(body);
    size_t cap = bl + 256;
    char *req = malloc(cap);
    assert_non_null(req);
    int n = snprintf(req, cap,
                     "POST /api/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     bl, body);
    free(body);
    *len = (size_t)n;
    return req;
}

/* Reads one whole answer (status line, headers, Content-Length bytes of body) from fd by
 * deadline (bgt_mono_ms). Returns the status, 0 on timeout, closed connection or garbage;
 * the JSON error code of the body goes to code ("" when it has none). */
static long
read_response(int fd, int64_t deadline, char *code, size_t code_cap)
{
    char buf[16384];
    size_t got = 0;
    long status = 0;
    size_t head_len = 0, content_length = 0;
    code[0] = '\0';
    for (;;) {
        buf[got] = '\0';
        if (head_len == 0) {
            char *end = strstr(buf, "\r\n\r\n");
            if (end != NULL) {
                head_len = (size_t)(end - buf) + 4;
                if (sscanf(buf, "HTTP/1.1 %ld", &status) != 1)
                    return 0;
                for (char *line = strstr(buf, "\r\n"); line != NULL && line < end;
                     line = strstr(line + 2, "\r\n")) {
                    if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
                        content_length = strtoul(line + 2 + 15, NULL, 10);
                }
                if (head_len + content_length >= sizeof(buf))
                    return 0;
            }
        }
        if (head_len > 0 && got >= head_len + content_length)
            break;
        int left = (int)(deadline - bgt_mono_ms());
        if (left <= 0 || got + 1 >= sizeof(buf))
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        got += (size_t)n;
    }
    if (content_length > 0) {
        bgt_http_resp r = {.body = buf + head_len, .body_len = content_length};
        if (bgt_http_error_code(&r, code, code_cap) == NULL)
            code[0] = '\0';
    }
    return status;
}

/* One POST of it on a connection of its own, outside any burst: its status (0 when no
 * complete answer came within READ_TIMEOUT_MS), its JSON error code into code. */
static long
post_one(int port, const item *it, char *code, size_t code_cap)
{
    conns[0] = bgt_tcp_connect(port); /* in conns: the teardown closes it after a failure */
    assert_true(conns[0] >= 0);
    size_t len;
    char *req = make_request(it, &len);
    int wrc = write_all(conns[0], req, len);
    free(req);
    assert_int_equal(wrc, 0);
    long st = read_response(conns[0], bgt_mono_ms() + READ_TIMEOUT_MS, code, code_cap);
    close(conns[0]);
    conns[0] = -1;
    return st;
}

/* ---- Redis ---------------------------------------------------------------------------------- */

/* calls=N of the line "name:calls=N,..." of INFO commandstats, 0 when absent. */
static long long
cmdstat_calls(const char *info, const char *name)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "\ncmdstat_%s:calls=", name);
    const char *p = strstr(info, needle);
    return p != NULL ? strtoll(p + strlen(needle), NULL, 10) : 0;
}

/* Calls of EVALSHA and EVAL so far: the enqueue script's invocations. */
static long long
script_calls(void)
{
    redisReply *r = bgt_redis_cmd(&redis, "INFO commandstats");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char *info = malloc(r->len + 2);
    assert_non_null(info);
    info[0] = '\n'; /* so that the first line matches "\ncmdstat_" too */
    memcpy(info + 1, r->str, r->len);
    info[r->len + 1] = '\0';
    long long n = cmdstat_calls(info, "evalsha") + cmdstat_calls(info, "eval");
    free(info);
    freeReplyObject(r);
    return n;
}

static long long
xlen(const char *stream)
{
    long long n = bgt_redis_xlen(&redis, stream);
    assert_true(n >= 0);
    return n;
}

static void
redis_ok(redisReply *r)
{
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s", r->str);
    freeReplyObject(r);
}

/* The de-duplication key of it, as the queue names it. */
static void
dedupe_key(char *out, size_t cap, const char *stream, const item *it)
{
    snprintf(out, cap, "%s:seen:%zu:%s:%s", stream, strlen(it->conv), it->conv, it->id);
}

/* EXISTS key. */
static bool
key_exists(const char *key)
{
    redisReply *r = bgt_redis_cmd(&redis, "EXISTS %s", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    bool exists = r->integer != 0;
    freeReplyObject(r);
    return exists;
}

/* The activity ids of the stream's entries from index `from` on (append order), into ids
 * (cap of them); returns how many. */
static size_t
stored_ids(const char *stream, long long from, char (*ids)[64], size_t cap)
{
    bgt_stream_entry *v;
    size_t n;
    assert_int_equal(bgt_redis_xrange(&redis, stream, &v, &n), 0);
    size_t k = 0;
    for (size_t i = (size_t)from; i < n; i++) {
        bg_entry e;
        assert_non_null(v[i].entry);
        assert_int_equal(bg_entry_decode(&e, v[i].entry, v[i].entry_len), 0);
        assert_true(k < cap);
        assert_true(e.activity_id.p != NULL && e.activity_id.len < 64);
        memcpy(ids[k], e.activity_id.p, e.activity_id.len);
        ids[k][e.activity_id.len] = '\0';
        k++;
    }
    bgt_stream_entries_free(v, n);
    return k;
}

/* The entries added since index `from` carry exactly the activity ids of the items for
 * which want[i] is true, each once. */
static void
expect_stored(const char *stream, long long from, const item *v, const bool *want, size_t n)
{
    char ids[MAX_CONNS * 2][64];
    size_t k = stored_ids(stream, from, ids, MAX_CONNS * 2);
    size_t expected = 0;
    for (size_t i = 0; i < n; i++) {
        if (!want[i])
            continue;
        expected++;
        int found = 0;
        for (size_t j = 0; j < k; j++)
            found += strcmp(ids[j], v[i].id) == 0;
        if (found != 1)
            fail_msg("activity %s (request %zu) is stored %d times, expected once", v[i].id, i,
                     found);
    }
    if (k != expected)
        fail_msg("%zu entries stored, expected %zu", k, expected);
}

/* ---- the burst ------------------------------------------------------------------------------ */

static void
close_conns(void)
{
    for (int i = 0; i < MAX_CONNS; i++) {
        if (conns[i] >= 0)
            close(conns[i]);
        conns[i] = -1;
    }
}

/* Every thread of pid is in the stopped state ('T' in /proc/pid/task/<tid>/stat). kill()
 * returns before the signal has taken effect: a botgate still finishing its last answer
 * would otherwise read the first requests of a burst before it stops. */
static bool
all_threads_stopped(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return false;
    bool stopped = true, any = false;
    struct dirent *e;
    while (stopped && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char stat_path[384], buf[512];
        snprintf(stat_path, sizeof(stat_path), "%s/%s/stat", path, e->d_name);
        FILE *f = fopen(stat_path, "r");
        if (f == NULL)
            continue; /* the thread ended */
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *paren = strrchr(buf, ')'); /* "tid (comm) S ..." */
        stopped = paren != NULL && (paren[2] == 'T' || paren[2] == 't');
        any = true;
    }
    closedir(d);
    return stopped && any;
}

static void
continue_stopped(void)
{
    if (stopped_pid != 0) {
        kill(stopped_pid, SIGCONT);
        stopped_pid = 0;
    }
}

/* What one burst saw besides each item's answer. */
typedef struct burst_result {
    long long script_calls; /* EVALSHA + EVAL calls during the burst */
    long long xlen_before;  /* the stream's length just before it */
} burst_result;

/*
 * Steps 1-4 for the n items on n connections to the botgate g listening on port:
 *  1. every connection opened and used once (a fresh activity of the conversation warm_conv,
 *     WARM_CONV when NULL; 202 read in full), so that botgate has accepted all of them and
 *     they sit idle in its loop; when empty_stream is not NULL, that stream is deleted after
 *     each of these answers (a botgate whose redis.maxlen must not be reached before the
 *     burst);
 *  2. the script calls counted (INFO commandstats) and the stream's length read;
 *  3. botgate stopped (SIGSTOP, then every thread seen stopped in /proc), one request
 *     written on every connection, STOPPED_MS, continued;
 *  4. every answer read (READ_TIMEOUT_MS in all) into v[i].status and v[i].code.
 */
static burst_result
burst(bgt_botgate *g, int port, const char *stream, item *v, size_t n, const char *empty_stream,
      const char *warm_conv)
{
    assert_true(n <= MAX_CONNS);
    burst_result res = {0};
    if (warm_conv == NULL)
        warm_conv = WARM_CONV;

    /* 1 */
    for (size_t i = 0; i < n; i++) {
        conns[i] = bgt_tcp_connect(port);
        assert_true(conns[i] >= 0);
        item w;
        memset(&w, 0, sizeof(w));
        snprintf(w.conv, sizeof(w.conv), "%s", warm_conv);
        bgt_fresh_id(w.id, sizeof(w.id), "warm");
        size_t len;
        char *req = make_request(&w, &len);
        int wrc = write_all(conns[i], req, len);
        free(req);
        assert_int_equal(wrc, 0);
        char code[64];
        long st = read_response(conns[i], bgt_mono_ms() + READ_TIMEOUT_MS, code, sizeof(code));
        if (st != 202)
            fail_msg("warm-up POST on connection %zu: status %ld (%s)", i, st, code);
        if (empty_stream != NULL)
            redis_ok(bgt_redis_cmd(&redis, "DEL %s", empty_stream));
    }

    /* 2 */
    long long calls_before = script_calls();
    res.xlen_before = xlen(stream);

    /* 3: the requests are made before botgate stops, so that nothing slow runs meanwhile */
    char *reqs[MAX_CONNS];
    size_t lens[MAX_CONNS];
    for (size_t i = 0; i < n; i++)
        reqs[i] = make_request(&v[i], &lens[i]);
    assert_int_equal(kill(g->pid, SIGSTOP), 0);
    stopped_pid = g->pid;
    int64_t stop_deadline = bgt_mono_ms() + 5000;
    while (!all_threads_stopped(g->pid)) {
        if (bgt_mono_ms() >= stop_deadline) {
            continue_stopped();
            fail_msg("botgate (pid %d) did not stop within 5 s of SIGSTOP", (int)g->pid);
        }
        bgt_sleep_ms(1);
    }
    int write_failed = -1;
    for (size_t i = 0; i < n; i++)
        if (write_all(conns[i], reqs[i], lens[i]) != 0 && write_failed < 0)
            write_failed = (int)i;
    for (size_t i = 0; i < n; i++)
        free(reqs[i]);
    bgt_sleep_ms(STOPPED_MS);
    continue_stopped();
    if (write_failed >= 0)
        fail_msg("writing the request on connection %d failed", write_failed);

    /* 4 */
    int64_t deadline = bgt_mono_ms() + READ_TIMEOUT_MS;
    for (size_t i = 0; i < n; i++)
        v[i].status = read_response(conns[i], deadline, v[i].code, sizeof(v[i].code));
    res.script_calls = script_calls() - calls_before;
    close_conns();
    return res;
}

/* n items, each a conversation and an activity id of its own. */
static void
fresh_items(item *v, size_t n, const char *tag)
{
    memset(v, 0, n * sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "a:%s-%zu-", tag, i);
        bgt_fresh_id(v[i].conv, sizeof(v[i].conv), prefix);
        snprintf(prefix, sizeof(prefix), "%zu:", i);
        bgt_fresh_id(v[i].id, sizeof(v[i].id), prefix);
    }
}

static void
print_outcome(const char *name, const item *v, size_t n, const burst_result *r, long long stored)
{
    size_t n202 = 0, other = 0;
    for (size_t i = 0; i < n; i++)
        n202 += v[i].status == 202, other += v[i].status != 202;
    fprintf(stderr,
            "batch %s: %zu requests, %zu got 202, %zu did not; %lld script calls "
            "(eval+evalsha); %lld stored\n",
            name, n, n202, other, r->script_calls, stored);
    for (size_t i = 0; i < n; i++)
        if (v[i].status != 202)
            fprintf(stderr, "  request %zu (%s): status %ld code %s\n", i, v[i].id, v[i].status,
                    v[i].code[0] != '\0' ? v[i].code : "-");
}

/* The main gate's admin listener (/metrics): "http://127.0.0.1:PORT". */
static char admin_base[64];

/* botgate_queue_write_batch_activities from the main gate's /metrics: the calls that stored
 * 33 to 64 activities (bucket le=64 minus le=32) and the sum of all calls' activities. */
typedef struct batch_hist {
    double calls_33_to_64, activities;
} batch_hist;

static batch_hist
scrape_batch_hist(void)
{
    xpo x;
    bgt_scrape(admin_base, &x);
    const char *name = "botgate_queue_write_batch_activities";
    char bucket[96], sum[96];
    snprintf(bucket, sizeof(bucket), "%s_bucket", name);
    snprintf(sum, sizeof(sum), "%s_sum", name);
    batch_hist h = {x_get(&x, bucket, "le", "64", NULL) - x_get(&x, bucket, "le", "32", NULL),
                    x_get(&x, sum, NULL)};
    x_free(&x);
    if (isnan(h.calls_33_to_64) || isnan(h.activities))
        fail_msg("%s: no le=32/le=64 buckets or no _sum in /metrics", name);
    return h;
}

/* ---- setup ---------------------------------------------------------------------------------- */

static int
start_gate(bgt_botgate *g, const char *name, const char *redis_extra, int *port_out)
{
    int port = bgt_free_port();
    char health[128], admin[48];
    snprintf(health, sizeof(health), "http://127.0.0.1:%d/readyz", port);
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", bgt_free_port());
    if (g == &gate)
        snprintf(admin_base, sizeof(admin_base), "http://%s", admin);
    bgt_botgate_conf c = {.plain_port = port,
                          .redis_url = redis.url,
                          .redis_timeout_ms = 10000,
                          .redis_extra = redis_extra,
                          .state_dir = state_dir,
                          .admin = admin};
    bgt_botgate_role = "ingress";
    int rc = bgt_botgate_start_conf(g, env.dir, name, &c, health);
    bgt_botgate_role = NULL;
    *port_out = port;
    return rc;
}

static int
test_teardown(void **state)
{
    (void)state;
    continue_stopped();
    close_conns();
    return 0;
}

/* ---- cases ---------------------------------------------------------------------------------- */

/* a. 64 activities written while botgate was stopped: one script call stores all of them. */
static void
test_one_turn_one_call(void **state)
{
    (void)state;
    item v[64];
    fresh_items(v, 64, "one-turn");
    long long len_at_start = xlen(STREAM);
    batch_hist before = scrape_batch_hist();
    burst_result r = burst(&gate, gate_port, STREAM, v, 64, NULL, NULL);
    long long stored = xlen(STREAM) - r.xlen_before;
    batch_hist after = scrape_batch_hist();
    print_outcome("one loop turn", v, 64, &r, stored);
    for (size_t i = 0; i < 64; i++)
        if (v[i].status != 202)
            fail_msg("request %zu: status %ld (%s), expected 202", i, v[i].status, v[i].code);
    assert_int_equal(stored, 64);
    bool want[64];
    for (size_t i = 0; i < 64; i++)
        want[i] = true;
    expect_stored(STREAM, r.xlen_before, v, want, 64);
    if (r.script_calls > 2)
        fail_msg("%lld script calls (eval+evalsha) for 64 activities of one loop turn, "
                 "expected 1 (at most 2)",
                 r.script_calls);
    /* the group commit's histogram: every activity stored (the warm-ups' and the burst's)
     * counted once, and the burst's call among those of 33 to 64 activities */
    double counted = after.activities - before.activities;
    if (counted != (double)(xlen(STREAM) - len_at_start))
        fail_msg("botgate_queue_write_batch_activities_sum grew by %g, the stream by %lld", counted,
                 xlen(STREAM) - len_at_start);
    if (after.calls_33_to_64 - before.calls_33_to_64 < 1)
        fail_msg("no call of 33 to 64 activities counted for the burst of 64");
}

/* b. One activity whose de-dup key is a hash (WRONGTYPE) fails alone with 503 queue_error;
 * the 31 others of the same call are stored and get 202. */
static void
test_failing_activity_fails_alone(void **state)
{
    (void)state;
    enum { N = 32, VICTIM = 13 };
    item v[N];
    fresh_items(v, N, "fails-alone");
    char key[256];
    dedupe_key(key, sizeof(key), STREAM, &v[VICTIM]);
    redis_ok(bgt_redis_cmd(&redis, "HSET %s f v", key));
    burst_result r = burst(&gate, gate_port, STREAM, v, N, NULL, NULL);
    long long stored = xlen(STREAM) - r.xlen_before;
    print_outcome("a failing activity", v, N, &r, stored);
    for (size_t i = 0; i < N; i++) {
        if (i == VICTIM) {
            if (v[i].status != 503 || strcmp(v[i].code, "queue_error") != 0)
                fail_msg("request %zu (de-dup key a hash): status %ld code %s, expected 503 "
                         "queue_error",
                         i, v[i].status, v[i].code);
        } else if (v[i].status != 202) {
            fail_msg("request %zu: status %ld (%s), expected 202", i, v[i].status, v[i].code);
        }
    }
    assert_int_equal(stored, N - 1);
    bool want[N];
    for (size_t i = 0; i < N; i++)
        want[i] = i != VICTIM;
    expect_stored(STREAM, r.xlen_before, v, want, N);
    /* every stored one has its de-dup key; the victim's is still the hash */
    for (size_t i = 0; i < N; i++) {
        char k[256];
        dedupe_key(k, sizeof(k), STREAM, &v[i]);
        redisReply *t = bgt_redis_cmd(&redis, "TYPE %s", k);
        assert_non_null(t);
        assert_int_equal(t->type, REDIS_REPLY_STATUS);
        const char *want_type = i == VICTIM ? "hash" : "string";
        if (strcmp(t->str, want_type) != 0)
            fail_msg("de-dup key of request %zu is a %s, expected a %s", i, t->str, want_type);
        freeReplyObject(t);
    }
    redis_ok(bgt_redis_cmd(&redis, "DEL %s", key));
}

/* c. Requests 0 and 1 carry the same conversation and activity id: both 202, stored once. */
static void
test_duplicates_inside_one_call(void **state)
{
    (void)state;
    enum { N = 16 };
    item v[N];
    fresh_items(v, N, "dup");
    memcpy(v[1].conv, v[0].conv, sizeof(v[1].conv));
    memcpy(v[1].id, v[0].id, sizeof(v[1].id));
    burst_result r = burst(&gate, gate_port, STREAM, v, N, NULL, NULL);
    long long stored = xlen(STREAM) - r.xlen_before;
    print_outcome("duplicates inside one call", v, N, &r, stored);
    for (size_t i = 0; i < N; i++)
        if (v[i].status != 202)
            fail_msg("request %zu: status %ld (%s), expected 202", i, v[i].status, v[i].code);
    assert_int_equal(stored, N - 1);
    bool want[N];
    for (size_t i = 0; i < N; i++)
        want[i] = i != 1; /* request 1's id is request 0's: expect_stored wants it once */
    expect_stored(STREAM, r.xlen_before, v, want, N);
}

/* d. redis.maxlen 10, an empty stream, 20 activities in one call: 10 stored (202), 10
 * refused (503 queue_full). Which ones is not defined (order across connections). A refused
 * one leaves no de-dup marker (the script deletes it again), so that the Connector's retry
 * of it, once the queue has room, is stored rather than taken for a repeat. */
static void
test_queue_full_inside_one_call(void **state)
{
    (void)state;
    enum { N = 20 };
    int port;
    char extra[128];
    snprintf(extra, sizeof(extra), "  stream: \"%s\"\n  maxlen: %d\n", FULL_STREAM, FULL_MAXLEN);
    assert_int_equal(start_gate(&full_gate, "full", extra, &port), 0);
    item v[N];
    fresh_items(v, N, "full");
    burst_result r = burst(&full_gate, port, FULL_STREAM, v, N, FULL_STREAM, NULL);
    assert_int_equal(r.xlen_before, 0);
    long long stored = xlen(FULL_STREAM);
    print_outcome("queue full inside one call", v, N, &r, stored);
    size_t n202 = 0, nfull = 0;
    bool want[N];
    for (size_t i = 0; i < N; i++) {
        want[i] = v[i].status == 202;
        if (v[i].status == 202)
            n202++;
        else if (v[i].status == 503 && strcmp(v[i].code, "queue_full") == 0)
            nfull++;
        else
            fail_msg("request %zu: status %ld code %s, expected 202 or 503 queue_full", i,
                     v[i].status, v[i].code);
    }
    assert_int_equal(n202, FULL_MAXLEN);
    assert_int_equal(nfull, N - FULL_MAXLEN);
    assert_int_equal(stored, FULL_MAXLEN);
    expect_stored(FULL_STREAM, 0, v, want, N); /* the stored ones are the 202s */
    /* the accepted ones have their de-dup marker, the refused ones none */
    size_t refused = N;
    for (size_t i = 0; i < N; i++) {
        char k[256];
        dedupe_key(k, sizeof(k), FULL_STREAM, &v[i]);
        bool exists = key_exists(k);
        if (exists != want[i])
            fail_msg("de-dup key of request %zu (status %ld) %s, expected it %s", i, v[i].status,
                     exists ? "exists" : "does not exist", want[i] ? "to exist" : "not to");
        if (!want[i] && refused == N)
            refused = i;
    }
    assert_true(refused < N);

    /* The Connector's retry of a refused activity once the queue has room (the dispatcher
     * having drained it): the same conversation and activity id, stored, not a repeat. */
    redis_ok(bgt_redis_cmd(&redis, "DEL %s", FULL_STREAM));
    char code[64];
    long st = post_one(port, &v[refused], code, sizeof(code));
    long long stored_retry = xlen(FULL_STREAM);
    fprintf(stderr,
            "batch queue full, retry of refused request %zu (%s): status %ld, %lld stored\n",
            refused, v[refused].id, st, stored_retry);
    if (st != 202)
        fail_msg("retry of refused request %zu: status %ld (%s), expected 202", refused, st, code);
    assert_int_equal(stored_retry, 1);
    bool want_retry[N];
    for (size_t i = 0; i < N; i++)
        want_retry[i] = i == refused;
    expect_stored(FULL_STREAM, 0, v, want_retry, N); /* it is the retried activity */
    assert_int_equal(bgt_botgate_stop(&full_gate), 0);
}

static int
full_teardown(void **state)
{
    test_teardown(state);
    if (full_gate.pid != 0)
        bgt_botgate_kill(&full_gate);
    return 0;
}

/* e. redis.partitions 2, the stream of partition 1 a hash (WRONGTYPE on XLEN and XADD):
 * in one burst, every activity whose conversation maps to partition 1 fails with 503
 * queue_error and leaves no de-dup marker; every other one is stored in partition 0. */
static void
test_failing_partition_fails_alone(void **state)
{
    (void)state;
    enum { N = 32, MIN_EACH = 8 };
    char p0[128], p1[128];
    assert_true(bg_partition_stream(p0, sizeof(p0), PART_STREAM, PART_COUNT, 0) > 0);
    assert_true(bg_partition_stream(p1, sizeof(p1), PART_STREAM, PART_COUNT, 1) > 0);

    /* Conversations "a:batch-part-<j>", j = 0, 1, ... in order, each taken unless its
     * partition already has N - MIN_EACH: so both have at least MIN_EACH, the same ones
     * every run. The warm-up conversation is the first candidate of partition 0. */
    item v[N];
    unsigned part[N];
    memset(v, 0, sizeof(v));
    size_t count[PART_COUNT] = {0}, n = 0;
    char warm_conv[64] = "";
    for (unsigned j = 0; n < N || warm_conv[0] == '\0'; j++) {
        if (j >= 100000)
            fail_msg("no %d conversations with at least %d in each partition", N, MIN_EACH);
        char conv[64];
        snprintf(conv, sizeof(conv), "a:batch-part-%u", j);
        unsigned k = bg_partition_of(conv, strlen(conv), PART_COUNT);
        assert_true(k < PART_COUNT);
        if (k == 0 && warm_conv[0] == '\0') {
            memcpy(warm_conv, conv, sizeof(warm_conv));
            continue;
        }
        if (n == N || count[k] >= N - MIN_EACH)
            continue;
        snprintf(v[n].conv, sizeof(v[n].conv), "%s", conv);
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "%zu:", n);
        bgt_fresh_id(v[n].id, sizeof(v[n].id), prefix);
        part[n] = k;
        count[k]++;
        n++;
    }
    assert_true(count[0] >= MIN_EACH && count[1] >= MIN_EACH);

    int port;
    char extra[128];
    snprintf(extra, sizeof(extra), "  stream: \"%s\"\n  partitions: %d\n", PART_STREAM, PART_COUNT);
    assert_int_equal(start_gate(&part_gate, "part", extra, &port), 0);
    redis_ok(bgt_redis_cmd(&redis, "HSET %s f v", p1));

    burst_result r = burst(&part_gate, port, p0, v, N, NULL, warm_conv);
    long long stored = xlen(p0) - r.xlen_before;
    print_outcome("a failing partition", v, N, &r, stored);
    fprintf(stderr, "batch a failing partition: %zu requests to %s, %zu to %s (a hash)\n", count[0],
            p0, count[1], p1);
    bool want[N];
    for (size_t i = 0; i < N; i++) {
        want[i] = part[i] == 0;
        if (part[i] == 1) {
            if (v[i].status != 503 || strcmp(v[i].code, "queue_error") != 0)
                fail_msg("request %zu (partition 1, a hash): status %ld code %s, expected 503 "
                         "queue_error",
                         i, v[i].status, v[i].code);
        } else if (v[i].status != 202) {
            fail_msg("request %zu (partition 0): status %ld (%s), expected 202", i, v[i].status,
                     v[i].code);
        }
    }
    assert_int_equal(stored, (long long)count[0]);
    expect_stored(p0, r.xlen_before, v, want, N);
    /* the stored ones have their de-dup marker, the failed ones none */
    for (size_t i = 0; i < N; i++) {
        char k[256];
        dedupe_key(k, sizeof(k), PART_STREAM, &v[i]);
        bool exists = key_exists(k);
        if (exists != want[i])
            fail_msg("de-dup key of request %zu (partition %u) %s, expected it %s", i, part[i],
                     exists ? "exists" : "does not exist", want[i] ? "to exist" : "not to");
    }
    redisReply *t = bgt_redis_cmd(&redis, "TYPE %s", p1);
    assert_non_null(t);
    assert_int_equal(t->type, REDIS_REPLY_STATUS);
    if (strcmp(t->str, "hash") != 0)
        fail_msg("%s is a %s after the burst, expected the hash it was", p1, t->str);
    freeReplyObject(t);
    redis_ok(bgt_redis_cmd(&redis, "DEL %s", p1));
    assert_int_equal(bgt_botgate_stop(&part_gate), 0);
}

static int
part_teardown(void **state)
{
    test_teardown(state);
    if (part_gate.pid != 0)
        bgt_botgate_kill(&part_gate);
    return 0;
}

/* Last: the shared botgate exits 0 (under ASan: no leak). */
static void
test_stop(void **state)
{
    (void)state;
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

int
main(void)
{
    for (int i = 0; i < MAX_CONNS; i++)
        conns[i] = -1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_one_turn_one_call, test_teardown),
        cmocka_unit_test_teardown(test_failing_activity_fails_alone, test_teardown),
        cmocka_unit_test_teardown(test_duplicates_inside_one_call, test_teardown),
        cmocka_unit_test_teardown(test_queue_full_inside_one_call, full_teardown),
        cmocka_unit_test_teardown(test_failing_partition_fails_alone, part_teardown),
        cmocka_unit_test(test_stop),
    };
    if (bgt_env_init(&env) != 0)
        return 1;
    bgt_path(state_dir, sizeof(state_dir), env.dir, "state");
    mkdir(state_dir, 0700);
    int failed = 1;
    if (bgt_redis_start(&redis, env.dir, "main", NULL) == 0 &&
        start_gate(&gate, "main", "  stream: \"" STREAM "\"\n", &gate_port) == 0) {
        failed = cmocka_run_group_tests_name("batch", tests, NULL, NULL);
    }
    continue_stopped();
    if (gate.pid != 0) /* test_stop did not get to stop it */
        bgt_botgate_kill(&gate);
    if (full_gate.pid != 0)
        bgt_botgate_kill(&full_gate);
    if (part_gate.pid != 0)
        bgt_botgate_kill(&part_gate);
    bgt_redis_stop(&redis);
    return bgt_env_exit(&env, failed);
}
