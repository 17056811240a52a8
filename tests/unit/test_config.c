/*
 * Tests for policy/config.c: the configuration contract of DESIGN.md.
 *
 * Most tests compare whole configurations through dump(), which writes every key as one
 * "name=value" line: equal dumps mean equal configurations, and a line-by-line compare
 * against the defaults proves that a document really changed every key.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "botgate/config.h"
#include "botgate/error.h"

#define DUMP_MAX 8192

/* Appends printf-style text to out (len bytes in all). */
static void
put(char *out, size_t len, const char *fmt, ...)
{
    size_t n = strlen(out);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + n, len - n, fmt, ap);
    va_end(ap);
}

/* One line "name=a,b" for a list. */
static void
put_list(char *out, size_t len, const char *name, const bg_strlist *l)
{
    put(out, len, "%s=", name);
    for (size_t i = 0; i < l->n; i++)
        put(out, len, "%s%s", i ? "," : "", l->v[i]);
    put(out, len, "\n");
}

/* Every key of c, one "name=value" line each, in the table's order. */
static void
dump(const bg_config *c, char *out, size_t len)
{
    out[0] = '\0';
    put(out, len, "listen=");
    for (size_t i = 0; i < c->n_listen; i++)
        put(out, len, "%s%s://%s:%d", i ? "," : "", c->listen[i].tls ? "https" : "http",
            c->listen[i].address, c->listen[i].port);
    put(out, len, "\n");
    put(out, len, "state_dir=%s\n", c->state_dir);
    put(out, len, "tls.cert_file=%s\n", c->tls.cert_file);
    put(out, len, "tls.key_file=%s\n", c->tls.key_file);
    put(out, len, "tls.reload_check_s=%d\n", c->tls.reload_check_s);
    put(out, len, "auth.app_id=%s\n", c->auth.app_id);
    put(out, len, "auth.app_password=%s\n", c->auth.app_password);
    put(out, len, "auth.app_type=%s\n", c->auth.app_type);
    put(out, len, "auth.tenant_id=%s\n", c->auth.tenant_id);
    put(out, len, "auth.openid_metadata_url=%s\n", c->auth.openid_metadata_url);
    put(out, len, "auth.emulator_openid_metadata_url=%s\n", c->auth.emulator_openid_metadata_url);
    put(out, len, "auth.issuer=%s\n", c->auth.issuer);
    put(out, len, "auth.clock_skew_s=%d\n", c->auth.clock_skew_s);
    put(out, len, "auth.allow_emulator=%d\n", c->auth.allow_emulator);
    put(out, len, "auth.require_endorsements=%d\n", c->auth.require_endorsements);
    put(out, len, "auth.ca_file=%s\n", c->auth.ca_file);
    put(out, len, "auth.jwks_refresh_s=%d\n", c->auth.jwks_refresh_s);
    put(out, len, "auth.token_cache_entries=%d\n", c->auth.token_cache_entries);
    put(out, len, "redis.url=%s\n", c->redis.url);
    put(out, len, "redis.stream=%s\n", c->redis.stream);
    put(out, len, "redis.maxlen=%lld\n", c->redis.maxlen);
    put(out, len, "redis.failures_maxlen=%d\n", c->redis.failures_maxlen);
    put(out, len, "redis.dedupe_ttl_s=%d\n", c->redis.dedupe_ttl_s);
    put(out, len, "redis.timeout_ms=%d\n", c->redis.timeout_ms);
    put(out, len, "redis.min_replicas_ack=%d\n", c->redis.min_replicas_ack);
    put_list(out, len, "redis.sentinels", &c->redis.sentinels);
    put(out, len, "redis.master_name=%s\n", c->redis.master_name);
    put(out, len, "redis.partitions=%d\n", c->redis.partitions);
    put(out, len, "bot.url=%s\n", c->bot.url);
    put(out, len, "bot.timeout_s=%d\n", c->bot.timeout_s);
    put(out, len, "bot.concurrency=%d\n", c->bot.concurrency);
    put(out, len, "bot.max_attempts=%d\n", c->bot.max_attempts);
    put(out, len, "bot.backoff_initial_ms=%d\n", c->bot.backoff_initial_ms);
    put(out, len, "bot.backoff_max_ms=%d\n", c->bot.backoff_max_ms);
    put(out, len, "bot.claim_idle_s=%d\n", c->bot.claim_idle_s);
    put(out, len, "bot.consumer_suffix=%s\n", c->bot.consumer_suffix);
    put(out, len, "policy.body_max_bytes=%lld\n", c->policy.body_max_bytes);
    put_list(out, len, "policy.sync_types", &c->policy.sync_types);
    put(out, len, "policy.sync_deadline_ms=%d\n", c->policy.sync_deadline_ms);
    put(out, len, "policy.sync_compose_deadline_ms=%d\n", c->policy.sync_compose_deadline_ms);
    put(out, len, "policy.sync_fallback_status=%d\n", c->policy.sync_fallback_status);
    put_list(out, len, "policy.allow_cidrs", &c->policy.allow_cidrs);
    put_list(out, len, "policy.trusted_proxies", &c->policy.trusted_proxies);
    put(out, len, "policy.answer_ping=%d\n", c->policy.answer_ping);
    put(out, len, "policy.max_connections=%d\n", c->policy.max_connections);
    put(out, len, "policy.max_inflight_writes=%d\n", c->policy.max_inflight_writes);
    put(out, len, "policy.max_inflight_body_bytes=%lld\n", c->policy.max_inflight_body_bytes);
    put(out, len, "relay.listen=%s\n", c->relay.listen);
    put(out, len, "relay.token_url=%s\n", c->relay.token_url);
    put(out, len, "relay.scope=%s\n", c->relay.scope);
    put(out, len, "relay.allow_remote=%d\n", c->relay.allow_remote);
    put(out, len, "relay.directory_ttl_s=%d\n", c->relay.directory_ttl_s);
    put(out, len, "relay.token_refresh_pct=%d\n", c->relay.token_refresh_pct);
    put(out, len, "relay.timeout_ms=%d\n", c->relay.timeout_ms);
    put(out, len, "admin.listen=%s\n", c->admin.listen);
    put(out, len, "log.access=%s\n", c->log.access);
    put(out, len, "log.level=%s\n", c->log.level);
    put(out, len, "log.access_sample_1_in=%d\n", c->log.access_sample_1_in);
    put(out, len, "shutdown_grace_s=%d\n", c->shutdown_grace_s);
}

/* DESIGN.md's table, plus the brief's state_dir, app_password and app_type. */
static const char defaults_dump[] =
    "listen=https://0.0.0.0:8443\n"
    "state_dir=var\n"
    "tls.cert_file=\n"
    "tls.key_file=\n"
    "tls.reload_check_s=0\n"
    "auth.app_id=\n"
    "auth.app_password=\n"
    "auth.app_type=MultiTenant\n"
    "auth.tenant_id=\n"
    "auth.openid_metadata_url=https://login.botframework.com/v1/.well-known/openidconfiguration\n"
    "auth.emulator_openid_metadata_url=https://login.microsoftonline.com/botframework.com/v2.0/"
    ".well-known/openid-configuration\n"
    "auth.issuer=https://api.botframework.com\n"
    "auth.clock_skew_s=300\n"
    "auth.allow_emulator=0\n"
    "auth.require_endorsements=1\n"
    "auth.ca_file=\n"
    "auth.jwks_refresh_s=86400\n"
    "auth.token_cache_entries=100000\n"
    "redis.url=\n"
    "redis.stream=botgate:activities\n"
    "redis.maxlen=1000000\n"
    "redis.failures_maxlen=10000\n"
    "redis.dedupe_ttl_s=600\n"
    "redis.timeout_ms=2000\n"
    "redis.min_replicas_ack=0\n"
    "redis.sentinels=\n"
    "redis.master_name=\n"
    "redis.partitions=1\n"
    "bot.url=http://127.0.0.1:3978/api/messages\n"
    "bot.timeout_s=300\n"
    "bot.concurrency=32\n"
    "bot.max_attempts=10\n"
    "bot.backoff_initial_ms=1000\n"
    "bot.backoff_max_ms=300000\n"
    "bot.claim_idle_s=60\n"
    "bot.consumer_suffix=\n"
    "policy.body_max_bytes=262144\n"
    "policy.sync_types=invoke\n"
    "policy.sync_deadline_ms=12000\n"
    "policy.sync_compose_deadline_ms=4500\n"
    "policy.sync_fallback_status=504\n"
    "policy.allow_cidrs=\n"
    "policy.trusted_proxies=\n"
    "policy.answer_ping=1\n"
    "policy.max_connections=4096\n"
    "policy.max_inflight_writes=10000\n"
    "policy.max_inflight_body_bytes=268435456\n"
    "relay.listen=127.0.0.1:3979\n"
    "relay.token_url=https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token\n"
    "relay.scope=https://api.botframework.com/.default\n"
    "relay.allow_remote=0\n"
    "relay.directory_ttl_s=7776000\n"
    "relay.token_refresh_pct=75\n"
    "relay.timeout_ms=15000\n"
    "admin.listen=127.0.0.1:9090\n"
    "log.access=stdout\n"
    "log.level=info\n"
    "log.access_sample_1_in=1\n"
    "shutdown_grace_s=25\n";

