/*
 * Metrics, end to end: a real botgate (authentication on, against the fake Connector) in
 * front of a real redis-server, scraped on its admin listener.
 *
 * The contract under test (issue 5, item 3; README.md, "Operating botgate"): after a known
 * sequence of requests /metrics shows exactly their counts; every line of the exposition
 * parses as the Prometheus text format 0.0.4 (HELP and TYPE once per family, histogram
 * buckets cumulative up to +Inf = _count); /metrics answers on the admin listener only (a
 * 404 on the public ones, whatever Host is sent); with Redis down a scrape still answers,
 * at once, with botgate_redis_up 0 and without the queue gauges; admin.listen "" opens no
 * port, and a port that cannot be bound refuses the start (exit 2). A second botgate with
 * its dispatcher and the slow bot checks the delivery metrics.
 *
 * The first group shares one botgate in the ingress role (no dispatcher: the queue gauges
 * stay put); the second starts its own and stops them in its teardown.
 */
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "exposition.h"
#include "harness.h"

#define APP_ID "8d1f6c2b-3a4e-4f5d-9b7c-1e2d3c4b5a69"
#define SERVICE_URL BGT_CONNECTOR_SERVICE_URL
#define STREAM "metrics:activities"
#define ACCEPTED 5

static bgt_env env;
static char cert[BGT_PATH_MAX], key[BGT_PATH_MAX];
static bgt_redis redis;
static char conn_dir[BGT_PATH_MAX];
static int conn_port;

/* The shared botgate of the first group. */
static bgt_botgate gate;
static int tls_port, plain_port, admin_port;
static char https_base[64], http_base[64], admin_base[64];

/* The second group's own botgate and bot; local_teardown kills them whatever happened. */
static bgt_botgate local_gate;
static bgt_redis local_redis;
static char bot_dir[BGT_PATH_MAX];

static const char *const json_headers[] = {"Content-Type: application/json", NULL};

/* ---- helpers ---------------------------------------------------------------------------- */

/* GET base/metrics: 200 with the exposition's Content-Type, parsed into x (the test fails
 * when any line does not parse). */
static void
scrape(const char *base, xpo *x)
{
    char u[128], ct[128];
    bgt_http_resp resp;
    bgt_http_get(bgt_url(u, sizeof(u), base, "/metrics"), BGT_HTTP_1_1, NULL, &resp);
    bgt_expect_status(&resp, 200);
    if (bgt_http_header(&resp, "Content-Type", ct, sizeof(ct)) == NULL ||
        strcmp(ct, "text/plain; version=0.0.4; charset=utf-8") != 0) {
        bgt_http_resp_print("/metrics", &resp);
        fail_msg("not the text format's Content-Type");
    }
    if (x_parse(x, resp.body) != 0) {
        bgt_http_resp_print("/metrics", &resp);
        fail_msg("the exposition does not parse: %s", x->err);
    }
    bgt_http_resp_free(&resp);
}

/* Scrapes base into x (xpo *) until the sample named by the rest of the arguments (x_get's:
 * name, then label name/value pairs) equals want, or timeout_ms passes; x keeps the last
 * scrape (the caller frees it). Evaluates to the number of scrapes made. */
#define scrape_until(base, x, timeout_ms, want, ...)                                               \
    ({                                                                                             \
        int64_t deadline_ = bgt_mono_ms() + (timeout_ms);                                          \
        int n_ = 0;                                                                                \
        for (;;) {                                                                                 \
            scrape((base), (x));                                                                   \
            n_++;                                                                                  \
            double got_ = x_get((x), __VA_ARGS__, NULL);                                           \
            if (got_ == (double)(want))                                                            \
                break;                                                                             \
            if (bgt_mono_ms() > deadline_)                                                         \
                fail_msg("%s: %g, not %g, after %d ms", #__VA_ARGS__, got_, (double)(want),        \
                         (int)(timeout_ms));                                                       \
            x_free(x);                                                                             \
            bgt_sleep_ms(50);                                                                      \
        }                                                                                          \
        n_;                                                                                        \
    })

