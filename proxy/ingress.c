/*
 * POST /api/messages: check the request, authenticate it, store it, then acknowledge.
 *
 * The checks run cheapest first and stop at the first failure:
 *
 *   method/path ─▶ source (403) ─▶ size (413) ─▶ Content-Type (415)
 *     ─▶ Authorization header (401) ─▶ JSON activity (400)
 *     ─▶ token: cache hit, or signature + claims (401; 503 without any key)
 *     ─▶ serviceUrl / channelId / expiry against this request (401)
 *     ─▶ queue put ─▶ 202 | 503
 *
 * Two steps may wait: for the signing keys (at start, or a refresh after a token named an
 * unknown kid) and for Redis. The client may be gone by then (it disconnected, or reset
 * its HTTP/2 stream), and h2o frees the request with its connection. So the request and
 * the pending work meet in a reference-counted struct (st_ingress_op): one reference
 * belongs to the request (dropped by a dispose callback on req->pool), one to each wait
 * in progress (dropped in its callback). Whichever ends last frees it; a callback
 * answers only while op->req is still set.
 */
#include "botgate/clock.h"
#include "botgate/access_log.h"
#include "botgate/activity.h"
#include "botgate/delivery.h"
#include "botgate/directory_cache.h"
#include "botgate/entry.h"
#include "botgate/error.h"
#include "botgate/failure.h"
#include "botgate/failures.h"
#include "botgate/log.h"
#include "botgate/relay_directory.h"
#include "botgate/request.h"
#include "botgate/server.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

struct st_ingress_handler {
    h2o_handler_t super;
    bg_server *server;
};

struct st_ingress_op {
    h2o_req_t *req; /* NULL once h2o disposed the request */
    bg_server *server;
    int refs;
    bg_http_call *sync_call; /* a synchronous proxy call in flight */
    h2o_linklist_t sync_link;
    bg_activity act;
    const char *token; /* in req's headers: valid while req is; NULL = none sent */
    size_t token_len;
    int waited_for_keys; /* each kind of wait happens at most once per request */
    int64_t token_exp;
    int64_t received_at_us; /* wall clock when the handler took the request */
    size_t body_taken;      /* bytes counted against policy.max_inflight_body_bytes */
    char request_id[65];
    /* for the access line (access_log.h), written when h2o disposes the request */
    int err;                 /* the refusal's error; 0: none */
    const char *token_cache; /* "hit", "miss", NULL: no token checked */
    int duplicate;
    int directory_sent; /* the enqueue script writes the directory entry too */
    int64_t keys_wait_us, auth_us, enqueue_us, bot_us; /* -1: not measured */
    int64_t mark_us;                                   /* monotonic start of the wait in progress */
};

struct st_ingress_req_ref {
    struct st_ingress_op *op;
};

static void
op_release(struct st_ingress_op *op)
{
    if (--op->refs == 0) {
        if (op->server->limits != NULL)
            bg_limits_put_body(op->server->limits, op->body_taken);
        bg_activity_clear(&op->act);
        free(op);
    }
}

/* The request's access line: h2o is disposing of it, answered or not (status 0: the
 * client left first). The request and its pool are still whole here: h2o runs the pool's
 * destructors before it frees anything in it. */
static void
log_access(struct st_ingress_op *op, h2o_req_t *req)
{
    bg_access_request r = {.request_id = op->request_id,
                           .route = "messages",
                           .code = op->err != 0 ? bg_error_code(op->err) : NULL,
                           .activity_id = op->act.id,
                           .activity_type = op->act.type,
                           .channel_id = op->act.channel_id,
                           .conversation_id = op->act.conversation_id,
                           .token_cache = op->token_cache,
                           .duplicate = op->duplicate,
                           .keys_wait_us = op->keys_wait_us,
                           .auth_us = op->auth_us,
                           .enqueue_us = op->enqueue_us,
                           .bot_us = op->bot_us};
    bg_access_log_h2o_request(op->server->access_log, &r, req);
}

