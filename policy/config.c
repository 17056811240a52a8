/*
 * Configuration loader: defaults, then one YAML document, then the environment.
 *
 * Everything is driven by one table, `keys` below: a row per key with its dotted name,
 * its type, where it lives in bg_config, its range, its default and its validator. The
 * defaults (bg_config_init), the YAML walk, the environment pass, copying and freeing all
 * read that table, so a new key is one new row (plus its field in config.h). The
 * environment variable is derived from the dotted name:
 *
 *     "redis.timeout_ms"  ->  BOTGATE_REDIS_TIMEOUT_MS
 *     "shutdown_grace_s"  ->  BOTGATE_SHUTDOWN_GRACE_S
 *
 * A load works on a private copy of the caller's bg_config and replaces it only when
 * every value and every cross-key rule has passed, so a refused reload leaves the running
 * configuration exactly as it was.
 *
 * Messages are one line, "<file>:<line>: <key>: <reason>" for a file value and
 * "<VARIABLE>: <key>: <reason>" for an environment value. Values are quoted only where
 * that helps (numbers, booleans, enumerations), cut to a few printable characters, and
 * never for a key flagged secret.
 */
#include "botgate/config.h"
#include "botgate/cidr.h"
#include "botgate/error.h"
#include "botgate/redis_url.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

enum key_kind {
    K_STRING,
    K_BOOL,
    K_INT,    /* stored as int */
    K_INT64,  /* stored as long long */
    K_LIST,   /* bg_strlist */
    K_LISTEN, /* the listen[] array and n_listen */
};

#define F_SECRET 1u /* never quoted in a message */
#define F_EMPTY_IS_DEFAULT                                                                         \
    2u /* "" means the default: Bot Framework templates ship MicrosoftAppType= */

/* Checks one string (or one list item); returns NULL when it is good, else the reason. */
typedef const char *(*check_fn)(const char *value);

struct key {
    const char *name; /* dotted: "redis.timeout_ms"; top-level keys have no dot */
    enum key_kind kind;
    size_t off;                 /* offset of the field in bg_config */
    long long min, max;         /* K_INT, K_INT64 */
    long long def_num;          /* K_BOOL, K_INT, K_INT64 */
    const char *def_str;        /* K_STRING; K_LIST and K_LISTEN in the environment's syntax */
    const char *const *allowed; /* K_STRING: the only values, matched without case */
    check_fn check;             /* K_STRING: the value; K_LIST: each item */
    unsigned flags;
};

static const char *check_nonempty(const char *v);
static const char *check_http_url(const char *v);
static const char *check_https_url(const char *v);
static const char *check_redis_url(const char *v);
static const char *check_bind_addr(const char *v);
static const char *check_sentinel(const char *v);
static const char *check_cidr(const char *v);
static const char *check_token(const char *v);

