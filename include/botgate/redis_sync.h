/*
 * A blocking Redis session for the command lines (`botgate dlq`, `botgate failures`):
 * where Redis is, read from the configuration as `botgate serve` reads it (redis.url, or
 * the private redis of `botgate serve` when redis.url is empty), one hiredis connection
 * with redis.timeout_ms as the connect and per-command timeout, and commands whose
 * failures are printed in one wording. One copy, so that both tools find the same Redis
 * and say the same thing when they cannot reach it.
 *
 * Not for the server: it blocks, and hosts are left to hiredis to resolve. A command
 * line has no loop to protect.
 */
#ifndef BOTGATE_REDIS_SYNC_H
#define BOTGATE_REDIS_SYNC_H

#include "botgate/config.h"
#include "botgate/redis_url.h"

#include <hiredis.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct bg_redis_sync {
    redisContext *c;  /* NULL until bg_redis_sync_connect */
    const char *prog; /* the message prefix: "botgate dlq" */
    bg_redis_url url;
    bool is_private; /* redis.url empty: `botgate serve`'s own redis-server */
    /* redis.sentinels set: the master they name (url gives only credentials and db); the
     * configuration these point into must outlive s */
    const bg_strlist *sentinels;
    const char *master_name;
    char where[320]; /* for messages: never the password */
} bg_redis_sync;

/*
 * Reads where Redis is from cfg into s (zeroed first), prog being the prefix of every
 * later message. Returns 0, BG_ECONFIG with "redis.url: <why>" in err, or BG_ENOMEM with
 * "out of memory" in err. s is to be closed either way.
 */
int bg_redis_sync_target(bg_redis_sync *s, const char *prog, const bg_config *cfg, char *err,
                         size_t errlen);

/*
 * Connects with timeout_ms as the connect and per-command timeout, then AUTH and SELECT
 * as the URL says, then PING: an unreachable Redis is found here, before any command
 * could half-run. Behind Sentinel, the sentinels are asked in turn for the master first,
 * and ROLE must say master instead of the PING. Returns 0, or -1 after printing why.
 */
int bg_redis_sync_connect(bg_redis_sync *s, int timeout_ms);

/*
 * Runs one command (argv of NUL-terminated words) and returns its reply, or NULL after
 * printing why: the connection failed or timed out, or Redis answered with an error. The
 * caller frees the reply.
 */
redisReply *bg_redis_sync_command(bg_redis_sync *s, int argc, const char **argv);

/* Closes the connection, if any, and frees the target; s may be zeroed or half-opened. */
void bg_redis_sync_close(bg_redis_sync *s);

#endif
