/*
 * Partitions of the queue (see botgate/partition.h).
 */
#include "botgate/partition.h"

#include <stdio.h>

uint64_t
bg_fnv1a64(const char *p, size_t len)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

unsigned
bg_partition_of(const char *conversation_id, size_t len, int partitions)
{
    if (partitions <= 1 || conversation_id == NULL)
        return 0;
    return (unsigned)(bg_fnv1a64(conversation_id, len) % (uint64_t)partitions);
}

int
bg_partition_stream(char *out, size_t cap, const char *stream, int partitions, unsigned k)
{
    int n = partitions <= 1 ? snprintf(out, cap, "%s", stream)
                            : snprintf(out, cap, "%s:p%u", stream, k);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

bg_partition_outside
bg_partition_outside_of(int partitions)
{
    if (partitions <= 1)
        return (bg_partition_outside){.base = 0, .first = 0};
    if (partitions > BG_PARTITIONS_MAX)
        partitions = BG_PARTITIONS_MAX;
    return (bg_partition_outside){.base = 1, .first = (unsigned)partitions};
}
