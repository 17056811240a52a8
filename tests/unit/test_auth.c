/*
 * bg_auth_*, bg_keyset_*, bg_openid_jwks_uri: every accept and reject path of the Bot
 * Framework token rules, with real tokens minted here (tests/support/mint.c) by keys
 * generated at start. The clock is the constant NOW: the rules take the time as a
 * parameter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "botgate/auth.h"
#include "botgate/error.h"
#include "mint.h"

#define APP "8a8f0d3b-1c2e-4f5a-9b6c-7d8e9f0a1b2c"
#define ISS "https://api.botframework.com"
#define GOV_ISS "https://api.botframework.us"
#define SU "https://smba.trafficmanager.net/amer/"
#define EMU_V1_ISS "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/"
#define EMU_V2_ISS "https://login.microsoftonline.com/f8cdef31-a31e-4b4a-93e4-5f571e91255a/v2.0"
#define TENANT "0c4d4b2a-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
#define NOW ((int64_t)1750000000)

/*
 * The keys, made once for the whole run:
 *   big      2048-bit, endorsed for msteams, webchat, directline (the Teams-like key)
 *   k2       endorsed for webchat only
 *   bare     no "endorsements" member at all
 *   empty    "endorsements": []
 *   ec       an EC P-256 key published as kty EC (unusable here)
 *   other    never published: signs with a kid it does not own
 *   emu      the Emulator's (AAD) key set, no endorsements, as AAD publishes
 */
static bgt_key big, k2, bare, emptyk, ec, other, emu;
static bg_keyset *channel_keys, *emulator_keys;
static char *channel_jwks; /* the channel JWKS text, with an extra JWK "non" lacking n/e */

static bg_auth_params params = {
    .app_id = APP,
    .issuer = ISS,
    .clock_skew_s = 300,
    .require_endorsements = 1,
    .allow_emulator = 0,
    .emulator_tenant_id = "",
};

/* Appends a raw JWK (JSON object text) to a JWKS document; malloc'd. */
static char *
jwks_append(const char *jwks, const char *jwk_json)
{
    json_t *doc = json_loads(jwks, 0, NULL);
    json_t *k = json_loads(jwk_json, 0, NULL);
    assert_non_null(doc);
    assert_non_null(k);
    json_array_append_new(json_object_get(doc, "keys"), k);
    char *out = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return out;
}

static int
group_setup(void **state)
{
    (void)state;
    if (bgt_key_generate_rsa(&big, "big", 2048) != 0 || bgt_key_generate_rsa(&k2, "k2", 1024) ||
        bgt_key_generate_rsa(&bare, "bare", 1024) || bgt_key_generate_rsa(&emptyk, "empty", 1024) ||
        bgt_key_generate_ec(&ec, "ec") || bgt_key_generate_rsa(&other, "other", 1024) ||
        bgt_key_generate_rsa(&emu, "emu", 1024))
        return -1;
    big.endorsements[0] = "msteams";
    big.endorsements[1] = "webchat";
    big.endorsements[2] = "directline";
    k2.endorsements[0] = "webchat";
    bare.no_endorsements_field = 1;
    emu.no_endorsements_field = 1;

    bgt_key set[] = {big, k2, bare, emptyk, ec};
    char *jwks = bgt_jwks_json(set, 5);
    channel_jwks = jwks_append(jwks, "{\"kty\":\"RSA\",\"kid\":\"non\",\"use\":\"sig\"}");
    free(jwks);
    char err[256];
    if (bg_keyset_parse(&channel_keys, channel_jwks, strlen(channel_jwks), err, sizeof(err)) != 0)
        return -1;
    char *ejwks = bgt_jwks_json(&emu, 1);
    int rc = bg_keyset_parse(&emulator_keys, ejwks, strlen(ejwks), err, sizeof(err));
    free(ejwks);
    return rc;
}

static int
group_teardown(void **state)
{
    (void)state;
    bg_keyset_free(channel_keys);
    bg_keyset_free(emulator_keys);
    free(channel_jwks);
    bgt_key *all[] = {&big, &k2, &bare, &emptyk, &ec, &other, &emu};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        bgt_key_free(all[i]);
    return 0;
}

/* A channel token as the Connector mints it: good for an hour, valid from a minute ago. */
static bgt_mint
channel_mint(const bgt_key *key)
{
    bgt_mint m = {0};
    m.key = key;
    m.iss = ISS;
    m.aud = APP;
    m.serviceurl = SU;
    m.exp = NOW + 3600;
    m.exp_set = 1;
    m.nbf = NOW - 60;
    m.nbf_set = 1;
    m.iat = NOW - 60;
    m.iat_set = 1;
    return m;
}

/* An Emulator token: an AAD issuer, the emu key, ver/appid or azp per version. */
static bgt_mint
emulator_mint(const char *iss, const char *extra)
{
    bgt_mint m = channel_mint(&emu);
    m.iss = iss;
    m.serviceurl = NULL;
    m.extra_claims = extra;
    return m;
}

/*
 * Verifies a token string with params p: the code, and on failure the rule that err holds
 * a sentence and never a piece of the token (a 16-byte run from each segment).
 */
static int
verify_str(const bg_auth_params *p, const char *tok, bg_auth_claims *claims)
{
    char err[256];
    memset(err, 'x', sizeof(err));
    int rc = bg_auth_verify_token(p, channel_keys, emulator_keys, tok, strlen(tok), claims, err,
                                  sizeof(err));
    if (rc != 0) {
        assert_true(strlen(err) > 10);
        const char *seg = tok;
        for (int i = 0; i < 3 && seg != NULL; i++) {
            if (strlen(seg) >= 16) {
                char piece[17];
                memcpy(piece, seg, 16);
                piece[16] = '\0';
                if (strstr(err, piece) != NULL)
                    fail_msg("err quotes the token: %s", err);
            }
            seg = strchr(seg, '.');
            seg = seg ? seg + 1 : NULL;
        }
    } else {
        assert_string_equal(err, "");
    }
    return rc;
}

/* Mints m and verifies it; the claims are cleared unless the caller wants them. */
static int
verify_p(const bg_auth_params *p, const bgt_mint *m, bg_auth_claims *out)
{
    char *tok = bgt_mint_token(m);
    assert_non_null(tok);
    bg_auth_claims claims;
    int rc = verify_str(p, tok, &claims);
    free(tok);
    if (out != NULL)
        *out = claims;
    else
        bg_auth_claims_clear(&claims);
    return rc;
}

static int
verify_m(const bgt_mint *m)
{
    return verify_p(&params, m, NULL);
}

/* The whole check for a request: verify, then the per-request rules at `now`. */
static int
full_at(const bg_auth_params *p, const bgt_mint *m, const char *service_url, const char *channel,
        int64_t now)
{
    bg_auth_claims claims;
    int rc = verify_p(p, m, &claims);
    if (rc != 0)
        return rc;
    char err[256];
    rc = bg_auth_check_request(p, channel_keys, emulator_keys, &claims, service_url, channel, now,
                               err, sizeof(err));
    if (rc != 0)
        assert_true(strlen(err) > 10);
    bg_auth_claims_clear(&claims);
    return rc;
}

static int
full_m(const bgt_mint *m, const char *channel)
{
    return full_at(&params, m, SU, channel, NOW);
}

/* ---- accepted ----------------------------------------------------------------------- */

static void
test_rs256_accepted_2048(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&big);
    bg_auth_claims c;
    assert_int_equal(verify_p(&params, &m, &c), 0);
    assert_int_equal(c.exp, NOW + 3600);
    assert_int_equal(c.nbf, NOW - 60);
    assert_int_equal(c.emulator, 0);
    assert_string_equal(c.kid, "big");
    assert_string_equal(c.service_url, SU);
    assert_int_equal(bg_auth_check_request(&params, channel_keys, emulator_keys, &c, SU, "msteams",
                                           NOW, NULL, 0),
                     0);
    bg_auth_claims_clear(&c);
    bg_auth_claims_clear(&c); /* twice is harmless */
    assert_null(c.service_url);
}