/* Every key set to something other than its default, block style. */
static const char all_keys_block[] =
    "# every key, none at its default\n"
    "listen:\n"
    "  - address: 127.0.0.1\n"
    "    port: 8080\n"
    "    tls: false\n"
    "  - address: \"::\"\n"
    "    port: 8443\n"
    "state_dir: /var/lib/botgate\n"
    "tls:\n"
    "  cert_file: /etc/tls/cert.pem\n"
    "  key_file: /etc/tls/key.pem\n"
    "  reload_check_s: 30\n"
    "auth:\n"
    "  app_id: 11111111-2222-3333-4444-555555555555\n"
    "  app_password: pw-from-file\n"
    "  app_type: SingleTenant\n"
    "  tenant_id: tenant-1\n"
    "  openid_metadata_url: https://openid.test/.well-known/openidconfiguration\n"
    "  issuer: https://issuer.test\n"
    "  clock_skew_s: 60\n"
    "  allow_emulator: true\n"
    "  require_endorsements: false\n"
    "  ca_file: /etc/ca.pem\n"
    "  jwks_refresh_s: 3600\n"
    "  emulator_openid_metadata_url: https://emulator.test/openid\n"
    "  token_cache_entries: 5\n"
    "redis:\n"
    "  url: redis://redis.test:6380/2\n"
    "  stream: stream-1\n"
    "  maxlen: 5000000000\n"
    "  failures_maxlen: 500\n"
    "  dedupe_ttl_s: 120\n"
    "  timeout_ms: 500\n"
    "  min_replicas_ack: 1\n"
    "  sentinels:\n"
    "    - s1.test:26379\n"
    "    - \"[fd00::1]:26379\"\n"
    "  master_name: mymaster\n"
    "  partitions: 16\n"
    "bot:\n"
    "  url: https://bot.test/api/messages\n"
    "  timeout_s: 30\n"
    "  concurrency: 4\n"
    "  max_attempts: 3\n"
    "  backoff_initial_ms: 200\n"
    "  backoff_max_ms: 20000\n"
    "  claim_idle_s: 600\n"
    "  consumer_suffix: -b\n"
    "policy:\n"
    "  body_max_bytes: 1048576\n"
    "  sync_types:\n"
    "    - invoke\n"
    "    - message\n"
    "  sync_deadline_ms: 5000\n"
    "  sync_compose_deadline_ms: 3000\n"
    "  sync_fallback_status: 503\n"
    "  allow_cidrs:\n"
    "    - 10.0.0.0/8\n"
    "    - \"fd00::/8\"\n"
    "  trusted_proxies:\n"
    "    - 192.168.1.1\n"
    "  answer_ping: false\n"
    "  max_connections: 100\n"
    "  max_inflight_writes: 50\n"
    "  max_inflight_body_bytes: 1048576\n"
    "relay:\n"
    "  listen: \"[::1]:4000\"\n"
    "  token_url: http://token.test/token\n"
    "  scope: api://bot/.default\n"
    "  allow_remote: true\n"
    "  secret: s3cret\n"
    "  directory_ttl_s: 86400\n"
    "  token_refresh_pct: 50\n"
    "  timeout_ms: 5000\n"
    "admin:\n"
    "  listen: \"\"\n"
    "log:\n"
    "  access: /var/log/botgate.log\n"
    "  level: debug\n"
    "  access_sample_1_in: 10\n"
    "shutdown_grace_s: 10\n";

/* The same document in flow style. */
static const char all_keys_flow[] =
    "{listen: [{address: 127.0.0.1, port: 8080, tls: false}, {address: '::', port: 8443}],\n"
    " state_dir: /var/lib/botgate,\n"
    " tls: {cert_file: /etc/tls/cert.pem, key_file: /etc/tls/key.pem, reload_check_s: 30},\n"
    " auth: {app_id: 11111111-2222-3333-4444-555555555555, app_password: pw-from-file,\n"
    "        app_type: SingleTenant, tenant_id: tenant-1,\n"
    "        openid_metadata_url: 'https://openid.test/.well-known/openidconfiguration',\n"
    "        issuer: 'https://issuer.test', clock_skew_s: 60, allow_emulator: true,\n"
    "        require_endorsements: false, ca_file: /etc/ca.pem, jwks_refresh_s: 3600,\n"
    "        emulator_openid_metadata_url: 'https://emulator.test/openid',\n"
    "        token_cache_entries: 5},\n"
    " redis: {url: 'redis://redis.test:6380/2', stream: stream-1, maxlen: 5000000000,\n"
    "         failures_maxlen: 500, dedupe_ttl_s: 120, timeout_ms: 500, min_replicas_ack: 1,\n"
    "         sentinels: ['s1.test:26379', '[fd00::1]:26379'], master_name: mymaster,\n"
    "         partitions: 16},\n"
    " bot: {url: 'https://bot.test/api/messages', timeout_s: 30, concurrency: 4,\n"
    "       max_attempts: 3, backoff_initial_ms: 200, backoff_max_ms: 20000,\n"
    "       claim_idle_s: 600, consumer_suffix: -b},\n"
    " policy: {body_max_bytes: 1048576, sync_types: [invoke, message], sync_deadline_ms: 5000,\n"
    "          sync_compose_deadline_ms: 3000, sync_fallback_status: 503,\n"
    "          allow_cidrs: [10.0.0.0/8, 'fd00::/8'], trusted_proxies: [192.168.1.1],\n"
    "          answer_ping: false, max_connections: 100, max_inflight_writes: 50,\n"
    "          max_inflight_body_bytes: 1048576},\n"
    " relay: {listen: '[::1]:4000', token_url: 'http://token.test/token',\n"
    "         scope: 'api://bot/.default', allow_remote: true, secret: s3cret,\n"
    "         directory_ttl_s: 86400, token_refresh_pct: 50, timeout_ms: 5000},\n"
    " admin: {listen: ''},\n"
    " log: {access: /var/log/botgate.log, level: debug, access_sample_1_in: 10},\n"
    " shutdown_grace_s: 10}\n";

/* The same values again, as BOTGATE_* variables (the contract's names, written out). */
static char *const all_keys_env[] = {
    "BOTGATE_LISTEN=http://127.0.0.1:8080, https://[::]:8443",
    "BOTGATE_STATE_DIR=/var/lib/botgate",
    "BOTGATE_TLS_CERT_FILE=/etc/tls/cert.pem",
    "BOTGATE_TLS_KEY_FILE=/etc/tls/key.pem",
    "BOTGATE_TLS_RELOAD_CHECK_S=30",
    "BOTGATE_AUTH_APP_ID=11111111-2222-3333-4444-555555555555",
    "BOTGATE_AUTH_APP_PASSWORD=pw-from-file",
    "BOTGATE_AUTH_APP_TYPE=SingleTenant",
    "BOTGATE_AUTH_TENANT_ID=tenant-1",
    "BOTGATE_AUTH_OPENID_METADATA_URL=https://openid.test/.well-known/openidconfiguration",
    "BOTGATE_AUTH_ISSUER=https://issuer.test",
    "BOTGATE_AUTH_CLOCK_SKEW_S=60",
    "BOTGATE_AUTH_ALLOW_EMULATOR=true",
    "BOTGATE_AUTH_REQUIRE_ENDORSEMENTS=false",
    "BOTGATE_AUTH_CA_FILE=/etc/ca.pem",
    "BOTGATE_AUTH_JWKS_REFRESH_S=3600",
    "BOTGATE_AUTH_EMULATOR_OPENID_METADATA_URL=https://emulator.test/openid",
    "BOTGATE_AUTH_TOKEN_CACHE_ENTRIES=5",
    "BOTGATE_REDIS_URL=redis://redis.test:6380/2",
    "BOTGATE_REDIS_STREAM=stream-1",
    "BOTGATE_REDIS_MAXLEN=5000000000",
    "BOTGATE_REDIS_FAILURES_MAXLEN=500",
    "BOTGATE_REDIS_DEDUPE_TTL_S=120",
    "BOTGATE_REDIS_TIMEOUT_MS=500",
    "BOTGATE_REDIS_MIN_REPLICAS_ACK=1",
    "BOTGATE_REDIS_SENTINELS=s1.test:26379,[fd00::1]:26379",
    "BOTGATE_REDIS_MASTER_NAME=mymaster",
    "BOTGATE_REDIS_PARTITIONS=16",
    "BOTGATE_BOT_URL=https://bot.test/api/messages",
    "BOTGATE_BOT_TIMEOUT_S=30",
    "BOTGATE_BOT_CONCURRENCY=4",
    "BOTGATE_BOT_MAX_ATTEMPTS=3",
    "BOTGATE_BOT_BACKOFF_INITIAL_MS=200",
    "BOTGATE_BOT_BACKOFF_MAX_MS=20000",
    "BOTGATE_BOT_CLAIM_IDLE_S=600",
    "BOTGATE_BOT_CONSUMER_SUFFIX=-b",
    "BOTGATE_POLICY_BODY_MAX_BYTES=1048576",
    "BOTGATE_POLICY_SYNC_TYPES=invoke, message",
    "BOTGATE_POLICY_SYNC_DEADLINE_MS=5000",
    "BOTGATE_POLICY_SYNC_COMPOSE_DEADLINE_MS=3000",
    "BOTGATE_POLICY_SYNC_FALLBACK_STATUS=503",
    "BOTGATE_POLICY_ALLOW_CIDRS=10.0.0.0/8 , fd00::/8",
    "BOTGATE_POLICY_TRUSTED_PROXIES=192.168.1.1",
    "BOTGATE_POLICY_ANSWER_PING=off",
    "BOTGATE_POLICY_MAX_CONNECTIONS=100",
    "BOTGATE_POLICY_MAX_INFLIGHT_WRITES=50",
    "BOTGATE_POLICY_MAX_INFLIGHT_BODY_BYTES=1048576",
    "BOTGATE_RELAY_LISTEN=[::1]:4000",
    "BOTGATE_RELAY_TOKEN_URL=http://token.test/token",
    "BOTGATE_RELAY_SCOPE=api://bot/.default",
    "BOTGATE_RELAY_ALLOW_REMOTE=true",
    "BOTGATE_RELAY_SECRET=s3cret",
    "BOTGATE_RELAY_DIRECTORY_TTL_S=86400",
    "BOTGATE_RELAY_TOKEN_REFRESH_PCT=50",
    "BOTGATE_RELAY_TIMEOUT_MS=5000",
    "BOTGATE_ADMIN_LISTEN=",
    "BOTGATE_LOG_ACCESS=/var/log/botgate.log",
    "BOTGATE_LOG_LEVEL=debug",
    "BOTGATE_LOG_ACCESS_SAMPLE_1_IN=10",
    "BOTGATE_SHUTDOWN_GRACE_S=10",
    NULL,
};

static char err[512];

/* Loads yaml (NULL = no file) and env over cfg, source "t.yaml". */
static int
load(bg_config *cfg, const char *yaml, char *const *env)
{
    return bg_config_load(cfg, yaml, yaml != NULL ? strlen(yaml) : 0, "t.yaml", env, err,
                          sizeof(err));
}

