/*
 * Test-side Bot Framework keys and tokens (see mint.h): the Connector's half of the
 * handshake, done with OpenSSL 3 so that every test mints real, correctly signed tokens
 * with keys generated at test time.
 *
 * A minted token is the JWS compact form
 *
 *     base64url(header JSON) "." base64url(payload JSON) "." base64url(signature)
 *
 * with the signature over the first two segments and the dot between them, computed as
 *
 *     RS256 / RS384 / RS512   RSASSA-PKCS1-v1_5 with SHA-256 / 384 / 512 (what the Connector uses)
 *     HS256                   HMAC-SHA-256 keyed with hmac_secret, or by default with the
 *                             public key's PEM text (the classic algorithm-confusion attack)
 *     ES256                   ECDSA P-256 + SHA-256, in JOSE's raw r||s form (64 bytes)
 *     none                    no signature: the token ends with the second dot
 *
 * Anything else in alg is written to the header as given and signed like RS256 when a key
 * is there, so that a test can present a well-signed token with a refused alg name.
 */
#include "mint.h"
#include "cert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

/* A growable string: the token and the JSON documents are assembled in one. */
typedef struct st_bgt_buf {
    char *p;
    size_t len, cap;
    int failed;
} bgt_buf;

/* Appends n bytes, remembering an allocation failure instead of reporting each one: the
 * caller checks `failed` once at the end. */
static void
buf_add(bgt_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
buf_str(bgt_buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* Appends s as a JSON string literal (quoted, escaped) using jansson's encoder, so that a
 * test value with quotes or non-ASCII bytes still yields valid JSON. */
static void
buf_json_string(bgt_buf *b, const char *s)
{
    json_t *j = json_string(s);
    char *enc = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    if (enc == NULL)
        b->failed = 1;
    else
        buf_str(b, enc);
    free(enc);
    json_decref(j);
}

/* Appends the base64url form (RFC 7515 §2: URL alphabet, no padding) of n bytes. */
static void
buf_b64url(bgt_buf *b, const unsigned char *in, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char out[4];
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[0] = tab[v >> 18 & 63];
        out[1] = tab[v >> 12 & 63];
        out[2] = tab[v >> 6 & 63];
        out[3] = tab[v & 63];
        buf_add(b, out, 4);
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[0] = tab[v >> 18 & 63];
        out[1] = tab[v >> 12 & 63];
        buf_add(b, out, 2);
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[0] = tab[v >> 18 & 63];
        out[1] = tab[v >> 12 & 63];
        out[2] = tab[v >> 6 & 63];
        buf_add(b, out, 3);
    }
}

/* The finished string, or NULL (and the buffer freed) when any append failed. */
static char *
buf_finish(bgt_buf *b)
{
    if (b->failed || b->p == NULL) {
        free(b->p);
        return NULL;
    }
    return b->p;
}

char *
bgt_b64url_encode(const unsigned char *in, size_t n)
{
    bgt_buf b = {0};
    buf_add(&b, "", 0);
    buf_b64url(&b, in, n);
    return buf_finish(&b);
}

/* Generates the RSA key; the struct is reset first so that a test fills endorsements
 * afterwards on a clean slate. */
int
bgt_key_generate_rsa(bgt_key *key, const char *kid, int bits)
{
    memset(key, 0, sizeof(*key));
    key->pkey = EVP_RSA_gen((unsigned)bits);
    if (key->pkey == NULL)
        return -1;
    snprintf(key->kid, sizeof(key->kid), "%s", kid);
    return 0;
}

int
bgt_key_generate_ec(bgt_key *key, const char *kid)
{
    memset(key, 0, sizeof(*key));
    key->pkey = EVP_EC_gen("P-256");
    if (key->pkey == NULL)
        return -1;
    snprintf(key->kid, sizeof(key->kid), "%s", kid);
    return 0;
}

/* Writes the private key as unencrypted PEM: test keys only, made at test time. */
int
bgt_key_save(const bgt_key *key, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int ok = PEM_write_PrivateKey(f, key->pkey, NULL, NULL, 0, NULL, NULL);
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

int
bgt_key_load(bgt_key *key, const char *path, const char *kid)
{
    memset(key, 0, sizeof(*key));
    key->pkey = bgt_pem_read_private_key(path);
    if (key->pkey == NULL)
        return -1;
    snprintf(key->kid, sizeof(key->kid), "%s", kid);
    return 0;
}

void
bgt_key_free(bgt_key *key)
{
    if (key == NULL)
        return;
    EVP_PKEY_free(key->pkey);
    key->pkey = NULL;
}

/* Appends the base64url big-endian bytes of one BIGNUM parameter of the key (RSA n/e, EC
 * x/y), padded on the left to `width` bytes when width > 0 (EC coordinates are fixed
 * width in a JWK; RSA values are minimal). */
static void
buf_b64url_param(bgt_buf *b, const EVP_PKEY *pkey, const char *name, int width)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pkey, name, &bn)) {
        b->failed = 1;
        return;
    }
    int n = width > 0 ? width : BN_num_bytes(bn);
    unsigned char *bytes = malloc(n > 0 ? (size_t)n : 1);
    if (bytes == NULL || BN_bn2binpad(bn, bytes, n) < 0)
        b->failed = 1;
    else
        buf_b64url(b, bytes, (size_t)n);
    free(bytes);
    BN_free(bn);
}

