/*
 * The serving process: set-up, the loop, and the orderly stop (see botgate/server.h).
 *
 * One thread, one h2o context, one event loop, one Redis connection. Every handler
 * runs on the loop and no call on it blocks: the only blocking steps (name resolution,
 * starting the private Redis, reading certificates) happen before the loop starts.
 *
 * Stopping (SIGTERM from the kubelet, SIGINT from a terminal): the listeners close at
 * once, so that new connections go to other pods; open connections are asked to finish
 * (HTTP/2 GOAWAY, HTTP/1 close after the current response); requests already waiting
 * on Redis get their answer; after that, or after shutdown_grace_s, Redis is
 * disconnected (anything still pending is answered 503, never 202) and the process
 * exits 0.
 */
#include "botgate/server.h"
#include "botgate/access_log.h"
#include "botgate/directory_cache.h"
#include "botgate/dispatcher.h"
#include "botgate/error.h"
#include "botgate/failures.h"
#include "botgate/log.h"
#include "botgate/tls_reload.h"
#include "botgate/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void
on_signal(int sig)
{
    stop_signal = sig;
}

/* No SA_RESTART: the signal interrupts epoll_wait, and h2o_evloop_run returns. */
static void
install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN); /* with a TLS listener, tls_reload.c takes it */
}

void
bg_server_next_request_id(bg_server *server, char buf[33])
{
    snprintf(buf, 33, "%016llx%016llx", (unsigned long long)server->id_prefix,
             (unsigned long long)++server->id_counter);
}

/* Accepts one connection from l's queue, under policy.max_connections (limits.h tracks
 * it, and closes it at shutdown). 0 when the queue was empty. */
static int
accept_one(struct bg_listener *l)
{
    bg_server *s = H2O_STRUCT_FROM_MEMBER(bg_server, ctx, l->accept_ctx.ctx);
    h2o_socket_t *sock = h2o_evloop_socket_accept(l->sock);
    if (sock == NULL)
        return 0;
    int capped = l->accept_ctx.hosts != s->admin_hosts; /* a scrape is never shed */
    if (bg_limits_accept(s->limits, sock, capped) != 0)
        bg_admin_count_refusal(&s->metrics, BG_ESHED_CONNECTIONS);
    else
        h2o_accept(&l->accept_ctx, sock);
    return 1;
}

static void
on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    /* A few per wake-up: fair to the connections already open, cheaper than one. */
    for (int i = 0; i < 16; i++)
        if (!accept_one(listener->data))
            return;
}

/* key names the configuration key in errors ("listen", "admin.listen"); hosts is what
 * the listener's connections may reach (see botgate/server.h). */
