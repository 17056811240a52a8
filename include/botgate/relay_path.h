/*
 * The relay's pure rules: which request paths it serves, the one URL it may call for them,
 * and the token endpoint's URL for a tenant. No I/O, no clock.
 *
 * The relay accepts the Connector's own routes, so that a Bot Framework SDK pointed at it
 * works unchanged:
 *
 *   POST   /v3/conversations/{conversationId}/activities                send to conversation
 *   POST   /v3/conversations/{conversationId}/activities/{activityId}   reply to activity
 *   PUT    /v3/conversations/{conversationId}/activities/{activityId}   update activity
 *   DELETE /v3/conversations/{conversationId}/activities/{activityId}   delete activity
 *
 * The path is read raw (as sent, before any normalisation) and strictly, because the ids
 * in it end up in a URL on another host:
 *
 *   - no query, no fragment, no empty segment, no trailing '/';
 *   - an id segment holds RFC 3986 pchar bytes only (unreserved, sub-delims, ':' '@') and
 *     '%XX' escapes; the decoded id must be 1..BG_RELAY_ID_MAX bytes of printable ASCII
 *     other than space, '/', '\', '%', '?', '#', '"', '<', '>', '`', '^', '{', '}' — so an
 *     encoded slash (%2F, %2f), an encoded backslash and double encoding (%252F) are
 *     refused, not decoded further;
 *   - an id is never "." or "..", encoded or not.
 *
 * The URL called is built from the directory's serviceUrl (never from the request) and
 * the ids re-encoded by bg_relay_pct_encode: nothing in the request can change its scheme,
 * host, port or path prefix.
 */
#ifndef BOTGATE_RELAY_PATH_H
#define BOTGATE_RELAY_PATH_H

#include <stddef.h>
#include <stdint.h>

#define BG_RELAY_ID_MAX 512

typedef enum bg_relay_op {
    BG_RELAY_SEND = 0, /* POST .../activities */
    BG_RELAY_REPLY,    /* POST .../activities/{activityId} */
    BG_RELAY_UPDATE,   /* PUT .../activities/{activityId} */
    BG_RELAY_DELETE,   /* DELETE .../activities/{activityId} */
} bg_relay_op;

typedef struct bg_relay_path {
    bg_relay_op op;
    char conversation_id[BG_RELAY_ID_MAX + 1]; /* decoded */
    char activity_id[BG_RELAY_ID_MAX + 1];     /* decoded; "" for BG_RELAY_SEND */
} bg_relay_path;

/*
 * Parses a request's method and raw path (request-target) into out. Returns 0;
 * BG_ENOTFOUND for a path that is not one of the routes above (other /v3 routes
 * included); BG_EMETHOD for a route served with another method (*allow receives the
 * methods that are: "POST" or "POST, PUT, DELETE"); BG_ERELAY_PATH for a route whose ids
 * break the rules above. why (may be NULL) receives a sentence without request bytes.
 */
int bg_relay_path_parse(const char *method, size_t method_len, const char *path, size_t path_len,
                        bg_relay_path *out, const char **allow, char *why, size_t whylen);

/* The method a route is called with upstream: "POST", "PUT" or "DELETE". */
const char *bg_relay_op_method(bg_relay_op op);
/* The name of a route for logs: "send", "reply", "update", "delete". */
const char *bg_relay_op_name(bg_relay_op op);

/*
 * Percent-encodes len bytes of s: every byte but ALPHA, DIGIT, '-', '.', '_', '~' becomes
 * %XX (upper case). Writes at most cap bytes including the NUL; returns the length, or -1
 * when it does not fit (out is then "").
 */
long bg_relay_pct_encode(const char *s, size_t len, char *out, size_t cap);

/*
 * The Connector URL for p at service_url: service_url without its trailing '/'s, then
 * "/v3/conversations/{enc(conversation)}/activities[/{enc(activity)}]". service_url must
 * pass bg_relay_service_url_ok. Returns 0, or BG_EINVAL with a sentence in why (a bad
 * serviceUrl, or out shorter than the URL).
 */
