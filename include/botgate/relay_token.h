/*
 * The relay's Connector token: OAuth 2.0 client credentials (auth.app_id,
 * auth.app_password) at relay.token_url for relay.scope, cached and refreshed ahead of
 * its expiry, on the event loop.
 *
 *   start ──fetch──▶ token T (life L) ──at relay.token_refresh_pct of L──▶ fetch ──▶ T'
 *                        │                                                  │ failed:
 *                        │ handed out until L minus min(L/10, 60 s)          retried with
 *                        ▼                                                  back-off 1 s
 *                   callers never wait                                      doubling to 30 s
 *
 * One request in flight at a time. While a usable token is held, bg_relay_token_current
 * answers it at once: a refresh in progress or failing is invisible to callers. Without
 * one (at start, after an outage longer than the token's life) callers wait for the fetch
 * in flight, or start one; but for a second after a failed fetch they are told the
 * failure at once rather than sent to AAD again.
 *
 * Failures (transport errors, 4xx/5xx, an answer without access_token) are logged, counted
 * and recorded (failures.h) with AAD's own words ("invalid_client: AADSTS7000215: ...")
 * and never the secret.
 *
 * A token the Connector refuses (401: the secret rotated, the token revoked) is not kept
 * until its refresh: bg_relay_token_refused drops it and fetches at once, so that the
 * refused call can be retried with a new one; at most one such forced fetch per
 * BG_RELAY_TOKEN_FORCE_INTERVAL_MS (relay_path.h), so that a Connector that refuses every
 * token does not turn each call into a request to AAD.
 */
#ifndef BOTGATE_RELAY_TOKEN_H
#define BOTGATE_RELAY_TOKEN_H

#include <stdint.h>

#include "botgate/config.h"
#include "botgate/http_client.h"

typedef struct bg_relay_token bg_relay_token;
typedef struct bg_relay_token_wait bg_relay_token_wait;
struct bg_failures;

/* token: the access token, or NULL with error (a sentence); both valid during the call. */
typedef void (*bg_relay_token_cb)(void *data, const char *token, const char *error);

/* NULL with a reason in err when the token URL cannot be built, or out of memory. */
bg_relay_token *bg_relay_token_new(h2o_loop_t *loop, bg_http *http, const bg_config *cfg, char *err,
                                   size_t errlen);
void bg_relay_token_set_failures(bg_relay_token *t, struct bg_failures *failures);
/* Fetches the first token now (so that a bad secret shows in the log at start). */
void bg_relay_token_start(bg_relay_token *t);
/* The cached token while it may be handed out, else NULL. */
const char *bg_relay_token_current(bg_relay_token *t);
/*
 * The serial number of the token held: 1 for the first token obtained, one more for each
 * next; 0 when none is held. The token bg_relay_token_current answers and the one a wait's
 * cb receives are the one held at that moment, so a caller that reads the serial then
 * knows which token it sent, without keeping a copy of it, to name it to
 * bg_relay_token_refused.
 */
uint64_t bg_relay_token_serial(const bg_relay_token *t);
/*
 * The Connector answered 401 to a call made with the token of serial number `serial`.
 * When that token is still the one held, it is dropped and a fetch starts now (callers then
 * wait for it as for a first token) — unless a forced fetch started less than
 * BG_RELAY_TOKEN_FORCE_INTERVAL_MS ago: then the token stays held and nothing is done. A
 * refusal of an older token, or of one already dropped, does nothing: the newer token is
 * held or its fetch is in flight (several calls refused with the same token cause one
 * fetch). Returns 1 when a call retried now would go out with (or wait for) another token
 * than the refused one, 0 when it would not (rate-limited): the 401 is then the answer.
 */
int bg_relay_token_refused(bg_relay_token *t, uint64_t serial);
/*
 * Waits for a token (when bg_relay_token_current gave none). Returns a wait, whose cb runs
 * once, later; or NULL when the last fetch failed less than a second ago (or out of
 * memory): *error then says why, and cb will not run.
 */
bg_relay_token_wait *bg_relay_token_wait_for(bg_relay_token *t, bg_relay_token_cb cb, void *data,
                                             const char **error);
void bg_relay_token_cancel(bg_relay_token_wait *w);

typedef struct bg_relay_token_stats {
    uint64_t fetches_ok, fetches_failed;
    int64_t obtained_ms; /* h2o_now of the held token; 0 = none */
    int64_t expires_ms;  /* its expiry, same clock */
} bg_relay_token_stats;
bg_relay_token_stats bg_relay_token_get_stats(const bg_relay_token *t);

/* Every wait gets cb(NULL, "shutting down"); then frees. */
void bg_relay_token_free(bg_relay_token *t);

#endif