static void
on_req_dispose(void *p)
{
    struct st_ingress_req_ref *ref = p;
    if (ref->op->server->access_log != NULL)
        log_access(ref->op, ref->op->req);
    ref->op->req = NULL;
    op_release(ref->op);
}

/* Answers with the error's status and JSON body, and keeps its code for the access line. */
static void
op_refuse(struct st_ingress_op *op, int err, const char *detail)
{
    op->err = err;
    bg_respond_error(op->req, err, detail);
}

/* Warns about refused writes at most once a second, with the count in between: during a
 * Redis outage every request fails the same way. */
static void
log_unavailable(int err)
{
    static time_t last;
    static unsigned long suppressed;
    time_t now = time(NULL);
    if (now == last) {
        suppressed++;
        return;
    }
    /* failure class "redis" (failure.h): logged, never recorded in <stream>:failures,
     * which lives in the Redis that just failed */
    bg_log_warn("ingress",
                "answering 503 %s (failure class redis): %s (%lu more in the last second)",
                bg_error_code(err), bg_strerror(err), suppressed);
    last = now;
    suppressed = 0;
}

/* botgate_ack_seconds: from h2o's processed_at (the request read whole) to now. */
static void
observe_ack(bg_server *server, h2o_req_t *req)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    double s = (double)(now.tv_sec - req->processed_at.at.tv_sec) +
               (double)(now.tv_usec - req->processed_at.at.tv_usec) / 1e6;
    bg_metric_observe(server->metrics.ack, s > 0 ? s : 0);
}

static void directory_written(struct st_ingress_op *op);

static void
on_stored(void *data, int err, int duplicate)
{
    struct st_ingress_op *op = data;
    op->server->inflight--;
    op->enqueue_us = bg_mono_us() - op->mark_us;
    op->duplicate = duplicate; /* a repeat is acknowledged like the original */
    if (err != 0)
        bg_admin_count_redis_error(&op->server->metrics, err);
    else if (op->directory_sent)
        directory_written(op);
    if (op->req != NULL) {
        if (err == 0) {
            op->req->res.status = 202;
            op->req->res.reason = "Accepted";
            op->req->res.content_length = 0;
            observe_ack(op->server, op->req); /* before: sending may end the request */
            h2o_send_inline(op->req, "", 0);
        } else {
            log_unavailable(err);
            op_refuse(op, err, NULL);
        }
    }
    op_release(op);
}

/* The headers the bot may need, kept in the entry: the token (the bot still checks
 * it), the media type, and the Connector's tracing headers. */
static int
is_forwarded_header(const h2o_iovec_t *name)
{
    return h2o_memis(name->base, name->len, H2O_STRLIT("authorization")) ||
           h2o_memis(name->base, name->len, H2O_STRLIT("content-type")) ||
           h2o_memis(name->base, name->len, H2O_STRLIT("user-agent")) ||
           h2o_memis(name->base, name->len, H2O_STRLIT("ms-cv")) ||
           (name->len > 5 && memcmp(name->base, "x-ms-", 5) == 0);
}

static bg_slice
slice_of(const char *s)
{
    return s != NULL ? (bg_slice){s, strlen(s)} : (bg_slice){NULL, 0};
}

static void
fill_entry(bg_entry *e, h2o_req_t *req, const bg_activity *act, const char *request_id,
           int64_t token_exp, int64_t received_at_us)
{
    memset(e, 0, sizeof(*e));
    e->version = BG_ENTRY_VERSION;
    e->request_id = slice_of(request_id);
    e->received_at_us = received_at_us;
    e->activity_id = slice_of(act->id);
    e->type = slice_of(act->type);
    e->channel_id = slice_of(act->channel_id);
    e->conversation_id = slice_of(act->conversation_id);
    e->service_url = slice_of(act->service_url);
    e->token_exp = token_exp;
    for (size_t i = 0; i < req->headers.size && e->n_headers < BG_ENTRY_MAX_HEADERS; i++) {
        const h2o_header_t *h = req->headers.entries + i;
        if (is_forwarded_header(h->name)) {
            e->headers[e->n_headers].name = (bg_slice){h->name->base, h->name->len};
            e->headers[e->n_headers].value = (bg_slice){h->value.base, h->value.len};
            e->n_headers++;
        }
    }
    e->body = (bg_slice){req->entity.base, req->entity.len};
}