/* Loads into a fresh configuration, asserts success, and dumps the result. */
static void
load_dump(const char *yaml, char *const *env, char *out)
{
    bg_config cfg;
    assert_int_equal(bg_config_init(&cfg), 0);
    int rc = load(&cfg, yaml, env);
    if (rc != 0)
        print_error("load failed: %s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
    dump(&cfg, out, DUMP_MAX);
    bg_config_free(&cfg);
}

/* Asserts that every line of a differs from the same line of b. */
static void
assert_every_line_differs(const char *a, const char *b)
{
    int lines = 0;
    while (*a != '\0' && *b != '\0') {
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (la == lb && memcmp(a, b, la) == 0) {
            print_error("unchanged: %.*s\n", (int)la, a);
            fail();
        }
        a += la + (a[la] != '\0');
        b += lb + (b[lb] != '\0');
        lines++;
    }
    assert_int_equal(*a, *b);
    assert_int_equal(lines, 59); /* every key in the table */
}

/* ---- defaults ----------------------------------------------------------------------- */

static void
test_defaults_match_the_table(void **state)
{
    (void)state;
    bg_config cfg;
    char out[DUMP_MAX];
    assert_int_equal(bg_config_init(&cfg), 0);
    dump(&cfg, out, sizeof(out));
    assert_string_equal(out, defaults_dump);
    assert_int_equal(cfg.n_listen, 1);
    assert_true(cfg.listen[0].tls);
    bg_config_free(&cfg);
}

static void
test_init_after_free(void **state)
{
    (void)state;
    bg_config cfg;
    char out[DUMP_MAX];
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, all_keys_block, NULL), 0);
    bg_config_free(&cfg);
    bg_config_free(&cfg); /* free leaves cfg zeroed: a second free is harmless */
    assert_int_equal(bg_config_init(&cfg), 0);
    dump(&cfg, out, sizeof(out));
    assert_string_equal(out, defaults_dump);
    bg_config_free(&cfg);
}

static void
test_no_file_no_env_is_defaults(void **state)
{
    (void)state;
    char out[DUMP_MAX];
    load_dump(NULL, NULL, out);
    assert_string_equal(out, defaults_dump);
    load_dump("", NULL, out);
    assert_string_equal(out, defaults_dump);
    load_dump("# only a comment\n", NULL, out);
    assert_string_equal(out, defaults_dump);
    load_dump("---\n...\n", NULL, out);
    assert_string_equal(out, defaults_dump);
    load_dump("~\n", NULL, out);
    assert_string_equal(out, defaults_dump);
    /* Sections with everything commented out are null, not errors. */
    load_dump("auth:\nredis:\n  # url: redis://x\nlog: {}\n", NULL, out);
    assert_string_equal(out, defaults_dump);
}

/* ---- every key from YAML and from the environment ----------------------------------- */

static void
test_every_key_from_yaml(void **state)
{
    (void)state;
    char out[DUMP_MAX];
    load_dump(all_keys_block, NULL, out);
    assert_every_line_differs(out, defaults_dump);
    assert_non_null(strstr(out, "listen=http://127.0.0.1:8080,https://:::8443\n"));
    assert_non_null(strstr(out, "redis.maxlen=5000000000\n"));
    assert_non_null(strstr(out, "redis.sentinels=s1.test:26379,[fd00::1]:26379\n"));
    assert_non_null(strstr(out, "admin.listen=\n"));
}

static void
test_flow_and_block_style_agree(void **state)
{
    (void)state;
    char block[DUMP_MAX], flow[DUMP_MAX];
    load_dump(all_keys_block, NULL, block);
    load_dump(all_keys_flow, NULL, flow);
    assert_string_equal(block, flow);
}

static void
test_every_key_from_env(void **state)
{
    (void)state;
    char file[DUMP_MAX], env[DUMP_MAX];
    load_dump(all_keys_block, NULL, file);
    load_dump(NULL, all_keys_env, env);
    assert_string_equal(env, file);
}

static void
test_env_overrides_every_file_key(void **state)
{
    (void)state;
    char file[DUMP_MAX], both[DUMP_MAX];
    /* The file sets everything one way, the environment the other: the environment wins. */
    load_dump(all_keys_block, NULL, file);
    load_dump(all_keys_block,
              (char *const[]){"BOTGATE_LISTEN=https://0.0.0.0:8443",
                              "BOTGATE_STATE_DIR=var",
                              "BOTGATE_TLS_CERT_FILE=",
                              "BOTGATE_TLS_KEY_FILE=",
                              "BOTGATE_TLS_RELOAD_CHECK_S=0",
                              "BOTGATE_AUTH_APP_ID=",
                              "BOTGATE_AUTH_APP_PASSWORD=",
                              "BOTGATE_AUTH_APP_TYPE=MultiTenant",
                              "BOTGATE_AUTH_TENANT_ID=",
                              "BOTGATE_AUTH_OPENID_METADATA_URL=https://login."
                              "botframework.com/v1/.well-known/openidconfiguration",
                              "BOTGATE_AUTH_ISSUER=https://api.botframework.com",
                              "BOTGATE_AUTH_CLOCK_SKEW_S=300",
                              "BOTGATE_AUTH_ALLOW_EMULATOR=no",
                              "BOTGATE_AUTH_REQUIRE_ENDORSEMENTS=YES",
                              "BOTGATE_AUTH_CA_FILE=",
                              "BOTGATE_AUTH_JWKS_REFRESH_S=86400",
                              "BOTGATE_AUTH_EMULATOR_OPENID_METADATA_URL=https://login."
                              "microsoftonline.com/botframework.com/v2.0/.well-known/"
                              "openid-configuration",
                              "BOTGATE_AUTH_TOKEN_CACHE_ENTRIES=100000",
                              "BOTGATE_REDIS_URL=",
                              "BOTGATE_REDIS_STREAM=botgate:activities",
                              "BOTGATE_REDIS_MAXLEN=1000000",
                              "BOTGATE_REDIS_FAILURES_MAXLEN=10000",
                              "BOTGATE_REDIS_DEDUPE_TTL_S=600",
                              "BOTGATE_REDIS_TIMEOUT_MS=2000",
                              "BOTGATE_REDIS_MIN_REPLICAS_ACK=0",
                              "BOTGATE_REDIS_SENTINELS=",
                              "BOTGATE_REDIS_MASTER_NAME=",
                              "BOTGATE_REDIS_PARTITIONS=1",
                              "BOTGATE_BOT_URL=http://127.0.0.1:3978/api/messages",
                              "BOTGATE_BOT_TIMEOUT_S=300",
                              "BOTGATE_BOT_CONCURRENCY=32",
                              "BOTGATE_BOT_MAX_ATTEMPTS=10",
                              "BOTGATE_BOT_BACKOFF_INITIAL_MS=1000",
                              "BOTGATE_BOT_BACKOFF_MAX_MS=300000",
                              "BOTGATE_BOT_CLAIM_IDLE_S=60",
                              "BOTGATE_BOT_CONSUMER_SUFFIX=",
                              "BOTGATE_POLICY_BODY_MAX_BYTES=262144",
                              "BOTGATE_POLICY_SYNC_TYPES=invoke",
                              "BOTGATE_POLICY_SYNC_DEADLINE_MS=12000",
                              "BOTGATE_POLICY_SYNC_COMPOSE_DEADLINE_MS=4500",
                              "BOTGATE_POLICY_SYNC_FALLBACK_STATUS=504",
                              "BOTGATE_POLICY_ALLOW_CIDRS=",
                              "BOTGATE_POLICY_TRUSTED_PROXIES=  ",
                              "BOTGATE_POLICY_ANSWER_PING=On",
                              "BOTGATE_POLICY_MAX_CONNECTIONS=4096",
                              "BOTGATE_POLICY_MAX_INFLIGHT_WRITES=10000",
                              "BOTGATE_POLICY_MAX_INFLIGHT_BODY_BYTES=268435456",
                              "BOTGATE_RELAY_LISTEN=127.0.0.1:3979",
                              "BOTGATE_RELAY_TOKEN_URL=https://login."
                              "microsoftonline.com/botframework.com/oauth2/v2.0/"
                              "token",
                              "BOTGATE_RELAY_SCOPE=https://api.botframework.com/"
                              ".default",
                              "BOTGATE_RELAY_ALLOW_REMOTE=false",
                              "BOTGATE_RELAY_DIRECTORY_TTL_S=7776000",
                              "BOTGATE_RELAY_TOKEN_REFRESH_PCT=75",
                              "BOTGATE_RELAY_TIMEOUT_MS=15000",
                              "BOTGATE_ADMIN_LISTEN=127.0.0.1:9090",
                              "BOTGATE_LOG_ACCESS=stdout",
                              "BOTGATE_LOG_LEVEL=info",
                              "BOTGATE_LOG_ACCESS_SAMPLE_1_IN=1",
                              "BOTGATE_SHUTDOWN_GRACE_S=25",
                              NULL},
              both);
    assert_string_equal(both, defaults_dump);
    assert_string_not_equal(file, defaults_dump);
}

/* ---- precedence --------------------------------------------------------------------- */

static void
test_precedence_file_microsoft_botgate(void **state)
{
    (void)state;
    static const char yaml[] = "auth: {app_id: file-id, app_password: file-pw,"
                               " tenant_id: file-tenant, app_type: MultiTenant}\n";
    bg_config cfg;

    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, yaml, NULL), 0);
    assert_string_equal(cfg.auth.app_id, "file-id");
    assert_string_equal(cfg.auth.app_password, "file-pw");
    assert_string_equal(cfg.auth.tenant_id, "file-tenant");
    assert_string_equal(cfg.auth.app_type, "MultiTenant");
    bg_config_free(&cfg);

    char *const ms[] = {"MicrosoftAppId=ms-id", "MicrosoftAppPassword=ms-pw",
                        "MicrosoftAppTenantId=ms-tenant", "MicrosoftAppType=SingleTenant", NULL};
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, yaml, ms), 0);
    assert_string_equal(cfg.auth.app_id, "ms-id");
    assert_string_equal(cfg.auth.app_password, "ms-pw");
    assert_string_equal(cfg.auth.tenant_id, "ms-tenant");
    assert_string_equal(cfg.auth.app_type, "SingleTenant");
    bg_config_free(&cfg);

    /* BOTGATE_* wins over Microsoft*, whatever the order in the environment. */
    char *const both[] = {"BOTGATE_AUTH_APP_ID=bg-id",
                          "MicrosoftAppId=ms-id",
                          "MicrosoftAppPassword=ms-pw",
                          "MicrosoftAppTenantId=ms-tenant",
                          "MicrosoftAppType=SingleTenant",
                          "BOTGATE_AUTH_APP_PASSWORD=bg-pw",
                          "BOTGATE_AUTH_TENANT_ID=bg-tenant",
                          "BOTGATE_AUTH_APP_TYPE=UserAssignedMSI",
                          NULL};
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, yaml, both), 0);
    assert_string_equal(cfg.auth.app_id, "bg-id");
    assert_string_equal(cfg.auth.app_password, "bg-pw");
    assert_string_equal(cfg.auth.tenant_id, "bg-tenant");
    assert_string_equal(cfg.auth.app_type, "UserAssignedMSI");
    bg_config_free(&cfg);
}

