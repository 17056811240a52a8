/*
 * Bot Framework channel-token authentication: the rules, as pure functions.
 *
 * The same checks the official SDKs make (botbuilder-js
 * libraries/botframework-connector/src/auth/, botbuilder-dotnet
 * Microsoft.Bot.Connector/Authentication/), tightened where they are lax; every
 * deviation is named in policy/auth.c and README.md. No I/O, no clock: keys arrive as
 * parsed key sets, the time as `now`.
 *
 * The check is split in two so that the RSA verification is paid once per token:
 *
 *   bg_auth_verify_token()   parse, alg, kid, signature, iss, aud (+ emulator rules):
 *                            what depends only on the token bytes and the key set.
 *                            Its result (bg_auth_claims) may be cached by token hash.
 *   bg_auth_check_request()  exp/nbf against now, serviceurl against the activity, the
 *                            key's endorsements against the channelId, the key still
 *                            present: what must be checked on every request.
 *
 * A request is authentic only when both return 0.
 */
#ifndef BOTGATE_AUTH_H
#define BOTGATE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define BG_AUTH_MAX_TOKEN 8192 /* larger tokens are refused without parsing */
#define BG_AUTH_KID_MAX 128

/* ---- key sets (JWKS) ------------------------------------------------------------------ */

typedef struct bg_keyset bg_keyset;

/*
 * Parses an OpenID metadata document and returns its jwks_uri (malloc'd). Only https://
 * URIs with a host and no space or control character are accepted. Returns 0,
 * BG_EAUTH_MALFORMED with a reason in err, BG_ENOMEM or BG_EINVAL.
 */
int bg_openid_jwks_uri(const char *json, size_t len, char **jwks_uri, char *err, size_t errlen);

/*
 * Parses a JWKS document ({"keys":[{"kty":"RSA","kid":..,"n":..,"e":..,"endorsements":[..]},..]})
 * into a key set. RSA keys are built from n/e with EVP_PKEY_fromdata (x5c is ignored, as
 * the SDKs ignore it). A key that cannot be used (no n/e, not RSA) is kept as unusable so
 * that a token naming it gets bad_key rather than unknown_kid; usable means kty "RSA",
 * use "sig" or absent, n of 1024 to 8192 bits, e odd and at most 64 bits, endorsements
 * absent or an array of strings. JWKs without a kid are skipped; of two with one kid the
 * first counts (as the SDK's findKey). Returns 0, or BG_EAUTH_MALFORMED with a reason in
 * err when the document is not a JWKS, has no keys or more than 256, or has no usable
 * key (so that a bad refresh never replaces a good set), or BG_ENOMEM.
 *
 * A key set is immutable once parsed: each RSA key and its verification contexts are
 * built here, once, and any number of threads may verify against one set at once.
 */
int bg_keyset_parse(bg_keyset **out, const char *json, size_t len, char *err, size_t errlen);
void bg_keyset_free(bg_keyset *keys);
/* The number of keys with a kid (usable or not); 0 for NULL. */
size_t bg_keyset_size(const bg_keyset *keys);
/* 1 when the set has a key with this kid (usable or not). */
int bg_keyset_has_kid(const bg_keyset *keys, const char *kid);

/* ---- the rules ------------------------------------------------------------------------ */

typedef struct bg_auth_params {
    const char *app_id;             /* audience; must be non-empty (auth on) */
    const char *issuer;             /* channel token issuer: https://api.botframework.com */
    int clock_skew_s;               /* tolerance on exp/nbf */
    int require_endorsements;       /* a key without endorsements is refused */
    int allow_emulator;             /* accept Emulator tokens (their own keys and issuers) */
    const char *emulator_tenant_id; /* extra AAD tenant for Emulator issuers; "" = none */
} bg_auth_params;

