/*
 * Metrics and the admin listener: what botgate counts, and GET /metrics.
 *
 * Where each number comes from:
 *
 *   counted as it happens (a series pointer, an addition)   filled at scrape time
 *   ─────────────────────────────────────────────────────   ─────────────────────────────
 *   requests by route/status   an h2o logger on every path   queue length, pending,
 *   refusals, auth rejects     bg_respond_error                oldest pending age,
 *   ack latency, pings, token  ingress.c                       orphaned entries
 *     cache, sync outcomes                                     (XLEN, XPENDING, async)
 *                                                            JWKS fetches, failures,
 *   Redis errors               ingress.c, dispatcher.c         key age (bg_keys stats)
 *   Redis reconnects           server.c (ready callbacks)    certificate seconds left
 *   attempts, dead letters,    dispatcher.c                  redis_up
 *     delivery and bot times,
 *     deliveries in flight
 *
 * /metrics is served on the admin listener alone. h2o 2.2.5 chooses a request's host
 * among the connection's hosts (conn->hosts, from the listener's accept_ctx) by its Host
 * or :authority, falling back to the first. So server.c gives every public listener a
 * host list holding only the public host, and the admin listener one holding only the
 * admin host, where /metrics is registered: no Host header can reach /metrics through a
 * public port (it is a 404 there, as any unknown path), and no local-address comparison
 * is needed (which a wildcard admin address, 0.0.0.0:9090, would make fragile).
 *
 * A scrape asks Redis for the queue's state on the shared connection (length, pending,
 * entries outside redis.partitions' layout: queue.h) and answers when every reply is in,
 * or at the deadline (min(redis.timeout_ms, 1 s)) with what it has: without the queue
 * gauges, and botgate_redis_up 0. The request may be gone by then (the scraper timed out
 * and closed), so the scrape and the request meet in a reference-counted struct, as in
 * ingress.c: one reference is the request's (dropped by a dispose callback on req->pool),
 * one each Redis command's.
 */
#include "botgate/clock.h"
#include "botgate/access_log.h"
#include "botgate/delivery.h"
#include "botgate/dispatcher.h"
#include "botgate/error.h"
#include "botgate/log.h"
#include "botgate/partition.h"
#include "botgate/queue.h"
#include "botgate/relay.h"
#include "botgate/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <openssl/x509.h>

#define SCRAPE_DEADLINE_MAX_MS 1000
#define CERT_LOG_PERIOD_MS (24 * 3600 * 1000ULL)
#define CERT_WARN_DAYS 30

static const char *const route_names[BG_ROUTE_COUNT] = {"messages", "healthz", "readyz",
                                                        "metrics",  "relay",   "other"};

/* ---- registration -------------------------------------------------------------------- */

struct st_adder {
    bg_metrics *registry;
    int err;
};

static bg_metric_family *
add(struct st_adder *a, const bg_metric_desc *d)
{
    bg_metric_family *f = NULL;
    if (a->err == 0)
        a->err = bg_metrics_add(a->registry, d, &f);
    return f;
}

/* The one series of a family without labels. */
static bg_metric_series *
add1(struct st_adder *a, bg_metric_type type, const char *name, const char *help)
{
    bg_metric_family *f = add(a, &(bg_metric_desc){.type = type, .name = name, .help = help});
    return f != NULL ? bg_metrics_series(f, NULL, NULL) : NULL;
}

static bg_metric_series *
add_histogram(struct st_adder *a, const char *name, const char *help, const double *bounds,
              size_t n)
{
    bg_metric_family *f = add(a, &(bg_metric_desc){.type = BG_METRIC_HISTOGRAM,
                                                   .name = name,
                                                   .help = help,
                                                   .bounds = bounds,
                                                   .n_bounds = n});
    return f != NULL ? bg_metrics_series(f, NULL, NULL) : NULL;
}

/* A counter with one label whose values are known: each starts at 0, so that a rate()
 * over it exists before the first event. */
static bg_metric_family *
add_known(struct st_adder *a, const char *name, const char *help, const char *label,
          const char *const *values, bg_metric_series **out)
{
    size_t n = 0;
    while (values[n] != NULL)
        n++;
    bg_metric_family *f = add(a, &(bg_metric_desc){.type = BG_METRIC_COUNTER,
                                                   .name = name,
                                                   .help = help,
                                                   .labels = {label},
                                                   .max_series = n});
    for (size_t i = 0; f != NULL && i < n; i++)
        out[i] = bg_metrics_series(f, values[i], NULL);
    return f;
}

