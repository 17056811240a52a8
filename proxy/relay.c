/*
 * The Connector relay's listener (see botgate/relay.h).
 *
 * One request, in order; each step may end it with a JSON error:
 *
 *   relay.secret (401) ─▶ route and ids (404, 405, 400) ─▶ Content-Type, size (415, 413)
 *     ─▶ directory lookup (503 Redis; 404 unknown_conversation)
 *     ─▶ the Connector URL from the stored serviceUrl (502 bad_service_url)
 *     ─▶ token: held, or waited for (502 connector_token_unavailable)
 *     ─▶ the call (retried where no activity can exist) ─▶ the Connector's answer as is
 *        | 502 connector_unreachable | 504 connector_timeout
 *
 * A 401 from the Connector refused the token, not the activity: the token manager is told
 * which token (its serial, bg_relay_token_refused), drops it and fetches another, and the
 * call is retried once with the new one, as soon as it is there (no back-off: waiting for
 * the token is the delay). The retry counts against BG_RELAY_MAX_RETRIES like the others.
 *
 * Nothing of the request decides where the call goes but the conversation id, and that
 * only through the directory: the Host header, X-Forwarded-*, an absolute request-target
 * and the caller's Authorization are never read (the last is replaced by botgate's token).
 *
 * The request and the work in progress meet in a reference-counted st_relay_op, as in
 * ingress.c: the request's reference is dropped by a dispose callback on req->pool, which
 * also cancels the Connector call, the token wait or the retry timer (the caller left);
 * the directory lookup, which cannot be cancelled, holds a reference of its own.
 */
#include "botgate/relay.h"
#include "botgate/access_log.h"
#include "botgate/error.h"
#include "botgate/failure.h"
#include "botgate/failures.h"
#include "botgate/log.h"
#include "botgate/relay_directory.h"
#include "botgate/relay_path.h"
#include "botgate/request.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#define ANSWER_MAX (4 << 20)

struct bg_relay {
    bg_server *server;
    bg_relay_token *token;
    h2o_linklist_t ops; /* requests in progress */
    size_t n_ops;
};

struct st_relay_handler {
    h2o_handler_t super;
    bg_server *server;
};

struct st_relay_op {
    h2o_req_t *req; /* NULL once h2o disposed the request */
    bg_relay *relay;
    int refs;
    h2o_linklist_t link; /* in relay->ops while linked */
    bg_relay_path path;
    char request_id[65];
    char *url;        /* the Connector URL */
    const char *body; /* in req's entity: valid while req is */
    size_t body_len;
    char *content_type; /* the caller's, forwarded */
    bg_http_call *call;
    bg_relay_token_wait *wait;
    uint64_t token_serial; /* of the token the last attempt went out with */
    bg_timer retry_timer;
    int timer_on;
    int attempt; /* retries made */
    int refused; /* a 401 was retried with a new token: the next one is the answer */
    int done;    /* relay_call_done ran */
    int stopped; /* answered 503 by bg_relay_stop: a late directory answer is ignored */
};

struct st_relay_req_ref {
    struct st_relay_op *op;
};

static void send_call(struct st_relay_op *op, const char *token);
static void relay_call_done(struct st_relay_op *op, int status, const bg_http_result *res);

/* ---- the op's lifetime ---------------------------------------------------------------- */

static void
op_unlink(struct st_relay_op *op)
{
    if (h2o_linklist_is_linked(&op->link)) {
        h2o_linklist_unlink(&op->link);
        op->relay->n_ops--;
    }
}

/* Cancels whatever the op waits for (the call, the token, the retry timer). */
static void
op_cancel(struct st_relay_op *op)
{
    if (op->call != NULL) {
        bg_http_cancel(op->call);
        op->call = NULL;
    }
    if (op->wait != NULL) {
        bg_relay_token_cancel(op->wait);
        op->wait = NULL;
    }
    if (op->timer_on)
        bg_timer_stop(&op->retry_timer);
    op_unlink(op);
}