static const char *const app_types[] = {"MultiTenant", "SingleTenant", "UserAssignedMSI", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

/* clang-format off */
#define OFF(field) offsetof(bg_config, field)
#define ROW_STR(name, field, def, check, flags) \
    {name, K_STRING, OFF(field), 0, 0, 0, def, NULL, check, flags}
#define ROW_ENUM(name, field, def, allowed, flags) \
    {name, K_STRING, OFF(field), 0, 0, 0, def, allowed, NULL, flags}
#define ROW_BOOL(name, field, def) \
    {name, K_BOOL, OFF(field), 0, 1, def, NULL, NULL, NULL, 0}
#define ROW_INT(name, field, lo, hi, def) \
    {name, K_INT, OFF(field), lo, hi, def, NULL, NULL, NULL, 0}
#define ROW_INT64(name, field, lo, hi, def) \
    {name, K_INT64, OFF(field), lo, hi, def, NULL, NULL, NULL, 0}
#define ROW_LIST(name, field, def, check) \
    {name, K_LIST, OFF(field), 0, BG_CONFIG_MAX_LIST, 0, def, NULL, check, 0}
#define ROW_LISTEN(name, field, def) \
    {name, K_LISTEN, OFF(field), 1, BG_CONFIG_MAX_LISTENERS, 0, def, NULL, NULL, 0}
/* clang-format on */

/*
 * Every key, its default and its range: the contract of DESIGN.md's table, documented for
 * people in conf/botgate.yaml and conf/CONFIG.md (tests/unit/test_config.c checks that
 * conf/botgate.yaml loads to exactly these defaults).
 */
static const struct key keys[] = {
    ROW_LISTEN("listen", listen, "https://0.0.0.0:8443"),
    ROW_STR("state_dir", state_dir, "var", check_nonempty, 0),
    ROW_STR("tls.cert_file", tls.cert_file, "", NULL, 0),
    ROW_STR("tls.key_file", tls.key_file, "", NULL, 0),
    ROW_INT("tls.reload_check_s", tls.reload_check_s, 0, 86400, 0),
    ROW_STR("auth.app_id", auth.app_id, "", NULL, 0),
    ROW_STR("auth.app_password", auth.app_password, "", NULL, F_SECRET),
    ROW_ENUM("auth.app_type", auth.app_type, "MultiTenant", app_types, F_EMPTY_IS_DEFAULT),
    ROW_STR("auth.tenant_id", auth.tenant_id, "", NULL, 0),
    ROW_STR("auth.openid_metadata_url", auth.openid_metadata_url,
            "https://login.botframework.com/v1/.well-known/openidconfiguration", check_https_url,
            0),
    ROW_STR("auth.emulator_openid_metadata_url", auth.emulator_openid_metadata_url,
            "https://login.microsoftonline.com/botframework.com/v2.0/.well-known/"
            "openid-configuration",
            check_https_url, 0),
    ROW_STR("auth.issuer", auth.issuer, "https://api.botframework.com", check_nonempty, 0),
    ROW_INT("auth.clock_skew_s", auth.clock_skew_s, 0, 3600, 300),
    ROW_BOOL("auth.allow_emulator", auth.allow_emulator, false),
    ROW_BOOL("auth.require_endorsements", auth.require_endorsements, true),
    ROW_STR("auth.ca_file", auth.ca_file, "", NULL, 0),
    ROW_INT("auth.jwks_refresh_s", auth.jwks_refresh_s, 60, 604800, 86400),
    ROW_INT("auth.token_cache_entries", auth.token_cache_entries, 0, 1000000, 100000),
    ROW_STR("redis.url", redis.url, "", check_redis_url, F_SECRET),
    ROW_STR("redis.stream", redis.stream, "botgate:activities", check_nonempty, 0),
    ROW_INT64("redis.maxlen", redis.maxlen, 1, 10000000000LL, 1000000),
    ROW_INT("redis.failures_maxlen", redis.failures_maxlen, 100, 10000000, 10000),
    ROW_INT("redis.dedupe_ttl_s", redis.dedupe_ttl_s, 1, 2592000, 600),
    ROW_INT("redis.timeout_ms", redis.timeout_ms, 1, 600000, 2000),
    ROW_INT("redis.min_replicas_ack", redis.min_replicas_ack, 0, 16, 0),
    ROW_LIST("redis.sentinels", redis.sentinels, "", check_sentinel),
    ROW_STR("redis.master_name", redis.master_name, "", NULL, 0),
    ROW_INT("redis.partitions", redis.partitions, 1, 1024, 1),
    ROW_STR("bot.url", bot.url, "http://127.0.0.1:3978/api/messages", check_http_url, 0),
    ROW_INT("bot.timeout_s", bot.timeout_s, 1, 3600, 300),
    ROW_INT("bot.concurrency", bot.concurrency, 1, 4096, 32),
    ROW_INT("bot.max_attempts", bot.max_attempts, 1, 1000, 10),
    ROW_INT("bot.backoff_initial_ms", bot.backoff_initial_ms, 1, 3600000, 1000),
    ROW_INT("bot.backoff_max_ms", bot.backoff_max_ms, 1, 86400000, 300000),
    ROW_INT("bot.claim_idle_s", bot.claim_idle_s, 1, 86400, 60),
    ROW_STR("bot.consumer_suffix", bot.consumer_suffix, "", NULL, 0),
    ROW_INT64("policy.body_max_bytes", policy.body_max_bytes, 1024, 67108864, 262144),
    ROW_LIST("policy.sync_types", policy.sync_types, "invoke", check_token),
    ROW_INT("policy.sync_deadline_ms", policy.sync_deadline_ms, 100, 14000, 12000),
    ROW_INT("policy.sync_compose_deadline_ms", policy.sync_compose_deadline_ms, 100, 14000, 4500),
    ROW_INT("policy.sync_fallback_status", policy.sync_fallback_status, 200, 599, 504),
    ROW_LIST("policy.allow_cidrs", policy.allow_cidrs, "", check_cidr),
    ROW_LIST("policy.trusted_proxies", policy.trusted_proxies, "", check_cidr),
    ROW_BOOL("policy.answer_ping", policy.answer_ping, true),
    ROW_INT("policy.max_connections", policy.max_connections, 1, 1000000, 4096),
    ROW_INT("policy.max_inflight_writes", policy.max_inflight_writes, 1, 1000000, 10000),
    ROW_INT64("policy.max_inflight_body_bytes", policy.max_inflight_body_bytes, 1024, 68719476736LL,
              268435456),
    ROW_STR("relay.listen", relay.listen, "127.0.0.1:3979", check_bind_addr, 0),
    ROW_STR("relay.token_url", relay.token_url,
            "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token", check_http_url,
            0),
    ROW_STR("relay.scope", relay.scope, "https://api.botframework.com/.default", check_nonempty, 0),
    ROW_BOOL("relay.allow_remote", relay.allow_remote, false),
    ROW_STR("relay.secret", relay.secret, "", NULL, F_SECRET),
    ROW_INT("relay.directory_ttl_s", relay.directory_ttl_s, 60, 31536000, 7776000),
    ROW_INT("relay.token_refresh_pct", relay.token_refresh_pct, 10, 90, 75),
    ROW_INT("relay.timeout_ms", relay.timeout_ms, 100, 120000, 15000),
    ROW_STR("admin.listen", admin.listen, "127.0.0.1:9090", check_bind_addr, 0),
    ROW_STR("log.access", log.access, "stdout", check_nonempty, 0),
    ROW_ENUM("log.level", log.level, "info", log_levels, 0),
    ROW_INT("log.access_sample_1_in", log.access_sample_1_in, 1, 1000000, 1),
    ROW_INT("shutdown_grace_s", shutdown_grace_s, 0, 3600, 25),
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* The Bot Framework SDK's own variables: they override the file, BOTGATE_* overrides them. */
static const struct {
    const char *var;
    const char *key;
} bf_vars[] = {
    {"MicrosoftAppId", "auth.app_id"},
    {"MicrosoftAppPassword", "auth.app_password"},
    {"MicrosoftAppTenantId", "auth.tenant_id"},
    {"MicrosoftAppType", "auth.app_type"},
};

#define ENV_PREFIX "BOTGATE_"
#define ENV_NAME_MAX 48 /* longest derived name is BOTGATE_AUTH_OPENID_METADATA_URL */
#define NAME_MAX_LEN 128
#define VALUE_MAX_LEN 4096 /* host:port style values are copied to the stack to be split */

/* Where a value came from, for the message prefix: a file line or a variable, or neither. */
struct origin {
    const char *file;
    int line;
    const char *env;
};

/* One load's working state; the config it edits is a private copy of the caller's. */
struct loader {
    bg_config *cfg;
    const char *source;
    char *err;
    size_t errlen;
    struct origin origin[N_KEYS]; /* who set each key during this load */
    int seen_line[N_KEYS];        /* line where the document gave the key; 0 = not given */
    bool seen_section[N_KEYS];    /* indexed by a section's first row */
    char env[N_KEYS][ENV_NAME_MAX];
};

/* ---- messages ---------------------------------------------------------------------- */

/*
 * Writes "<origin>: <key>: <reason>" into the caller's buffer and returns BG_ECONFIG, so
 * that every refusal is one `return fail(...)` and has the same shape.
 */
static int
fail(struct loader *L, const struct origin *o, const char *key, const char *fmt, ...)
{
    if (L->err == NULL || L->errlen == 0)
        return BG_ECONFIG;
    int n;
    if (o != NULL && o->file != NULL)
        n = snprintf(L->err, L->errlen, "%s:%d: %s: ", o->file, o->line, key);
    else if (o != NULL && o->env != NULL)
        n = snprintf(L->err, L->errlen, "%s: %s: ", o->env, key);
    else
        n = snprintf(L->err, L->errlen, "%s: ", key);
    if (n >= 0 && (size_t)n < L->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(L->err + n, L->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return BG_ECONFIG;
}

/* Reports an allocation failure: the only error that is not the configuration's fault. */
static int
nomem(struct loader *L)
{
    if (L->err != NULL && L->errlen > 0)
        snprintf(L->err, L->errlen, "out of memory while loading the configuration");
    return BG_ENOMEM;
}

/*
 * Copies at most 40 bytes of s into buf with every byte outside printable ASCII replaced
 * by '?', so a value or key quoted back to the operator keeps the message on one line and
 * cannot carry terminal escapes into a log.
 */
static const char *
printable(const char *s, char *buf, size_t len)
{
    size_t i = 0, limit = len - 4;
    if (limit > 40)
        limit = 40;
    for (; s[i] != '\0' && i < limit; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i] != '\0')
        buf[i++] = '.', buf[i++] = '.', buf[i++] = '.';
    buf[i] = '\0';
    return buf;
}

/*
 * The part of an unknown key worth quoting back: letters, digits, '_', '-' and '.', up to
 * 40 of them. A key that runs on past that is most often a key typed into its value
 * without the space after ':' ("app_password:hunter2"), so the rest is never quoted: it
 * may be the secret. Returns the hint to append ("" when nothing was cut).
 */
static const char *
key_echo(const char *key, char *buf, size_t len)
{
    size_t n = strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.");
    if (n > 40)
        n = 40;
    if (n >= len)
        n = len - 1;
    memcpy(buf, key, n);
    buf[n] = '\0';
    if (key[n] == '\0')
        return "";
    return key[n] == ':' ? " (is a space missing after ':'?)"
                         : " (the name goes on with other characters)";
}

/* The value as it may appear in a message: cut and cleaned, or hidden for a secret. */
static const char *
shown(const struct key *k, const char *v, char *buf, size_t len)
{
    if (k->flags & F_SECRET)
        return "(hidden)";
    return printable(v, buf, len);
}

/* "a string", "an integer": what a key expects, for "expected X, got Y". */
static const char *
kind_name(enum key_kind kind)
{
    switch (kind) {
    case K_STRING:
        return "a string";
    case K_BOOL:
        return "a boolean (true/false)";
    case K_INT:
    case K_INT64:
        return "an integer";
    case K_LIST:
        return "a list";
    case K_LISTEN:
        return "a list of listeners";
    }
    return "a value";
}

/* ---- the table ------------------------------------------------------------------------ */

/* The row named `name` (exact, dotted), or -1. */
static int
key_index(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return (int)i;
    return -1;
}

/*
 * The first row of section `name` ("redis" -> the row of "redis.url"), or -1 when no key
 * lives under that name. Sections are not listed anywhere else: they are the prefixes of
 * the table's dotted names.
 */
static int
section_index(const char *name, size_t len)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strncmp(keys[i].name, name, len) == 0 && keys[i].name[len] == '.')
            return (int)i;
    return -1;
}

/* BOTGATE_ + the dotted name upper-cased with '.' as '_': the one rule for every key. */
static void
env_name(const struct key *k, char *buf, size_t len)
{
    size_t n = strlen(ENV_PREFIX);
    memcpy(buf, ENV_PREFIX, n);
    for (const char *p = k->name; *p != '\0' && n + 1 < len; p++, n++)
        buf[n] = *p == '.' ? '_' : (char)((*p >= 'a' && *p <= 'z') ? *p - 'a' + 'A' : *p);
    buf[n] = '\0';
}

/* The string field row k describes, in c. */
static char **
str_at(bg_config *c, const struct key *k)
{
    return (char **)(void *)((char *)c + k->off);
}

/* The int field row k describes, in c. */
static int *
int_at(bg_config *c, const struct key *k)
{
    return (int *)(void *)((char *)c + k->off);
}

/* The long long field row k describes, in c. */
static long long *
int64_at(bg_config *c, const struct key *k)
{
    return (long long *)(void *)((char *)c + k->off);
}

/* The bool field row k describes, in c. */
static bool *
bool_at(bg_config *c, const struct key *k)
{
    return (bool *)(void *)((char *)c + k->off);
}

/* The list field row k describes, in c. */
static bg_strlist *
list_at(bg_config *c, const struct key *k)
{
    return (bg_strlist *)(void *)((char *)c + k->off);
}

/* ---- scalars ------------------------------------------------------------------------ */

/*
 * Decimal integers only: an optional '-', then digits without a leading zero, then
 * nothing. YAML 1.1 would read 0x10, 010 (octal), 1_000 and 1e3 as numbers; refusing
 * them means a value reads the same in the file and in the environment.
 * Returns 0, -1 for anything that is not such an integer, -2 when it overflows.
 */
static int
parse_int(const char *s, long long *out)
{
    bool neg = *s == '-';
    const char *p = neg ? s + 1 : s;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '\0'))
        return -1;
    unsigned long long v = 0;
    bool over = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10)
            over = true;
        else
            v = v * 10 + d;
    }
    if (*p != '\0')
        return -1;
    if (over || v > (unsigned long long)LLONG_MAX)
        return -2;
    *out = neg ? -(long long)v : (long long)v;
    return 0;
}