/* The JWKS as the Bot Framework publishes it: kty, use, kid, n, e, and the endorsements
 * array of channel ids the key may sign for. An EC key is written as an EC JWK (x, y), so
 * that a test can offer a key the verifier must refuse as "not RSA". */
char *
bgt_jwks_json(const bgt_key *keys, size_t n)
{
    bgt_buf b = {0};
    buf_str(&b, "{\"keys\":[");
    for (size_t i = 0; i < n; i++) {
        const bgt_key *k = &keys[i];
        if (i > 0)
            buf_str(&b, ",");
        int is_rsa = EVP_PKEY_is_a(k->pkey, "RSA");
        buf_str(&b, is_rsa ? "{\"kty\":\"RSA\",\"use\":\"sig\",\"kid\":"
                           : "{\"kty\":\"EC\",\"use\":\"sig\",\"crv\":\"P-256\",\"kid\":");
        buf_json_string(&b, k->kid);
        if (is_rsa) {
            buf_str(&b, ",\"n\":\"");
            buf_b64url_param(&b, k->pkey, OSSL_PKEY_PARAM_RSA_N, 0);
            buf_str(&b, "\",\"e\":\"");
            buf_b64url_param(&b, k->pkey, OSSL_PKEY_PARAM_RSA_E, 0);
            buf_str(&b, "\"");
        } else {
            buf_str(&b, ",\"x\":\"");
            buf_b64url_param(&b, k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32);
            buf_str(&b, "\",\"y\":\"");
            buf_b64url_param(&b, k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
            buf_str(&b, "\"");
        }
        if (!k->no_endorsements_field) {
            buf_str(&b, ",\"endorsements\":[");
            for (size_t e = 0; e < 8 && k->endorsements[e] != NULL; e++) {
                if (e > 0)
                    buf_str(&b, ",");
                buf_json_string(&b, k->endorsements[e]);
            }
            buf_str(&b, "]");
        }
        buf_str(&b, "}");
    }
    buf_str(&b, "]}");
    return buf_finish(&b);
}

/* The members of login.botframework.com's metadata document that matter, plus the ones a
 * real document has, so that a parser that trips on extra members is caught. */
char *
bgt_openid_json(const char *issuer, const char *jwks_uri)
{
    bgt_buf b = {0};
    buf_str(&b, "{\"issuer\":");
    buf_json_string(&b, issuer);
    buf_str(&b, ",\"authorization_endpoint\":\"https://invalid.botframework.com\",\"jwks_uri\":");
    buf_json_string(&b, jwks_uri);
    buf_str(&b, ",\"id_token_signing_alg_values_supported\":[\"RS256\"],"
                "\"token_endpoint_auth_methods_supported\":[\"private_key_jwt\"]}");
    return buf_finish(&b);
}

char *
bgt_key_public_pem(const bgt_key *key, size_t *len)
{
    return bgt_pem_public_key(key->pkey, len);
}

/* The default header, {"alg":..,"kid":..,"typ":"JWT"} as the Connector writes it (it adds
 * x5t, which verifiers ignore). */
static void
buf_header(bgt_buf *b, const bgt_mint *m, const char *alg)
{
    buf_str(b, "{\"alg\":");
    buf_json_string(b, alg);
    const char *kid = m->kid ? m->kid : (m->key ? m->key->kid : "");
    if (!m->omit_kid && kid[0] != '\0') {
        buf_str(b, ",\"kid\":");
        buf_json_string(b, kid);
    }
    buf_str(b, ",\"typ\":\"JWT\"}");
}

/* Appends ,"name":value for a number claim (or the first member without the comma). */
static void
buf_num_claim(bgt_buf *b, int *first, const char *name, int64_t v)
{
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s\"%s\":%lld", *first ? "" : ",", name, (long long)v);
    *first = 0;
    buf_str(b, tmp);
}

static void
buf_str_claim(bgt_buf *b, int *first, const char *name, const char *v)
{
    if (v == NULL)
        return;
    if (!*first)
        buf_str(b, ",");
    *first = 0;
    buf_str(b, "\"");
    buf_str(b, name);
    buf_str(b, "\":");
    buf_json_string(b, v);
}

/* The default payload: the claims the Connector sends, each left out when unset. */
static void
buf_payload(bgt_buf *b, const bgt_mint *m)
{
    int first = 1;
    buf_str(b, "{");
    buf_str_claim(b, &first, "iss", m->iss);
    buf_str_claim(b, &first, "aud", m->aud);
    buf_str_claim(b, &first, "serviceurl", m->serviceurl);
    if (m->nbf_set)
        buf_num_claim(b, &first, "nbf", m->nbf);
    if (m->exp_set)
        buf_num_claim(b, &first, "exp", m->exp);
    if (m->iat_set)
        buf_num_claim(b, &first, "iat", m->iat);
    if (m->extra_claims != NULL && m->extra_claims[0] != '\0') {
        if (!first)
            buf_str(b, ",");
        buf_str(b, m->extra_claims);
    }
    buf_str(b, "}");
}

