/*
 * The verified-token cache (policy/token_cache.c): hits and misses by token bytes, expiry
 * with the skew, least-recently-used eviction, owned copies of the claims, and pruning
 * when a key is rotated out. A model-based run checks the hash table and use order
 * against a plain array on thousands of random operations.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "botgate/auth.h"
#include "botgate/error.h"
#include "mint.h"

#define S(x) x, strlen(x)

/* RSA keys for the pruning test, made once for the whole run (1024 bits: the smallest
 * bg_keyset_parse accepts, and quick to generate). */
static const char *const pool_kids[] = {"k1", "k2", "k3", "e1"};
static bgt_key pool[4];

static int
make_pool(void **state)
{
    (void)state;
    for (size_t i = 0; i < 4; i++)
        if (bgt_key_generate_rsa(&pool[i], pool_kids[i], 1024) != 0)
            return -1;
    return 0;
}

static int
free_pool(void **state)
{
    (void)state;
    for (size_t i = 0; i < 4; i++)
        bgt_key_free(&pool[i]);
    return 0;
}

/* A key set holding exactly these kids (from the pool), parsed from its JWKS as botgate
 * parses the real one. */
static bg_keyset *
keyset_of(const char *const *kids, size_t n)
{
    bgt_key chosen[4];
    assert_true(n <= 4);
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < 4 && strcmp(pool_kids[j], kids[i]) != 0)
            j++;
        assert_true(j < 4);
        chosen[i] = pool[j];
    }
    char *json = bgt_jwks_json(chosen, n);
    assert_non_null(json);
    bg_keyset *ks = NULL;
    char err[200] = "";
    if (bg_keyset_parse(&ks, json, strlen(json), err, sizeof(err)) != 0)
        fail_msg("keyset: %s", err);
    free(json);
    assert_int_equal(bg_keyset_size(ks), n);
    return ks;
}

/* Claims as bg_auth_verify_token would fill them (service_url malloc'd, or NULL). */
static bg_auth_claims
claims_of(int64_t exp, const char *kid, const char *url, int emulator)
{
    bg_auth_claims c;
    memset(&c, 0, sizeof(c));
    c.exp = exp;
    c.nbf = exp > INT64_MIN + 3600 ? exp - 3600 : 0;
    c.emulator = emulator;
    snprintf(c.kid, sizeof(c.kid), "%s", kid);
    if (url != NULL) {
        c.service_url = strdup(url);
        assert_non_null(c.service_url);
    }
    return c;
}

/* Puts a token with claims made on the spot, freeing the caller's copy as the real
 * caller does: the cache must not keep pointers into it. */
static void
put(bg_token_cache *cache, const char *token, int64_t exp, const char *kid, const char *url,
    int emulator)
{
    bg_auth_claims c = claims_of(exp, kid, url, emulator);
    assert_int_equal(bg_token_cache_put(cache, S(token), &c), 0);
    free(c.service_url);
}

static const bg_auth_claims *
get(bg_token_cache *cache, const char *token, int64_t now)
{
    return bg_token_cache_get(cache, S(token), now, 300);
}

static void
test_hit_and_miss(void **state)
{
    (void)state;
    bg_token_cache *cache = bg_token_cache_new(16);
    assert_non_null(cache);
    assert_int_equal(bg_token_cache_size(cache), 0);
    assert_null(get(cache, "aaa.bbb.ccc", 1000));

    bg_auth_claims in = claims_of(5000, "k1", "https://smba.trafficmanager.net/emea/", 0);
    in.nbf = 4000;
    assert_int_equal(bg_token_cache_put(cache, S("aaa.bbb.ccc"), &in), 0);
    const bg_auth_claims *out = get(cache, "aaa.bbb.ccc", 4500);
    assert_non_null(out);
    assert_int_equal(out->exp, 5000);
    assert_int_equal(out->nbf, 4000);
    assert_int_equal(out->emulator, 0);
    assert_string_equal(out->kid, "k1");
    assert_string_equal(out->service_url, "https://smba.trafficmanager.net/emea/");
    assert_ptr_not_equal(out->service_url, in.service_url); /* a copy */
    free(in.service_url);
    assert_string_equal(get(cache, "aaa.bbb.ccc", 4500)->service_url,
                        "https://smba.trafficmanager.net/emea/");

    /* Only the same bytes hit: one byte off, a prefix, an extension. */
    assert_null(get(cache, "aaa.bbb.ccd", 4500));
    assert_null(bg_token_cache_get(cache, "aaa.bbb.ccc", 10, 4500, 300));
    assert_null(get(cache, "aaa.bbb.cccc", 4500));
    assert_null(get(cache, "", 4500));
    assert_int_equal(bg_token_cache_size(cache), 1);

    /* The token's bytes, not its NUL termination, are the key. */
    assert_int_equal(bg_token_cache_put(cache, "x\0y", 3, &(bg_auth_claims){.exp = 5000}), 0);
    assert_non_null(bg_token_cache_get(cache, "x\0y", 3, 4500, 300));
    assert_null(bg_token_cache_get(cache, "x\0z", 3, 4500, 300));
    assert_null(bg_token_cache_get(cache, "x", 1, 4500, 300));

    /* Emulator claims carry no serviceUrl. */
    put(cache, "emu.tok.en", 5000, "ek", NULL, 1);
    out = get(cache, "emu.tok.en", 4500);
    assert_non_null(out);
    assert_null(out->service_url);
    assert_int_equal(out->emulator, 1);
    assert_int_equal(bg_token_cache_size(cache), 3);
    bg_token_cache_free(cache);
    bg_token_cache_free(NULL);
}

