/*
 * Bot Framework channel-token authentication (auth.h): JWS parsing, the JWKS key set, and
 * the rules, as the official SDKs apply them, tightened where they are lax.
 *
 * Read against botbuilder-js libraries/botframework-connector/src/auth/ (jwtTokenExtractor.ts,
 * parameterizedBotFrameworkAuthentication.ts, openIdMetadata.ts, endorsementsValidator.ts,
 * skillValidation.ts, emulatorValidation.ts, tokenValidationParameters.ts,
 * authenticationConstants.ts) and botbuilder-dotnet Microsoft.Bot.Connector/Authentication/
 * (JwtTokenExtractor.cs, EndorsementsValidator.cs). The order of the checks in
 * bg_auth_verify_token follows the SDK's: the issuer decides which kind of token this is
 * (skill, Emulator, channel) and which key set may verify it before any signature is
 * checked; then the signature; then the audience and the app id claims.
 *
 * Deviations from the SDKs, each marked "SDK:" where it is made:
 *   1. exp is required (jsonwebtoken, which botbuilder-js uses, accepts a token without).
 *   2. A token is expired once now >= exp + skew: jsonwebtoken's boundary, one second
 *      stricter than .NET's (now > exp + skew).
 *   3. The serviceurl claim is required and compared even when the activity's serviceUrl
 *      is empty, and the endorsements even when its channelId is (the SDK skips both
 *      then; the caller refuses such an activity with 400 before asking).
 *   4. A key with no or an empty endorsements list is refused unless
 *      require_endorsements is off (botbuilder-js skips the check; .NET refuses).
 *   5. aud must be one JSON string. jsonwebtoken is given no audience and the SDK compares
 *      the claim with `===`, so an array never matches there either; .NET takes the first
 *      of several audiences. We refuse every array.
 *   6. Emulator tokens: aud must also equal the app id (emulatorValidation.ts checks only
 *      appid/azp); the issuer list is the four fixed Bot Framework AAD issuers plus the
 *      configured tenant's two; the SDK's 72f988bf-... ("???") tenant and the US
 *      government issuers are left out, and no issuer is ever learnt from a token's tid
 *      (emulatorValidation.ts pushes every new tid onto a global list).
 *   7. JSON: duplicate members in the header or payload are refused (JSON.parse keeps the
 *      last); base64url must be canonical (no padding, no '+' '/', no whitespace, zero
 *      trailing bits); a "crit" header is refused (no extension is understood); exp/nbf
 *      must be numbers (as in jsonwebtoken) and a fractional exp is rounded down, nbf up.
 *   8. JWKS: a key is usable only when kty is "RSA", use (if present) is "sig", n is 1024
 *      to 8192 bits and e odd, 3 or more, at most 64 bits; endorsements, when present,
 *      must be an array of strings. The SDK builds a PEM from any n/e it finds.
 *   9. Keys come only from the JWKS: jku, x5u, jwk and x5c in a token header are ignored,
 *      as the SDKs ignore them. A JWKS with no usable key, or more than 256, is refused
 *      whole, so that the caller keeps its old keys (openIdMetadata.ts replaces them with
 *      whatever the fetch returned). A key replaced under the same kid invalidates the
 *      claims verified with the old one (bg_auth_check_request compares fingerprints).
 *  10. The header and payload are read by the strict JSON reader of policy/json.c, not
 *      JSON.parse: it refuses what jansson refuses, except that it does not look for
 *      duplicates inside nested values and stops at 32 levels of nesting.
 *  11. AuthenticationConfiguration.requiredEndorsements and claims validators (allowed
 *      callers) have no equivalent: there is one channel endorsement check, no skills.
 * What we keep from the SDK: alg RS256/RS384/RS512 only; iss compared exactly; aud equal
 * to the app id; 300 s skew on exp and nbf; the serviceurl claim, lower case, compared
 * byte for byte; endorsements compared exactly; for a duplicate kid in a JWKS, the first
 * key wins (openIdMetadata.ts findKey); skill tokens (skillValidation.ts isSkillClaim)
 * refused, as the SDK refuses them without a claims validator; no serviceurl or
 * endorsement check for Emulator tokens (AAD keys carry no endorsements).
 */
#include "botgate/auth.h"
#include "botgate/error.h"
#include "botgate/json.h"

#include <jansson.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The header and payload are small; the whole token is at most BG_AUTH_MAX_TOKEN bytes,
 * so every decoded segment fits in a buffer of 3/4 of that, on the stack. */
#define AUTH_DECODED_MAX (BG_AUTH_MAX_TOKEN / 4 * 3 + 3)
#define AUTH_JSON_FLAGS JSON_REJECT_DUPLICATES
#define JWKS_MAX_KEYS 256
#define JWKS_MAX_ENDORSEMENTS 256
#define RSA_MIN_BITS 1024
#define RSA_MAX_BITS 8192

/* The three algorithms the SDKs allow (AuthenticationConstants.AllowedSigningAlgorithms). */
enum { ALG_RS256, ALG_RS384, ALG_RS512, ALG_COUNT };
static const char *const alg_names[ALG_COUNT] = {"RS256", "RS384", "RS512"};
static const char *const alg_digests[ALG_COUNT] = {"SHA256", "SHA384", "SHA512"};

/* The Bot Framework's own AAD tenants whose tokens the Emulator presents
 * (tokenValidationParameters.ts, "Auth v3.1" and "Auth v3.2"), in both token versions. */
static const char *const emulator_issuers[] = {
    "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/",
    "https://login.microsoftonline.com/d6d49420-f39b-4df7-a1dc-d59a935871db/v2.0",
    "https://sts.windows.net/f8cdef31-a31e-4b4a-93e4-5f571e91255a/",
    "https://login.microsoftonline.com/f8cdef31-a31e-4b4a-93e4-5f571e91255a/v2.0",
};

/* The audiences that mark a token as a channel's rather than a skill's
 * (skillValidation.ts: AuthenticationConstants / GovernmentConstants ToBotFromChannelTokenIssuer).
 */
static const char *const channel_audiences[] = {"https://api.botframework.com",
                                                "https://api.botframework.us"};

