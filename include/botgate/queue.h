/*
 * The durable queue: one Redis stream per bot (or per partition of the bot's queue, by
 * conversation: redis.partitions, partition.h), written with a Lua script that
 * de-duplicates and appends in one atomic step.
 *
 * An activity is acknowledged only after this module's callback reported success,
 * which happens only after Redis answered the script with the new entry's id (or with
 * the id of the copy it already holds) and, where redis.min_replicas_ack > 0, WAIT
 * confirmed that many replicas.
 */
#ifndef BOTGATE_QUEUE_H
#define BOTGATE_QUEUE_H

#include <stddef.h>

#include "botgate/config.h"
#include "botgate/redis.h"

typedef struct bg_queue bg_queue;

/* What one put stores: the encoded entry and the de-duplication identity. */
typedef struct bg_queue_item {
    const char *entry; /* msgpack bytes (botgate/entry.h) */
    size_t entry_len;
    const char *conversation_id; /* NUL-terminated; NULL = no de-duplication */
    const char *activity_id;     /* NUL-terminated; NULL = no de-duplication */
    /* the conversation directory's entry, written by the same script; NULL = none (its
     * ttl_s is ignored: relay.directory_ttl_s applies) */
    const struct bg_directory_entry *directory;
} bg_queue_item;

/*
 * err is 0 (stored; duplicate is 1 when Redis already held this activity and nothing
 * new was written) or a BG_EREDIS_* / BG_EREPLICA code.
 */
typedef void (*bg_queue_cb)(void *data, int err, int duplicate);

/* Puts are sent at the end of the loop's turn, one script call for all of them
 * (queue.c); loop is where that happens. */
bg_queue *bg_queue_new(h2o_loop_t *loop, bg_redis *redis, const bg_config *cfg);
/*
 * Starts storing item (its bytes are copied): it goes to Redis with every other put of
 * this turn of the loop, when the turn ends. Returns 0 and calls cb exactly once later
 * (never from inside this call), or returns a BG_EREDIS_* code at once without calling cb.
 * bg_queue_free answers the puts not yet sent with BG_EREDIS_DOWN.
 */
int bg_queue_put(bg_queue *queue, const bg_queue_item *item, bg_queue_cb cb, void *data);
/* Asks Redis for its persistence settings and logs a warning when an acknowledged
 * activity would not survive a Redis restart. Called on every (re)connection. */
void bg_queue_check_durability(bg_queue *queue);
void bg_queue_free(bg_queue *queue);

#endif