/* Keeps a valid incoming X-Request-Id (a gateway's), else makes one; echoes it back. */
static void
set_request_id(bg_server *server, h2o_req_t *req, char id[65])
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    if (i >= 0 && bg_request_id_is_valid(req->headers.entries[i].value.base,
                                         req->headers.entries[i].value.len)) {
        memcpy(id, req->headers.entries[i].value.base, req->headers.entries[i].value.len);
        id[req->headers.entries[i].value.len] = '\0';
    } else {
        bg_server_next_request_id(server, id);
    }
    size_t len = strlen(id);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          h2o_strdup(&req->pool, id, len).base, len);
}

/*
 * A synchronous activity (an invoke, deliveryMode expectReplies): the channel waits for
 * the bot's own answer, so it is proxied to the bot at once, with a deadline under the
 * Connector's 15 s, and the bot's status, Content-Type and body are passed back. Past the
 * deadline the caller gets policy.sync_fallback_status with a JSON error.
 */
static void
on_sync_answer(const bg_http_result *res, void *data)
{
    struct st_ingress_op *op = data;
    h2o_linklist_unlink(&op->sync_link);
    op->sync_call = NULL;
    op->server->inflight--;
    op->bot_us = res->total_us;
    h2o_req_t *req = op->req;
    bg_server_metrics *m = &op->server->metrics;
    bg_metric_inc(res->curl_code == CURLE_OK                   ? m->sync_answered
                  : res->curl_code == CURLE_OPERATION_TIMEDOUT ? m->sync_timeout
                                                               : m->sync_unreachable);
    const char *cls = bg_failure_class(res->curl_code, res->status, res->connect_us);
    if (cls != NULL) {
        char detail[160];
        if (res->curl_code != CURLE_OK)
            snprintf(detail, sizeof(detail), "%s", res->error);
        else
            snprintf(detail, sizeof(detail), "HTTP %ld", res->status);
        bg_failures_record(op->server->failures, cls, op->server->cfg->bot.url, op->request_id,
                           detail);
    }
    if (req != NULL) {
        if (res->curl_code == CURLE_OPERATION_TIMEDOUT) {
            bg_log_warn("ingress", "synchronous %s: the bot missed the %s deadline", op->act.type,
                        op->act.name != NULL ? op->act.name : "");
            op_refuse(op, BG_EBOT_TIMEOUT, NULL);
            req->res.status = op->server->cfg->policy.sync_fallback_status;
        } else if (res->curl_code != CURLE_OK) {
            bg_log_warn("ingress", "synchronous %s: the bot is unreachable: %s", op->act.type,
                        res->error);
            op_refuse(op, BG_EBOT_UNAVAILABLE, NULL);
        } else {
            bg_respond_passthrough(req, res);
        }
    }
    op_release(op);
}

