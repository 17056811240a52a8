#include "botgate/error.h"
#include "botgate/server.h"

#include <jansson.h>
#include <string.h>

static const char *
reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Internal Server Error";
    }
}

void
bg_respond_json(h2o_req_t *req, int status, const char *reason, const char *json)
{
    size_t len = strlen(json);
    req->res.status = status;
    req->res.reason = reason != NULL ? reason : reason_phrase(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    h2o_send_inline(req, json, len);
}

void
bg_respond_passthrough(h2o_req_t *req, const bg_http_result *res)
{
    req->res.status = (int)res->status;
    req->res.reason = "";
    req->res.content_length = res->body_len;
    if (res->content_type != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       res->content_type, strlen(res->content_type));
    h2o_send_inline(req, res->body, res->body_len);
}

/* jansson does the escaping, so a detail naming a field cannot break the JSON. Every
 * refusal passes here, so here it is counted, under the code the caller reads. */
void
bg_respond_error(h2o_req_t *req, int err, const char *detail)
{
    int status = bg_error_status(err);
    bg_admin_count_refusal(&bg_server_of(req)->metrics, err);
    json_t *doc = json_pack("{s:{s:s,s:s}}", "error", "code", bg_error_code(err), "message",
                            detail != NULL ? detail : bg_strerror(err));
    char *body = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (status == 503 || status == 429)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    if (body == NULL) {
        bg_respond_json(req, status, NULL, "{\"error\":{\"code\":\"out_of_memory\"}}");
        return;
    }
    /* h2o_send_inline copies the body into the request's pool. */
    bg_respond_json(req, status, NULL, body);
    free(body);
}