static void
test_empty_microsoft_variables_do_not_erase_the_file(void **state)
{
    (void)state;
    bg_config cfg;
    /* The Bot Framework templates ship "MicrosoftAppId=": it must not turn auth off. */
    char *const env[] = {"MicrosoftAppId=", "MicrosoftAppPassword=", "MicrosoftAppTenantId=",
                         "MicrosoftAppType=", NULL};
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, "auth: {app_id: file-id, app_password: pw}\n", env), 0);
    assert_string_equal(cfg.auth.app_id, "file-id");
    assert_string_equal(cfg.auth.app_password, "pw");
    assert_string_equal(cfg.auth.app_type, "MultiTenant");
    /* An explicit empty BOTGATE_* does erase: that is the way to switch a key off. */
    char *const off[] = {"BOTGATE_AUTH_APP_ID=", NULL};
    assert_int_equal(load(&cfg, NULL, off), 0);
    assert_string_equal(cfg.auth.app_id, "");
    bg_config_free(&cfg);
}

static void
test_first_occurrence_in_env_wins(void **state)
{
    (void)state;
    bg_config cfg;
    char *const env[] = {"BOTGATE_REDIS_TIMEOUT_MS=7", "BOTGATE_REDIS_TIMEOUT_MS=8", NULL};
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, NULL, env), 0);
    assert_int_equal(cfg.redis.timeout_ms, 7); /* as getenv() would */
    bg_config_free(&cfg);
}

/* ---- value syntax ------------------------------------------------------------------- */

static void
test_boolean_spellings(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool value;
    } cases[] = {{"true", true},   {"True", true},   {"YES", true}, {"on", true},
                 {"false", false}, {"FALSE", false}, {"no", false}, {"Off", false}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bg_config cfg;
        char yaml[64];
        snprintf(yaml, sizeof(yaml), "auth: {allow_emulator: %s}", cases[i].text);
        assert_int_equal(bg_config_init(&cfg), 0);
        assert_int_equal(load(&cfg, yaml, NULL), 0);
        assert_int_equal(cfg.auth.allow_emulator, cases[i].value);
        bg_config_free(&cfg);
    }
}

static void
test_enumerations_are_canonicalised(void **state)
{
    (void)state;
    bg_config cfg;
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, "log: {level: WARN}\nauth: {app_type: usERassignedmsi}\n", NULL),
                     0);
    assert_string_equal(cfg.log.level, "warn");
    assert_string_equal(cfg.auth.app_type, "UserAssignedMSI");
    /* An empty app type is the SDK's default, MultiTenant. */
    assert_int_equal(load(&cfg, "auth: {app_type: ''}\n", NULL), 0);
    assert_string_equal(cfg.auth.app_type, "MultiTenant");
    bg_config_free(&cfg);
}

static void
test_quoted_numbers_and_null_strings(void **state)
{
    (void)state;
    bg_config cfg;
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg,
                          "redis: {timeout_ms: \"750\", stream: '0x10', master_name: }\n"
                          "tls: {cert_file: ~}\n"
                          "shutdown_grace_s: -0\n",
                          NULL),
                     0);
    assert_int_equal(cfg.redis.timeout_ms, 750);
    assert_string_equal(cfg.redis.stream, "0x10");
    assert_string_equal(cfg.redis.master_name, "");
    assert_string_equal(cfg.tls.cert_file, "");
    assert_int_equal(cfg.shutdown_grace_s, 0);
    bg_config_free(&cfg);
}

static void
test_env_lists(void **state)
{
    (void)state;
    bg_config cfg;
    char *const env[] = {"BOTGATE_POLICY_SYNC_TYPES=  invoke ,\tmessage,event  ",
                         "BOTGATE_POLICY_ALLOW_CIDRS=", "BOTGATE_POLICY_TRUSTED_PROXIES= ::1 ",
                         NULL};
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, "policy: {allow_cidrs: [10.0.0.0/8]}\n", env), 0);
    assert_int_equal(cfg.policy.sync_types.n, 3);
    assert_string_equal(cfg.policy.sync_types.v[0], "invoke");
    assert_string_equal(cfg.policy.sync_types.v[1], "message");
    assert_string_equal(cfg.policy.sync_types.v[2], "event");
    assert_int_equal(cfg.policy.allow_cidrs.n, 0); /* empty string = empty list */
    assert_int_equal(cfg.policy.trusted_proxies.n, 1);
    assert_string_equal(cfg.policy.trusted_proxies.v[0], "::1");
    bg_config_free(&cfg);
}

static void
test_env_listeners(void **state)
{
    (void)state;
    bg_config cfg;
    char *const env[] = {"BOTGATE_LISTEN= HTTPS://[::]:8443 , http://localhost:8080,"
                         "https://127.0.0.1:8443",
                         NULL};
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, NULL, env), 0);
    assert_int_equal(cfg.n_listen, 3);
    assert_string_equal(cfg.listen[0].address, "::");
    assert_int_equal(cfg.listen[0].port, 8443);
    assert_true(cfg.listen[0].tls);
    assert_string_equal(cfg.listen[1].address, "localhost");
    assert_int_equal(cfg.listen[1].port, 8080);
    assert_false(cfg.listen[1].tls);
    assert_string_equal(cfg.listen[2].address, "127.0.0.1");
    bg_config_free(&cfg);
}

static void
test_yaml_listener_tls_defaults_to_true(void **state)
{
    (void)state;
    bg_config cfg;
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, "listen: [{port: 9443, address: 0.0.0.0}]\n", NULL), 0);
    assert_int_equal(cfg.n_listen, 1);
    assert_true(cfg.listen[0].tls);
    assert_int_equal(cfg.listen[0].port, 9443);
    bg_config_free(&cfg);
}

static void
test_accepted_urls_and_addresses(void **state)
{
    (void)state;
    static const char *const good[] = {
        "redis: {url: 'redis://localhost'}",
        "redis: {url: 'redis://:secret@10.0.0.5:6379/0'}",
        "redis: {url: 'redis://user:pw@[::1]:6379'}",
        "redis: {url: 'redis://:p@ss@redis:6379/1'}",
        "redis: {url: 'unix:///run/redis/redis.sock'}",
        "redis: {url: ''}",
        "bot: {url: 'HTTP://bot:3978'}",
        "relay: {listen: 'localhost:1'}",
        "admin: {listen: '0.0.0.0:65535'}",
        "policy: {allow_cidrs: ['0.0.0.0/0', '::/0', '2001:db8::1/128', 10.1.2.3]}",
        "listen: [{address: '::1', port: 1, tls: false}, {address: '::1', port: 2}]",
        /* half a certificate pair is fine when no listener uses TLS */
        "listen: [{address: 127.0.0.1, port: 8080, tls: false}]\ntls: {cert_file: c.pem}",
        /* both halves set, or both empty */
        "tls: {cert_file: c.pem, key_file: k.pem}",
        "auth: {app_id: x, app_type: SingleTenant, tenant_id: t}",
        /* no app id: the tenant rule does not apply (auth is off) */
        "auth: {app_type: SingleTenant}",
        "redis: {sentinels: ['sentinel-0.sentinel:26379'], master_name: m}",
        "bot: {backoff_initial_ms: 5, backoff_max_ms: 5}",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        bg_config cfg;
        assert_int_equal(bg_config_init(&cfg), 0);
        int rc = load(&cfg, good[i], NULL);
        if (rc != 0)
            print_error("refused %s: %s\n", good[i], err);
        assert_int_equal(rc, 0);
        bg_config_free(&cfg);
    }
}

/* ---- errors ------------------------------------------------------------------------- */

struct bad {
    const char *yaml;  /* NULL: no file */
    char *env[4];      /* NULL-terminated */
    const char *where; /* the message must start with this */
    const char *key;   /* ... and contain this */
};

/*
 * Loads a bad configuration into a configuration that holds the defaults and checks the
 * return code, the message's origin and key, that it is one line, and that the
 * configuration is exactly as it was.
 */
static void
expect_refused(const struct bad *b)
{
    bg_config cfg;
    char before[DUMP_MAX], after[DUMP_MAX];
    assert_int_equal(bg_config_init(&cfg), 0);
    dump(&cfg, before, sizeof(before));
    int rc = load(&cfg, b->yaml, b->env[0] != NULL ? b->env : NULL);
    bool ok = rc == BG_ECONFIG && strncmp(err, b->where, strlen(b->where)) == 0 &&
              strstr(err, b->key) != NULL && strchr(err, '\n') == NULL;
    if (!ok)
        print_error("yaml <%s> env <%s>: rc %d, message \"%s\"; wanted \"%s...%s...\"\n",
                    b->yaml ? b->yaml : "(none)", b->env[0] ? b->env[0] : "(none)", rc, err,
                    b->where, b->key);
    assert_true(ok);
    dump(&cfg, after, sizeof(after));
    assert_string_equal(after, before);
    bg_config_free(&cfg);
}

/* Runs a table of refusals. */
static void
expect_all_refused(const struct bad *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect_refused(&cases[i]);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void
test_error_message_format(void **state)
{
    (void)state;
    bg_config cfg;
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, "# timeouts\nredis:\n  timeout_ms: 0\n", NULL), BG_ECONFIG);
    assert_string_equal(err, "t.yaml:3: redis.timeout_ms: 0 is out of range 1..600000");
    char *const env[] = {"BOTGATE_REDIS_TIMEOUT_MS=0", NULL};
    assert_int_equal(load(&cfg, NULL, env), BG_ECONFIG);
    assert_string_equal(err, "BOTGATE_REDIS_TIMEOUT_MS: redis.timeout_ms: 0 is out of range "
                             "1..600000");
    assert_int_equal(load(&cfg,
                          "listen:\n  - {address: 0.0.0.0, port: 1}\n"
                          "  - address: 127.0.0.1\n    porrt: 80\n",
                          NULL),
                     BG_ECONFIG);
    assert_string_equal(err, "t.yaml:4: listen[1].porrt: unknown key (address, port, tls)");
    /* A NULL source still gives a usable prefix. */
    assert_int_equal(bg_config_load(&cfg, "x: 1", 4, NULL, NULL, err, sizeof(err)), BG_ECONFIG);
    assert_string_equal(err, "(config):1: x: unknown key");
    /* A short or absent buffer is not written past. */
    char tiny[8];
    assert_int_equal(bg_config_load(&cfg, "x: 1", 4, "t", NULL, tiny, sizeof(tiny)), BG_ECONFIG);
    assert_string_equal(tiny, "t:1: x:");
    assert_int_equal(bg_config_load(&cfg, "x: 1", 4, "t", NULL, NULL, 0), BG_ECONFIG);
    bg_config_free(&cfg);
}