static void
test_rs384_rs512_accepted(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.alg = "RS384";
    assert_int_equal(full_m(&m, "webchat"), 0);
    m.alg = "RS512";
    assert_int_equal(full_m(&m, "webchat"), 0);
    m.key = &big;
    assert_int_equal(full_m(&m, "msteams"), 0);
}

/* The Connector's real header carries x5t and typ besides alg and kid. */
static void
test_connector_header_shape_accepted(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.header_json = "{\"alg\":\"RS256\",\"kid\":\"k2\",\"x5t\":\"k2\",\"typ\":\"JWT\"}";
    assert_int_equal(full_m(&m, "webchat"), 0);
}

/* ---- the signature and the algorithm ------------------------------------------------ */

static void
test_flipped_signature_byte(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&big);
    char *tok = bgt_mint_token(&m);
    char *sig = strrchr(tok, '.') + 1;
    size_t mid = strlen(sig) / 2;
    sig[mid] = sig[mid] == 'A' ? 'B' : 'A';
    bg_auth_claims c;
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_SIGNATURE);
    /* a payload swapped in under the same signature (another serviceurl) breaks it too */
    free(tok);
    tok = bgt_mint_token(&m);
    assert_int_equal(verify_str(&params, tok, &c), 0);
    bg_auth_claims_clear(&c);
    bgt_mint evil = m;
    evil.serviceurl = "https://evil.example/";
    char *etok = bgt_mint_token(&evil);
    char spliced[BG_AUTH_MAX_TOKEN];
    snprintf(spliced, sizeof(spliced), "%.*s%s", (int)(strrchr(etok, '.') - etok), etok,
             strrchr(tok, '.'));
    assert_int_equal(verify_str(&params, spliced, &c), BG_EAUTH_SIGNATURE);
    free(etok);
    free(tok);
}

static void
test_signature_truncated_or_empty(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    char *tok = bgt_mint_token(&m);
    bg_auth_claims c;
    size_t len = strlen(tok);
    tok[len - 3] = '\0'; /* 168 characters: 126 bytes, 2 short */
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_SIGNATURE);
    *(strrchr(tok, '.') + 1) = '\0'; /* no signature at all */
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_SIGNATURE);
    free(tok);
}

static void
test_wrong_key_same_kid(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&other);
    m.kid = "k2";
    assert_int_equal(verify_m(&m), BG_EAUTH_SIGNATURE);
}

/* A token signed with RS256 but labelled RS512 (or the reverse) does not verify. */
static void
test_alg_label_mismatch(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.header_json = "{\"alg\":\"RS512\",\"kid\":\"k2\"}";
    m.alg = "RS256";
    assert_int_equal(verify_m(&m), BG_EAUTH_SIGNATURE);
}

static void
test_no_kid(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.omit_kid = 1;
    assert_int_equal(verify_m(&m), BG_EAUTH_NO_KID);
    m.omit_kid = 0;
    m.kid = "";
    assert_int_equal(verify_m(&m), BG_EAUTH_NO_KID);
    m.header_json = "{\"alg\":\"RS256\",\"kid\":5}";
    assert_int_equal(verify_m(&m), BG_EAUTH_NO_KID);
    m.header_json = "{\"alg\":\"RS256\",\"kid\":\"\"}";
    assert_int_equal(verify_m(&m), BG_EAUTH_NO_KID);
}

static void
test_unknown_kid(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&other);
    assert_int_equal(verify_m(&m), BG_EAUTH_UNKNOWN_KID);
    /* a kid that differs only in case is another kid */
    m = channel_mint(&k2);
    m.kid = "K2";
    assert_int_equal(verify_m(&m), BG_EAUTH_UNKNOWN_KID);
    /* the Emulator's key cannot sign a channel token */
    m = channel_mint(&emu);
    assert_int_equal(verify_m(&m), BG_EAUTH_UNKNOWN_KID);
}

/* The err sentence names the kid, but only as printable ASCII, quotes replaced. */
static void
test_unknown_kid_message_is_sanitised(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.kid = "evil\"\n\x01kid";
    char *tok = bgt_mint_token(&m);
    bg_auth_claims c;
    char err[256];
    assert_int_equal(bg_auth_verify_token(&params, channel_keys, emulator_keys, tok, strlen(tok),
                                          &c, err, sizeof(err)),
                     BG_EAUTH_UNKNOWN_KID);
    assert_non_null(strstr(err, "evil???kid"));
    for (const char *s = err; *s; s++)
        assert_true(*s >= 0x20 && *s < 0x7f);
    free(tok);
}

static void
test_alg_none(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.alg = "none";
    assert_int_equal(verify_m(&m), BG_EAUTH_ALG);
    m.alg = "None";
    m.key = NULL;
    m.kid = "k2";
    assert_int_equal(verify_m(&m), BG_EAUTH_ALG);
}

/* The classic confusion: HMAC keyed with the RSA public key's PEM. */
static void
test_alg_hs256_with_public_key(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.alg = "HS256";
    assert_int_equal(verify_m(&m), BG_EAUTH_ALG);
}

static void
test_alg_es256(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&ec);
    m.alg = "ES256";
    assert_int_equal(verify_m(&m), BG_EAUTH_ALG);
    /* labelled RS256 but the kid names the EC key: not an RSA key */
    m.alg = "RS256";
    m.key = &k2;
    m.kid = "ec";
    assert_int_equal(verify_m(&m), BG_EAUTH_BAD_KEY);
}

static void
test_alg_missing_or_other(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.header_json = "{\"kid\":\"k2\",\"typ\":\"JWT\"}";
    assert_int_equal(verify_m(&m), BG_EAUTH_ALG);
    const char *headers[] = {
        "{\"alg\":\"rs256\",\"kid\":\"k2\"}",  "{\"alg\":\"PS256\",\"kid\":\"k2\"}",
        "{\"alg\":\"RS256 \",\"kid\":\"k2\"}", "{\"alg\":[\"RS256\"],\"kid\":\"k2\"}",
        "{\"alg\":null,\"kid\":\"k2\"}",       "{\"alg\":\"RS1\",\"kid\":\"k2\"}",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        m.header_json = headers[i];
        assert_int_equal(verify_m(&m), BG_EAUTH_ALG);
    }
}

static void
test_key_without_n_e(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.kid = "non";
    assert_int_equal(verify_m(&m), BG_EAUTH_BAD_KEY);
}

static void
test_crit_header_refused(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.header_json = "{\"alg\":\"RS256\",\"kid\":\"k2\",\"crit\":[\"exp\"]}";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
}

/* ---- exp and nbf -------------------------------------------------------------------- */

static void
test_exp_missing(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.exp_set = 0;
    assert_int_equal(verify_m(&m), BG_EAUTH_NO_EXP);
    m.extra_claims = "\"exp\":null";
    assert_int_equal(verify_m(&m), BG_EAUTH_NO_EXP);
}

static void
test_exp_not_a_number(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.exp_set = 0;
    const char *bad[] = {"\"exp\":\"1750003600\"", "\"exp\":true", "\"exp\":[1750003600]",
                         "\"exp\":{}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m.extra_claims = bad[i];
        assert_int_equal(verify_m(&m), BG_EAUTH_NO_EXP);
    }
    /* beyond what a date can be; past 64 bits jansson itself refuses it */
    m.extra_claims = "\"exp\":1e300";
    assert_int_equal(verify_m(&m), BG_EAUTH_NO_EXP);
    m.extra_claims = "\"exp\":99999999999999999999";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
}