/* true/false, yes/no, on/off in any case; 1 for true, 0 for false, -1 for anything else. */
static int
parse_bool(const char *s)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* A TCP port: 1..65535 in decimal, or -1. */
static int
parse_port(const char *s)
{
    long long v;
    if (parse_int(s, &v) != 0 || v < 1 || v > 65535)
        return -1;
    return (int)v;
}

/* ---- validators --------------------------------------------------------------------- */

/* For keys whose empty value would only fail later, far from the configuration. */
static const char *
check_nonempty(const char *v)
{
    return *v == '\0' ? "must not be empty" : NULL;
}

/* True when s holds a space, tab, newline or other control byte. */
static bool
has_blank(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return true;
    return false;
}

/*
 * Splits "host:port" or "[v6]:port" in place (buf is the caller's copy). *host gets the
 * host without brackets. Returns NULL or the reason.
 */
static const char *
split_hostport(char *buf, char **host, int *port)
{
    char *colon;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (close == NULL || close[1] != ':')
            return "must be HOST:PORT ([ADDRESS]:PORT for IPv6)";
        *close = '\0';
        *host = buf + 1;
        colon = close + 1;
    } else {
        colon = strrchr(buf, ':');
        if (colon == NULL)
            return "must be HOST:PORT";
        *colon = '\0';
        if (strchr(buf, ':') != NULL)
            return "an IPv6 address needs brackets: [ADDRESS]:PORT";
        *host = buf;
    }
    if (**host == '\0')
        return "must be HOST:PORT with a host";
    if ((*port = parse_port(colon + 1)) < 0)
        return "the port must be a decimal number in 1..65535";
    return NULL;
}

/* What botgate can bind: a numeric IPv4 or IPv6 address, or "localhost". */
static bool
is_bind_host(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return strcasecmp(host, "localhost") == 0 || inet_pton(AF_INET, host, addr) == 1 ||
           inet_pton(AF_INET6, host, addr) == 1;
}

/* Copies v into buf when it fits, for the validators that split in place. */
static const char *
copy_value(const char *v, char *buf, size_t len)
{
    size_t n = strlen(v);
    if (n >= len)
        return "is too long";
    memcpy(buf, v, n + 1);
    return NULL;
}

/* relay.listen, admin.listen: empty (off) or ADDRESS:PORT that botgate can bind. */
static const char *
check_bind_addr(const char *v)
{
    char buf[VALUE_MAX_LEN], *host;
    int port;
    const char *why;
    if (*v == '\0')
        return NULL;
    if ((why = copy_value(v, buf, sizeof(buf))) != NULL ||
        (why = split_hostport(buf, &host, &port)) != NULL)
        return why;
    if (!is_bind_host(host))
        return "the host must be a numeric IP address or localhost";
    return NULL;
}

/* relay.listen (checked by check_bind_addr): its host is 127.0.0.0/8, ::1 or localhost. */
static bool
is_loopback_listen(const char *v)
{
    char buf[VALUE_MAX_LEN], *host;
    int port;
    unsigned char a[sizeof(struct in6_addr)];
    if (copy_value(v, buf, sizeof(buf)) != NULL || split_hostport(buf, &host, &port) != NULL)
        return false;
    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    return inet_pton(AF_INET6, host, a) == 1 && memcmp(a, &in6addr_loopback, 16) == 0;
}

/* redis.sentinels items: HOST:PORT, where HOST may be a DNS name (a Kubernetes service). */
static const char *
check_sentinel(const char *v)
{
    char buf[VALUE_MAX_LEN], *host;
    int port;
    const char *why;
    if (has_blank(v))
        return "must be HOST:PORT without spaces";
    if ((why = copy_value(v, buf, sizeof(buf))) != NULL)
        return why;
    return split_hostport(buf, &host, &port);
}

