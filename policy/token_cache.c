/*
 * The verified-token cache (auth.h, bottom part): what bg_auth_verify_token concluded
 * about a token, kept by the SHA-256 of the token's bytes, so that the RSA check is paid
 * once per token rather than once per request (the Connector reuses a token for about an
 * hour).
 *
 * A chained hash table indexes the entries; the same entries sit on one doubly linked
 * list in order of use, most recent at the head, so that a hit, an insert and an eviction
 * each cost O(1):
 *
 *   buckets[]  (a power of two >= capacity: load factor at most 1)
 *   [0] -> e7 -> e2
 *   [1]
 *   [2] -> e5                     head <-> e5 <-> e2 <-> e7 <-> tail
 *   ...                           (most recent)          (evicted first)
 *
 * The bucket is the low bits of the digest's first 8 bytes. An attacker who can choose
 * token bytes can grind digests into one bucket, but only tokens that verified (signed by
 * a Bot Framework key) are ever stored, so chains stay as short as the hash makes them.
 *
 * The key is the digest, not the token: the cache keeps no bearer credential in memory
 * after the request, and every key has the same 32-byte size. Pure: the time comes in as
 * a parameter. Not locked: a get reorders the list, so one cache belongs to one thread
 * (botgate runs one event loop).
 */
#include "botgate/auth.h"
#include "botgate/error.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define DIGEST_LEN 32

typedef struct st_token_entry {
    uint8_t digest[DIGEST_LEN];
    bg_auth_claims claims;              /* owned copy: claims.service_url is ours */
    struct st_token_entry *chain;       /* next in the bucket */
    struct st_token_entry *prev, *next; /* the use order; prev is more recent */
} st_token_entry;

struct bg_token_cache {
    size_t capacity, size;
    size_t mask;              /* buckets - 1 */
    st_token_entry **buckets; /* mask + 1 chains */
    st_token_entry *head;     /* most recently used */
    st_token_entry *tail;     /* least recently used: evicted first */
    EVP_MD *sha256;           /* fetched once: an implicit fetch per digest costs a lock */
};

/*
 * A cache for at most `capacity` tokens. Capacity 0 makes a cache that stores nothing
 * (every get misses): caching off, with no special case in the caller. The bucket array
 * is allocated here (8 bytes a place; calloc leaves the pages of a large one untouched
 * until entries land in them), the entries as tokens arrive. NULL when out of memory or when the
 * capacity is too large to index.
 */
bg_token_cache *
bg_token_cache_new(size_t capacity)
{
    size_t nbuckets = 1;
    while (nbuckets < capacity) {
        if (nbuckets > SIZE_MAX / 2 / sizeof(st_token_entry *))
            return NULL;
        nbuckets *= 2;
    }
    bg_token_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->capacity = capacity;
    c->mask = nbuckets - 1;
    c->buckets = calloc(nbuckets, sizeof(*c->buckets));
    c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (c->buckets == NULL || c->sha256 == NULL) {
        bg_token_cache_free(c);
        return NULL;
    }
    return c;
}

/* Frees one entry and the serviceUrl copy it owns. */
static void
entry_free(st_token_entry *e)
{
    free(e->claims.service_url);
    free(e);
}

/* Frees every entry, the table and the cache; NULL is allowed. */
void
bg_token_cache_free(bg_token_cache *c)
{
    if (c == NULL)
        return;
    for (st_token_entry *e = c->head, *next; e != NULL; e = next) {
        next = e->next;
        entry_free(e);
    }
    free(c->buckets);
    EVP_MD_free(c->sha256);
    free(c);
}

/* The SHA-256 of the token bytes. 0, or -1 when OpenSSL fails (out of memory). */
static int
digest_of(const bg_token_cache *c, const char *token, size_t len, uint8_t out[DIGEST_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(token != NULL ? token : "", token != NULL ? len : 0, out, &n, c->sha256, NULL) !=
            1 ||
        n != DIGEST_LEN)
        return -1;
    return 0;
}

/* The bucket a digest hashes to: its first 8 bytes, which SHA-256 makes uniform. */
static st_token_entry **
bucket_of(const bg_token_cache *c, const uint8_t digest[DIGEST_LEN])
{
    uint64_t h;
    memcpy(&h, digest, sizeof(h));
    return &c->buckets[h & c->mask];
}

/* The entry for a digest, or NULL. */
static st_token_entry *
find(const bg_token_cache *c, const uint8_t digest[DIGEST_LEN])
{
    for (st_token_entry *e = *bucket_of(c, digest); e != NULL; e = e->chain)
        if (memcmp(e->digest, digest, DIGEST_LEN) == 0)
            return e;
    return NULL;
}

/* Takes e off the use order (it stays in its bucket). */
static void
order_unlink(bg_token_cache *c, st_token_entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

/* Puts e at the head of the use order: the most recently used. */
static void
order_push_head(bg_token_cache *c, st_token_entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head != NULL)
        c->head->prev = e;
    else
        c->tail = e;
    c->head = e;
}