static void
test_expired_outside_skew(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.exp = NOW - 301;
    m.nbf = NOW - 3600;
    assert_int_equal(full_m(&m, "webchat"), BG_EAUTH_EXPIRED);
    m.exp = NOW - 300; /* jsonwebtoken: now >= exp + skew is expired */
    assert_int_equal(full_m(&m, "webchat"), BG_EAUTH_EXPIRED);
    m.exp = NOW - 86400 * 365;
    assert_int_equal(full_m(&m, "webchat"), BG_EAUTH_EXPIRED);
}

static void
test_expired_inside_skew(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.nbf = NOW - 3600;
    m.exp = NOW - 299;
    assert_int_equal(full_m(&m, "webchat"), 0);
    m.exp = NOW - 1;
    assert_int_equal(full_m(&m, "webchat"), 0);
    /* with no skew configured, exp == now is already expired */
    bg_auth_params p = params;
    p.clock_skew_s = 0;
    m.exp = NOW + 1;
    assert_int_equal(full_at(&p, &m, SU, "webchat", NOW), 0);
    m.exp = NOW;
    assert_int_equal(full_at(&p, &m, SU, "webchat", NOW), BG_EAUTH_EXPIRED);
}

static void
test_nbf_future_inside_skew(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.nbf = NOW + 299;
    assert_int_equal(full_m(&m, "webchat"), 0);
    m.nbf = NOW + 300;
    assert_int_equal(full_m(&m, "webchat"), 0);
    m.nbf_set = 0; /* nbf is optional */
    assert_int_equal(full_m(&m, "webchat"), 0);
}

static void
test_nbf_future_outside_skew(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.nbf = NOW + 301;
    assert_int_equal(full_m(&m, "webchat"), BG_EAUTH_NOT_YET);
    m.nbf_set = 0;
    m.extra_claims = "\"nbf\":\"soon\"";
    assert_int_equal(full_m(&m, "webchat"), BG_EAUTH_MALFORMED);
}

/* A NumericDate may have a fraction: exp rounds down, nbf up (the stricter way). */
static void
test_fractional_dates(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.exp_set = m.nbf_set = 0;
    m.extra_claims = "\"exp\":1750003600.9,\"nbf\":1749999999.2";
    bg_auth_claims c;
    assert_int_equal(verify_p(&params, &m, &c), 0);
    assert_int_equal(c.exp, NOW + 3600);
    assert_int_equal(c.nbf, NOW);
    bg_auth_claims_clear(&c);
}

/* ---- audience and issuer ------------------------------------------------------------ */

static void
test_aud_missing(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.aud = NULL;
    assert_int_equal(verify_m(&m), BG_EAUTH_AUDIENCE);
}

static void
test_aud_other(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.aud = "11111111-2222-3333-4444-555555555555";
    assert_int_equal(verify_m(&m), BG_EAUTH_AUDIENCE);
    m.aud = "8A8F0D3B-1C2E-4F5A-9B6C-7D8E9F0A1B2C"; /* the app id in upper case */
    assert_int_equal(verify_m(&m), BG_EAUTH_AUDIENCE);
    m.aud = "";
    assert_int_equal(verify_m(&m), BG_EAUTH_AUDIENCE);
}

static void
test_aud_botframework(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.aud = "https://api.botframework.com";
    assert_int_equal(verify_m(&m), BG_EAUTH_AUDIENCE);
}

/* An array audience is refused even when it holds the app id (JS SDK: `===` never matches
 * an array; .NET would take the first). */
static void
test_aud_array(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.aud = NULL;
    m.extra_claims = "\"aud\":[\"" APP "\"]";
    assert_int_equal(verify_m(&m), BG_EAUTH_AUDIENCE);
    m.extra_claims = "\"aud\":5";
    assert_int_equal(verify_m(&m), BG_EAUTH_AUDIENCE);
}

static void
test_iss_missing(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.iss = NULL;
    assert_int_equal(verify_m(&m), BG_EAUTH_ISSUER);
    m.extra_claims = "\"iss\":[\"" ISS "\"]";
    assert_int_equal(verify_m(&m), BG_EAUTH_ISSUER);
}

static void
test_iss_other(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    const char *bad[] = {"https://api.botframework.com/", "http://api.botframework.com",
                         "https://API.botframework.com", "https://evil.example",
                         "https://sts.windows.net/" TENANT "/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m.iss = bad[i];
        assert_int_equal(verify_m(&m), BG_EAUTH_ISSUER);
    }
}

/* The US government issuer is refused by the public-cloud configuration and accepted by
 * one configured for it. */
static void
test_iss_government(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.iss = GOV_ISS;
    assert_int_equal(verify_m(&m), BG_EAUTH_ISSUER);
    bg_auth_params gov = params;
    gov.issuer = GOV_ISS;
    assert_int_equal(full_at(&gov, &m, SU, "webchat", NOW), 0);
    m.iss = ISS;
    assert_int_equal(verify_p(&gov, &m, NULL), BG_EAUTH_ISSUER);
}

/* ---- serviceurl --------------------------------------------------------------------- */

static void
test_serviceurl_missing(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.serviceurl = NULL;
    assert_int_equal(verify_m(&m), 0); /* verified; refused per request */
    assert_int_equal(full_m(&m, "webchat"), BG_EAUTH_SERVICEURL);
    m.extra_claims = "\"serviceurl\":5";
    assert_int_equal(full_m(&m, "webchat"), BG_EAUTH_SERVICEURL);
}

static void
test_serviceurl_camel_cased(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.serviceurl = NULL;
    m.extra_claims = "\"serviceUrl\":\"" SU "\"";
    assert_int_equal(full_m(&m, "webchat"), BG_EAUTH_SERVICEURL);
}

static void
test_serviceurl_different(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    assert_int_equal(full_at(&params, &m, "https://smba.trafficmanager.net/emea/", "webchat", NOW),
                     BG_EAUTH_SERVICEURL);
    assert_int_equal(full_at(&params, &m, "https://evil.example/", "webchat", NOW),
                     BG_EAUTH_SERVICEURL);
}

static void
test_serviceurl_case_only(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    assert_int_equal(full_at(&params, &m, "https://SMBA.trafficmanager.net/amer/", "webchat", NOW),
                     BG_EAUTH_SERVICEURL);
    assert_int_equal(full_at(&params, &m, "HTTPS://smba.trafficmanager.net/amer/", "webchat", NOW),
                     BG_EAUTH_SERVICEURL);
}

static void
test_serviceurl_trailing_slash(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    assert_int_equal(full_at(&params, &m, "https://smba.trafficmanager.net/amer", "webchat", NOW),
                     BG_EAUTH_SERVICEURL);
    m.serviceurl = "https://smba.trafficmanager.net/amer";
    assert_int_equal(full_m(&m, "webchat"), BG_EAUTH_SERVICEURL);
}

/* Escapes in the claim are decoded before comparing: the claim and the activity compare as
 * the strings they denote. */
static void
test_serviceurl_escaped_in_claim(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.serviceurl = NULL;
    m.extra_claims = "\"serviceurl\":\"https:\\/\\/smba.trafficmanager.net\\/amer\\u002f\"";
    assert_int_equal(full_m(&m, "webchat"), 0);
}

/* ---- endorsements ------------------------------------------------------------------- */

static void
test_channel_endorsed_among_several(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&big);
    assert_int_equal(full_m(&m, "webchat"), 0);
    assert_int_equal(full_m(&m, "directline"), 0);
    assert_int_equal(full_m(&m, "msteams"), 0);
}

static void
test_channel_not_endorsed(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    assert_int_equal(full_m(&m, "msteams"), BG_EAUTH_ENDORSEMENT);
    assert_int_equal(full_m(&m, "WebChat"), BG_EAUTH_ENDORSEMENT); /* case-sensitive */
    assert_int_equal(full_m(&m, "webcha"), BG_EAUTH_ENDORSEMENT);
    m = channel_mint(&big);
    assert_int_equal(full_m(&m, "slack"), BG_EAUTH_ENDORSEMENT);
}

