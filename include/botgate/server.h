/*
 * The serving process: h2o listeners (TLS and plain), the routes, the Redis connection
 * and the queue, all on one event loop, and the orderly stop on SIGTERM.
 *
 * Routes, on every listener:
 *   POST /api/messages   the activity endpoint (ingress.c)
 *   GET  /healthz        the process is alive (probes.c)
 *   GET  /readyz         Redis is reachable: 200, else 503 (probes.c)
 *   anything else        404 as a JSON error
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
#include "botgate/queue.h"
#include "botgate/redis.h"

typedef enum bg_role {
    BG_ROLE_ALL = 0,    /* ingress and dispatcher in one process (the default) */
    BG_ROLE_INGRESS,    /* accept and store only */
    BG_ROLE_DISPATCHER, /* deliver only: the listeners serve the probes */
} bg_role;

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
    } listeners[BG_CONFIG_MAX_LISTENERS];
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
} bg_server;

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

/* Answers req with the JSON error of err ({"error":{"code":..,"message":..}}); detail,
 * when not NULL, replaces the table's sentence (it must not contain request bytes). */
void bg_respond_error(h2o_req_t *req, int err, const char *detail);
/* Answers req with status and a JSON body (NUL-terminated). */
void bg_respond_json(h2o_req_t *req, int status, const char *reason, const char *json);

#endif
