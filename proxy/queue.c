#include "botgate/queue.h"
#include "botgate/error.h"
#include "botgate/log.h"
#include "botgate/metrics.h"
#include "botgate/partition.h"
#include "botgate/relay_directory.h"
#include "botgate/timer.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The enqueue script: stores a batch of activities, each as its own atomic step. Every put
 * made during one turn of the event loop goes to Redis in one call of this script at the
 * end of that turn (group commit): Redis then pays its per-call costs (reading, the Lua
 * call, the reply, and with appendfsync always one fsync) once per turn instead of once
 * per activity, and botgate one command and one reply.
 *
 * KEYS, per activity in order: its stream (the conversation's partition); its
 * de-duplication key when flags has bit 0; its conversation directory entry when flags
 * has bit 1 (botgate/relay_directory.h).
 * ARGV: maxlen, the de-duplication TTL, the directory TTL; then per activity: flags, the
 * entry, and with bit 1 the directory's serviceUrl, channelId, tenant id and last-seen
 * time (Unix ms).
 *
 * Per activity, atomically: the directory is written first, whatever follows (the activity
 * passed authentication, so its serviceUrl is the verified one even when the queue then
 * refuses it); then the de-duplication marker is set (SET NX: a marker already there means
 * a repeat, acknowledged, nothing stored; a key of another type there is an error, never
 * taken for a marker), then the entry appended. A marker is never left without its
 * entry: when the queue is full or the append fails, the marker is deleted again, so a crash
 * or a concurrent writer from another pod cannot separate "seen before?" from "append", and
 * the Connector's retry of a refused activity is not taken for a repeat. A repeat later in
 * the same batch finds the marker the earlier one set.
 *
 * The stream is a queue, not a log: the dispatcher deletes what it has delivered. So its
 * length is the backlog, and redis.maxlen bounds it by refusing (503 queue_full, the
 * Connector retries) rather than by trimming: MAXLEN would silently drop the oldest
 * acknowledged activities that the bot has not received yet. XLEN is asked once per stream
 * and batch; the script counts its own appends.
 *
 * Returns one value per activity: 1 stored, 0 a repeat, -1 full, or the error message when
 * one of its commands failed (WRONGTYPE on its stream, say): that activity fails alone,
 * under pcall, and the others of the batch are unaffected.
 */
static const char enqueue_script[] =
    "local maxlen, lens = tonumber(ARGV[1]), {}\n"
    "local function put(stream, seen, dir, a)\n"
    "  if dir then\n"
    "    redis.call('HSET', dir, 'service_url', ARGV[a + 2], 'channel_id', ARGV[a + 3],\n"
    "               'tenant_id', ARGV[a + 4], 'last_seen_ms', ARGV[a + 5])\n"
    "    redis.call('EXPIRE', dir, ARGV[3])\n"
    "  end\n"
    "  local len = lens[stream] or redis.call('XLEN', stream)\n"
    "  if seen and not redis.call('SET', seen, '1', 'NX', 'EX', ARGV[2]) then\n"
    "    if redis.call('TYPE', seen).ok ~= 'string' then\n"
    "      error('WRONGTYPE the de-duplication key ' .. seen .. ' is not a string')\n"
    "    end\n"
    "    return 0\n"
    "  end\n"
    "  if len >= maxlen then\n"
    "    if seen then redis.call('DEL', seen) end\n"
    "    return -1\n"
    "  end\n"
    "  local ok, id = pcall(redis.call, 'XADD', stream, '*', 'entry', ARGV[a + 1])\n"
    "  if not ok then\n"
    "    if seen then redis.call('DEL', seen) end\n"
    "    error(id)\n"
    "  end\n"
    "  lens[stream] = len + 1\n"
    "  return 1\n"
    "end\n"
    "local out, k, a = {}, 1, 4\n"
    "while a <= #ARGV do\n"
    "  local flags = tonumber(ARGV[a])\n"
    "  local stream, seen, dir = KEYS[k], nil, nil\n"
    "  k = k + 1\n"
    "  if flags % 2 == 1 then seen = KEYS[k]; k = k + 1 end\n"
    "  if flags >= 2 then dir = KEYS[k]; k = k + 1 end\n"
    "  local ok, code = pcall(put, stream, seen, dir, a)\n"
    "  if ok then\n"
    "    out[#out + 1] = code\n"
    "  else\n"
    "    out[#out + 1] = type(code) == 'table' and code.err or tostring(code)\n"
    "  end\n"
    "  a = a + (dir and 6 or 2)\n"
    "end\n"
    "return out\n";

/* A script call carries at most this many activities, or this many bytes of entries (at
 * least one activity): Redis runs a script to its end before anything else, so one call
 * must stay short. The rest of a turn's puts go in further calls, in order. */
enum { BATCH_MAX_PUTS = 256, BATCH_MAX_BYTES = 4 << 20 };

struct st_queue_put;

struct bg_queue {
    bg_redis *redis;
    char *stream;
    int partitions;
    char **streams; /* each partition's stream (botgate/partition.h) */
    char maxlen[24];
    char ttl[16];
    char replicas[8];
    char wait_ms[16];
    char dir_ttl[16]; /* relay.directory_ttl_s */
    int min_replicas;
    char sha[41];
    /* the puts of this turn of the loop, in order, sent by flush_timer at its end */
    struct st_queue_put *pending, **pending_tail;
    bg_timer flush_timer;
    bg_metric_series *batch_metric; /* activities per call; NULL: not counted */
};

/* One put from bg_queue_put to its callback. Owns a copy of the arguments. */
struct st_queue_put {
    struct st_queue_put *next;
    const char *stream; /* the conversation's partition */
    bg_queue_cb cb;
    void *data;
    int err; /* the script's verdict on this put */
    int duplicate;
    char *dedupe_key;
    size_t dedupe_len;
    char *entry;
    size_t entry_len;
    /* the directory write, or dir_key NULL */
    char *dir_key;
    size_t dir_key_len;
    char *dir_service_url, *dir_channel_id, *dir_tenant_id;
    char dir_seen[24];
};

/* One script call in flight: the puts it carries, until the last reply (WAIT's, where
 * redis.min_replicas_ack asks for one). */
struct st_queue_batch {
    bg_queue *queue;
    struct st_queue_put *puts;
    size_t n;
    int tried_eval; /* NOSCRIPT seen once: re-sent as EVAL */
};

static void
put_free(struct st_queue_put *put)
{
    free(put->dedupe_key);
    free(put->entry);
    free(put->dir_key);
    free(put->dir_service_url);
    free(put->dir_channel_id);
    free(put->dir_tenant_id);
    free(put);
}

/* Answers every put of the list: err for all when it is not 0, else each its own verdict.
 * A callback may put again: the list is detached first, and new puts join the next turn. */
static void
finish_puts(struct st_queue_put *put, int err)
{
    while (put != NULL) {
        struct st_queue_put *next = put->next;
        put->cb(put->data, err != 0 ? err : put->err, put->duplicate);
        put_free(put);
        put = next;
    }
}

static void
batch_finish(struct st_queue_batch *b, int err)
{
    struct st_queue_put *puts = b->puts;
    free(b);
    finish_puts(puts, err);
}

static void
on_wait_reply(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    struct st_queue_batch *b = data;
    if (err == 0 && reply->type != REDIS_REPLY_INTEGER)
        err = BG_EREDIS_ERROR;
    if (err == 0 && reply->integer < b->queue->min_replicas)
        err = BG_EREPLICA;
    batch_finish(b, err);
}

static int send_batch(struct st_queue_batch *b, int use_eval);

/* Reads the script's value per put into each put's verdict; -1 when the reply is not what
 * the script returns. */
static int
read_verdicts(struct st_queue_batch *b, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != b->n)
        return -1;
    size_t i = 0;
    for (struct st_queue_put *put = b->puts; put != NULL; put = put->next, i++) {
        const redisReply *v = reply->element[i];
        if (v->type == REDIS_REPLY_STRING) {
            bg_log_warn("queue", "enqueue refused by Redis: %.*s", (int)v->len, v->str);
            put->err = BG_EREDIS_ERROR;
        } else if (v->type != REDIS_REPLY_INTEGER || v->integer < -1 || v->integer > 1) {
            return -1;
        } else if (v->integer == -1) {
            put->err = BG_EQUEUE_FULL;
        } else {
            put->duplicate = v->integer == 0;
        }
    }
    return 0;
}