static void
test_unknown_keys(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"redsi: {url: ''}\n", {NULL}, "t.yaml:1: ", "redsi: unknown key"},
        {"redis:\n  timeout: 5\n", {NULL}, "t.yaml:2: ", "redis.timeout: unknown key"},
        {"redis.url: ''\n", {NULL}, "t.yaml:1: ", "redis.url: unknown key"},
        {"listen:\n  - {address: 0.0.0.0, port: 1}\n  - address: 127.0.0.1\n    porrt: 80\n",
         {NULL},
         "t.yaml:4: ",
         "listen[1].porrt: unknown key"},
        {"log: {level: info, format: json}\n", {NULL}, "t.yaml:1: ", "log.format: unknown key"},
        {"relay: {listen: '', tls: {x: 1}}\n", {NULL}, "t.yaml:1: ", "relay.tls: unknown key"},
        {NULL, {"BOTGATE_REDIS_TIMEOUT=5", NULL}, "BOTGATE_REDIS_TIMEOUT: ", "redis.timeout"},
        {NULL, {"BOTGATE_AUTH_APPID=x", NULL}, "BOTGATE_AUTH_APPID: ", "auth.appid: unknown key"},
        /* a key that runs into its value (no space after ':') is not echoed whole */
        {"auth: {app_id:abc}\n", {NULL}, "t.yaml:1: ", "auth.app_id: unknown key"},
        {"auth:\n  app_id:abc\n", {NULL}, "t.yaml:2: ", "auth: expected a map"},
    };
    expect_all_refused(cases, N(cases));
}

static void
test_unrelated_botgate_variables_are_ignored(void **state)
{
    (void)state;
    char out[DUMP_MAX];
    load_dump(NULL,
              (char *const[]){"BOTGATE_BIN=/x/botgate", "BOTGATE_SOURCE_DIR=/src", "BOTGATE_=1",
                              "BOTGATE_REDIS=1", "PATH=/bin", "NOEQUALS", NULL},
              out);
    assert_string_equal(out, defaults_dump);
}

static void
test_wrong_types(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"redis: {timeout_ms: {a: 1}}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.timeout_ms: expected an integer, got a map"},
        {"redis: {timeout_ms: [1]}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.timeout_ms: expected an integer, got a list"},
        {"redis: {timeout_ms: }\n", {NULL}, "t.yaml:1: ", "redis.timeout_ms: needs a value"},
        {"redis: {stream: {a: 1}}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.stream: expected a string, got a map"},
        {"auth: {allow_emulator: [true]}\n",
         {NULL},
         "t.yaml:1: ",
         "auth.allow_emulator: expected a boolean"},
        {"policy: {sync_types: invoke}\n",
         {NULL},
         "t.yaml:1: ",
         "policy.sync_types: expected a list"},
        {"policy: {sync_types: {invoke: 1}}\n",
         {NULL},
         "t.yaml:1: ",
         "policy.sync_types: expected a list"},
        {"policy:\n  sync_types:\n    - invoke\n    - {a: 1}\n",
         {NULL},
         "t.yaml:4: ",
         "policy.sync_types[1]: expected a string, got a map"},
        {"policy: {sync_types: [invoke, '']}\n",
         {NULL},
         "t.yaml:1: ",
         "policy.sync_types[1]: is empty"},
        {"policy: {sync_types: [invoke, ~]}\n",
         {NULL},
         "t.yaml:1: ",
         "policy.sync_types[1]: is empty"},
        {"redis: 5\n", {NULL}, "t.yaml:1: ", "redis: expected a map of keys, got a scalar"},
        {"redis: [url]\n", {NULL}, "t.yaml:1: ", "redis: expected a map of keys, got a list"},
        {"state_dir: {a: b}\n", {NULL}, "t.yaml:1: ", "state_dir: expected a string, got a map"},
        {"listen: {address: 0.0.0.0, port: 1}\n", {NULL}, "t.yaml:1: ", "listen: expected a list"},
        {"listen: [8443]\n", {NULL}, "t.yaml:1: ", "listen[0]: expected a map"},
        {"listen: [{address: [a], port: 1}]\n",
         {NULL},
         "t.yaml:1: ",
         "listen[0].address: expected a scalar"},
        {"listen: [{address: 0.0.0.0, port: 1, port: 2}]\n",
         {NULL},
         "t.yaml:1: ",
         "listen[0].port: duplicate key"},
        {"- a\n- b\n", {NULL}, "t.yaml:1: ", "(top level): expected a map"},
        {"just text\n", {NULL}, "t.yaml:1: ", "(top level): expected a map"},
        {"\n\n[a]: 1\n", {NULL}, "t.yaml:3: ", "(top level): a key must be a string"},
        {"redis: {[a]: 1}\n", {NULL}, "t.yaml:1: ", "redis: a key must be a string"},
        {"redis: {stream: \"a\\0b\"}\n", {NULL}, "t.yaml:1: ", "redis.stream: contains a NUL byte"},
    };
    expect_all_refused(cases, N(cases));
}

static void
test_integers(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"redis: {timeout_ms: 12ms}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.timeout_ms: \"12ms\" is not a decimal integer"},
        {"redis: {timeout_ms: 1.5}\n", {NULL}, "t.yaml:1: ", "redis.timeout_ms: \"1.5\" is not"},
        {"redis: {timeout_ms: 1e3}\n", {NULL}, "t.yaml:1: ", "redis.timeout_ms: \"1e3\" is not"},
        {"redis: {timeout_ms: 0x10}\n", {NULL}, "t.yaml:1: ", "redis.timeout_ms: \"0x10\" is not"},
        {"redis: {timeout_ms: 010}\n", {NULL}, "t.yaml:1: ", "redis.timeout_ms: \"010\" is not"},
        {"redis: {timeout_ms: 1_000}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.timeout_ms: \"1_000\" is not"},
        {"redis: {timeout_ms: +5}\n", {NULL}, "t.yaml:1: ", "redis.timeout_ms: \"+5\" is not"},
        {"redis: {timeout_ms: -}\n", {NULL}, "t.yaml:1: ", "redis.timeout_ms: \"-\" is not"},
        {"redis: {timeout_ms: ''}\n", {NULL}, "t.yaml:1: ", "redis.timeout_ms: \"\" is not"},
        {"redis: {timeout_ms: 99999999999999999999999}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.timeout_ms: 99999999999999999999999 is out of range 1..600000"},
        {"redis: {maxlen: 9223372036854775808}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.maxlen: 9223372036854775808 is out of range"},
        {"redis: {timeout_ms: -5}\n", {NULL}, "t.yaml:1: ", "redis.timeout_ms: -5 is out of range"},
        {NULL,
         {"BOTGATE_REDIS_TIMEOUT_MS= 5", NULL},
         "BOTGATE_REDIS_TIMEOUT_MS: ",
         "redis.timeout_ms: \" 5\" is not"},
        {NULL,
         {"BOTGATE_REDIS_TIMEOUT_MS=5 ", NULL},
         "BOTGATE_REDIS_TIMEOUT_MS: ",
         "redis.timeout_ms"},
        {NULL,
         {"BOTGATE_REDIS_TIMEOUT_MS=", NULL},
         "BOTGATE_REDIS_TIMEOUT_MS: ",
         "redis.timeout_ms"},
        {"listen: [{address: 0.0.0.0, port: 80.0}]\n",
         {NULL},
         "t.yaml:1: ",
         "listen[0].port: \"80.0\" is not"},
        {"listen: [{address: 0.0.0.0, port: http}]\n", {NULL}, "t.yaml:1: ", "listen[0].port"},
    };
    expect_all_refused(cases, N(cases));
}