static void
proxy_sync(struct st_ingress_op *op)
{
    bg_server *server = op->server;
    const bg_config *cfg = server->cfg;
    h2o_req_t *req = op->req;
    const char *lines[BG_ENTRY_MAX_HEADERS + 1];
    size_t n = 0;
    for (size_t i = 0; i < req->headers.size && n < BG_ENTRY_MAX_HEADERS; i++) {
        const h2o_header_t *h = req->headers.entries + i;
        if (!is_forwarded_header(h->name))
            continue;
        char *line = h2o_mem_alloc_pool(&req->pool, h->name->len + h->value.len + 3);
        sprintf(line, "%.*s: %.*s", (int)h->name->len, h->name->base, (int)h->value.len,
                h->value.base);
        lines[n++] = line;
    }
    lines[n] = NULL;
    int deadline =
        bg_delivery_sync_deadline_ms(op->act.type, op->act.name, cfg->policy.sync_deadline_ms,
                                     cfg->policy.sync_compose_deadline_ms);
    int shed = bg_limits_may_write(server->limits, server->inflight);
    if (shed != 0) {
        op_refuse(op, shed, NULL);
        return;
    }
    bg_http_request hr = {.method = "POST",
                          .url = cfg->bot.url,
                          .headers = lines,
                          .body = req->entity.base != NULL ? req->entity.base : "",
                          .body_len = req->entity.len,
                          .timeout_ms = deadline,
                          .max_body = 4 << 20};
    op->sync_call = bg_http_start(server->http, &hr, on_sync_answer, op);
    if (op->sync_call == NULL) {
        op_refuse(op, BG_ENOMEM, NULL);
        return;
    }
    op->refs++;
    server->inflight++;
    h2o_linklist_insert(&server->sync_calls, &op->sync_link);
}

void
bg_ingress_cancel_sync(bg_server *server)
{
    while (!h2o_linklist_is_empty(&server->sync_calls)) {
        struct st_ingress_op *op =
            H2O_STRUCT_FROM_MEMBER(struct st_ingress_op, sync_link, server->sync_calls.next);
        h2o_linklist_unlink(&op->sync_link);
        bg_http_cancel(op->sync_call);
        op->sync_call = NULL;
        server->inflight--;
        if (op->req != NULL)
            op_refuse(op, BG_ESHUTDOWN, NULL);
        op_release(op);
    }
}

/* The relay's directory entry for an authenticated activity (relay_directory.h), or NULL:
 * with authentication off the serviceUrl is unverified, and is never stored. */
static const bg_directory_entry *
directory_entry(struct st_ingress_op *op, bg_directory_entry *d)
{
    if (!op->server->auth_on || op->act.conversation_id == NULL || op->act.service_url == NULL)
        return NULL;
    /* the same entry written less than a refresh interval ago (directory_cache.h) */
    bg_server *s = op->server;
    if (s->directory_cache != NULL &&
        bg_directory_cache_fresh(s->directory_cache, op->act.conversation_id, op->act.service_url,
                                 op->act.channel_id, op->act.tenant_id, op->received_at_us / 1000,
                                 bg_directory_refresh_ms(s->cfg->relay.directory_ttl_s)))
        return NULL;
    *d = (bg_directory_entry){.conversation_id = op->act.conversation_id,
                              .service_url = op->act.service_url,
                              .channel_id = op->act.channel_id,
                              .tenant_id = op->act.tenant_id,
                              .last_seen_ms = op->received_at_us / 1000,
                              .ttl_s = op->server->cfg->relay.directory_ttl_s};
    return d;
}

/* The directory entry of op's activity was written (directory_cache.h). */
static void
directory_written(struct st_ingress_op *op)
{
    if (op->server->directory_cache != NULL)
        bg_directory_cache_note(op->server->directory_cache, op->act.conversation_id,
                                op->act.service_url, op->act.channel_id, op->act.tenant_id,
                                op->received_at_us / 1000);
}

/* Stores the authenticated activity; the answer comes from on_stored. */
static void
enqueue(struct st_ingress_op *op)
{
    h2o_req_t *req = op->req;
    /* policy.max_inflight_writes: beyond it, a write would only wait behind the others */
    int shed = bg_limits_may_write(op->server->limits, op->server->inflight);
    if (shed != 0) {
        op_refuse(op, shed, NULL);
        return;
    }
    bg_entry entry;
    fill_entry(&entry, req, &op->act, op->request_id, op->token_exp, op->received_at_us);
    char *buf = NULL;
    size_t buflen = 0;
    int rc = bg_entry_encode(&entry, &buf, &buflen);
    if (rc != 0) {
        op_refuse(op, rc, NULL);
        return;
    }
    bg_directory_entry dir;
    bg_queue_item item = {buf, buflen, op->act.conversation_id, op->act.id,
                          directory_entry(op, &dir)};
    op->directory_sent = item.directory != NULL;
    op->refs++;
    op->server->inflight++;
    op->mark_us = bg_mono_us();
    rc = bg_queue_put(op->server->queue, &item, on_stored, op);
    free(buf);
    if (rc != 0) {
        op->server->inflight--;
        op->refs--; /* the put's reference: its callback will not run */
        bg_admin_count_redis_error(&op->server->metrics, rc);
        log_unavailable(rc);
        op_refuse(op, rc, NULL);
    }
}