#define assert_metric(x, want, ...)                                                                \
    do {                                                                                           \
        double got_ = x_get((x), __VA_ARGS__, NULL);                                               \
        if (got_ != (double)(want))                                                                \
            fail_msg("%s: %g, not %g", #__VA_ARGS__, got_, (double)(want));                        \
    } while (0)

/* The yaml bgt_config_yaml made, with admin.listen set to addr ("" keeps it off). */
static char *
with_admin(char *yaml, const char *addr)
{
    const char *off = "admin:\n  listen: \"\"\n";
    char *at = strstr(yaml, off);
    if (at == NULL)
        fail_msg("the harness's configuration has no admin.listen line:\n%s", yaml);
    size_t n = strlen(yaml) + strlen(addr) + 1;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*sadmin:\n  listen: \"%s\"\n%s", (int)(at - yaml), yaml, addr,
             at + strlen(off));
    free(yaml);
    return out;
}

/* A message activity from Teams with fresh ids, about 600 bytes. malloc'd. */
static char *
message(void)
{
    char id[64], conv[64];
    bgt_fresh_id(id, sizeof(id), "1:m-");
    bgt_fresh_id(conv, sizeof(conv), "a:m-");
    return bgt_teams_message(id, conv, SERVICE_URL, 600);
}

static long
post(const char *base, int version, const char *const *headers, const char *body)
{
    char u[128];
    bgt_http_resp resp;
    bgt_http_post(bgt_url(u, sizeof(u), base, "/api/messages"), version, cert, headers, body,
                  strlen(body), &resp);
    long status = resp.status;
    if (status == 0)
        bgt_http_resp_print("POST", &resp);
    bgt_http_resp_free(&resp);
    return status;
}

static long
get(const char *base, const char *path, const char *const *headers)
{
    char u[128];
    bgt_http_req req = {.method = "GET",
                        .url = bgt_url(u, sizeof(u), base, path),
                        .headers = headers,
                        .version = BGT_HTTP_1_1,
                        .ca_file = cert};
    bgt_http_resp resp;
    bgt_http_request(&req, &resp);
    long status = resp.status;
    bgt_http_resp_free(&resp);
    return status;
}

/*
 * The TCP ports process pid listens on, from /proc: the socket inodes among its open
 * files, matched against the LISTEN (0A) rows of /proc/net/tcp and tcp6. Returns how
 * many were written to ports (sorted).
 */
static size_t
listening_ports(pid_t pid, int *ports, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    assert_non_null(dir);
    unsigned long inodes[512];
    size_t n_inodes = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL && n_inodes < 512;) {
        char link[340], target[64];
        snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
        ssize_t k = readlink(link, target, sizeof(target) - 1);
        if (k <= 0)
            continue;
        target[k] = '\0';
        unsigned long ino;
        if (sscanf(target, "socket:[%lu]", &ino) == 1)
            inodes[n_inodes++] = ino;
    }
    closedir(dir);
    size_t n = 0;
    const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (int t = 0; t < 2; t++) {
        FILE *f = fopen(tables[t], "r");
        if (f == NULL)
            continue;
        char line[512];
        while (fgets(line, sizeof(line), f) != NULL) {
            char local[128];
            unsigned st;
            unsigned long ino;
            if (sscanf(line, " %*d: %127s %*s %x %*s %*s %*s %*s %*s %lu", local, &st, &ino) != 3 ||
                st != 0x0A)
                continue;
            for (size_t i = 0; i < n_inodes; i++) {
                if (inodes[i] == ino && n < cap)
                    ports[n++] = (int)strtol(strrchr(local, ':') + 1, NULL, 16);
            }
        }
        fclose(f);
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful */
        for (size_t j = i; j > 0 && ports[j - 1] > ports[j]; j--) {
            int tmp = ports[j];
            ports[j] = ports[j - 1];
            ports[j - 1] = tmp;
        }
    return n;
}

static void
assert_listening(pid_t pid, const int *want, size_t n_want)
{
    int got[16];
    size_t n = listening_ports(pid, got, 16);
    int sorted[16];
    memcpy(sorted, want, n_want * sizeof(int));
    for (size_t i = 1; i < n_want; i++)
        for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            int tmp = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = tmp;
        }
    int same = n == n_want;
    for (size_t i = 0; same && i < n; i++)
        same = got[i] == sorted[i];
    if (!same) {
        fprintf(stderr, "botgate listens on:");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "; expected:");
        for (size_t i = 0; i < n_want; i++)
            fprintf(stderr, " %d", sorted[i]);
        fprintf(stderr, "\n");
        fail();
    }
}

