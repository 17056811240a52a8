/*
 * The Connector relay: the bot's replies and proactive messages, sent to botgate's
 * relay.listen (plain HTTP, loopback) on the Connector's own routes, forwarded to the
 * serviceUrl the conversation's last authenticated activity came with
 * (botgate/relay_directory.h), with a Connector token botgate holds
 * (botgate/relay_token.h). Routes and path rules: botgate/relay_path.h.
 *
 *   bot ──POST /v3/conversations/C/activities──▶ relay ──HMGET──▶ Redis (C's serviceUrl)
 *                                                  │
 *                                                  └─ POST <serviceUrl>/v3/conversations/C/
 *                                                     activities, Authorization: Bearer <T>
 *                                                     ──▶ Connector; its status, Content-Type
 *                                                     and body go back unchanged
 *
 * The relay runs only when it can work: authentication on (auth.app_id: the directory
 * holds verified serviceUrls only), a client secret (auth.app_password), and an app type
 * with client credentials (not UserAssignedMSI). Otherwise relay.listen is not bound and
 * the start-up log says why (bg_relay_off_reason).
 *
 * Retries: only where no activity can have been created (bg_relay_retryable), and once
 * after a 401 with a new Connector token (bg_relay_refusal_retryable, bg_relay_token_refused);
 * at most BG_RELAY_MAX_RETRIES in all, each counted in
 * botgate_relay_attempts_total{outcome="retry"}.
 */
#ifndef BOTGATE_RELAY_H
#define BOTGATE_RELAY_H

#include "botgate/relay_token.h"
#include "botgate/server.h"

typedef struct bg_relay bg_relay;

/* Why the relay does not run with cfg (a sentence), or NULL when it does. */
const char *bg_relay_off_reason(const bg_config *cfg);

/* The relay's routes on hostconf (before h2o_context_init); requests reach
 * server->relay, made later by bg_relay_new. */
void bg_relay_register(h2o_hostconf_t *hostconf, bg_server *server);

/* Needs server's loop, redis, http and failures. NULL with a reason in err. */
bg_relay *bg_relay_new(bg_server *server, char *err, size_t errlen);
/* Fetches the first token. */
void bg_relay_start(bg_relay *relay);
/* Relay requests in progress (drained on SIGTERM like the ingress's). */
size_t bg_relay_in_flight(const bg_relay *relay);
/* Answers every relay request in progress 503 shutting_down and cancels its calls. */
void bg_relay_stop(bg_relay *relay);
void bg_relay_free(bg_relay *relay);
/* The token manager, for the metrics. */
const bg_relay_token *bg_relay_get_token(const bg_relay *relay);

#endif
