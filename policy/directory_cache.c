#include "botgate/directory_cache.h"

#include <stdlib.h>
#include <string.h>

struct st_slot {
    uint64_t fingerprint; /* 0: empty */
    int64_t at_ms;
};

struct bg_directory_cache {
    size_t mask;
    struct st_slot *slots;
};

bg_directory_cache *
bg_directory_cache_new(size_t slots)
{
    size_t n = 1;
    while (n < slots && n < ((size_t)1 << 30))
        n <<= 1;
    bg_directory_cache *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->slots = calloc(n, sizeof(*c->slots))) == NULL) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    return c;
}

void
bg_directory_cache_free(bg_directory_cache *c)
{
    if (c == NULL)
        return;
    free(c->slots);
    free(c);
}

int64_t
bg_directory_refresh_ms(int ttl_s)
{
    int64_t ms = (int64_t)ttl_s * 1000 / 24;
    return ms < 3600 * 1000 ? ms : 3600 * 1000;
}

/* FNV-1a over the four fields, each followed by a 0 byte so that ("ab","c") and ("a","bc")
 * differ. Never 0, the empty slot's mark. */
static uint64_t
fingerprint(const char *conv, const char *url, const char *channel, const char *tenant)
{
    const char *fields[4] = {conv, url, channel, tenant != NULL ? tenant : ""};
    uint64_t h = 14695981039346656037ULL;
    for (int i = 0; i < 4; i++) {
        for (const char *p = fields[i] != NULL ? fields[i] : ""; *p != '\0'; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ 0xFF) * 1099511628211ULL; /* the separator: a byte no field holds */
    }
    /* FNV's multiply carries low bits up, never down: its low bits, which pick the slot,
     * hardly mix. murmur3's finalizer does. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h != 0 ? h : 1;
}

int
bg_directory_cache_fresh(const bg_directory_cache *c, const char *conversation_id,
                         const char *service_url, const char *channel_id, const char *tenant_id,
                         int64_t now_ms, int64_t refresh_ms)
{
    uint64_t fp = fingerprint(conversation_id, service_url, channel_id, tenant_id);
    const struct st_slot *s = &c->slots[fp & c->mask];
    return s->fingerprint == fp && now_ms >= s->at_ms && now_ms - s->at_ms < refresh_ms;
}

void
bg_directory_cache_note(bg_directory_cache *c, const char *conversation_id, const char *service_url,
                        const char *channel_id, const char *tenant_id, int64_t now_ms)
{
    uint64_t fp = fingerprint(conversation_id, service_url, channel_id, tenant_id);
    struct st_slot *s = &c->slots[fp & c->mask];
    s->fingerprint = fp;
    s->at_ms = now_ms;
}
