/*
 * /healthz, /readyz and the JSON 404 for everything else.
 *
 * /healthz answers while the process runs its loop: a kubelet liveness probe restarts
 * a hung botgate, not one whose Redis is away. /readyz answers 200 only while Redis is
 * connected and, with authentication on, the signing keys are held, so that a pod that
 * can only answer 503 is taken out of the Service. With authentication off its body
 * says so.
 */
#include "botgate/error.h"
#include "botgate/server.h"

struct st_probe_handler {
    h2o_handler_t super;
    bg_server *server;
    int kind;
};

enum { PROBE_HEALTH, PROBE_READY, PROBE_NOT_FOUND };

static int
is_get(h2o_req_t *req)
{
    return h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
           h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
}

static int
on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct st_probe_handler *h = (struct st_probe_handler *)self;
    if (h->kind == PROBE_NOT_FOUND) {
        bg_respond_error(req, BG_ENOTFOUND, NULL);
        return 0;
    }
    /* prefix matches: /healthz/x is not /healthz */
    if (req->path_normalized.len != (h->kind == PROBE_HEALTH ? 8 : 7)) {
        bg_respond_error(req, BG_ENOTFOUND, NULL);
        return 0;
    }
    if (!is_get(req)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL,
                       H2O_STRLIT("GET, HEAD"));
        bg_respond_error(req, BG_EMETHOD, NULL);
        return 0;
    }
    if (h->kind == PROBE_HEALTH) {
        bg_respond_json(req, 200, NULL, "{\"status\":\"ok\"}");
    } else if (h->server->shutting_down || h->server->redis == NULL) {
        bg_respond_error(req, BG_ESHUTDOWN, NULL);
    } else if (!bg_redis_is_ready(h->server->redis)) {
        bg_respond_error(req, BG_EREDIS_DOWN, NULL);
    } else if (h->server->keys != NULL && !bg_keys_ready(h->server->keys)) {
        bg_respond_error(req, BG_EKEYS, NULL);
    } else if (!h->server->auth_on) {
        bg_respond_json(req, 200, NULL,
                        "{\"status\":\"ready\",\"authentication\":\"off\",\"warning\":"
                        "\"auth.app_id is empty: every request without a token is accepted\"}");
    } else {
        bg_respond_json(req, 200, NULL, "{\"status\":\"ready\",\"authentication\":\"on\"}");
    }
    return 0;
}

static void
add(h2o_hostconf_t *hostconf, const char *path, bg_server *server, int kind)
{
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, path, 0);
    struct st_probe_handler *h =
        (struct st_probe_handler *)h2o_create_handler(pathconf, sizeof(*h));
    h->super.on_req = on_req;
    h->server = server;
    h->kind = kind;
}

void
bg_probes_register(h2o_hostconf_t *hostconf, bg_server *server)
{
    add(hostconf, "/healthz", server, PROBE_HEALTH);
    add(hostconf, "/readyz", server, PROBE_READY);
    add(hostconf, "/", server, PROBE_NOT_FOUND);
}
