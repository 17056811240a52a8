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
    if (cfg->redis.sentinels.n > 0) {
        s->sentinels = &cfg->redis.sentinels;
        s->master_name = cfg->redis.master_name;
        if (cfg->redis.url[0] != '\0' && bg_redis_url_parse(&s->url, cfg->redis.url, &why) != 0) {
            snprintf(err, errlen, "redis.url: %s", why);
            return BG_ECONFIG;
        }
        snprintf(s->where, sizeof(s->where), "master %s (via the sentinels)", s->master_name);
        return 0;
    }
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

/*
 * Asks each sentinel in turn where the master is (SENTINEL get-master-addr-by-name), as
 * `botgate serve` does; the first answer wins. 0 with host and *port, or -1 after
 * printing why.
 */
static int
ask_sentinels(bg_redis_sync *s, struct timeval tv, char *host, size_t hostlen, int *port)
{
    for (size_t i = 0; i < s->sentinels->n; i++) {
        char url[300];
        const char *why;
        bg_redis_url u;
        snprintf(url, sizeof(url), "redis://%s", s->sentinels->v[i]);
        if (bg_redis_url_parse(&u, url, &why) != 0)
            continue;
        redisContext *c = redisConnectWithTimeout(u.host, u.port, tv);
        redisReply *r = NULL;
        if (c != NULL && c->err == 0) {
            redisSetTimeout(c, tv);
            const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", s->master_name};
            r = redisCommandArgv(c, 3, argv, NULL);
        }
        int ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                 r->element[0]->type == REDIS_REPLY_STRING &&
                 r->element[1]->type == REDIS_REPLY_STRING;
        if (ok) {
            snprintf(host, hostlen, "%s", r->element[0]->str);
            *port = atoi(r->element[1]->str);
        } else {
            fprintf(stderr, "%s: sentinel %s: %s\n", s->prog, s->sentinels->v[i],
                    c == NULL                    ? "out of memory"
                    : c->err != 0                ? c->errstr
                    : r == NULL                  ? "no answer"
                    : r->type == REDIS_REPLY_NIL ? "does not know the master's name"
                                                 : "unexpected answer");
        }
        freeReplyObject(r);
        redisFree(c);
        bg_redis_url_free(&u);
        if (ok)
            return 0;
    }
    fprintf(stderr, "%s: no sentinel named the master %s\n", s->prog, s->master_name);
    return -1;
}

int
bg_redis_sync_connect(bg_redis_sync *s, int timeout_ms)
{
    const bg_redis_url *u = &s->url;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    char master[256];
    int master_port = 0;
    if (s->sentinels != NULL) {
        if (ask_sentinels(s, tv, master, sizeof(master), &master_port) != 0)
            return -1;
        snprintf(s->where, sizeof(s->where), "redis://%s:%d (master %s)", master, master_port,
                 s->master_name);
    }
    s->c = s->sentinels != NULL ? redisConnectWithTimeout(master, master_port, tv)
           : u->is_unix         ? redisConnectUnixWithTimeout(u->path, tv)
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
    const char *ping[1] = {s->sentinels != NULL ? "ROLE" : "PING"};
    if ((r = bg_redis_sync_command(s, 1, ping)) == NULL)
        return -1;
    int not_master = s->sentinels != NULL && !(r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                                               r->element[0]->type == REDIS_REPLY_STRING &&
                                               strcmp(r->element[0]->str, "master") == 0);
    freeReplyObject(r);
    if (not_master) {
        fprintf(stderr, "%s: %s is not a master (a fail-over in progress?)\n", s->prog, s->where);
        return -1;
    }
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
