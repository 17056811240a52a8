/*
 * Redis Sentinel on h2o's loop (see botgate/sentinel.h).
 *
 *   sentinel i:  query[i]  ── SENTINEL get-master-addr-by-name <name> ──▶ [ip, port]
 *                sub[i]    ── SUBSCRIBE +switch-master ──▶ "<name> <old ip> <old port>
 *                                                           <new ip> <new port>"
 *
 * The master last heard of is `known`. Every answer (a question's, the poll's, a
 * message's) goes through learn(): when it differs from `known`, the listeners (the
 * connections to the master) are told, and each one connected elsewhere drops its
 * connection and asks again. The connection itself also checks ROLE and drops on
 * READONLY (proxy/redis.c): the sentinels' word is not trusted blindly.
 */
#include "botgate/sentinel.h"
#include "botgate/error.h"
#include "botgate/log.h"
#include "botgate/redis.h"
#include "botgate/timer.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LISTENERS 8
#define POLL_MS 1000

struct st_listener {
    bg_sentinel_switch_cb cb;
    void *data;
};

struct bg_sentinel {
    h2o_loop_t *loop;
    int refs;
    char *master_name;
    size_t n;
    bg_redis **query; /* n each */
    bg_redis **sub;
    int started;
    int closing; /* being freed: late answers are ignored */
    /* the question in flight */
    h2o_linklist_t waiters;
    int asking;       /* a SENTINEL command is out */
    size_t current;   /* the sentinel asked now */
    size_t tried;     /* how many were tried for this question */
    size_t preferred; /* the one that answered last */
    bg_timer kick;    /* starts a question outside the caller's stack */
    bg_timer poll;
    bg_sentinel_question poll_ask;
    char known_host[64];
    int known_port; /* 0: none yet */
    struct st_listener listeners[MAX_LISTENERS];
};

/* --- fail-over news ---------------------------------------------------------------------- */

static void
learn(bg_sentinel *s, const char *host, int port, const char *how)
{
    if (s->known_port == port && strcmp(s->known_host, host) == 0)
        return;
    int had = s->known_port != 0;
    if (had)
        bg_log_warn("sentinel", "master %s moved from %s:%d to %s:%d (%s)", s->master_name,
                    s->known_host, s->known_port, host, port, how);
    else
        bg_log_info("sentinel", "master %s is %s:%d", s->master_name, host, port);
    snprintf(s->known_host, sizeof(s->known_host), "%s", host);
    s->known_port = port;
    if (!had)
        return;
    for (size_t i = 0; i < MAX_LISTENERS; i++)
        if (s->listeners[i].cb != NULL)
            s->listeners[i].cb(s->listeners[i].data, host, port);
}

/* An address the sentinels give is connected to as it is: a host name would make hiredis
 * resolve it with a blocking getaddrinfo on the loop. */
static int
is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* "+switch-master": "<name> <old ip> <old port> <new ip> <new port>". */
static void
on_switch_message(bg_redis *redis, const char *channel, const char *msg, size_t len, void *data)
{
    (void)redis, (void)channel;
    bg_sentinel *s = data;
    char buf[512], name[256], old_host[64], new_host[64];
    int old_port, new_port;
    if (len >= sizeof(buf))
        return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    if (sscanf(buf, "%255s %63s %d %63s %d", name, old_host, &old_port, new_host, &new_port) != 5 ||
        strcmp(name, s->master_name) != 0 || !is_numeric(new_host) || new_port < 1 ||
        new_port > 65535)
        return;
    learn(s, new_host, new_port, "+switch-master");
}

/* --- questions ----------------------------------------------------------------------------- */

static void ask_next(bg_sentinel *s);

static void
answer_all(bg_sentinel *s, int err, const char *host, int port)
{
    while (!h2o_linklist_is_empty(&s->waiters)) {
        bg_sentinel_question *a =
            H2O_STRUCT_FROM_MEMBER(bg_sentinel_question, link, s->waiters.next);
        h2o_linklist_unlink(&a->link);
        a->cb(a->data, err, host, port);
    }
}

static void
on_master_addr(bg_redis *redis, redisReply *reply, int err, void *data)
{
    bg_sentinel *s = data;
    s->asking = 0;
    if (s->closing)
        return;
    if (err == 0 && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        char host[64];
        int port = atoi(reply->element[1]->str);
        snprintf(host, sizeof(host), "%s", reply->element[0]->str);
        if (is_numeric(host) && port > 0 && port <= 65535) {
            s->preferred = s->current;
            learn(s, host, port, "asked");
            answer_all(s, 0, host, port);
            return;
        }
        bg_log_error("sentinel", "%s: master %s is at '%s' port %d: not a numeric address",
                     bg_redis_target(redis), s->master_name, host, port);
    } else if (err == 0 && reply->type == REDIS_REPLY_NIL) {
        bg_log_warn("sentinel", "%s does not monitor a master named %s", bg_redis_target(redis),
                    s->master_name);
    } else if (err == 0 && reply->type == REDIS_REPLY_ERROR) {
        bg_log_warn("sentinel", "%s: SENTINEL get-master-addr-by-name refused: %.*s",
                    bg_redis_target(redis), (int)reply->len, reply->str);
    } else {
        bg_log_debug("sentinel", "%s: no answer (%s)", bg_redis_target(redis),
                     bg_error_code(err != 0 ? err : BG_EREDIS_ERROR));
    }
    s->current = (s->current + 1) % s->n;
    s->tried++;
    ask_next(s);
}