/* Signs data with the key's private half and a message digest: RSASSA-PKCS1-v1_5 for an
 * RSA key (OpenSSL's default padding), DER ECDSA for an EC key. *sig is malloc'd. */
static int
sign_digest(EVP_PKEY *pkey, const EVP_MD *md, const char *data, size_t len, unsigned char **sig,
            size_t *siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = -1;
    *sig = NULL;
    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, md, NULL, pkey) != 1 ||
        EVP_DigestSign(ctx, NULL, siglen, (const unsigned char *)data, len) != 1)
        goto out;
    *sig = malloc(*siglen);
    if (*sig == NULL || EVP_DigestSign(ctx, *sig, siglen, (const unsigned char *)data, len) != 1)
        goto out;
    rc = 0;
out:
    if (rc != 0) {
        free(*sig);
        *sig = NULL;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Converts a DER ECDSA signature to JOSE's fixed-width r||s (RFC 7518 §3.4). */
static int
ecdsa_der_to_raw(unsigned char **sig, size_t *siglen, int width)
{
    const unsigned char *p = *sig;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)*siglen);
    if (es == NULL)
        return -1;
    unsigned char *raw = malloc((size_t)width * 2);
    int rc = -1;
    if (raw != NULL && BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, width) == width &&
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + width, width) == width) {
        free(*sig);
        *sig = raw;
        *siglen = (size_t)width * 2;
        raw = NULL;
        rc = 0;
    }
    free(raw);
    ECDSA_SIG_free(es);
    return rc;
}

/* Computes the signature segment's bytes for alg over signing input `in`. An empty
 * signature (alg none, or no key) is a valid result with *siglen == 0. */
static int
sign_input(const bgt_mint *m, const char *alg, const char *in, size_t len, unsigned char **sig,
           size_t *siglen)
{
    *sig = NULL;
    *siglen = 0;
    if (strcmp(alg, "none") == 0)
        return 0;
    if (strcmp(alg, "HS256") == 0) {
        char *pem = NULL;
        const unsigned char *secret = m->hmac_secret;
        size_t secret_len = m->hmac_secret_len;
        if (secret == NULL) {
            if (m->key == NULL)
                return -1;
            pem = bgt_key_public_pem(m->key, &secret_len);
            if (pem == NULL)
                return -1;
            secret = (const unsigned char *)pem;
        }
        unsigned char *mac = malloc(EVP_MAX_MD_SIZE);
        unsigned int maclen = 0;
        int ok = mac != NULL && HMAC(EVP_sha256(), secret, (int)secret_len,
                                     (const unsigned char *)in, len, mac, &maclen) != NULL;
        free(pem);
        if (!ok) {
            free(mac);
            return -1;
        }
        *sig = mac;
        *siglen = maclen;
        return 0;
    }
    if (m->key == NULL || m->key->pkey == NULL)
        return 0;
    if (strcmp(alg, "ES256") == 0) {
        if (sign_digest(m->key->pkey, EVP_sha256(), in, len, sig, siglen) != 0)
            return -1;
        return EVP_PKEY_is_a(m->key->pkey, "EC") ? ecdsa_der_to_raw(sig, siglen, 32) : 0;
    }
    const EVP_MD *md = EVP_sha256();
    if (strcmp(alg, "RS384") == 0)
        md = EVP_sha384();
    else if (strcmp(alg, "RS512") == 0)
        md = EVP_sha512();
    return sign_digest(m->key->pkey, md, in, len, sig, siglen);
}

char *
bgt_mint_token(const bgt_mint *m)
{
    const char *alg = m->alg ? m->alg : "RS256";
    bgt_buf json = {0}, tok = {0};
    char *out = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;

    if (m->header_json != NULL)
        buf_str(&json, m->header_json);
    else
        buf_header(&json, m, alg);
    if (json.failed)
        goto out;
    buf_b64url(&tok, (const unsigned char *)json.p, json.len);
    buf_str(&tok, ".");

    json.len = 0;
    if (m->payload_json != NULL)
        buf_str(&json, m->payload_json);
    else
        buf_payload(&json, m);
    if (json.failed)
        goto out;
    buf_b64url(&tok, (const unsigned char *)json.p, json.len);
    if (tok.failed)
        goto out;

    if (sign_input(m, alg, tok.p, tok.len, &sig, &siglen) != 0)
        goto out;
    buf_str(&tok, ".");
    buf_b64url(&tok, sig, siglen);
    out = buf_finish(&tok);
    tok.p = NULL;
out:
    free(tok.p);
    free(json.p);
    free(sig);
    return out;
}
