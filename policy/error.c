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
    {BG_EAUTH_MISSING, 401, "missing_token", "no Authorization header"},
    {BG_EAUTH_MALFORMED, 401, "malformed_token", "the Authorization header is not 'Bearer <JWT>'"},
    {BG_EFORBIDDEN, 403, "source_not_allowed", "the client address is not in policy.allow_cidrs"},
    {BG_EAUTH_TOO_LARGE, 401, "token_too_large", "the token is larger than 8 KiB"},
    {BG_EAUTH_ALG, 401, "bad_algorithm", "the token's alg is not RS256, RS384 or RS512"},
    {BG_EAUTH_NO_KID, 401, "missing_kid", "the token names no signing key (kid)"},
    {BG_EAUTH_UNKNOWN_KID, 401, "unknown_kid",
     "the token's signing key is not among the Connector's keys"},
    {BG_EAUTH_BAD_KEY, 401, "bad_key", "the signing key is not a usable RSA key"},
    {BG_EAUTH_SIGNATURE, 401, "bad_signature", "the token's signature does not verify"},
    {BG_EAUTH_ISSUER, 401, "bad_issuer", "the token's issuer is not the Bot Framework's"},
    {BG_EAUTH_AUDIENCE, 401, "bad_audience", "the token is not for this bot's app id"},
    {BG_EAUTH_NO_EXP, 401, "missing_expiry", "the token has no exp claim"},
    {BG_EAUTH_EXPIRED, 401, "token_expired", "the token has expired"},
    {BG_EAUTH_NOT_YET, 401, "token_not_yet_valid", "the token is not valid yet (nbf)"},
    {BG_EAUTH_SERVICEURL, 401, "serviceurl_mismatch",
     "the token's serviceurl is not the activity's serviceUrl"},
    {BG_EAUTH_ENDORSEMENT, 401, "channel_not_endorsed",
     "the signing key is not endorsed for the activity's channelId"},
    {BG_EAUTH_EMULATOR, 401, "emulator_not_allowed",
     "Emulator tokens are not accepted (auth.allow_emulator)"},
    {BG_EAUTH_APPID, 401, "bad_app_id", "the token's appid/azp is not this bot's app id"},
    {BG_EAUTH_SKILL, 401, "skill_token_refused", "skill tokens are not accepted"},
    {BG_EKEYS, 503, "keys_unavailable", "no signing keys could be fetched"},
    {BG_EHTTP, 400, "malformed_request", "the HTTP request is malformed"},
    {BG_EREDIS_DOWN, 503, "queue_unavailable", "the queue (Redis) is not reachable"},
    {BG_EREDIS_TIMEOUT, 503, "queue_timeout", "the queue (Redis) did not answer in time"},
    {BG_EREDIS_ERROR, 503, "queue_error", "the queue (Redis) refused the write"},
    {BG_EREPLICA, 503, "replica_ack_missing", "too few Redis replicas confirmed the write"},
    {BG_ESHUTDOWN, 503, "shutting_down", "botgate is shutting down"},
    {BG_EQUEUE_FULL, 503, "queue_full", "the queue holds redis.maxlen activities"},
    {BG_EBOT_TIMEOUT, 504, "bot_timeout", "the bot did not answer within the deadline"},
    {BG_EBOT_UNAVAILABLE, 502, "bot_unavailable", "the bot could not be reached"},
    {BG_EENTRY, 500, "bad_entry", "a queue entry could not be decoded"},
    {BG_ESHED_CONNECTIONS, 429, "too_many_connections",
     "policy.max_connections connections are open: a new one is closed"},
    {BG_ESHED_WRITES, 429, "too_many_writes",
     "policy.max_inflight_writes requests are waiting on the queue: try again"},
    {BG_ESHED_BODY, 429, "too_many_bytes",
     "policy.max_inflight_body_bytes of request bodies are in flight: try again"},
    {BG_ERELAY_PATH, 400, "bad_relay_path", "the relay path holds an id the relay refuses"},
    {BG_ERELAY_CONVERSATION, 404, "unknown_conversation",
     "no activity of this conversation was seen (or its entry expired)"},
    {BG_ERELAY_SECRET, 401, "bad_relay_secret",
     "the relay needs 'Authorization: Bearer <relay.secret>'"},
    {BG_ERELAY_TOKEN, 502, "connector_token_unavailable", "no Connector token could be obtained"},
    {BG_ERELAY_UNREACHABLE, 502, "connector_unreachable", "the Connector could not be reached"},
    {BG_ERELAY_TIMEOUT, 504, "connector_timeout", "the Connector did not answer in time"},
    {BG_ERELAY_SERVICE_URL, 502, "bad_service_url",
     "the conversation's stored serviceUrl is not one the relay calls"},
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
