/*
 * Certificate reload, end to end: a real botgate serving TLS with certificate A, real
 * handshakes (OpenSSL) that read the serial the server presents, and a real long-lived
 * HTTP/2 connection (one libcurl handle, which keeps its connection between transfers).
 *
 * The contract under test (botgate/tls_reload.h): after SIGHUP with certificate B written
 * in place, new handshakes present B while the HTTP/2 connection opened under A keeps
 * working; a corrupt certificate, a key that does not match, or an expired certificate is
 * refused, logged, counted, and B stays; with tls.reload_check_s the change of the files
 * alone is enough.
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cert.h"
#include "exposition.h"
#include "harness.h"

static bgt_env env;
static bgt_redis redis;
static bgt_botgate gate;
/* Certificates A (30 days), B (90 days), C (30 days), X (expired), made once. The served pair is
 * laid out as Kubernetes mounts a Secret: serving/tls.crt -> ..data/tls.crt, ..data -> ..vN, and a
 * new version is a new directory and one rename() of the ..data link. */
static char cert_a[BGT_PATH_MAX], key_a[BGT_PATH_MAX], cert_b[BGT_PATH_MAX], key_b[BGT_PATH_MAX],
    cert_c[BGT_PATH_MAX], key_c[BGT_PATH_MAX], cert_x[BGT_PATH_MAX], key_x[BGT_PATH_MAX];
static char serving_dir[BGT_PATH_MAX], serving_cert[BGT_PATH_MAX], serving_key[BGT_PATH_MAX];

/* ---- helpers ---------------------------------------------------------------------------- */

static int serving_version;

static void
copy_file(const char *src, const char *dst)
{
    size_t len;
    char *text = bgt_read_file(src, &len);
    assert_non_null(text);
    assert_int_equal(bgt_write_file(dst, text, (long)len), 0);
    free(text);
}

/* Serves cert and key from now on: both files change at once, as a Secret's update does. */
static void
install_pair(const char *cert, const char *key)
{
    char dir[BGT_PATH_MAX], file[BGT_PATH_MAX], link[BGT_PATH_MAX], data[BGT_PATH_MAX], target[32];
    snprintf(target, sizeof(target), "..v%d", ++serving_version);
    bgt_path(dir, sizeof(dir), serving_dir, target);
    assert_int_equal(mkdir(dir, 0700), 0);
    copy_file(cert, bgt_path(file, sizeof(file), dir, "tls.crt"));
    copy_file(key, bgt_path(file, sizeof(file), dir, "tls.key"));
    bgt_path(link, sizeof(link), serving_dir, "..data_tmp");
    bgt_path(data, sizeof(data), serving_dir, "..data");
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(rename(link, data), 0);
}

/* A TLS handshake with 127.0.0.1:port (no verification: only what is presented matters);
 * the serial of the certificate the server presented. The caller frees it. */
static ASN1_INTEGER *
presented_serial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    int rc = SSL_connect(ssl);
    X509 *peer = rc == 1 ? SSL_get1_peer_certificate(ssl) : NULL;
    ASN1_INTEGER *serial = peer != NULL ? ASN1_INTEGER_dup(X509_get0_serialNumber(peer)) : NULL;
    X509_free(peer);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    if (serial == NULL)
        fail_msg("no certificate presented on port %d (SSL_connect %d)", port, rc);
    return serial;
}

/* The server presents the certificate in cert_file now. */
static bool
presents(int port, const char *cert_file)
{
    X509 *want = bgt_pem_read_cert(cert_file);
    assert_non_null(want);
    ASN1_INTEGER *got = presented_serial(port);
    bool same = ASN1_INTEGER_cmp(got, X509_get0_serialNumber(want)) == 0;
    ASN1_INTEGER_free(got);
    X509_free(want);
    return same;
}

#define assert_presents(port, cert_file)                                                           \
    do {                                                                                           \
        if (!presents((port), (cert_file)))                                                        \
            fail_msg("port %d does not present %s", (port), #cert_file);                           \
    } while (0)

static size_t
discard(char *p, size_t size, size_t n, void *data)
{
    (void)p, (void)data;
    return size * n;
}

/* GET url on the handle's connection (HTTP/2 over TLS, trusting ca_file); the status, and
 * in *connects the connections libcurl had to open for it (0: the old one was reused). */
static long
h2_get(CURL *h, const char *url, const char *ca_file, long *connects)
{
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 15000L);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK)
        fail_msg("GET %s: %s", url, curl_easy_strerror(rc));
    long status = 0, version = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &version);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, connects);
    assert_int_equal(version, CURL_HTTP_VERSION_2_0);
    return status;
}