static int
is_blank(const char *s)
{
    if (s == NULL)
        return 1;
    for (; *s != '\0'; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
            return 0;
    return 1;
}

static void authenticate(struct st_ingress_op *op);

/* Queued, or proxied at once when the channel waits for the bot's answer. */
static void
route(struct st_ingress_op *op)
{
    const bg_config *cfg = op->server->cfg;
    if (bg_delivery_is_sync(op->act.type, op->act.delivery_mode, cfg->policy.sync_types.v,
                            cfg->policy.sync_types.n)) {
        bg_directory_entry dir;
        if (directory_entry(op, &dir) != NULL) {
            bg_directory_touch(op->server->redis, cfg->redis.stream, &dir);
            directory_written(op);
        }
        proxy_sync(op);
    } else
        enqueue(op);
}

static void
on_keys(void *data)
{
    struct st_ingress_op *op = data;
    op->keys_wait_us = bg_mono_us() - op->mark_us;
    if (op->req != NULL && !op->server->shutting_down)
        authenticate(op);
    else if (op->req != NULL)
        op_refuse(op, BG_ESHUTDOWN, NULL);
    op_release(op);
}

/* Waits for the keys when that can help; 1 when the request is now waiting. */
static int
wait_for_keys(struct st_ingress_op *op, int unknown_kid)
{
    if (op->waited_for_keys)
        return 0;
    op->waited_for_keys = 1;
    if (!bg_keys_wait(op->server->keys, unknown_kid, on_keys, op))
        return 0;
    op->refs++;
    op->mark_us = bg_mono_us();
    return 1;
}

/*
 * The Bot Framework's rules (policy/auth.c) with the verified-token cache in front: a
 * token seen before skips the signature and the claims that depend on the token alone,
 * never the checks against this request (expiry, serviceUrl, endorsement, key still
 * held).
 */
#define AUTH_WAITING 1 /* check_token: the request waits for the keys */

/* The token against the keys and the cache, then against this request: 0 (accepted),
 * AUTH_WAITING, or the error to refuse with (its detail in why, or why[0] == 0). */
static int
check_token(struct st_ingress_op *op, char *why, size_t whylen)
{
    bg_server *server = op->server;
    const bg_keyset *channel = bg_keys_channel(server->keys);
    const bg_keyset *emulator = bg_keys_emulator(server->keys);
    int64_t now = (int64_t)time(NULL);
    const bg_auth_claims *cached =
        server->token_cache != NULL
            ? bg_token_cache_get(server->token_cache, op->token, op->token_len, now,
                                 server->auth.clock_skew_s)
            : NULL;
    bg_auth_claims fresh = {0};
    int rc;
    why[0] = '\0';
    if (cached != NULL) {
        bg_metric_inc(server->metrics.token_cache_hits);
        op->token_cache = "hit";
    } else {
        if (channel == NULL)
            return wait_for_keys(op, 0) ? AUTH_WAITING : BG_EKEYS;
        bg_metric_inc(server->metrics.token_cache_misses); /* the full check is paid */
        op->token_cache = "miss";
        rc = bg_auth_verify_token(&server->auth, channel, emulator, op->token, op->token_len,
                                  &fresh, why, whylen);
        if (rc == BG_EAUTH_UNKNOWN_KID && wait_for_keys(op, 1))
            return AUTH_WAITING;
        if (rc == BG_EAUTH_UNKNOWN_KID && bg_keys_failing(server->keys)) {
            /* Not the caller's fault: the key service could not be asked. A 503 lets the
             * Connector retry once it is back; a 401 would lose the activity. */
            snprintf(why, whylen,
                     "the token names a key botgate does not hold, and the Connector's key "
                     "service could not be reached to look for it");
            return BG_EKEYS;
        }
        if (rc != 0) {
            bg_log_debug("auth", "%s: %s", bg_error_code(rc), why);
            return rc;
        }
        if (server->token_cache != NULL)
            bg_token_cache_put(server->token_cache, op->token, op->token_len, &fresh);
        cached = &fresh;
    }
    rc = bg_auth_check_request(&server->auth, channel, emulator, cached, op->act.service_url,
                               op->act.channel_id, now, why, whylen);
    op->token_exp = cached->exp;
    bg_auth_claims_clear(&fresh);
    if (rc != 0)
        bg_log_debug("auth", "%s: %s", bg_error_code(rc), why);
    return rc;
}

static void
authenticate(struct st_ingress_op *op)
{
    bg_server *server = op->server;
    if (!server->auth_on) {
        /* The SDK with no app id: a request without a token is let through as anonymous;
         * one with a token is checked, and no token can name an empty audience. */
        if (op->token != NULL) {
            op_refuse(op, BG_EAUTH_AUDIENCE,
                      "authentication is off (no auth.app_id): send no Authorization header");
            return;
        }
        route(op);
        return;
    }
    if (op->token == NULL) {
        op_refuse(op, BG_EAUTH_MISSING, NULL);
        return;
    }
    /* Deviation from the SDKs, which skip the serviceUrl check when the activity has
     * none: a captured token could then carry any body. */
    if (is_blank(op->act.service_url) || is_blank(op->act.channel_id)) {
        op_refuse(op, BG_EACTIVITY,
                  is_blank(op->act.service_url) ? "serviceUrl must be a non-blank string"
                                                : "channelId must be a non-blank string");
        return;
    }
    char why[200];
    int64_t start = bg_mono_us();
    int rc = check_token(op, why, sizeof(why));
    /* a wait for the keys splits the check in two: both halves count */
    op->auth_us = (op->auth_us > 0 ? op->auth_us : 0) + (bg_mono_us() - start);
    if (rc == AUTH_WAITING)
        return;
    if (rc != 0) {
        op_refuse(op, rc, why[0] != '\0' ? why : NULL);
        return;
    }
    route(op);
}

/* policy.allow_cidrs, with the client taken from X-Forwarded-For behind a trusted proxy. */
static int
source_allowed(bg_server *server, h2o_req_t *req)
{
    if (server->allow_cidrs.n == 0)
        return 1;
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (len == 0)
        return 0;
    /* Every X-Forwarded-For line, in order, joined as one list: a proxy may add a line of
     * its own rather than extend the client's, and then the client's first line must not
     * be the one that is read. */
    const char *xff = NULL;
    size_t xff_len = 0;
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_X_FORWARDED_FOR, i)) >= 0;) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (xff == NULL) {
            xff = v.base, xff_len = v.len;
            continue;
        }
        char *joined = h2o_mem_alloc_pool(&req->pool, xff_len + 2 + v.len);
        memcpy(joined, xff, xff_len);
        memcpy(joined + xff_len, ", ", 2);
        memcpy(joined + xff_len + 2, v.base, v.len);
        xff = joined, xff_len += 2 + v.len;
    }
    struct sockaddr_in6 client;
    if (bg_cidr_client_address(&server->trusted_proxies, (struct sockaddr *)&ss, xff, xff_len,
                               &client) != 0)
        return 0;
    return bg_cidr_list_match(&server->allow_cidrs, (struct sockaddr *)&client);
}

