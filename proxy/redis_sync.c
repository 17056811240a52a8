/*
 * The command lines' blocking Redis session (botgate/redis_sync.h).
 */
#include "botgate/redis_sync.h"
#include "botgate/error.h"
#include "botgate/private_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

int
bg_redis_sync_target(bg_redis_sync *s, const char *prog, const bg_config *cfg, char *err,
                     size_t errlen)
{
    const char *why;
    memset(s, 0, sizeof(*s));
    s->prog = prog;
    if (cfg->redis.url[0] != '\0') {
        if (bg_redis_url_parse(&s->url, cfg->redis.url, &why) != 0) {
            snprintf(err, errlen, "redis.url: %s", why);
            return BG_ECONFIG;
        }
        bg_redis_url_show(&s->url, s->where, sizeof(s->where));
        return 0;
    }
    size_t n = bg_private_redis_socket_path(cfg->state_dir, NULL, 0) + 1;
    if ((s->url.path = malloc(n)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return BG_ENOMEM;
    }
    bg_private_redis_socket_path(cfg->state_dir, s->url.path, n);
    s->url.is_unix = 1;
    s->is_private = true;
    snprintf(s->where, sizeof(s->where), "the private redis of `botgate serve` (%s)", s->url.path);
    return 0;
}

redisReply *
bg_redis_sync_command(bg_redis_sync *s, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(s->c, argc, argv, NULL);
    if (r == NULL) {
        fprintf(stderr, "%s: %s: %s failed: %s\n", s->prog, s->where, argv[0],
                s->c->errstr[0] != '\0' ? s->c->errstr : "no answer");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "%s: %s: %s refused: %.*s\n", s->prog, s->where, argv[0], (int)r->len,
                r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

int
bg_redis_sync_connect(bg_redis_sync *s, int timeout_ms)
{
    const bg_redis_url *u = &s->url;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    s->c = u->is_unix ? redisConnectUnixWithTimeout(u->path, tv)
                      : redisConnectWithTimeout(u->host, u->port, tv);
    if (s->c == NULL) {
        fprintf(stderr, "%s: out of memory\n", s->prog);
        return -1;
    }
    if (s->c->err != 0) {
        fprintf(stderr, "%s: cannot connect to %s: %s%s\n", s->prog, s->where, s->c->errstr,
                s->is_private ? " (is `botgate serve` running with this state_dir?)" : "");
        return -1;
    }
    redisSetTimeout(s->c, tv);
    redisReply *r;
    if (u->password != NULL) {
        const char *argv[3] = {"AUTH", u->user != NULL ? u->user : u->password, u->password};
        if ((r = bg_redis_sync_command(s, u->user != NULL ? 3 : 2, argv)) == NULL)
            return -1;
        freeReplyObject(r);
    }
    if (u->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", u->db);
        const char *argv[2] = {"SELECT", db};
        if ((r = bg_redis_sync_command(s, 2, argv)) == NULL)
            return -1;
        freeReplyObject(r);
    }
    const char *ping[1] = {"PING"};
    if ((r = bg_redis_sync_command(s, 1, ping)) == NULL)
        return -1;
    freeReplyObject(r);
    return 0;
}

void
bg_redis_sync_close(bg_redis_sync *s)
{
    if (s->c != NULL)
        redisFree(s->c);
    bg_redis_url_free(&s->url);
    memset(s, 0, sizeof(*s));
}