static void
test_key_without_endorsements(void **state)
{
    (void)state;
    bg_auth_params lax = params;
    lax.require_endorsements = 0;
    bgt_mint m = channel_mint(&bare);
    assert_int_equal(full_m(&m, "webchat"), BG_EAUTH_ENDORSEMENT);
    assert_int_equal(full_at(&lax, &m, SU, "webchat", NOW), 0);
    m = channel_mint(&emptyk);
    assert_int_equal(full_m(&m, "webchat"), BG_EAUTH_ENDORSEMENT);
    assert_int_equal(full_at(&lax, &m, SU, "webchat", NOW), 0);
    /* the lax setting never excuses a key that HAS endorsements */
    m = channel_mint(&k2);
    assert_int_equal(full_at(&lax, &m, SU, "msteams", NOW), BG_EAUTH_ENDORSEMENT);
}

/* ---- malformed tokens --------------------------------------------------------------- */

static void
test_malformed_base64url(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    char *good = bgt_mint_token(&m);
    bg_auth_claims c;
    char tok[BG_AUTH_MAX_TOKEN + 8];
    size_t hlen = (size_t)(strchr(good, '.') - good);

    /* '+' and '/' (standard base64) in the header */
    snprintf(tok, sizeof(tok), "%s", good);
    tok[3] = '+';
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_MALFORMED);
    tok[3] = '/';
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_MALFORMED);
    /* whitespace inside the payload */
    snprintf(tok, sizeof(tok), "%s", good);
    tok[hlen + 5] = ' ';
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_MALFORMED);
    /* padding on the signature */
    snprintf(tok, sizeof(tok), "%s==", good);
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_MALFORMED);
    /* a segment of length 1 mod 4 */
    snprintf(tok, sizeof(tok), "%.*sA%s", (int)hlen, good, good + hlen);
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_MALFORMED);
    /* a NUL inside the token bytes */
    snprintf(tok, sizeof(tok), "%s", good);
    tok[2] = '\0';
    assert_int_equal(
        bg_auth_verify_token(&params, channel_keys, emulator_keys, tok, strlen(good), &c, NULL, 0),
        BG_EAUTH_MALFORMED);
    free(good);
}

/* Non-canonical trailing bits: the last character of a segment carries unused low bits
 * that a lax decoder ignores; here they must be zero, so that one token has one spelling. */
static void
test_noncanonical_base64url(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    char *tok = bgt_mint_token(&m);
    bg_auth_claims c;
    assert_int_equal(verify_str(&params, tok, &c), 0);
    bg_auth_claims_clear(&c);
    /* 1024-bit signature: 128 bytes = 171 characters; the last 3 carry 18 bits for 16 */
    char *last = tok + strlen(tok) - 1;
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int v = (int)(strchr(alpha, *last) - alpha);
    assert_int_equal(v & 3, 0);
    *last = alpha[v | 1];
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_MALFORMED);
    free(tok);
}

static void
test_segment_count(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    char *good = bgt_mint_token(&m);
    char tok[BG_AUTH_MAX_TOKEN + 8];
    bg_auth_claims c;
    /* two segments */
    snprintf(tok, sizeof(tok), "%.*s", (int)(strrchr(good, '.') - good), good);
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_MALFORMED);
    /* four segments */
    snprintf(tok, sizeof(tok), "%s.AAAA", good);
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_MALFORMED);
    snprintf(tok, sizeof(tok), "%s.", good);
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_MALFORMED);
    /* one, none, just dots */
    assert_int_equal(verify_str(&params, "abc", &c), BG_EAUTH_MALFORMED);
    assert_int_equal(verify_str(&params, "..", &c), BG_EAUTH_MALFORMED);
    assert_int_equal(bg_auth_verify_token(&params, channel_keys, emulator_keys, "", 0, &c, NULL, 0),
                     BG_EAUTH_MALFORMED);
    /* five segments: the JWE compact form */
    snprintf(tok, sizeof(tok), "%s.AAAA.AAAA", good);
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_MALFORMED);
    free(good);
}

static void
test_header_or_payload_not_json(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.header_json = "{\"alg\":\"RS256\",\"kid\":\"k2\"";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
    m.header_json = "[\"RS256\"]";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
    m.header_json = "";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
    m.header_json = NULL;
    m.payload_json = "not json";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
    m.payload_json = "\"" ISS "\"";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
    m.payload_json = "{\"iss\":\"" ISS "\"} trailing";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
    m.payload_json = "{\"iss\":\"\xff\"}"; /* not UTF-8 */
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
}

/* A claim given twice is refused: JSON.parse would keep the last, others the first. */
static void
test_duplicate_claims(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.extra_claims = "\"aud\":\"" APP "\"";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
    m.extra_claims = "\"serviceurl\":\"https://evil.example/\"";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
    m.extra_claims = NULL;
    m.header_json = "{\"alg\":\"RS256\",\"kid\":\"other\",\"kid\":\"k2\"}";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED);
}

static void
test_token_over_limit(void **state)
{
    (void)state;
    char *tok = malloc(BG_AUTH_MAX_TOKEN + 2);
    memset(tok, 'A', BG_AUTH_MAX_TOKEN + 1);
    tok[BG_AUTH_MAX_TOKEN + 1] = '\0';
    bg_auth_claims c;
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_TOO_LARGE);
    /* exactly at the limit is parsed (and here malformed) */
    tok[BG_AUTH_MAX_TOKEN] = '\0';
    assert_int_equal(verify_str(&params, tok, &c), BG_EAUTH_MALFORMED);
    free(tok);
    /* a genuine token padded past the limit with a big claim */
    bgt_mint m = channel_mint(&k2);
    char *extra = malloc(7000);
    int n = snprintf(extra, 7000, "\"pad\":\"");
    memset(extra + n, 'x', 6500);
    strcpy(extra + n + 6500, "\"");
    m.extra_claims = extra;
    assert_int_equal(verify_m(&m), BG_EAUTH_TOO_LARGE);
    free(extra);
}

/*
 * The token's JSON reader (policy/json.c, as policy/auth.c drives it) against jansson with
 * JSON_REJECT_DUPLICATES: each payload below, in a token with a good header, must be refused as
 * malformed exactly when jansson refuses it or it is not an object. Accepted payloads carry no iss,
 * so they stop at bad_issuer.
 */
static int
verify_raw_payload(const char *payload, size_t len)
{
    const char header[] = "{\"alg\":\"RS256\",\"kid\":\"k2\"}";
    char *h = bgt_b64url_encode((const unsigned char *)header, sizeof(header) - 1);
    char *pl = bgt_b64url_encode((const unsigned char *)payload, len);
    char tok[BG_AUTH_MAX_TOKEN + 1];
    int n = snprintf(tok, sizeof(tok), "%s.%s.AAAA", h, pl);
    free(h);
    free(pl);
    assert_true(n > 0 && (size_t)n < sizeof(tok));
    bg_auth_claims c;
    return bg_auth_verify_token(&params, channel_keys, emulator_keys, tok, (size_t)n, &c, NULL, 0);
}

