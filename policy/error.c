#include "botgate/error.h"

#include <stddef.h>

/* One row per error: the single source for its name, status and sentence. */
static const struct {
    int err;
    int status;
    const char *code;
    const char *message;
} error_table[] = {
    {BG_OK, 200, "ok", "success"},
    {BG_ENOMEM, 500, "out_of_memory", "out of memory"},
    {BG_EINVAL, 500, "invalid_argument", "invalid argument"},
    {BG_EIO, 500, "io_error", "input/output error"},
    {BG_ECONFIG, 500, "bad_configuration", "bad configuration"},
    {BG_ENOTFOUND, 404, "not_found", "no such route"},
    {BG_EMETHOD, 405, "method_not_allowed", "method not allowed on this route"},
    {BG_EBODY_TOO_LARGE, 413, "body_too_large", "the request body is larger than the limit"},
    {BG_EMEDIA_TYPE, 415, "unsupported_media_type", "Content-Type must be application/json"},
    {BG_EJSON, 400, "malformed_json", "the body is not a JSON object"},
    {BG_EACTIVITY, 400, "malformed_activity", "the activity lacks a field or has a wrong type"},
    {BG_EAUTH_MISSING, 401, "auth_missing", "no Authorization: Bearer header"},
    {BG_EAUTH_MALFORMED, 401, "auth_malformed", "the Authorization header is not 'Bearer <token>'"},
    {BG_EHTTP, 400, "malformed_request", "the HTTP request is malformed"},
    {BG_EREDIS_DOWN, 503, "queue_unavailable", "the queue (Redis) is not reachable"},
    {BG_EREDIS_TIMEOUT, 503, "queue_timeout", "the queue (Redis) did not answer in time"},
    {BG_EREDIS_ERROR, 503, "queue_error", "the queue (Redis) refused the write"},
    {BG_EREPLICA, 503, "replica_ack_missing", "too few Redis replicas confirmed the write"},
    {BG_ESHUTDOWN, 503, "shutting_down", "botgate is shutting down"},
    {BG_EENTRY, 500, "bad_entry", "a queue entry could not be decoded"},
};

static int
find(int err)
{
    for (size_t i = 0; i < sizeof(error_table) / sizeof(error_table[0]); i++)
        if (error_table[i].err == err)
            return (int)i;
    return -1;
}

const char *
bg_error_code(int err)
{
    int i = find(err);
    return i < 0 ? "unknown_error" : error_table[i].code;
}

const char *
bg_strerror(int err)
{
    int i = find(err);
    return i < 0 ? "unknown error" : error_table[i].message;
}

int
bg_error_status(int err)
{
    int i = find(err);
    return i < 0 ? 500 : error_table[i].status;
}