/*
 * A parsed key set. Built once per JWKS fetch and read-only afterwards, so any number of
 * threads may verify against one set at the same time:
 *
 *   bg_keyset
 *   +-------+---------------------+----------------------------------------------+
 *   | n     | md[RS256..RS512]    | keys[0 .. n)                                 |
 *   +-------+---------------------+----------------------------------------------+
 *                                   |
 *   st_bg_jwk  (one per JWKS entry with a kid, in document order: first kid wins)
 *   +-----+--------+-------------------------------+---------+--------------------+
 *   | kid | usable | pkey + verify[RS256..RS512]   | sig_len | endorsements[]     |
 *   +-----+--------+-------------------------------+---------+--------------------+
 *
 * verify[a] is an EVP_PKEY_CTX already through EVP_PKEY_verify_init with PKCS#1 v1.5
 * padding and alg a's digest: a template. Each verification duplicates it
 * (EVP_PKEY_CTX_dup) and never touches it, which costs about a fifth of building a new
 * context per token (measured: 95% against 81% of a bare RSA verify). md[] are the digests
 * fetched once, since an implicit fetch per digest takes a lock. An unusable key (not RSA,
 * no n/e, too small) is kept with its reason so that a token naming it gets bad_key
 * rather than unknown_kid.
 */
typedef struct st_bg_jwk {
    char kid[BG_AUTH_KID_MAX];
    int usable;
    const char *unusable; /* why not, a static sentence */
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *verify[ALG_COUNT];
    size_t sig_len;                /* the modulus in bytes: every signature's length */
    unsigned char fingerprint[32]; /* SHA-256 of n || e: the key's identity */
    char **endorsements;           /* the channel ids this key may sign for */
    size_t n_endorsements;         /* 0: none (absent or empty) */
} st_bg_jwk;

struct bg_keyset {
    size_t n;
    EVP_MD *md[ALG_COUNT];
    st_bg_jwk keys[];
};

/* ---- small helpers ------------------------------------------------------------------- */

/*
 * Writes a sentence into err (when there is room) and returns code, so that every failure
 * is one `return fail(...)`. Sentences never quote the token; the few token-derived values
 * in them (a kid) go through printable() first.
 */