/* Every numeric key: its bounds are accepted, one past either bound is refused. */
static void
test_numeric_ranges(void **state)
{
    (void)state;
    static const struct {
        const char *key, *env;
        long long min, max;
    } ranges[] = {
        {"auth.clock_skew_s", "BOTGATE_AUTH_CLOCK_SKEW_S", 0, 3600},
        {"auth.jwks_refresh_s", "BOTGATE_AUTH_JWKS_REFRESH_S", 60, 604800},
        {"auth.token_cache_entries", "BOTGATE_AUTH_TOKEN_CACHE_ENTRIES", 0, 1000000},
        {"redis.maxlen", "BOTGATE_REDIS_MAXLEN", 1, 10000000000LL},
        {"redis.failures_maxlen", "BOTGATE_REDIS_FAILURES_MAXLEN", 100, 10000000},
        {"redis.dedupe_ttl_s", "BOTGATE_REDIS_DEDUPE_TTL_S", 1, 2592000},
        {"redis.timeout_ms", "BOTGATE_REDIS_TIMEOUT_MS", 1, 600000},
        {"redis.min_replicas_ack", "BOTGATE_REDIS_MIN_REPLICAS_ACK", 0, 16},
        {"redis.partitions", "BOTGATE_REDIS_PARTITIONS", 1, 1024},
        {"bot.timeout_s", "BOTGATE_BOT_TIMEOUT_S", 1, 3600},
        {"bot.concurrency", "BOTGATE_BOT_CONCURRENCY", 1, 4096},
        {"bot.max_attempts", "BOTGATE_BOT_MAX_ATTEMPTS", 1, 1000},
        {"bot.backoff_initial_ms", "BOTGATE_BOT_BACKOFF_INITIAL_MS", 1, 3600000},
        {"bot.backoff_max_ms", "BOTGATE_BOT_BACKOFF_MAX_MS", 1, 86400000},
        {"bot.claim_idle_s", "BOTGATE_BOT_CLAIM_IDLE_S", 1, 86400},
        {"policy.body_max_bytes", "BOTGATE_POLICY_BODY_MAX_BYTES", 1024, 67108864},
        {"policy.sync_deadline_ms", "BOTGATE_POLICY_SYNC_DEADLINE_MS", 100, 14000},
        {"policy.sync_compose_deadline_ms", "BOTGATE_POLICY_SYNC_COMPOSE_DEADLINE_MS", 100, 14000},
        {"policy.sync_fallback_status", "BOTGATE_POLICY_SYNC_FALLBACK_STATUS", 200, 599},
        {"policy.max_connections", "BOTGATE_POLICY_MAX_CONNECTIONS", 1, 1000000},
        {"policy.max_inflight_writes", "BOTGATE_POLICY_MAX_INFLIGHT_WRITES", 1, 1000000},
        {"policy.max_inflight_body_bytes", "BOTGATE_POLICY_MAX_INFLIGHT_BODY_BYTES", 1024,
         68719476736LL},
        {"shutdown_grace_s", "BOTGATE_SHUTDOWN_GRACE_S", 0, 3600},
    };
    for (size_t i = 0; i < N(ranges); i++) {
        const char *dot = strchr(ranges[i].key, '.');
        long long probe[] = {ranges[i].min - 1, ranges[i].min, ranges[i].max, ranges[i].max + 1};
        for (size_t p = 0; p < 4; p++) {
            bool inside = p == 1 || p == 2;
            char var[128], yaml[128], want[128];
            snprintf(var, sizeof(var), "%s=%lld", ranges[i].env, probe[p]);
            if (dot != NULL)
                snprintf(yaml, sizeof(yaml), "%.*s: {%s: %lld}\n", (int)(dot - ranges[i].key),
                         ranges[i].key, dot + 1, probe[p]);
            else
                snprintf(yaml, sizeof(yaml), "%s: %lld\n", ranges[i].key, probe[p]);
            snprintf(want, sizeof(want), "%s: %lld is out of range %lld..%lld", ranges[i].key,
                     probe[p], ranges[i].min, ranges[i].max);
            /* The backoff pair must stay ordered whatever bound is probed (first wins). */
            char *env[] = {var, "BOTGATE_BOT_BACKOFF_INITIAL_MS=1",
                           "BOTGATE_BOT_BACKOFF_MAX_MS=86400000", NULL};
            bg_config cfg;
            assert_int_equal(bg_config_init(&cfg), 0);
            int rc = load(&cfg, NULL, env);
            if (inside ? rc != 0 : rc != BG_ECONFIG || strstr(err, want) == NULL)
                print_error("%s: rc %d \"%s\"\n", var, rc, err);
            assert_int_equal(rc, inside ? 0 : BG_ECONFIG);
            if (!inside) {
                assert_non_null(strstr(err, want));
                rc = load(&cfg, yaml, NULL);
                if (rc != BG_ECONFIG || strstr(err, want) == NULL)
                    print_error("%s: rc %d \"%s\"\n", yaml, rc, err);
                assert_int_equal(rc, BG_ECONFIG);
                assert_non_null(strstr(err, want));
                assert_int_equal(strncmp(err, "t.yaml:1: ", 10), 0);
            }
            bg_config_free(&cfg);
        }
    }
}

static void
test_enumerations_and_booleans(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"log: {level: verbose}\n",
         {NULL},
         "t.yaml:1: ",
         "log.level: \"verbose\" is not one of debug, info, warn, error"},
        {"log: {level: ''}\n", {NULL}, "t.yaml:1: ", "log.level"},
        {"auth: {app_type: Multi}\n",
         {NULL},
         "t.yaml:1: ",
         "auth.app_type: \"Multi\" is not one of MultiTenant, SingleTenant, UserAssignedMSI"},
        {NULL, {"MicrosoftAppType=Bogus", NULL}, "MicrosoftAppType: ", "auth.app_type"},
        {NULL, {"BOTGATE_LOG_LEVEL=trace", NULL}, "BOTGATE_LOG_LEVEL: ", "log.level"},
        {"auth: {allow_emulator: maybe}\n",
         {NULL},
         "t.yaml:1: ",
         "auth.allow_emulator: \"maybe\" is not a boolean"},
        {"auth: {allow_emulator: 1}\n", {NULL}, "t.yaml:1: ", "auth.allow_emulator"},
        {"auth: {allow_emulator: }\n", {NULL}, "t.yaml:1: ", "auth.allow_emulator: needs a value"},
        {NULL,
         {"BOTGATE_POLICY_ANSWER_PING=", NULL},
         "BOTGATE_POLICY_ANSWER_PING: ",
         "policy.answer_ping"},
        {"listen: [{address: 0.0.0.0, port: 1, tls: sometimes}]\n",
         {NULL},
         "t.yaml:1: ",
         "listen[0].tls"},
        {"log: {access: ''}\n", {NULL}, "t.yaml:1: ", "log.access: must not be empty"},
        {"state_dir: ''\n", {NULL}, "t.yaml:1: ", "state_dir: must not be empty"},
        {"redis: {stream: ''}\n", {NULL}, "t.yaml:1: ", "redis.stream: must not be empty"},
        {"auth: {issuer: ''}\n", {NULL}, "t.yaml:1: ", "auth.issuer: must not be empty"},
        {"relay: {scope: ''}\n", {NULL}, "t.yaml:1: ", "relay.scope: must not be empty"},
    };
    expect_all_refused(cases, N(cases));
}

static void
test_urls_and_addresses(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"redis: {url: 'http://redis:6379'}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.url: must be empty, redis://"},
        {"redis: {url: 'rediss://redis:6379'}\n", {NULL}, "t.yaml:1: ", "redis.url"},
        {"redis: {url: 'redis://'}\n", {NULL}, "t.yaml:1: ", "redis.url: redis:// needs a host"},
        {"redis: {url: 'redis:///0'}\n", {NULL}, "t.yaml:1: ", "redis.url: redis:// needs a host"},
        {"redis: {url: 'redis://:6379'}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.url: redis:// needs a host"},
        {"redis: {url: 'redis://u:p@'}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.url: redis:// needs a host"},
        {"redis: {url: 'redis://h:0'}\n", {NULL}, "t.yaml:1: ", "redis.url: redis:// has a port"},
        {"redis: {url: 'redis://h:x'}\n", {NULL}, "t.yaml:1: ", "redis.url: redis:// has a port"},
        {"redis: {url: 'redis://[::1'}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.url: redis:// has a malformed"},
        {"redis: {url: 'redis://h/db'}\n", {NULL}, "t.yaml:1: ", "redis.url: the database"},
        {"redis: {url: 'unix://'}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.url: unix:// needs a socket path"},
        {"redis: {url: 'redis://h x'}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.url: must not contain spaces"},
        {NULL, {"BOTGATE_REDIS_URL=localhost:6379", NULL}, "BOTGATE_REDIS_URL: ", "redis.url"},
        {"bot: {url: 'ftp://bot/api'}\n",
         {NULL},
         "t.yaml:1: ",
         "bot.url: must be an http:// or https:// URL"},
        {"bot: {url: 'http://'}\n", {NULL}, "t.yaml:1: ", "bot.url"},
        {"bot: {url: 'http:///api'}\n", {NULL}, "t.yaml:1: ", "bot.url"},
        {"bot: {url: '127.0.0.1:3978'}\n", {NULL}, "t.yaml:1: ", "bot.url"},
        {"bot: {url: ''}\n", {NULL}, "t.yaml:1: ", "bot.url"},
        {"auth: {openid_metadata_url: 'file:///etc/openid'}\n",
         {NULL},
         "t.yaml:1: ",
         "auth.openid_metadata_url"},
        {"auth: {openid_metadata_url: 'http://login.botframework.com/v1/openid'}\n",
         {NULL},
         "t.yaml:1: ",
         "auth.openid_metadata_url: must be an https:// URL"},
        {"auth: {emulator_openid_metadata_url: 'http://login.test/openid'}\n",
         {NULL},
         "t.yaml:1: ",
         "auth.emulator_openid_metadata_url: must be an https:// URL"},
        {"relay: {token_url: 'token'}\n", {NULL}, "t.yaml:1: ", "relay.token_url"},
        {"relay: {listen: '3979'}\n", {NULL}, "t.yaml:1: ", "relay.listen: must be HOST:PORT"},
        {"relay: {listen: '127.0.0.1:99999'}\n", {NULL}, "t.yaml:1: ", "relay.listen: the port"},
        {"relay: {listen: ':3979'}\n",
         {NULL},
         "t.yaml:1: ",
         "relay.listen: must be HOST:PORT with a host"},
        {"relay: {listen: 'example.com:3979'}\n",
         {NULL},
         "t.yaml:1: ",
         "relay.listen: the host must be"},
        {"relay: {listen: '0.0.0.0:3979'}\n",
         {NULL},
         "t.yaml:1: ",
         "relay.listen: 0.0.0.0:3979 is not a loopback address"},
        {"relay: {listen: '[::]:3979', secret: s3cret}\n",
         {NULL},
         "t.yaml:1: ",
         "relay.listen: [::]:3979 is not a loopback address"},
        {"relay: {listen: '10.0.0.1:3979', allow_remote: true}\n",
         {NULL},
         "t.yaml:1: ",
         "relay.secret: must be set when relay.allow_remote is true"},
        {NULL, {"BOTGATE_RELAY_LISTEN=0.0.0.0:3979", NULL}, "BOTGATE_RELAY_LISTEN: ", "loopback"},
        {"relay: {token_refresh_pct: 95}\n", {NULL}, "t.yaml:1: ", "relay.token_refresh_pct"},
        {"relay: {directory_ttl_s: 10}\n", {NULL}, "t.yaml:1: ", "relay.directory_ttl_s"},
        {"relay: {timeout_ms: 0}\n", {NULL}, "t.yaml:1: ", "relay.timeout_ms"},
        {"admin: {listen: '::1:9090'}\n",
         {NULL},
         "t.yaml:1: ",
         "admin.listen: an IPv6 address needs brackets"},
        {"admin: {listen: '127.0.0.1:'}\n", {NULL}, "t.yaml:1: ", "admin.listen"},
        {NULL, {"BOTGATE_ADMIN_LISTEN=[::1]9090", NULL}, "BOTGATE_ADMIN_LISTEN: ", "admin.listen"},
        {"redis: {sentinels: ['sentinel'], master_name: m}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.sentinels[0]: must be HOST:PORT"},
        {"redis: {sentinels: ['s:1', 's 2:2'], master_name: m}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.sentinels[1]"},
        {"policy: {allow_cidrs: [10.0.0.0/33]}\n",
         {NULL},
         "t.yaml:1: ",
         "policy.allow_cidrs[0]: is not an IP address or a CIDR"},
        {"policy: {allow_cidrs: ['::/129']}\n",
         {NULL},
         "t.yaml:1: ",
         "policy.allow_cidrs[0]: is not an IP address or a CIDR"},
        {"policy: {allow_cidrs: [10.0.0.0/]}\n", {NULL}, "t.yaml:1: ", "policy.allow_cidrs[0]"},
        {"policy: {trusted_proxies: [10.0.0.1, proxy.local]}\n",
         {NULL},
         "t.yaml:1: ",
         "policy.trusted_proxies[1]: is not an IP address"},
        {"policy: {sync_types: [invoke, 'end of']}\n",
         {NULL},
         "t.yaml:1: ",
         "policy.sync_types[1]: must be one word"},
        {NULL,
         {"BOTGATE_POLICY_SYNC_TYPES=invoke,,message", NULL},
         "BOTGATE_POLICY_SYNC_TYPES: ",
         "policy.sync_types[1]: is empty"},
        {NULL,
         {"BOTGATE_POLICY_SYNC_TYPES=invoke,", NULL},
         "BOTGATE_POLICY_SYNC_TYPES: ",
         "policy.sync_types[1]: is empty"},
        {NULL,
         {"BOTGATE_POLICY_ALLOW_CIDRS=10.0.0.0/8,nope", NULL},
         "BOTGATE_POLICY_ALLOW_CIDRS: ",
         "policy.allow_cidrs[1]"},
    };
    expect_all_refused(cases, N(cases));
}