static int
open_listener(bg_server *s, const bg_listener_conf *lc, h2o_hostconf_t **hosts, const char *key,
              char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", lc->port);
    int rc = getaddrinfo(lc->address, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s: %s", key, lc->address, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    /* SO_REUSEPORT: a new botgate binds the same port while the old one drains (README.md,
     * "Zero-downtime restart"); the kernel spreads new connections over both. */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        snprintf(err, errlen, "%s: %s:%d: %s", key, lc->address, lc->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct bg_listener *l = &s->listeners[s->n_listeners++];
    l->accept_ctx.ctx = &s->ctx;
    l->accept_ctx.hosts = hosts;
    l->accept_ctx.ssl_ctx = lc->tls ? s->ssl_ctx : NULL;
    l->sock = h2o_evloop_socket_create(s->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    l->sock->data = l;
    h2o_socket_read_start(l->sock, on_accept);
    bg_log_info("server", "listening on %s://%s:%d%s", lc->tls ? "https" : "http", lc->address,
                lc->port,
                hosts == s->admin_hosts   ? " (admin: /metrics, /healthz, /readyz)"
                : hosts == s->relay_hosts ? " (relay: /v3/conversations/...)"
                                          : "");
    return 0;
}

/*
 * admin.listen, relay.listen: "ADDRESS:PORT" or "[IPV6]:PORT" (policy/config.c checked the
 * form), a plain-HTTP listener whose connections reach only its own host. A port that
 * cannot be bound refuses the start, as for `listen`.
 */
static int
open_plain_listener(bg_server *s, const char *key, const char *v, h2o_hostconf_t **hosts, char *err,
                    size_t errlen)
{
    char host[128];
    const char *colon = strrchr(v, ':');
    size_t hlen = colon != NULL ? (size_t)(colon - v) : 0;
    if (hlen >= 2 && v[0] == '[' && v[hlen - 1] == ']')
        v++, hlen -= 2;
    if (colon == NULL || hlen == 0 || hlen >= sizeof(host)) {
        snprintf(err, errlen, "%s: %s: must be ADDRESS:PORT", key, v);
        return -1;
    }
    memcpy(host, v, hlen);
    host[hlen] = '\0';
    bg_listener_conf lc = {.address = host, .port = atoi(colon + 1), .tls = false};
    return open_listener(s, &lc, hosts, key, err, errlen);
}

/* Connections still in their TLS handshake are in neither list: each waits in the
 * context's handshake timeout queue. */
static size_t
open_connections(bg_server *s)
{
    return (size_t)!h2o_linklist_is_empty(&s->ctx.http1._conns) +
           (size_t)!h2o_linklist_is_empty(&s->ctx.http2._conns) +
           (size_t)!h2o_linklist_is_empty(&s->ctx.handshake_timeout._entries);
}

/* Handshakes still going on at the very end time out now (h2o closes their sockets):
 * h2o_context_dispose asserts that the handshake queue is empty. */
static void
close_handshakes(bg_server *s)
{
    while (!h2o_linklist_is_empty(&s->ctx.handshake_timeout._entries)) {
        h2o_timeout_entry_t *e = H2O_STRUCT_FROM_MEMBER(h2o_timeout_entry_t, _link,
                                                        s->ctx.handshake_timeout._entries.next);
        e->cb(e);
    }
    h2o_evloop_run(s->loop, 0);
}

/* Runs the loop until cond(s) is false or deadline_ms (loop time) has passed. */
static void
run_while(bg_server *s, int (*cond)(bg_server *), uint64_t deadline_ms)
{
    while (cond(s) && h2o_now(s->loop) < deadline_ms)
        h2o_evloop_run(s->loop, 50);
}

static int
has_inflight(bg_server *s)
{
    return s->inflight > 0 || bg_relay_in_flight(s->relay) > 0 ||
           (s->dispatcher != NULL && bg_dispatcher_in_flight(s->dispatcher) > 0);
}

static int
has_connections(bg_server *s)
{
    return open_connections(s) > 0;
}

/* Any accepted socket still open, one in its TLS handshake included (not yet an h2o
 * connection, but its handshake timeout is the context's too). */
static int
has_sockets(bg_server *s)
{
    return has_connections(s) || bg_limits_sockets(s->limits) > 0;
}

/* A key set changed: tokens signed by a key that is gone must not stay verified. */
static void
on_keys_changed(bg_keys *keys, void *data)
{
    bg_server *s = data;
    if (s->token_cache != NULL)
        bg_token_cache_prune_keys(s->token_cache, bg_keys_channel(keys), bg_keys_emulator(keys));
}

/* Authentication and source allowlists; 0, or 2 for a configuration that cannot work. */
static int
setup_auth(bg_server *s, const bg_config *cfg, char *err, size_t errlen)
{
    char why[200];
    if (bg_cidr_list_parse(&s->allow_cidrs, cfg->policy.allow_cidrs.v, cfg->policy.allow_cidrs.n,
                           why, sizeof(why)) != 0) {
        snprintf(err, errlen, "policy.allow_cidrs: %s", why);
        return 2;
    }
    if (bg_cidr_list_parse(&s->trusted_proxies, cfg->policy.trusted_proxies.v,
                           cfg->policy.trusted_proxies.n, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "policy.trusted_proxies: %s", why);
        return 2;
    }
    s->auth_on = cfg->auth.app_id[0] != '\0';
    s->auth = (bg_auth_params){.app_id = cfg->auth.app_id,
                               .issuer = cfg->auth.issuer,
                               .clock_skew_s = cfg->auth.clock_skew_s,
                               .require_endorsements = cfg->auth.require_endorsements,
                               .allow_emulator = cfg->auth.allow_emulator,
                               .emulator_tenant_id = cfg->auth.tenant_id};
    if (!s->auth_on)
        return 0;
    if ((s->keys = bg_keys_new(s->loop, s->http, cfg)) == NULL)
        return 1;
    if (cfg->auth.token_cache_entries > 0 &&
        (s->token_cache = bg_token_cache_new((size_t)cfg->auth.token_cache_entries)) == NULL)
        return 1;
    /* 65536 slots, 1 MiB: the conversations active within a refresh interval */
    if ((s->directory_cache = bg_directory_cache_new(65536)) == NULL)
        return 1;
    bg_keys_set_change_cb(s->keys, on_keys_changed, s);
    bg_keys_set_failures(s->keys, s->failures);
    return 0;
}

static void
on_redis_ready(bg_redis *redis, void *data)
{
    (void)redis;
    bg_server *s = data;
    if (s->metrics.redis_ready_calls++ > 0)
        bg_metric_inc(s->metrics.redis_reconnects);
    bg_queue_check_durability(s->queue);
    bg_queue_check_layout(s->queue);
}

/* In development (authentication off), one line a newcomer can paste to see a 202. */
static void
print_try_line(const bg_config *cfg, const char *cert_file)
{
    if (cfg->auth.app_id[0] != '\0' || cfg->n_listen == 0)
        return;
    const bg_listener_conf *lc = &cfg->listen[0];
    const char *host = lc->address;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
        host = "localhost";
    int v6 = strchr(host, ':') != NULL;
    /* the development certificate is self-signed: trust exactly it */
    const char *ca = lc->tls && cfg->tls.cert_file[0] == '\0' ? cert_file : NULL;
    fprintf(
        stderr,
        "\nTry it:\n  curl -i %s%s%s-H 'Content-Type: application/json' "
        "-d '{\"type\":\"message\",\"id\":\"1\","
        "\"channelId\":\"msteams\",\"serviceUrl\":\"https://smba.trafficmanager.net/teams/\","
        "\"conversation\":{\"id\":\"dev\"},\"text\":\"hello\"}' %s://%s%s%s:%d/api/messages\n\n",
        ca != NULL ? "--cacert " : "", ca != NULL ? ca : "", ca != NULL ? " " : "",
        lc->tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", lc->port);
}

static void
drain_and_stop(bg_server *s)
{
    bg_log_info("server",
                "%s: draining (%zu requests waiting on Redis, %zu deliveries in flight, grace "
                "%d s)",
                strsignal(stop_signal), s->inflight,
                s->dispatcher != NULL ? bg_dispatcher_in_flight(s->dispatcher) : 0,
                s->cfg->shutdown_grace_s);
    s->shutting_down = 1;
    if (s->dispatcher != NULL)
        bg_dispatcher_stop(s->dispatcher); /* no new deliveries; those in flight may end */
    /* Connections the kernel already completed wait in a listener's queue, and close()
     * would reset them: accept them first (with SO_REUSEPORT, new ones go to the other
     * listeners of the port from the close on). */
    for (size_t i = 0; i < s->n_listeners; i++) {
        while (accept_one(&s->listeners[i]))
            ;
        h2o_socket_close(s->listeners[i].sock);
    }
    s->n_listeners = 0;
    h2o_context_request_shutdown(&s->ctx);
    uint64_t deadline = h2o_now(s->loop) + (uint64_t)s->cfg->shutdown_grace_s * 1000;
    run_while(s, has_inflight, deadline);
    /* Give clients a moment to read their answers and close; an idle keep-alive
     * connection is not worth the rest of the grace period. */
    uint64_t linger = h2o_now(s->loop) + 500;
    run_while(s, has_connections, linger < deadline ? linger : deadline);
    if (s->inflight > 0)
        bg_log_warn("server", "grace period over: %zu requests answered 503 (not stored)",
                    s->inflight);
    if (s->dispatcher != NULL && bg_dispatcher_in_flight(s->dispatcher) > 0)
        bg_log_warn("server",
                    "grace period over: %zu deliveries abandoned; they stay pending in Redis and "
                    "are delivered again (by this consumer's next start, or claimed by another)",
                    bg_dispatcher_in_flight(s->dispatcher));
}

int
bg_server_run(const bg_config *cfg, bg_role role, const char *cert_file, const char *key_file)
{
    static bg_server server;
    bg_server *s = &server;
    char err[512] = "";
    int status = 1;
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    s->role = role;
    h2o_linklist_init_anchor(&s->sync_calls);
    if (getrandom(&s->id_prefix, sizeof(s->id_prefix), 0) != sizeof(s->id_prefix))
        s->id_prefix = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);

    int any_tls = 0;
    for (size_t i = 0; i < cfg->n_listen; i++)
        any_tls |= cfg->listen[i].tls;
    if (any_tls && (s->ssl_ctx = bg_tls_ctx_new(cert_file, key_file, err, sizeof(err))) == NULL) {
        bg_log_error("server", "%s", err);
        return 2;
    }

    if (bg_admin_metrics_init(s) != 0 ||
        (s->limits = bg_limits_new((size_t)cfg->policy.max_connections,
                                   (size_t)cfg->policy.max_inflight_writes,
                                   (size_t)cfg->policy.max_inflight_body_bytes)) == NULL) {
        bg_log_error("server", "out of memory");
        bg_admin_metrics_free(s);
        SSL_CTX_free(s->ssl_ctx);
        return 1;
    }
    int rc = bg_access_log_open(&s->access_log, cfg->log.access, bg_log_get_level(),
                                (unsigned)cfg->log.access_sample_1_in, err, sizeof(err));
    if (rc != 0) {
        bg_log_error("server", "log.access: %s", err);
        bg_admin_metrics_free(s);
        SSL_CTX_free(s->ssl_ctx);
        return rc == BG_ENOMEM ? 1 : 2;
    }

    h2o_config_init(&s->globalconf);
    s->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("botgate"));
    s->globalconf.max_request_entity_size = (size_t)cfg->policy.body_max_bytes;
    /* Paths match by prefix in registration order: "/" (probes.c) comes last. */
    h2o_hostconf_t *host =
        h2o_config_register_host(&s->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    if (role != BG_ROLE_DISPATCHER)
        bg_ingress_register(h2o_config_register_path(host, "/api/messages", 0), s);
    bg_probes_register(host, s);
    bg_early_errors_register(&host->fallback_path);
    bg_admin_count_requests(host, s);
    s->public_hosts[0] = host;
    if (cfg->admin.listen[0] != '\0') {
        h2o_hostconf_t *admin =
            h2o_config_register_host(&s->globalconf, h2o_iovec_init(H2O_STRLIT("admin")), 65535);
        bg_admin_register(admin, s);
        bg_probes_register(admin, s);
        bg_early_errors_register(&admin->fallback_path);
        bg_admin_count_requests(admin, s);
        s->admin_hosts[0] = admin;
    }
    const char *relay_off = bg_relay_off_reason(cfg);
    if (relay_off == NULL) {
        h2o_hostconf_t *relay =
            h2o_config_register_host(&s->globalconf, h2o_iovec_init(H2O_STRLIT("relay")), 65535);
        bg_relay_register(relay, s);
        bg_early_errors_register(&relay->fallback_path);
        bg_admin_count_requests(relay, s);
        s->relay_hosts[0] = relay;
    } else if (cfg->relay.listen[0] != '\0') {
        bg_log_warn("server", "relay: not started on %s: %s", cfg->relay.listen, relay_off);
    }

    s->loop = h2o_evloop_create();
    h2o_context_init(&s->ctx, s->loop, &s->globalconf);
    bg_admin_start(s);

    s->redis = bg_redis_new_from_config(s->loop, cfg, err, sizeof(err));
    if (s->redis == NULL) {
        bg_log_error("server", "%s", err);
        status = 2;
        goto out;
    }
    s->queue = bg_queue_new(s->loop, s->redis, cfg);
    if (s->queue == NULL)
        goto out;
    bg_redis_set_ready_cb(s->redis, on_redis_ready, s);
    if ((s->http = bg_http_new(s->loop, cfg->auth.ca_file, err, sizeof(err))) == NULL) {
        bg_log_error("server", "%s", err);
        status = 2;
        goto out;
    }
    if (role != BG_ROLE_INGRESS &&
        (s->dispatcher = bg_dispatcher_new(s->loop, cfg, s->redis, s->http, err, sizeof(err))) ==
            NULL) {
        bg_log_error("server", "%s", err);
        status = 2;
        goto out;
    }
    if ((s->failures = bg_failures_new(s->redis, cfg->redis.stream, cfg->redis.failures_maxlen)) ==
        NULL) {
        bg_log_error("server", "out of memory");
        status = 1;
        goto out;
    }
    bg_queue_set_batch_metric(s->queue, s->metrics.queue_batch);
    if (s->dispatcher != NULL) {
        bg_dispatcher_set_metrics(s->dispatcher, &s->metrics);
        bg_dispatcher_set_failures(s->dispatcher, s->failures);
        bg_dispatcher_set_access_log(s->dispatcher, s->access_log);
    }
    if ((status = setup_auth(s, cfg, err, sizeof(err))) != 0) {
        bg_log_error("server", "%s", err[0] != '\0' ? err : "out of memory");
        goto out;
    }
    if (s->relay_hosts[0] != NULL && (s->relay = bg_relay_new(s, err, sizeof(err))) == NULL) {
        bg_log_error("server", "%s", err);
        status = 2; /* relay.token_url */
        goto out;
    }
    status = 1;

    for (size_t i = 0; i < cfg->n_listen; i++) {
        if (open_listener(s, &cfg->listen[i], s->public_hosts, "listen", err, sizeof(err)) != 0) {
            bg_log_error("server", "%s", err);
            status = 2;
            goto out;
        }
    }
    if (s->admin_hosts[0] != NULL && open_plain_listener(s, "admin.listen", cfg->admin.listen,
                                                         s->admin_hosts, err, sizeof(err)) != 0) {
        bg_log_error("server", "%s", err);
        status = 2;
        goto out;
    }
    if (s->relay_hosts[0] != NULL && open_plain_listener(s, "relay.listen", cfg->relay.listen,
                                                         s->relay_hosts, err, sizeof(err)) != 0) {
        bg_log_error("server", "%s", err);
        status = 2;
        goto out;
    }
    install_signals();
    if (bg_tls_reload_start(s, cert_file, key_file, cfg->tls.reload_check_s, err, sizeof(err)) !=
        0) {
        bg_log_error("server", "%s", err);
        goto out;
    }
    bg_redis_start(s->redis);
    if (s->keys != NULL)
        bg_keys_start(s->keys);
    if (s->dispatcher != NULL)
        bg_dispatcher_start(s->dispatcher);
    if (s->relay != NULL)
        bg_relay_start(s->relay);
    print_try_line(cfg, cert_file);
    bg_log_info("server", "botgate %s ready; redis %s, stream %s", BOTGATE_VERSION,
                bg_redis_target(s->redis), cfg->redis.stream);

    while (!stop_signal) {
        if (h2o_evloop_run(s->loop, INT32_MAX) != 0 && errno != EINTR) {
            bg_log_error("server", "event loop failed: %s", strerror(errno));
            goto out;
        }
    }
    drain_and_stop(s);
    status = 0;

out:
    s->shutting_down = 1;
    for (size_t i = 0; i < s->n_listeners; i++)
        h2o_socket_close(s->listeners[i].sock);
    s->n_listeners = 0;
    bg_ingress_cancel_sync(s); /* before the HTTP client goes */
    bg_relay_free(s->relay);   /* calls in flight get 503; its token is dropped */
    s->relay = NULL;
    bg_keys_free(s->keys); /* requests waiting for keys get 503 */
    s->keys = NULL;
    if (s->dispatcher != NULL)
        bg_dispatcher_stop(s->dispatcher);
    bg_token_cache_free(s->token_cache);
    bg_directory_cache_free(s->directory_cache);
    s->directory_cache = NULL;
    s->token_cache = NULL;
    bg_cidr_list_free(&s->allow_cidrs);
    bg_cidr_list_free(&s->trusted_proxies);
    bg_redis_free(s->redis); /* answers what is still pending: 503 */
    s->redis = NULL;
    /* after the shared connection: its last answers may still reach the dispatcher */
    bg_dispatcher_free(s->dispatcher);
    s->dispatcher = NULL;
    bg_failures_free(s->failures); /* after its users; its writes carry no pointer to it */
    s->failures = NULL;
    bg_http_free(s->http);
    s->http = NULL;
    bg_queue_free(s->queue);
    s->queue = NULL;
    /* let the last answers and socket closes run */
    run_while(s, has_sockets, h2o_now(s->loop) + 200);
    /* Idle keep-alive connections whose clients did not leave: h2o 2.2 does not close
     * them on shutdown, and h2o_context_dispose aborts while one is open. A shutdown(2)
     * ends them through h2o's own read path. */
    bg_limits_shutdown_connections(s->limits);
    run_while(s, has_sockets, h2o_now(s->loop) + 1000);
    close_handshakes(s);       /* any handshake still open: before limits.c forgets its socket */
    bg_limits_free(s->limits); /* before the sockets go with the loop */
    s->limits = NULL;
    bg_admin_stop(s);
    bg_tls_reload_stop(s);
    /* h2o_context_request_shutdown left HTTP/2's GOAWAY re-send timer linked, and
     * h2o_context_dispose asserts that its timeouts are empty. */
    if (h2o_timeout_is_linked(&s->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&s->ctx.http2._graceful_shutdown_timeout);
    h2o_context_dispose(&s->ctx);
    h2o_evloop_destroy(s->loop);
    h2o_config_dispose(&s->globalconf);
    SSL_CTX_free(s->ssl_ctx);
    /* last: a request disposed on the way out still counts and logs itself */
    bg_access_log_close(s->access_log);
    s->access_log = NULL;
    bg_admin_metrics_free(s);
    return status;
}