static void
test_json_reader_agrees_with_jansson(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "{}",
        " \t\r\n{ \"a\" : 1 } \n",
        "{\"a\":1,}",
        "{,}",
        "{\"a\":1 \"b\":2}",
        "{'a':1}",
        "{a:1}",
        "{\"a\"}",
        "{\"a\":}",
        "{",
        "",
        " ",
        "[1]",
        "\"s\"",
        "1",
        "null",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "{\f}",
        "{\"a\":[1,2.5e3,-0,true,false,null,{\"b\":\"c\"},[]]}",
        "{\"a\":[1,]}",
        "{\"a\":[,1]}",
        "{\"a\":{\"b\"}}",
        "{\"a\":{\"b\":1,}}",
        "{\"a\":[}",
        /* numbers */
        "{\"a\":01}",
        "{\"a\":-01}",
        "{\"a\":00}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":-}",
        "{\"a\":1e}",
        "{\"a\":1e+}",
        "{\"a\":1E+2}",
        "{\"a\":+1}",
        "{\"a\":-0.0e-0}",
        "{\"a\":0e5}",
        "{\"a\":1.5E-3}",
        "{\"a\":9223372036854775807}",
        "{\"a\":9223372036854775808}",
        "{\"a\":-9223372036854775808}",
        "{\"a\":-9223372036854775809}",
        "{\"a\":99999999999999999999999}",
        "{\"a\":1e400}",
        "{\"a\":-1e400}",
        "{\"a\":1e-400}",
        "{\"a\":[99999999999999999999]}",
        "{\"a\":[1e999]}",
        ("{\"a\":1.00000000000000000000000000000000000000000000000000000000000000000000000000000"
         "0000000000000000000000000000000000000000000000000000000000000000000001}"),
        "{\"a\":0x10}",
        "{\"a\":Infinity}",
        "{\"a\":NaN}",
        "{\"a\":1 2}",
        /* literals */
        "{\"a\":tru}",
        "{\"a\":True}",
        "{\"a\":nul}",
        "{\"a\":nulls}",
        "{\"a\":falsey}",
        /* escapes */
        "{\"a\":\"\\u0000\"}",
        "{\"a\\u0000\":1}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\\ud83d\\udc4b\"}",
        "{\"a\":\"\\uD83D\\uDC4B\"}",
        "{\"a\":\"\\ud83d\\u0041\"}",
        "{\"a\":\"\\ud83d\"}",
        "{\"a\":\"\\ud83d\\\"}",
        "{\"a\":\"\\x41\"}",
        "{\"a\":\"\\'\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\u12G4\"}",
        "{\"a\":\"\\/\\b\\f\\n\\r\\t\\\\\\\"\"}",
        "{\"a\":\"\\\"}",
        "{\"a\":\"\\u00e9\\u20ac\"}",
        "{\"a\":\"unterminated}",
        /* raw bytes in strings */
        "{\"a\":\"\x01\"}",
        "{\"a\":\"\t\"}",
        "{\"a\":\"\x7f\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xf4\x90\x80\x80\"}",
        "{\"a\":\"\xe2\x82\"}",
        "{\"a\":\"\x80\"}",
        "{\"a\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}",
        "{\"a\":\"\xf8\"}",
        "{\"\xc3\xa9\":1}",
        "{\"a\":1}\xc3\xa9",
        "\xef\xbb\xbf{}",
        /* duplicates at the top level, also after decoding */
        "{\"a\":1,\"a\":2}",
        "{\"a\":1,\"\\u0061\":2}",
        "{\"a\":1,\"A\":2}",
        "{\"\":1,\"\":2}",
        /* nesting */
        "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_error_t jerr;
        json_t *j = json_loads(cases[i], JSON_REJECT_DUPLICATES, &jerr);
        int jansson_ok = j != NULL && json_is_object(j);
        json_decref(j);
        int rc = verify_raw_payload(cases[i], strlen(cases[i]));
        if ((rc != BG_EAUTH_MALFORMED) != jansson_ok)
            fail_msg("case %zu %s: rc %d, jansson %s", i, cases[i], rc,
                     jansson_ok ? "accepts" : "refuses");
    }
    /* a raw NUL byte, inside a string and outside */
    assert_int_equal(verify_raw_payload("{\"a\":\"x\0y\"}", 11), BG_EAUTH_MALFORMED);
    assert_int_equal(verify_raw_payload("{\"a\":1}\0", 8), BG_EAUTH_MALFORMED);
    /* The two documented differences: a duplicate inside a nested object is not looked
     * for (nothing nested is read), and nesting stops at 32 levels. */
    assert_int_equal(verify_raw_payload("{\"a\":{\"b\":1,\"b\":2}}", 19), BG_EAUTH_ISSUER);
    char deep[128];
    memset(deep, 0, sizeof(deep));
    strcpy(deep, "{\"a\":");
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    assert_int_equal(verify_raw_payload(deep, strlen(deep)), BG_EAUTH_MALFORMED);
}

/* Claims are read after decoding: escaped names and values count as what they denote. */
static void
test_json_escapes_in_claims(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    m.payload_json = "{\"\\u0069ss\":\"https:\\/\\/api.botframework.com\",\"aud\":\"" APP
                     "\",\"serviceurl\":\"" SU "\",\"\\u0065xp\":1750003600}";
    assert_int_equal(full_m(&m, "webchat"), 0);
    m.payload_json = "{\"iss\":\"" ISS "\",\"aud\":\"" APP "\",\"serviceurl\":\"" SU
                     "\",\"exp\":1750003600,\"e\\u0078p\":1}";
    assert_int_equal(verify_m(&m), BG_EAUTH_MALFORMED); /* exp twice */
}

/* ---- Emulator tokens ---------------------------------------------------------------- */

static void
test_emulator_off(void **state)
{
    (void)state;
    bgt_mint m = emulator_mint(EMU_V1_ISS, "\"ver\":\"1.0\",\"appid\":\"" APP "\"");
    assert_int_equal(verify_m(&m), BG_EAUTH_EMULATOR);
    m.iss = EMU_V2_ISS;
    m.extra_claims = "\"ver\":\"2.0\",\"azp\":\"" APP "\"";
    assert_int_equal(verify_m(&m), BG_EAUTH_EMULATOR);
}

static void
test_emulator_v1_appid(void **state)
{
    (void)state;
    bg_auth_params p = params;
    p.allow_emulator = 1;
    bgt_mint m = emulator_mint(EMU_V1_ISS, "\"ver\":\"1.0\",\"appid\":\"" APP "\"");
    bg_auth_claims c;
    assert_int_equal(verify_p(&p, &m, &c), 0);
    assert_int_equal(c.emulator, 1);
    assert_null(c.service_url);
    /* no serviceurl or endorsement check for the Emulator, whatever the activity says */
    assert_int_equal(bg_auth_check_request(&p, channel_keys, emulator_keys, &c,
                                           "http://localhost:1234", "emulator", NOW, NULL, 0),
                     0);
    /* but time still counts */
    assert_int_equal(bg_auth_check_request(&p, channel_keys, emulator_keys, &c,
                                           "http://localhost:1234", "emulator", NOW + 7200, NULL,
                                           0),
                     BG_EAUTH_EXPIRED);
    bg_auth_claims_clear(&c);
}

static void
test_emulator_v2_azp(void **state)
{
    (void)state;
    bg_auth_params p = params;
    p.allow_emulator = 1;
    bgt_mint m = emulator_mint(EMU_V2_ISS, "\"ver\":\"2.0\",\"azp\":\"" APP "\"");
    assert_int_equal(full_at(&p, &m, SU, "emulator", NOW), 0);
    /* v2 with the app id in appid rather than azp */
    m.extra_claims = "\"ver\":\"2.0\",\"appid\":\"" APP "\"";
    assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_APPID);
}