static void
op_release(struct st_relay_op *op)
{
    if (--op->refs > 0)
        return;
    op_cancel(op);
    if (op->timer_on)
        bg_timer_dispose(&op->retry_timer);
    free(op->url);
    free(op->content_type);
    free(op);
}

static void
on_req_dispose(void *p)
{
    struct st_relay_req_ref *ref = p;
    struct st_relay_op *op = ref->op;
    op->req = NULL;
    if (h2o_linklist_is_linked(&op->link) && op->url != NULL)
        relay_call_done(op, 0, NULL); /* the caller left before the answer */
    op_cancel(op);                    /* and nobody waits for it: the call is abandoned */
    op_release(op);
}

/* ---- the end of a call ------------------------------------------------------------------ */

/*
 * Where every relay call that reached the Connector stage ends, once: its route, target,
 * status (the Connector's, or botgate's own error status; 0 when the caller left) and
 * libcurl's timings of the last attempt (res NULL when no attempt was made). The access
 * log's line for relay calls belongs here.
 */
static void
relay_call_done(struct st_relay_op *op, int status, const bg_http_result *res)
{
    if (op->done)
        return;
    op->done = 1;
    bg_log_debug("relay", "%s %s: %d after %d retries (%.1f ms)", bg_relay_op_name(op->path.op),
                 op->url != NULL ? op->url : "-", status, op->attempt,
                 res != NULL ? (double)res->total_us / 1000.0 : 0.0);
    bg_access_log *log = op->relay->server->access_log;
    if (log == NULL)
        return;
    const char *act = op->path.activity_id;
    bg_access_delivery a = {
        .kind = "relay",
        .operation = bg_relay_op_name(op->path.op),
        .target = op->url,
        .request_id = {op->request_id, strlen(op->request_id)},
        .conversation_id = {op->path.conversation_id, strlen(op->path.conversation_id)},
        .activity_id = {act[0] != '\0' ? act : NULL, strlen(act)},
        .attempt = res != NULL ? op->attempt + 1 : op->attempt,
        .status = status,
        .outcome = status == 0                     ? "abandoned"
                   : status >= 200 && status < 300 ? "answered"
                   : status >= 400 && status < 500 ? "rejected"
                                                   : "failed",
        .error = res != NULL && res->curl_code != CURLE_OK ? res->error : NULL,
        .queue_wait_us = -1,
        .connect_us = res != NULL ? res->connect_us : -1,
        .tls_us = res != NULL ? res->tls_us : -1,
        .first_byte_us = res != NULL ? res->first_byte_us : -1,
        .total_us = res != NULL ? res->total_us : -1,
        .e2e_us = -1,
        .retry_in_ms = -1};
    bg_access_log_delivery(log, &a);
}

static void
fail(struct st_relay_op *op, int err, const char *detail)
{
    relay_call_done(op, bg_error_status(err), NULL);
    op_unlink(op);
    if (op->req != NULL)
        bg_respond_error(op->req, err, detail);
}

/* ---- the call --------------------------------------------------------------------------- */

static long
retry_after_s(const char *v)
{
    if (v == NULL || *v < '0' || *v > '9')
        return -1;
    char *end;
    long s = strtol(v, &end, 10);
    return *end == '\0' && s >= 0 ? s : -1;
}

static void
on_token(void *data, const char *token, const char *error)
{
    struct st_relay_op *op = data;
    op->wait = NULL;
    if (token == NULL) {
        char msg[400];
        snprintf(msg, sizeof(msg), "no Connector token: %s", error);
        fail(op, BG_ERELAY_TOKEN, msg);
        return;
    }
    send_call(op, token);
}

/* Sends with the token held, or waits for one. */
static void
with_token(struct st_relay_op *op)
{
    const char *token = bg_relay_token_current(op->relay->token);
    if (token != NULL) {
        send_call(op, token);
        return;
    }
    const char *error = NULL;
    op->wait = bg_relay_token_wait_for(op->relay->token, on_token, op, &error);
    if (op->wait == NULL) {
        char msg[400];
        snprintf(msg, sizeof(msg), "no Connector token: %s", error);
        fail(op, BG_ERELAY_TOKEN, msg);
    }
}

