/*
 * One self-healing hiredis connection on h2o's evloop (see botgate/redis.h).
 *
 * Lifetimes. A command's state (struct st_redis_cmd) is owned by hiredis from the moment
 * it is queued until hiredis calls on_reply, which it does exactly once: with a reply,
 * or with NULL when the connection is lost or freed. A deadline that fires first answers
 * the caller and clears cmd->cb, and on_reply later only frees the struct. So the
 * caller's callback runs exactly once and the struct is freed exactly once.
 *
 * The connection (r->ac) is NULL whenever we consider it gone; hiredis's disconnect and
 * connect callbacks for a context that is no longer r->ac are ignored, which makes
 * "we dropped it" and "hiredis dropped it" the same path.
 */
#include "botgate/redis.h"
#include "botgate/error.h"
#include "botgate/log.h"
#include "botgate/redis_url.h"
#include "botgate/sentinel.h"
#include "botgate/timer.h"

#include <async.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BACKOFF_INITIAL_MS 100
#define BACKOFF_MAX_MS 2000
#define HEARTBEAT_MS 1000

enum { ST_IDLE, ST_RESOLVING, ST_CONNECTING, ST_HANDSHAKE, ST_READY, ST_CLOSED };

struct bg_redis {
    h2o_loop_t *loop;
    int timeout_ms;
    /* target */
    char *url_text; /* as configured: a sibling is made from it */
    bg_redis_url url;
    char addr[64]; /* url.host resolved, numeric; or the master the sentinels named */
    int port;
    char target[300];
    /* Sentinel mode: the master's address is asked for before every connection, and
     * url's host and port are not used (its credentials and db are) */
    bg_sentinel *sentinel;
    bg_sentinel_question ask;
    /* subscribed mode: after the handshake, SUBSCRIBE and nothing else */
    char *sub_channel;
    bg_redis_message_cb sub_cb;
    void *sub_data;
    /* connection */
    redisAsyncContext *ac;
    int state;
    int backoff_ms;
    h2o_timeout_t deadlines; /* one delay for all commands: redis.timeout_ms */
    bg_timer connect_timer;
    bg_timer reconnect_timer;
    bg_timer heartbeat_timer;
    bg_redis_ready_cb ready_cb;
    void *ready_data;
};

struct st_redis_cmd {
    bg_redis *redis;
    bg_redis_cb cb; /* NULL once the caller has been answered (deadline) */
    void *data;
    h2o_timeout_entry_t deadline;
};

/* --- the hiredis adapter for h2o's evloop ---------------------------------------------
 * h2o watches a dup() of hiredis's fd (both libraries close the fd they own) with
 * H2O_SOCKET_FLAG_DONT_READ, so h2o only reports readiness and hiredis does the I/O.
 * h2o's write notification is one-shot and must not be armed twice: `writing` tracks it.
 */
struct st_redis_adapter {
    redisAsyncContext *ac;
    h2o_socket_t *sock;
    int reading;
    int writing;
};

static void
on_sock_readable(h2o_socket_t *sock, const char *err)
{
    (void)err;
    struct st_redis_adapter *a = sock->data;
    redisAsyncHandleRead(a->ac);
}

static void
on_sock_writable(h2o_socket_t *sock, const char *err)
{
    (void)err;
    struct st_redis_adapter *a = sock->data;
    a->writing = 0;
    redisAsyncHandleWrite(a->ac);
}

static void
ev_add_read(void *p)
{
    struct st_redis_adapter *a = p;
    if (!a->reading) {
        a->reading = 1;
        h2o_socket_read_start(a->sock, on_sock_readable);
    }
}

static void
ev_del_read(void *p)
{
    struct st_redis_adapter *a = p;
    if (a->reading) {
        a->reading = 0;
        h2o_socket_read_stop(a->sock);
    }
}

static void
ev_add_write(void *p)
{
    struct st_redis_adapter *a = p;
    if (!a->writing) {
        a->writing = 1;
        h2o_socket_notify_write(a->sock, on_sock_writable);
    }
}

/* A write notification cannot be withdrawn; one that fires with nothing to write is a
 * no-op for hiredis. */
static void
ev_del_write(void *p)
{
    (void)p;
}

static void
ev_cleanup(void *p)
{
    struct st_redis_adapter *a = p;
    h2o_socket_close(a->sock);
    free(a);
}