/* yaml with its first `old` replaced by `new` (yaml is freed). */
static char *
yaml_replace(char *yaml, const char *old, const char *new)
{
    char *at = strstr(yaml, old);
    if (at == NULL)
        fail_msg("the harness's configuration has no \"%s\":\n%s", old, yaml);
    size_t n = strlen(yaml) - strlen(old) + strlen(new) + 1;
    char *out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(at - yaml), yaml, new, at + strlen(old));
    free(yaml);
    return out;
}

/* Starts botgate on a TLS port and an admin port serving serving/, with tls.reload_check_s
 * set to check_s. */
static void
start_gate(const char *name, int check_s, int *tls_port, int *admin_port)
{
    *tls_port = bgt_free_port();
    *admin_port = bgt_free_port();
    bgt_botgate_conf c = {.tls_port = *tls_port,
                          .cert_file = serving_cert,
                          .key_file = serving_key,
                          .redis_url = redis.url,
                          .state_dir = env.dir};
    char line[96], health[96];
    char *yaml = bgt_config_yaml(&c);
    snprintf(line, sizeof(line), "\n  reload_check_s: %d\nredis:", check_s);
    yaml = yaml_replace(yaml, "\nredis:", line);
    snprintf(line, sizeof(line), "admin:\n  listen: \"127.0.0.1:%d\"\n", *admin_port);
    yaml = yaml_replace(yaml, "admin:\n  listen: \"\"\n", line);
    snprintf(health, sizeof(health), "https://127.0.0.1:%d/healthz", *tls_port);
    int rc = bgt_botgate_start(&gate, env.dir, name, yaml, health, cert_a);
    free(yaml);
    assert_int_equal(rc, 0);
}

static double
metric(int admin_port, const char *name, const char *label, const char *value)
{
    char url[96];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", admin_port);
    bgt_http_resp resp;
    bgt_http_get(url, BGT_HTTP_1_1, NULL, &resp);
    bgt_expect_status(&resp, 200);
    xpo x;
    if (x_parse(&x, resp.body) != 0)
        fail_msg("/metrics does not parse: %s", x.err);
    double v = x_get(&x, name, label, value, NULL);
    x_free(&x);
    bgt_http_resp_free(&resp);
    return v;
}