static void
on_retry_timer(bg_timer *t)
{
    struct st_relay_op *op = t->data;
    with_token(op);
}

static void
on_answer(const bg_http_result *res, void *data)
{
    struct st_relay_op *op = data;
    bg_server *server = op->relay->server;
    bg_server_metrics *m = &server->metrics;
    op->call = NULL;
    bg_metric_observe(m->relay_seconds, (double)res->total_us / 1e6);
    const char *cls = bg_failure_class(res->curl_code, res->status, res->connect_us);
    if (cls != NULL) {
        char detail[BG_FAILURES_DETAIL_MAX];
        if (res->curl_code != CURLE_OK)
            snprintf(detail, sizeof(detail), "%s", res->error);
        else
            snprintf(detail, sizeof(detail), "HTTP %ld", res->status);
        bg_failures_record(server->failures, cls, op->url, op->request_id, detail);
    }
    /* every 401 is told (a token refused past the retry budget is still not worth keeping);
     * the first one of a call, if another token comes, is retried with it */
    int renewed = res->curl_code == CURLE_OK && res->status == 401 &&
                  bg_relay_token_refused(op->relay->token, op->token_serial);
    if (renewed &&
        bg_relay_refusal_retryable(res->curl_code, res->status, op->attempt, op->refused)) {
        op->refused = 1;
        op->attempt++;
        bg_metric_inc(m->relay_attempts_retry);
        bg_log_warn("relay", "%s %s: 401 from the Connector: token refreshed, retry %d",
                    bg_relay_op_name(op->path.op), op->url, op->attempt);
        with_token(op);
        return;
    }
    if (bg_relay_retryable(res->curl_code, res->connect_us, res->status,
                           res->retry_after != NULL)) {
        long delay = bg_relay_retry_delay_ms(op->attempt + 1, retry_after_s(res->retry_after));
        if (delay >= 0) {
            op->attempt++;
            bg_metric_inc(m->relay_attempts_retry);
            bg_log_warn("relay", "%s %s: %s %ld, retry %d in %ld ms", bg_relay_op_name(op->path.op),
                        op->url, res->curl_code != CURLE_OK ? res->error : "HTTP", res->status,
                        op->attempt, delay);
            if (!op->timer_on)
                bg_timer_init(&op->retry_timer, server->loop, on_retry_timer, op);
            op->timer_on = 1;
            bg_timer_start(&op->retry_timer, (uint64_t)delay);
            return;
        }
    }
    h2o_req_t *req = op->req;
    op_unlink(op);
    if (res->curl_code != CURLE_OK) {
        bg_metric_inc(m->relay_attempts_failed);
        int err = res->curl_code == CURLE_OPERATION_TIMEDOUT && res->connect_us > 0
                      ? BG_ERELAY_TIMEOUT
                      : BG_ERELAY_UNREACHABLE;
        bg_log_warn("relay", "%s %s: %s", bg_relay_op_name(op->path.op), op->url, res->error);
        relay_call_done(op, bg_error_status(err), res);
        if (req != NULL)
            bg_respond_error(req, err, res->error);
    } else {
        bg_metric_inc(m->relay_attempts_answered);
        relay_call_done(op, (int)res->status, res);
        if (req != NULL) {
            bg_respond_passthrough(req, res);
        }
    }
}

static void
send_call(struct st_relay_op *op, const char *token)
{
    bg_server *server = op->relay->server;
    if (op->req == NULL)
        return;
    size_t alen = strlen(token) + 32;
    char *authz = h2o_mem_alloc_pool(&op->req->pool, alen);
    snprintf(authz, alen, "Authorization: Bearer %s", token);
    const char *headers[4] = {authz, "Accept: application/json", NULL, NULL};
    if (op->content_type != NULL) {
        size_t clen = strlen(op->content_type) + 16;
        char *ct = h2o_mem_alloc_pool(&op->req->pool, clen);
        snprintf(ct, clen, "Content-Type: %s", op->content_type);
        headers[2] = ct;
    }
    /* token is the one held now (relay_token.h): its serial names it if it is refused */
    op->token_serial = bg_relay_token_serial(op->relay->token);
    int has_body = op->path.op != BG_RELAY_DELETE;
    bg_http_request hr = {.method = bg_relay_op_method(op->path.op),
                          .url = op->url,
                          .headers = headers,
                          .body = has_body ? (op->body != NULL ? op->body : "") : NULL,
                          .body_len = has_body ? op->body_len : 0,
                          .timeout_ms = server->cfg->relay.timeout_ms,
                          .max_body = ANSWER_MAX,
                          .https_only = 1,
                          .no_replay = 1};
    op->call = bg_http_start(server->http, &hr, on_answer, op);
    memset(authz, 0, alen);
    if (op->call == NULL)
        fail(op, BG_ENOMEM, NULL);
}