/* policy.allow_cidrs, policy.trusted_proxies items: ADDRESS or ADDRESS/PREFIX, v4 or v6. */
static const char *
check_cidr(const char *v)
{
    /* the same parser the allowlist uses, so that what loads is what applies */
    bg_cidr c;
    char why[128];
    if (bg_cidr_parse(&c, v, why, sizeof(why)) != 0)
        return "is not an IP address or a CIDR whose host bits are zero (10.0.0.0/8, "
               "fd00::/8)";
    return NULL;
}

/* policy.sync_types items: an activity type, one word. */
static const char *
check_token(const char *v)
{
    if (*v == '\0' || has_blank(v) || strchr(v, ',') != NULL)
        return "must be one word (an activity type such as invoke)";
    return NULL;
}

/*
 * The authority of a URL after its scheme: non-empty, no blanks. Returns its length, or 0
 * when there is none.
 */
static size_t
authority_len(const char *rest)
{
    size_t n = strcspn(rest, "/?#");
    if (n == 0 || rest[0] == ':' || rest[0] == '@')
        return 0;
    return n;
}

/* bot.url, auth.openid_metadata_url, relay.token_url: http:// or https:// with a host. */
static const char *
check_http_url(const char *v)
{
    const char *rest = NULL;
    if (strncasecmp(v, "https://", 8) == 0)
        rest = v + 8;
    else if (strncasecmp(v, "http://", 7) == 0)
        rest = v + 7;
    if (rest == NULL || has_blank(v) || authority_len(rest) == 0)
        return "must be an http:// or https:// URL with a host";
    return NULL;
}

/* The signing keys' documents: HTTPS only, since whoever serves them decides which tokens
 * are genuine. */
static const char *
check_https_url(const char *v)
{
    if (strncasecmp(v, "https://", 8) != 0 || has_blank(v) || authority_len(v + 8) == 0)
        return "must be an https:// URL with a host";
    return NULL;
}

/*
 * redis.url: empty (botgate runs a private redis-server), redis://[user:pass@]host[:port]
 * [/db], or unix://PATH. Checked here, with the parser the connections use, so that a
 * typo is refused at start rather than showing up as "queue unavailable" on the first
 * request. Blanks are refused here only: the parser lets the private redis's socket path
 * hold them.
 */
static const char *
check_redis_url(const char *v)
{
    const char *why;
    if (*v == '\0')
        return NULL;
    if (has_blank(v))
        return "must not contain spaces";
    return bg_redis_url_parse(NULL, v, &why) == 0 ? NULL : why;
}

/* ---- setting values ----------------------------------------------------------------- */

/* strdup that also reports failure through *ok and does nothing once *ok is false. */
static char *
dup_or_null(const char *s, bool *ok)
{
    if (!*ok || s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *ok = false;
    return d;
}

/*
 * Sets a string, boolean or integer key from text (a YAML scalar or a variable's value):
 * parses, checks the range or the allowed values, runs the validator, then replaces the
 * old value. Nothing is changed when it fails.
 */
static int
set_scalar(struct loader *L, const struct key *k, const char *text, const struct origin *o)
{
    bg_config *c = L->cfg;
    int idx = (int)(k - keys);
    char q[64];
    long long v;
    switch (k->kind) {
    case K_BOOL: {
        int b = parse_bool(text);
        if (b < 0)
            return fail(L, o, k->name, "\"%s\" is not a boolean (true/false, yes/no, on/off)",
                        shown(k, text, q, sizeof(q)));
        *bool_at(c, k) = b == 1;
        break;
    }
    case K_INT:
    case K_INT64: {
        int r = parse_int(text, &v);
        if (r == -1)
            return fail(L, o, k->name, "\"%s\" is not a decimal integer",
                        shown(k, text, q, sizeof(q)));
        if (r == -2 || v < k->min || v > k->max)
            return fail(L, o, k->name, "%s is out of range %lld..%lld",
                        shown(k, text, q, sizeof(q)), k->min, k->max);
        if (k->kind == K_INT)
            *int_at(c, k) = (int)v;
        else
            *int64_at(c, k) = v;
        break;
    }
    case K_STRING: {
        const char *value = text;
        if (k->allowed != NULL) {
            value = NULL;
            if (*text == '\0' && (k->flags & F_EMPTY_IS_DEFAULT))
                value = k->def_str;
            for (size_t i = 0; value == NULL && k->allowed[i] != NULL; i++)
                if (strcasecmp(text, k->allowed[i]) == 0)
                    value = k->allowed[i]; /* the canonical spelling */
            if (value == NULL) {
                char list[128] = "";
                for (size_t i = 0; k->allowed[i] != NULL; i++)
                    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                             i ? ", " : "", k->allowed[i]);
                return fail(L, o, k->name, "\"%s\" is not one of %s", shown(k, text, q, sizeof(q)),
                            list);
            }
        }
        const char *why = k->check != NULL ? k->check(value) : NULL;
        if (why != NULL)
            return fail(L, o, k->name, "%s", why);
        char *d = strdup(value);
        if (d == NULL)
            return nomem(L);
        free(*str_at(c, k));
        *str_at(c, k) = d;
        break;
    }
    case K_LIST:
    case K_LISTEN:
        return fail(L, o, k->name, "expected %s", kind_name(k->kind));
    }
    L->origin[idx] = *o;
    return 0;
}

/*
 * Replaces a list key with n items (borrowed strings), each checked by the row's
 * validator. lines[i], when given, is the file line of item i for the message.
 */
static int
set_list(struct loader *L, const struct key *k, char *const *items, size_t n,
         const struct origin *o, const int *lines)
{
    char label[NAME_MAX_LEN];
    if (n > BG_CONFIG_MAX_LIST)
        return fail(L, o, k->name, "has %zu items; at most %d are allowed", n, BG_CONFIG_MAX_LIST);
    for (size_t i = 0; i < n; i++) {
        struct origin io = *o;
        if (lines != NULL)
            io.line = lines[i];
        snprintf(label, sizeof(label), "%s[%zu]", k->name, i);
        if (items[i][0] == '\0')
            return fail(L, &io, label, "is empty");
        const char *why = k->check != NULL ? k->check(items[i]) : NULL;
        if (why != NULL)
            return fail(L, &io, label, "%s", why);
    }
    bg_strlist fresh = {.n = n};
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        fresh.v[i] = dup_or_null(items[i], &ok);
    if (!ok) {
        for (size_t i = 0; i < n; i++)
            free(fresh.v[i]);
        return nomem(L);
    }
    bg_strlist *old = list_at(L->cfg, k);
    for (size_t i = 0; i < old->n; i++)
        free(old->v[i]);
    *old = fresh;
    L->origin[k - keys] = *o;
    return 0;
}

/*
 * Checks one listener whatever its source: an address botgate can bind and a port in
 * range. Each has its own origin so that a file error points at the right line.
 */
static int
check_listener(struct loader *L, const bg_listener_conf *l, size_t i, const struct origin *oa,
               const struct origin *op)
{
    char label[NAME_MAX_LEN], q[64];
    snprintf(label, sizeof(label), "listen[%zu].address", i);
    if (l->address == NULL || l->address[0] == '\0')
        return fail(L, oa, label, "must not be empty");
    if (!is_bind_host(l->address))
        return fail(L, oa, label, "\"%s\" is not a numeric IP address or localhost",
                    printable(l->address, q, sizeof(q)));
    snprintf(label, sizeof(label), "listen[%zu].port", i);
    if (l->port < 1 || l->port > 65535)
        return fail(L, op, label, "%d is out of range 1..65535", l->port);
    return 0;
}