static void
on_script_reply(bg_redis *redis, redisReply *reply, int err, void *data)
{
    struct st_queue_batch *b = data;
    if (err != 0) {
        batch_finish(b, err);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!b->tried_eval && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            /* First use on this server (or after SCRIPT FLUSH): send the text once. */
            int rc = send_batch(b, 1);
            if (rc != 0)
                batch_finish(b, rc);
            return;
        }
        bg_log_warn("queue", "enqueue refused by Redis: %.*s", (int)reply->len, reply->str);
        batch_finish(b, BG_EREDIS_ERROR);
        return;
    }
    if (read_verdicts(b, reply) != 0) {
        bg_log_warn("queue", "the enqueue script answered %zu values for %zu activities",
                    reply->type == REDIS_REPLY_ARRAY ? reply->elements : 0, b->n);
        batch_finish(b, BG_EREDIS_ERROR);
        return;
    }
    if (b->queue->min_replicas == 0) {
        batch_finish(b, 0);
        return;
    }
    /* WAIT counts the replicas that have everything this connection wrote so far, which
     * includes a duplicate's original when this process stored it. One WAIT serves the
     * whole batch; a refused put keeps its own verdict. */
    bg_queue *q = b->queue;
    const char *argv[3] = {"WAIT", q->replicas, q->wait_ms};
    int rc = bg_redis_command(redis, on_wait_reply, b, 3, argv, NULL);
    if (rc != 0)
        batch_finish(b, rc);
}

