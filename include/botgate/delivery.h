/*
 * Delivery decisions, as pure functions: what to do after an attempt to deliver a queued
 * activity to the bot, how long to wait before the next one, and which activities are not
 * queued at all but proxied synchronously (the channel waits for their body).
 *
 * No clock, no randomness of their own: the time and a random number are parameters, so
 * that every rule is unit-tested.
 */
#ifndef BOTGATE_DELIVERY_H
#define BOTGATE_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

typedef enum bg_delivery_action {
    BG_DELIVERY_ACK = 0, /* delivered: XACK, forget */
    BG_DELIVERY_RETRY,   /* try again after delay_ms */
    BG_DELIVERY_DEAD,    /* move to the dead-letter stream with `reason` */
} bg_delivery_action;

/* Why an entry was dead-lettered (the `reason` field of a DLQ entry, a metric label). */
#define BG_DEAD_STATUS "http_4xx"                      /* a non-retryable 4xx answer */
#define BG_DEAD_ATTEMPTS "max_attempts"                /* out of attempts */
#define BG_DEAD_TOKEN_EXPIRED "token_expired_in_queue" /* the forwarded token expired */
#define BG_DEAD_BAD_ENTRY "bad_entry"                  /* the stored entry cannot be decoded */

typedef struct bg_backoff {
    int initial_ms;   /* bot.backoff_initial_ms */
    int max_ms;       /* bot.backoff_max_ms */
    int max_attempts; /* bot.max_attempts */
} bg_backoff;

/* What one attempt produced. */
typedef struct bg_attempt_result {
    int transport_error;     /* 1 when no HTTP answer came (refused, reset, timeout, DNS, TLS) */
    long status;             /* HTTP status when transport_error is 0 */
    const char *retry_after; /* the Retry-After header value, or NULL */
    size_t retry_after_len;
} bg_attempt_result;

typedef struct bg_delivery_decision {
    bg_delivery_action action;
    int64_t delay_ms;   /* RETRY: wait this long */
    const char *reason; /* DEAD: one of BG_DEAD_*; RETRY/ACK: NULL */
} bg_delivery_decision;

/*
 * The rule after attempt number `attempt` (1 = the first; less counts as 1) ended with r:
 *
 *   2xx                                   ACK
 *   408, 429, 5xx, no answer              RETRY; DEAD max_attempts once attempt >= max_attempts
 *   any other status (other 4xx, 1xx/3xx) DEAD http_4xx (3xx: the bot should not redirect)
 *
 * "No answer" is transport_error, or a status of 0 or less (nothing said "refused").
 * The retry delay is exponential with jitter: base = min(max_ms, initial_ms * 2^(attempt-1)),
 * computed without overflow for any attempt; delay = base/2 + random01 * (base - base/2), so
 * in [base/2, base) (random01 in [0,1); a value outside is clamped). A Retry-After on a 429
 * or 503 replaces it when larger, capped at max_ms: delta-seconds, or an IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT") relative to now_s, blanks around either allowed.
 * Anything else there (the obsolete RFC 850 and asctime dates, signs, fractions, garbage)
 * is ignored, and the back-off applies.
 */
bg_delivery_decision bg_delivery_decide(const bg_backoff *b, int attempt,
                                        const bg_attempt_result *r, double random01, int64_t now_s);

/* 1 when a token with this exp (0 = none/unknown) has expired at now_s (now_s >= exp): such
 * an entry is dead-lettered before an attempt, since the bot would refuse it. The SDK allows
 * 5 minutes of clock skew; a caller that wants to match it passes now_s minus the skew. */
int bg_delivery_token_expired(int64_t token_exp, int64_t now_s);

/*
 * Synchronous routing: 1 when the activity must be proxied to the bot at once rather than
 * queued — its type is one of sync_types (default "invoke"), or its deliveryMode is
 * "expectReplies". type may not be NULL; delivery_mode may.
 */
int bg_delivery_is_sync(const char *type, const char *delivery_mode, char *const *sync_types,
                        size_t n_sync_types);

/*
 * The deadline for a synchronous call: `compose_ms` for invokes whose name starts with
 * "composeExtension/" (Teams gives message extensions 5 s and ignores later answers),
 * else `default_ms`. name may be NULL.
 */
int bg_delivery_sync_deadline_ms(const char *type, const char *name, int default_ms,
                                 int compose_ms);

#endif