/* Takes e out of the cache (bucket and use order) and frees it. */
static void
drop(bg_token_cache *c, st_token_entry *e)
{
    for (st_token_entry **pp = bucket_of(c, e->digest); *pp != NULL; pp = &(*pp)->chain) {
        if (*pp == e) {
            *pp = e->chain;
            break;
        }
    }
    order_unlink(c, e);
    c->size--;
    entry_free(e);
}

/*
 * 1 once now is past exp by more than the skew: the same bound bg_auth_check_request
 * applies, so an entry leaves the cache no earlier than its token stops being accepted.
 * exp + skew is computed without overflow (exp comes from a signed token, but any int64
 * is possible); a negative skew counts as none.
 */
static int
expired(const bg_auth_claims *claims, int64_t now, int clock_skew_s)
{
    int64_t limit;
    if (__builtin_add_overflow(claims->exp, (int64_t)(clock_skew_s > 0 ? clock_skew_s : 0), &limit))
        return 0;
    return now >= limit; /* as bg_auth_check_request: expired at exp + skew */
}

/*
 * A hit moves the entry to the head of the use order; an expired entry is dropped on the
 * spot (so expiry costs nothing until the token is presented again, and the LRU bound
 * takes care of tokens that never are).
 */
const bg_auth_claims *
bg_token_cache_get(bg_token_cache *c, const char *token, size_t len, int64_t now, int clock_skew_s)
{
    uint8_t digest[DIGEST_LEN];
    if (c == NULL || c->size == 0 || digest_of(c, token, len, digest) != 0)
        return NULL;
    st_token_entry *e = find(c, digest);
    if (e == NULL)
        return NULL;
    if (expired(&e->claims, now, clock_skew_s)) {
        drop(c, e);
        return NULL;
    }
    if (c->head != e) {
        order_unlink(c, e);
        order_push_head(c, e);
    }
    return &e->claims;
}

/*
 * Copies claims into owned memory: the struct, and the serviceUrl string, which the
 * caller's claims own and bg_auth_claims_clear will free. kid is terminated whatever the
 * source held. 0 or -1 (out of memory).
 */
static int
claims_copy(bg_auth_claims *dst, const bg_auth_claims *src)
{
    char *url = NULL;
    if (src->service_url != NULL && (url = strdup(src->service_url)) == NULL)
        return -1;
    *dst = *src;
    dst->kid[sizeof(dst->kid) - 1] = '\0';
    dst->service_url = url;
    return 0;
}

/*
 * Stores a copy of claims. The same token again replaces its claims and counts as a use;
 * a new token when the cache is full evicts the least recently used one. Everything that
 * can fail (the copies) is done before anything is evicted, so a failed put leaves the
 * cache as it was.
 */
int
bg_token_cache_put(bg_token_cache *c, const char *token, size_t len, const bg_auth_claims *claims)
{
    uint8_t digest[DIGEST_LEN];
    if (c == NULL || claims == NULL)
        return BG_EINVAL;
    if (c->capacity == 0)
        return 0;
    if (digest_of(c, token, len, digest) != 0)
        return BG_ENOMEM;
    st_token_entry *e = find(c, digest);
    if (e != NULL) {
        bg_auth_claims copy;
        if (claims_copy(&copy, claims) != 0)
            return BG_ENOMEM;
        free(e->claims.service_url);
        e->claims = copy;
        if (c->head != e) {
            order_unlink(c, e);
            order_push_head(c, e);
        }
        return 0;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return BG_ENOMEM;
    if (claims_copy(&e->claims, claims) != 0) {
        free(e);
        return BG_ENOMEM;
    }
    memcpy(e->digest, digest, DIGEST_LEN);
    if (c->size == c->capacity)
        drop(c, c->tail);
    st_token_entry **bucket = bucket_of(c, digest);
    e->chain = *bucket;
    *bucket = e;
    order_push_head(c, e);
    c->size++;
    return 0;
}

/*
 * After a key set changes: drops every entry whose key is gone, so a token signed by a
 * rotated-out (perhaps compromised) key stops being accepted from the cache at once
 * rather than at its expiry. Channel tokens are looked up in channel_keys, Emulator
 * tokens in emulator_keys; a NULL set has no keys. O(size), which is fine: key sets change
 * once a day.
 */
void
bg_token_cache_prune_keys(bg_token_cache *c, const bg_keyset *channel_keys,
                          const bg_keyset *emulator_keys)
{
    if (c == NULL)
        return;
    for (st_token_entry *e = c->head, *next; e != NULL; e = next) {
        next = e->next;
        const bg_keyset *keys = e->claims.emulator ? emulator_keys : channel_keys;
        if (keys == NULL || !bg_keyset_has_kid(keys, e->claims.kid))
            drop(c, e);
    }
}

/* How many tokens are cached (expired ones included until they are next looked up). */
size_t
bg_token_cache_size(const bg_token_cache *c)
{
    return c != NULL ? c->size : 0;
}
