/*
 * The serving process: h2o listeners (TLS and plain), the routes, the Redis connection
 * and the queue, all on one event loop, and the orderly stop on SIGTERM.
 *
 * Routes, on every listener:
 *   POST /api/messages   the activity endpoint (ingress.c)
 *   GET  /healthz        the process is alive (probes.c)
 *   GET  /readyz         Redis is reachable: 200, else 503 (probes.c)
 *   anything else        404 as a JSON error
 * on the relay listener (relay.listen, plain HTTP) only the relay's routes (relay.h);
 * and on the admin listener (admin.listen, plain HTTP) only:
 *   GET  /metrics        Prometheus text format (admin.c); /healthz and /readyz as above,
 *                        and no /api/messages
 */
#ifndef BOTGATE_SERVER_H
#define BOTGATE_SERVER_H

#include <stdint.h>
#include <h2o.h>
#include <openssl/ssl.h>

#include "botgate/auth.h"
#include "botgate/cidr.h"
#include "botgate/config.h"
#include "botgate/http_client.h"
#include "botgate/keys.h"
#include "botgate/limits.h"
#include "botgate/metrics.h"
#include "botgate/queue.h"
#include "botgate/redis.h"
#include "botgate/timer.h"

typedef enum bg_role {
    BG_ROLE_ALL = 0,    /* ingress and dispatcher in one process (the default) */
    BG_ROLE_INGRESS,    /* accept and store only */
    BG_ROLE_DISPATCHER, /* deliver only: the listeners serve the probes */
} bg_role;

/* The routes requests are counted by (botgate_requests_total's route label). */
typedef enum bg_route {
    BG_ROUTE_MESSAGES = 0,
    BG_ROUTE_HEALTHZ,
    BG_ROUTE_READYZ,
    BG_ROUTE_METRICS,
    BG_ROUTE_RELAY, /* anything on the relay listener (relay.c) */
    BG_ROUTE_OTHER,
    BG_ROUTE_COUNT,
} bg_route;

#define BG_METRICS_MAX_STATUS 600 /* statuses below this have a cached series */
#define BG_METRICS_MAX_ERR 128    /* -bg_err below this has a cached series */

/*
 * botgate's metrics (registered by admin.c; README.md, "Operating botgate", lists them).
 * The registry is policy/'s; what the request path updates is held here as series
 * pointers, so that counting is an addition: no lookup, no allocation, no lock (one
 * thread). Gauges of state kept elsewhere (queue, keys, certificate) are filled when
 * /metrics is scraped.
 */
typedef struct bg_server_metrics {
    bg_metrics registry;
    bg_metric_family *requests, *refused, *auth_rejects, *redis_errors, *dead_letters, *tls_expiry;
    /* series made on first use, cached by route × status and by error */
    bg_metric_series *requests_by[BG_ROUTE_COUNT][BG_METRICS_MAX_STATUS];
    bg_metric_series *refused_by[BG_METRICS_MAX_ERR], *auth_rejects_by[BG_METRICS_MAX_ERR];
    /* histograms */
    bg_metric_series *ack, *delivery, *bot;
    /* counters */
    bg_metric_series *pings, *token_cache_hits, *token_cache_misses, *jwks_fetches, *jwks_failures,
        *redis_reconnects;
    bg_metric_series *redis_down, *redis_timeout, *redis_error, *redis_full, *redis_replica;
    bg_metric_series *attempts_ack, *attempts_retry, *attempts_dead;
    bg_metric_series *sync_answered, *sync_timeout, *sync_unreachable;
    bg_metric_series *tls_reload_ok, *tls_reload_failed;
    /* the relay (relay.c) */
    bg_metric_series *relay_seconds, *relay_attempts_answered, *relay_attempts_retry,
        *relay_attempts_failed, *relay_token_ok, *relay_token_error, *relay_token_age,
        *relay_token_expiry;
    /* gauges */
    bg_metric_series *up, *jwks_key_age, *redis_up, *queue_length, *queue_pending,
        *queue_oldest_pending, *queue_orphaned, *deliveries_in_flight;
    bg_metric_series *queue_batch; /* activities per enqueue-script call (queue.c) */
    bg_metric_series *access_written, *access_dropped, *access_write_errors; /* at scrape */
    /* state behind them */
    unsigned long redis_ready_calls; /* the first is the connection, the others reconnects */
    int64_t cert_not_after;          /* Unix time; 0 = no TLS listener */
    h2o_timeout_t scrape_deadline;   /* a scrape waits this long for Redis */
    int scrape_deadline_on;
    bg_metrics_buf scrape_buf; /* reused by every scrape */
} bg_server_metrics;