static void
test_emulator_wrong_appid(void **state)
{
    (void)state;
    bg_auth_params p = params;
    p.allow_emulator = 1;
    /* appid other than aud would be a skill claim: keep them equal and both not ours */
    bgt_mint m = emulator_mint(EMU_V1_ISS, "\"ver\":\"1.0\",\"appid\":\"" APP "\"");
    m.aud = "11111111-2222-3333-4444-555555555555";
    assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_SKILL);
    m.extra_claims = "\"ver\":\"1.0\",\"appid\":\"11111111-2222-3333-4444-555555555555\"";
    assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_AUDIENCE);
    m.aud = APP;
    m.extra_claims = "\"ver\":\"1.0\"";
    assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_APPID);
    m.extra_claims = "\"appid\":\"" APP "\""; /* no ver: refused as in emulatorValidation.ts */
    assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_APPID);
    m.extra_claims = "\"ver\":\"3.0\",\"appid\":\"" APP "\",\"azp\":\"" APP "\"";
    assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_APPID);
}

/* An Emulator token must be signed by the Emulator's keys, never a channel key. */
static void
test_emulator_keys_are_separate(void **state)
{
    (void)state;
    bg_auth_params p = params;
    p.allow_emulator = 1;
    bgt_mint m = emulator_mint(EMU_V1_ISS, "\"ver\":\"1.0\",\"appid\":\"" APP "\"");
    m.key = &k2;
    assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_UNKNOWN_KID);
    /* no Emulator key set loaded at all */
    m.key = &emu;
    char *tok = bgt_mint_token(&m);
    bg_auth_claims c;
    assert_int_equal(bg_auth_verify_token(&p, channel_keys, NULL, tok, strlen(tok), &c, NULL, 0),
                     BG_EKEYS);
    free(tok);
    m = channel_mint(&k2);
    tok = bgt_mint_token(&m);
    assert_int_equal(bg_auth_verify_token(&p, NULL, emulator_keys, tok, strlen(tok), &c, NULL, 0),
                     BG_EKEYS);
    free(tok);
}

/* The configured tenant's two issuer forms count; other tenants never do, and a tenant
 * seen in a token is not remembered (the JS SDK appends every tid to its issuer list). */
static void
test_emulator_tenant_issuers(void **state)
{
    (void)state;
    bg_auth_params p = params;
    p.allow_emulator = 1;
    p.emulator_tenant_id = TENANT;
    bgt_mint m = emulator_mint("https://sts.windows.net/" TENANT "/",
                               "\"ver\":\"1.0\",\"appid\":\"" APP "\",\"tid\":\"" TENANT "\"");
    assert_int_equal(verify_p(&p, &m, NULL), 0);
    m.iss = "https://login.microsoftonline.com/" TENANT "/v2.0";
    m.extra_claims = "\"ver\":\"2.0\",\"azp\":\"" APP "\",\"tid\":\"" TENANT "\"";
    assert_int_equal(verify_p(&p, &m, NULL), 0);
    /* near misses of the two forms */
    const char *bad[] = {"https://sts.windows.net/" TENANT, "https://sts.windows.net/" TENANT "/x",
                         "https://login.microsoftonline.com/" TENANT "/v2.0/",
                         "https://login.microsoftonline.com/" TENANT "/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m.iss = bad[i];
        assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_ISSUER);
    }
    /* without the tenant configured, after having seen it in tokens above */
    p.emulator_tenant_id = "";
    m.iss = "https://sts.windows.net/" TENANT "/";
    m.extra_claims = "\"ver\":\"1.0\",\"appid\":\"" APP "\",\"tid\":\"" TENANT "\"";
    assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_ISSUER);
    /* the SDK's "???" tenant is not an Emulator issuer here */
    m.iss = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";
    assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_ISSUER);
}

/* skillValidation.ts isSkillClaim: ver, aud not the channel issuer, an app id != aud. */
static void
test_skill_tokens_refused(void **state)
{
    (void)state;
    bg_auth_params p = params;
    p.allow_emulator = 1;
    bgt_mint m = emulator_mint(
        EMU_V1_ISS, "\"ver\":\"1.0\",\"appid\":\"99999999-2222-3333-4444-555555555555\"");
    assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_SKILL);
    m.iss = EMU_V2_ISS;
    m.extra_claims = "\"ver\":\"2.0\",\"azp\":\"99999999-2222-3333-4444-555555555555\"";
    assert_int_equal(verify_p(&p, &m, NULL), BG_EAUTH_SKILL);
    /* on the channel issuer too, as the SDK routes skill claims first */
    m = channel_mint(&k2);
    m.extra_claims = "\"ver\":\"1.0\",\"appid\":\"99999999-2222-3333-4444-555555555555\"";
    assert_int_equal(verify_m(&m), BG_EAUTH_SKILL);
    /* the anonymous skill */
    m.extra_claims = "\"appid\":\"AnonymousSkill\"";
    assert_int_equal(verify_m(&m), BG_EAUTH_SKILL);
    /* ver + appid == aud is not a skill: a channel token with those claims is fine */
    m.extra_claims = "\"ver\":\"1.0\",\"appid\":\"" APP "\"";
    assert_int_equal(full_m(&m, "webchat"), 0);
}

/* ---- key sets ----------------------------------------------------------------------- */

static void
test_keyset_contents(void **state)
{
    (void)state;
    /* big, k2, bare, empty, ec, non */
    assert_int_equal(bg_keyset_size(channel_keys), 6);
    assert_true(bg_keyset_has_kid(channel_keys, "big"));
    assert_true(bg_keyset_has_kid(channel_keys, "ec"));  /* unusable, but present */
    assert_true(bg_keyset_has_kid(channel_keys, "non")); /* likewise */
    assert_false(bg_keyset_has_kid(channel_keys, "other"));
    assert_false(bg_keyset_has_kid(channel_keys, "BIG"));
    assert_false(bg_keyset_has_kid(NULL, "big"));
    assert_int_equal(bg_keyset_size(NULL), 0);
    assert_int_equal(bg_keyset_size(emulator_keys), 1);
}

/* Asserts that a JWKS text is refused as malformed, with a sentence. */
static void
assert_jwks_refused(const char *json)
{
    bg_keyset *ks = (bg_keyset *)1;
    char err[256] = "";
    int rc = bg_keyset_parse(&ks, json, strlen(json), err, sizeof(err));
    if (rc != BG_EAUTH_MALFORMED)
        fail_msg("JWKS %.80s: rc %d", json, rc);
    assert_null(ks);
    assert_true(strlen(err) > 10);
}

static void
test_jwks_parse_errors(void **state)
{
    (void)state;
    assert_jwks_refused("");
    assert_jwks_refused("not json");
    assert_jwks_refused("[]");
    assert_jwks_refused("{}");
    assert_jwks_refused("{\"keys\":{}}");
    assert_jwks_refused("{\"keys\":[]}");
    assert_jwks_refused("{\"keys\":[\"k\"]}");
    assert_jwks_refused("{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"a\"}]}"); /* nothing usable */
    assert_jwks_refused("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}");
    assert_jwks_refused("{\"keys\":[],\"keys\":[]}");
    /* only the EC key: nothing to verify with */
    char *ecjwks = bgt_jwks_json(&ec, 1);
    assert_jwks_refused(ecjwks);
    free(ecjwks);
    /* more than 256 keys */
    size_t cap = 300 * 40 + 64;
    char *many = malloc(cap), *w = many;
    w += sprintf(w, "{\"keys\":[");
    for (int i = 0; i < 300; i++)
        w += sprintf(w, "%s{\"kty\":\"RSA\",\"kid\":\"k%d\"}", i ? "," : "", i);
    sprintf(w, "]}");
    assert_jwks_refused(many);
    free(many);
    /* invalid arguments */
    bg_keyset *ks;
    assert_int_equal(bg_keyset_parse(NULL, "{}", 2, NULL, 0), BG_EINVAL);
    assert_int_equal(bg_keyset_parse(&ks, NULL, 3, NULL, 0), BG_EINVAL);
}

/* A JWKS whose single key has its n/e damaged in various ways. Each key is kept as
 * unusable, so a usable key is added to let the set parse. */
