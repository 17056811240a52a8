#include "botgate/queue.h"
#include "botgate/error.h"
#include "botgate/log.h"
#include "botgate/partition.h"
#include "botgate/relay_directory.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The enqueue script. KEYS[1] is the stream (the conversation's partition); KEYS[2], when
 * given, the de-duplication key of (conversation id, activity id); the last key, when ARGV
 * holds more than 3 values, the conversation's directory entry (botgate/relay_directory.h).
 * ARGV: maxlen, TTL in seconds, the entry; then, for the directory, its TTL, serviceUrl,
 * channelId, tenant id and last-seen time (Unix ms).
 *
 * It runs atomically, so "seen before?" and "append" cannot be separated by a crash or
 * by a concurrent writer from another pod: either both the entry and its marker exist,
 * or neither. The marker holds the entry id, so a repeat answers with the original id.
 * The directory is written first, whatever follows: the activity passed authentication,
 * so its serviceUrl is the verified one even when the queue then refuses it.
 *
 * The stream is a queue, not a log: the dispatcher deletes what it has delivered. So its
 * length is the backlog, and redis.maxlen bounds it by refusing (503 queue_full, the
 * Connector retries) rather than by trimming: MAXLEN would silently drop the oldest
 * acknowledged activities that the bot has not received yet.
 * Returns {1, id} for a new entry, {0, id} for a repeat, {-1, ""} when full.
 */
static const char enqueue_script[] =
    "local nkeys = #KEYS\n"
    "if #ARGV > 3 then\n"
    "  redis.call('HSET', KEYS[nkeys], 'service_url', ARGV[5], 'channel_id', ARGV[6],\n"
    "             'tenant_id', ARGV[7], 'last_seen_ms', ARGV[8])\n"
    "  redis.call('EXPIRE', KEYS[nkeys], ARGV[4])\n"
    "  nkeys = nkeys - 1\n"
    "end\n"
    "if nkeys == 2 then\n"
    "  local seen = redis.call('GET', KEYS[2])\n"
    "  if seen then return {0, seen} end\n"
    "end\n"
    "if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return {-1, ''} end\n"
    "local id = redis.call('XADD', KEYS[1], '*', 'entry', ARGV[3])\n"
    "if nkeys == 2 then redis.call('SET', KEYS[2], id, 'EX', ARGV[2]) end\n"
    "return {1, id}\n";

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
};

/* One put in flight. Owns a copy of the arguments until the last reply. */
struct st_queue_put {
    bg_queue *queue;
    const char *stream; /* the conversation's partition */
    bg_queue_cb cb;
    void *data;
    int duplicate;
    int tried_eval; /* NOSCRIPT seen once: re-sent as EVAL */
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

static void
put_finish(struct st_queue_put *put, int err)
{
    put->cb(put->data, err, put->duplicate);
    put_free(put);
}

static void
on_wait_reply(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    struct st_queue_put *put = data;
    if (err != 0)
        put_finish(put, err);
    else if (reply->type != REDIS_REPLY_INTEGER)
        put_finish(put, BG_EREDIS_ERROR);
    else
        put_finish(put, reply->integer >= put->queue->min_replicas ? 0 : BG_EREPLICA);
}

static int send_script(struct st_queue_put *put, int use_eval);

static void
on_script_reply(bg_redis *redis, redisReply *reply, int err, void *data)
{
    struct st_queue_put *put = data;
    if (err != 0) {
        put_finish(put, err);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!put->tried_eval && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            /* First use on this server (or after SCRIPT FLUSH): send the text once. */
            int rc = send_script(put, 1);
            if (rc != 0)
                put_finish(put, rc);
            return;
        }
        bg_log_warn("queue", "enqueue refused by Redis: %.*s", (int)reply->len, reply->str);
        put_finish(put, BG_EREDIS_ERROR);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        put_finish(put, BG_EREDIS_ERROR);
        return;
    }
    if (reply->element[0]->integer < 0) {
        put_finish(put, BG_EQUEUE_FULL);
        return;
    }
    put->duplicate = reply->element[0]->integer == 0;
    if (put->queue->min_replicas == 0) {
        put_finish(put, 0);
        return;
    }
    /* WAIT counts the replicas that have everything this connection wrote so far,
     * which includes a duplicate's original when this process stored it. */
    bg_queue *q = put->queue;
    const char *argv[3] = {"WAIT", q->replicas, q->wait_ms};
    int rc = bg_redis_command(redis, on_wait_reply, put, 3, argv, NULL);
    if (rc != 0)
        put_finish(put, rc);
}

