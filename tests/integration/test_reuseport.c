/*
 * Zero-downtime restart with SO_REUSEPORT, five times in a row: two real botgate processes
 * bind the same TLS port and share one real redis-server; the old one is stopped with
 * SIGTERM (what the kubelet or a rolling restart sends) while a client keeps posting
 * activities, each on a new TLS connection so that every request is a fresh connect.
 *
 * The contract under test: both processes start on the one port and both serve it (the
 * kernel spreads connections by their addresses); while the old one drains and exits, no
 * connection is refused or reset: every request gets an HTTP answer, 202 (stored: the
 * stream holds exactly the 202s) or, from the draining one, 503 shutting_down, which the
 * Connector retries; once it is gone, the new one answers everything with 202.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

#define STREAM "botgate:activities"
#define AFTER_EXIT 40 /* requests sent once the old process is gone */
#define ROLLS 5       /* restarts in a row */

static bgt_env env;
static bgt_redis redis;
static bgt_botgate gates[2];
static char cert[BGT_PATH_MAX], key[BGT_PATH_MAX];

struct tally {
    long accepted, shutting_down;
    long raced;           /* no answer, tolerated: see migrate_on */
    char prefixes[2][17]; /* the request-id prefixes seen: one per process */
    int n_prefixes;
};

/*
 * net.ipv4.tcp_migrate_req (Linux 5.14+). When a SO_REUSEPORT listener closes, a connection
 * still in its SYN or accept queue is reset unless this is 1, in which case the kernel
 * moves it to another listener of the port. botgate accepts its queue before it closes,
 * but a SYN can land in between (README.md, "Zero-downtime restart", recommends the
 * setting). The test turns it on when it may (root, a writable /proc/sys) and then
 * asserts that no request goes unanswered; when it may not, a connection refused or reset
 * while the old process closes is counted and printed, not failed.
 */
#define MIGRATE_PATH "/proc/sys/net/ipv4/tcp_migrate_req"
static int migrate_on;
static char migrate_before[8];

/* POSTs one fresh activity to url; fails the test unless it was answered 202 or 503
 * shutting_down. Returns the status. */
static long
post_one(const char *url, struct tally *t, int closing)
{
    char id[64], conv[64], rid[80], code[64];
    bgt_fresh_id(id, sizeof(id), "1:reuse-");
    bgt_fresh_id(conv, sizeof(conv), "a:conv-");
    char *body = bgt_teams_message(id, conv, "https://smba.trafficmanager.net/teams/", 600);
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    bgt_http_resp resp;
    int rc = bgt_http_post(url, BGT_HTTP_1_1, cert, headers, body, strlen(body), &resp);
    free(body);
    if (rc != 0 && closing && !migrate_on &&
        (resp.curl_code == CURLE_COULDNT_CONNECT || resp.curl_code == CURLE_SSL_CONNECT_ERROR ||
         resp.curl_code == CURLE_RECV_ERROR || resp.curl_code == CURLE_SEND_ERROR)) {
        t->raced++;
        bgt_http_resp_free(&resp);
        return 0;
    }
    if (rc != 0) {
        bgt_http_resp_print("POST", &resp);
        fail_msg("a request got no answer (%s)", resp.curl_error);
    }
    long status = resp.status;
    if (status == 202) {
        t->accepted++;
        if (bgt_http_header(&resp, "X-Request-Id", rid, sizeof(rid)) != NULL && strlen(rid) >= 16) {
            rid[16] = '\0';
            int seen = 0;
            for (int i = 0; i < t->n_prefixes; i++)
                seen |= strcmp(t->prefixes[i], rid) == 0;
            if (!seen && t->n_prefixes < 2)
                memcpy(t->prefixes[t->n_prefixes++], rid, 17);
        }
    } else if (status == 503 && bgt_http_error_code(&resp, code, sizeof(code)) != NULL &&
               strcmp(code, "shutting_down") == 0) {
        t->shutting_down++;
    } else {
        bgt_http_resp_print("POST", &resp);
        fail_msg("answered %ld", status);
    }
    bgt_http_resp_free(&resp);
    return status;
}