static void
test_jwks_unusable_keys(void **state)
{
    (void)state;
    char *good = bgt_jwks_json(&k2, 1);
    json_t *doc = json_loads(good, 0, NULL);
    json_t *gk = json_array_get(json_object_get(doc, "keys"), 0);
    const char *n = json_string_value(json_object_get(gk, "n"));
    char jwk[1024];
    const char *variants[] = {
        "{\"kty\":\"RSA\",\"kid\":\"x\",\"e\":\"AQAB\"}",                /* no n */
        "{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"%s\"}",                  /* no e */
        "{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"%s\",\"e\":\"AQ+B\"}",   /* e not base64url */
        "{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"%s\",\"e\":\"AQAA\"}",   /* even e */
        "{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"AQAB\",\"e\":\"AQAB\"}", /* tiny n */
        "{\"kty\":\"oct\",\"kid\":\"x\",\"n\":\"%s\",\"e\":\"AQAB\"}",   /* not RSA */
        "{\"kid\":\"x\",\"n\":\"%s\",\"e\":\"AQAB\"}",                   /* no kty */
        "{\"kty\":\"RSA\",\"use\":\"enc\",\"kid\":\"x\",\"n\":\"%s\",\"e\":\"AQAB\"}",
        "{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"%s\",\"e\":\"AQAB\",\"endorsements\":\"webchat\"}",
        "{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"%s\",\"e\":\"AQAB\",\"endorsements\":[1]}",
    };
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        snprintf(jwk, sizeof(jwk), variants[i], n);
        char *text = jwks_append(good, jwk);
        bg_keyset *ks;
        char err[256];
        assert_int_equal(bg_keyset_parse(&ks, text, strlen(text), err, sizeof(err)), 0);
        assert_int_equal(bg_keyset_size(ks), 2);
        assert_true(bg_keyset_has_kid(ks, "x"));
        bgt_mint m = channel_mint(&k2);
        m.kid = "x";
        char *tok = bgt_mint_token(&m);
        bg_auth_claims c;
        int rc = bg_auth_verify_token(&params, ks, NULL, tok, strlen(tok), &c, err, sizeof(err));
        if (rc != BG_EAUTH_BAD_KEY)
            fail_msg("variant %zu: rc %d (%s)", i, rc, err);
        free(tok);
        free(text);
        bg_keyset_free(ks);
    }
    json_decref(doc);
    free(good);
}

/* What a JWKS may look like and still work: padded base64 n, a leading zero byte on n,
 * members the SDK ignores (x5c, x5t), and no use member. A duplicate kid keeps the first. */
static void
test_jwks_tolerated_shapes(void **state)
{
    (void)state;
    char *good = bgt_jwks_json(&k2, 1);
    json_t *doc = json_loads(good, 0, NULL);
    json_t *gk = json_array_get(json_object_get(doc, "keys"), 0);
    const char *n = json_string_value(json_object_get(gk, "n"));
    /* n with a leading zero byte: decode, prefix, re-encode */
    size_t nlen = strlen(n);
    unsigned char raw[600];
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t bits = 0, o = 1;
    unsigned acc = 0;
    raw[0] = 0;
    for (size_t i = 0; i < nlen; i++) {
        acc = acc << 6 | (unsigned)(strchr(alpha, n[i]) - alpha);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            raw[o++] = (unsigned char)(acc >> bits);
        }
    }
    char *n0 = bgt_b64url_encode(raw, o);
    char jwks[4096];
    snprintf(jwks, sizeof(jwks),
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"k2\",\"n\":\"%s\",\"e\":\"AQAB\","
             "\"x5t\":\"abc\",\"x5c\":[\"MIIB\"],\"endorsements\":[\"webchat\"]},"
             "{\"kty\":\"RSA\",\"kid\":\"k2\",\"n\":\"%s\",\"e\":\"AQAB\"}]}",
             n0, n);
    bg_keyset *ks;
    char err[256];
    assert_int_equal(bg_keyset_parse(&ks, jwks, strlen(jwks), err, sizeof(err)), 0);
    assert_int_equal(bg_keyset_size(ks), 1);
    bgt_mint m = channel_mint(&k2);
    bg_auth_claims c;
    char *tok = bgt_mint_token(&m);
    assert_int_equal(
        bg_auth_verify_token(&params, ks, NULL, tok, strlen(tok), &c, err, sizeof(err)), 0);
    /* the first k2 (with endorsements) is the one that counts */
    assert_int_equal(
        bg_auth_check_request(&params, ks, NULL, &c, SU, "webchat", NOW, err, sizeof(err)), 0);
    /* and the fingerprint ignores the leading zero: the plain key is the same key */
    char *plain = bgt_jwks_json(&k2, 1);
    bg_keyset *ks2;
    assert_int_equal(bg_keyset_parse(&ks2, plain, strlen(plain), err, sizeof(err)), 0);
    assert_int_equal(
        bg_auth_check_request(&params, ks2, NULL, &c, SU, "webchat", NOW, err, sizeof(err)), 0);
    bg_auth_claims_clear(&c);
    bg_keyset_free(ks2);
    free(plain);
    bg_keyset_free(ks);
    free(tok);

    /* padded base64 in n */
    snprintf(jwks, sizeof(jwks),
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"k2\",\"n\":\"%s%s\",\"e\":\"AQAB\"}]}", n,
             nlen % 4 == 2   ? "=="
             : nlen % 4 == 3 ? "="
                             : "");
    assert_int_equal(bg_keyset_parse(&ks, jwks, strlen(jwks), err, sizeof(err)), 0);
    bg_keyset_free(ks);
    free(n0);
    json_decref(doc);
    free(good);
}

/* ---- OpenID metadata ---------------------------------------------------------------- */

static void
test_openid_metadata(void **state)
{
    (void)state;
    char *doc = bgt_openid_json(ISS, "https://login.botframework.com/v1/.well-known/keys");
    char *uri = NULL;
    char err[256];
    assert_int_equal(bg_openid_jwks_uri(doc, strlen(doc), &uri, err, sizeof(err)), 0);
    assert_string_equal(uri, "https://login.botframework.com/v1/.well-known/keys");
    free(uri);
    free(doc);

    const char *bad[] = {
        "",
        "not json",
        "[]",
        "{\"issuer\":\"" ISS "\"}",                              /* missing jwks_uri */
        "{\"jwks_uri\":5}",                                      /* not a string */
        "{\"jwks_uri\":\"http://login.botframework.com/keys\"}", /* http:// refused */
        "{\"jwks_uri\":\"HTTP://login.botframework.com/keys\"}", /* likewise */
        "{\"jwks_uri\":\"file:///etc/passwd\"}",
        "{\"jwks_uri\":\"https://\"}", /* no host */
        "{\"jwks_uri\":\"https:///keys\"}",
        "{\"jwks_uri\":\"https://a b/keys\"}",                         /* a space */
        "{\"jwks_uri\":\"https://a/\\nkeys\"}",                        /* a control byte */
        "{\"jwks_uri\":\"https://a/k\",\"jwks_uri\":\"https://b/k\"}", /* twice */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uri = (char *)1;
        int rc = bg_openid_jwks_uri(bad[i], strlen(bad[i]), &uri, err, sizeof(err));
        if (rc != BG_EAUTH_MALFORMED)
            fail_msg("metadata %s: rc %d", bad[i], rc);
        assert_null(uri);
    }
    assert_int_equal(bg_openid_jwks_uri("{}", 2, NULL, NULL, 0), BG_EINVAL);
}

/* ---- the per-request rules and key rotation ----------------------------------------- */

