/*
 * Partitions of the queue (redis.partitions): which stream an activity goes to.
 *
 * With one partition (the default) the queue is the stream redis.stream itself. With N > 1
 * it is N streams, "<redis.stream>:p0" … "<redis.stream>:p<N-1>", and an activity goes to
 * partition FNV-1a-64(conversation id bytes) mod N (an activity without a conversation id
 * to partition 0). So every activity of one conversation is in one stream, in arrival
 * order, and the one dispatcher that holds that partition's lease delivers it in order.
 *
 * The hash is part of the queue's contract (README, "Queue entry format"): a bot that
 * consumes the streams itself finds a conversation with it. Pure: no I/O.
 */
#ifndef BOTGATE_PARTITION_H
#define BOTGATE_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#define BG_PARTITIONS_MAX 1024

/* FNV-1a, 64 bits: offset basis 14695981039346656037, prime 1099511628211. */
uint64_t bg_fnv1a64(const char *p, size_t len);

/* The partition of a conversation id (NULL: none) among partitions (1..BG_PARTITIONS_MAX). */
unsigned bg_partition_of(const char *conversation_id, size_t len, int partitions);

/*
 * The stream of partition k into out: redis.stream itself when partitions is 1, else
 * "<stream>:p<k>". Returns the length, or -1 when it does not fit in cap.
 */
int bg_partition_stream(char *out, size_t cap, const char *stream, int partitions, unsigned k);

/*
 * The streams outside the layout of partitions (1..BG_PARTITIONS_MAX): names a queue of some
 * other redis.partitions may have written to and that no dispatcher of this layout reads,
 * so that entries found there are acknowledged activities stuck until the old value is back.
 *
 *   partitions   outside
 *   1            "<stream>:p0" … "<stream>:p1023"            (the layout is <stream> itself)
 *   N > 1        "<stream>", "<stream>:p<N>" … "<stream>:p1023"
 *
 * base says whether redis.stream itself is outside; "<stream>:p<k>" is outside for
 * first <= k < BG_PARTITIONS_MAX (none when first is BG_PARTITIONS_MAX). No valid
 * configuration writes a k at or past BG_PARTITIONS_MAX, so the list ends there.
 */
typedef struct bg_partition_outside {
    int base;
    unsigned first;
} bg_partition_outside;

bg_partition_outside bg_partition_outside_of(int partitions);

#endif