#define PUT_FLAGS(put) ((put)->dedupe_key != NULL ? 1 : 0) + ((put)->dir_key != NULL ? 2 : 0)

static int
send_batch(struct st_queue_batch *b, int use_eval)
{
    static const char *const flag_text[4] = {"0", "1", "2", "3"};
    bg_queue *q = b->queue;
    /* at most: command, script, numkeys, 3 keys a put, 3 arguments, 6 arguments a put */
    size_t cap = 6 + 9 * b->n;
    const char **argv = malloc(cap * sizeof(*argv));
    size_t *lens = malloc(cap * sizeof(*lens));
    if (argv == NULL || lens == NULL) {
        free(argv);
        free(lens);
        return BG_ENOMEM;
    }
    char numkeys[24];
    size_t nkeys = 0, n = 0;
    b->tried_eval |= use_eval;
#define ARG(s, len) (argv[n] = (s), lens[n++] = (len))
    ARG(use_eval ? "EVAL" : "EVALSHA", use_eval ? 4 : 7);
    ARG(use_eval ? enqueue_script : q->sha, use_eval ? sizeof(enqueue_script) - 1 : 40);
    ARG(numkeys, 0); /* filled below */
    for (struct st_queue_put *put = b->puts; put != NULL; put = put->next) {
        ARG(put->stream, strlen(put->stream));
        if (put->dedupe_key != NULL)
            ARG(put->dedupe_key, put->dedupe_len);
        if (put->dir_key != NULL)
            ARG(put->dir_key, put->dir_key_len);
    }
    nkeys = n - 3;
    lens[2] = (size_t)snprintf(numkeys, sizeof(numkeys), "%zu", nkeys);
    ARG(q->maxlen, strlen(q->maxlen));
    ARG(q->ttl, strlen(q->ttl));
    ARG(q->dir_ttl, strlen(q->dir_ttl));
    for (struct st_queue_put *put = b->puts; put != NULL; put = put->next) {
        ARG(flag_text[PUT_FLAGS(put)], 1);
        ARG(put->entry, put->entry_len);
        if (put->dir_key != NULL) {
            ARG(put->dir_service_url, strlen(put->dir_service_url));
            ARG(put->dir_channel_id, strlen(put->dir_channel_id));
            ARG(put->dir_tenant_id, strlen(put->dir_tenant_id));
            ARG(put->dir_seen, strlen(put->dir_seen));
        }
    }
#undef ARG
    int rc = bg_redis_command(q->redis, on_script_reply, b, (int)n, argv, lens);
    free(argv);
    free(lens);
    return rc;
}

/* The end of a turn of the loop: this turn's puts go to Redis, BATCH_MAX_PUTS or
 * BATCH_MAX_BYTES a call. */