int bg_relay_target_url(const char *service_url, const bg_relay_path *p, char *out, size_t cap,
                        char *why, size_t whylen);

/* 1 when service_url is one the relay may call: https:// with a host, no userinfo, query,
 * fragment, blank or control byte, at most 2048 bytes. */
int bg_relay_service_url_ok(const char *service_url);

/*
 * The token endpoint for this app: token_url as configured, except that for
 * app_type "SingleTenant" the path segment "/botframework.com/" is replaced by
 * "/<tenant_id>/" (the Bot Framework SDK asks its tenant's endpoint, MicrosoftAppTenantId,
 * for a single-tenant app). Returns 0, or BG_EINVAL when out is too small.
 */
int bg_relay_token_url(const char *token_url, const char *app_type, const char *tenant_id,
                       char *out, size_t cap);

/*
 * When a token obtained at obtained_ms (any clock) that lives expires_in_s is refreshed
 * (refresh_pct percent of its life) and until when it may be handed out: up to its expiry
 * minus a margin of a tenth of its life, at most 60 s, so that no call leaves with a token
 * about to lapse in flight.
 */
int64_t bg_relay_token_refresh_at(int64_t obtained_ms, int64_t expires_in_s, int refresh_pct);
int64_t bg_relay_token_usable_until(int64_t obtained_ms, int64_t expires_in_s);

/*
 * Whether a token the Connector refused (a 401 to a relayed call) may be replaced at once, at
 * now_ms, by a fetch of its own, the last such forced fetch having started at last_forced_ms
 * (same clock; 0 = none yet): at most one per BG_RELAY_TOKEN_FORCE_INTERVAL_MS, so that a
 * Connector that refuses every token (the app deleted, a wrong scope) costs AAD one request a
 * window, not one a call. A refusal inside the window leaves the token held as it is.
 */
#define BG_RELAY_TOKEN_FORCE_INTERVAL_MS 10000
int bg_relay_token_force_allowed(int64_t now_ms, int64_t last_forced_ms);

/*
 * Back-off of retried relay attempts: attempt 1 (the first retry) waits 250 ms, then 500,
 * 1000 ms. retry_after_s >= 0 (the Connector's Retry-After, whole seconds) replaces it.
 * Returns the delay in ms, or -1 when the call must not be retried: attempt past
 * BG_RELAY_MAX_RETRIES, or a Retry-After above BG_RELAY_MAX_RETRY_AFTER_S.
 */
#define BG_RELAY_MAX_RETRIES 3
#define BG_RELAY_MAX_RETRY_AFTER_S 10
long bg_relay_retry_delay_ms(int attempt, long retry_after_s);

/*
 * Whether a relay attempt's outcome may be retried: only where no activity can have been
 * created at the Connector. curl_code (a CURLcode, 0 = an answer came), connect_us
 * (libcurl's connect time, 0 = no connection was made), status, has_retry_after.
 *   - no connection was made (refused, DNS, connect timeout: curl_code != 0, connect_us 0);
 *   - 502 or 503: the Connector's front door did not pass the request on;
 *   - 429 with Retry-After.
 * Anything else (a timeout after the request was sent, a reset mid-answer, any other
 * status) is final: the activity may exist.
 */
int bg_relay_retryable(int curl_code, int64_t connect_us, long status, int has_retry_after);

/*
 * Whether an attempt is retried with another Connector token: a 401 answer (the Connector
 * refused the token, so no activity was created), only once a call (refused_before: a 401
 * was already retried) and within the retry budget (retries_made < BG_RELAY_MAX_RETRIES).
 * The retry waits for the new token instead of a back-off; whether one is coming is the
 * token manager's (bg_relay_token_refused); a second 401 is the answer.
 */
int bg_relay_refusal_retryable(int curl_code, long status, int retries_made, int refused_before);

#endif