static int
adapter_attach(h2o_loop_t *loop, redisAsyncContext *ac)
{
    int fd = dup(ac->c.fd);
    if (fd < 0)
        return BG_EIO;
    struct st_redis_adapter *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        close(fd);
        return BG_ENOMEM;
    }
    a->ac = ac;
    a->sock = h2o_evloop_socket_create(loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    a->sock->data = a;
    ac->ev.data = a;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* --- commands ------------------------------------------------------------------------ */

static void drop_connection(bg_redis *r, const char *why);

static void
on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct st_redis_cmd *cmd = privdata;
    bg_redis_cb cb = cmd->cb;
    void *data = cmd->data;
    bg_redis *r = cmd->redis;
    if (h2o_timeout_is_linked(&cmd->deadline))
        h2o_timeout_unlink(&cmd->deadline);
    free(cmd);
    /* A master demoted under us answers writes with READONLY: behind Sentinel, that means
     * a fail-over happened, and the connection must go and ask where the master is now. */
    redisReply *rr = reply;
    int demoted = r->sentinel != NULL && rr != NULL && rr->type == REDIS_REPLY_ERROR &&
                  strncmp(rr->str, "READONLY", 8) == 0;
    if (cb != NULL)
        cb(r, reply, reply != NULL ? 0 : BG_EREDIS_DOWN, data);
    if (demoted && r->ac == ac)
        drop_connection(r, "READONLY: no longer the master");
}

static void
on_deadline(h2o_timeout_entry_t *entry)
{
    struct st_redis_cmd *cmd = H2O_STRUCT_FROM_MEMBER(struct st_redis_cmd, deadline, entry);
    bg_redis *r = cmd->redis;
    bg_redis_cb cb = cmd->cb;
    cmd->cb = NULL; /* hiredis still owns cmd; on_reply frees it */
    cb(r, NULL, BG_EREDIS_TIMEOUT, cmd->data);
    drop_connection(r, "a command timed out");
}

/* Queues a command on the current context whatever the state; the public entry point
 * checks readiness, the handshake does not. */
static int
send_command(bg_redis *r, bg_redis_cb cb, void *data, int argc, const char **argv,
             const size_t *argvlen)
{
    if (r->ac == NULL)
        return BG_EREDIS_DOWN;
    struct st_redis_cmd *cmd = malloc(sizeof(*cmd));
    if (cmd == NULL)
        return BG_ENOMEM;
    *cmd = (struct st_redis_cmd){r, cb, data, {0, on_deadline, {NULL, NULL}}};
    if (redisAsyncCommandArgv(r->ac, on_reply, cmd, argc, argv, argvlen) != REDIS_OK) {
        free(cmd);
        return BG_EREDIS_DOWN;
    }
    h2o_timeout_link(r->loop, &r->deadlines, &cmd->deadline);
    return 0;
}

int
bg_redis_command(bg_redis *r, bg_redis_cb cb, void *data, int argc, const char **argv,
                 const size_t *argvlen)
{
    if (r->state != ST_READY)
        return BG_EREDIS_DOWN;
    return send_command(r, cb, data, argc, argv, argvlen);
}

int
bg_redis_is_ready(const bg_redis *r)
{
    return r->state == ST_READY;
}

const char *
bg_redis_target(const bg_redis *r)
{
    return r->target;
}

void
bg_redis_set_ready_cb(bg_redis *r, bg_redis_ready_cb cb, void *data)
{
    r->ready_cb = cb;
    r->ready_data = data;
}

/* --- connection life ------------------------------------------------------------------ */

static void start_connect(bg_redis *r);