static int
fail(int code, char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

/*
 * Copies at most 64 bytes of an attacker-chosen string into out as printable ASCII ('?'
 * for anything else, quotes and backslashes included), so that it can sit in a log line
 * and a JSON error without escaping and without carrying control bytes.
 */
static const char *
printable(char out[68], const char *s)
{
    size_t i = 0;
    for (; s[i] != '\0' && i < 64; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    if (s[i] != '\0')
        out[i++] = '.', out[i++] = '.', out[i++] = '.';
    out[i] = '\0';
    return out;
}

/* base64url's alphabet (RFC 4648 §5): each byte's 6-bit value, -1 for the rest. */
static const signed char b64url_values[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1, -1, 0,  1,  2,  3,  4,  5,  6,
    7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, 63,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
    49, 50, 51, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

/*
 * Decodes base64url (RFC 7515 §2) into out (room for outcap bytes), strictly: only the
 * URL alphabet, no whitespace, a length that is not 1 mod 4, and zero bits in the last
 * character's unused low bits, so that one byte string has exactly one encoding (the
 * token cache keys on the token's bytes; a malleable encoding would give one signature
 * many cache entries). allow_pad accepts trailing '=' padding of the right length, for
 * JWK members only: a JWKS is trusted input and a refusal there costs a whole refresh.
 * Returns the decoded length, or -1.
 */
static long
b64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap, int allow_pad)
{
    if (allow_pad && len % 4 == 0 && len > 0) {
        size_t pad = 0;
        while (pad < 2 && in[len - 1 - pad] == '=')
            pad++;
        len -= pad;
    }
    if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > outcap)
        return -1;
    size_t o = 0, i = 0;
    for (; i + 4 <= len; i += 4) {
        int a = b64url_values[(unsigned char)in[i]], b = b64url_values[(unsigned char)in[i + 1]],
            c = b64url_values[(unsigned char)in[i + 2]],
            d = b64url_values[(unsigned char)in[i + 3]];
        if ((a | b | c | d) < 0)
            return -1;
        unsigned v = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6 | (unsigned)d;
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    size_t rest = len - i;
    if (rest >= 2) {
        int a = b64url_values[(unsigned char)in[i]], b = b64url_values[(unsigned char)in[i + 1]];
        int c = rest == 3 ? b64url_values[(unsigned char)in[i + 2]] : 0;
        if ((a | b | c) < 0)
            return -1;
        unsigned v = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6;
        /* the bits below the last whole byte must be zero (canonical form) */
        if ((rest == 2 && (v & 0xffff)) || (rest == 3 && (v & 0xff)))
            return -1;
        out[o++] = (unsigned char)(v >> 16);
        if (rest == 3)
            out[o++] = (unsigned char)(v >> 8);
    }
    return (long)o;
}

/* The string value of obj[name], or NULL when absent or not a string. */
static const char *
member_string(const json_t *obj, const char *name)
{
    return json_string_value(json_object_get(obj, name));
}

/* ---- OpenID metadata ----------------------------------------------------------------- */

/*
 * Only an https:// jwks_uri is taken: the key set is the root of trust, and a document
 * that points elsewhere (http://, file://) is refused rather than followed. The URI must
 * also have a host and carry no whitespace or control bytes; curl parses the rest.
 */
int
bg_openid_jwks_uri(const char *json, size_t len, char **jwks_uri, char *err, size_t errlen)
{
    if (jwks_uri == NULL || (json == NULL && len > 0))
        return fail(BG_EINVAL, err, errlen, "invalid argument");
    *jwks_uri = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(json != NULL ? json : "", len, AUTH_JSON_FLAGS, &jerr);
    if (root == NULL)
        return fail(BG_EAUTH_MALFORMED, err, errlen,
                    "the OpenID metadata is not JSON (line %d column %d)", jerr.line, jerr.column);
    int rc = 0;
    json_t *v = json_object_get(root, "jwks_uri");
    const char *uri = json_string_value(v);
    size_t n = json_string_length(v);
    if (!json_is_object(root))
        rc = fail(BG_EAUTH_MALFORMED, err, errlen, "the OpenID metadata is not a JSON object");
    else if (uri == NULL)
        rc = fail(BG_EAUTH_MALFORMED, err, errlen, "the OpenID metadata has no jwks_uri string");
    else if (n <= 8 || strncmp(uri, "https://", 8) != 0 || uri[8] == '/')
        rc = fail(BG_EAUTH_MALFORMED, err, errlen,
                  "the OpenID metadata's jwks_uri is not an https:// URL");
    else {
        for (size_t i = 0; i < n && rc == 0; i++)
            if ((unsigned char)uri[i] <= 0x20 || uri[i] == 0x7f)
                rc = fail(BG_EAUTH_MALFORMED, err, errlen,
                          "the OpenID metadata's jwks_uri holds a space or control character");
        if (rc == 0 && (*jwks_uri = strdup(uri)) == NULL)
            rc = fail(BG_ENOMEM, err, errlen, "out of memory");
    }
    json_decref(root);
    return rc;
}

/* ---- the key set --------------------------------------------------------------------- */

/* Frees what one key owns. */
static void
jwk_clear(st_bg_jwk *k)
{
    for (int a = 0; a < ALG_COUNT; a++)
        EVP_PKEY_CTX_free(k->verify[a]);
    EVP_PKEY_free(k->pkey);
    for (size_t i = 0; i < k->n_endorsements; i++)
        free(k->endorsements[i]);
    free(k->endorsements);
    memset(k, 0, sizeof(*k));
}

/*
 * Decodes one JWK member (n or e) into a BIGNUM. Leading zero bytes are tolerated (some
 * publishers pad n). NULL when absent, not a string, not base64url, or empty.
 */
static BIGNUM *
jwk_bignum(const json_t *jwk, const char *name, unsigned char *buf, size_t bufcap, size_t *blen)
{
    json_t *v = json_object_get(jwk, name);
    const char *s = json_string_value(v);
    if (s == NULL)
        return NULL;
    long n = b64url_decode(s, json_string_length(v), buf, bufcap, 1);
    if (n <= 0)
        return NULL;
    *blen = (size_t)n;
    return BN_bin2bn(buf, (int)n, NULL);
}

/*
 * Builds the RSA public key from n and e with EVP_PKEY_fromdata, once, and the three
 * verification templates from it (see the layout above). Sets k->unusable and returns 0
 * when the JWK is not a usable RSA key; BG_ENOMEM only when memory or OpenSSL fails.
 */
static int
jwk_build_rsa(st_bg_jwk *k, const json_t *jwk, EVP_MD *const md[ALG_COUNT])
{
    const char *kty = member_string(jwk, "kty");
    const char *use = member_string(jwk, "use");
    json_t *use_v = json_object_get(jwk, "use");
    if (kty == NULL || strcmp(kty, "RSA") != 0) {
        k->unusable = "the key is not an RSA key (kty)";
        return 0;
    }
    if (use_v != NULL && (use == NULL || strcmp(use, "sig") != 0)) {
        k->unusable = "the key is not a signing key (use)";
        return 0;
    }
    unsigned char nbuf[RSA_MAX_BITS / 8 + 16], ebuf[16], fp_in[sizeof(nbuf) + sizeof(ebuf)];
    size_t nlen = 0, elen = 0;
    BIGNUM *n = jwk_bignum(jwk, "n", nbuf, sizeof(nbuf), &nlen);
    BIGNUM *e = jwk_bignum(jwk, "e", ebuf, sizeof(ebuf), &elen);
    int rc = 0;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *fctx = NULL;
    if (n == NULL || e == NULL) {
        k->unusable = "the key has no usable n and e";
        goto out;
    }
    if (BN_num_bits(n) < RSA_MIN_BITS || BN_num_bits(n) > RSA_MAX_BITS || !BN_is_odd(n)) {
        k->unusable = "the key's modulus is not 1024 to 8192 bits";
        goto out;
    }
    if (!BN_is_odd(e) || BN_num_bits(e) < 2 || BN_num_bits(e) > 64) {
        k->unusable = "the key's exponent is not an odd number of 2 to 64 bits";
        goto out;
    }
    rc = BG_ENOMEM;
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (fctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(fctx) != 1 ||
        EVP_PKEY_fromdata(fctx, &k->pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    k->sig_len = (size_t)EVP_PKEY_get_size(k->pkey);
    for (int a = 0; a < ALG_COUNT; a++) {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
        k->verify[a] = c;
        if (c == NULL || EVP_PKEY_verify_init(c) != 1 ||
            EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) != 1 ||
            EVP_PKEY_CTX_set_signature_md(c, md[a]) != 1)
            goto out;
    }
    /* The fingerprint is over the minimal big-endian n and e, so that a republished key
     * with padded n is still the same key. */
    nlen = (size_t)BN_bn2bin(n, fp_in);
    elen = (size_t)BN_bn2bin(e, fp_in + nlen);
    unsigned int fl = 0;
    if (EVP_Digest(fp_in, nlen + elen, k->fingerprint, &fl, md[ALG_RS256], NULL) != 1)
        goto out;
    k->usable = 1;
    rc = 0;
out:
    if (rc != 0) {
        for (int a = 0; a < ALG_COUNT; a++) {
            EVP_PKEY_CTX_free(k->verify[a]);
            k->verify[a] = NULL;
        }
        EVP_PKEY_free(k->pkey);
        k->pkey = NULL;
    }
    EVP_PKEY_CTX_free(fctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return rc;
}

/*
 * Copies the JWK's endorsements (the channel ids the key may sign for). Absent or empty
 * leaves n_endorsements 0; anything but an array of strings makes the key unusable: a
 * list we cannot read is not a list we can check a channel against.
 */
static int
jwk_endorsements(st_bg_jwk *k, const json_t *jwk)
{
    json_t *arr = json_object_get(jwk, "endorsements");
    if (arr == NULL || json_is_null(arr))
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > JWKS_MAX_ENDORSEMENTS) {
        k->unusable = "the key's endorsements are not a list of channel ids";
        return 0;
    }
    size_t n = json_array_size(arr);
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!json_is_string(json_array_get(arr, i))) {
            k->unusable = "the key's endorsements are not a list of channel ids";
            return 0;
        }
    k->endorsements = calloc(n, sizeof(char *));
    if (k->endorsements == NULL)
        return BG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if ((k->endorsements[i] = strdup(json_string_value(json_array_get(arr, i)))) == NULL)
            return BG_ENOMEM;
        k->n_endorsements = i + 1;
    }
    return 0;
}

/* The entry for kid (the first with it), or NULL. */
static const st_bg_jwk *
keyset_find(const bg_keyset *keys, const char *kid)
{
    for (size_t i = 0; i < keys->n; i++)
        if (strcmp(keys->keys[i].kid, kid) == 0)
            return &keys->keys[i];
    return NULL;
}

/*
 * Parses a JWKS into a key set (see the layout above). The document must be an object
 * with a non-empty "keys" array of objects, at most JWKS_MAX_KEYS, and at least one usable
 * RSA key: a set we could verify nothing with is refused, so that the caller keeps the
 * keys it had rather than swapping in an empty set. JWKs without a string kid (1 to
 * BG_AUTH_KID_MAX-1 bytes) cannot be named by a token and are skipped; a second JWK with
 * a kid already seen is skipped too (the SDK's findKey takes the first).
 */
int
bg_keyset_parse(bg_keyset **out, const char *json, size_t len, char *err, size_t errlen)
{
    if (out == NULL || (json == NULL && len > 0))
        return fail(BG_EINVAL, err, errlen, "invalid argument");
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(json != NULL ? json : "", len, AUTH_JSON_FLAGS, &jerr);
    if (root == NULL)
        return fail(BG_EAUTH_MALFORMED, err, errlen, "the JWKS is not JSON (line %d column %d)",
                    jerr.line, jerr.column);
    json_t *arr = json_object_get(root, "keys");
    size_t n = json_array_size(arr);
    bg_keyset *ks = NULL;
    int rc = 0;
    if (!json_is_object(root) || !json_is_array(arr)) {
        rc = fail(BG_EAUTH_MALFORMED, err, errlen, "the JWKS has no \"keys\" array");
        goto out;
    }
    if (n == 0 || n > JWKS_MAX_KEYS) {
        rc = fail(BG_EAUTH_MALFORMED, err, errlen, "the JWKS has %zu keys (1 to %d expected)", n,
                  JWKS_MAX_KEYS);
        goto out;
    }
    ks = calloc(1, sizeof(*ks) + n * sizeof(st_bg_jwk));
    if (ks == NULL) {
        rc = fail(BG_ENOMEM, err, errlen, "out of memory");
        goto out;
    }
    for (int a = 0; a < ALG_COUNT; a++)
        if ((ks->md[a] = EVP_MD_fetch(NULL, alg_digests[a], NULL)) == NULL) {
            rc = fail(BG_ENOMEM, err, errlen, "OpenSSL cannot provide %s", alg_digests[a]);
            goto out;
        }
    size_t usable = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *jwk = json_array_get(arr, i);
        if (!json_is_object(jwk)) {
            rc = fail(BG_EAUTH_MALFORMED, err, errlen, "the JWKS's key %zu is not an object", i);
            goto out;
        }
        json_t *kid_v = json_object_get(jwk, "kid");
        const char *kid = json_string_value(kid_v);
        size_t kid_len = json_string_length(kid_v);
        if (kid == NULL || kid_len == 0 || kid_len >= BG_AUTH_KID_MAX ||
            memchr(kid, '\0', kid_len) != NULL || keyset_find(ks, kid) != NULL)
            continue;
        st_bg_jwk *k = &ks->keys[ks->n++];
        memcpy(k->kid, kid, kid_len + 1);
        if ((rc = jwk_endorsements(k, jwk)) != 0 ||
            (k->unusable == NULL && (rc = jwk_build_rsa(k, jwk, ks->md)) != 0)) {
            rc = fail(rc, err, errlen, "out of memory building key %zu", i);
            goto out;
        }
        if (!k->usable && k->unusable == NULL)
            k->unusable = "the key is not usable";
        usable += k->usable != 0;
    }
    if (usable == 0)
        rc = fail(BG_EAUTH_MALFORMED, err, errlen, "the JWKS has no usable RSA key with a kid");
out:
    json_decref(root);
    if (rc != 0)
        bg_keyset_free(ks);
    else
        *out = ks;
    return rc;
}