/* ---- the shared botgate ------------------------------------------------------------------ */

static int
group_setup(void **state)
{
    (void)state;
    tls_port = bgt_free_port();
    plain_port = bgt_free_port();
    admin_port = bgt_free_port();
    snprintf(https_base, sizeof(https_base), "https://127.0.0.1:%d", tls_port);
    snprintf(http_base, sizeof(http_base), "http://127.0.0.1:%d", plain_port);
    snprintf(admin_base, sizeof(admin_base), "http://127.0.0.1:%d", admin_port);
    char state_dir[BGT_PATH_MAX], health[128], admin[64];
    bgt_path(state_dir, sizeof(state_dir), env.dir, "state-main");
    mkdir(state_dir, 0700);
    char *auth = bgt_connector_auth_yaml(conn_dir, conn_port, APP_ID, NULL);
    bgt_botgate_conf c = {.tls_port = tls_port,
                          .plain_port = plain_port,
                          .cert_file = cert,
                          .key_file = key,
                          .redis_url = redis.url,
                          .redis_extra = "  stream: \"" STREAM "\"\n",
                          .state_dir = state_dir,
                          .extra = auth};
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", admin_port);
    char *yaml = with_admin(bgt_config_yaml(&c), admin);
    free(auth);
    /* /readyz: 200 once the signing keys are held, so that no request waits for them */
    bgt_botgate_role = "ingress";
    int rc = bgt_botgate_start(&gate, env.dir, "main", yaml,
                               bgt_url(health, sizeof(health), https_base, "/readyz"), cert);
    free(yaml);
    return rc;
}

static int
group_teardown(void **state)
{
    (void)state;
    if (gate.pid != 0) {
        fprintf(stderr, "test_stop did not run to the end: killing botgate\n");
        bgt_botgate_kill(&gate);
    }
    return 0;
}

/*
 * The known sequence, then one scrape with exactly its counts: ACCEPTED activities (one
 * token: one full check, then the cache), a 415, a 401 (no token, authentication on), a
 * tokenless ping, and GET /metrics on a public listener (404).
 */