/* Dropped once now >= exp + skew (the moment bg_auth_check_request calls it expired),
 * with the skew of the call; never earlier. */
static void
test_expiry_with_skew(void **state)
{
    (void)state;
    bg_token_cache *cache = bg_token_cache_new(4);
    put(cache, "t1", 1000, "k1", "https://a/", 0);
    assert_non_null(bg_token_cache_get(cache, S("t1"), 1000, 300));
    assert_non_null(bg_token_cache_get(cache, S("t1"), 1299, 300)); /* before exp + skew: kept */
    assert_int_equal(bg_token_cache_size(cache), 1);
    assert_null(bg_token_cache_get(cache, S("t1"), 1300, 300)); /* at it: dropped */
    assert_int_equal(bg_token_cache_size(cache), 0);
    assert_null(bg_token_cache_get(cache, S("t1"), 1000, 300)); /* gone, even for an earlier now */

    put(cache, "t2", 1000, "k1", "https://a/", 0);
    assert_non_null(bg_token_cache_get(cache, S("t2"), 999, 0));
    assert_null(bg_token_cache_get(cache, S("t2"), 1000, 0));

    /* A negative skew counts as none. */
    put(cache, "t3", 1000, "k1", "https://a/", 0);
    assert_non_null(bg_token_cache_get(cache, S("t3"), 999, -50));
    assert_null(bg_token_cache_get(cache, S("t3"), 1000, -50));

    /* exp + skew past INT64_MAX: never expires by arithmetic accident. */
    put(cache, "t4", INT64_MAX - 10, "k1", "https://a/", 0);
    assert_non_null(bg_token_cache_get(cache, S("t4"), INT64_MAX, 300));
    put(cache, "t5", INT64_MIN, "k1", "https://a/", 0);
    assert_non_null(bg_token_cache_get(cache, S("t5"), INT64_MIN, 300));
    assert_null(bg_token_cache_get(cache, S("t5"), 0, 300));
    assert_int_equal(bg_token_cache_size(cache), 1);
    bg_token_cache_free(cache);
}

/* The least recently used (put or got) token goes first. */
static void
test_lru_order(void **state)
{
    (void)state;
    bg_token_cache *cache = bg_token_cache_new(3);
    put(cache, "a", 5000, "k", "https://a/", 0);
    put(cache, "b", 5000, "k", "https://b/", 0);
    put(cache, "c", 5000, "k", "https://c/", 0);
    assert_non_null(get(cache, "a", 0));         /* order, newest first: a c b */
    put(cache, "d", 5000, "k", "https://d/", 0); /* evicts b: d a c */
    assert_int_equal(bg_token_cache_size(cache), 3);
    assert_null(get(cache, "b", 0));
    put(cache, "e", 5000, "k", "https://e/", 0); /* evicts c: e d a */
    assert_null(get(cache, "c", 0));
    assert_non_null(get(cache, "a", 0));          /* a e d */
    assert_non_null(get(cache, "d", 0));          /* d a e */
    put(cache, "a", 6000, "k", "https://a2/", 0); /* an overwrite is a use: a d e */
    put(cache, "f", 5000, "k", "https://f/", 0);  /* evicts e: f a d */
    assert_null(get(cache, "e", 0));
    assert_string_equal(get(cache, "a", 0)->service_url, "https://a2/");
    assert_non_null(get(cache, "d", 0));
    assert_non_null(get(cache, "f", 0));
    assert_int_equal(bg_token_cache_size(cache), 3);
    /* An expired entry dropped on get frees a place: nothing else is evicted. */
    put(cache, "short", 10, "k", "https://s/", 0); /* evicts a: short f d */
    assert_null(get(cache, "a", 0));
    assert_null(get(cache, "short", 311));
    assert_int_equal(bg_token_cache_size(cache), 2);
    put(cache, "g", 5000, "k", "https://g/", 0);
    assert_non_null(get(cache, "f", 0));
    assert_non_null(get(cache, "d", 0));
    assert_non_null(get(cache, "g", 0));
    bg_token_cache_free(cache);
}