int
bg_admin_metrics_init(bg_server *s)
{
    bg_server_metrics *m = &s->metrics;
    bg_metrics_init(&m->registry);
    struct st_adder a = {&m->registry, 0};
    static const double ack_buckets[] = {BG_METRICS_BUCKETS_ACK};
    static const double bot_buckets[] = {BG_METRICS_BUCKETS_BOT};
    const size_t n_ack = sizeof(ack_buckets) / sizeof(ack_buckets[0]);
    const size_t n_bot = sizeof(bot_buckets) / sizeof(bot_buckets[0]);

    m->up = add1(&a, BG_METRIC_GAUGE, "botgate_up", "1 while botgate serves.");
    bg_metric_set(m->up, 1);
    bg_metric_family *info =
        add(&a, &(bg_metric_desc){.type = BG_METRIC_GAUGE,
                                  .name = "botgate_build_info",
                                  .help = "The running build; the value is always 1.",
                                  .labels = {"version"}});
    if (info != NULL)
        bg_metric_set(bg_metrics_series(info, BOTGATE_VERSION, NULL), 1);

    /* requests */
    m->requests =
        add(&a, &(bg_metric_desc){.type = BG_METRIC_COUNTER,
                                  .name = "botgate_requests_total",
                                  .help = "HTTP requests, by route (messages, healthz, readyz, "
                                          "metrics, other) and status code (0: the client left "
                                          "before it was answered).",
                                  .labels = {"route", "code"},
                                  .max_series = 160});
    m->ack = add_histogram(&a, "botgate_ack_seconds",
                           "Time from a request's arrival (headers and body read) to its 202 "
                           "Accepted, the Redis write included.",
                           ack_buckets, n_ack);
    m->refused = add(&a, &(bg_metric_desc){.type = BG_METRIC_COUNTER,
                                           .name = "botgate_requests_refused_total",
                                           .help = "Requests answered with a JSON error, by its "
                                                   "code (README.md, Routes and answers).",
                                           .labels = {"reason"},
                                           .max_series = 64});
    m->auth_rejects = add(&a, &(bg_metric_desc){.type = BG_METRIC_COUNTER,
                                                .name = "botgate_auth_rejects_total",
                                                .help = "Requests refused 401 by authentication, "
                                                        "by error code.",
                                                .labels = {"reason"},
                                                .max_series = 32});
    m->pings = add1(&a, BG_METRIC_COUNTER, "botgate_pings_total",
                    "Tokenless {\"type\":\"ping\"} activities answered 200 (policy.answer_ping).");
    m->token_cache_hits = add1(&a, BG_METRIC_COUNTER, "botgate_token_cache_hits_total",
                               "Tokens found in the verified-token cache: no signature check.");
    m->token_cache_misses = add1(&a, BG_METRIC_COUNTER, "botgate_token_cache_misses_total",
                                 "Tokens checked in full (signature and claims): not cached, "
                                 "or the cache is off.");
    static const char *const sync_outcomes[] = {"answered", "timeout", "unreachable", NULL};
    bg_metric_series *sync[3] = {NULL};
    add_known(&a, "botgate_sync_requests_total",
              "Synchronous activities (invokes, expectReplies) proxied to the bot, by outcome: "
              "answered (any status), timeout (the deadline passed), unreachable.",
              "outcome", sync_outcomes, sync);
    m->sync_answered = sync[0], m->sync_timeout = sync[1], m->sync_unreachable = sync[2];

    /* keys */
    m->jwks_fetches = add1(&a, BG_METRIC_COUNTER, "botgate_jwks_fetches_total",
                           "Fetches of the Connector's signing keys (metadata and JWKS).");
    m->jwks_failures = add1(&a, BG_METRIC_COUNTER, "botgate_jwks_fetch_failures_total",
                            "Fetches of the signing keys that failed (the keys held are kept).");
    m->jwks_key_age = add1(&a, BG_METRIC_GAUGE, "botgate_jwks_key_age_seconds",
                           "Seconds since the channel's signing keys were last fetched.");

    /* Redis and the queue */
    m->redis_up = add1(&a, BG_METRIC_GAUGE, "botgate_redis_up",
                       "1 when Redis answered this scrape's queue queries in time, else 0.");
    static const char *const kinds[] = {"down", "timeout", "error", "full", "replica", NULL};
    bg_metric_series *kind[5] = {NULL};
    m->redis_errors =
        add_known(&a, "botgate_redis_errors_total",
                  "Failed Redis operations (queue writes, dispatcher reads and outcome writes), "
                  "by kind: down, timeout, error (an error reply), full (redis.maxlen), "
                  "replica (redis.min_replicas_ack not met).",
                  "kind", kinds, kind);
    m->redis_down = kind[0], m->redis_timeout = kind[1], m->redis_error = kind[2];
    m->redis_full = kind[3], m->redis_replica = kind[4];
    m->redis_reconnects = add1(&a, BG_METRIC_COUNTER, "botgate_redis_reconnects_total",
                               "Connections to Redis made again after the first one.");
    m->queue_length = add1(&a, BG_METRIC_GAUGE, "botgate_queue_length",
                           "Entries in redis.stream: acknowledged, not yet delivered (XLEN).");
    m->queue_pending = add1(&a, BG_METRIC_GAUGE, "botgate_queue_pending",
                            "Entries read by a dispatcher and not yet settled (XPENDING).");
    m->queue_oldest_pending =
        add1(&a, BG_METRIC_GAUGE, "botgate_queue_oldest_pending_seconds",
             "Age of the oldest pending entry, from its stream id (0 when none is pending).");
    static const double batch_buckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    m->queue_batch = add_histogram(
        &a, "botgate_queue_write_batch_activities",
        "Activities sent to Redis in one call of the enqueue script: every activity accepted "
        "in one turn of the event loop goes in one call (group commit), at most 256.",
        batch_buckets, sizeof(batch_buckets) / sizeof(batch_buckets[0]));
    m->queue_orphaned =
        add1(&a, BG_METRIC_GAUGE, "botgate_queue_orphaned_entries",
             "Entries in streams outside redis.partitions' layout, which no dispatcher reads "
             "(written under another redis.partitions).");

    /* delivery */
    static const char *const outcomes[] = {"ack", "retry", "dead", NULL};
    bg_metric_series *outcome[3] = {NULL};
    add_known(&a, "botgate_delivery_attempts_total",
              "Delivery attempts to the bot, by outcome: ack (2xx), retry, dead (dead-lettered).",
              "outcome", outcomes, outcome);
    m->attempts_ack = outcome[0], m->attempts_retry = outcome[1], m->attempts_dead = outcome[2];
    m->delivery = add_histogram(&a, "botgate_delivery_seconds",
                                "Time from an activity's arrival to the bot's 2xx, queue wait "
                                "and retries included.",
                                bot_buckets, n_bot);
    m->bot = add_histogram(&a, "botgate_bot_seconds",
                           "Duration of each delivery attempt (libcurl's total time), whatever "
                           "its outcome.",
                           bot_buckets, n_bot);
    static const char *const reasons[] = {BG_DEAD_STATUS, BG_DEAD_ATTEMPTS, BG_DEAD_TOKEN_EXPIRED,
                                          BG_DEAD_BAD_ENTRY, NULL};
    bg_metric_series *reason[4] = {NULL};
    m->dead_letters =
        add_known(&a, "botgate_dead_letters_total",
                  "Entries moved to the dead-letter stream, by reason.", "reason", reasons, reason);
    m->deliveries_in_flight = add1(&a, BG_METRIC_GAUGE, "botgate_deliveries_in_flight",
                                   "Deliveries to the bot in progress.");

    /* the relay */
    static const char *const relay_outcomes[] = {"answered", "retry", "failed", NULL};
    bg_metric_series *ro[3] = {NULL};
    add_known(&a, "botgate_relay_attempts_total",
              "Relay calls to the Connector, by outcome: answered (any status), retry (retried: "
              "no activity can have been created), failed (no answer, not retried).",
              "outcome", relay_outcomes, ro);
    m->relay_attempts_answered = ro[0], m->relay_attempts_retry = ro[1];
    m->relay_attempts_failed = ro[2];
    m->relay_seconds = add_histogram(&a, "botgate_relay_seconds",
                                     "Duration of each relay call to the Connector (libcurl's "
                                     "total time), whatever its outcome.",
                                     bot_buckets, n_bot);
    static const char *const token_outcomes[] = {"ok", "error", NULL};
    bg_metric_series *to[2] = {NULL};
    add_known(&a, "botgate_relay_token_requests_total",
              "Connector token requests (client credentials) by outcome.", "outcome",
              token_outcomes, to);
    m->relay_token_ok = to[0], m->relay_token_error = to[1];
    m->relay_token_age = add1(&a, BG_METRIC_GAUGE, "botgate_relay_token_age_seconds",
                              "Seconds since the Connector token held was obtained.");
    m->relay_token_expiry = add1(&a, BG_METRIC_GAUGE, "botgate_relay_token_expiry_seconds",
                                 "Seconds until the Connector token held expires.");

    /* TLS */
    m->tls_expiry = add(&a, &(bg_metric_desc){.type = BG_METRIC_GAUGE,
                                              .name = "botgate_tls_certificate_expiry_seconds",
                                              .help = "Seconds until the serving certificate "
                                                      "expires (negative once expired), per TLS "
                                                      "listener.",
                                              .labels = {"listener"},
                                              .max_series = BG_CONFIG_MAX_LISTENERS});

    /* the access log */
    static const char *const results[] = {"written", "dropped", NULL};
    bg_metric_series *result[2] = {NULL};
    add_known(&a, "botgate_access_log_lines_total",
              "Access-log lines handed to the writer (written) or dropped because the "
              "destination could not keep up with its 4 MiB buffer (dropped).",
              "result", results, result);
    m->access_written = result[0], m->access_dropped = result[1];
    m->access_write_errors = add1(&a, BG_METRIC_COUNTER, "botgate_access_log_write_errors_total",
                                  "Failed writes of buffered access-log lines (lost).");
    static const char *const reload_results[] = {"ok", "failed", NULL};
    bg_metric_series *reload[2] = {NULL};
    add_known(&a, "botgate_tls_reloads_total",
              "Certificate reloads (SIGHUP, or tls.reload_check_s seeing the files change), by "
              "result: ok (new connections get the new certificate) or failed (refused; the old "
              "one stays).",
              "result", reload_results, reload);
    m->tls_reload_ok = reload[0], m->tls_reload_failed = reload[1];
    return a.err;
}