static void
test_exact_counts(void **state)
{
    (void)state;
    char *token = bgt_connector_mint(conn_dir, NULL, APP_ID, SERVICE_URL, 3600);
    assert_non_null(token);
    char authz[8192];
    snprintf(authz, sizeof(authz), "Authorization: Bearer %s", token);
    free(token);
    const char *const auth_headers[] = {"Content-Type: application/json", authz, NULL};
    const char *bases[] = {https_base, https_base, http_base};
    const int versions[] = {BGT_HTTP_1_1, BGT_HTTP_2, BGT_HTTP_1_1};
    for (int i = 0; i < ACCEPTED; i++) {
        char *body = message();
        assert_int_equal(post(bases[i % 3], versions[i % 3], auth_headers, body), 202);
        free(body);
    }
    char *body = message();
    const char *const text_plain[] = {"Content-Type: text/plain", authz, NULL};
    assert_int_equal(post(https_base, BGT_HTTP_1_1, text_plain, body), 415);
    assert_int_equal(post(https_base, BGT_HTTP_1_1, json_headers, body), 401);
    free(body);
    assert_int_equal(post(https_base, BGT_HTTP_1_1, json_headers, "{\"type\":\"ping\"}"), 200);
    assert_int_equal(get(https_base, "/metrics", NULL), 404);

    /* A request counts itself when h2o disposes it, just after its answer: the last one of
     * the sequence is waited for. Every scrape before the last is counted too. */
    xpo x;
    int scrapes = scrape_until(admin_base, &x, 5000, 1, "botgate_requests_total", "route", "other",
                               "code", "404");
    assert_metric(&x, ACCEPTED, "botgate_requests_total", "route", "messages", "code", "202");
    assert_metric(&x, 1, "botgate_requests_total", "route", "messages", "code", "415");
    assert_metric(&x, 1, "botgate_requests_total", "route", "messages", "code", "401");
    assert_metric(&x, 1, "botgate_requests_total", "route", "messages", "code", "200");
    assert_metric(&x, 1, "botgate_requests_total", "route", "other", "code", "404");
    double metrics_200 =
        x_get(&x, "botgate_requests_total", "route", "metrics", "code", "200", NULL);
    assert_true(scrapes > 1 ? metrics_200 == scrapes - 1 : isnan(metrics_200));
    assert_metric(&x, 1, "botgate_requests_refused_total", "reason", "unsupported_media_type");
    assert_metric(&x, 1, "botgate_requests_refused_total", "reason", "missing_token");
    assert_metric(&x, 1, "botgate_requests_refused_total", "reason", "not_found");
    assert_metric(&x, 1, "botgate_auth_rejects_total", "reason", "missing_token");
    assert_int_equal(x_fam(&x, "botgate_auth_rejects_total")->n_samples, 1);
    assert_metric(&x, 1, "botgate_pings_total");
    assert_metric(&x, 1, "botgate_token_cache_misses_total");
    assert_metric(&x, ACCEPTED - 1, "botgate_token_cache_hits_total");
    assert_metric(&x, ACCEPTED, "botgate_ack_seconds_count");
    assert_metric(&x, ACCEPTED, "botgate_ack_seconds_bucket", "le", "+Inf");
    double ack_sum = x_get(&x, "botgate_ack_seconds_sum", NULL);
    assert_true(ack_sum > 0 && ack_sum < ACCEPTED * 5.0);
    /* the queue, as Redis says it: no dispatcher in this role */
    assert_metric(&x, bgt_redis_xlen(&redis, STREAM), "botgate_queue_length");
    assert_metric(&x, ACCEPTED, "botgate_queue_length");
    assert_metric(&x, 0, "botgate_queue_pending");
    assert_metric(&x, 0, "botgate_queue_oldest_pending_seconds");
    assert_metric(&x, 1, "botgate_redis_up");
    const char *kinds[] = {"down", "timeout", "error", "full", "replica"};
    for (int i = 0; i < 5; i++)
        assert_metric(&x, 0, "botgate_redis_errors_total", "kind", kinds[i]);
    assert_metric(&x, 0, "botgate_redis_reconnects_total");
    /* keys: fetched (metadata and JWKS count as one), held, fresh */
    assert_true(x_get(&x, "botgate_jwks_fetches_total", NULL) >= 1);
    assert_metric(&x, 0, "botgate_jwks_fetch_failures_total");
    double age = x_get(&x, "botgate_jwks_key_age_seconds", NULL);
    assert_true(age >= 0 && age < 120);
    /* the harness's certificate: valid from an hour ago for 30 days */
    char listener[64];
    snprintf(listener, sizeof(listener), "127.0.0.1:%d", tls_port);
    double left = x_get(&x, "botgate_tls_certificate_expiry_seconds", "listener", listener, NULL);
    assert_true(left > 29 * 86400.0 && left <= 30 * 86400.0);
    assert_int_equal(x_fam(&x, "botgate_tls_certificate_expiry_seconds")->n_samples, 1);
    assert_metric(&x, 1, "botgate_up");
    assert_int_equal(x_fam(&x, "botgate_build_info")->n_samples, 1);
    /* the ingress role delivers nothing */
    assert_metric(&x, 0, "botgate_delivery_attempts_total", "outcome", "ack");
    assert_metric(&x, 0, "botgate_delivery_seconds_count");
    assert_null(x_fam(&x, "botgate_deliveries_in_flight"));
    x_free(&x);
}

/* /metrics exists on the admin listener only: on the public ones it is a 404 like any
 * unknown path, over both protocols and whatever Host is sent; the admin listener serves
 * the probes too, and not the activity endpoint. */