/* Asks the next sentinel that is connected; when all were tried, answers "down". */
static void
ask_next(bg_sentinel *s)
{
    while (s->tried < s->n) {
        bg_redis *q = s->query[s->current];
        const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", s->master_name};
        if (bg_redis_command(q, on_master_addr, s, 3, argv, NULL) == 0) {
            s->asking = 1;
            return;
        }
        s->current = (s->current + 1) % s->n;
        s->tried++;
    }
    answer_all(s, BG_EREDIS_DOWN, NULL, 0);
}

static void
on_kick(bg_timer *t)
{
    bg_sentinel *s = t->data;
    if (s->asking || h2o_linklist_is_empty(&s->waiters))
        return;
    s->current = s->preferred;
    s->tried = 0;
    ask_next(s);
}

void
bg_sentinel_ask(bg_sentinel *s, bg_sentinel_question *ask, bg_sentinel_cb cb, void *data)
{
    ask->cb = cb;
    ask->data = data;
    h2o_linklist_insert(&s->waiters, &ask->link);
    if (!s->asking && !bg_timer_is_active(&s->kick))
        bg_timer_start(&s->kick, 0);
}

void
bg_sentinel_cancel(bg_sentinel *s, bg_sentinel_question *ask)
{
    (void)s;
    if (h2o_linklist_is_linked(&ask->link))
        h2o_linklist_unlink(&ask->link);
}

static void
on_poll_answer(void *data, int err, const char *host, int port)
{
    (void)err, (void)host, (void)port; /* learn() already acted on a new answer */
    bg_sentinel *s = data;
    bg_timer_start(&s->poll, POLL_MS);
}

static void
on_poll(bg_timer *t)
{
    bg_sentinel *s = t->data;
    bg_sentinel_ask(s, &s->poll_ask, on_poll_answer, s);
}

/* --- life ---------------------------------------------------------------------------------- */

int
bg_sentinel_watch(bg_sentinel *s, bg_sentinel_switch_cb cb, void *data)
{
    for (size_t i = 0; i < MAX_LISTENERS; i++) {
        if (s->listeners[i].cb == NULL) {
            s->listeners[i] = (struct st_listener){cb, data};
            return 0;
        }
    }
    return BG_ENOMEM;
}

void
bg_sentinel_unwatch(bg_sentinel *s, bg_sentinel_switch_cb cb, void *data)
{
    for (size_t i = 0; i < MAX_LISTENERS; i++)
        if (s->listeners[i].cb == cb && s->listeners[i].data == data)
            s->listeners[i] = (struct st_listener){NULL, NULL};
}

const char *
bg_sentinel_master_name(const bg_sentinel *s)
{
    return s->master_name;
}

static void
sentinel_free(bg_sentinel *s)
{
    s->closing = 1;
    for (size_t i = 0; i < s->n; i++) {
        bg_redis_free(s->query[i]);
        bg_redis_free(s->sub[i]);
    }
    free(s->query);
    free(s->sub);
    bg_timer_dispose(&s->kick);
    bg_timer_dispose(&s->poll);
    free(s->master_name);
    free(s);
}

bg_sentinel *
bg_sentinel_new(h2o_loop_t *loop, const bg_strlist *sentinels, const char *master_name,
                int timeout_ms, char *err, size_t errlen)
{
    bg_sentinel *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->master_name = strdup(master_name)) == NULL ||
        (s->query = calloc(sentinels->n, sizeof(*s->query))) == NULL ||
        (s->sub = calloc(sentinels->n, sizeof(*s->sub))) == NULL) {
        if (s != NULL) {
            free(s->query);
            free(s->master_name);
        }
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->refs = 1;
    h2o_linklist_init_anchor(&s->waiters);
    bg_timer_init(&s->kick, loop, on_kick, s);
    bg_timer_init(&s->poll, loop, on_poll, s);
    for (size_t i = 0; i < sentinels->n; i++) {
        char url[300], why[256];
        snprintf(url, sizeof(url), "redis://%s", sentinels->v[i]);
        s->query[i] = bg_redis_new(loop, url, timeout_ms, why, sizeof(why));
        s->sub[i] =
            s->query[i] != NULL ? bg_redis_new(loop, url, timeout_ms, why, sizeof(why)) : NULL;
        s->n = i + 1;
        if (s->sub[i] == NULL) {
            snprintf(err, errlen, "redis.sentinels[%zu]: %s", i, why);
            sentinel_free(s);
            return NULL;
        }
        bg_redis_subscribe(s->sub[i], "+switch-master", on_switch_message, s);
    }
    return s;
}

void
bg_sentinel_start(bg_sentinel *s)
{
    if (s->started)
        return;
    s->started = 1;
    for (size_t i = 0; i < s->n; i++) {
        bg_redis_start(s->query[i]);
        bg_redis_start(s->sub[i]);
    }
    bg_timer_start(&s->poll, POLL_MS);
}

void
bg_sentinel_retain(bg_sentinel *s)
{
    s->refs++;
}

void
bg_sentinel_release(bg_sentinel *s)
{
    if (s == NULL || --s->refs > 0)
        return;
    bg_sentinel_cancel(s, &s->poll_ask);
    sentinel_free(s);
}