static void
on_flush(bg_timer *t)
{
    bg_queue *q = t->data;
    while (q->pending != NULL) {
        struct st_queue_batch *b = calloc(1, sizeof(*b));
        struct st_queue_put *last = q->pending;
        size_t n = 1, bytes = last->entry_len;
        while (last->next != NULL && n < BATCH_MAX_PUTS &&
               bytes + last->next->entry_len <= BATCH_MAX_BYTES) {
            last = last->next;
            bytes += last->entry_len;
            n++;
        }
        struct st_queue_put *puts = q->pending;
        q->pending = last->next;
        if (q->pending == NULL)
            q->pending_tail = &q->pending;
        last->next = NULL;
        if (b == NULL) {
            finish_puts(puts, BG_ENOMEM);
            continue;
        }
        *b = (struct st_queue_batch){q, puts, n, 0};
        int rc = bg_redis_is_ready(q->redis) ? send_batch(b, 0) : BG_EREDIS_DOWN;
        if (rc != 0)
            batch_finish(b, rc);
        else
            bg_metric_observe(q->batch_metric, (double)n);
    }
}

/*
 * The de-duplication key: "<stream>:seen:<len(conversation)>:<conversation>:<activity>".
 * Both ids may contain ':' (Teams conversation ids do), so the length prefix is what
 * keeps ("a:b", "c") and ("a", "b:c") apart.
 */
static char *
make_dedupe_key(const bg_queue *q, const char *conv, const char *id, size_t *len)
{
    size_t n = strlen(q->stream) + strlen(conv) + strlen(id) + 40;
    char *key = malloc(n);
    if (key == NULL)
        return NULL;
    int k = snprintf(key, n, "%s:seen:%zu:%s:%s", q->stream, strlen(conv), conv, id);
    *len = (size_t)k;
    return key;
}

int
bg_queue_put(bg_queue *q, const bg_queue_item *item, bg_queue_cb cb, void *data)
{
    if (!bg_redis_is_ready(q->redis))
        return BG_EREDIS_DOWN;
    struct st_queue_put *put = calloc(1, sizeof(*put));
    if (put == NULL)
        return BG_ENOMEM;
    const char *conv = item->conversation_id;
    put->stream = q->streams[bg_partition_of(conv, conv != NULL ? strlen(conv) : 0, q->partitions)];
    put->cb = cb;
    put->data = data;
    bool ok = (put->entry = malloc(item->entry_len > 0 ? item->entry_len : 1)) != NULL;
    if (ok) {
        memcpy(put->entry, item->entry, item->entry_len);
        put->entry_len = item->entry_len;
    }
    if (ok && item->conversation_id != NULL && item->activity_id != NULL)
        ok = (put->dedupe_key = make_dedupe_key(q, item->conversation_id, item->activity_id,
                                                &put->dedupe_len)) != NULL;
    const bg_directory_entry *d = item->directory;
    if (ok && d != NULL) {
        ok = (put->dir_key = bg_directory_key(q->stream, d->conversation_id, &put->dir_key_len)) !=
             NULL;
        ok = ok && (put->dir_service_url = strdup(d->service_url)) != NULL;
        ok = ok &&
             (put->dir_channel_id = strdup(d->channel_id != NULL ? d->channel_id : "")) != NULL;
        ok = ok && (put->dir_tenant_id = strdup(d->tenant_id != NULL ? d->tenant_id : "")) != NULL;
        snprintf(put->dir_seen, sizeof(put->dir_seen), "%lld", (long long)d->last_seen_ms);
    }
    if (!ok) {
        put_free(put);
        return BG_ENOMEM;
    }
    *q->pending_tail = put;
    q->pending_tail = &put->next;
    if (!bg_timer_is_active(&q->flush_timer))
        bg_timer_start(&q->flush_timer, 0); /* fires after this turn's other events */
    return 0;
}

/* --- durability check ------------------------------------------------------------------ */

struct st_durability {
    bg_queue *queue;
    int appendonly; /* -1 unknown */
};

static const char *
config_value(redisReply *reply)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return NULL;
    return reply->element[1]->str;
}