static void
test_metrics_not_public(void **state)
{
    (void)state;
    char host[64];
    snprintf(host, sizeof(host), "Host: 127.0.0.1:%d", admin_port);
    const char *const hosts[][2] = {{NULL, NULL}, {"Host: admin", NULL}, {host, NULL}};
    for (int h = 0; h < 3; h++) {
        assert_int_equal(get(https_base, "/metrics", hosts[h][0] ? hosts[h] : NULL), 404);
        assert_int_equal(get(http_base, "/metrics", hosts[h][0] ? hosts[h] : NULL), 404);
    }
    char u[128];
    bgt_http_resp resp;
    bgt_http_get(bgt_url(u, sizeof(u), https_base, "/metrics"), BGT_HTTP_2, cert, &resp);
    bgt_expect_error(&resp, 404, "not_found");
    bgt_http_resp_free(&resp);

    assert_int_equal(get(admin_base, "/healthz", NULL), 200);
    assert_int_equal(get(admin_base, "/readyz", NULL), 200);
    assert_int_equal(get(admin_base, "/metrics/x", NULL), 404);
    char *body = message();
    assert_int_equal(post(admin_base, BGT_HTTP_1_1, json_headers, body), 404);
    free(body);
    bgt_http_req req = {.method = "POST",
                        .url = bgt_url(u, sizeof(u), admin_base, "/metrics"),
                        .body = "",
                        .version = BGT_HTTP_1_1};
    bgt_http_request(&req, &resp);
    bgt_expect_error(&resp, 405, "method_not_allowed");
    bgt_http_resp_free(&resp);

    /* counted as what they were: public /metrics is "other", the admin's probes theirs */
    xpo x;
    scrape(admin_base, &x);
    /* 1 (test_exact_counts) + 7 public /metrics + /metrics/x and POST /api/messages (admin) */
    assert_metric(&x, 10, "botgate_requests_total", "route", "other", "code", "404");
    assert_true(x_get(&x, "botgate_requests_total", "route", "healthz", "code", "200", NULL) >= 1);
    assert_metric(&x, 1, "botgate_requests_total", "route", "metrics", "code", "405");
    x_free(&x);
}

/* The process listens on its two public ports and the admin port, nothing else. */
static void
test_admin_port_open(void **state)
{
    (void)state;
    int want[] = {tls_port, plain_port, admin_port};
    assert_listening(gate.pid, want, 3);
}

/* Redis down: a scrape answers at once, without the queue gauges and with redis_up 0;
 * the refused write is counted by kind; when Redis is back, so are the gauges, and the
 * new connection is counted as a reconnect. */
static void
test_redis_down(void **state)
{
    (void)state;
    assert_int_equal(bgt_redis_stop(&redis), 0);
    long last;
    if (!bgt_poll_status(admin_base, "/readyz", NULL, 503, 5000, &last))
        fail_msg("/readyz answers %ld, not 503, with Redis down", last);
    char *token = bgt_connector_mint(conn_dir, NULL, APP_ID, SERVICE_URL, 3600);
    char authz[8192];
    snprintf(authz, sizeof(authz), "Authorization: Bearer %s", token);
    free(token);
    const char *const auth_headers[] = {"Content-Type: application/json", authz, NULL};
    char *body = message();
    assert_int_equal(post(https_base, BGT_HTTP_1_1, auth_headers, body), 503);

    xpo x;
    int64_t t0 = bgt_mono_ms();
    scrape(admin_base, &x);
    assert_in_range(bgt_mono_ms() - t0, 0, 1000);
    assert_metric(&x, 0, "botgate_redis_up");
    assert_null(x_fam(&x, "botgate_queue_length"));
    assert_null(x_fam(&x, "botgate_queue_pending"));
    assert_null(x_fam(&x, "botgate_queue_oldest_pending_seconds"));
    assert_metric(&x, 1, "botgate_redis_errors_total", "kind", "down");
    assert_metric(&x, 0, "botgate_redis_errors_total", "kind", "timeout");
    assert_true(x_get(&x, "botgate_requests_refused_total", "reason", "queue_unavailable", NULL) >=
                2); /* the POST and /readyz's 503s */
    assert_metric(&x, 1, "botgate_requests_total", "route", "messages", "code", "503");
    x_free(&x);

    assert_int_equal(bgt_redis_restart(&redis), 0);
    scrape_until(admin_base, &x, 10000, 1, "botgate_redis_up");
    assert_metric(&x, 1, "botgate_redis_reconnects_total");
    assert_metric(&x, 0, "botgate_queue_length"); /* SHUTDOWN NOSAVE emptied it */
    x_free(&x);
    assert_int_equal(post(https_base, BGT_HTTP_1_1, auth_headers, body), 202);
    free(body);
}