/* The checks before the body is read as an activity, cheapest first: 0, or the error to
 * refuse with. Sets op->token when an Authorization header came. */
static int
precheck(struct st_ingress_op *op, const char **detail)
{
    bg_server *server = op->server;
    h2o_req_t *req = op->req;
    if (!h2o_memis(req->path_normalized.base, req->path_normalized.len,
                   H2O_STRLIT("/api/messages")))
        return BG_ENOTFOUND;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        return BG_EMETHOD;
    }
    /* Bytes behind the body: a pipelined or smuggled request. Refused, and the connection
     * closed after the answer, so that h2o never parses them (limits.h). */
    if (bg_http1_trailing_bytes(req) > 0) {
        req->http1_is_persistent = 0;
        *detail = "bytes after the request's body (pipelining, or Content-Length and "
                  "Transfer-Encoding together): refused, the connection is closed";
        return BG_EHTTP;
    }
    if (server->shutting_down)
        return BG_ESHUTDOWN;
    if (!source_allowed(server, req))
        return BG_EFORBIDDEN;
    /* h2o refuses a larger announced body itself (max_request_entity_size); this also
     * covers any path by which a longer one could arrive. */
    if (req->entity.len > (size_t)server->cfg->policy.body_max_bytes)
        return BG_EBODY_TOO_LARGE;
    ssize_t ct = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (ct < 0 || !bg_request_is_json(req->headers.entries[ct].value.base,
                                      req->headers.entries[ct].value.len))
        return BG_EMEDIA_TYPE;
    ssize_t az = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (az < 0)
        return 0; /* refused in authenticate(), after a ping without a token had its answer */
    if (bg_request_bearer(req->headers.entries[az].value.base, req->headers.entries[az].value.len,
                          &op->token, &op->token_len) != 0) {
        op->token = NULL;
        return BG_EAUTH_MALFORMED;
    }
    if (op->token_len > BG_AUTH_MAX_TOKEN) {
        op->token = NULL;
        return BG_EAUTH_TOO_LARGE;
    }
    return 0;
}

