/*
 * Fuzzes the token rules (policy/auth.c) and the verified-token cache: the bytes after
 * "Bearer ", which anyone who reaches the port controls.
 *
 * The key sets are made once, in LLVMFuzzerInitialize: two channel keys (one endorsed
 * for msteams and webchat, one without endorsements) and one Emulator key, generated with
 * tests/support/mint.c and parsed from the JWKS it writes, as botgate parses the real one.
 *
 * Input: one flag byte, then
 *   - flag bit 0 clear: the token bytes, as sent (the parser and every early refusal);
 *   - flag bit 0 set: a header JSON up to the first '\n' and a payload JSON after it,
 *     which this harness signs with key (flags >> 3) % 3: random bytes
 *     never carry a valid RSA signature, and this is how the fuzzer reaches what is
 *     checked after it (iss, aud, exp/nbf, serviceurl, endorsements, Emulator rules).
 * Bit 1 turns allow_emulator on, bit 2 require_endorsements off.
 *
 * Properties besides "no crash, no overread, no leak": answers are 0 or a BG_EAUTH_* /
 * BG_EKEYS / BG_ENOMEM code; a refusal has a terminated reason that never contains the
 * token; an accepted token fits the size limit, has a terminated kid naming a key of the
 * set it was verified against, and is an Emulator token only when those are allowed; the
 * cache returns what was put, and the request check gives the same answer on cached
 * claims.
 */
#include "fuzz.h"

#include "mint.h"

#include "botgate/auth.h"
#include "botgate/error.h"

#define NOW 1800000000 /* 2027-01-15: the seed tokens' exp lie around it */
#define CHANNEL_URL "https://smba.trafficmanager.net/emea/"

static bgt_key keys[3];
static bg_keyset *channel_keys, *emulator_keys;
static bg_token_cache *cache;

/* Generates the keys and parses their JWKS: once per process, never per input. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    FUZZ_CHECK(bgt_key_generate_rsa(&keys[0], "fuzz-k1", 2048) == 0);
    keys[0].endorsements[0] = "msteams";
    keys[0].endorsements[1] = "webchat";
    FUZZ_CHECK(bgt_key_generate_rsa(&keys[1], "fuzz-k2", 2048) == 0);
    FUZZ_CHECK(bgt_key_generate_rsa(&keys[2], "fuzz-emu", 2048) == 0);
    keys[2].no_endorsements_field = 1;
    char err[256];
    char *jwks = bgt_jwks_json(keys, 2);
    FUZZ_CHECK(jwks != NULL);
    FUZZ_CHECK(bg_keyset_parse(&channel_keys, jwks, strlen(jwks), err, sizeof(err)) == 0);
    free(jwks);
    jwks = bgt_jwks_json(&keys[2], 1);
    FUZZ_CHECK(jwks != NULL);
    FUZZ_CHECK(bg_keyset_parse(&emulator_keys, jwks, strlen(jwks), err, sizeof(err)) == 0);
    free(jwks);
    cache = bg_token_cache_new(64);
    FUZZ_CHECK(cache != NULL);
    return 0;
}

/* A code the rules may answer with. */
static int
auth_code(int rc)
{
    return rc == BG_ENOMEM || rc == BG_EKEYS || rc == BG_EAUTH_MALFORMED ||
           (rc <= BG_EAUTH_TOO_LARGE && rc >= BG_EAUTH_SKILL);
}

/*
 * A reason: terminated, and quoting no long piece of the token (it is a credential):
 * no segment of 24 bytes or more appears in it.
 */
static int
reason_ok(const char *err, size_t errlen, const char *token, size_t len)
{
    if (!fuzz_err_ok(err, errlen))
        return 0;
    size_t err_len = strlen(err);
    for (size_t start = 0; start < len;) {
        const char *dot = memchr(token + start, '.', len - start);
        size_t seg = dot != NULL ? (size_t)(dot - token) - start : len - start;
        if (seg >= 24 && memmem(err, err_len, token + start, seg) != NULL)
            return 0;
        start += seg + 1;
    }
    return 1;
}

/* The per-request rules on claims, against the activity the token claims to serve. */
static int
check(const bg_auth_params *p, const bg_auth_claims *c)
{
    char err[256];
    const char *url =
        c->service_url != NULL && c->service_url[0] != '\0' ? c->service_url : CHANNEL_URL;
    int rc = bg_auth_check_request(p, channel_keys, emulator_keys, c, url, "msteams", NOW, err,
                                   sizeof(err));
    FUZZ_CHECK(rc == 0 || auth_code(rc));
    FUZZ_CHECK(fuzz_err_ok(err, sizeof(err)));
    return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    data++, size--;
    bg_auth_params p = {
        .app_id = "fuzz-app-id",
        .issuer = "https://api.botframework.com",
        .clock_skew_s = 300,
        .require_endorsements = (flags & 4) == 0,
        .allow_emulator = (flags & 2) != 0,
        .emulator_tenant_id = "",
    };

    char *token;
    size_t len;
    if ((flags & 1) == 0) {
        token = fuzz_copy(data, size);
        len = size;
    } else {
        size_t header_len, payload_len;
        const uint8_t *payload;
        fuzz_split(data, size, &header_len, &payload, &payload_len);
        char *header = fuzz_cstr(data, header_len), *body = fuzz_cstr(payload, payload_len);
        bgt_mint m = {.key = &keys[(flags >> 3) % 3], .header_json = header, .payload_json = body};
        char *minted = bgt_mint_token(&m);
        free(header);
        free(body);
        if (minted == NULL)
            return 0;
        len = strlen(minted);
        token = fuzz_copy((const uint8_t *)minted, len);
        free(minted);
    }

    bg_auth_claims claims;
    char err[256];
    memset(&claims, 0, sizeof(claims));
    int rc = bg_auth_verify_token(&p, channel_keys, emulator_keys, token, len, &claims, err,
                                  sizeof(err));
    FUZZ_CHECK(rc == 0 || auth_code(rc));
    if (rc != 0) {
        FUZZ_CHECK(reason_ok(err, sizeof(err), token, len));
        free(token);
        return 0;
    }
    FUZZ_CHECK(len <= BG_AUTH_MAX_TOKEN);
    FUZZ_CHECK(memchr(claims.kid, '\0', sizeof(claims.kid)) != NULL);
    FUZZ_CHECK(bg_keyset_has_kid(claims.emulator ? emulator_keys : channel_keys, claims.kid));
    FUZZ_CHECK(!claims.emulator || p.allow_emulator);

    int first = check(&p, &claims);
    FUZZ_CHECK(bg_token_cache_put(cache, token, len, &claims) == 0);
    const bg_auth_claims *cached = bg_token_cache_get(cache, token, len, NOW, p.clock_skew_s);
    if (cached != NULL) {
        FUZZ_CHECK(cached->exp == claims.exp && cached->nbf == claims.nbf &&
                   cached->emulator == claims.emulator && strcmp(cached->kid, claims.kid) == 0);
        FUZZ_CHECK((cached->service_url == NULL) == (claims.service_url == NULL));
        FUZZ_CHECK(cached->service_url == NULL ||
                   strcmp(cached->service_url, claims.service_url) == 0);
        FUZZ_CHECK(check(&p, cached) == first);
    } else {
        FUZZ_CHECK(first == BG_EAUTH_EXPIRED); /* dropped only once past exp + skew */
    }
    bg_token_cache_prune_keys(cache, channel_keys, emulator_keys);
    bg_auth_claims_clear(&claims);
    free(token);
    return 0;
}