/* Last of the group: SIGTERM, exit status 0 (under ASan: no leak). */
static void
test_stop(void **state)
{
    (void)state;
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

/* ---- botgates of their own ----------------------------------------------------------------- */

static int
local_teardown(void **state)
{
    (void)state;
    bgt_botgate_kill(&local_gate);
    bgt_redis_stop(&local_redis);
    bgt_bot_kill_clear(bot_dir);
    return 0;
}

/* admin.listen "" (the harness's default): the process listens on its public ports only. */
static void
test_admin_off(void **state)
{
    (void)state;
    char state_dir[BGT_PATH_MAX], health[128], base[64];
    bgt_path(state_dir, sizeof(state_dir), env.dir, "state-off");
    mkdir(state_dir, 0700);
    bgt_botgate_conf c = {.plain_port = bgt_free_port(),
                          .redis_url = redis.url,
                          .redis_extra = "  stream: \"metrics:off\"\n",
                          .state_dir = state_dir};
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", c.plain_port);
    char *yaml = bgt_config_yaml(&c);
    bgt_botgate_role = "ingress";
    int rc = bgt_botgate_start(&local_gate, env.dir, "off", yaml,
                               bgt_url(health, sizeof(health), base, "/healthz"), NULL);
    free(yaml);
    assert_int_equal(rc, 0);
    int want[] = {c.plain_port};
    assert_listening(local_gate.pid, want, 1);
    assert_int_equal(get(base, "/metrics", NULL), 404);
    const char *needles[] = {"listening on", "admin", NULL};
    assert_false(bgt_log_has_line(local_gate.log, needles, 0));
    assert_int_equal(bgt_botgate_stop(&local_gate), 0);
}

/* An admin port that cannot be bound refuses the start: exit 2, the key named. */
static void
test_admin_port_taken(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    char state_dir[BGT_PATH_MAX], file[BGT_PATH_MAX], log[BGT_PATH_MAX], admin[64];
    bgt_path(state_dir, sizeof(state_dir), env.dir, "state-taken");
    mkdir(state_dir, 0700);
    bgt_botgate_conf c = {
        .plain_port = bgt_free_port(), .redis_url = redis.url, .state_dir = state_dir};
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", ntohs(sa.sin_port));
    char *yaml = with_admin(bgt_config_yaml(&c), admin);
    bgt_path(file, sizeof(file), env.dir, "botgate-taken.yaml");
    bgt_path(log, sizeof(log), env.dir, "botgate-taken.log");
    assert_int_equal(bgt_write_file(file, yaml, -1), 0);
    free(yaml);
    const char *args[] = {"serve", "-c", file, "--role", "ingress", NULL};
    char *err = NULL;
    int status = bgt_botgate_run(args, log, 20000, &err);
    close(fd);
    char want[96];
    snprintf(want, sizeof(want), "admin.listen: %s: ", admin);
    if (status != 2 || err == NULL || strstr(err, want) == NULL)
        fail_msg("status %d, stderr:\n%s", status, err != NULL ? err : "");
    free(err);
}

/* DEBUG SLEEP on a connection of its own (a thread: the call blocks until Redis wakes). */
static void *
on_sleeper_run(void *arg)
{
    int *ok = arg;
    redisContext *c = bgt_redis_connect(local_redis.sock, 5000);
    redisReply *rep = c != NULL ? redisCommand(c, "DEBUG SLEEP 2.5") : NULL;
    *ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
    if (rep != NULL)
        freeReplyObject(rep);
    if (c != NULL)
        redisFree(c);
    return NULL;
}

/*
 * Redis alive but not answering: the scrape does not wait for redis.timeout_ms (2 s) but
 * answers after its own deadline (1 s) without the queue gauges and with redis_up 0; the
 * late replies find the scrape answered (and, under ASan, nothing freed twice); once Redis
 * answers again, so do the gauges.
 */
static void
test_redis_stall(void **state)
{
    (void)state;
    bgt_redis_opts opts = {.debug_command = true};
    assert_int_equal(bgt_redis_start(&local_redis, env.dir, "stall", &opts), 0);
    char state_dir[BGT_PATH_MAX], health[128], base[64], admin[64], admin_url[80];
    bgt_path(state_dir, sizeof(state_dir), env.dir, "state-stall");
    mkdir(state_dir, 0700);
    bgt_botgate_conf c = {.plain_port = bgt_free_port(),
                          .redis_url = local_redis.url,
                          .redis_timeout_ms = 2000,
                          .state_dir = state_dir};
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", c.plain_port);
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", bgt_free_port());
    snprintf(admin_url, sizeof(admin_url), "http://%s", admin);
    char *yaml = with_admin(bgt_config_yaml(&c), admin);
    bgt_botgate_role = "ingress";
    int rc = bgt_botgate_start(&local_gate, env.dir, "stall", yaml,
                               bgt_url(health, sizeof(health), base, "/readyz"), NULL);
    free(yaml);
    assert_int_equal(rc, 0);
    xpo x;
    scrape_until(admin_url, &x, 5000, 1, "botgate_redis_up");
    x_free(&x);

    int ok = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, on_sleeper_run, &ok), 0);
    bgt_sleep_ms(200); /* the sleeper's command is in */
    int64_t t0 = bgt_mono_ms();
    scrape(admin_url, &x);
    int64_t took = bgt_mono_ms() - t0;
    pthread_join(th, NULL);
    assert_true(ok);
    fprintf(stderr, "scrape during the stall: %lld ms\n", (long long)took);
    assert_in_range(took, 800, 1900);
    assert_metric(&x, 0, "botgate_redis_up");
    assert_null(x_fam(&x, "botgate_queue_length"));
    assert_null(x_fam(&x, "botgate_queue_pending"));
    x_free(&x);

    scrape_until(admin_url, &x, 10000, 1, "botgate_redis_up");
    assert_metric(&x, 0, "botgate_queue_length");
    x_free(&x);
    assert_int_equal(bgt_botgate_stop(&local_gate), 0);
    assert_int_equal(bgt_redis_stop(&local_redis), 0);
}