/* Frees the set, its keys and their templates; NULL is allowed. */
void
bg_keyset_free(bg_keyset *keys)
{
    if (keys == NULL)
        return;
    for (size_t i = 0; i < keys->n; i++)
        jwk_clear(&keys->keys[i]);
    for (int a = 0; a < ALG_COUNT; a++)
        EVP_MD_free(keys->md[a]);
    free(keys);
}

/* The number of keys with a kid (usable or not). */
size_t
bg_keyset_size(const bg_keyset *keys)
{
    return keys != NULL ? keys->n : 0;
}

/* 1 when keys has an entry for kid, usable or not: what the token cache prunes by. */
int
bg_keyset_has_kid(const bg_keyset *keys, const char *kid)
{
    return keys != NULL && kid != NULL && keyset_find(keys, kid) != NULL;
}

/* ---- the token's JSON ---------------------------------------------------------------- */

/*
 * The header and payload of every token are read with the strict reader of policy/json.c
 * rather than into a jansson tree: json_loadb spends about 5 us on the two (its lexer
 * takes one byte per callback and allocates every value), a third of an RSA-2048
 * verification, which the fresh-token path cannot afford. The reader accepts what jansson
 * accepts with JSON_REJECT_DUPLICATES and without JSON_ALLOW_NUL (tests/unit/test_auth.c
 * runs both over a list of hard cases, tests/unit/test_json.c over many more):
 *
 *   - RFC 8259 grammar; whitespace is space, tab, CR, LF; nothing after the object;
 *   - strings: no raw control byte, valid UTF-8 (no overlong form, no surrogate, nothing
 *     above U+10FFFF), escapes \" \\ \/ \b \f \n \r \t \uXXXX with surrogate pairs
 *     joined and lone surrogates refused, and no \u0000 (a C string would stop there);
 *   - numbers: an integer outside int64 and a real beyond DBL_MAX are refused;
 *   - a top-level member name given twice is refused (checked here, below); at most
 *     JWT_MAX_MEMBERS of them (an AAD token carries about 25, a Connector token 6).
 * Two differences, neither touching a value we read: a duplicate name inside a nested
 * object is not looked for (jansson refuses it; we never read nested values, so it cannot
 * make two readers disagree on a claim we check), and arrays and objects nest at most
 * JWT_MAX_DEPTH levels deep, the payload object included (BG_JSON_DEPTH_CONTAINERS;
 * jansson: 2048 values).
 *
 * Strings are decoded in place (an escape is never shorter than what it stands for, see
 * bg_json_decode) and NUL-terminated there, so nothing is allocated; members point into
 * the caller's decoded segment, which is ours to write:
 *
 *   segment  {"iss":"https:\/\/api.botframework.com","exp":1750003600}
 *   after    {"iss\0:"https://api.botframework.com\0...,"exp\0:1750003600}
 *   members  [ {name "iss", JT_STRING, s "https://api.botframework.com"},
 *              {name "exp", JT_INT, i 1750003600} ]
 */
