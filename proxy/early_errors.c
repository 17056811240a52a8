/*
 * JSON for the errors h2o answers by itself.
 *
 * Some requests never reach a botgate handler: h2o refuses a body larger than
 * policy.body_max_bytes while reading it (413, announced or chunked), and a request it
 * cannot parse (400). h2o answers those with a text/plain body through the host's
 * fallback path. This filter sits on that path only, and turns such an answer into
 * botgate's JSON error, so that every error a caller sees has the same shape and code.
 * (Over HTTP/2, h2o 2.2 resets an over-limit stream instead of answering; no filter
 * runs then.)
 */
#include "botgate/error.h"
#include "botgate/server.h"

#include <jansson.h>
#include <string.h>

struct st_early_error_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
    int sent;
};

/* Swallows h2o's text and sends the JSON body once, with the final state. */
static void
on_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
        h2o_send_state_t state)
{
    (void)bufs, (void)bufcnt;
    struct st_early_error_ostream *o = (struct st_early_error_ostream *)self;
    if (!h2o_send_state_is_in_progress(state) && !o->sent) {
        o->sent = 1;
        h2o_ostream_send_next(&o->super, req, &o->body, 1, state);
    } else {
        h2o_ostream_send_next(&o->super, req, NULL, 0, state);
    }
}

static int
error_for_status(int status)
{
    switch (status) {
    case 413:
        return BG_EBODY_TOO_LARGE;
    case 400:
        return BG_EHTTP;
    case 404:
        return BG_ENOTFOUND;
    default:
        return 0;
    }
}

static void
on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    int err = error_for_status(req->res.status);
    json_t *doc = err != 0 ? json_pack("{s:{s:s,s:s}}", "error", "code", bg_error_code(err),
                                       "message", bg_strerror(err))
                           : NULL;
    char *json = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (json != NULL) {
        struct st_early_error_ostream *o =
            (struct st_early_error_ostream *)h2o_add_ostream(req, sizeof(*o), slot);
        o->super.do_send = on_send;
        o->body = h2o_strdup(&req->pool, json, SIZE_MAX);
        o->sent = 0;
        free(json);
        req->res.content_length = o->body.len;
        ssize_t ct = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
        if (ct >= 0)
            req->res.headers.entries[ct].value = h2o_iovec_init(H2O_STRLIT("application/json"));
        slot = &o->super.next;
    }
    h2o_setup_next_ostream(req, slot);
    (void)self;
}

void
bg_early_errors_register(h2o_pathconf_t *fallback)
{
    h2o_filter_t *f = h2o_create_filter(fallback, sizeof(*f));
    f->on_setup_ostream = on_setup_ostream;
}