/*
 * The dispatcher's side, with the slow bot: deliveries acknowledged, one retried, one
 * dead-lettered, one synchronous invoke, each counted once, with the bot's time and the
 * whole way's time observed per delivery.
 */
static void
test_delivery_metrics(void **state)
{
    (void)state;
    int bot_port = 0;
    bgt_path(bot_dir, sizeof(bot_dir), env.dir, "bot");
    assert_int_equal(bgt_bot_start(bot_dir, &bot_port), 0);
    char state_dir[BGT_PATH_MAX], health[128], base[64], admin[64], bot_url[128], extra[512];
    bgt_path(state_dir, sizeof(state_dir), env.dir, "state-delivery");
    mkdir(state_dir, 0700);
    bgt_bot_url(bot_url, sizeof(bot_url), bot_port, NULL);
    snprintf(extra, sizeof(extra),
             "bot:\n  url: \"%s\"\n  backoff_initial_ms: 100\n  backoff_max_ms: 200\n", bot_url);
    bgt_botgate_conf c = {.plain_port = bgt_free_port(),
                          .redis_url = redis.url,
                          .redis_extra = "  stream: \"metrics:delivery\"\n",
                          .state_dir = state_dir,
                          .extra = extra};
    int port = bgt_free_port();
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", c.plain_port);
    snprintf(admin, sizeof(admin), "127.0.0.1:%d", port);
    char admin_url[80];
    snprintf(admin_url, sizeof(admin_url), "http://%s", admin);
    char *yaml = with_admin(bgt_config_yaml(&c), admin);
    bgt_botgate_role = NULL; /* ingress and dispatcher */
    int rc = bgt_botgate_start(&local_gate, env.dir, "delivery", yaml,
                               bgt_url(health, sizeof(health), base, "/readyz"), NULL);
    free(yaml);
    assert_int_equal(rc, 0);

    char dead_id[64], retry_id[64], conv[64];
    bgt_fresh_id(dead_id, sizeof(dead_id), "1:dead-");
    bgt_fresh_id(retry_id, sizeof(retry_id), "1:retry-");
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, dead_id, "400\n"), 0);
    assert_int_equal(bgt_bot_set_activity_statuses(bot_dir, retry_id, "503\n200\n"), 0);
    for (int i = 0; i < 3; i++) {
        char *body = message();
        assert_int_equal(post(base, BGT_HTTP_1_1, json_headers, body), 202);
        free(body);
    }
    bgt_fresh_id(conv, sizeof(conv), "a:dead-");
    char *body = bgt_teams_message(dead_id, conv, SERVICE_URL, 600);
    assert_int_equal(post(base, BGT_HTTP_1_1, json_headers, body), 202);
    free(body);
    bgt_fresh_id(conv, sizeof(conv), "a:retry-");
    body = bgt_teams_message(retry_id, conv, SERVICE_URL, 600);
    assert_int_equal(post(base, BGT_HTTP_1_1, json_headers, body), 202);
    free(body);
    char invoke[512];
    bgt_fresh_id(conv, sizeof(conv), "a:invoke-");
    snprintf(invoke, sizeof(invoke),
             "{\"type\":\"invoke\",\"name\":\"task/fetch\",\"id\":\"1:invoke\","
             "\"channelId\":\"msteams\",\"serviceUrl\":\"%s\",\"conversation\":{\"id\":\"%s\"}}",
             SERVICE_URL, conv);
    assert_int_equal(post(base, BGT_HTTP_1_1, json_headers, invoke), 200);

    /* 3 + the retried one acknowledged; its first attempt a retry; one dead */
    xpo x;
    scrape_until(admin_url, &x, 20000, 4, "botgate_delivery_attempts_total", "outcome", "ack");
    x_free(&x);
    scrape_until(admin_url, &x, 20000, 1, "botgate_dead_letters_total", "reason", "http_4xx");
    assert_metric(&x, 4, "botgate_delivery_attempts_total", "outcome", "ack");
    assert_metric(&x, 1, "botgate_delivery_attempts_total", "outcome", "retry");
    assert_metric(&x, 1, "botgate_delivery_attempts_total", "outcome", "dead");
    assert_metric(&x, 0, "botgate_dead_letters_total", "reason", "max_attempts");
    assert_metric(&x, 4, "botgate_delivery_seconds_count");
    assert_metric(&x, 6, "botgate_bot_seconds_count");
    assert_metric(&x, 0, "botgate_deliveries_in_flight");
    assert_metric(&x, 1, "botgate_sync_requests_total", "outcome", "answered");
    assert_metric(&x, 0, "botgate_sync_requests_total", "outcome", "timeout");
    /* the retried one waited out a back-off of at least 50 ms */
    assert_true(x_get(&x, "botgate_delivery_seconds_sum", NULL) >= 0.05);
    assert_metric(&x, 5, "botgate_requests_total", "route", "messages", "code", "202");
    assert_metric(&x, 1, "botgate_requests_total", "route", "messages", "code", "200");
    /* everything settled: nothing left in the stream nor pending */
    x_free(&x);
    scrape_until(admin_url, &x, 10000, 0, "botgate_queue_length");
    assert_metric(&x, 0, "botgate_queue_pending");
    x_free(&x);
    assert_int_equal(bgt_botgate_stop(&local_gate), 0);
    int brc = bgt_bot_stop(bot_dir);
    bot_dir[0] = '\0';
    assert_int_equal(brc, 0);
}