#define JWT_MAX_MEMBERS 64
#define JWT_MAX_DEPTH 32

enum { JT_STRING, JT_INT, JT_REAL, JT_TRUE, JT_FALSE, JT_NULL, JT_ARRAY, JT_OBJECT };

typedef struct st_jwt_member {
    const char *name;
    size_t name_len;
    int type;
    const char *s; /* JT_STRING: the decoded value, NUL-terminated */
    int64_t i;     /* JT_INT */
    double d;      /* JT_REAL */
} st_jwt_member;

typedef struct st_jwt_object {
    size_t n;
    st_jwt_member m[JWT_MAX_MEMBERS];
} st_jwt_object;

/*
 * Decodes a string of the segment where it lies and NUL-terminates it (at the latest
 * over its closing quote): the segment is our own buffer, and the reader has read past
 * it. Returns the string; *len (may be NULL) its length.
 */
static const char *
jwt_decode_in_place(const bg_json_str *s, size_t *len)
{
    char *w = (char *)s->raw;
    size_t n = bg_json_decode(s, w);
    w[n] = '\0';
    if (len != NULL)
        *len = n;
    return w;
}

/*
 * Reads member m's value: its type and, for a scalar, its value; a nested array or object
 * is validated and skipped. 0 or -1.
 */
static int
jwt_member_value(bg_json_reader *r, st_jwt_member *m)
{
    bg_json_type t;
    if (bg_json_value(r, &t) != 0)
        return -1;
    switch (t) {
    case BG_JSON_STRING:
        m->type = JT_STRING;
        m->s = jwt_decode_in_place(bg_json_string(r), NULL);
        return 0;
    case BG_JSON_NUMBER: {
        int is_int = bg_json_number(r, &m->i, &m->d);
        m->type = is_int ? JT_INT : JT_REAL;
        return is_int < 0 ? -1 : 0;
    }
    case BG_JSON_TRUE:
        m->type = JT_TRUE;
        return 0;
    case BG_JSON_FALSE:
        m->type = JT_FALSE;
        return 0;
    case BG_JSON_NULL:
        m->type = JT_NULL;
        return 0;
    case BG_JSON_ARRAY:
    case BG_JSON_OBJECT:
        m->type = t == BG_JSON_ARRAY ? JT_ARRAY : JT_OBJECT;
        return bg_json_leave(r);
    }
    return -1;
}

/*
 * Parses buf[0..len) as one JSON object into o (see above); buf is decoded in place and
 * must outlive o. 0, or -1 when it is not exactly one JSON object by the rules above.
 */
static int
jwt_object_parse(char *buf, size_t len, st_jwt_object *o)
{
    bg_json_reader r;
    bg_json_type t;
    bg_json_str key;
    int more = -1, rc = -1;
    o->n = 0;
    bg_json_init(&r, buf, len, BG_JSON_DEPTH_CONTAINERS, JWT_MAX_DEPTH);
    if (bg_json_value(&r, &t) != 0 || t != BG_JSON_OBJECT)
        goto out;
    while ((more = bg_json_member(&r, &key)) > 0) {
        if (o->n == JWT_MAX_MEMBERS)
            goto out;
        st_jwt_member *m = &o->m[o->n];
        memset(m, 0, sizeof(*m));
        m->name = jwt_decode_in_place(&key, &m->name_len);
        for (size_t i = 0; i < o->n; i++)
            if (o->m[i].name_len == m->name_len && memcmp(o->m[i].name, m->name, m->name_len) == 0)
                goto out; /* a duplicate member */
        if (jwt_member_value(&r, m) != 0)
            goto out;
        o->n++;
    }
    if (more == 0 && bg_json_finish(&r) == 0)
        rc = 0;
out:
    bg_json_free(&r);
    return rc;
}

/* The member called name, or NULL. */
static const st_jwt_member *
jwt_get(const st_jwt_object *o, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < o->n; i++)
        if (o->m[i].name_len == len && memcmp(o->m[i].name, name, len) == 0)
            return &o->m[i];
    return NULL;
}

/* The string value of member name, or NULL when absent or not a string. */
static const char *
jwt_string(const st_jwt_object *o, const char *name)
{
    const st_jwt_member *m = jwt_get(o, name);
    return m != NULL && m->type == JT_STRING ? m->s : NULL;
}

/* 1 when member name is present and not null. */
static int
jwt_has(const st_jwt_object *o, const char *name)
{
    const st_jwt_member *m = jwt_get(o, name);
    return m != NULL && m->type != JT_NULL;
}

/* ---- the rules ----------------------------------------------------------------------- */