/*
 * Replaces the listeners with n checked ones (addresses borrowed): at least one, at most
 * BG_CONFIG_MAX_LISTENERS, no (address, port) twice. The whole list is replaced, never
 * merged, so the file or the variable says everything botgate listens on.
 */
static int
set_listeners(struct loader *L, const struct key *k, const bg_listener_conf *items, size_t n,
              const struct origin *o, const int *lines)
{
    char label[NAME_MAX_LEN], q[64];
    if (n == 0)
        return fail(L, o, k->name, "at least one listener is needed");
    if (n > BG_CONFIG_MAX_LISTENERS)
        return fail(L, o, k->name, "has %zu listeners; at most %d are allowed", n,
                    BG_CONFIG_MAX_LISTENERS);
    for (size_t i = 0; i < n; i++) {
        struct origin io = *o;
        if (lines != NULL)
            io.line = lines[i];
        for (size_t j = 0; j < i; j++) {
            if (items[j].port == items[i].port && strcmp(items[j].address, items[i].address) == 0) {
                snprintf(label, sizeof(label), "listen[%zu]", i);
                return fail(L, &io, label, "repeats listen[%zu] (%s port %d)", j,
                            printable(items[i].address, q, sizeof(q)), items[i].port);
            }
        }
    }
    bg_listener_conf fresh[BG_CONFIG_MAX_LISTENERS];
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        fresh[i] = items[i];
        fresh[i].address = dup_or_null(items[i].address, &ok);
    }
    if (!ok) {
        for (size_t i = 0; i < n; i++)
            free(fresh[i].address);
        return nomem(L);
    }
    bg_config *c = L->cfg;
    for (size_t i = 0; i < c->n_listen; i++)
        free(c->listen[i].address);
    memset(c->listen, 0, sizeof(c->listen));
    memcpy(c->listen, fresh, n * sizeof(fresh[0]));
    c->n_listen = n;
    L->origin[k - keys] = *o;
    return 0;
}

/*
 * Splits s in place at commas and trims blanks around each item: the environment's list
 * syntax. A value that is empty or only blanks is the empty list. Returns the count
 * (possibly more than max, in which case only max items were stored).
 */
static size_t
split_list(char *s, char **items, size_t max)
{
    size_t n = 0;
    char *p = s;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return 0;
    for (;;) {
        char *end = strchr(p, ',');
        char *next = end != NULL ? end + 1 : NULL;
        if (end == NULL)
            end = p + strlen(p);
        while (*p == ' ' || *p == '\t')
            p++;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *end = '\0';
        if (n < max)
            items[n] = p;
        n++;
        if (next == NULL)
            return n;
        p = next;
    }
}

/*
 * Parses the environment's listener syntax, "https://ADDRESS:PORT,http://ADDRESS:PORT"
 * (https = TLS, IPv6 as [ADDRESS]), into listeners whose addresses point into buf.
 */
static int
parse_listener_urls(struct loader *L, const struct key *k, char *buf, const struct origin *o)
{
    char *items[BG_CONFIG_MAX_LISTENERS] = {NULL};
    bg_listener_conf ls[BG_CONFIG_MAX_LISTENERS] = {{NULL, 0, false}};
    char label[NAME_MAX_LEN];
    size_t n = split_list(buf, items, BG_CONFIG_MAX_LISTENERS);
    if (n > BG_CONFIG_MAX_LISTENERS)
        return fail(L, o, k->name, "has %zu listeners; at most %d are allowed", n,
                    BG_CONFIG_MAX_LISTENERS);
    for (size_t i = 0; i < n; i++) {
        char *rest;
        snprintf(label, sizeof(label), "listen[%zu]", i);
        if (strncasecmp(items[i], "https://", 8) == 0)
            ls[i].tls = true, rest = items[i] + 8;
        else if (strncasecmp(items[i], "http://", 7) == 0)
            ls[i].tls = false, rest = items[i] + 7;
        else
            return fail(L, o, label, "must be https://ADDRESS:PORT or http://ADDRESS:PORT");
        const char *why = split_hostport(rest, &ls[i].address, &ls[i].port);
        if (why != NULL)
            return fail(L, o, label, "%s", why);
        int rc = check_listener(L, &ls[i], i, o, o);
        if (rc != 0)
            return rc;
    }
    return set_listeners(L, k, ls, n, o, NULL);
}

/*
 * Sets any key from an environment variable's text: scalars directly, lists split at
 * commas. Also used for the defaults, which are written in the same syntax.
 */
static int
set_from_text(struct loader *L, const struct key *k, const char *text, const struct origin *o)
{
    if (k->kind != K_LIST && k->kind != K_LISTEN)
        return set_scalar(L, k, text, o);
    char *buf = strdup(text);
    if (buf == NULL)
        return nomem(L);
    int rc;
    if (k->kind == K_LISTEN) {
        rc = parse_listener_urls(L, k, buf, o);
    } else {
        char *items[BG_CONFIG_MAX_LIST] = {NULL};
        size_t n = split_list(buf, items, BG_CONFIG_MAX_LIST);
        rc = set_list(L, k, items, n, o, NULL);
    }
    free(buf);
    return rc;
}

/* ---- YAML --------------------------------------------------------------------------- */

/* The 1-based line a node starts on. */
static int
node_line(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

/* "a map", "a list", "a scalar": the node's shape, for "expected X, got Y". */
static const char *
node_kind(const yaml_node_t *n)
{
    return n->type == YAML_MAPPING_NODE    ? "a map"
           : n->type == YAML_SEQUENCE_NODE ? "a list"
                                           : "a scalar";
}

/* An absent value: `key:` with nothing after it, ~ or null (plain, not quoted). */
static bool
is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return *v == '\0' || strcmp(v, "~") == 0 || strcasecmp(v, "null") == 0;
}

/* A scalar's text; a NUL inside it (a "\0" escape) would silently cut the value. */
static bool
has_nul(const yaml_node_t *n)
{
    return strlen((const char *)n->data.scalar.value) != n->data.scalar.length;
}

/* The node a pair's key or value refers to. */
static yaml_node_t *
node(yaml_document_t *doc, int id)
{
    return yaml_document_get_node(doc, id);
}

/*
 * Sets a string, boolean or integer from a YAML node: it must be a scalar; a null is
 * the empty string for a string key and an error for the others.
 */
static int
yaml_scalar(struct loader *L, const struct key *k, const yaml_node_t *v, const char *label,
            const char **text)
{
    struct origin o = {L->source, node_line(v), NULL};
    if (v->type != YAML_SCALAR_NODE)
        return fail(L, &o, label, "expected %s, got %s", kind_name(k->kind), node_kind(v));
    if (is_null(v)) {
        if (k->kind != K_STRING)
            return fail(L, &o, label, "needs a value (%s)", kind_name(k->kind));
        *text = "";
        return 0;
    }
    if (has_nul(v))
        return fail(L, &o, label, "contains a NUL byte");
    *text = (const char *)v->data.scalar.value;
    return 0;
}