static void
test_restart_without_refusal(void **state)
{
    (void)state;
    int port = bgt_free_port();
    char health[96], url[96], name[16], listening[96];
    bgt_botgate_conf c = {.tls_port = port,
                          .cert_file = cert,
                          .key_file = key,
                          .redis_url = redis.url,
                          .state_dir = env.dir};
    snprintf(health, sizeof(health), "https://127.0.0.1:%d/healthz", port);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/api/messages", port);
    snprintf(listening, sizeof(listening), "listening on https://127.0.0.1:%d", port);
    char *yaml = bgt_config_yaml(&c);
    assert_int_equal(bgt_botgate_start(&gates[0], env.dir, "gen0", yaml, health, cert), 0);
    long stored = 0, drained = 0, refused_503 = 0, raced = 0;
    /* ROLLS rolling restarts: the next generation starts on the port, the old one stops */
    for (int gen = 1; gen <= ROLLS; gen++) {
        bgt_botgate *old = &gates[(gen - 1) % 2], *new = &gates[gen % 2];
        snprintf(name, sizeof(name), "gen%d", gen);
        /* the same port again: without SO_REUSEPORT this start fails, exit 2 */
        assert_int_equal(bgt_botgate_start(new, env.dir, name, yaml, health, cert), 0);
        assert_true(bgt_log_has_line(new->log, (const char *const[]){listening, NULL}, 5000));

        /* both serve the port: two request-id prefixes among the 202s */
        struct tally both = {0};
        for (int i = 0; i < 200 && both.n_prefixes < 2; i++)
            assert_int_equal(post_one(url, &both, 0), 202);
        assert_int_equal(both.n_prefixes, 2);

        /* SIGTERM to the old one, requests all the while */
        struct tally during = {0};
        assert_int_equal(kill(old->pid, SIGTERM), 0);
        int status = 0, gone = 0;
        for (int i = 0; i < 100000 && !gone; i++) {
            post_one(url, &during, 1);
            gone = bgt_wait_pid(old->pid, 0, &status) == 0;
        }
        assert_true(gone);
        old->pid = 0;
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        /* the new one alone */
        struct tally after = {0};
        for (int i = 0; i < AFTER_EXIT; i++)
            assert_int_equal(post_one(url, &after, 0), 202);
        assert_int_equal(after.n_prefixes, 1);
        stored += both.accepted + during.accepted + after.accepted;
        drained += during.accepted + during.shutting_down;
        refused_503 += during.shutting_down;
        raced += during.raced;
    }
    free(yaml);
    assert_int_equal(bgt_redis_xlen(&redis, STREAM), stored);
    print_message("reuseport: %d restarts, %ld stored, %ld requests while the old one drained "
                  "(%ld answered 503 shutting_down), %ld refused or reset (tcp_migrate_req %s)\n",
                  ROLLS, stored, drained, refused_503, raced, migrate_on ? "1" : "0: tolerated");
    assert_int_equal(bgt_botgate_stop(&gates[ROLLS % 2]), 0);
}

/* A client that connected and never sent its ClientHello when SIGTERM comes: botgate still
 * stops in order (exit 0), the half-open handshake closed at the end of the grace. */
static void
test_stop_during_handshake(void **state)
{
    (void)state;
    int port = bgt_free_port();
    char health[96];
    bgt_botgate_conf c = {.tls_port = port,
                          .cert_file = cert,
                          .key_file = key,
                          .redis_url = redis.url,
                          .state_dir = env.dir};
    snprintf(health, sizeof(health), "https://127.0.0.1:%d/healthz", port);
    char *yaml = bgt_config_yaml(&c);
    int rc = bgt_botgate_start(&gates[0], env.dir, "handshake", yaml, health, cert);
    free(yaml);
    assert_int_equal(rc, 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    bgt_sleep_ms(200); /* the step that lets botgate accept it; no answer to wait for */
    assert_int_equal(bgt_botgate_stop(&gates[0]), 0);
    char buf[1];
    assert_true(read(fd, buf, 1) <= 0); /* closed by botgate */
    close(fd);
}

static int
teardown(void **state)
{
    (void)state;
    bgt_botgate_kill(&gates[0]);
    bgt_botgate_kill(&gates[1]);
    return 0;
}

int
main(void)
{
    bgt_botgate_role = "ingress"; /* the stream is counted: no consumer */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_restart_without_refusal, teardown),
        cmocka_unit_test_teardown(test_stop_during_handshake, teardown),
    };
    if (bgt_env_init(&env) != 0 || bgt_tls_make_cert(env.dir, cert, key) != 0)
        return 1;
    char *was = bgt_read_file(MIGRATE_PATH, NULL);
    if (was != NULL) {
        snprintf(migrate_before, sizeof(migrate_before), "%.1s", was);
        free(was);
        FILE *f = migrate_before[0] == '1' ? NULL : fopen(MIGRATE_PATH, "w");
        migrate_on = migrate_before[0] == '1' ||
                     (f != NULL && fputs("1\n", f) >= 0 && fclose(f) == 0 && (f = NULL, 1));
        if (f != NULL)
            fclose(f);
    }
    fprintf(stderr, "reuseport: tcp_migrate_req %s\n",
            migrate_on ? "on: no request may go unanswered"
                       : "off and not settable: resets while the old process closes are counted");
    int failed = bgt_redis_start(&redis, env.dir, "main", NULL) != 0;
    if (!failed)
        failed = cmocka_run_group_tests_name("reuseport", tests, NULL, NULL);
    bgt_redis_stop(&redis);
    if (migrate_on && migrate_before[0] == '0') {
        FILE *f = fopen(MIGRATE_PATH, "w"); /* as it was */
        if (f != NULL) {
            fputs("0\n", f);
            fclose(f);
        }
    }
    return bgt_env_exit(&env, failed);
}