void
bg_admin_metrics_free(bg_server *s)
{
    bg_metrics_free(&s->metrics.registry);
    bg_metrics_buf_free(&s->metrics.scrape_buf);
}

/* ---- counting ------------------------------------------------------------------------- */

void
bg_admin_count_refusal(bg_server_metrics *m, int err)
{
    if (m->refused == NULL)
        return;
    int i = -err;
    int cached = i >= 0 && i < BG_METRICS_MAX_ERR;
    bg_metric_series *s = cached ? m->refused_by[i] : NULL;
    if (s == NULL) {
        s = bg_metrics_series(m->refused, bg_error_code(err), NULL);
        if (cached)
            m->refused_by[i] = s;
    }
    bg_metric_inc(s);
    if (bg_error_status(err) != 401)
        return;
    s = cached ? m->auth_rejects_by[i] : NULL;
    if (s == NULL) {
        s = bg_metrics_series(m->auth_rejects, bg_error_code(err), NULL);
        if (cached)
            m->auth_rejects_by[i] = s;
    }
    bg_metric_inc(s);
}

void
bg_admin_count_redis_error(bg_server_metrics *m, int err)
{
    switch (err) {
    case BG_EREDIS_DOWN:
        bg_metric_inc(m->redis_down);
        break;
    case BG_EREDIS_TIMEOUT:
        bg_metric_inc(m->redis_timeout);
        break;
    case BG_EREDIS_ERROR:
        bg_metric_inc(m->redis_error);
        break;
    case BG_EQUEUE_FULL:
        bg_metric_inc(m->redis_full);
        break;
    case BG_EREPLICA:
        bg_metric_inc(m->redis_replica);
        break;
    default:
        break;
    }
}