/* A list key from a YAML sequence of scalars (block or flow); null is the empty list. */
static int
yaml_list(struct loader *L, yaml_document_t *doc, const struct key *k, yaml_node_t *v)
{
    struct origin o = {L->source, node_line(v), NULL};
    char *items[BG_CONFIG_MAX_LIST] = {NULL};
    int lines[BG_CONFIG_MAX_LIST] = {0};
    char label[NAME_MAX_LEN];
    if (is_null(v))
        return set_list(L, k, items, 0, &o, NULL);
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(L, &o, k->name, "expected a list ([a, b]), got %s", node_kind(v));
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n > BG_CONFIG_MAX_LIST)
        return fail(L, &o, k->name, "has %zu items; at most %d are allowed", n, BG_CONFIG_MAX_LIST);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node(doc, v->data.sequence.items.start[i]);
        struct origin io = {L->source, node_line(item), NULL};
        snprintf(label, sizeof(label), "%s[%zu]", k->name, i);
        if (item->type != YAML_SCALAR_NODE)
            return fail(L, &io, label, "expected a string, got %s", node_kind(item));
        if (is_null(item))
            return fail(L, &io, label, "is empty");
        if (has_nul(item))
            return fail(L, &io, label, "contains a NUL byte");
        items[i] = (char *)item->data.scalar.value;
        lines[i] = io.line;
    }
    return set_list(L, k, items, n, &o, lines);
}

/*
 * One `listen` item: a map {address, port, tls}; address and port are required, tls is
 * true unless said otherwise. The address is borrowed from the document.
 */
static int
yaml_listener(struct loader *L, yaml_document_t *doc, yaml_node_t *item, size_t i,
              bg_listener_conf *out)
{
    struct origin o = {L->source, node_line(item), NULL};
    struct origin oa = o, op = o;
    char label[NAME_MAX_LEN], q[64];
    bool have_address = false, have_port = false, have_tls = false;
    *out = (bg_listener_conf){.address = NULL, .port = 0, .tls = true};
    snprintf(label, sizeof(label), "listen[%zu]", i);
    if (item->type != YAML_MAPPING_NODE)
        return fail(L, &o, label, "expected a map {address, port, tls}, got %s", node_kind(item));
    for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = node(doc, p->key), *vn = node(doc, p->value);
        struct origin ko = {L->source, node_line(kn), NULL};
        if (kn->type != YAML_SCALAR_NODE)
            return fail(L, &ko, label, "a key must be a string, got %s", node_kind(kn));
        const char *name = (const char *)kn->data.scalar.value;
        bool *have = strcmp(name, "address") == 0 ? &have_address
                     : strcmp(name, "port") == 0  ? &have_port
                     : strcmp(name, "tls") == 0   ? &have_tls
                                                  : NULL;
        const char *hint = key_echo(name, q, sizeof(q));
        snprintf(label, sizeof(label), "listen[%zu].%s", i, q);
        if (have == NULL || has_nul(kn))
            return fail(L, &ko, label, "unknown key (address, port, tls)%s", hint);
        if (*have)
            return fail(L, &ko, label, "duplicate key");
        *have = true;
        struct origin vo = {L->source, node_line(vn), NULL};
        if (vn->type != YAML_SCALAR_NODE)
            return fail(L, &vo, label, "expected a scalar, got %s", node_kind(vn));
        const char *text = (const char *)vn->data.scalar.value;
        if (has_nul(vn))
            return fail(L, &vo, label, "contains a NUL byte");
        if (have == &have_address) {
            out->address = (char *)text;
            oa = vo;
        } else if (have == &have_port) {
            long long port;
            int r = parse_int(text, &port);
            if (r == -1)
                return fail(L, &vo, label, "\"%s\" is not a decimal integer",
                            printable(text, q, sizeof(q)));
            if (r == -2 || port < 1 || port > 65535)
                return fail(L, &vo, label, "%s is out of range 1..65535",
                            printable(text, q, sizeof(q)));
            out->port = (int)port;
            op = vo;
        } else {
            int b = parse_bool(text);
            if (b < 0)
                return fail(L, &vo, label, "\"%s\" is not a boolean (true/false, yes/no, on/off)",
                            printable(text, q, sizeof(q)));
            out->tls = b == 1;
        }
    }
    if (!have_address || !have_port) {
        snprintf(label, sizeof(label), "listen[%zu].%s", i, have_address ? "port" : "address");
        return fail(L, &o, label, "is required");
    }
    return check_listener(L, out, i, &oa, &op);
}

/* `listen` from YAML: a sequence of listener maps, replacing the whole list. */
static int
yaml_listen(struct loader *L, yaml_document_t *doc, const struct key *k, yaml_node_t *v)
{
    struct origin o = {L->source, node_line(v), NULL};
    bg_listener_conf ls[BG_CONFIG_MAX_LISTENERS] = {{NULL, 0, false}};
    int lines[BG_CONFIG_MAX_LISTENERS] = {0};
    if (is_null(v))
        return set_listeners(L, k, ls, 0, &o, NULL);
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(L, &o, k->name, "expected a list of {address, port, tls}, got %s",
                    node_kind(v));
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n > BG_CONFIG_MAX_LISTENERS)
        return fail(L, &o, k->name, "has %zu listeners; at most %d are allowed", n,
                    BG_CONFIG_MAX_LISTENERS);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node(doc, v->data.sequence.items.start[i]);
        int rc = yaml_listener(L, doc, item, i, &ls[i]);
        if (rc != 0)
            return rc;
        lines[i] = node_line(item);
    }
    return set_listeners(L, k, ls, n, &o, lines);
}

/* Applies one key's YAML value, refusing a key given twice in the same document. */
static int
yaml_key(struct loader *L, yaml_document_t *doc, int idx, yaml_node_t *kn, yaml_node_t *v)
{
    const struct key *k = &keys[idx];
    if (L->seen_line[idx] != 0) {
        struct origin o = {L->source, node_line(kn), NULL};
        return fail(L, &o, k->name, "duplicate key (first given on line %d)", L->seen_line[idx]);
    }
    L->seen_line[idx] = node_line(kn);
    if (k->kind == K_LIST)
        return yaml_list(L, doc, k, v);
    if (k->kind == K_LISTEN)
        return yaml_listen(L, doc, k, v);
    const char *text = NULL;
    int rc = yaml_scalar(L, k, v, k->name, &text);
    if (rc != 0)
        return rc;
    struct origin o = {L->source, node_line(v), NULL};
    return set_scalar(L, k, text, &o);
}

/*
 * One section ("redis: {...}"): a map whose keys must all be in the table under that
 * section. A null section (every key commented out) sets nothing.
 */
