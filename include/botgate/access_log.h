/*
 * The access log: one JSON line per request and one per delivery attempt (README.md,
 * "Operating botgate", lists the fields), to stdout, stderr or a file (log.access).
 *
 * Writes never block the event loop: the loop copies a finished line into a memory
 * buffer (a mutex held for one memcpy) and a writer thread of this module's own does the
 * write(2) calls. When the destination cannot keep up and the buffer holds
 * BG_ACCESS_LOG_BUFFER bytes, new lines are dropped and counted
 * (botgate_access_log_lines_total{result="dropped"}) rather than delaying a request.
 *
 * Which lines are written: a line has a level (info for a success, warn for a refusal or
 * a retry, error for a 5xx or a dead letter; probes are debug unless they fail), and
 * lines under log.level are not written. Of the info lines, one request in
 * log.access_sample_1_in is kept, chosen by its request id, so that an activity's request
 * line and its delivery lines are kept or left out together; warn and error lines are
 * always kept.
 */
#ifndef BOTGATE_ACCESS_LOG_H
#define BOTGATE_ACCESS_LOG_H

#include "botgate/entry.h"
#include "botgate/log.h"

#include <stddef.h>
#include <stdint.h>

#define BG_ACCESS_LOG_BUFFER (4u << 20)
/* The longest line; longer values are cut (bg_jsonw marks the line "truncated"). */
#define BG_ACCESS_LOG_LINE 2048

typedef struct bg_access_log bg_access_log;

/* dest: "stdout", "stderr", "off" or a file path (opened for appending, created 0640).
 * min_level: lines under it are not written. sample_1_in >= 1. Returns 0, or an error
 * (BG_EINVAL, BG_ENOMEM, BG_EIO) with the reason in why. *out is NULL for "off". */
int bg_access_log_open(bg_access_log **out, const char *dest, bg_log_level min_level,
                       unsigned sample_1_in, char *why, size_t whylen);
/* Writes what is buffered, stops the writer thread, closes a file. NULL is a no-op. */
void bg_access_log_close(bg_access_log *log);

/* Whether a line of this level, for this request id (NULL: none), is to be written.
 * NULL log: never. Call it before building the line. */
int bg_access_log_wants(bg_access_log *log, bg_log_level level, const char *request_id);
/* Hands a finished line (ending in "\n") to the writer. */
void bg_access_log_write(bg_access_log *log, const char *line, size_t len);

typedef struct bg_access_log_stats {
    uint64_t written, dropped, write_errors;
} bg_access_log_stats;
bg_access_log_stats bg_access_log_get_stats(bg_access_log *log);

/* The level names the lines carry. */
const char *bg_access_log_level_name(bg_log_level level);

/* ---- the two kinds of line ---------------------------------------------------------- */

/* Timings are µs; -1 = not measured (left out of the line). */
typedef struct bg_access_request {
    const char *request_id;
    const char *route;    /* messages | healthz | readyz | metrics | other */
    const char *method;   /* NUL-terminated copies or literals */
    const char *protocol; /* HTTP/1.1 | HTTP/2 */
    const char *remote;   /* the peer's address (not X-Forwarded-For) */
    int status;           /* 0: the client left before the answer */
    const char *code;     /* the error code of a refusal (policy/error.c); NULL: none */
    const char *activity_id, *activity_type, *channel_id, *conversation_id;
    const char *token_cache; /* hit | miss | NULL: no token was checked */
    int duplicate;           /* an activity stored before: acknowledged, not stored again */
    int64_t bytes_in;
    int64_t headers_us, body_us, keys_wait_us, auth_us, enqueue_us, bot_us, total_us;
} bg_access_request;

/* A delivery attempt, or (kind "relay") a relay call to the Connector. The activity's
 * fields are slices (of the stored entry, entry.h): not NUL-terminated. */
typedef struct bg_access_delivery {
    const char *kind;      /* NULL: "delivery"; "relay" */
    const char *operation; /* relay: send | reply | update | delete */
    const char *target;    /* relay: the Connector URL called */
    bg_slice request_id;   /* the ingress request's: joins the two kinds of line */
    const char *entry_id;  /* the stream entry */
    bg_slice activity_id, activity_type, channel_id, conversation_id;
    int attempt;         /* 1 for the first; 0: settled without an attempt */
    long status;         /* the bot's HTTP status; 0: no answer */
    const char *outcome; /* delivered | retry | dead; relay: answered | rejected (4xx) | failed |
                            abandoned (the caller left) */
    const char *reason;  /* failure class (failure.h), or the dead-letter reason */
    const char *error;   /* libcurl's error text for a transport failure */
    int64_t queue_wait_us, connect_us, tls_us, first_byte_us, total_us, e2e_us, retry_in_ms;
} bg_access_delivery;

/* The level a line gets (see the top); route may be NULL. */
bg_log_level bg_access_request_level(const char *route, int status);
bg_log_level bg_access_delivery_level(const char *outcome);

/* Fills the HTTP part of r from h2o's request: method, protocol, remote (into remote[64]),
 * status, bytes_in, headers_us, body_us, total_us; the rest is left as it was. */
struct st_h2o_req_t;
void bg_access_request_from_h2o(bg_access_request *r, struct st_h2o_req_t *req, char method[16],
                                char remote[64]);

/* Build and hand over one line each, if bg_access_log_wants() it. For a request, which h2o
 * still holds (req): the level and the sampling are decided from the route, req's status and
 * r's request id first, and r's HTTP part is filled (bg_access_request_from_h2o) only for a
 * line that will be written; nothing at all when log is NULL (the access log is off). */
void bg_access_log_h2o_request(bg_access_log *log, bg_access_request *r, struct st_h2o_req_t *req);
void bg_access_log_delivery(bg_access_log *log, const bg_access_delivery *d);

#endif