struct st_count_logger {
    h2o_logger_t super;
    bg_server *server;
    bg_route route;  /* the pathconf's route */
    size_t path_len; /* its path's length: a longer path is "other" */
    int fallback;    /* h2o's own error answers (early_errors.c) */
};

static bg_route
route_of_path(const char *p, size_t len)
{
    if (h2o_memis(p, len, H2O_STRLIT("/api/messages")))
        return BG_ROUTE_MESSAGES;
    if (h2o_memis(p, len, H2O_STRLIT("/healthz")))
        return BG_ROUTE_HEALTHZ;
    if (h2o_memis(p, len, H2O_STRLIT("/readyz")))
        return BG_ROUTE_READYZ;
    if (h2o_memis(p, len, H2O_STRLIT("/metrics")))
        return BG_ROUTE_METRICS;
    return BG_ROUTE_OTHER;
}

/*
 * Runs for every request when h2o disposes it, after the answer (or without one: status
 * 0, the client left first). The series of a (route, status) pair is cached, so the usual
 * cost is an index and an addition.
 */
static void
on_log_access(h2o_logger_t *self, h2o_req_t *req)
{
    struct st_count_logger *l = (struct st_count_logger *)self;
    bg_server_metrics *m = &l->server->metrics;
    bg_route route = l->route;
    if (l->fallback)
        route = route_of_path(req->path_normalized.base, req->path_normalized.len);
    else if (req->path_normalized.len != l->path_len)
        route = BG_ROUTE_OTHER;
    if (route == BG_ROUTE_METRICS && req->conn->hosts != l->server->admin_hosts)
        route = BG_ROUTE_OTHER; /* /metrics on a public listener is just a 404 */
    if (req->conn->hosts == l->server->relay_hosts)
        route = BG_ROUTE_RELAY;
    int status = req->res.status;
    int cached = status >= 0 && status < BG_METRICS_MAX_STATUS;
    bg_metric_series *s = cached ? m->requests_by[route][status] : NULL;
    if (s == NULL && m->requests != NULL) {
        char code[16];
        snprintf(code, sizeof(code), "%d", status);
        s = bg_metrics_series(m->requests, route_names[route], code);
        if (cached)
            m->requests_by[route][status] = s;
    }
    bg_metric_inc(s);
    /* h2o answered by itself (413 over policy.body_max_bytes, 400 unparsable): these are
     * refusals too, with the codes early_errors.c gives them. */
    if (l->fallback && (status == 413 || status == 400))
        bg_admin_count_refusal(m, status == 413 ? BG_EBODY_TOO_LARGE : BG_EHTTP);
    /* ingress.c writes the lines of the requests its handler took, with their activity */
    if (l->server->access_log != NULL && !(l->route == BG_ROUTE_MESSAGES && !l->fallback)) {
        const char *code = status == 404 ? bg_error_code(BG_ENOTFOUND) : NULL;
        if (l->fallback && (status == 413 || status == 400))
            code = bg_error_code(status == 413 ? BG_EBODY_TOO_LARGE : BG_EHTTP);
        bg_access_request r = {.route = route_names[route],
                               .code = code,
                               .keys_wait_us = -1,
                               .auth_us = -1,
                               .enqueue_us = -1,
                               .bot_us = -1};
        bg_access_log_h2o_request(l->server->access_log, &r, req);
    }
}