static int
send_script(struct st_queue_put *put, int use_eval)
{
    bg_queue *q = put->queue;
    int has_key = put->dedupe_key != NULL, has_dir = put->dir_key != NULL;
    const char *argv[15];
    size_t lens[15];
    int n = 0;
    put->tried_eval |= use_eval;
    argv[n] = use_eval ? "EVAL" : "EVALSHA";
    lens[n++] = use_eval ? 4 : 7;
    argv[n] = use_eval ? enqueue_script : q->sha;
    lens[n++] = use_eval ? sizeof(enqueue_script) - 1 : 40;
    argv[n] = has_key && has_dir ? "3" : has_key || has_dir ? "2" : "1";
    lens[n++] = 1;
    argv[n] = put->stream;
    lens[n++] = strlen(put->stream);
    if (has_key) {
        argv[n] = put->dedupe_key;
        lens[n++] = put->dedupe_len;
    }
    if (has_dir) {
        argv[n] = put->dir_key;
        lens[n++] = put->dir_key_len;
    }
    argv[n] = q->maxlen;
    lens[n++] = strlen(q->maxlen);
    argv[n] = q->ttl;
    lens[n++] = strlen(q->ttl);
    argv[n] = put->entry;
    lens[n++] = put->entry_len;
    if (has_dir) {
        const char *more[] = {q->dir_ttl, put->dir_service_url, put->dir_channel_id,
                              put->dir_tenant_id, put->dir_seen};
        for (int i = 0; i < 5; i++) {
            argv[n] = more[i];
            lens[n++] = strlen(more[i]);
        }
    }
    return bg_redis_command(q->redis, on_script_reply, put, n, argv, lens);
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
    put->queue = q;
    const char *conv = item->conversation_id;
    put->stream = q->streams[bg_partition_of(conv, conv != NULL ? strlen(conv) : 0, q->partitions)];
    put->cb = cb;
    put->data = data;
    put->entry = malloc(item->entry_len);
    if (put->entry == NULL)
        goto nomem;
    memcpy(put->entry, item->entry, item->entry_len);
    put->entry_len = item->entry_len;
    if (item->conversation_id != NULL && item->activity_id != NULL) {
        put->dedupe_key =
            make_dedupe_key(q, item->conversation_id, item->activity_id, &put->dedupe_len);
        if (put->dedupe_key == NULL)
            goto nomem;
    }
    const bg_directory_entry *d = item->directory;
    if (d != NULL) {
        bool ok = (put->dir_key =
                       bg_directory_key(q->stream, d->conversation_id, &put->dir_key_len)) != NULL;
        ok = ok && (put->dir_service_url = strdup(d->service_url)) != NULL;
        ok = ok &&
             (put->dir_channel_id = strdup(d->channel_id != NULL ? d->channel_id : "")) != NULL;
        ok = ok && (put->dir_tenant_id = strdup(d->tenant_id != NULL ? d->tenant_id : "")) != NULL;
        if (!ok) {
            put_free(put);
            return BG_ENOMEM;
        }
        snprintf(put->dir_seen, sizeof(put->dir_seen), "%lld", (long long)d->last_seen_ms);
    }
    int rc = send_script(put, 0);
    if (rc != 0)
        put_free(put);
    return rc;
nomem:
    free(put->entry);
    free(put);
    return BG_ENOMEM;
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

/* --- set-up ----------------------------------------------------------------------------- */

bg_queue *
bg_queue_new(bg_redis *redis, const bg_config *cfg)
{
    bg_queue *q = calloc(1, sizeof(*q));
    if (q == NULL || (q->stream = strdup(cfg->redis.stream)) == NULL) {
        free(q);
        return NULL;
    }
    q->redis = redis;
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
bg_queue_free(bg_queue *q)
{
    if (q == NULL)
        return;
    for (int k = 0; q->streams != NULL && k < q->partitions; k++)
        free(q->streams[k]);
    free(q->streams);
    free(q->stream);
    free(q);
}