/* Verified while the key was published; the key is then rotated out of the JWKS. */
static void
test_key_rotated_out(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    bg_auth_claims c;
    assert_int_equal(verify_p(&params, &m, &c), 0);
    char *next = bgt_jwks_json(&big, 1); /* the new JWKS: k2 is gone */
    bg_keyset *rotated;
    char err[256];
    assert_int_equal(bg_keyset_parse(&rotated, next, strlen(next), err, sizeof(err)), 0);
    assert_int_equal(bg_auth_check_request(&params, rotated, emulator_keys, &c, SU, "webchat", NOW,
                                           err, sizeof(err)),
                     BG_EAUTH_UNKNOWN_KID);
    assert_non_null(strstr(err, "k2"));
    bg_keyset_free(rotated);
    free(next);

    /* another key published under the same kid: the old token's key is gone too */
    bgt_key impostor = other;
    snprintf(impostor.kid, sizeof(impostor.kid), "k2");
    impostor.endorsements[0] = "webchat";
    impostor.endorsements[1] = NULL;
    next = bgt_jwks_json(&impostor, 1);
    assert_int_equal(bg_keyset_parse(&rotated, next, strlen(next), err, sizeof(err)), 0);
    assert_int_equal(bg_auth_check_request(&params, rotated, emulator_keys, &c, SU, "webchat", NOW,
                                           err, sizeof(err)),
                     BG_EAUTH_UNKNOWN_KID);
    /* and no key set at all */
    assert_int_equal(bg_auth_check_request(&params, NULL, emulator_keys, &c, SU, "webchat", NOW,
                                           err, sizeof(err)),
                     BG_EAUTH_UNKNOWN_KID);
    bg_keyset_free(rotated);
    free(next);
    bg_auth_claims_clear(&c);
}

/* The verified claims can be re-checked many times (the cache's use): each request with
 * its own activity and time. */
static void
test_claims_rechecked_per_request(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&big);
    bg_auth_claims c;
    assert_int_equal(verify_p(&params, &m, &c), 0);
    assert_int_equal(bg_auth_check_request(&params, channel_keys, emulator_keys, &c, SU, "msteams",
                                           NOW, NULL, 0),
                     0);
    assert_int_equal(
        bg_auth_check_request(&params, channel_keys, emulator_keys, &c, SU, "slack", NOW, NULL, 0),
        BG_EAUTH_ENDORSEMENT);
    assert_int_equal(bg_auth_check_request(&params, channel_keys, emulator_keys, &c,
                                           "https://evil.example/", "msteams", NOW, NULL, 0),
                     BG_EAUTH_SERVICEURL);
    assert_int_equal(bg_auth_check_request(&params, channel_keys, emulator_keys, &c, SU, "msteams",
                                           NOW + 3600 + 300, NULL, 0),
                     BG_EAUTH_EXPIRED);
    assert_int_equal(bg_auth_check_request(&params, channel_keys, emulator_keys, &c, SU, "msteams",
                                           NOW - 60 - 301, NULL, 0),
                     BG_EAUTH_NOT_YET);
    bg_auth_claims_clear(&c);
}

static void
test_invalid_arguments(void **state)
{
    (void)state;
    bgt_mint m = channel_mint(&k2);
    char *tok = bgt_mint_token(&m);
    bg_auth_claims c;
    bg_auth_params p = params;
    p.app_id = "";
    assert_int_equal(
        bg_auth_verify_token(&p, channel_keys, emulator_keys, tok, strlen(tok), &c, NULL, 0),
        BG_EINVAL);
    p.app_id = NULL;
    assert_int_equal(
        bg_auth_verify_token(&p, channel_keys, emulator_keys, tok, strlen(tok), &c, NULL, 0),
        BG_EINVAL);
    assert_int_equal(
        bg_auth_verify_token(&params, channel_keys, emulator_keys, NULL, 5, &c, NULL, 0),
        BG_EINVAL);
    assert_int_equal(
        bg_auth_verify_token(NULL, channel_keys, emulator_keys, tok, strlen(tok), &c, NULL, 0),
        BG_EINVAL);
    assert_int_equal(bg_auth_check_request(&params, channel_keys, emulator_keys, NULL, SU,
                                           "webchat", NOW, NULL, 0),
                     BG_EINVAL);
    /* a tiny err buffer is filled without overflow */
    char err[8];
    assert_int_equal(
        bg_auth_verify_token(&params, channel_keys, emulator_keys, "a.b", 3, &c, err, sizeof(err)),
        BG_EAUTH_MALFORMED);
    assert_int_equal(strlen(err), 7);
    bg_auth_claims_clear(NULL);
    free(tok);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rs256_accepted_2048),
        cmocka_unit_test(test_rs384_rs512_accepted),
        cmocka_unit_test(test_connector_header_shape_accepted),
        cmocka_unit_test(test_flipped_signature_byte),
        cmocka_unit_test(test_signature_truncated_or_empty),
        cmocka_unit_test(test_wrong_key_same_kid),
        cmocka_unit_test(test_alg_label_mismatch),
        cmocka_unit_test(test_no_kid),
        cmocka_unit_test(test_unknown_kid),
        cmocka_unit_test(test_unknown_kid_message_is_sanitised),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_alg_hs256_with_public_key),
        cmocka_unit_test(test_alg_es256),
        cmocka_unit_test(test_alg_missing_or_other),
        cmocka_unit_test(test_key_without_n_e),
        cmocka_unit_test(test_crit_header_refused),
        cmocka_unit_test(test_exp_missing),
        cmocka_unit_test(test_exp_not_a_number),
        cmocka_unit_test(test_expired_outside_skew),
        cmocka_unit_test(test_expired_inside_skew),
        cmocka_unit_test(test_nbf_future_inside_skew),
        cmocka_unit_test(test_nbf_future_outside_skew),
        cmocka_unit_test(test_fractional_dates),
        cmocka_unit_test(test_aud_missing),
        cmocka_unit_test(test_aud_other),
        cmocka_unit_test(test_aud_botframework),
        cmocka_unit_test(test_aud_array),
        cmocka_unit_test(test_iss_missing),
        cmocka_unit_test(test_iss_other),
        cmocka_unit_test(test_iss_government),
        cmocka_unit_test(test_serviceurl_missing),
        cmocka_unit_test(test_serviceurl_camel_cased),
        cmocka_unit_test(test_serviceurl_different),
        cmocka_unit_test(test_serviceurl_case_only),
        cmocka_unit_test(test_serviceurl_trailing_slash),
        cmocka_unit_test(test_serviceurl_escaped_in_claim),
        cmocka_unit_test(test_channel_endorsed_among_several),
        cmocka_unit_test(test_channel_not_endorsed),
        cmocka_unit_test(test_key_without_endorsements),
        cmocka_unit_test(test_malformed_base64url),
        cmocka_unit_test(test_noncanonical_base64url),
        cmocka_unit_test(test_segment_count),
        cmocka_unit_test(test_header_or_payload_not_json),
        cmocka_unit_test(test_duplicate_claims),
        cmocka_unit_test(test_token_over_limit),
        cmocka_unit_test(test_json_reader_agrees_with_jansson),
        cmocka_unit_test(test_json_escapes_in_claims),
        cmocka_unit_test(test_emulator_off),
        cmocka_unit_test(test_emulator_v1_appid),
        cmocka_unit_test(test_emulator_v2_azp),
        cmocka_unit_test(test_emulator_wrong_appid),
        cmocka_unit_test(test_emulator_keys_are_separate),
        cmocka_unit_test(test_emulator_tenant_issuers),
        cmocka_unit_test(test_skill_tokens_refused),
        cmocka_unit_test(test_keyset_contents),
        cmocka_unit_test(test_jwks_parse_errors),
        cmocka_unit_test(test_jwks_unusable_keys),
        cmocka_unit_test(test_jwks_tolerated_shapes),
        cmocka_unit_test(test_openid_metadata),
        cmocka_unit_test(test_key_rotated_out),
        cmocka_unit_test(test_claims_rechecked_per_request),
        cmocka_unit_test(test_invalid_arguments),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