static void
add_logger(h2o_pathconf_t *pathconf, bg_server *server, int fallback)
{
    struct st_count_logger *l = (struct st_count_logger *)h2o_create_logger(pathconf, sizeof(*l));
    l->super.log_access = on_log_access;
    l->server = server;
    l->fallback = fallback;
    l->path_len = pathconf->path.len;
    l->route = fallback ? BG_ROUTE_OTHER : route_of_path(pathconf->path.base, pathconf->path.len);
}

void
bg_admin_count_requests(h2o_hostconf_t *hostconf, bg_server *server)
{
    for (size_t i = 0; i < hostconf->paths.size; i++)
        add_logger(hostconf->paths.entries + i, server, 0);
    add_logger(&hostconf->fallback_path, server, 1);
}

/* ---- the certificate -------------------------------------------------------------------- */

static void
log_certificate(bg_server *s)
{
    int64_t left = s->metrics.cert_not_after - (int64_t)time(NULL);
    time_t at = (time_t)s->metrics.cert_not_after;
    struct tm tm;
    char when[32];
    gmtime_r(&at, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (left <= 0)
        bg_log_error("tls",
                     "the serving certificate EXPIRED at %s (%lld days ago): the Connector "
                     "refuses this endpoint; replace tls.cert_file",
                     when, (long long)(-left / 86400));
    else if (left < (int64_t)CERT_WARN_DAYS * 86400)
        bg_log_warn("tls", "the serving certificate expires at %s: %lld days left; renew it", when,
                    (long long)(left / 86400));
    else
        bg_log_info("tls", "the serving certificate expires at %s: %lld days left", when,
                    (long long)(left / 86400));
}

static void
on_cert_timer(bg_timer *t)
{
    bg_server *s = t->data;
    log_certificate(s);
    bg_timer_start(t, CERT_LOG_PERIOD_MS);
}

/* The serving certificate's notAfter, from the context the TLS listeners share. */
static int
read_not_after(SSL_CTX *ctx, int64_t *out)
{
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    const ASN1_TIME *na = cert != NULL ? X509_get0_notAfter(cert) : NULL;
    struct tm tm;
    if (na == NULL || ASN1_TIME_to_tm(na, &tm) != 1)
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

static void
watch_certificate(bg_server *s)
{
    bg_server_metrics *m = &s->metrics;
    if (s->ssl_ctx == NULL || read_not_after(s->ssl_ctx, &m->cert_not_after) != 0) {
        if (s->ssl_ctx != NULL)
            bg_log_warn("tls", "cannot read the serving certificate's expiry");
        m->cert_not_after = 0;
        return;
    }
    for (size_t i = 0; i < s->cfg->n_listen; i++) {
        const bg_listener_conf *lc = &s->cfg->listen[i];
        if (!lc->tls)
            continue;
        char label[80];
        int v6 = strchr(lc->address, ':') != NULL;
        snprintf(label, sizeof(label), "%s%s%s:%d", v6 ? "[" : "", lc->address, v6 ? "]" : "",
                 lc->port);
        bg_metrics_series(m->tls_expiry, label, NULL); /* set at each scrape */
    }
    log_certificate(s);
    bg_timer_init(&s->cert_timer, s->loop, on_cert_timer, s);
    bg_timer_start(&s->cert_timer, CERT_LOG_PERIOD_MS);
}

void
bg_admin_cert_changed(bg_server *s)
{
    int64_t not_after;
    /* 0: the expiry was never read, and no daily timer runs to log it */
    if (s->metrics.cert_not_after == 0 || read_not_after(s->ssl_ctx, &not_after) != 0)
        return;
    s->metrics.cert_not_after = not_after;
    log_certificate(s);
}

/* ---- /metrics -------------------------------------------------------------------------- */

struct st_metrics_handler {
    h2o_handler_t super;
    bg_server *server;
};

/* A scrape waiting for Redis (see the comment at the top). */
struct st_scrape {
    h2o_req_t *req; /* NULL once h2o disposed the request */
    bg_server *server;
    int refs;
    int waiting; /* Redis commands not answered yet */
    int failed;  /* one came back without a reply (down, timeout) */
    int answered;
    h2o_timeout_entry_t deadline;
    int have_length, have_pending, have_orphaned;
    long long length, pending, orphaned;
    double oldest_s;
};

struct st_scrape_ref {
    struct st_scrape *op;
};

/* Milliseconds of a stream id "1700000000000-0". */
static int64_t
stream_id_ms(const char *id)
{
    return id != NULL ? strtoll(id, NULL, 10) : 0;
}

/* Gauges of state kept elsewhere, as of now; op NULL: Redis was not asked. */
static void
collect(bg_server *s, const struct st_scrape *op)
{
    bg_server_metrics *m = &s->metrics;
    int redis_ok = op != NULL && op->waiting == 0 && !op->failed;
    bg_metric_set(m->redis_up, redis_ok);
    if (op != NULL && op->have_length)
        bg_metric_set(m->queue_length, (double)op->length);
    else
        bg_metric_clear(m->queue_length);
    if (op != NULL && op->have_orphaned)
        bg_metric_set(m->queue_orphaned, (double)op->orphaned);
    else
        bg_metric_clear(m->queue_orphaned);
    if (op != NULL && op->have_pending) {
        bg_metric_set(m->queue_pending, (double)op->pending);
        bg_metric_set(m->queue_oldest_pending, op->oldest_s);
    } else {
        bg_metric_clear(m->queue_pending);
        bg_metric_clear(m->queue_oldest_pending);
    }
    if (s->keys != NULL) {
        bg_keys_stats ks = bg_keys_get_stats(s->keys);
        bg_metric_set(m->jwks_fetches, (double)ks.fetches);
        bg_metric_set(m->jwks_failures, (double)ks.failures);
        if (ks.loaded_at_ms > 0)
            bg_metric_set(m->jwks_key_age,
                          (double)((int64_t)h2o_now(s->loop) - ks.loaded_at_ms) / 1000.0);
        else
            bg_metric_clear(m->jwks_key_age);
    }
    bg_access_log_stats as = bg_access_log_get_stats(s->access_log);
    bg_metric_set(m->access_written, (double)as.written);
    bg_metric_set(m->access_dropped, (double)as.dropped);
    bg_metric_set(m->access_write_errors, (double)as.write_errors);
    const bg_relay_token *rt = bg_relay_get_token(s->relay);
    bg_relay_token_stats rs = rt != NULL ? bg_relay_token_get_stats(rt) : (bg_relay_token_stats){0};
    bg_metric_set(m->relay_token_ok, (double)rs.fetches_ok);
    bg_metric_set(m->relay_token_error, (double)rs.fetches_failed);
    if (rs.obtained_ms > 0) {
        int64_t now = (int64_t)h2o_now(s->loop);
        bg_metric_set(m->relay_token_age, (double)(now - rs.obtained_ms) / 1000.0);
        bg_metric_set(m->relay_token_expiry, (double)(rs.expires_ms - now) / 1000.0);
    } else {
        bg_metric_clear(m->relay_token_age);
        bg_metric_clear(m->relay_token_expiry);
    }
    if (m->cert_not_after != 0 && m->tls_expiry != NULL) {
        double left = (double)(m->cert_not_after - (int64_t)time(NULL));
        for (size_t i = 0; i < m->tls_expiry->n_series; i++)
            bg_metric_set(&m->tls_expiry->series[i], left);
    }
}

static void
respond(bg_server *s, h2o_req_t *req, const struct st_scrape *op)
{
    bg_server_metrics *m = &s->metrics;
    collect(s, op);
    m->scrape_buf.len = 0;
    if (bg_metrics_render(&m->registry, &m->scrape_buf) != 0) {
        bg_respond_error(req, BG_ENOMEM, NULL);
        return;
    }
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = m->scrape_buf.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT(BG_METRICS_CONTENT_TYPE));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    /* h2o copies the body into the request's pool */
    h2o_send_inline(req, m->scrape_buf.p != NULL ? m->scrape_buf.p : "", m->scrape_buf.len);
}

static void
scrape_release(struct st_scrape *op)
{
    if (--op->refs == 0)
        free(op);
}

/* Answers once: when Redis has replied, at the deadline, or when botgate stops. */
static void
scrape_answer(struct st_scrape *op)
{
    if (h2o_timeout_is_linked(&op->deadline))
        h2o_timeout_unlink(&op->deadline);
    if (op->answered)
        return;
    op->answered = 1;
    if (op->req != NULL)
        respond(op->server, op->req, op);
}

static void
on_scrape_deadline(h2o_timeout_entry_t *entry)
{
    scrape_answer(H2O_STRUCT_FROM_MEMBER(struct st_scrape, deadline, entry));
}

static void
scrape_reply_done(struct st_scrape *op, int err)
{
    op->failed |= err != 0;
    if (--op->waiting == 0)
        scrape_answer(op);
    scrape_release(op);
}

static void
on_xlen(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    struct st_scrape *op = data;
    if (err == 0 && reply->type == REDIS_REPLY_INTEGER) {
        op->length = reply->integer;
        op->have_length = 1;
    }
    scrape_reply_done(op, err);
}

/*
 * XPENDING's summary: [count, smallest id, greatest id, [[consumer, count], ...]]. No
 * consumer group yet (an ingress alone, before any dispatcher ran) means nothing is
 * pending.
 */
static void
on_xpending(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    struct st_scrape *op = data;
    if (err == 0 && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER) {
        op->pending = reply->element[0]->integer;
        op->oldest_s = 0;
        if (op->pending > 0 && reply->element[1]->type == REDIS_REPLY_STRING) {
            int64_t age = bg_wall_ms() - stream_id_ms(reply->element[1]->str);
            op->oldest_s = age > 0 ? (double)age / 1000.0 : 0;
        }
        op->have_pending = 1;
    } else if (err == 0 && reply->type == REDIS_REPLY_ERROR &&
               strncmp(reply->str, "NOGROUP", 7) == 0) {
        op->pending = 0;
        op->oldest_s = 0;
        op->have_pending = 1;
    }
    scrape_reply_done(op, err);
}

/* The streams outside redis.partitions' layout (bg_queue_count_orphans): their total. */
static void
on_orphans(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    struct st_scrape *op = data;
    bg_queue_orphans o;
    if (err == 0 && bg_queue_orphans_read(reply, &o) == 0) {
        op->orphaned = o.total;
        op->have_orphaned = 1;
    }
    scrape_reply_done(op, err);
}

/*
 * With redis.partitions > 1 the queue is several streams (botgate/partition.h): the same
 * two answers, summed over them by a script, in the shapes on_xlen and on_xpending read
 * (an integer; [count, oldest pending id]).
 */
static const char queue_length_script[] =
    "local n = 0\n"
    "for i = 1, #KEYS do n = n + redis.call('XLEN', KEYS[i]) end\n"
    "return n\n";
static const char queue_pending_script[] =
    "local n, oldest, oms = 0, '', nil\n"
    "for i = 1, #KEYS do\n"
    "  local p = redis.pcall('XPENDING', KEYS[i], ARGV[1])\n"
    "  if type(p) == 'table' and p.err == nil and p[1] > 0 then\n"
    "    n = n + p[1]\n"
    "    local ms = tonumber(string.match(p[2], '^(%d+)'))\n"
    "    if oms == nil or ms < oms then oms = ms; oldest = p[2] end\n"
    "  end\n"
    "end\n"
    "return {n, oldest}\n";

static void send_query(struct st_scrape *op, bg_redis_cb cb, int argc, const char **argv);

static void
send_partition_queries(struct st_scrape *op, const char *stream, int partitions)
{
    size_t cap = strlen(stream) + 16;
    char *names = malloc((size_t)partitions * cap);
    const char **argv = calloc((size_t)partitions + 4, sizeof(char *));
    if (names == NULL || argv == NULL) {
        op->failed = 1;
        free(names);
        free(argv);
        return;
    }
    char nkeys[16];
    snprintf(nkeys, sizeof(nkeys), "%d", partitions);
    argv[0] = "EVAL";
    argv[2] = nkeys;
    for (int k = 0; k < partitions; k++) {
        bg_partition_stream(names + (size_t)k * cap, cap, stream, partitions, (unsigned)k);
        argv[3 + k] = names + (size_t)k * cap;
    }
    argv[1] = queue_length_script;
    send_query(op, on_xlen, 3 + partitions, argv);
    argv[1] = queue_pending_script;
    argv[3 + partitions] = BG_CONSUMER_GROUP;
    send_query(op, on_xpending, 4 + partitions, argv);
    free(names);
    free(argv);
}

static void
on_scrape_dispose(void *p)
{
    struct st_scrape *op = ((struct st_scrape_ref *)p)->op;
    op->req = NULL;
    if (h2o_timeout_is_linked(&op->deadline))
        h2o_timeout_unlink(&op->deadline);
    scrape_release(op);
}

/* rc is what sending one of the scrape's commands returned: its reply will hold a
 * reference and be waited for, or the scrape failed. */
static void
query_sent(struct st_scrape *op, int rc)
{
    if (rc != 0) {
        op->failed = 1;
        return;
    }
    op->refs++;
    op->waiting++;
}

static void
send_query(struct st_scrape *op, bg_redis_cb cb, int argc, const char **argv)
{
    query_sent(op, bg_redis_command(op->server->redis, cb, op, argc, argv, NULL));
}

static int
on_metrics_req(h2o_handler_t *self, h2o_req_t *req)
{
    bg_server *s = ((struct st_metrics_handler *)self)->server;
    if (!h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/metrics"))) {
        bg_respond_error(req, BG_ENOTFOUND, NULL);
        return 0;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL,
                       H2O_STRLIT("GET, HEAD"));
        bg_respond_error(req, BG_EMETHOD, NULL);
        return 0;
    }
    if (s->redis == NULL || !bg_redis_is_ready(s->redis) || !s->metrics.scrape_deadline_on) {
        respond(s, req, NULL);
        return 0;
    }
    struct st_scrape *op = calloc(1, sizeof(*op));
    struct st_scrape_ref *ref =
        op != NULL ? h2o_mem_alloc_shared(&req->pool, sizeof(*ref), on_scrape_dispose) : NULL;
    if (ref == NULL) {
        free(op);
        bg_respond_error(req, BG_ENOMEM, NULL);
        return 0;
    }
    op->req = req;
    op->server = s;
    op->refs = 1; /* the request's */
    op->deadline.cb = on_scrape_deadline;
    ref->op = op;
    const char *stream = s->cfg->redis.stream;
    const char *xlen[] = {"XLEN", stream};
    const char *xpending[] = {"XPENDING", stream, BG_CONSUMER_GROUP};
    if (s->cfg->redis.partitions > 1) {
        send_partition_queries(op, stream, s->cfg->redis.partitions);
    } else {
        send_query(op, on_xlen, 2, xlen);
        send_query(op, on_xpending, 3, xpending);
    }
    query_sent(op,
               bg_queue_count_orphans(s->redis, stream, s->cfg->redis.partitions, on_orphans, op));
    if (op->waiting == 0)
        scrape_answer(op);
    else
        h2o_timeout_link(s->loop, &s->metrics.scrape_deadline, &op->deadline);
    return 0;
}