static void
on_appendfsync(bg_redis *redis, redisReply *reply, int err, void *data)
{
    struct st_durability *d = data;
    const char *fsync = err == 0 ? config_value(reply) : NULL;
    const char *target = bg_redis_target(redis);
    if (d->appendonly < 0 || fsync == NULL) {
        bg_log_warn("queue",
                    "%s: cannot read the persistence settings (CONFIG GET refused?): make sure "
                    "appendonly is yes and appendfsync always, or acknowledged activities may "
                    "be lost when Redis restarts",
                    target);
    } else if (!d->appendonly) {
        bg_log_warn("queue",
                    "%s: appendonly is no: acknowledged activities since the last snapshot are "
                    "lost if Redis restarts (set appendonly yes, appendfsync always)",
                    target);
    } else if (strcmp(fsync, "always") != 0 && d->queue->min_replicas == 0) {
        bg_log_warn("queue",
                    "%s: appendonly is yes but appendfsync is %s: up to a second of acknowledged "
                    "activities is lost if the Redis host fails (use appendfsync always or "
                    "redis.min_replicas_ack)",
                    target, fsync);
    } else {
        bg_log_info("queue", "%s: persistence appendonly yes, appendfsync %s", target, fsync);
    }
    free(d);
}

static void
on_appendonly(bg_redis *redis, redisReply *reply, int err, void *data)
{
    struct st_durability *d = data;
    const char *v = err == 0 ? config_value(reply) : NULL;
    d->appendonly = v == NULL ? -1 : strcmp(v, "yes") == 0;
    if (err != 0) {
        free(d);
        return;
    }
    const char *argv[3] = {"CONFIG", "GET", "appendfsync"};
    if (bg_redis_command(redis, on_appendfsync, d, 3, argv, NULL) != 0)
        free(d);
}

void
bg_queue_check_durability(bg_queue *q)
{
    struct st_durability *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return;
    d->queue = q;
    const char *argv[3] = {"CONFIG", "GET", "appendonly"};
    if (bg_redis_command(q->redis, on_appendonly, d, 3, argv, NULL) != 0)
        free(d);
}

/* --- layout check ---------------------------------------------------------------------- */

/*
 * The orphan count: entries in the streams outside redis.partitions' layout, whose names
 * come from bg_partition_outside_of (the rule lives there, unit-tested, and not here).
 * ARGV: redis.stream, 1 when that stream itself is outside, the first outside partition k,
 * BG_PARTITIONS_MAX. A key of another type at one of those names is no stream of ours and is
 * skipped (XLEN under pcall), never an error. Returns {total, the first stream holding
 * entries or '', its count}.
 *
 * The names are built in the script rather than sent as KEYS, so that the call stays a few
 * bytes whatever the layout; that is fine outside Redis Cluster, which botgate does not use.
 * Up to 1025 XLENs, each O(1): under 2 ms of Redis's time (1.8 ms measured for the
 * 1024 of one partition, Redis 7.0), once per connection and once per scrape.
 */
static const char orphans_script[] =
    "local total, first, first_n = 0, '', 0\n"
    "local function count(name)\n"
    "  local ok, n = pcall(redis.call, 'XLEN', name)\n"
    "  if ok and n > 0 then\n"
    "    total = total + n\n"
    "    if first_n == 0 then first, first_n = name, n end\n"
    "  end\n"
    "end\n"
    "if ARGV[2] == '1' then count(ARGV[1]) end\n"
    "for k = tonumber(ARGV[3]), tonumber(ARGV[4]) - 1 do count(ARGV[1] .. ':p' .. k) end\n"
    "return {total, first, first_n}\n";

int
bg_queue_count_orphans(bg_redis *redis, const char *stream, int partitions, bg_redis_cb cb,
                       void *data)
{
    bg_partition_outside o = bg_partition_outside_of(partitions);
    char first[16], max[16];
    snprintf(first, sizeof(first), "%u", o.first);
    snprintf(max, sizeof(max), "%d", BG_PARTITIONS_MAX);
    const char *argv[] = {"EVAL", orphans_script, "0", stream, o.base ? "1" : "0", first, max};
    return bg_redis_command(redis, cb, data, 7, argv, NULL);
}

int
bg_queue_orphans_read(const redisReply *reply, bg_queue_orphans *out)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_STRING ||
        reply->element[2]->type != REDIS_REPLY_INTEGER)
        return -1;
    *out = (bg_queue_orphans){.total = reply->element[0]->integer,
                              .first = reply->element[1]->str,
                              .first_len = reply->element[1]->len,
                              .first_count = reply->element[2]->integer};
    return 0;
}

