/*
 * Outbound HTTP on h2o's event loop: libcurl's multi interface, driven by the loop.
 *
 * One client per loop holds the multi handle, and so the connection cache: requests to
 * the same host reuse keep-alive connections. Nothing here blocks: curl's sockets are
 * watched by the loop (a dup() of each, as for hiredis), its timer is a bg_timer, and
 * names are resolved by curl's threaded resolver.
 *
 * Used for the Connector's keys (auth), and later for delivery to the bot and the relay.
 */
#ifndef BOTGATE_HTTP_CLIENT_H
#define BOTGATE_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
#include <h2o.h>

typedef struct bg_http bg_http;
typedef struct bg_http_call bg_http_call;

typedef struct bg_http_result {
    CURLcode curl_code;       /* CURLE_OK when an HTTP answer arrived (any status) */
    const char *error;        /* curl's sentence when curl_code != CURLE_OK */
    long status;              /* HTTP status, 0 without an answer */
    int body_too_large;       /* the answer was longer than max_body: cut off, an error */
    const char *content_type; /* the answer's Content-Type, or NULL */
    const char *retry_after;  /* the answer's Retry-After, or NULL */
    const char *body;         /* NUL-terminated; valid during the callback only */
    size_t body_len;
    int64_t connect_us, tls_us, first_byte_us, total_us; /* from the start of the call */
} bg_http_result;

typedef void (*bg_http_cb)(const bg_http_result *res, void *data);

typedef struct bg_http_request {
    const char *method; /* "GET", "POST", ... */
    const char *url;
    const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */
    const char *body;           /* copied; may be NULL */
    size_t body_len;
    long timeout_ms; /* whole call */
    size_t max_body; /* longest answer kept */
    int https_only;  /* refuse any other scheme */
    int no_replay;   /* never re-send the body on its own (see http_client.c) */
} bg_http_request;

/* ca_file: extra trusted CAs (PEM), added to the system's; NULL or "" = system only.
 * Returns NULL with a reason in err when ca_file cannot be read. */
bg_http *bg_http_new(h2o_loop_t *loop, const char *ca_file, char *err, size_t errlen);
/* Starts a call; cb runs exactly once, later (never from inside this call), unless the
 * call is cancelled. Returns NULL when the call cannot start (out of memory). */
bg_http_call *bg_http_start(bg_http *http, const bg_http_request *req, bg_http_cb cb, void *data);
/* Abandons a call: cb will not run. */
void bg_http_cancel(bg_http_call *call);
/* Cancels every call (no callbacks) and frees the client. */
void bg_http_free(bg_http *http);

#endif
