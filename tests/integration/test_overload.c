/*
 * Overload (issue 9): beyond its caps botgate sheds — a connection closed at once, or 429
 * with Retry-After and the cap's code — instead of queueing without bound, and serves
 * again once below them (proxy/limits.c, botgate/limits.h):
 *
 *  - policy.max_connections 3: three keep-alive connections held open, a fourth is closed
 *    without an answer; once one of the three leaves, a new connection is served;
 *  - policy.max_inflight_writes 2: Redis stalled (DEBUG SLEEP), two requests wait on it and
 *    every other one gets 429 too_many_writes; when Redis answers, the two get 202, and so
 *    do new requests; what is stored is exactly what was acknowledged;
 *  - policy.max_inflight_body_bytes 4096 with ~1.5 KB bodies: the same with 429
 *    too_many_bytes once two bodies are held.
 *
 * Every shed is counted in botgate_requests_refused_total under its reason, read from the
 * admin listener — which stays reachable while the connection cap is reached.
 *
 * Real redis-server and botgate, plain HTTP/1.1 (the caps sit behind TLS and apply alike).
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "exposition.h"
#include "harness.h"
#include "harness_load.h"

#define STREAM "overload:activities"

static bgt_env env;
static bgt_redis redis;
static bgt_botgate gate;
static char base[64], admin_base[64];
static bgt_load *load;
static int held[8];
static size_t n_held;

static int
teardown(void **state)
{
    (void)state;
    bgt_load_free(load);
    load = NULL;
    for (size_t i = 0; i < n_held; i++)
        if (held[i] >= 0)
            close(held[i]);
    n_held = 0;
    bgt_botgate_kill(&gate);
    return 0;
}

/* An ingress-only botgate on a free plain port with `policy` lines added. */
static void
start_gate(const char *name, const char *policy)
{
    char health[128], extra[1024], admin[48];
    snprintf(extra, sizeof(extra), "policy:\n%s", policy);
    int admin_port = bgt_free_port();
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", admin_port);
    snprintf(admin_base, sizeof(admin_base), "http://%s", admin);
    bgt_botgate_conf c = {.plain_port = bgt_free_port(),
                          .redis_url = redis.url,
                          .redis_timeout_ms = 10000,
                          .redis_extra = "  stream: \"" STREAM "\"\n",
                          .extra = extra,
                          .admin = admin};
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", c.plain_port);
    snprintf(health, sizeof(health), "%s/healthz", base);
    bgt_botgate_role = "ingress";
    int rc = bgt_botgate_start_conf(&gate, env.dir, name, &c, health);
    bgt_botgate_role = NULL;
    assert_int_equal(rc, 0);
}

/* botgate_requests_refused_total{reason} from the admin listener (which no cap applies
 * to); NAN when the series is absent. */
static double
refused(const char *reason)
{
    char u[128];
    bgt_http_resp resp;
    bgt_http_get(bgt_url(u, sizeof(u), admin_base, "/metrics"), BGT_HTTP_1_1, NULL, &resp);
    bgt_expect_status(&resp, 200);
    xpo x;
    int rc = x_parse(&x, resp.body);
    bgt_http_resp_free(&resp);
    double v = rc == 0 ? x_get(&x, "botgate_requests_refused_total", "reason", reason, NULL) : NAN;
    x_free(&x);
    return v;
}

/* A TCP connection to botgate's port; -1 on failure. */
static int
connect_gate(void)
{
    int port = atoi(strrchr(base, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends GET /healthz (keep-alive) on fd and reads what comes within timeout_ms: the
 * status, 0 when the connection was closed (or reset) without an answer, -1 on timeout. */
static int
healthz_on(int fd, int timeout_ms)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) < 0)
        return 0;
    char buf[1024];
    size_t got = 0;
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    while (got < sizeof(buf) - 1) {
        int left = (int)(deadline - bgt_mono_ms());
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            return 0;
        got += (size_t)n;
        buf[got] = '\0';
        /* the whole answer: headers, then the body's closing brace */
        if (strstr(buf, "\r\n\r\n") != NULL && strchr(strstr(buf, "\r\n\r\n"), '}') != NULL)
            break;
    }
    int status = 0;
    sscanf(buf, "HTTP/1.1 %d", &status);
    return status;
}

/*
 * policy.max_connections 3: three connections that each got an answer stay open
 * (keep-alive); a fourth is closed before any answer, and the log says why. When one of
 * the three leaves, a new connection is served again.
 */
