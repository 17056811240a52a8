/*
 * Where the Redis master is, according to Redis Sentinel (redis.sentinels +
 * redis.master_name), on h2o's event loop.
 *
 * One bg_sentinel per process, shared by every connection to the master (proxy/redis.c).
 * It keeps two connections to each sentinel, each one a bg_redis (so with its deadline
 * and reconnection): one for questions (SENTINEL get-master-addr-by-name), one
 * subscribed to +switch-master. Subscribing to every sentinel, not just one, means a
 * dead sentinel never hides a fail-over; and a poll every second compares the answer with
 * the master last announced, so that a missed message (a subscription being re-made
 * during the switch) delays the switch by a second at most.
 *
 * Questions are single-flight: every connection that asks while a question is out waits
 * for the same answer. A question goes to the sentinel that answered last, then to the
 * next ones in turn, each with redis.timeout_ms; when none answers, every waiter gets
 * BG_EREDIS_DOWN and tries again after its reconnection back-off.
 */
#ifndef BOTGATE_SENTINEL_H
#define BOTGATE_SENTINEL_H

#include <stddef.h>
#include <h2o.h>

#include "botgate/config.h"

typedef struct bg_sentinel bg_sentinel;

/* err 0: the master is host (numeric, NUL-terminated) port; else BG_EREDIS_DOWN. */
typedef void (*bg_sentinel_cb)(void *data, int err, const char *host, int port);

/* One question waiting for its answer; embedded in the asker, which owns it. */
typedef struct bg_sentinel_question {
    h2o_linklist_t link;
    bg_sentinel_cb cb;
    void *data;
} bg_sentinel_question;

/* A fail-over was announced (or noticed by the poll): the master is now host:port. */
typedef void (*bg_sentinel_switch_cb)(void *data, const char *host, int port);

/*
 * Resolves each HOST:PORT of sentinels once (start-up only) and returns the set, not yet
 * started, or NULL with the reason in err. master_name is copied.
 */
bg_sentinel *bg_sentinel_new(h2o_loop_t *loop, const bg_strlist *sentinels, const char *master_name,
                             int timeout_ms, char *err, size_t errlen);
/* Connects to the sentinels; from then on they are kept up. Idempotent. */
void bg_sentinel_start(bg_sentinel *s);
/* The master's name, for logs. */
const char *bg_sentinel_master_name(const bg_sentinel *s);
/*
 * Asks for the master's address: ask->cb is called exactly once later (never from inside
 * this call), unless bg_sentinel_cancel comes first. ask must not be waiting already.
 */
void bg_sentinel_ask(bg_sentinel *s, bg_sentinel_question *ask, bg_sentinel_cb cb, void *data);
/* Withdraws a question still waiting; harmless when it is not. */
void bg_sentinel_cancel(bg_sentinel *s, bg_sentinel_question *ask);
/* Registers a listener for fail-overs (at most 8). Returns 0 or BG_ENOMEM. */
int bg_sentinel_watch(bg_sentinel *s, bg_sentinel_switch_cb cb, void *data);
void bg_sentinel_unwatch(bg_sentinel *s, bg_sentinel_switch_cb cb, void *data);
/* Reference counting: every connection to the master holds one; the last one frees. */
void bg_sentinel_retain(bg_sentinel *s);
void bg_sentinel_release(bg_sentinel *s);

#endif