static void
on_directory(void *data, int err, const char *service_url, const char *channel_id)
{
    struct st_relay_op *op = data;
    (void)channel_id;
    if (op->req == NULL || op->stopped) {
        op_release(op);
        return;
    }
    char why[200];
    if (err != 0) {
        fail(op, err, "the conversation directory (Redis) did not answer");
    } else if (service_url[0] == '\0') {
        char msg[BG_RELAY_ID_MAX + 200];
        snprintf(msg, sizeof(msg),
                 "unknown conversation '%s': no authenticated activity of it was seen, or its "
                 "entry expired (relay.directory_ttl_s)",
                 op->path.conversation_id);
        fail(op, BG_ERELAY_CONVERSATION, msg);
    } else {
        size_t cap = strlen(service_url) + 3 * 2 * BG_RELAY_ID_MAX + 64;
        if ((op->url = malloc(cap)) == NULL) {
            fail(op, BG_ENOMEM, NULL);
        } else if (bg_relay_target_url(service_url, &op->path, op->url, cap, why, sizeof(why)) !=
                   0) {
            free(op->url);
            op->url = NULL;
            bg_log_warn("relay", "conversation %s: %s", op->path.conversation_id, why);
            fail(op, BG_ERELAY_SERVICE_URL, why);
        } else {
            with_token(op);
        }
    }
    op_release(op);
}

/* ---- the request -------------------------------------------------------------------------- */

static int
refuse(h2o_req_t *req, int err, const char *detail)
{
    bg_respond_error(req, err, detail);
    return 0;
}

/* relay.secret, when set: "Authorization: Bearer <secret>", compared in constant time. */
static int
secret_ok(const bg_config *cfg, h2o_req_t *req)
{
    const char *secret = cfg->relay.secret;
    size_t n = strlen(secret);
    if (n == 0)
        return 1;
    ssize_t az = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    const char *tok;
    size_t tok_len;
    if (az < 0 || bg_request_bearer(req->headers.entries[az].value.base,
                                    req->headers.entries[az].value.len, &tok, &tok_len) != 0)
        return 0;
    return tok_len == n && CRYPTO_memcmp(tok, secret, n) == 0;
}