static int
on_req(h2o_handler_t *self, h2o_req_t *req)
{
    bg_server *server = ((struct st_ingress_handler *)self)->server;

    struct st_ingress_op *op = calloc(1, sizeof(*op));
    struct st_ingress_req_ref *ref =
        op != NULL ? h2o_mem_alloc_shared(&req->pool, sizeof(*ref), on_req_dispose) : NULL;
    if (ref == NULL) {
        free(op);
        bg_respond_error(req, BG_ENOMEM, NULL);
        return 0;
    }
    op->req = req;
    op->server = server;
    op->refs = 1; /* the request's */
    op->keys_wait_us = op->auth_us = op->enqueue_us = op->bot_us = -1;
    ref->op = op;
    /* The wall clock, not h2o's processed_at: that is the loop's cached time, which can be
     * from before this request arrived. */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    op->received_at_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
    set_request_id(server, req, op->request_id);

    const char *detail = NULL;
    int rc = precheck(op, &detail);
    if (rc != 0) {
        op_refuse(op, rc, detail);
        return 0;
    }
    /* policy.max_inflight_body_bytes: the bodies this request's waits would hold */
    if (bg_limits_take_body(server->limits, req->entity.len) != 0) {
        op_refuse(op, BG_ESHED_BODY, NULL);
        return 0;
    }
    op->body_taken = req->entity.len;
    char why[160];
    rc = bg_activity_parse(&op->act, req->entity.base, req->entity.len, why, sizeof(why));
    if (rc != 0) {
        op_refuse(op, rc, why);
        return 0;
    }
    /* policy.answer_ping: a liveness check of the bot's endpoint ({"type":"ping"}, sent
     * without a token) is answered here; nothing is queued or forwarded. */
    if (op->token == NULL && server->cfg->policy.answer_ping && strcmp(op->act.type, "ping") == 0) {
        bg_metric_inc(server->metrics.pings);
        bg_respond_json(req, 200, NULL, "{}");
        return 0;
    }
    authenticate(op);
    return 0;
}

void
bg_ingress_register(h2o_pathconf_t *pathconf, bg_server *server)
{
    struct st_ingress_handler *h =
        (struct st_ingress_handler *)h2o_create_handler(pathconf, sizeof(*h));
    h->super.on_req = on_req;
    h->server = server;
}