void
bg_admin_register(h2o_hostconf_t *hostconf, bg_server *server)
{
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/metrics", 0);
    struct st_metrics_handler *h =
        (struct st_metrics_handler *)h2o_create_handler(pathconf, sizeof(*h));
    h->super.on_req = on_metrics_req;
    h->server = server;
}

/* ---- life -------------------------------------------------------------------------------- */

void
bg_admin_start(bg_server *s)
{
    int ms = s->cfg->redis.timeout_ms;
    h2o_timeout_init(
        s->loop, &s->metrics.scrape_deadline,
        (uint64_t)(ms > 0 && ms < SCRAPE_DEADLINE_MAX_MS ? ms : SCRAPE_DEADLINE_MAX_MS));
    s->metrics.scrape_deadline_on = 1;
    watch_certificate(s);
}

void
bg_admin_stop(bg_server *s)
{
    bg_server_metrics *m = &s->metrics;
    if (m->scrape_deadline_on) {
        /* Scrapes still waiting for Redis are answered now with what they have. */
        while (!h2o_linklist_is_empty(&m->scrape_deadline._entries)) {
            h2o_timeout_entry_t *e = H2O_STRUCT_FROM_MEMBER(h2o_timeout_entry_t, _link,
                                                            m->scrape_deadline._entries.next);
            scrape_answer(H2O_STRUCT_FROM_MEMBER(struct st_scrape, deadline, e));
        }
        h2o_timeout_dispose(s->loop, &m->scrape_deadline);
        m->scrape_deadline_on = 0;
    }
    if (m->cert_not_after != 0) {
        bg_timer_dispose(&s->cert_timer);
        m->cert_not_after = 0;
    }
}