int
main(void)
{
    const struct CMUnitTest shared[] = {
        cmocka_unit_test(test_exact_counts),
        cmocka_unit_test(test_metrics_not_public),
        cmocka_unit_test(test_admin_port_open),
        cmocka_unit_test(test_redis_down),
        cmocka_unit_test(test_stop),
    };
    const struct CMUnitTest own[] = {
        cmocka_unit_test_teardown(test_admin_off, local_teardown),
        cmocka_unit_test_teardown(test_admin_port_taken, local_teardown),
        cmocka_unit_test_teardown(test_redis_stall, local_teardown),
        cmocka_unit_test_teardown(test_delivery_metrics, local_teardown),
    };
    if (bgt_env_init(&env) != 0 || bgt_tls_make_cert(env.dir, cert, key) != 0)
        return 1;
    bgt_path(conn_dir, sizeof(conn_dir), env.dir, "connector-main");
    int failed = 0;
    if (bgt_redis_start(&redis, env.dir, "main", NULL) != 0 ||
        bgt_connector_start(conn_dir, &conn_port) != 0) {
        failed = 1;
    } else {
        failed += cmocka_run_group_tests_name("metrics", shared, group_setup, group_teardown);
        failed += cmocka_run_group_tests_name("metrics_own_instances", own, NULL, NULL);
    }
    bgt_connector_kill(conn_dir);
    bgt_redis_stop(&redis);
    return bgt_env_exit(&env, failed);
}