static void
schedule_reconnect(bg_redis *r)
{
    if (r->state == ST_CLOSED)
        return;
    r->state = ST_IDLE;
    bg_timer_start(&r->reconnect_timer, (uint64_t)r->backoff_ms);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* Forgets the current context and frees it: pending commands are answered
 * BG_EREDIS_DOWN from inside redisAsyncFree (or right after the current hiredis
 * callback, which defers the free). */
static void
drop_connection(bg_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    if (ac == NULL)
        return;
    int was_ready = r->state == ST_READY;
    r->ac = NULL;
    r->state = ST_IDLE;
    bg_timer_stop(&r->connect_timer);
    bg_timer_stop(&r->heartbeat_timer);
    if (was_ready)
        bg_log_warn("redis", "%s: connection dropped: %s", r->target, why);
    else
        bg_log_debug("redis", "%s: connection attempt abandoned: %s", r->target, why);
    redisAsyncFree(ac);
    schedule_reconnect(r);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    bg_redis *r = ac->data;
    if (r == NULL || ac != r->ac)
        return;
    /* hiredis frees ac after this callback returns. */
    r->ac = NULL;
    bg_timer_stop(&r->connect_timer);
    bg_timer_stop(&r->heartbeat_timer);
    if (r->state == ST_READY)
        bg_log_warn("redis", "%s: connection lost: %s", r->target,
                    status == REDIS_OK ? "closed" : ac->errstr);
    schedule_reconnect(r);
}

/* ROLE's answer: ["master", offset, [replicas...]] on a master. */
static int
is_master_role(const redisReply *reply)
{
    return reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
           reply->element[0]->type == REDIS_REPLY_STRING &&
           strcmp(reply->element[0]->str, "master") == 0;
}

/*
 * Subscribed mode. hiredis keeps a subscription's callback for every message, so it gets
 * no deadline and no struct of its own: privdata is r itself, which outlives the context
 * (on free, hiredis calls it once more with NULL, which touches nothing). No heartbeat:
 * a PING in subscribed mode would answer with a message that hiredis cannot match.
 */
static void
on_sub_message(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *m = reply;
    if (m == NULL)
        return;
    bg_redis *r = privdata;
    if (ac != r->ac || m->type != REDIS_REPLY_ARRAY || m->elements != 3 ||
        m->element[0]->type != REDIS_REPLY_STRING || strcmp(m->element[0]->str, "message") != 0 ||
        m->element[2]->type != REDIS_REPLY_STRING)
        return;
    r->sub_cb(r, m->element[1]->str, m->element[2]->str, m->element[2]->len, r->sub_data);
}

static void
subscribe(bg_redis *r)
{
    const char *argv[2] = {"SUBSCRIBE", r->sub_channel};
    if (redisAsyncCommandArgv(r->ac, on_sub_message, r, 2, argv, NULL) != REDIS_OK)
        drop_connection(r, "SUBSCRIBE could not be sent");
}

void
bg_redis_subscribe(bg_redis *r, const char *channel, bg_redis_message_cb cb, void *data)
{
    free(r->sub_channel);
    r->sub_channel = strdup(channel);
    r->sub_cb = cb;
    r->sub_data = data;
}

static void
on_handshake_reply(bg_redis *r, redisReply *reply, int err, void *data)
{
    const char *step = data;
    if (err != 0 || reply == NULL) {
        /* the connection is already being dropped by whoever produced err */
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        bg_log_error("redis", "%s: %s refused: %.*s", r->target, step, (int)reply->len, reply->str);
        drop_connection(r, "handshake refused");
        return;
    }
    if (strcmp(step, "ROLE") == 0 && !is_master_role(reply)) {
        bg_log_warn("redis", "%s: not a master (yet): asking the sentinels again", r->target);
        drop_connection(r, "not a master");
        return;
    }
    if (strcmp(step, r->sentinel != NULL ? "ROLE" : "PING") != 0)
        return;
    bg_timer_stop(&r->connect_timer);
    r->state = ST_READY;
    r->backoff_ms = BACKOFF_INITIAL_MS;
    if (r->sub_channel != NULL)
        subscribe(r);
    else
        bg_timer_start(&r->heartbeat_timer, HEARTBEAT_MS);
    bg_log_info("redis", "%s: connected", r->target);
    if (r->ready_cb != NULL)
        r->ready_cb(r, r->ready_data);
}

/* AUTH, SELECT and PING are pipelined; the PING's answer makes the connection ready. */
static void
on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    bg_redis *r = ac->data;
    if (r == NULL || ac != r->ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees ac after this callback */
        r->ac = NULL;
        bg_timer_stop(&r->connect_timer);
        bg_log_debug("redis", "%s: connect failed: %s", r->target, ac->errstr);
        schedule_reconnect(r);
        return;
    }
    r->state = ST_HANDSHAKE;
    const bg_redis_url *u = &r->url;
    if (u->password != NULL) {
        const char *argv[3] = {"AUTH", u->user != NULL ? u->user : u->password, u->password};
        send_command(r, on_handshake_reply, "AUTH", u->user != NULL ? 3 : 2, argv, NULL);
    }
    if (u->db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", u->db);
        const char *argv[2] = {"SELECT", db};
        send_command(r, on_handshake_reply, "SELECT", 2, argv, NULL);
    }
    const char *argv[1] = {r->sentinel != NULL ? "ROLE" : "PING"};
    send_command(r, on_handshake_reply, (void *)argv[0], 1, argv, NULL);
}

