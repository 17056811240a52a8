/*
 * Configuration: one YAML file, every key with a default, a range and an environment
 * override.
 *
 * Precedence, lowest first: the defaults below (bg_config_init), the YAML file, the Bot
 * Framework's own variables (MicrosoftAppId, MicrosoftAppPassword, MicrosoftAppTenantId,
 * MicrosoftAppType), then BOTGATE_<SECTION>_<KEY> (BOTGATE_AUTH_APP_ID for auth.app_id,
 * BOTGATE_SHUTDOWN_GRACE_S for the top-level shutdown_grace_s). List keys take a
 * comma-separated value in the environment; `listen` takes "https://0.0.0.0:8443,
 * http://127.0.0.1:8080" (https = TLS).
 *
 * Parsing is pure: bytes and an environment array in, a struct or a message naming the
 * key and the reason out. Reading the file and checking that certificate files can be
 * read is the caller's job (proxy/), so that the loader can be unit-tested and fuzzed.
 */
#ifndef BOTGATE_CONFIG_H
#define BOTGATE_CONFIG_H

#include <stddef.h>
#include <stdbool.h>

#define BG_CONFIG_MAX_LISTENERS 16
#define BG_CONFIG_MAX_LIST 32

typedef struct bg_listener_conf {
    char *address; /* numeric IPv4/IPv6 address or "localhost" */
    int port;      /* 1..65535 */
    bool tls;
} bg_listener_conf;

/* A list of strings (sync_types, allow_cidrs, ...): owned copies. */
typedef struct bg_strlist {
    size_t n;
    char *v[BG_CONFIG_MAX_LIST];
} bg_strlist;

typedef struct bg_config {
    bg_listener_conf listen[BG_CONFIG_MAX_LISTENERS];
    size_t n_listen;
    char *state_dir; /* what botgate makes itself: dev certificate, private Redis data */
    struct {
        char *cert_file;
        char *key_file;
        int reload_check_s; /* 0: reload on SIGHUP only; else also when the files change */
    } tls;
    struct {
        char *app_id;
        char *app_password; /* secret: never logged */
        char *app_type;     /* MultiTenant | SingleTenant | UserAssignedMSI */
        char *tenant_id;
        char *openid_metadata_url;
        char *emulator_openid_metadata_url;
        char *issuer;
        int clock_skew_s;
        bool allow_emulator;
        bool require_endorsements;
        char *ca_file;
        int jwks_refresh_s;
        int token_cache_entries; /* verified tokens kept; 0 = no cache */
    } auth;
    struct {
        char *url; /* redis://host:port/db, unix:///path; empty = private redis-server */
        char *stream;
        long long maxlen;
        int failures_maxlen; /* <stream>:failures keeps about this many (failures.h) */
        int dedupe_ttl_s;
        int timeout_ms;
        int min_replicas_ack;
        bg_strlist sentinels;
        char *master_name;
        int partitions; /* streams the queue is split into (botgate/partition.h) */
    } redis;
    struct {
        char *url;
        int timeout_s;
        int concurrency;
        int max_attempts;
        int backoff_initial_ms;
        int backoff_max_ms;
        int claim_idle_s;
        char *consumer_suffix; /* appended to the host name: the consumer group member */
    } bot;
    struct {
        long long body_max_bytes;
        bg_strlist sync_types;
        int sync_deadline_ms;
        int sync_compose_deadline_ms; /* invokes named composeExtension/... */
        int sync_fallback_status;     /* answered when the bot misses the deadline */
        bg_strlist allow_cidrs;
        bg_strlist trusted_proxies;
        bool answer_ping;
        int max_connections;               /* limits.h */
        int max_inflight_writes;           /* limits.h */
        long long max_inflight_body_bytes; /* limits.h */
    } policy;
    struct {
        char *listen;
        char *token_url;
        char *scope;
        bool allow_remote;     /* relay.listen may be a non-loopback address (with secret) */
        char *secret;          /* callers present it as a Bearer token; "" = none (loopback) */
        int directory_ttl_s;   /* conversation directory entries live this long after use */
        int token_refresh_pct; /* a Connector token is refreshed at this % of its life */
        int timeout_ms;        /* one call to the Connector, or to the token endpoint */
    } relay;
    struct {
        char *listen;
    } admin;
    struct {
        char *access;           /* stdout | stderr | off | a file path */
        char *level;            /* debug | info | warn | error */
        int access_sample_1_in; /* keep 1 in N successful requests' lines */
    } log;
    int shutdown_grace_s;
} bg_config;

/* Fills cfg with the defaults (README.md's table). Returns 0 or BG_ENOMEM. */
int bg_config_init(bg_config *cfg);

/*
 * Applies a YAML document (yaml may be NULL for "no file") and then the environment
 * (envp: a NULL-terminated "NAME=value" array, as environ; may be NULL) over cfg, then
 * checks every value's range. On failure returns BG_ECONFIG and writes one line naming
 * the key and the reason into err ("redis.timeout_ms: 0 is out of range 1..600000");
 * `source` names the file in that message.
 */
int bg_config_load(bg_config *cfg, const char *yaml, size_t len, const char *source,
                   char *const *envp, char *err, size_t errlen);

/* Frees every string cfg owns; cfg may then be initialised again. */
void bg_config_free(bg_config *cfg);

#endif