static int
yaml_section(struct loader *L, yaml_document_t *doc, const char *section, yaml_node_t *v)
{
    struct origin o = {L->source, node_line(v), NULL};
    char name[NAME_MAX_LEN], q[64];
    if (is_null(v))
        return 0;
    if (v->type != YAML_MAPPING_NODE)
        return fail(L, &o, section, "expected a map of keys, got %s", node_kind(v));
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node(doc, p->key);
        struct origin ko = {L->source, node_line(kn), NULL};
        if (kn->type != YAML_SCALAR_NODE)
            return fail(L, &ko, section, "a key must be a string, got %s", node_kind(kn));
        const char *key = (const char *)kn->data.scalar.value;
        int n = snprintf(name, sizeof(name), "%s.%s", section, key);
        int idx = (n > 0 && (size_t)n < sizeof(name) && !has_nul(kn)) ? key_index(name) : -1;
        if (idx < 0) {
            const char *hint = key_echo(key, q, sizeof(q));
            snprintf(name, sizeof(name), "%s.%s", section, q);
            return fail(L, &ko, name, "unknown key%s", hint);
        }
        int rc = yaml_key(L, doc, idx, kn, node(doc, p->value));
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The document's top: a map of sections and top-level keys (an empty file sets nothing). */
static int
yaml_top(struct loader *L, yaml_document_t *doc, yaml_node_t *root)
{
    struct origin o = {L->source, node_line(root), NULL};
    char q[64];
    if (is_null(root))
        return 0;
    if (root->type != YAML_MAPPING_NODE)
        return fail(L, &o, "(top level)",
                    "expected a map of sections (listen, auth, redis, ...), got %s",
                    node_kind(root));
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = node(doc, p->key), *v = node(doc, p->value);
        struct origin ko = {L->source, node_line(kn), NULL};
        if (kn->type != YAML_SCALAR_NODE)
            return fail(L, &ko, "(top level)", "a key must be a string, got %s", node_kind(kn));
        const char *name = (const char *)kn->data.scalar.value;
        int idx = (strchr(name, '.') == NULL && !has_nul(kn)) ? key_index(name) : -1;
        int sec = (strchr(name, '.') == NULL && !has_nul(kn))
                      ? section_index(name, kn->data.scalar.length)
                      : -1;
        int rc;
        if (idx >= 0) {
            rc = yaml_key(L, doc, idx, kn, v);
        } else if (sec >= 0) {
            if (L->seen_section[sec])
                return fail(L, &ko, name, "duplicate section");
            L->seen_section[sec] = true;
            rc = yaml_section(L, doc, name, v);
        } else {
            const char *hint = key_echo(name, q, sizeof(q));
            rc = fail(L, &ko, q, "unknown key%s", hint);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/*
 * Turns a libyaml failure into "<file>:<line>: syntax error: <problem>". Reader errors
 * (bad UTF-8) carry a byte offset rather than a mark, so their line is counted here.
 */
static int
yaml_failure(struct loader *L, const yaml_parser_t *parser, const char *yaml, size_t len)
{
    if (parser->error == YAML_MEMORY_ERROR)
        return nomem(L);
    struct origin o = {L->source, (int)parser->problem_mark.line + 1, NULL};
    if (parser->error == YAML_READER_ERROR) {
        o.line = 1;
        for (size_t i = 0; i < parser->problem_offset && i < len; i++)
            o.line += yaml[i] == '\n';
    }
    const char *problem = parser->problem != NULL ? parser->problem : "malformed YAML";
    if (parser->context != NULL)
        return fail(L, &o, "syntax error", "%s (%s)", problem, parser->context);
    return fail(L, &o, "syntax error", "%s", problem);
}

/*
 * Parses the YAML text with libyaml's document loader and applies it. One document only:
 * a second one ("---") is refused rather than silently ignored.
 */
static int
load_yaml(struct loader *L, const char *yaml, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc;
    if (!yaml_parser_initialize(&parser))
        return nomem(L);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_failure(L, &parser, yaml, len);
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    bool empty = root == NULL;
    rc = empty ? 0 : yaml_top(L, &doc, root);
    yaml_document_delete(&doc);
    if (rc == 0 && !empty) {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            rc = yaml_failure(L, &parser, yaml, len);
        } else {
            yaml_node_t *extra = yaml_document_get_root_node(&next);
            if (extra != NULL) {
                struct origin o = {L->source, node_line(extra), NULL};
                rc = fail(L, &o, "(top level)", "only one YAML document is allowed");
            }
            yaml_document_delete(&next);
        }
    }
    yaml_parser_delete(&parser);
    return rc;
}

/* ---- environment -------------------------------------------------------------------- */

/* The value of NAME in envp, or NULL; the first one wins, as with getenv. */
static const char *
env_get(char *const *envp, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i] + len + 1;
    return NULL;
}

/*
 * Refuses BOTGATE_<SECTION>_<KEY> where SECTION is one of ours and KEY is not: a typo
 * there (BOTGATE_REDIS_TIMEOUT) would otherwise be ignored without a word. Other
 * BOTGATE_* names (BOTGATE_BIN for the tests, say) are not ours to judge.
 */
static int
env_unknown(struct loader *L, char *const *envp)
{
    size_t plen = strlen(ENV_PREFIX);
    for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
        const char *e = envp[i];
        const char *eq = strchr(e, '=');
        if (strncmp(e, ENV_PREFIX, plen) != 0 || eq == NULL)
            continue;
        size_t nlen = (size_t)(eq - e);
        bool known = false;
        for (size_t j = 0; j < N_KEYS && !known; j++)
            known = strlen(L->env[j]) == nlen && strncmp(L->env[j], e, nlen) == 0;
        if (known)
            continue;
        for (size_t j = 0; j < N_KEYS; j++) {
            const char *dot = strchr(keys[j].name, '.');
            if (dot == NULL || section_index(keys[j].name, (size_t)(dot - keys[j].name)) != (int)j)
                continue; /* visit each section once, at its first row */
            size_t slen = (size_t)(dot - keys[j].name);
            /* L->env[j] begins "BOTGATE_<SECTION>_" */
            if (nlen <= plen + slen + 1 || strncmp(e, L->env[j], plen + slen + 1) != 0)
                continue;
            char var[NAME_MAX_LEN], key[NAME_MAX_LEN], q[64];
            snprintf(var, sizeof(var), "%.*s", (int)nlen, e);
            snprintf(key, sizeof(key), "%.*s.", (int)slen, keys[j].name);
            for (size_t c = plen + slen + 1; c < nlen && strlen(key) + 1 < sizeof(key); c++) {
                size_t kl = strlen(key);
                char ch = e[c];
                key[kl] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
                key[kl + 1] = '\0';
            }
            struct origin o = {NULL, 0, printable(var, q, sizeof(q))};
            char kq[64];
            return fail(L, &o, printable(key, kq, sizeof(kq)), "unknown key");
        }
    }
    return 0;
}

/*
 * Applies the environment over the file: first the Bot Framework's variables (an empty
 * one is ignored: the SDK's templates ship them empty, and an empty MicrosoftAppId must
 * not switch authentication off behind the file's back), then every BOTGATE_* variable,
 * which wins, even when empty.
 */
static int
load_env(struct loader *L, char *const *envp)
{
    int rc;
    for (size_t i = 0; i < sizeof(bf_vars) / sizeof(bf_vars[0]); i++) {
        const char *v = env_get(envp, bf_vars[i].var);
        if (v == NULL || *v == '\0')
            continue;
        struct origin o = {NULL, 0, bf_vars[i].var};
        if ((rc = set_from_text(L, &keys[key_index(bf_vars[i].key)], v, &o)) != 0)
            return rc;
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        const char *v = env_get(envp, L->env[i]);
        if (v == NULL)
            continue;
        struct origin o = {NULL, 0, L->env[i]};
        if ((rc = set_from_text(L, &keys[i], v, &o)) != 0)
            return rc;
    }
    return env_unknown(L, envp);
}