static void
on_orphans(bg_redis *redis, redisReply *reply, int err, void *data)
{
    bg_queue *q = data;
    bg_queue_orphans o;
    if (err != 0)
        return; /* the connection went: the next one checks again */
    if (bg_queue_orphans_read(reply, &o) != 0) {
        int is_error = reply->type == REDIS_REPLY_ERROR;
        bg_log_warn("queue",
                    "%s: cannot count the entries outside the layout of redis.partitions: %.*s",
                    bg_redis_target(redis), is_error ? (int)reply->len : 16,
                    is_error ? reply->str : "unexpected reply");
        return;
    }
    if (o.total == 0)
        return;
    bg_log_error("queue",
                 "%s: stream %.*s holds %lld entries that no dispatcher reads (%lld in all "
                 "outside the layout of redis.partitions %d): acknowledged activities stuck; set "
                 "redis.partitions back to the value those entries were written with until they "
                 "are delivered (README: Scaling out)",
                 bg_redis_target(redis), (int)o.first_len, o.first, o.first_count, o.total,
                 q->partitions);
}

void
bg_queue_check_layout(bg_queue *q)
{
    bg_queue_count_orphans(q->redis, q->stream, q->partitions, on_orphans, q);
}

/* --- set-up ----------------------------------------------------------------------------- */

bg_queue *
bg_queue_new(h2o_loop_t *loop, bg_redis *redis, const bg_config *cfg)
{
    bg_queue *q = calloc(1, sizeof(*q));
    if (q == NULL || (q->stream = strdup(cfg->redis.stream)) == NULL) {
        free(q);
        return NULL;
    }
    q->redis = redis;
    q->pending_tail = &q->pending;
    bg_timer_init(&q->flush_timer, loop, on_flush, q);
    q->partitions = cfg->redis.partitions;
    if ((q->streams = calloc((size_t)q->partitions, sizeof(char *))) == NULL) {
        bg_queue_free(q);
        return NULL;
    }
    for (int k = 0; k < q->partitions; k++) {
        size_t n = strlen(q->stream) + 16;
        if ((q->streams[k] = malloc(n)) == NULL) {
            bg_queue_free(q);
            return NULL;
        }
        bg_partition_stream(q->streams[k], n, q->stream, q->partitions, (unsigned)k);
    }
    /* redis.maxlen bounds the whole backlog: each partition takes its share */
    long long share = (cfg->redis.maxlen + q->partitions - 1) / q->partitions;
    snprintf(q->maxlen, sizeof(q->maxlen), "%lld", share);
    snprintf(q->ttl, sizeof(q->ttl), "%d", cfg->redis.dedupe_ttl_s);
    snprintf(q->dir_ttl, sizeof(q->dir_ttl), "%d", cfg->relay.directory_ttl_s);
    q->min_replicas = cfg->redis.min_replicas_ack;
    snprintf(q->replicas, sizeof(q->replicas), "%d", cfg->redis.min_replicas_ack);
    /* Half the command deadline, so that WAIT answers "too few" before the deadline
     * gives up on the connection. */
    snprintf(q->wait_ms, sizeof(q->wait_ms), "%d", cfg->redis.timeout_ms / 2 + 1);
    /* EVALSHA names the script by its SHA-1, as Redis computes it. */
    unsigned char md[20];
    unsigned int mdlen = 0;
    EVP_Digest(enqueue_script, sizeof(enqueue_script) - 1, md, &mdlen, EVP_sha1(), NULL);
    for (unsigned i = 0; i < 20; i++)
        snprintf(q->sha + 2 * i, 3, "%02x", md[i]);
    return q;
}

void
bg_queue_set_batch_metric(bg_queue *q, bg_metric_series *batch)
{
    q->batch_metric = batch;
}

void
bg_queue_free(bg_queue *q)
{
    if (q == NULL)
        return;
    /* puts of the last turn that never reached Redis: refused, never acknowledged */
    struct st_queue_put *pending = q->pending;
    q->pending = NULL;
    q->pending_tail = &q->pending;
    finish_puts(pending, BG_EREDIS_DOWN);
    bg_timer_dispose(&q->flush_timer);
    for (int k = 0; q->streams != NULL && k < q->partitions; k++)
        free(q->streams[k]);
    free(q->streams);
    free(q->stream);
    free(q);
}
