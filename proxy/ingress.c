/*
 * POST /api/messages: check the request, store the activity, then acknowledge.
 *
 * The checks run cheapest first and stop at the first failure:
 *
 *   method/path ─▶ size (413) ─▶ Content-Type (415) ─▶ Authorization (401)
 *     ─▶ JSON activity (400) ─▶ [JWT check: issue #3] ─▶ queue put ─▶ 202 | 503
 *
 * The answer to a queued activity is sent from the queue's callback, after Redis
 * replied. The client may be gone by then (it disconnected, or reset its HTTP/2
 * stream), and h2o frees the request with its connection. So the request and the
 * pending put meet in a small reference-counted struct (st_ingress_op): one reference
 * belongs to the request (dropped by a dispose callback on req->pool), one to the put
 * (dropped in its callback). Whichever side ends last frees it; the callback answers
 * only while op->req is still set.
 */
#include "botgate/activity.h"
#include "botgate/entry.h"
#include "botgate/error.h"
#include "botgate/log.h"
#include "botgate/request.h"
#include "botgate/server.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct st_ingress_handler {
    h2o_handler_t super;
    bg_server *server;
};

struct st_ingress_op {
    h2o_req_t *req; /* NULL once h2o disposed the request */
    bg_server *server;
    int refs;
};

struct st_ingress_req_ref {
    struct st_ingress_op *op;
};

static void
op_release(struct st_ingress_op *op)
{
    if (--op->refs == 0)
        free(op);
}

static void
on_req_dispose(void *p)
{
    struct st_ingress_req_ref *ref = p;
    ref->op->req = NULL;
    op_release(ref->op);
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
    bg_log_warn("ingress", "answering 503 %s: %s (%lu more in the last second)", bg_error_code(err),
                bg_strerror(err), suppressed);
    last = now;
    suppressed = 0;
}

static void
on_stored(void *data, int err, int duplicate)
{
    struct st_ingress_op *op = data;
    op->server->inflight--;
    if (op->req != NULL) {
        if (err == 0) {
            (void)duplicate; /* a repeat is acknowledged like the original */
            op->req->res.status = 202;
            op->req->res.reason = "Accepted";
            op->req->res.content_length = 0;
            h2o_send_inline(op->req, "", 0);
        } else {
            log_unavailable(err);
            bg_respond_error(op->req, err, NULL);
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
fill_entry(bg_entry *e, h2o_req_t *req, const bg_activity *act, const char *request_id)
{
    memset(e, 0, sizeof(*e));
    e->version = BG_ENTRY_VERSION;
    e->request_id = slice_of(request_id);
    e->received_at_us =
        (int64_t)req->processed_at.at.tv_sec * 1000000 + req->processed_at.at.tv_usec;
    e->activity_id = slice_of(act->id);
    e->type = slice_of(act->type);
    e->channel_id = slice_of(act->channel_id);
    e->conversation_id = slice_of(act->conversation_id);
    e->service_url = slice_of(act->service_url);
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

static int
refuse(h2o_req_t *req, int err, const char *detail)
{
    bg_respond_error(req, err, detail);
    return 0;
}

static int
on_req(h2o_handler_t *self, h2o_req_t *req)
{
    bg_server *server = ((struct st_ingress_handler *)self)->server;
    const bg_config *cfg = server->cfg;

    if (!h2o_memis(req->path_normalized.base, req->path_normalized.len,
                   H2O_STRLIT("/api/messages")))
        return refuse(req, BG_ENOTFOUND, NULL);
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        return refuse(req, BG_EMETHOD, NULL);
    }
    char request_id[65];
    set_request_id(server, req, request_id);
    if (server->shutting_down)
        return refuse(req, BG_ESHUTDOWN, NULL);
    /* h2o refuses a larger announced body itself (max_request_entity_size); this also
     * covers any path by which a longer one could arrive. */
    if (req->entity.len > (size_t)cfg->policy.body_max_bytes)
        return refuse(req, BG_EBODY_TOO_LARGE, NULL);
    ssize_t ct = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (ct < 0 || !bg_request_is_json(req->headers.entries[ct].value.base,
                                      req->headers.entries[ct].value.len))
        return refuse(req, BG_EMEDIA_TYPE, NULL);
    ssize_t az = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (az < 0)
        return refuse(req, BG_EAUTH_MISSING, NULL);
    const char *token;
    size_t token_len;
    if (bg_request_bearer(req->headers.entries[az].value.base, req->headers.entries[az].value.len,
                          &token, &token_len) != 0)
        return refuse(req, BG_EAUTH_MALFORMED, NULL);

    bg_activity act;
    char why[160];
    int rc = bg_activity_parse(&act, req->entity.base, req->entity.len, why, sizeof(why));
    if (rc != 0)
        return refuse(req, rc, why);

    /* Authentication (issue #3) goes here: verify `token` against the Connector's keys,
     * the app id, and this activity's serviceUrl and channelId, before anything is
     * stored. Until then any Bearer token is accepted and kept in the entry. */

    bg_entry entry;
    fill_entry(&entry, req, &act, request_id);
    char *buf = NULL;
    size_t buflen = 0;
    rc = bg_entry_encode(&entry, &buf, &buflen);
    if (rc != 0) {
        bg_activity_clear(&act);
        return refuse(req, rc, NULL);
    }
    struct st_ingress_op *op = malloc(sizeof(*op));
    struct st_ingress_req_ref *ref =
        op != NULL ? h2o_mem_alloc_shared(&req->pool, sizeof(*ref), on_req_dispose) : NULL;
    if (ref == NULL) {
        free(op);
        free(buf);
        bg_activity_clear(&act);
        return refuse(req, BG_ENOMEM, NULL);
    }
    *op = (struct st_ingress_op){req, server, 2};
    ref->op = op;
    bg_queue_item item = {buf, buflen, act.conversation_id, act.id};
    rc = bg_queue_put(server->queue, &item, on_stored, op);
    free(buf);
    bg_activity_clear(&act);
    if (rc != 0) {
        op_release(op); /* the put's reference: its callback will not run */
        log_unavailable(rc);
        return refuse(req, rc, NULL);
    }
    server->inflight++;
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
