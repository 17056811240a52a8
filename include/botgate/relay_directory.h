/*
 * The conversation directory: conversation id -> the serviceUrl of its last authenticated
 * inbound activity, which is where the relay sends the bot's messages for it.
 *
 * One Redis hash per conversation, refreshed (and its TTL, relay.directory_ttl_s, reset)
 * by authenticated activities, at most once per refresh interval (an hour by default) for
 * the same fields, and at once when one changes (directory_cache.h):
 *
 *   <redis.stream>:conversations:<conversation id>     (the id as sent; it may hold ':')
 *     service_url    the activity's serviceUrl, equal to the verified token's serviceurl
 *     channel_id     the activity's channelId
 *     tenant_id      conversation.tenantId or channelData.tenant.id; "" when absent
 *     last_seen_ms   when botgate took the activity, Unix ms
 *
 * A queued activity's write is part of the enqueue script (queue.c): the 202 waits for no
 * extra round trip. A synchronous activity's (an invoke) is sent on its own and not waited
 * for. Nothing is written while authentication is off: the serviceUrl would be unverified.
 */
#ifndef BOTGATE_RELAY_DIRECTORY_H
#define BOTGATE_RELAY_DIRECTORY_H

#include <stddef.h>
#include <stdint.h>

#include "botgate/redis.h"

#define BG_DIRECTORY_SUFFIX ":conversations:"

/* One directory write: what an authenticated activity said. */
typedef struct bg_directory_entry {
    const char *conversation_id;
    const char *service_url;
    const char *channel_id;
    const char *tenant_id; /* NULL = "" */
    int64_t last_seen_ms;
    int ttl_s;
} bg_directory_entry;

/* The key of conversation_id's entry, malloc'd, its length in *len; NULL: out of memory. */
char *bg_directory_key(const char *stream, const char *conversation_id, size_t *len);

/* HSET + EXPIRE, sent without waiting for the answer (an error is logged). */
void bg_directory_touch(bg_redis *redis, const char *stream, const bg_directory_entry *e);

/*
 * Looks conversation_id up. cb gets err 0 and the serviceUrl ("" = unknown) and
 * channelId (valid during the call), or a BG_EREDIS_* err. Returns 0 (cb runs later) or
 * BG_EREDIS_DOWN / BG_ENOMEM at once (cb does not run).
 */
typedef void (*bg_directory_cb)(void *data, int err, const char *service_url,
                                const char *channel_id);
int bg_directory_lookup(bg_redis *redis, const char *stream, const char *conversation_id,
                        bg_directory_cb cb, void *data);

#endif