/* ---- rules across keys -------------------------------------------------------------- */

/* Who set key `name` during this load (file line, variable, or nobody: the default). */
static const struct origin *
origin_of(struct loader *L, const char *name)
{
    return &L->origin[key_index(name)];
}

/* A string field that is set and not empty. */
static bool
is_set(const char *s)
{
    return s != NULL && *s != '\0';
}

/*
 * The rules no single value can break: run once the file and the environment are both
 * in, because either may supply the other half.
 */
static int
check_whole(struct loader *L)
{
    bg_config *c = L->cfg;
    bool any_tls = false;
    for (size_t i = 0; i < c->n_listen; i++)
        any_tls |= c->listen[i].tls;
    /* Both empty: a development certificate is made; one alone is a mistake. */
    if (any_tls && is_set(c->tls.cert_file) != is_set(c->tls.key_file)) {
        const char *set = is_set(c->tls.cert_file) ? "tls.cert_file" : "tls.key_file";
        const char *unset = is_set(c->tls.cert_file) ? "tls.key_file" : "tls.cert_file";
        return fail(L, origin_of(L, set), set,
                    "is set but %s is not (set both, or neither for a development certificate)",
                    unset);
    }
    if (c->redis.sentinels.n > 0 && !is_set(c->redis.master_name))
        return fail(L, origin_of(L, "redis.sentinels"), "redis.master_name",
                    "must be set when redis.sentinels is (the name the sentinels monitor)");
    if (c->bot.backoff_initial_ms > c->bot.backoff_max_ms) {
        const struct origin *oi = origin_of(L, "bot.backoff_initial_ms");
        if (oi->file == NULL && oi->env == NULL) /* only the maximum was set: blame it */
            return fail(L, origin_of(L, "bot.backoff_max_ms"), "bot.backoff_max_ms",
                        "%d is below bot.backoff_initial_ms (%d)", c->bot.backoff_max_ms,
                        c->bot.backoff_initial_ms);
        return fail(L, oi, "bot.backoff_initial_ms", "%d is above bot.backoff_max_ms (%d)",
                    c->bot.backoff_initial_ms, c->bot.backoff_max_ms);
    }
    /* Whoever reaches the relay speaks as the bot: off loopback only on purpose, and then
     * behind the shared secret. */
    if (c->relay.allow_remote && !is_set(c->relay.secret))
        return fail(L, origin_of(L, "relay.allow_remote"), "relay.secret",
                    "must be set when relay.allow_remote is true (callers present it)");
    if (is_set(c->relay.listen) && !is_loopback_listen(c->relay.listen) && !c->relay.allow_remote)
        return fail(L, origin_of(L, "relay.listen"), "relay.listen",
                    "%s is not a loopback address: whoever reaches the relay speaks as the bot "
                    "(set relay.allow_remote: true and relay.secret to serve it there)",
                    c->relay.listen);
    /* The SDK needs the tenant for these two app types; without it no token is valid. */
    if (is_set(c->auth.app_id) && c->auth.app_type != NULL &&
        strcmp(c->auth.app_type, "MultiTenant") != 0 && !is_set(c->auth.tenant_id))
        return fail(L, origin_of(L, "auth.app_type"), "auth.tenant_id",
                    "must be set when auth.app_type is %s", c->auth.app_type);
    return 0;
}

/* ---- the public face ---------------------------------------------------------------- */

/*
 * Makes dst an independent copy of src (every string duplicated), so that a load can
 * work on the copy and throw it away on failure. On BG_ENOMEM dst owns nothing.
 */
static int
config_dup(bg_config *dst, const bg_config *src)
{
    bool ok = true;
    memcpy(dst, src, sizeof(*dst));
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        if (k->kind == K_STRING) {
            char **d = str_at(dst, k);
            *d = dup_or_null(*d, &ok);
        } else if (k->kind == K_LIST) {
            bg_strlist *d = list_at(dst, k);
            for (size_t j = 0; j < d->n; j++)
                d->v[j] = dup_or_null(d->v[j], &ok);
        } else if (k->kind == K_LISTEN) {
            for (size_t j = 0; j < dst->n_listen; j++)
                dst->listen[j].address = dup_or_null(dst->listen[j].address, &ok);
        }
    }
    if (!ok) {
        bg_config_free(dst);
        return BG_ENOMEM;
    }
    return 0;
}

/*
 * Fills cfg from the table's defaults, written in the environment's syntax and applied
 * through the same setters, so a default obeys the same rules as a configured value.
 */
int
bg_config_init(bg_config *cfg)
{
    struct loader L = {.cfg = cfg};
    struct origin none = {NULL, 0, NULL};
    if (cfg == NULL)
        return BG_EINVAL;
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        int rc;
        if (k->kind == K_BOOL) {
            *bool_at(cfg, k) = k->def_num != 0;
            continue;
        }
        if (k->kind == K_INT) {
            *int_at(cfg, k) = (int)k->def_num;
            continue;
        }
        if (k->kind == K_INT64) {
            *int64_at(cfg, k) = k->def_num;
            continue;
        }
        if ((rc = set_from_text(&L, k, k->def_str, &none)) != 0) {
            bg_config_free(cfg);
            return rc == BG_ENOMEM ? BG_ENOMEM : BG_EINVAL;
        }
    }
    return 0;
}

int
bg_config_load(bg_config *cfg, const char *yaml, size_t len, const char *source, char *const *envp,
               char *err, size_t errlen)
{
    struct loader L = {.err = err, .errlen = errlen, .source = source ? source : "(config)"};
    bg_config work;
    int rc;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (cfg == NULL)
        return BG_EINVAL;
    if (config_dup(&work, cfg) != 0)
        return nomem(&L);
    L.cfg = &work;
    for (size_t i = 0; i < N_KEYS; i++)
        env_name(&keys[i], L.env[i], sizeof(L.env[i]));
    rc = yaml != NULL ? load_yaml(&L, yaml, len) : 0;
    if (rc == 0)
        rc = load_env(&L, envp);
    if (rc == 0)
        rc = check_whole(&L);
    if (rc != 0) {
        bg_config_free(&work);
        return rc;
    }
    bg_config_free(cfg);
    *cfg = work;
    return 0;
}

/* Walks the table, freeing every string, list item and listener address, then zeroes cfg. */
void
bg_config_free(bg_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        if (k->kind == K_STRING) {
            free(*str_at(cfg, k));
        } else if (k->kind == K_LIST) {
            bg_strlist *l = list_at(cfg, k);
            for (size_t j = 0; j < l->n && j < BG_CONFIG_MAX_LIST; j++)
                free(l->v[j]);
        } else if (k->kind == K_LISTEN) {
            for (size_t j = 0; j < cfg->n_listen && j < BG_CONFIG_MAX_LISTENERS; j++)
                free(cfg->listen[j].address);
        }
    }
    memset(cfg, 0, sizeof(*cfg));
}