static void
test_max_connections(void **state)
{
    (void)state;
    start_gate("conns", "  max_connections: 3\n");
    for (n_held = 0; n_held < 3; n_held++) {
        held[n_held] = connect_gate();
        assert_true(held[n_held] >= 0);
        assert_int_equal(healthz_on(held[n_held], 10000), 200);
    }
    int extra = connect_gate();
    assert_true(extra >= 0); /* the kernel accepts; botgate closes it */
    int status = healthz_on(extra, 10000);
    close(extra);
    if (status != 0)
        fail_msg("a fourth connection over policy.max_connections 3 got %d, expected a close",
                 status);
    const char *needles[] = {"closing a new connection", "policy.max_connections is 3", NULL};
    assert_true(bgt_log_has_line(gate.log, needles, 5000));
    /* counted; and the admin listener answers though three connections are open */
    assert_true(refused("too_many_connections") == 1);
    /* the held ones still work */
    assert_int_equal(healthz_on(held[0], 10000), 200);

    close(held[2]);
    held[2] = -1;
    int64_t deadline = bgt_mono_ms() + 10000;
    for (status = 0; status != 200 && bgt_mono_ms() < deadline;) {
        int fd = connect_gate();
        assert_true(fd >= 0);
        status = healthz_on(fd, 5000);
        close(fd);
        if (status != 200)
            bgt_sleep_ms(50); /* botgate has not seen the close yet */
    }
    assert_int_equal(status, 200);
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

/* Sends DEBUG SLEEP seconds on a connection of its own and returns without the answer:
 * Redis stalls while the test goes on. The caller frees the context after the sleep. */
static redisContext *
stall_redis(int seconds)
{
    redisContext *c = bgt_redis_connect(redis.sock, 20000);
    assert_non_null(c);
    assert_int_equal(redisAppendCommand(c, "DEBUG SLEEP %d", seconds), REDIS_OK);
    int done = 0;
    while (!done)
        assert_int_equal(redisBufferWrite(c, &done), REDIS_OK);
    /* sent is not yet asleep: wait until a PING goes unanswered for 200 ms */
    for (;;) {
        redisContext *probe = bgt_redis_connect(redis.sock, 200);
        assert_non_null(probe);
        redisReply *pong = redisCommand(probe, "PING");
        redisFree(probe);
        if (pong == NULL)
            break;
        freeReplyObject(pong);
        bgt_sleep_ms(10);
    }
    return c;
}

/* Waits for the stall's answer. */
static void
stall_end(redisContext *c)
{
    void *reply = NULL;
    assert_int_equal(redisGetReply(c, &reply), REDIS_OK);
    freeReplyObject(reply);
    redisFree(c);
}

/*
 * A cap reached while Redis stalls for 3 s: `waiting` requests wait on Redis and get 202
 * when it answers; every other request meanwhile is shed at once with 429 `code` and
 * Retry-After; once Redis answers, new requests get 202 again. The stream holds exactly the
 * acknowledged activities.
 */
static void
expect_shed(const char *name, size_t body_size, const char *code, size_t waiting)
{
    char tag[64], url[128];
    snprintf(tag, sizeof(tag), "%s-%d-%lld", name, (int)getpid(), (long long)bgt_wall_us());
    snprintf(url, sizeof(url), "%s/api/messages", base);
    long long before = bgt_redis_xlen(&redis, STREAM);
    assert_true(before >= 0);
    bgt_load_opts o = {
        .url = url, .tag = tag, .concurrency = 6, .body_size = body_size, .timeout_ms = 20000};
    load = bgt_load_new(&o);
    assert_non_null(load);
    redisContext *stall = stall_redis(3);
    bgt_load_run(load, 1500); /* inside the stall */
    assert_int_equal(bgt_load_drain(load, 20000), 0);
    stall_end(stall);

    size_t n, acked = 0, shed = 0;
    const bgt_shot *s = bgt_load_shots(load, &n);
    for (size_t i = 0; i < n; i++) {
        if (s[i].status == 202) {
            acked++;
        } else if (s[i].status == 429 && strcmp(s[i].code, code) == 0 && s[i].retry_after) {
            shed++;
        } else {
            fail_msg("%s: %s got %ld %s%s", name, s[i].id, s[i].status, s[i].code,
                     s[i].retry_after ? "" : " (no Retry-After)");
        }
    }
    fprintf(stderr, "%s: %zu requests during the stall: %zu waited and got 202, %zu shed (%s)\n",
            name, n, acked, shed, code);
    assert_int_equal(acked, waiting);
    assert_true(shed > 0);
    assert_true(refused(code) == (double)shed); /* each one counted under its reason */
    bgt_load_free(load);
    load = NULL;

    /* below the cap again (no more requests at once than the cap holds): served */
    char tag2[80];
    snprintf(tag2, sizeof(tag2), "%s-after", tag);
    o.tag = tag2;
    o.concurrency = (int)waiting;
    load = bgt_load_new(&o);
    assert_non_null(load);
    bgt_load_run(load, 300);
    assert_int_equal(bgt_load_drain(load, 20000), 0);
    size_t n_after;
    bgt_load_shots(load, &n_after);
    assert_true(n_after > 0);
    assert_int_equal(bgt_load_count_status(load, 202), n_after);
    /* stored: exactly what was acknowledged */
    long long after = bgt_redis_xlen(&redis, STREAM);
    fprintf(stderr, "%s: XLEN %lld before, %lld after; %zu + %zu acknowledged\n", name, before,
            after, acked, n_after);
    assert_int_equal(after, before + (long long)(acked + n_after));
}

/* policy.max_inflight_writes 2 (see expect_shed). */
static void
test_max_inflight_writes(void **state)
{
    (void)state;
    start_gate("writes", "  max_inflight_writes: 2\n");
    expect_shed("writes", 800, "too_many_writes", 2);
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

/* policy.max_inflight_body_bytes 4096, bodies of 1500 bytes: two are held, a third would
 * pass the cap (see expect_shed). */
static void
test_max_inflight_body_bytes(void **state)
{
    (void)state;
    start_gate("bytes", "  max_inflight_body_bytes: 4096\n");
    expect_shed("bytes", 1500, "too_many_bytes", 2);
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_max_connections, teardown),
        cmocka_unit_test_teardown(test_max_inflight_writes, teardown),
        cmocka_unit_test_teardown(test_max_inflight_body_bytes, teardown),
    };
    if (bgt_env_init(&env) != 0)
        return 1;
    int failed = 1;
    bgt_redis_opts ro = {.debug_command = true};
    if (bgt_redis_start(&redis, env.dir, "main", &ro) == 0)
        failed = cmocka_run_group_tests_name("overload", tests, NULL, NULL);
    bgt_redis_stop(&redis);
    return bgt_env_exit(&env, failed);
}
