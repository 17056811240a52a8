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

/*
 * Entries in the streams outside redis.partitions' layout (bg_partition_outside_of): left
 * there by a queue of another redis.partitions, read by no dispatcher of this one, so
 * acknowledged activities that stay undelivered until the old value is back.
 */
typedef struct bg_queue_orphans {
    long long total;
    const char *first; /* the first such stream holding entries, in the reply; "" when none */
    size_t first_len;
    long long first_count;
} bg_queue_orphans;

/* Sends the one script that counts them (EVAL on redis); cb gets its reply, for
 * bg_queue_orphans_read. Returns 0, or a BG_EREDIS_* code without calling cb. */
int bg_queue_count_orphans(bg_redis *redis, const char *stream, int partitions, bg_redis_cb cb,
                           void *data);
/* The script's reply into *out (pointing into reply): 0, or -1 when reply is not its answer. */
int bg_queue_orphans_read(const redisReply *reply, bg_queue_orphans *out);
/* Counts them and logs an error naming the first stream and what to do when there are any.
 * Called on every (re)connection: once per connection. */
void bg_queue_check_layout(bg_queue *queue);

struct bg_metric_series;
/* Where on_flush records each call's activity count (a histogram); NULL: nowhere. */
void bg_queue_set_batch_metric(bg_queue *queue, struct bg_metric_series *batch);
void bg_queue_free(bg_queue *queue);

#endif