typedef struct bg_server {
    const bg_config *cfg;
    h2o_globalconf_t globalconf;
    h2o_context_t ctx;
    h2o_evloop_t *loop;
    SSL_CTX *ssl_ctx;
    size_t n_listeners;
    struct bg_listener {
        h2o_socket_t *sock;
        h2o_accept_ctx_t accept_ctx;
    } listeners[BG_CONFIG_MAX_LISTENERS + 2]; /* + admin.listen, relay.listen */
    /* Each listener serves one host: its connections see only that host's routes,
     * whatever Host or :authority a client sends (h2o picks among conn->hosts). */
    h2o_hostconf_t *public_hosts[2], *admin_hosts[2]; /* NULL-terminated */
    h2o_hostconf_t *relay_hosts[2];                   /* relay.listen's (relay.h) */
    struct bg_relay *relay;                           /* NULL when the relay is off */
    bg_redis *redis;
    bg_queue *queue;
    bg_http *http;                    /* outbound HTTP: keys, the bot */
    struct bg_dispatcher *dispatcher; /* NULL in the ingress role */
    h2o_linklist_t sync_calls;        /* synchronous proxy calls in flight (ingress.c) */
    bg_role role;
    int auth_on;                 /* auth.app_id set */
    bg_auth_params auth;         /* the rules' parameters, from cfg */
    bg_keys *keys;               /* NULL when authentication is off */
    bg_token_cache *token_cache; /* NULL when off or auth.token_cache_entries is 0 */
    bg_cidr_list allow_cidrs;    /* empty = any source */
    bg_cidr_list trusted_proxies;
    size_t inflight;    /* requests waiting on Redis */
    int shutting_down;  /* SIGTERM seen: new requests get 503 */
    uint64_t id_prefix; /* random, per process: request ids are unique across pods */
    uint64_t id_counter;
    bg_server_metrics metrics;
    struct bg_failures *failures;               /* <stream>:failures (failures.h) */
    struct bg_access_log *access_log;           /* NULL: log.access off */
    struct bg_directory_cache *directory_cache; /* recent directory writes; NULL: auth off */
    bg_timer cert_timer;                        /* logs the certificate's days left, daily */
    bg_limits *limits;                          /* overload caps; tracks the open connections */
    /* the certificate's files, watched for a reload (tls_reload.h); NULL: no TLS listener */
    struct bg_tls_watch *tls_watch;
} bg_server;

/* The server a request belongs to: its h2o context is the one in bg_server. */
#define bg_server_of(req) H2O_STRUCT_FROM_MEMBER(bg_server, ctx, (req)->conn->ctx)

/*
 * Serves until SIGTERM or SIGINT, then drains for at most shutdown_grace_s.
 * cert_file/key_file are the TLS files to use (the configured ones or the development
 * certificate). Returns 0 after an orderly stop, 2 when the configuration cannot be put
 * into effect (a port in use, a bad certificate), 1 on other start-up failures.
 */
int bg_server_run(const bg_config *cfg, bg_role role, const char *cert_file, const char *key_file);

/* Writes a fresh request id (32 hex digits, NUL-terminated) into buf[33]. */
void bg_server_next_request_id(bg_server *server, char buf[33]);

/* Route registration, one per handler file. */
void bg_ingress_register(h2o_pathconf_t *pathconf, bg_server *server);
/* Ends every synchronous call still in flight: the caller gets 503. */
void bg_ingress_cancel_sync(bg_server *server);
void bg_probes_register(h2o_hostconf_t *hostconf, bg_server *server);
void bg_early_errors_register(h2o_pathconf_t *fallback);

/* Metrics and the admin listener (admin.c). */
/* Registers every metric; 0 or BG_ENOMEM. */
int bg_admin_metrics_init(bg_server *server);
/* Once the loop exists: the scrape deadline; and the serving certificate's expiry, read,
 * logged (a warning under 30 days, an error once expired) and re-logged daily. */
void bg_admin_start(bg_server *server);
/* The serving certificate was replaced (tls_reload.c): its expiry, read again and logged. */
void bg_admin_cert_changed(bg_server *server);
/* Answers scrapes still waiting and releases the loop's timers; before the loop goes. */
void bg_admin_stop(bg_server *server);
void bg_admin_metrics_free(bg_server *server);
/* GET /metrics, on the admin listener's host only. */
void bg_admin_register(h2o_hostconf_t *hostconf, bg_server *server);
/* Counts every request to hostconf in botgate_requests_total: an h2o logger on each of its
 * paths (registered before this call) and its fallback (h2o's own error answers); it
 * runs when the request is disposed, whoever answered it. */
void bg_admin_count_requests(h2o_hostconf_t *hostconf, bg_server *server);
/* botgate_requests_refused_total (and botgate_auth_rejects_total for a 401) for err. */
void bg_admin_count_refusal(bg_server_metrics *metrics, int err);
/* botgate_redis_errors_total for a BG_EREDIS_* / BG_EQUEUE_FULL / BG_EREPLICA err. */
void bg_admin_count_redis_error(bg_server_metrics *metrics, int err);
/* Where the dispatcher counts its attempts, outcomes and times (dispatcher.c; declared
 * here, with the struct it takes, to keep dispatcher.h free of server.h). */
void bg_dispatcher_set_metrics(struct bg_dispatcher *d, bg_server_metrics *metrics);
/* Where failed attempts are recorded (failures.h); NULL (the default): nowhere. */
void bg_dispatcher_set_failures(struct bg_dispatcher *d, struct bg_failures *failures);
/* Where each attempt's line goes (access_log.h); NULL: nowhere. */
void bg_dispatcher_set_access_log(struct bg_dispatcher *d, struct bg_access_log *log);

/* Answers req with the JSON error of err ({"error":{"code":..,"message":..}}); detail,
 * when not NULL, replaces the table's sentence (it must not contain request bytes). */
void bg_respond_error(h2o_req_t *req, int err, const char *detail);
/* Answers req with status and a JSON body (NUL-terminated). */
void bg_respond_json(h2o_req_t *req, int status, const char *reason, const char *json);
/* Passes an upstream answer back unchanged: its status, Content-Type and body (the bot's
 * to a synchronous activity, the Connector's to a relay call). */
struct bg_http_result;
void bg_respond_passthrough(h2o_req_t *req, const struct bg_http_result *res);

#endif