static void
test_capacity_one_and_zero(void **state)
{
    (void)state;
    bg_token_cache *one = bg_token_cache_new(1);
    put(one, "a", 5000, "k", "https://a/", 0);
    put(one, "b", 5000, "k", "https://b/", 0);
    assert_int_equal(bg_token_cache_size(one), 1);
    assert_null(get(one, "a", 0));
    assert_string_equal(get(one, "b", 0)->service_url, "https://b/");
    put(one, "b", 5000, "k", "https://b2/", 0);
    assert_int_equal(bg_token_cache_size(one), 1);
    assert_string_equal(get(one, "b", 0)->service_url, "https://b2/");
    bg_token_cache_free(one);

    /* Capacity 0: caching off, every put accepted and forgotten. */
    bg_token_cache *none = bg_token_cache_new(0);
    assert_non_null(none);
    put(none, "a", 5000, "k", "https://a/", 0);
    assert_int_equal(bg_token_cache_size(none), 0);
    assert_null(get(none, "a", 0));
    bg_token_cache_free(none);

    /* A capacity too large to index is refused, not wrapped. */
    assert_null(bg_token_cache_new(SIZE_MAX));
    assert_null(bg_token_cache_get(NULL, S("a"), 0, 300));
    bg_auth_claims c = {.exp = 1};
    assert_int_equal(bg_token_cache_put(NULL, S("a"), &c), BG_EINVAL);
    assert_int_equal(bg_token_cache_size(NULL), 0);
}

/* The same token again replaces its claims: one entry, the old serviceUrl freed. */
static void
test_overwrite(void **state)
{
    (void)state;
    bg_token_cache *cache = bg_token_cache_new(8);
    put(cache, "tok", 5000, "k1", "https://one/", 0);
    put(cache, "tok", 6000, "k2", "https://two/", 0);
    put(cache, "tok", 7000, "k3", NULL, 1);
    put(cache, "tok", 8000, "k4", "https://four/", 0);
    assert_int_equal(bg_token_cache_size(cache), 1);
    const bg_auth_claims *c = get(cache, "tok", 0);
    assert_int_equal(c->exp, 8000);
    assert_string_equal(c->kid, "k4");
    assert_string_equal(c->service_url, "https://four/");
    assert_int_equal(c->emulator, 0);

    /* A kid that fills its array without a terminator comes back terminated. */
    bg_auth_claims full;
    memset(&full, 'x', sizeof(full));
    full.exp = 5000;
    full.service_url = NULL;
    assert_int_equal(bg_token_cache_put(cache, S("full"), &full), 0);
    c = get(cache, "full", 0);
    assert_int_equal(strlen(c->kid), BG_AUTH_KID_MAX - 1);
    bg_token_cache_free(cache);
}

/* After a rotation, tokens of the keys that left drop out; the others stay. */
static void
test_prune_after_rotation(void **state)
{
    (void)state;
    bg_token_cache *cache = bg_token_cache_new(16);
    put(cache, "ch-k1", 5000, "k1", "https://a/", 0);
    put(cache, "ch-k2", 5000, "k2", "https://a/", 0);
    put(cache, "ch-k1-bis", 5000, "k1", "https://b/", 0);
    put(cache, "emu-k1", 5000, "k1", NULL, 1);
    put(cache, "emu-e1", 5000, "e1", NULL, 1);
    assert_int_equal(bg_token_cache_size(cache), 5);

    const char *ch_before[] = {"k1", "k2"}, *ch_after[] = {"k2", "k3"}, *emu[] = {"k1", "e1"};
    bg_keyset *before = keyset_of(ch_before, 2), *after = keyset_of(ch_after, 2),
              *emulator = keyset_of(emu, 2);
    bg_token_cache_prune_keys(cache, before, emulator);
    assert_int_equal(bg_token_cache_size(cache), 5); /* nothing rotated yet */

    /* k1 leaves the channel set: its channel tokens go, an Emulator k1 stays. */
    bg_token_cache_prune_keys(cache, after, emulator);
    assert_int_equal(bg_token_cache_size(cache), 3);
    assert_null(get(cache, "ch-k1", 0));
    assert_null(get(cache, "ch-k1-bis", 0));
    assert_non_null(get(cache, "ch-k2", 0));
    assert_non_null(get(cache, "emu-k1", 0));
    assert_non_null(get(cache, "emu-e1", 0));

    /* No Emulator key set (Emulator turned off): Emulator tokens go. */
    bg_token_cache_prune_keys(cache, after, NULL);
    assert_int_equal(bg_token_cache_size(cache), 1);
    assert_non_null(get(cache, "ch-k2", 0));

    /* The pruned cache still works, evicts and fills in order. */
    put(cache, "new", 5000, "k3", "https://c/", 0);
    assert_int_equal(bg_token_cache_size(cache), 2);
    bg_token_cache_prune_keys(cache, NULL, NULL);
    assert_int_equal(bg_token_cache_size(cache), 0);
    put(cache, "again", 5000, "k3", "https://c/", 0);
    assert_non_null(get(cache, "again", 0));
    bg_token_cache_prune_keys(NULL, after, NULL);

    bg_keyset_free(before);
    bg_keyset_free(after);
    bg_keyset_free(emulator);
    bg_token_cache_free(cache);
}

