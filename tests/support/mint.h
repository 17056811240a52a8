/*
 * Test-side Bot Framework keys and tokens: what the Connector does, done with OpenSSL in
 * the test. Used by the unit tests, the integration tests, the fake Connector
 * (tests/tools/) and the benchmark. Keys are generated at test time; nothing secret is
 * committed.
 */
#ifndef BOTGATE_TEST_MINT_H
#define BOTGATE_TEST_MINT_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

typedef struct bgt_key {
    EVP_PKEY *pkey; /* RSA private key (or EC for the ES256 negative case) */
    char kid[64];
    const char *endorsements[8]; /* NULL-terminated; endorsements[0] == NULL: none */
    int no_endorsements_field;   /* 1: the JWK has no "endorsements" member at all */
} bgt_key;

/* Generates an RSA key of `bits` (2048 unless testing) with this kid. 0 or -1. */
int bgt_key_generate_rsa(bgt_key *key, const char *kid, int bits);
/* An EC P-256 key, for the "ES256 is refused" case. */
int bgt_key_generate_ec(bgt_key *key, const char *kid);
/* PEM private key to/from a file (the fake Connector and the tests share keys this way). */
int bgt_key_save(const bgt_key *key, const char *path);
int bgt_key_load(bgt_key *key, const char *path, const char *kid);
void bgt_key_free(bgt_key *key);

/* A JWKS document ({"keys":[...]}) for n keys, with their endorsements; malloc'd. */
char *bgt_jwks_json(const bgt_key *keys, size_t n);
/* An OpenID metadata document whose jwks_uri is jwks_uri; malloc'd. */
char *bgt_openid_json(const char *issuer, const char *jwks_uri);

/* A token to mint. NULL strings are left out of the token; *_set flags say whether a
 * number claim is present. */
typedef struct bgt_mint {
    const bgt_key *key; /* signs; NULL with alg "none" = no signature */
    const char *alg; /* "RS256" (default when NULL), "RS384", "RS512", "none", "HS256", "ES256" */
    const char *kid; /* header kid; default key->kid; "" = omit the kid */
    int omit_kid;    /* 1: no kid in the header */
    const char *iss; /* e.g. "https://api.botframework.com" */
    const char *aud; /* the app id */
    const char *serviceurl; /* the "serviceurl" claim */
    int64_t exp, nbf, iat;
    int exp_set, nbf_set, iat_set;
    const char *extra_claims; /* raw JSON members appended to the payload, e.g. "\"ver\":\"1.0\"" */
    const char *header_json;  /* when set, the whole header JSON (overrides alg/kid) */
    const char *payload_json; /* when set, the whole payload JSON (overrides the claims) */
    const unsigned char
        *hmac_secret; /* for alg HS256; NULL: key's public PEM (the classic attack) */
    size_t hmac_secret_len;
} bgt_mint;

/* Mints a compact JWS (malloc'd, NUL-terminated) or NULL. */
char *bgt_mint_token(const bgt_mint *m);

/* The public key of `key` as PEM text (malloc'd): what an attacker would HMAC with. */
char *bgt_key_public_pem(const bgt_key *key, size_t *len);

/* base64url (URL alphabet, no padding) of n bytes, malloc'd; for hand-made segments. */
char *bgt_b64url_encode(const unsigned char *in, size_t n);

#endif