static void
test_listeners(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"listen: []\n", {NULL}, "t.yaml:1: ", "listen: at least one listener is needed"},
        {"listen:\n", {NULL}, "t.yaml:1: ", "listen: at least one listener"},
        {NULL, {"BOTGATE_LISTEN=", NULL}, "BOTGATE_LISTEN: ", "listen: at least one listener"},
        {"listen: [{address: '', port: 80}]\n",
         {NULL},
         "t.yaml:1: ",
         "listen[0].address: must not be empty"},
        {"listen: [{address: example.com, port: 80}]\n",
         {NULL},
         "t.yaml:1: ",
         "listen[0].address: \"example.com\" is not a numeric IP"},
        {"listen: [{address: '[::]', port: 80}]\n", {NULL}, "t.yaml:1: ", "listen[0].address"},
        {"listen:\n  - address: 0.0.0.0\n    port: 0\n",
         {NULL},
         "t.yaml:3: ",
         "listen[0].port: 0 is out of range 1..65535"},
        {"listen: [{address: 0.0.0.0, port: 65536}]\n",
         {NULL},
         "t.yaml:1: ",
         "listen[0].port: 65536 is out of range"},
        {"listen:\n  - address: 0.0.0.0\n", {NULL}, "t.yaml:2: ", "listen[0].port: is required"},
        {"listen:\n  - port: 80\n", {NULL}, "t.yaml:2: ", "listen[0].address: is required"},
        {"listen: [{}]\n", {NULL}, "t.yaml:1: ", "listen[0].address: is required"},
        {"listen:\n  - {address: 0.0.0.0, port: 8443}\n  - {address: 0.0.0.0, port: 8443, tls: "
         "false}\n",
         {NULL},
         "t.yaml:3: ",
         "listen[1]: repeats listen[0]"},
        {NULL,
         {"BOTGATE_LISTEN=https://0.0.0.0:8443,http://0.0.0.0:8443", NULL},
         "BOTGATE_LISTEN: ",
         "listen[1]: repeats listen[0]"},
        {NULL,
         {"BOTGATE_LISTEN=0.0.0.0:8443", NULL},
         "BOTGATE_LISTEN: ",
         "listen[0]: must be https://ADDRESS:PORT"},
        {NULL, {"BOTGATE_LISTEN=ftp://0.0.0.0:21", NULL}, "BOTGATE_LISTEN: ", "listen[0]"},
        {NULL,
         {"BOTGATE_LISTEN=https://::1:8443", NULL},
         "BOTGATE_LISTEN: ",
         "listen[0]: an IPv6 address needs brackets"},
        {NULL, {"BOTGATE_LISTEN=https://0.0.0.0:8443/", NULL}, "BOTGATE_LISTEN: ", "listen[0]"},
        {NULL, {"BOTGATE_LISTEN=https://0.0.0.0:8443,", NULL}, "BOTGATE_LISTEN: ", "listen[1]"},
        {NULL,
         {"BOTGATE_LISTEN=https://host.example:8443", NULL},
         "BOTGATE_LISTEN: ",
         "listen[0].address"},
        {NULL, {"BOTGATE_LISTEN=https://0.0.0.0:0", NULL}, "BOTGATE_LISTEN: ", "listen[0]"},
    };
    expect_all_refused(cases, N(cases));
}

/* Builds "key: [item0, item1, ...]" with n items, and the env form. */
static void
make_long_lists(size_t n, char *yaml, size_t ylen, char *env, size_t elen, bool listeners)
{
    snprintf(yaml, ylen, "%s", listeners ? "listen: [" : "policy: {sync_types: [");
    snprintf(env, elen, "%s", listeners ? "BOTGATE_LISTEN=" : "BOTGATE_POLICY_SYNC_TYPES=");
    for (size_t i = 0; i < n; i++) {
        if (listeners) {
            put(yaml, ylen, "%s{address: 127.0.0.1, port: %zu}", i ? ", " : "", 1000 + i);
            put(env, elen, "%shttp://127.0.0.1:%zu", i ? "," : "", 1000 + i);
        } else {
            put(yaml, ylen, "%st%zu", i ? ", " : "", i);
            put(env, elen, "%st%zu", i ? "," : "", i);
        }
    }
    put(yaml, ylen, "%s", listeners ? "]\n" : "]}\n");
}

static void
test_list_lengths(void **state)
{
    (void)state;
    char yaml[4096], env[4096];
    struct bad b = {yaml, {NULL}, "t.yaml:1: ", ""};

    /* exactly the maximum is fine */
    bg_config cfg;
    assert_int_equal(bg_config_init(&cfg), 0);
    make_long_lists(BG_CONFIG_MAX_LIST, yaml, sizeof(yaml), env, sizeof(env), false);
    assert_int_equal(load(&cfg, yaml, NULL), 0);
    assert_int_equal(cfg.policy.sync_types.n, BG_CONFIG_MAX_LIST);
    make_long_lists(BG_CONFIG_MAX_LISTENERS, yaml, sizeof(yaml), env, sizeof(env), true);
    assert_int_equal(load(&cfg, NULL, (char *const[]){env, NULL}), 0);
    assert_int_equal(cfg.n_listen, BG_CONFIG_MAX_LISTENERS);
    assert_int_equal(load(&cfg, yaml, NULL), 0);
    assert_int_equal(cfg.n_listen, BG_CONFIG_MAX_LISTENERS);
    bg_config_free(&cfg);

    /* one more is refused, from the file and from the environment */
    make_long_lists(BG_CONFIG_MAX_LIST + 1, yaml, sizeof(yaml), env, sizeof(env), false);
    b.key = "policy.sync_types: has 33 items; at most 32";
    expect_refused(&b);
    b = (struct bad){NULL, {env, NULL}, "BOTGATE_POLICY_SYNC_TYPES: ", "policy.sync_types: has 33"};
    expect_refused(&b);
    make_long_lists(BG_CONFIG_MAX_LISTENERS + 1, yaml, sizeof(yaml), env, sizeof(env), true);
    b = (struct bad){yaml, {NULL}, "t.yaml:1: ", "listen: has 17 listeners; at most 16"};
    expect_refused(&b);
    b = (struct bad){NULL, {env, NULL}, "BOTGATE_LISTEN: ", "listen: has 17 listeners"};
    expect_refused(&b);
}

static void
test_rules_across_keys(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"tls:\n  cert_file: /c.pem\n",
         {NULL},
         "t.yaml:2: ",
         "tls.cert_file: is set but tls.key_file is not"},
        {"tls:\n  key_file: /k.pem\n",
         {NULL},
         "t.yaml:2: ",
         "tls.key_file: is set but tls.cert_file is not"},
        {NULL,
         {"BOTGATE_TLS_CERT_FILE=/c.pem", NULL},
         "BOTGATE_TLS_CERT_FILE: ",
         "tls.cert_file: is set but"},
        {"listen: [{address: 0.0.0.0, port: 80, tls: false}]\ntls: {key_file: k}\n",
         {"BOTGATE_LISTEN=https://0.0.0.0:443", NULL},
         "t.yaml:2: ",
         "tls.key_file"},
        {"redis: {sentinels: ['s:26379']}\n",
         {NULL},
         "t.yaml:1: ",
         "redis.master_name: must be set when redis.sentinels"},
        {"bot: {backoff_initial_ms: 5000, backoff_max_ms: 1000}\n",
         {NULL},
         "t.yaml:1: ",
         "bot.backoff_initial_ms: 5000 is above bot.backoff_max_ms (1000)"},
        {NULL,
         {"BOTGATE_BOT_BACKOFF_MAX_MS=10", NULL},
         "BOTGATE_BOT_BACKOFF_MAX_MS: ",
         "bot.backoff_max_ms: 10 is below bot.backoff_initial_ms (1000)"},
        {"auth:\n  app_id: id\n  app_type: SingleTenant\n",
         {NULL},
         "t.yaml:3: ",
         "auth.tenant_id: must be set when auth.app_type is SingleTenant"},
        {"auth: {app_id: id}\n",
         {"MicrosoftAppType=UserAssignedMSI", NULL},
         "MicrosoftAppType: ",
         "auth.tenant_id: must be set"},
    };
    expect_all_refused(cases, N(cases));
}

static void
test_duplicates_and_documents(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"redis:\n  stream: a\n  stream: b\n",
         {NULL},
         "t.yaml:3: ",
         "redis.stream: duplicate key (first given on line 2)"},
        {"redis: {stream: a}\nredis: {url: ''}\n",
         {NULL},
         "t.yaml:2: ",
         "redis: duplicate section"},
        {"shutdown_grace_s: 1\nshutdown_grace_s: 2\n",
         {NULL},
         "t.yaml:2: ",
         "shutdown_grace_s: duplicate key"},
        {"listen: [{address: 0.0.0.0, port: 1}]\nlisten: [{address: 0.0.0.0, port: 2}]\n",
         {NULL},
         "t.yaml:2: ",
         "listen: duplicate key"},
        {"redis: {stream: a}\n---\nredis: {stream: b}\n",
         {NULL},
         "t.yaml:3: ",
         "only one YAML document"},
    };
    expect_all_refused(cases, N(cases));
}