/*
 * Reads a NumericDate claim (exp, nbf). Absent or null: *present = 0. A number is taken,
 * a fraction rounded toward the stricter side (round_up for nbf, down for exp); anything
 * else, or a value outside +-2^62, is -1. jsonwebtoken likewise refuses non-numbers
 * ("invalid exp value").
 */
static int
numeric_date(const st_jwt_object *payload, const char *name, int round_up, int64_t *out,
             int *present)
{
    const st_jwt_member *m = jwt_get(payload, name);
    const int64_t limit = (int64_t)1 << 62;
    *present = 0;
    *out = 0;
    if (m == NULL || m->type == JT_NULL)
        return 0;
    *present = 1;
    if (m->type == JT_INT) {
        if (m->i > limit || m->i < -limit)
            return -1;
        *out = m->i;
        return 0;
    }
    if (m->type == JT_REAL) {
        double d = round_up ? ceil(m->d) : floor(m->d);
        if (!(d <= (double)limit && d >= -(double)limit))
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    return -1;
}

/* 1 when iss is one of the Emulator's issuers: the fixed four, or the configured tenant's
 * v1 (sts.windows.net/<tid>/) and v2 (login.microsoftonline.com/<tid>/v2.0) forms. */
static int
is_emulator_issuer(const bg_auth_params *p, const char *iss)
{
    for (size_t i = 0; i < sizeof(emulator_issuers) / sizeof(emulator_issuers[0]); i++)
        if (strcmp(iss, emulator_issuers[i]) == 0)
            return 1;
    const char *tid = p->emulator_tenant_id;
    if (tid == NULL || tid[0] == '\0')
        return 0;
    static const char v1[] = "https://sts.windows.net/",
                      v2[] = "https://login.microsoftonline.com/";
    size_t tl = strlen(tid);
    if (strncmp(iss, v1, sizeof(v1) - 1) == 0 && strncmp(iss + sizeof(v1) - 1, tid, tl) == 0 &&
        strcmp(iss + sizeof(v1) - 1 + tl, "/") == 0)
        return 1;
    if (strncmp(iss, v2, sizeof(v2) - 1) == 0 && strncmp(iss + sizeof(v2) - 1, tid, tl) == 0 &&
        strcmp(iss + sizeof(v2) - 1 + tl, "/v2.0") == 0)
        return 1;
    return 0;
}

/*
 * The app id claim as JwtTokenValidation.getAppIdFromClaims reads it: appid when ver is
 * absent, empty or "1.0", azp when ver is "2.0", otherwise none.
 */
static const char *
app_id_claim(const st_jwt_object *payload)
{
    const char *ver = jwt_string(payload, "ver");
    if (!jwt_has(payload, "ver") || (ver != NULL && (ver[0] == '\0' || !strcmp(ver, "1.0"))))
        return jwt_string(payload, "appid");
    if (ver != NULL && strcmp(ver, "2.0") == 0)
        return jwt_string(payload, "azp");
    return NULL;
}

/*
 * skillValidation.ts isSkillClaim: a ver claim, an aud that is not the channel issuer,
 * and an app id (appid/azp) present and different from aud; or, as botbuilder-dotnet's
 * SkillValidation.IsSkillClaim adds, the anonymous skill app id. A bot-to-bot call, which
 * botgate does not front.
 */
static int
is_skill_claim(const st_jwt_object *payload)
{
    const char *appid = jwt_string(payload, "appid");
    if (appid != NULL && strcmp(appid, "AnonymousSkill") == 0)
        return 1;
    if (!jwt_has(payload, "ver"))
        return 0;
    const char *aud = jwt_string(payload, "aud");
    if (aud == NULL || aud[0] == '\0')
        return 0;
    for (size_t i = 0; i < sizeof(channel_audiences) / sizeof(channel_audiences[0]); i++)
        if (strcmp(aud, channel_audiences[i]) == 0)
            return 0;
    const char *app = app_id_claim(payload);
    return app != NULL && app[0] != '\0' && strcmp(app, aud) != 0;
}

/* Decodes one segment into buf and reads it as a JSON object into o. 0, or
 * BG_EAUTH_MALFORMED with err filled. */
static int
segment_object(const char *seg, size_t len, const char *what, unsigned char *buf, st_jwt_object *o,
               char *err, size_t errlen)
{
    long n = b64url_decode(seg, len, buf, AUTH_DECODED_MAX, 0);
    if (n < 0)
        return fail(BG_EAUTH_MALFORMED, err, errlen, "the token's %s is not base64url", what);
    if (jwt_object_parse((char *)buf, (size_t)n, o) != 0)
        return fail(BG_EAUTH_MALFORMED, err, errlen, "the token's %s is not a JSON object", what);
    return 0;
}

/*
 * Verifies the RSA signature over header "." payload with the key's template for alg:
 * digest with the pre-fetched md, then EVP_PKEY_verify on a duplicate of the template. A
 * signature whose length is not the modulus' is refused before any arithmetic. 1 valid,
 * 0 not, -1 OpenSSL failed.
 */
static int
verify_signature(const bg_keyset *ks, const st_bg_jwk *k, int alg, const char *input,
                 size_t input_len, const unsigned char *sig, size_t sig_len)
{
    if (sig_len != k->sig_len)
        return 0;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (EVP_Digest(input, input_len, digest, &dlen, ks->md[alg], NULL) != 1)
        return -1;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_dup(k->verify[alg]);
    if (ctx == NULL)
        return -1;
    int ok = EVP_PKEY_verify(ctx, sig, sig_len, digest, dlen);
    EVP_PKEY_CTX_free(ctx);
    return ok == 1;
}

/*
 * The checks that depend only on the token and the key sets (auth.h). The steps, in order,
 * each with its own code:
 *
 *   size -> three segments -> header: base64url, JSON object, no crit, alg, kid
 *   -> payload: base64url, JSON object -> skill? -> iss picks the key set (channel issuer,
 *   an Emulator issuer when allowed, else bad_issuer) -> kid in that set, key usable
 *   -> signature -> aud -> (Emulator: ver, appid/azp) -> exp present, exp/nbf numbers
 *
 * Nothing is allocated but the serviceurl copy at the end: the segments are decoded into
 * buffers on the stack (the token is at most BG_AUTH_MAX_TOKEN bytes) and read in place.
 */
int
bg_auth_verify_token(const bg_auth_params *p, const bg_keyset *channel_keys,
                     const bg_keyset *emulator_keys, const char *token, size_t token_len,
                     bg_auth_claims *claims, char *err, size_t errlen)
{
    if (claims != NULL)
        memset(claims, 0, sizeof(*claims));
    if (p == NULL || claims == NULL || (token == NULL && token_len > 0) || p->app_id == NULL ||
        p->app_id[0] == '\0' || p->issuer == NULL)
        return fail(BG_EINVAL, err, errlen, "invalid argument");
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (token_len > BG_AUTH_MAX_TOKEN)
        return fail(BG_EAUTH_TOO_LARGE, err, errlen, "the token is over %d bytes",
                    BG_AUTH_MAX_TOKEN);

    /* Three segments: header.payload.signature. */
    const char *dot1 = token_len ? memchr(token, '.', token_len) : NULL;
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', token_len - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', token_len - (size_t)(dot2 + 1 - token)) != NULL)
        return fail(BG_EAUTH_MALFORMED, err, errlen,
                    "the token is not three dot-separated segments");
    size_t hlen = (size_t)(dot1 - token), plen = (size_t)(dot2 - dot1 - 1);
    size_t slen = token_len - (size_t)(dot2 + 1 - token);

    unsigned char hbuf[AUTH_DECODED_MAX], pbuf[AUTH_DECODED_MAX];
    st_jwt_object header, payload;
    char kidbuf[68];
    int rc;

    if ((rc = segment_object(token, hlen, "header", hbuf, &header, err, errlen)) != 0)
        return rc;
    if (jwt_get(&header, "crit") != NULL)
        /* SDK: jsonwebtoken ignores crit; RFC 7515 §4.1.11 says refuse what is not
         * understood, and we understand no extension. */
        return fail(BG_EAUTH_MALFORMED, err, errlen, "the token's header has crit");
    const char *alg_s = jwt_string(&header, "alg");
    int alg = -1;
    for (int a = 0; alg_s != NULL && a < ALG_COUNT; a++)
        if (strcmp(alg_s, alg_names[a]) == 0)
            alg = a;
    if (alg < 0)
        return fail(BG_EAUTH_ALG, err, errlen, "the token's alg is %s, not RS256, RS384 or RS512",
                    alg_s == NULL ? "missing" : "another");
    const char *kid = jwt_string(&header, "kid");
    if (kid == NULL || kid[0] == '\0')
        return fail(BG_EAUTH_NO_KID, err, errlen, "the token's header has no kid string");

    if ((rc = segment_object(dot1 + 1, plen, "payload", pbuf, &payload, err, errlen)) != 0)
        return rc;

    /* SDK: parameterizedBotFrameworkAuthentication.ts routes skill tokens first (and then
     * refuses them without a claims validator): so do we, before any key is looked up. */
    if (is_skill_claim(&payload))
        return fail(BG_EAUTH_SKILL, err, errlen,
                    "the token is a skill (bot-to-bot) token, which is not accepted");
    /* The issuer decides the key set before the signature is checked, as the SDK's
     * hasAllowedIssuer does: a channel-issued token is never verified with the Emulator's
     * (AAD) keys, which sign for any AAD application. */
    const char *iss = jwt_string(&payload, "iss");
    int emulator = 0;
    if (iss == NULL)
        return fail(BG_EAUTH_ISSUER, err, errlen, "the token has no iss string");
    if (strcmp(iss, p->issuer) != 0) {
        if (!is_emulator_issuer(p, iss))
            return fail(BG_EAUTH_ISSUER, err, errlen, "the token's iss is not %s", p->issuer);
        if (!p->allow_emulator)
            return fail(BG_EAUTH_EMULATOR, err, errlen,
                        "the token is an Emulator token and auth.allow_emulator is off");
        emulator = 1;
    }
    const char *which = emulator ? "Emulator" : "channel";
    const bg_keyset *ks = emulator ? emulator_keys : channel_keys;
    if (ks == NULL || ks->n == 0)
        return fail(BG_EKEYS, err, errlen, "no %s signing keys are loaded", which);
    const st_bg_jwk *k = keyset_find(ks, kid);
    if (k == NULL)
        return fail(BG_EAUTH_UNKNOWN_KID, err, errlen, "kid \"%s\" is not among the %s keys",
                    printable(kidbuf, kid), which);
    if (!k->usable)
        return fail(BG_EAUTH_BAD_KEY, err, errlen, "kid \"%s\": %s", printable(kidbuf, kid),
                    k->unusable);

    /* The signature is the modulus' length; anything longer is refused undecoded. */
    unsigned char sig[RSA_MAX_BITS / 8 + 3];
    long sig_len =
        slen / 4 * 3 > sizeof(sig) - 3 ? -2 : b64url_decode(dot2 + 1, slen, sig, sizeof(sig), 0);
    if (sig_len == -1)
        return fail(BG_EAUTH_MALFORMED, err, errlen, "the token's signature is not base64url");
    int ok = sig_len < 0 ? 0
                         : verify_signature(ks, k, alg, token, (size_t)(dot2 - token), sig,
                                            (size_t)sig_len);
    if (ok < 0)
        return fail(BG_ENOMEM, err, errlen, "OpenSSL failed verifying the signature");
    if (!ok)
        return fail(BG_EAUTH_SIGNATURE, err, errlen, "the token's signature does not verify");

    /* SDK: the audience is one JSON string equal to the app id (see 5. above). */
    const char *aud = jwt_string(&payload, "aud");
    if (aud == NULL || strcmp(aud, p->app_id) != 0)
        return fail(BG_EAUTH_AUDIENCE, err, errlen, "the token's aud is %s",
                    jwt_get(&payload, "aud") == NULL ? "missing"
                    : aud == NULL                    ? "not a string"
                                                     : "not this bot's app id");
    if (emulator) {
        /* emulatorValidation.ts: ver is required; "1.0" carries the app id in appid, "2.0"
         * in azp; any other version is refused. */
        const char *ver = jwt_string(&payload, "ver");
        int v1 = ver != NULL && strcmp(ver, "1.0") == 0, v2 = ver != NULL && !strcmp(ver, "2.0");
        if (!v1 && !v2)
            return fail(BG_EAUTH_APPID, err, errlen,
                        "the Emulator token's ver is not \"1.0\" or \"2.0\"");
        const char *app = jwt_string(&payload, v1 ? "appid" : "azp");
        if (app == NULL || strcmp(app, p->app_id) != 0)
            return fail(BG_EAUTH_APPID, err, errlen,
                        "the Emulator token's %s is not this bot's app id", v1 ? "appid" : "azp");
    }

    int have_exp, have_nbf;
    int64_t exp, nbf;
    /* SDK: jsonwebtoken accepts a token without exp; we do not (1. above). */
    if (numeric_date(&payload, "exp", 0, &exp, &have_exp) != 0 || !have_exp)
        return fail(BG_EAUTH_NO_EXP, err, errlen, "the token's exp is %s",
                    have_exp ? "not a number" : "missing");
    if (numeric_date(&payload, "nbf", 1, &nbf, &have_nbf) != 0)
        return fail(BG_EAUTH_MALFORMED, err, errlen, "the token's nbf is not a number");

    /* The claim is exactly "serviceurl" (AuthenticationConstants.ServiceUrlClaim): a
     * "serviceUrl" claim is another claim and does not count. A non-string is as absent;
     * bg_auth_check_request refuses both. Emulator tokens carry none. */
    const char *su = emulator ? NULL : jwt_string(&payload, "serviceurl");
    if (su != NULL && (claims->service_url = strdup(su)) == NULL)
        return fail(BG_ENOMEM, err, errlen, "out of memory");
    claims->exp = exp;
    claims->nbf = nbf;
    claims->emulator = emulator;
    memcpy(claims->kid, k->kid, sizeof(claims->kid));
    memcpy(claims->key_fingerprint, k->fingerprint, sizeof(claims->key_fingerprint));
    return 0;
}