static int
on_req(h2o_handler_t *self, h2o_req_t *req)
{
    bg_server *server = ((struct st_relay_handler *)self)->server;
    const bg_config *cfg = server->cfg;
    bg_relay *relay = server->relay;
    char request_id[33];
    bg_server_next_request_id(server, request_id);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                          h2o_strdup(&req->pool, request_id, 32).base, 32);
    if (relay == NULL || server->shutting_down)
        return refuse(req, BG_ESHUTDOWN, NULL);
    if (!secret_ok(cfg, req))
        return refuse(req, BG_ERELAY_SECRET, NULL);
    bg_relay_path path;
    const char *allow = NULL;
    char why[200];
    int rc = bg_relay_path_parse(req->method.base, req->method.len, req->input.path.base,
                                 req->input.path.len, &path, &allow, why, sizeof(why));
    if (rc == BG_EMETHOD)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    if (rc != 0)
        return refuse(req, rc, why);
    const char *ct = NULL;
    size_t ct_len = 0;
    if (path.op != BG_RELAY_DELETE) {
        if (req->entity.len > (size_t)cfg->policy.body_max_bytes)
            return refuse(req, BG_EBODY_TOO_LARGE, NULL);
        ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
        if (i < 0 || !bg_request_is_json(req->headers.entries[i].value.base,
                                         req->headers.entries[i].value.len))
            return refuse(req, BG_EMEDIA_TYPE, NULL);
        ct = req->headers.entries[i].value.base;
        ct_len = req->headers.entries[i].value.len;
    }

    struct st_relay_op *op = calloc(1, sizeof(*op));
    struct st_relay_req_ref *ref =
        op != NULL ? h2o_mem_alloc_shared(&req->pool, sizeof(*ref), on_req_dispose) : NULL;
    if (ref == NULL) {
        free(op);
        return refuse(req, BG_ENOMEM, NULL);
    }
    op->req = req;
    op->relay = relay;
    op->refs = 1; /* the request's */
    op->path = path;
    memcpy(op->request_id, request_id, sizeof(request_id));
    op->body = req->entity.base;
    op->body_len = req->entity.len;
    ref->op = op;
    if (ct != NULL && (op->content_type = strndup(ct, ct_len)) == NULL)
        return refuse(req, BG_ENOMEM, NULL);
    h2o_linklist_insert(&relay->ops, &op->link);
    relay->n_ops++;
    rc = bg_directory_lookup(server->redis, cfg->redis.stream, path.conversation_id, on_directory,
                             op);
    if (rc != 0) {
        op_unlink(op);
        return refuse(req, rc,
                      rc == BG_ENOMEM ? NULL
                                      : "the conversation directory (Redis) is "
                                        "not reachable");
    }
    op->refs++; /* the lookup's */
    return 0;
}

/* ---- set-up ------------------------------------------------------------------------------- */

const char *
bg_relay_off_reason(const bg_config *cfg)
{
    if (cfg->relay.listen[0] == '\0')
        return "relay.listen is empty";
    if (cfg->auth.app_id[0] == '\0')
        return "authentication is off (no auth.app_id): no serviceUrl is verified and no "
               "Connector token can be had";
    if (cfg->auth.app_password[0] == '\0')
        return "auth.app_password (MicrosoftAppPassword) is empty: no Connector token can be had";
    if (strcasecmp(cfg->auth.app_type, "UserAssignedMSI") == 0)
        return "auth.app_type is UserAssignedMSI: the relay gets tokens with a client secret only";
    return NULL;
}

void
bg_relay_register(h2o_hostconf_t *hostconf, bg_server *server)
{
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    struct st_relay_handler *h =
        (struct st_relay_handler *)h2o_create_handler(pathconf, sizeof(*h));
    h->super.on_req = on_req;
    h->server = server;
}

bg_relay *
bg_relay_new(bg_server *server, char *err, size_t errlen)
{
    bg_relay *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->server = server;
    h2o_linklist_init_anchor(&r->ops);
    r->token = bg_relay_token_new(server->loop, server->http, server->cfg, err, errlen);
    if (r->token == NULL) {
        free(r);
        return NULL;
    }
    bg_relay_token_set_failures(r->token, server->failures);
    return r;
}

void
bg_relay_start(bg_relay *r)
{
    bg_relay_token_start(r->token);
}

size_t
bg_relay_in_flight(const bg_relay *r)
{
    return r != NULL ? r->n_ops : 0;
}

void
bg_relay_stop(bg_relay *r)
{
    if (r == NULL)
        return;
    while (!h2o_linklist_is_empty(&r->ops)) {
        struct st_relay_op *op = H2O_STRUCT_FROM_MEMBER(struct st_relay_op, link, r->ops.next);
        op_cancel(op);
        op->stopped = 1;
        relay_call_done(op, 503, NULL);
        if (op->req != NULL)
            bg_respond_error(op->req, BG_ESHUTDOWN, NULL);
    }
}

void
bg_relay_free(bg_relay *r)
{
    if (r == NULL)
        return;
    bg_relay_stop(r);
    bg_relay_token_free(r->token);
    free(r);
}

const bg_relay_token *
bg_relay_get_token(const bg_relay *r)
{
    return r != NULL ? r->token : NULL;
}