/* What a verified token says, enough to re-check a request without the signature. */
typedef struct bg_auth_claims {
    int64_t exp;  /* always present once verified */
    int64_t nbf;  /* 0 when absent */
    int emulator; /* verified against the Emulator key set */
    char kid[BG_AUTH_KID_MAX];
    char *service_url; /* the serviceurl claim (channel tokens); NULL for Emulator tokens
                          and for a channel token without one (check_request refuses) */
    unsigned char key_fingerprint[32]; /* SHA-256 of the verifying key's n || e: a key
                                          replaced under the same kid fails check_request */
} bg_auth_claims;

/*
 * Verifies token (the bytes after "Bearer "): size, JWS form, alg, kid, the signature
 * with the key named by kid in `channel_keys` (or, for an Emulator token when allowed, in
 * `emulator_keys`, which may be NULL), then iss and aud (and for Emulator tokens ver and
 * appid/azp). Does NOT look at exp/nbf or the activity: see bg_auth_check_request.
 * Returns 0 and fills claims (free with bg_auth_claims_clear), or a BG_EAUTH_* code with
 * a sentence in err (never the token). BG_EAUTH_UNKNOWN_KID tells the caller that a key
 * refresh may help; BG_EKEYS that the key set the token needs (channel, or Emulator) is
 * NULL. exp is required (BG_EAUTH_NO_EXP) and read here, but judged in check_request.
 * The issuer picks the key set before the signature is checked: p->issuer -> channel_keys;
 * one of the Emulator's AAD issuers -> emulator_keys, only with allow_emulator
 * (BG_EAUTH_EMULATOR otherwise); anything else -> BG_EAUTH_ISSUER. Skill tokens ->
 * BG_EAUTH_SKILL. Safe to call from several threads on the same key sets.
 */
int bg_auth_verify_token(const bg_auth_params *p, const bg_keyset *channel_keys,
                         const bg_keyset *emulator_keys, const char *token, size_t token_len,
                         bg_auth_claims *claims, char *err, size_t errlen);

/*
 * The per-request rules for verified claims: exp and nbf against now (with skew); for a
 * channel token, the serviceurl claim equal to the activity's serviceUrl byte for byte,
 * and the key (looked up again by kid in the current key set: a key rotated out fails)
 * endorsed for the activity's channelId. service_url and channel_id are the activity's
 * decoded values, already known non-blank. Expired when now >= exp + skew (jsonwebtoken's
 * boundary); not yet valid when nbf > now + skew. A key no longer in the set, or another
 * key under the same kid (fingerprint), gives BG_EAUTH_UNKNOWN_KID. Emulator tokens skip
 * serviceurl and endorsements, as the SDK does. Returns 0 or a BG_EAUTH_* code with err.
 */
int bg_auth_check_request(const bg_auth_params *p, const bg_keyset *channel_keys,
                          const bg_keyset *emulator_keys, const bg_auth_claims *claims,
                          const char *service_url, const char *channel_id, int64_t now, char *err,
                          size_t errlen);

void bg_auth_claims_clear(bg_auth_claims *claims);

/* ---- the verified-token cache --------------------------------------------------------- */

/*
 * Verified claims by SHA-256 of the token bytes, bounded (least recently used goes
 * first), each entry dropped once now > exp + skew. Pure: the time is a parameter.
 */
typedef struct bg_token_cache bg_token_cache;

bg_token_cache *bg_token_cache_new(size_t capacity);
void bg_token_cache_free(bg_token_cache *cache);
/* The cached claims for token, or NULL (absent or expired: then dropped). The pointer is
 * valid until the next call that changes the cache. */
const bg_auth_claims *bg_token_cache_get(bg_token_cache *cache, const char *token, size_t len,
                                         int64_t now, int clock_skew_s);
/* Stores a copy of claims for token. Returns 0 or BG_ENOMEM. */
int bg_token_cache_put(bg_token_cache *cache, const char *token, size_t len,
                       const bg_auth_claims *claims);
/* Drops every entry whose kid is no longer in keys (channel) / emulator_keys. */
void bg_token_cache_prune_keys(bg_token_cache *cache, const bg_keyset *channel_keys,
                               const bg_keyset *emulator_keys);
size_t bg_token_cache_size(const bg_token_cache *cache);

#endif
