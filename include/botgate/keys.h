/*
 * The Connector's signing keys: fetched, cached, refreshed, on the event loop.
 *
 * Two sources, each an OpenID metadata document naming a JWKS: the channel's
 * (auth.openid_metadata_url) and, when auth.allow_emulator, the Emulator's. For each:
 *
 *  - fetched at start; until the first success /readyz says not ready, and retried with
 *    back-off (1 s doubling to 60 s);
 *  - refreshed every auth.jwks_refresh_s, and when a token names an unknown kid — at most
 *    one such refresh a minute (the JS SDK waits an hour: an hour of 401s after a
 *    rotation);
 *  - one fetch in flight at a time (single flight): requests that need it wait and are
 *    resumed when it ends;
 *  - a failed refresh keeps the keys already held (the SDK drops them), is logged and
 *    counted.
 *
 * HTTPS only; auth.ca_file adds trusted CAs.
 */
#ifndef BOTGATE_KEYS_H
#define BOTGATE_KEYS_H

#include "botgate/auth.h"
#include "botgate/config.h"
#include "botgate/http_client.h"

typedef struct bg_keys bg_keys;

/* Called when a wait ends (the fetch succeeded or failed, or botgate is stopping). */
typedef void (*bg_keys_wait_cb)(void *data);
/* Called after a key set changed, so that cached tokens of removed keys are dropped. */
typedef void (*bg_keys_change_cb)(bg_keys *keys, void *data);

bg_keys *bg_keys_new(h2o_loop_t *loop, bg_http *http, const bg_config *cfg);
void bg_keys_set_change_cb(bg_keys *keys, bg_keys_change_cb cb, void *data);
/* Where failed fetches are recorded (failures.h); NULL (the default): nowhere. */
struct bg_failures;
void bg_keys_set_failures(bg_keys *keys, struct bg_failures *failures);
void bg_keys_start(bg_keys *keys);

/* The current key sets; NULL when none was ever fetched (emulator: or not allowed). */
const bg_keyset *bg_keys_channel(const bg_keys *keys);
const bg_keyset *bg_keys_emulator(const bg_keys *keys);
/* 1 when the channel keys (and the Emulator's, when allowed) have been fetched once. */
int bg_keys_ready(const bg_keys *keys);

/*
 * Asks for the wait that a request needs:
 *  - no keys yet: waits for the fetch in flight, if one is (requests do not start fetches
 *    of their own: the retry back-off paces them while the Connector's keys are away);
 *  - unknown_kid = 1: a refresh for a token naming a kid we do not hold, unless one ran
 *    less than a minute ago.
 * Returns 1 when cb will be called once the fetch ends, 0 when there is nothing to wait
 * for (the caller decides with what it has).
 */
int bg_keys_wait(bg_keys *keys, int unknown_kid, bg_keys_wait_cb cb, void *data);

/* 1 while the last fetch of a key set in use failed: a kid botgate does not hold may then
 * be one the key service would have given (the caller answers 503, not 401). */
int bg_keys_failing(const bg_keys *keys);

/* Counters for logs and metrics. */
typedef struct bg_keys_stats {
    unsigned long fetches, failures;
    int64_t loaded_at_ms; /* loop time of the last successful channel fetch, 0 = never */
} bg_keys_stats;
bg_keys_stats bg_keys_get_stats(const bg_keys *keys);

/* Ends every wait (their cb runs), cancels fetches, frees. */
void bg_keys_free(bg_keys *keys);

#endif