static void
connect_now(bg_redis *r)
{
    redisAsyncContext *ac = r->url.is_unix && r->sentinel == NULL
                                ? redisAsyncConnectUnix(r->url.path)
                                : redisAsyncConnect(r->addr, r->port);
    if (ac == NULL) {
        bg_log_error("redis", "%s: out of memory", r->target);
        schedule_reconnect(r);
        return;
    }
    if (ac->err) {
        bg_log_debug("redis", "%s: connect failed: %s", r->target, ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    if (adapter_attach(r->loop, ac) != 0) {
        redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    ac->data = r;
    r->ac = ac;
    r->state = ST_CONNECTING;
    /* The adapter must be attached first: setting the connect callback arms the write
     * event that reports the connection. */
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connect);
    bg_timer_start(&r->connect_timer, (uint64_t)r->timeout_ms);
}

static void
on_master_addr(void *data, int err, const char *host, int port)
{
    bg_redis *r = data;
    if (r->state != ST_RESOLVING)
        return;
    if (err != 0) {
        bg_log_debug("redis", "%s: no sentinel answered", r->target);
        schedule_reconnect(r);
        return;
    }
    snprintf(r->addr, sizeof(r->addr), "%s", host);
    r->port = port;
    snprintf(r->target, sizeof(r->target), "redis://%s%s%s:%d/%d (master %s)",
             strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", port, r->url.db,
             bg_sentinel_master_name(r->sentinel));
    connect_now(r);
}

/* Behind Sentinel, a connection first asks where the master is. */
static void
start_connect(bg_redis *r)
{
    if (r->sentinel == NULL) {
        connect_now(r);
        return;
    }
    r->state = ST_RESOLVING;
    bg_sentinel_ask(r->sentinel, &r->ask, on_master_addr, r);
}

/* The sentinels announced a fail-over: a connection to anywhere else goes, and one that
 * is waiting out its back-off tries again at once. */
static void
on_master_switch(void *data, const char *host, int port)
{
    bg_redis *r = data;
    if (r->ac != NULL && (strcmp(r->addr, host) != 0 || r->port != port)) {
        drop_connection(r, "the sentinels announced a new master");
    } else if (r->ac == NULL && r->state == ST_IDLE) {
        r->backoff_ms = BACKOFF_INITIAL_MS;
        bg_timer_start(&r->reconnect_timer, 0);
    }
}

static void
on_connect_timeout(bg_timer *t)
{
    drop_connection(t->data, "connect timed out");
}

static void
on_reconnect_timer(bg_timer *t)
{
    start_connect(t->data);
}

static void
on_heartbeat_reply(bg_redis *r, redisReply *reply, int err, void *data)
{
    (void)r, (void)reply, (void)err, (void)data;
}

static void
on_heartbeat(bg_timer *t)
{
    bg_redis *r = t->data;
    const char *argv[1] = {"PING"};
    if (r->state == ST_READY && send_command(r, on_heartbeat_reply, NULL, 1, argv, NULL) == 0)
        bg_timer_start(&r->heartbeat_timer, HEARTBEAT_MS);
}

void
bg_redis_start(bg_redis *r)
{
    if (r->sentinel != NULL)
        bg_sentinel_start(r->sentinel);
    if (r->state == ST_IDLE && r->ac == NULL)
        start_connect(r);
}

/* --- set-up ------------------------------------------------------------------------- */

/*
 * Parses the URL into r's target and resolves a host name once (start-up only): hiredis
 * would otherwise call a blocking getaddrinfo on the loop at every reconnection.
 */
static int
set_target(bg_redis *r, const char *url, char *err, size_t errlen)
{
    const char *why;
    if ((r->url_text = strdup(url)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (r->sentinel != NULL && url[0] == '\0') {
        snprintf(r->target, sizeof(r->target), "master %s (via the sentinels)",
                 bg_sentinel_master_name(r->sentinel));
        return 0;
    }
    if (bg_redis_url_parse(&r->url, url, &why) != 0) {
        snprintf(err, errlen, "redis.url: %s", why);
        return -1;
    }
    bg_redis_url_show(&r->url, r->target, sizeof(r->target));
    r->port = r->url.port;
    if (r->sentinel != NULL) {
        snprintf(r->target, sizeof(r->target), "master %s (via the sentinels)",
                 bg_sentinel_master_name(r->sentinel));
        return 0;
    }
    if (r->url.is_unix)
        return 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(r->url.host, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "redis.url: cannot resolve '%s': %s", r->url.host, gai_strerror(rc));
        return -1;
    }
    h2o_socket_getnumerichost(res->ai_addr, res->ai_addrlen, r->addr);
    freeaddrinfo(res);
    return 0;
}

/* A connection to url, or (sentinel not NULL: a reference is taken) to the master the
 * sentinels name, with url's credentials and db. */
static bg_redis *
redis_new(h2o_loop_t *loop, const char *url, bg_sentinel *sentinel, int timeout_ms, char *err,
          size_t errlen)
{
    bg_redis *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->loop = loop;
    r->timeout_ms = timeout_ms;
    r->backoff_ms = BACKOFF_INITIAL_MS;
    r->state = ST_IDLE;
    r->sentinel = sentinel;
    if (set_target(r, url, err, errlen) != 0 ||
        (sentinel != NULL && bg_sentinel_watch(sentinel, on_master_switch, r) != 0)) {
        if (err[0] == '\0')
            snprintf(err, errlen, "too many connections to the master");
        bg_redis_url_free(&r->url);
        free(r->url_text);
        free(r);
        return NULL;
    }
    if (sentinel != NULL)
        bg_sentinel_retain(sentinel);
    h2o_timeout_init(loop, &r->deadlines, (uint64_t)timeout_ms);
    bg_timer_init(&r->connect_timer, loop, on_connect_timeout, r);
    bg_timer_init(&r->reconnect_timer, loop, on_reconnect_timer, r);
    bg_timer_init(&r->heartbeat_timer, loop, on_heartbeat, r);
    return r;
}

bg_redis *
bg_redis_new(h2o_loop_t *loop, const char *url, int timeout_ms, char *err, size_t errlen)
{
    return redis_new(loop, url, NULL, timeout_ms, err, errlen);
}

bg_redis *
bg_redis_new_from_config(h2o_loop_t *loop, const bg_config *cfg, char *err, size_t errlen)
{
    if (cfg->redis.sentinels.n == 0)
        return redis_new(loop, cfg->redis.url, NULL, cfg->redis.timeout_ms, err, errlen);
    bg_sentinel *s = bg_sentinel_new(loop, &cfg->redis.sentinels, cfg->redis.master_name,
                                     cfg->redis.timeout_ms, err, errlen);
    if (s == NULL)
        return NULL;
    err[0] = '\0';
    bg_redis *r = redis_new(loop, cfg->redis.url, s, cfg->redis.timeout_ms, err, errlen);
    bg_sentinel_release(s); /* r holds its own reference */
    return r;
}

bg_redis *
bg_redis_new_sibling(const bg_redis *r, char *err, size_t errlen)
{
    err[0] = '\0';
    return redis_new(r->loop, r->url_text, r->sentinel, r->timeout_ms, err, errlen);
}

void
bg_redis_free(bg_redis *r)
{
    if (r == NULL)
        return;
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    r->state = ST_CLOSED;
    if (ac != NULL)
        redisAsyncFree(ac);
    if (r->sentinel != NULL) {
        bg_sentinel_cancel(r->sentinel, &r->ask);
        bg_sentinel_unwatch(r->sentinel, on_master_switch, r);
        bg_sentinel_release(r->sentinel);
    }
    free(r->sub_channel);
    free(r->url_text);
    bg_timer_dispose(&r->connect_timer);
    bg_timer_dispose(&r->reconnect_timer);
    bg_timer_dispose(&r->heartbeat_timer);
    h2o_timeout_dispose(r->loop, &r->deadlines);
    bg_redis_url_free(&r->url);
    free(r);
}