/* 1 when the key endorses channel_id: an exact, case-sensitive match, as the SDKs' own. */
static int
endorsed(const st_bg_jwk *k, const char *channel_id)
{
    for (size_t i = 0; i < k->n_endorsements; i++)
        if (strcmp(k->endorsements[i], channel_id) == 0)
            return 1;
    return 0;
}

/*
 * The per-request rules (auth.h). Time first (the commonest failure once a token is
 * cached), then the key, looked up again in the current set and compared by fingerprint
 * so that a key rotated out, or replaced under the same kid, takes its tokens with it;
 * then, for a channel token, serviceurl and the endorsements.
 */
int
bg_auth_check_request(const bg_auth_params *p, const bg_keyset *channel_keys,
                      const bg_keyset *emulator_keys, const bg_auth_claims *claims,
                      const char *service_url, const char *channel_id, int64_t now, char *err,
                      size_t errlen)
{
    if (p == NULL || claims == NULL || service_url == NULL || channel_id == NULL)
        return fail(BG_EINVAL, err, errlen, "invalid argument");
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    int64_t skew = p->clock_skew_s > 0 ? p->clock_skew_s : 0;
    /* SDK: jsonwebtoken's boundary (now >= exp + skew is expired), 2. above. Written as
     * now - skew so that no sum of token values can overflow. */
    if (now - skew >= claims->exp)
        return fail(BG_EAUTH_EXPIRED, err, errlen, "the token expired %lld s ago",
                    (long long)(now - claims->exp));
    if (claims->nbf > now + skew)
        return fail(BG_EAUTH_NOT_YET, err, errlen, "the token is valid only in %lld s",
                    (long long)(claims->nbf - now));

    const bg_keyset *ks = claims->emulator ? emulator_keys : channel_keys;
    char kidbuf[68];
    const st_bg_jwk *k = ks != NULL ? keyset_find(ks, claims->kid) : NULL;
    if (k == NULL || !k->usable ||
        memcmp(k->fingerprint, claims->key_fingerprint, sizeof(k->fingerprint)) != 0)
        return fail(BG_EAUTH_UNKNOWN_KID, err, errlen,
                    "the token's key \"%s\" is no longer among the %s keys",
                    printable(kidbuf, claims->kid), claims->emulator ? "Emulator" : "channel");
    /* emulatorValidation.ts checks neither serviceurl nor endorsements: AAD tokens carry
     * no serviceurl and AAD keys no endorsements. */
    if (claims->emulator)
        return 0;

    /* SDK: compared even when the activity's serviceUrl is empty (3. above); the JS SDK's
     * `!==`, byte for byte: no case folding, no trailing-slash normalisation. */
    if (claims->service_url == NULL)
        return fail(BG_EAUTH_SERVICEURL, err, errlen, "the token has no serviceurl claim");
    if (strcmp(claims->service_url, service_url) != 0)
        return fail(BG_EAUTH_SERVICEURL, err, errlen,
                    "the token's serviceurl is not the activity's serviceUrl");

    if (k->n_endorsements == 0) {
        /* SDK: botbuilder-js (jwtTokenExtractor.ts) skips the check for a key without
         * endorsements; .NET refuses. require_endorsements picks (4. above). */
        if (p->require_endorsements)
            return fail(BG_EAUTH_ENDORSEMENT, err, errlen,
                        "the signing key \"%s\" has no endorsements (auth.require_endorsements)",
                        printable(kidbuf, claims->kid));
        return 0;
    }
    if (!endorsed(k, channel_id))
        return fail(BG_EAUTH_ENDORSEMENT, err, errlen,
                    "the signing key \"%s\" is not endorsed for the activity's channelId",
                    printable(kidbuf, claims->kid));
    return 0;
}

/* Frees the serviceurl copy and zeroes the claims; twice is harmless. */
void
bg_auth_claims_clear(bg_auth_claims *claims)
{
    if (claims == NULL)
        return;
    free(claims->service_url);
    memset(claims, 0, sizeof(*claims));
}
