/*
 * The conversation directory in Redis (see botgate/relay_directory.h).
 */
#include "botgate/relay_directory.h"
#include "botgate/error.h"
#include "botgate/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
bg_directory_key(const char *stream, const char *conversation_id, size_t *len)
{
    size_t n = strlen(stream) + sizeof(BG_DIRECTORY_SUFFIX) + strlen(conversation_id);
    char *key = malloc(n);
    if (key == NULL)
        return NULL;
    int k = snprintf(key, n, "%s" BG_DIRECTORY_SUFFIX "%s", stream, conversation_id);
    *len = (size_t)k;
    return key;
}

static void
on_touch_reply(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    (void)data;
    if (err != 0 || reply->type == REDIS_REPLY_ERROR)
        bg_log_warn("directory", "conversation directory write failed: %s",
                    err != 0 ? bg_strerror(err) : reply->str);
}

void
bg_directory_touch(bg_redis *redis, const char *stream, const bg_directory_entry *e)
{
    size_t klen;
    char *key = bg_directory_key(stream, e->conversation_id, &klen);
    if (key == NULL)
        return;
    char seen[24], ttl[16];
    snprintf(seen, sizeof(seen), "%lld", (long long)e->last_seen_ms);
    snprintf(ttl, sizeof(ttl), "%d", e->ttl_s);
    const char *hset[] = {"HSET",         key,
                          "service_url",  e->service_url,
                          "channel_id",   e->channel_id != NULL ? e->channel_id : "",
                          "tenant_id",    e->tenant_id != NULL ? e->tenant_id : "",
                          "last_seen_ms", seen};
    size_t hlen[10];
    for (int i = 0; i < 10; i++)
        hlen[i] = i == 1 ? klen : strlen(hset[i]);
    const char *expire[] = {"EXPIRE", key, ttl};
    size_t elen[] = {6, klen, strlen(ttl)};
    if (bg_redis_command(redis, on_touch_reply, NULL, 10, hset, hlen) == 0)
        bg_redis_command(redis, on_touch_reply, NULL, 3, expire, elen);
    free(key);
}

struct st_lookup {
    bg_directory_cb cb;
    void *data;
};

static void
on_lookup_reply(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    struct st_lookup *l = data;
    if (err == 0 && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2))
        err = BG_EREDIS_ERROR;
    if (err != 0) {
        l->cb(l->data, err, NULL, NULL);
    } else {
        redisReply *u = reply->element[0], *c = reply->element[1];
        l->cb(l->data, 0, u->type == REDIS_REPLY_STRING ? u->str : "",
              c->type == REDIS_REPLY_STRING ? c->str : "");
    }
    free(l);
}

int
bg_directory_lookup(bg_redis *redis, const char *stream, const char *conversation_id,
                    bg_directory_cb cb, void *data)
{
    struct st_lookup *l = malloc(sizeof(*l));
    size_t klen;
    char *key = l != NULL ? bg_directory_key(stream, conversation_id, &klen) : NULL;
    if (key == NULL) {
        free(l);
        return BG_ENOMEM;
    }
    l->cb = cb;
    l->data = data;
    const char *argv[] = {"HMGET", key, "service_url", "channel_id"};
    size_t lens[] = {5, klen, 11, 10};
    int rc = bg_redis_command(redis, on_lookup_reply, l, 4, argv, lens);
    free(key);
    if (rc != 0)
        free(l);
    return rc;
}
