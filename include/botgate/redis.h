/*
 * One Redis connection on h2o's event loop, kept up by itself.
 *
 * hiredis 0.14.1 has no adapter for h2o's evloop, no command timeouts and no
 * reconnection; this module adds the three. Every command gets a deadline
 * (redis.timeout_ms): a command that misses it is answered BG_EREDIS_TIMEOUT at once,
 * and the connection is dropped and made again, because a Redis that stopped answering
 * one command will not answer the next. A lost connection is re-made with back-off
 * (100 ms doubling to 2 s) for as long as botgate runs; meanwhile commands fail fast
 * with BG_EREDIS_DOWN, and /readyz says so. A PING every second while idle finds a
 * Redis that vanished without closing the socket.
 *
 * Names are resolved once, at bg_redis_new (start-up): hiredis's own connect would call
 * a blocking getaddrinfo on the loop.
 */
#ifndef BOTGATE_REDIS_H
#define BOTGATE_REDIS_H

#include <stddef.h>
#include <h2o.h>
#include <hiredis.h>

#include "botgate/config.h"

typedef struct bg_redis bg_redis;

/*
 * The answer to one command: err is 0 with a reply (which may be a Redis error reply:
 * check reply->type), or BG_EREDIS_DOWN / BG_EREDIS_TIMEOUT with reply NULL. The reply
 * belongs to hiredis and is valid only during the call.
 */
typedef void (*bg_redis_cb)(bg_redis *redis, redisReply *reply, int err, void *data);

/* Called each time a connection becomes ready (after AUTH/SELECT and a PING). */
typedef void (*bg_redis_ready_cb)(bg_redis *redis, void *data);

/*
 * Parses url (redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N]),
 * resolves the host, and returns a connection that is not yet started, or NULL with a
 * reason in err.
 */
bg_redis *bg_redis_new(h2o_loop_t *loop, const char *url, int timeout_ms, char *err, size_t errlen);
/*
 * The connection botgate serve uses: to redis.url, or, with redis.sentinels, to the master
 * the sentinels name (redis.url then gives only the password and the db, and may be
 * empty). Behind Sentinel every connection asks for the master before it connects,
 * checks that ROLE says master, and goes (to ask again) on READONLY and when the
 * sentinels announce a fail-over (botgate/sentinel.h). NULL with err on failure.
 */
bg_redis *bg_redis_new_from_config(h2o_loop_t *loop, const bg_config *cfg, char *err,
                                   size_t errlen);
/* Another connection to the same target (through the same sentinels). */
bg_redis *bg_redis_new_sibling(const bg_redis *redis, char *err, size_t errlen);
void bg_redis_set_ready_cb(bg_redis *redis, bg_redis_ready_cb cb, void *data);

/* A message of a subscribed channel: channel NUL-terminated, msg len bytes. */
typedef void (*bg_redis_message_cb)(bg_redis *redis, const char *channel, const char *msg,
                                    size_t len, void *data);
/*
 * Before bg_redis_start: the connection is for one subscription only. After each
 * handshake it SUBSCRIBEs to channel and hands every message to cb; commands are not to
 * be sent on it.
 */
void bg_redis_subscribe(bg_redis *redis, const char *channel, bg_redis_message_cb cb, void *data);
/* Starts connecting; from then on the connection keeps itself up. */
void bg_redis_start(bg_redis *redis);
/* 1 when commands can be sent now. */
int bg_redis_is_ready(const bg_redis *redis);
/* A printable form of the target, without any password ("unix:///run/redis.sock"). */
const char *bg_redis_target(const bg_redis *redis);

/*
 * Sends one command (binary-safe argv). Returns 0, and cb is called exactly once later
 * (never from inside this call); or BG_EREDIS_DOWN at once, and cb is not called.
 */
int bg_redis_command(bg_redis *redis, bg_redis_cb cb, void *data, int argc, const char **argv,
                     const size_t *argvlen);

/* Closes the connection: every pending command's cb gets BG_EREDIS_DOWN, then frees. */
void bg_redis_free(bg_redis *redis);

#endif