static void
expect_log(const char *const *needles)
{
    if (!bgt_log_has_line(gate.log, needles, 20000))
        fail_msg("no log line with \"%s\" \"%s\"", needles[0], needles[1]);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void
test_sighup(void **state)
{
    (void)state;
    int port, admin;
    install_pair(cert_a, key_a);
    start_gate("sighup", 0, &port, &admin);
    char url[96];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/healthz", port);
    assert_presents(port, cert_a);

    /* the long-lived connection, opened under A */
    CURL *old = curl_easy_init();
    long connects = -1;
    assert_int_equal(h2_get(old, url, cert_a, &connects), 200);
    assert_int_equal(connects, 1);

    /* B in place, SIGHUP: new handshakes present B, the old connection goes on */
    install_pair(cert_b, key_b);
    assert_int_equal(kill(gate.pid, SIGHUP), 0);
    expect_log((const char *const[]){"certificate reloaded (SIGHUP)", "now serving", NULL});
    assert_presents(port, cert_b);
    assert_int_equal(h2_get(old, url, cert_a, &connects), 200);
    assert_int_equal(connects, 0); /* the same connection */
    CURL *fresh = curl_easy_init();
    assert_int_equal(h2_get(fresh, url, cert_b, &connects), 200); /* B verifies as B */
    assert_int_equal(connects, 1);
    curl_easy_cleanup(fresh);

    /* a corrupt certificate: refused, B stays */
    char bad[BGT_PATH_MAX];
    bgt_path(bad, sizeof(bad), env.dir, "corrupt.pem");
    assert_int_equal(bgt_write_file(bad,
                                    "-----BEGIN CERTIFICATE-----\nMIIBnotbase64!!\n"
                                    "-----END CERTIFICATE-----\n",
                                    -1),
                     0);
    install_pair(bad, key_b);
    assert_int_equal(kill(gate.pid, SIGHUP), 0);
    expect_log((const char *const[]){"certificate reload (SIGHUP) refused", "tls.cert_file", NULL});
    assert_presents(port, cert_b);

    /* C's certificate with B's key: a mismatch, refused, B stays */
    install_pair(cert_c, key_b);
    assert_int_equal(kill(gate.pid, SIGHUP), 0);
    expect_log((const char *const[]){"certificate reload (SIGHUP) refused", "tls.key_file", NULL});
    assert_presents(port, cert_b);

    /* a good pair that has expired (notAfter is its making's second): refused, B stays */
    install_pair(cert_x, key_x);
    assert_int_equal(kill(gate.pid, SIGHUP), 0);
    expect_log((const char *const[]){"certificate reload (SIGHUP) refused", "has expired", NULL});
    assert_presents(port, cert_b);
    assert_int_equal(h2_get(old, url, cert_a, &connects), 200);
    assert_int_equal(connects, 0);
    curl_easy_cleanup(old);

    assert_true(metric(admin, "botgate_tls_reloads_total", "result", "ok") == 1);
    assert_true(metric(admin, "botgate_tls_reloads_total", "result", "failed") == 3);
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

static void
test_expiry_gauge_follows(void **state)
{
    (void)state;
    int port, admin;
    char listener[64];
    install_pair(cert_a, key_a);
    start_gate("gauge", 0, &port, &admin);
    snprintf(listener, sizeof(listener), "127.0.0.1:%d", port);
    double a = metric(admin, "botgate_tls_certificate_expiry_seconds", "listener", listener);
    assert_true(a > 29 * 86400.0 && a <= 30 * 86400.0); /* A: 30 days */
    install_pair(cert_b, key_b);
    assert_int_equal(kill(gate.pid, SIGHUP), 0);
    expect_log((const char *const[]){"certificate reloaded (SIGHUP)", "now serving", NULL});
    double b = metric(admin, "botgate_tls_certificate_expiry_seconds", "listener", listener);
    assert_true(b > 89 * 86400.0 && b <= 90 * 86400.0); /* B: 90 days */
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

static void
test_file_watch(void **state)
{
    (void)state;
    int port, admin;
    install_pair(cert_a, key_a);
    start_gate("watch", 1, &port, &admin);
    assert_presents(port, cert_a);
    /* no signal: the files' change alone */
    install_pair(cert_c, key_c);
    expect_log((const char *const[]){"certificate reloaded (files changed)", "now serving", NULL});
    assert_presents(port, cert_c);
    /* a broken key file alone: refused once, C stays */
    install_pair(cert_c, cert_a);
    expect_log(
        (const char *const[]){"certificate reload (files changed) refused", "tls.key_file", NULL});
    assert_presents(port, cert_c);
    assert_true(metric(admin, "botgate_tls_reloads_total", "result", "ok") == 1);
    assert_true(metric(admin, "botgate_tls_reloads_total", "result", "failed") == 1);
    assert_int_equal(bgt_botgate_stop(&gate), 0);
}

static int
teardown(void **state)
{
    (void)state;
    bgt_botgate_kill(&gate);
    return 0;
}

int
main(void)
{
    bgt_botgate_role = "ingress";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sighup, teardown),
        cmocka_unit_test_teardown(test_expiry_gauge_follows, teardown),
        cmocka_unit_test_teardown(test_file_watch, teardown),
    };
    if (bgt_env_init(&env) != 0)
        return 1;
    bgt_path(serving_dir, sizeof(serving_dir), env.dir, "serving");
    bgt_path(serving_cert, sizeof(serving_cert), serving_dir, "tls.crt");
    bgt_path(serving_key, sizeof(serving_key), serving_dir, "tls.key");
    char link[BGT_PATH_MAX];
    int failed =
        mkdir(serving_dir, 0700) != 0 || symlink("..data/tls.crt", serving_cert) != 0 ||
        symlink("..data/tls.key", bgt_path(link, sizeof(link), serving_dir, "tls.key")) != 0 ||
        bgt_tls_make_cert_ex(env.dir, "a-", 30, cert_a, key_a) != 0 ||
        bgt_tls_make_cert_ex(env.dir, "b-", 90, cert_b, key_b) != 0 ||
        bgt_tls_make_cert_ex(env.dir, "c-", 30, cert_c, key_c) != 0 ||
        bgt_tls_make_cert_ex(env.dir, "expired-", 0, cert_x, key_x) != 0 ||
        bgt_redis_start(&redis, env.dir, "main", NULL) != 0;
    if (!failed)
        failed = cmocka_run_group_tests_name("reload", tests, NULL, NULL);
    bgt_redis_stop(&redis);
    return bgt_env_exit(&env, failed);
}
