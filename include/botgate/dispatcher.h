/*
 * The dispatcher: delivers queued activities to the bot, at least once, in order within a
 * conversation, concurrently across conversations.
 *
 * It is a member of the consumer group "botgate" on the queue's streams (redis.stream, or
 * its redis.partitions partitions: partition.h), named after the host (the pod) plus
 * bot.consumer_suffix. It delivers a partition only while it holds that partition's lease
 * (<stream>:lease:<k>, renewed with its membership of <stream>:members about once a
 * second, lapsing after bot.claim_idle_s), and takes up to a fair share of the partitions,
 * ceil(partitions / live dispatchers), giving extra ones back once nothing of them is in
 * flight. On taking a lease it first claims everything pending in that partition, in id
 * order (a dead owner's entries, or its own earlier life's), and only then reads new
 * entries: so one conversation is delivered by one dispatcher at a time, in order, also
 * across pods. It reads with XREADGROUP on a connection of its own (the read blocks for up
 * to a second), and writes its outcomes (XACK, retry state, dead letters) and the leases
 * through the shared connection.
 *
 * Per entry, each attempt is a POST of the original body and forwarded headers to
 * bot.url, plus X-Botgate-Attempt and X-Botgate-Received-At. policy/delivery.c decides
 * the outcome: ACK (XACK + XDEL), RETRY (the attempt count and next time written to the
 * hash <stream>:retry first, so a restart keeps the back-off), or DEAD (XADD to
 * <stream>:dlq with the reason, then XACK + XDEL). Only the head of a conversation is
 * ever in flight; a conversation waiting out a back-off holds back only itself.
 */
#ifndef BOTGATE_DISPATCHER_H
#define BOTGATE_DISPATCHER_H

#include <stddef.h>
#include <h2o.h>

#include "botgate/config.h"
#include "botgate/http_client.h"
#include "botgate/redis.h"

#define BG_CONSUMER_GROUP "botgate"

typedef struct bg_dispatcher bg_dispatcher;

/* writer: the shared Redis connection for outcomes. Returns NULL with err on failure. */
bg_dispatcher *bg_dispatcher_new(h2o_loop_t *loop, const bg_config *cfg, bg_redis *writer,
                                 bg_http *http, char *err, size_t errlen);
void bg_dispatcher_start(bg_dispatcher *d);
/* Stops reading and claiming, and starts no new delivery; those in flight go on. */
void bg_dispatcher_stop(bg_dispatcher *d);
size_t bg_dispatcher_in_flight(const bg_dispatcher *d);
/* The consumer name ("host-suffix"). */
const char *bg_dispatcher_consumer(const bg_dispatcher *d);
/* Abandons deliveries still in flight (they stay pending in Redis for a later claim) and
 * frees everything. */
void bg_dispatcher_free(bg_dispatcher *d);

#endif