/* Many more tokens than places: the bound holds and the newest survive. */
static void
test_many_tokens(void **state)
{
    (void)state;
    bg_token_cache *cache = bg_token_cache_new(1000);
    char tok[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(tok, sizeof(tok), "token-%d", i);
        put(cache, tok, 5000, "k", "https://a/", 0);
        assert_true(bg_token_cache_size(cache) <= 1000);
    }
    assert_int_equal(bg_token_cache_size(cache), 1000);
    for (int i = 0; i < 5000; i++) {
        snprintf(tok, sizeof(tok), "token-%d", i);
        if (i < 4000)
            assert_null(get(cache, tok, 0));
        else
            assert_non_null(get(cache, tok, 0));
    }
    bg_token_cache_free(cache);
}

/* A deterministic generator for the model run (xorshift64). */
static uint64_t
next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/*
 * The cache against a model: an array in use order, most recent first, with linear
 * search. Few buckets and many tokens put several entries on each chain, so unlinking
 * from the middle and end of chains is exercised too.
 */
static void
test_against_model(void **state)
{
    (void)state;
    enum { CAP = 7, TOKENS = 40, OPS = 20000 };
    struct {
        int tok;
        int64_t exp;
    } model[CAP];
    size_t n = 0;
    bg_token_cache *cache = bg_token_cache_new(CAP);
    uint64_t seed = 0x9e3779b97f4a7c15u;
    int64_t now = 1000;
    for (int op = 0; op < OPS; op++) {
        uint64_t r = next_rand(&seed);
        int tok = (int)(r % TOKENS);
        char name[16];
        snprintf(name, sizeof(name), "t%d", tok);
        size_t at = n;
        for (size_t i = 0; i < n; i++)
            if (model[i].tok == tok)
                at = i;
        if ((r >> 8) % 3 == 0) {
            int64_t exp = now + (int64_t)((r >> 16) % 50);
            char url[32];
            snprintf(url, sizeof(url), "https://%d/%lld", tok, (long long)exp);
            put(cache, name, exp, "k", url, 0);
            if (at < n) {
                memmove(&model[1], &model[0], at * sizeof(model[0]));
            } else {
                if (n == CAP)
                    n--;
                memmove(&model[1], &model[0], n * sizeof(model[0]));
                n++;
            }
            model[0].tok = tok;
            model[0].exp = exp;
        } else {
            const bg_auth_claims *c = bg_token_cache_get(cache, S(name), now, 5);
            if (at == n) {
                assert_null(c);
            } else if (now >= model[at].exp + 5) {
                assert_null(c);
                memmove(&model[at], &model[at + 1], (n - at - 1) * sizeof(model[0]));
                n--;
            } else {
                assert_non_null(c);
                assert_int_equal(c->exp, model[at].exp);
                char url[32];
                snprintf(url, sizeof(url), "https://%d/%lld", tok, (long long)model[at].exp);
                assert_string_equal(c->service_url, url);
                int keep_tok = model[at].tok;
                int64_t keep_exp = model[at].exp;
                memmove(&model[1], &model[0], at * sizeof(model[0]));
                model[0].tok = keep_tok;
                model[0].exp = keep_exp;
            }
        }
        assert_int_equal(bg_token_cache_size(cache), n);
        if ((r >> 24) % 10 == 0)
            now++;
    }
    bg_token_cache_free(cache);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_and_miss), cmocka_unit_test(test_expiry_with_skew),
        cmocka_unit_test(test_lru_order),    cmocka_unit_test(test_capacity_one_and_zero),
        cmocka_unit_test(test_overwrite),    cmocka_unit_test(test_prune_after_rotation),
        cmocka_unit_test(test_many_tokens),  cmocka_unit_test(test_against_model),
    };
    return cmocka_run_group_tests(tests, make_pool, free_pool);
}