static void
test_yaml_syntax_errors(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"redis:\n  timeout_ms: [1, 2\nbot: {}\n", {NULL}, "t.yaml:", "syntax error"},
        {"a: b: c\n", {NULL}, "t.yaml:1: ", "syntax error: mapping values are not allowed"},
        {"redis:\n  url: x\n bot: y\n", {NULL}, "t.yaml:3: ", "syntax error"},
        {"redis:\n\turl: x\n", {NULL}, "t.yaml:2: ", "syntax error"},
        {"x: *nowhere\n", {NULL}, "t.yaml:1: ", "syntax error"},
        {"redis: {stream: \"unterminated}\n", {NULL}, "t.yaml:", "syntax error"},
        {"# ok\nredis: {stream: \"\xff\xfe\"}\n", {NULL}, "t.yaml:2: ", "syntax error"},
        {"redis: {stream: a}\n---\n[\n", {NULL}, "t.yaml:", "syntax error"},
    };
    expect_all_refused(cases, N(cases));
}

/* A self-referencing alias must not send the walker round in circles. */
static void
test_recursive_alias(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"listen: &a [*a]\n", {NULL}, "t.yaml:1: ", "listen[0]: expected a map"},
        {"policy: {sync_types: &l [*l]}\n",
         {NULL},
         "t.yaml:1: ",
         "policy.sync_types[0]: expected a string"},
        {"&t {redis: *t}\n", {NULL}, "t.yaml:1: ", "redis"},
    };
    expect_all_refused(cases, N(cases));
}

/* ---- the password --------------------------------------------------------------------- */

static void
test_password_never_in_a_message(void **state)
{
    (void)state;
#define PW "Pa55-S3cret-value"
    static const struct bad cases[] = {
        {"auth: {app_password: " PW "}\nredis: {timeout_ms: 0}\n",
         {NULL},
         "t.yaml:2: ",
         "redis.timeout_ms"},
        {"auth: {app_password: {" PW ": 1}}\n",
         {NULL},
         "t.yaml:1: ",
         "auth.app_password: expected a string"},
        {"auth: {app_password: [" PW "]}\n",
         {NULL},
         "t.yaml:1: ",
         "auth.app_password: expected a string"},
        {"auth: {app_password:" PW "}\n", {NULL}, "t.yaml:1: ", "auth.app_password: unknown key"},
        {"auth:\n  app_password: " PW ": x\n", {NULL}, "t.yaml:2: ", "syntax error"},
        {"auth:\n  app_password: \"" PW "\n", {NULL}, "t.yaml:", "syntax error"},
        {"auth:\n  app_password: " PW "\n  app_password: " PW "\n",
         {NULL},
         "t.yaml:3: ",
         "auth.app_password: duplicate key"},
        {"auth: {app_password: \"" PW "\\0\"}\n",
         {NULL},
         "t.yaml:1: ",
         "auth.app_password: contains a NUL"},
        {NULL,
         {"MicrosoftAppPassword=" PW, "BOTGATE_REDIS_TIMEOUT_MS=x", NULL},
         "BOTGATE_REDIS_TIMEOUT_MS: ",
         "redis.timeout_ms"},
        {NULL,
         {"BOTGATE_AUTH_APP_PASSWORD=" PW, "BOTGATE_AUTH_APP_PASSWORDX=" PW, NULL},
         "BOTGATE_AUTH_APP_PASSWORDX: ",
         "auth.app_passwordx: unknown key"},
        {"redis: {url: 'redis://:" PW "@'}\n", {NULL}, "t.yaml:1: ", "redis.url"},
        {"redis: {url: 'redis://:" PW "@h:99999'}\n", {NULL}, "t.yaml:1: ", "redis.url"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        expect_refused(&cases[i]);
        if (strstr(err, PW) != NULL || strstr(err, "Pa55") != NULL) {
            print_error("the password leaked: \"%s\"\n", err);
            fail();
        }
    }
#undef PW
}

/* ---- memory ------------------------------------------------------------------------- */

static void
test_load_twice_into_one_config(void **state)
{
    (void)state;
    bg_config cfg;
    char first[DUMP_MAX], again[DUMP_MAX];
    assert_int_equal(bg_config_init(&cfg), 0);
    assert_int_equal(load(&cfg, all_keys_block, NULL), 0);
    dump(&cfg, first, sizeof(first));
    assert_int_equal(load(&cfg, all_keys_block, all_keys_env), 0);
    assert_int_equal(load(&cfg, all_keys_flow, all_keys_env), 0);
    dump(&cfg, again, sizeof(again));
    assert_string_equal(first, again);
    /* a failed load in between changes nothing and leaks nothing */
    assert_int_equal(load(&cfg, "redis: {timeout_ms: 0}\n", all_keys_env), BG_ECONFIG);
    dump(&cfg, again, sizeof(again));
    assert_string_equal(first, again);
    /* shorter lists after longer ones: nothing left behind */
    assert_int_equal(load(&cfg,
                          "listen: [{address: 127.0.0.1, port: 1}]\n"
                          "policy: {sync_types: [], allow_cidrs: []}\n",
                          NULL),
                     0);
    assert_int_equal(cfg.n_listen, 1);
    assert_int_equal(cfg.policy.sync_types.n, 0);
    bg_config_free(&cfg);
}

/* Loads text (len bytes, in an exact-size heap copy so ASan sees any over-read). */
static void
load_exact(const char *text, size_t len)
{
    char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    bg_config cfg;
    assert_int_equal(bg_config_init(&cfg), 0);
    err[0] = 'x';
    int rc = bg_config_load(&cfg, copy, len, "t.yaml", NULL, err, sizeof(err));
    assert_true(rc == 0 || rc == BG_ECONFIG);
    if (rc == 0)
        assert_string_equal(err, "");
    else
        assert_true(err[0] != '\0' && strchr(err, '\n') == NULL);
    bg_config_free(&cfg);
    free(copy);
}

static void
test_truncated_and_mutated_documents(void **state)
{
    (void)state;
    static const char *const docs[] = {all_keys_block, all_keys_flow};
    static const char bytes[] = {':', '\n', '[', '{', '-', '"', '\0', '&', '*', '\t', '#'};
    char buf[sizeof(all_keys_block) + sizeof(all_keys_flow)];
    for (size_t d = 0; d < N(docs); d++) {
        size_t len = strlen(docs[d]);
        for (size_t i = 0; i <= len; i++)
            load_exact(docs[d], i);
        for (size_t i = 0; i < len; i++) {
            for (size_t b = 0; b < sizeof(bytes); b++) {
                memcpy(buf, docs[d], len);
                buf[i] = bytes[b];
                load_exact(buf, len);
            }
        }
    }
}

/* ---- the shipped files --------------------------------------------------------------- */

/* Reads conf/<name> from the source tree named by BOTGATE_SOURCE_DIR and loads it. */
static void
load_conf_file(const char *name, bg_config *cfg)
{
    const char *dir = getenv("BOTGATE_SOURCE_DIR");
    if (dir == NULL) {
        print_error("BOTGATE_SOURCE_DIR is not set: it must name the source tree\n");
        fail();
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/conf/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        print_error("cannot open %s\n", path);
        fail();
    }
    char *text = malloc(1 << 20);
    assert_non_null(text);
    size_t len = fread(text, 1, 1 << 20, f);
    fclose(f);
    assert_int_equal(bg_config_init(cfg), 0);
    int rc = bg_config_load(cfg, text, len, path, NULL, err, sizeof(err));
    free(text);
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
}

static void
test_conf_botgate_yaml_is_the_defaults(void **state)
{
    (void)state;
    bg_config cfg;
    char out[DUMP_MAX];
    load_conf_file("botgate.yaml", &cfg);
    dump(&cfg, out, sizeof(out));
    assert_string_equal(out, defaults_dump);
    bg_config_free(&cfg);
}

static void
test_conf_dev_yaml(void **state)
{
    (void)state;
    bg_config cfg;
    load_conf_file("dev.yaml", &cfg);
    assert_int_equal(cfg.n_listen, 2);
    assert_int_equal(cfg.listen[0].port, 8443);
    assert_true(cfg.listen[0].tls);
    assert_string_equal(cfg.listen[1].address, "127.0.0.1");
    assert_int_equal(cfg.listen[1].port, 8080);
    assert_false(cfg.listen[1].tls);
    assert_string_equal(cfg.auth.app_id, ""); /* auth off */
    assert_string_equal(cfg.tls.cert_file, "");
    bg_config_free(&cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_match_the_table),
        cmocka_unit_test(test_init_after_free),
        cmocka_unit_test(test_no_file_no_env_is_defaults),
        cmocka_unit_test(test_every_key_from_yaml),
        cmocka_unit_test(test_flow_and_block_style_agree),
        cmocka_unit_test(test_every_key_from_env),
        cmocka_unit_test(test_env_overrides_every_file_key),
        cmocka_unit_test(test_precedence_file_microsoft_botgate),
        cmocka_unit_test(test_empty_microsoft_variables_do_not_erase_the_file),
        cmocka_unit_test(test_first_occurrence_in_env_wins),
        cmocka_unit_test(test_boolean_spellings),
        cmocka_unit_test(test_enumerations_are_canonicalised),
        cmocka_unit_test(test_quoted_numbers_and_null_strings),
        cmocka_unit_test(test_env_lists),
        cmocka_unit_test(test_env_listeners),
        cmocka_unit_test(test_yaml_listener_tls_defaults_to_true),
        cmocka_unit_test(test_accepted_urls_and_addresses),
        cmocka_unit_test(test_error_message_format),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_unrelated_botgate_variables_are_ignored),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_numeric_ranges),
        cmocka_unit_test(test_enumerations_and_booleans),
        cmocka_unit_test(test_urls_and_addresses),
        cmocka_unit_test(test_listeners),
        cmocka_unit_test(test_list_lengths),
        cmocka_unit_test(test_rules_across_keys),
        cmocka_unit_test(test_duplicates_and_documents),
        cmocka_unit_test(test_yaml_syntax_errors),
        cmocka_unit_test(test_recursive_alias),
        cmocka_unit_test(test_password_never_in_a_message),
        cmocka_unit_test(test_load_twice_into_one_config),
        cmocka_unit_test(test_truncated_and_mutated_documents),
        cmocka_unit_test(test_conf_botgate_yaml_is_the_defaults),
        cmocka_unit_test(test_conf_dev_yaml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
