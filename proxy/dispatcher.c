/*
 * The dispatcher (see botgate/dispatcher.h).
 *
 * In memory it holds what it read and has not finished, grouped by conversation:
 *
 *   convs (by conversation id)          items (by stream id: "already held?")
 *   ┌──────────────┐
 *   │ conv "a:1"   │── head ─▶ item 1700-0 ─▶ item 1702-0 ─▶ ...   (stream order)
 *   │  in_flight 1 │            ▲ being delivered
 *   ├──────────────┤
 *   │ conv "a:2"   │── head ─▶ item 1701-0                         (waiting: back-off,
 *   │  due 12:03:07│                                                 in the retry heap)
 *   └──────────────┘
 *   ready: conversations whose head may be delivered now (FIFO)
 *
 * Entries without a conversation id are each their own conversation. At most
 * bot.concurrency heads are in flight; reading stops while more than read_ahead items
 * are held, so memory stays bounded whatever the backlog in Redis.
 */
#include "botgate/dispatcher.h"
#include "botgate/delivery.h"
#include "botgate/entry.h"
#include "botgate/error.h"
#include "botgate/failure.h"
#include "botgate/failures.h"
#include "botgate/log.h"
#include "botgate/server.h"
#include "botgate/timer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define READ_BATCH 100
#define CLAIM_BATCH 100
#define TOUCH_BATCH 200

/* ---- a small string-keyed hash map --------------------------------------------------- */

struct st_map_node {
    struct st_map_node *next;
    char *key;
    size_t len;
    void *value;
};

struct st_map {
    struct st_map_node **buckets;
    size_t n_buckets, size;
};

static uint64_t
hash_bytes(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

static struct st_map_node **
map_slot(struct st_map *m, const char *key, size_t len)
{
    if (m->n_buckets == 0)
        return NULL;
    struct st_map_node **slot = &m->buckets[hash_bytes(key, len) & (m->n_buckets - 1)];
    while (*slot != NULL && !((*slot)->len == len && memcmp((*slot)->key, key, len) == 0))
        slot = &(*slot)->next;
    return slot;
}

static void *
map_get(struct st_map *m, const char *key, size_t len)
{
    struct st_map_node **slot = map_slot(m, key, len);
    return slot != NULL && *slot != NULL ? (*slot)->value : NULL;
}

static int
map_grow(struct st_map *m)
{
    size_t n = m->n_buckets ? m->n_buckets * 2 : 64;
    struct st_map_node **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return -1;
    for (size_t i = 0; i < m->n_buckets; i++) {
        for (struct st_map_node *node = m->buckets[i], *next; node != NULL; node = next) {
            next = node->next;
            size_t j = hash_bytes(node->key, node->len) & (n - 1);
            node->next = b[j];
            b[j] = node;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = n;
    return 0;
}

/* Inserts key (copied: *stored, when not NULL, receives the copy, which lives as long as
 * the entry) → value; the key must not be present. 0 or -1. */
static int
map_put(struct st_map *m, const char *key, size_t len, void *value, char **stored)
{
    if (m->size >= m->n_buckets && map_grow(m) != 0)
        return -1;
    struct st_map_node *node = malloc(sizeof(*node));
    if (node == NULL || (node->key = malloc(len + 1)) == NULL) {
        free(node);
        return -1;
    }
    memcpy(node->key, key, len);
    node->key[len] = '\0';
    node->len = len;
    node->value = value;
    if (stored != NULL)
        *stored = node->key;
    struct st_map_node **slot = &m->buckets[hash_bytes(key, len) & (m->n_buckets - 1)];
    node->next = *slot;
    *slot = node;
    m->size++;
    return 0;
}

static void
map_del(struct st_map *m, const char *key, size_t len)
{
    struct st_map_node **slot = map_slot(m, key, len);
    if (slot == NULL || *slot == NULL)
        return;
    struct st_map_node *node = *slot;
    *slot = node->next;
    free(node->key);
    free(node);
    m->size--;
}

static void
map_free(struct st_map *m)
{
    for (size_t i = 0; i < m->n_buckets; i++) {
        for (struct st_map_node *node = m->buckets[i], *next; node != NULL; node = next) {
            next = node->next;
            free(node->key);
            free(node);
        }
    }
    free(m->buckets);
    memset(m, 0, sizeof(*m));
}

/* ---- state ----------------------------------------------------------------------------- */

struct st_conv;
typedef struct bg_dispatcher bg_dispatcher;

struct st_item {
    struct st_item *next;
    struct st_conv *conv;
    char id[48];
    char *raw; /* the msgpack entry, owned */
    size_t raw_len;
    bg_entry entry; /* slices into raw */
    int decoded;
    int attempt; /* attempts made so far */
    long last_status;
    char last_error[128];
};

struct st_conv {
    bg_dispatcher *d;
    const char *key; /* the conversation key (the map's copy) */
    size_t key_len;
    struct st_item *head, *tail;
    bg_http_call *call; /* the head's delivery in flight, or NULL */
    int64_t due_ms;     /* loop time before which the head must not be tried */
    size_t heap_pos;    /* in the retry heap, or SIZE_MAX */
    int in_ready;
    h2o_linklist_t ready_link;
};

enum { PHASE_OWN_PENDING, PHASE_NEW };

struct bg_dispatcher {
    h2o_loop_t *loop;
    const bg_config *cfg;
    bg_redis *reader; /* XREADGROUP (blocks) */
    bg_redis *writer; /* outcomes */
    bg_http *http;
    char consumer[128];
    char stream_retry[256]; /* <stream>:retry */
    char stream_dlq[256];   /* <stream>:dlq */
    char block_ms[16];
    bg_backoff backoff;
    size_t concurrency, read_ahead;
    struct st_map convs, items;
    size_t held, in_flight;
    size_t incoming; /* read, waiting for their retry state before they are held */
    size_t writing;  /* outcome writes sent to Redis and not answered yet */
    h2o_linklist_t ready;
    struct st_conv **heap;
    size_t heap_n, heap_cap;
    bg_timer retry_timer, claim_timer, touch_timer, read_retry_timer;
    int phase;
    char own_cursor[48];   /* PHASE_OWN_PENDING: last id read */
    char claim_cursor[48]; /* XAUTOCLAIM's cursor */
    int reading, claiming, stopped;
    bg_server_metrics *metrics; /* NULL: nothing is counted */
    bg_failures *failures;      /* NULL: nothing is recorded */
};

static void pump(bg_dispatcher *d);
static void maybe_read(bg_dispatcher *d);

static int64_t
wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int64_t
loop_ms(bg_dispatcher *d)
{
    return (int64_t)h2o_now(d->loop);
}

/* ---- metrics (botgate/server.h): attempts, outcomes, times, Redis failures ------------- */

void
bg_dispatcher_set_metrics(bg_dispatcher *d, bg_server_metrics *metrics)
{
    d->metrics = metrics;
    bg_metric_set(metrics->deliveries_in_flight, (double)d->in_flight);
}

void
bg_dispatcher_set_failures(bg_dispatcher *d, bg_failures *failures)
{
    d->failures = failures;
}

/* A failure record (failures.h) for an entry: target bot.url, the entry's request id. */
static void
record_failure(bg_dispatcher *d, const struct st_item *it, const char *cls, const char *detail)
{
    if (d->failures == NULL || cls == NULL)
        return;
    char request_id[128] = "";
    if (it->decoded && it->entry.request_id.p != NULL)
        snprintf(request_id, sizeof(request_id), "%.*s",
                 (int)(it->entry.request_id.len < sizeof(request_id) - 1 ? it->entry.request_id.len
                                                                         : sizeof(request_id) - 1),
                 it->entry.request_id.p);
    bg_failures_record(d->failures, cls, d->cfg->bot.url, request_id, detail);
}

static void
count_redis_error(bg_dispatcher *d, int err)
{
    if (d->metrics != NULL)
        bg_admin_count_redis_error(d->metrics, err);
}

static void
count_in_flight(bg_dispatcher *d)
{
    if (d->metrics != NULL)
        bg_metric_set(d->metrics->deliveries_in_flight, (double)d->in_flight);
}

/* One attempt's outcome; the bot's time for every attempt, the whole way from receipt
 * to the bot's 2xx for a delivered one (received_at is the ingress's wall clock). */
static void
count_attempt(bg_dispatcher *d, const struct st_item *it, const bg_http_result *res,
              bg_delivery_action action)
{
    bg_server_metrics *m = d->metrics;
    if (m == NULL)
        return;
    bg_metric_observe(m->bot, (double)res->total_us / 1e6);
    switch (action) {
    case BG_DELIVERY_ACK: {
        bg_metric_inc(m->attempts_ack);
        struct timeval now;
        gettimeofday(&now, NULL);
        int64_t us = (int64_t)now.tv_sec * 1000000 + now.tv_usec - it->entry.received_at_us;
        bg_metric_observe(m->delivery, us > 0 ? (double)us / 1e6 : 0);
        break;
    }
    case BG_DELIVERY_RETRY:
        bg_metric_inc(m->attempts_retry);
        break;
    case BG_DELIVERY_DEAD:
        bg_metric_inc(m->attempts_dead);
        break;
    }
}

/* ---- the retry heap: conversations waiting out a back-off, earliest first ------------ */

static void
heap_swap(bg_dispatcher *d, size_t i, size_t j)
{
    struct st_conv *t = d->heap[i];
    d->heap[i] = d->heap[j];
    d->heap[j] = t;
    d->heap[i]->heap_pos = i;
    d->heap[j]->heap_pos = j;
}

static void
heap_up(bg_dispatcher *d, size_t i)
{
    while (i > 0 && d->heap[(i - 1) / 2]->due_ms > d->heap[i]->due_ms) {
        heap_swap(d, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void
heap_down(bg_dispatcher *d, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < d->heap_n && d->heap[l]->due_ms < d->heap[m]->due_ms)
            m = l;
        if (r < d->heap_n && d->heap[r]->due_ms < d->heap[m]->due_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(d, i, m);
        i = m;
    }
}

static void
heap_remove(bg_dispatcher *d, struct st_conv *c)
{
    size_t i = c->heap_pos;
    if (i == SIZE_MAX)
        return;
    c->heap_pos = SIZE_MAX;
    if (i != --d->heap_n) {
        d->heap[i] = d->heap[d->heap_n];
        d->heap[i]->heap_pos = i;
        heap_down(d, i);
        heap_up(d, i);
    }
}

static void
arm_retry_timer(bg_dispatcher *d)
{
    if (d->heap_n == 0) {
        bg_timer_stop(&d->retry_timer);
        return;
    }
    int64_t wait = d->heap[0]->due_ms - loop_ms(d);
    bg_timer_start(&d->retry_timer, wait > 0 ? (uint64_t)wait : 0);
}

/* Makes c's head eligible now, or at c->due_ms. */
static void
schedule(bg_dispatcher *d, struct st_conv *c)
{
    if (c->head == NULL || c->call != NULL || c->in_ready || c->heap_pos != SIZE_MAX)
        return;
    if (c->due_ms > loop_ms(d)) {
        if (d->heap_n == d->heap_cap) {
            size_t cap = d->heap_cap ? d->heap_cap * 2 : 64;
            struct st_conv **h = realloc(d->heap, cap * sizeof(*h));
            if (h == NULL)
                return; /* retried by the next touch of this conversation */
            d->heap = h;
            d->heap_cap = cap;
        }
        c->heap_pos = d->heap_n;
        d->heap[d->heap_n++] = c;
        heap_up(d, c->heap_pos);
        arm_retry_timer(d);
    } else {
        c->in_ready = 1;
        h2o_linklist_insert(&d->ready, &c->ready_link);
    }
}

static void
on_retry_timer(bg_timer *t)
{
    bg_dispatcher *d = t->data;
    int64_t now = loop_ms(d);
    while (d->heap_n > 0 && d->heap[0]->due_ms <= now) {
        struct st_conv *c = d->heap[0];
        heap_remove(d, c);
        schedule(d, c);
    }
    arm_retry_timer(d);
    pump(d);
}

/* ---- holding items ---------------------------------------------------------------------- */

/* Stream ids compare as two numbers, "ms-seq". */
static int
id_cmp(const char *a, const char *b)
{
    uint64_t ams = strtoull(a, NULL, 10), bms = strtoull(b, NULL, 10);
    if (ams != bms)
        return ams < bms ? -1 : 1;
    const char *ad = strchr(a, '-'), *bd = strchr(b, '-');
    uint64_t aseq = ad ? strtoull(ad + 1, NULL, 10) : 0, bseq = bd ? strtoull(bd + 1, NULL, 10) : 0;
    return aseq < bseq ? -1 : aseq > bseq;
}

static void
item_free(struct st_item *it)
{
    free(it->raw);
    free(it);
}

static struct st_conv *
conv_get(bg_dispatcher *d, const char *key, size_t len)
{
    struct st_conv *c = map_get(&d->convs, key, len);
    if (c != NULL)
        return c;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return NULL;
    c->d = d;
    c->heap_pos = SIZE_MAX;
    if (map_put(&d->convs, key, len, c, (char **)&c->key) != 0) {
        free(c);
        return NULL;
    }
    c->key_len = len;
    return c;
}

static void
conv_drop_if_idle(bg_dispatcher *d, struct st_conv *c)
{
    if (c->head != NULL || c->call != NULL)
        return;
    heap_remove(d, c);
    if (c->in_ready) {
        h2o_linklist_unlink(&c->ready_link);
        c->in_ready = 0;
    }
    map_del(&d->convs, c->key, c->key_len);
    free(c);
}

/*
 * Takes an entry read from the stream (raw msgpack copied), with its attempt count and
 * next time from the retry hash (attempt 0 when none). Items already held are ignored:
 * XAUTOCLAIM and a re-read of our own pending entries can return them again.
 */
static void
hold(bg_dispatcher *d, const char *id, const char *raw, size_t raw_len, int attempt,
     int64_t next_wall_ms, long last_status)
{
    size_t idlen = strlen(id);
    if (idlen >= sizeof(((struct st_item *)0)->id) || map_get(&d->items, id, idlen) != NULL)
        return;
    struct st_item *it = calloc(1, sizeof(*it));
    if (it == NULL || (it->raw = malloc(raw_len ? raw_len : 1)) == NULL) {
        free(it);
        return;
    }
    memcpy(it->id, id, idlen + 1);
    memcpy(it->raw, raw, raw_len);
    it->raw_len = raw_len;
    it->attempt = attempt;
    it->last_status = last_status;
    it->decoded = bg_entry_decode(&it->entry, it->raw, it->raw_len) == 0;
    /* The conversation key: its id, or this entry alone when it has none (or is
     * unreadable: it is dead-lettered on its own). */
    char keybuf[64];
    const char *key;
    size_t keylen;
    if (it->decoded && it->entry.conversation_id.p != NULL) {
        key = it->entry.conversation_id.p;
        keylen = it->entry.conversation_id.len;
    } else {
        keylen = (size_t)snprintf(keybuf, sizeof(keybuf), "\x01%s", id);
        key = keybuf;
    }
    struct st_conv *c = conv_get(d, key, keylen);
    if (c == NULL || map_put(&d->items, id, idlen, it, NULL) != 0) {
        item_free(it);
        if (c != NULL)
            conv_drop_if_idle(d, c);
        return;
    }
    it->conv = c;
    /* stream order; claimed entries may be older than what is held */
    struct st_item **p = &c->head;
    if (c->call != NULL && *p != NULL)
        p = &(*p)->next; /* never in front of the head being delivered */
    while (*p != NULL && id_cmp((*p)->id, id) < 0)
        p = &(*p)->next;
    it->next = *p;
    *p = it;
    if (it->next == NULL)
        c->tail = it;
    d->held++;
    if (next_wall_ms > 0 && c->head == it) {
        int64_t wait = next_wall_ms - wall_ms();
        c->due_ms = loop_ms(d) + (wait > 0 ? wait : 0);
    }
    schedule(d, c);
}

/* Forgets the head of c (delivered or dead-lettered). */
static void
release_head(bg_dispatcher *d, struct st_conv *c)
{
    struct st_item *it = c->head;
    c->head = it->next;
    if (c->head == NULL)
        c->tail = NULL;
    map_del(&d->items, it->id, strlen(it->id));
    item_free(it);
    d->held--;
    c->due_ms = 0;
    schedule(d, c);
    conv_drop_if_idle(d, c);
}

/* ---- outcomes: written through the shared connection ----------------------------------- */

/* XACK + XDEL + forget the retry state, in one step. */
static const char ack_script[] = "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
                                 "redis.call('XDEL', KEYS[1], ARGV[2])\n"
                                 "redis.call('HDEL', KEYS[2], ARGV[2])\n"
                                 "return 1\n";

/* The dead letter and the acknowledgement together: never one without the other. */
static const char dead_script[] =
    "redis.call('XADD', KEYS[3], '*', 'entry', ARGV[3], 'reason', ARGV[4], 'attempts', "
    "ARGV[5], 'last_status', ARGV[6], 'error', ARGV[7], 'original_id', ARGV[2], "
    "'failed_at_ms', ARGV[8])\n"
    "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "redis.call('HDEL', KEYS[2], ARGV[2])\n"
    "return 1\n";

/* An outcome write in flight: what it is (for the log) and whose. */
struct st_write {
    bg_dispatcher *d;
    const char *what;
};

static void
on_outcome_written(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    struct st_write *w = data;
    const char *what = w->what;
    w->d->writing--;
    if (err != 0 || reply->type == REDIS_REPLY_ERROR)
        count_redis_error(w->d, err != 0 ? err : BG_EREDIS_ERROR);
    free(w);
    if (err != 0)
        bg_log_warn("dispatch",
                    "%s not recorded (%s): the entry stays pending and will be "
                    "delivered again",
                    what, bg_error_code(err));
    else if (reply->type == REDIS_REPLY_ERROR)
        bg_log_warn("dispatch", "%s refused by Redis: %.*s", what, (int)reply->len, reply->str);
}

static void
write_outcome(bg_dispatcher *d, const char *what, int argc, const char **argv, const size_t *lens)
{
    struct st_write *w = malloc(sizeof(*w));
    if (w == NULL) {
        bg_log_warn("dispatch", "%s not recorded: out of memory; the entry stays pending", what);
        return;
    }
    *w = (struct st_write){d, what};
    d->writing++;
    if (bg_redis_command(d->writer, on_outcome_written, w, argc, argv, lens) != 0) {
        d->writing--;
        free(w);
        count_redis_error(d, BG_EREDIS_DOWN);
        bg_log_warn("dispatch", "%s not recorded: Redis unavailable; the entry stays pending",
                    what);
    }
}

static void
record_ack(bg_dispatcher *d, struct st_item *it)
{
    const char *argv[] = {"EVAL",          ack_script,        "2",   d->cfg->redis.stream,
                          d->stream_retry, BG_CONSUMER_GROUP, it->id};
    write_outcome(d, "acknowledgement", 7, argv, NULL);
}

static void
record_dead(bg_dispatcher *d, struct st_item *it, const char *reason)
{
    char attempts[16], status[16], at[24];
    snprintf(attempts, sizeof(attempts), "%d", it->attempt);
    snprintf(status, sizeof(status), "%ld", it->last_status);
    snprintf(at, sizeof(at), "%" PRId64, wall_ms());
    const char *argv[] = {"EVAL",
                          dead_script,
                          "3",
                          d->cfg->redis.stream,
                          d->stream_retry,
                          d->stream_dlq,
                          BG_CONSUMER_GROUP,
                          it->id,
                          it->raw,
                          reason,
                          attempts,
                          status,
                          it->last_error,
                          at};
    size_t lens[14];
    for (int i = 0; i < 14; i++)
        lens[i] = strlen(argv[i]);
    lens[8] = it->raw_len;
    write_outcome(d, "dead letter", 14, argv, lens);
    if (d->metrics != NULL)
        bg_metric_inc(bg_metrics_series(d->metrics->dead_letters, reason, NULL));
    bg_log_warn("dispatch", "entry %s dead-lettered: %s after %d attempt(s), last status %ld%s%s",
                it->id, reason, it->attempt, it->last_status, it->last_error[0] ? ": " : "",
                it->last_error);
}

static void
record_retry(bg_dispatcher *d, struct st_item *it, int64_t next_wall)
{
    char value[64];
    snprintf(value, sizeof(value), "%d %" PRId64 " %ld", it->attempt, next_wall, it->last_status);
    const char *argv[] = {"HSET", d->stream_retry, it->id, value};
    write_outcome(d, "retry state", 4, argv, NULL);
}

/* ---- delivery --------------------------------------------------------------------------- */

/* Records the failure text of an attempt without a usable answer. */
static void
note_failure(struct st_item *it, const bg_http_result *res)
{
    if (res->curl_code != CURLE_OK)
        snprintf(it->last_error, sizeof(it->last_error), "%s", res->error);
    else
        it->last_error[0] = '\0';
}

static void
on_delivered(const bg_http_result *res, void *data)
{
    struct st_conv *c = data;
    bg_dispatcher *d = c->d;
    struct st_item *it = c->head;
    c->call = NULL;
    d->in_flight--;
    count_in_flight(d);
    it->last_status = res->curl_code == CURLE_OK ? res->status : 0;
    note_failure(it, res);
    bg_attempt_result r = {.transport_error = res->curl_code != CURLE_OK,
                           .status = res->status,
                           .retry_after = res->retry_after,
                           .retry_after_len = res->retry_after ? strlen(res->retry_after) : 0};
    bg_delivery_decision dec = bg_delivery_decide(
        &d->backoff, it->attempt, &r, (double)rand() / ((double)RAND_MAX + 1), (int64_t)time(NULL));
    count_attempt(d, it, res, dec.action);
    if (dec.action != BG_DELIVERY_ACK) {
        char detail[160];
        if (res->curl_code != CURLE_OK)
            snprintf(detail, sizeof(detail), "%s", it->last_error);
        else
            snprintf(detail, sizeof(detail), "HTTP %ld", res->status);
        record_failure(d, it, bg_failure_class(res->curl_code, res->status, res->connect_us),
                       detail);
    }
    switch (dec.action) {
    case BG_DELIVERY_ACK:
        bg_log_debug("dispatch", "entry %s delivered on attempt %d (HTTP %ld, %" PRId64 " µs)",
                     it->id, it->attempt, res->status, res->total_us);
        record_ack(d, it);
        release_head(d, c);
        break;
    case BG_DELIVERY_DEAD:
        record_dead(d, it, dec.reason);
        release_head(d, c);
        break;
    case BG_DELIVERY_RETRY: {
        int64_t next_wall = wall_ms() + dec.delay_ms;
        char what[160];
        if (r.transport_error)
            snprintf(what, sizeof(what), "%s", it->last_error);
        else
            snprintf(what, sizeof(what), "HTTP %ld", res->status);
        bg_log_info("dispatch", "entry %s: attempt %d failed (%s), retry in %" PRId64 " ms", it->id,
                    it->attempt, what, dec.delay_ms);
        record_retry(d, it, next_wall);
        c->due_ms = loop_ms(d) + dec.delay_ms;
        schedule(d, c);
        break;
    }
    }
    pump(d);
}

/* "name: value" lines for curl: the forwarded headers and botgate's own two. */
static int
build_headers(const struct st_item *it, char **block, const char **lines, size_t max_lines)
{
    size_t need = 128;
    for (size_t i = 0; i < it->entry.n_headers; i++)
        need += it->entry.headers[i].name.len + it->entry.headers[i].value.len + 4;
    char *p = malloc(need);
    if (p == NULL)
        return -1;
    *block = p;
    size_t n = 0;
    for (size_t i = 0; i < it->entry.n_headers && n + 3 < max_lines; i++) {
        const bg_entry_header *h = &it->entry.headers[i];
        lines[n++] = p;
        p += sprintf(p, "%.*s: %.*s", (int)h->name.len, h->name.p, (int)h->value.len, h->value.p) +
             1;
    }
    lines[n++] = p;
    p += sprintf(p, "X-Botgate-Attempt: %d", it->attempt) + 1;
    lines[n++] = p;
    p += sprintf(p, "X-Botgate-Received-At: %" PRId64, it->entry.received_at_us) + 1;
    lines[n] = NULL;
    return 0;
}

/* Starts the next attempt for c's head, or settles it without one. */
static void
deliver(bg_dispatcher *d, struct st_conv *c)
{
    struct st_item *it = c->head;
    if (!it->decoded) {
        snprintf(it->last_error, sizeof(it->last_error), "the stored entry cannot be decoded");
        record_dead(d, it, BG_DEAD_BAD_ENTRY);
        release_head(d, c);
        return;
    }
    if (bg_delivery_token_expired(it->entry.token_exp, (int64_t)time(NULL))) {
        snprintf(it->last_error, sizeof(it->last_error), "the forwarded token expired at %" PRId64,
                 it->entry.token_exp);
        record_failure(d, it, BG_FAILURE_TOKEN_EXPIRED, it->last_error);
        record_dead(d, it, BG_DEAD_TOKEN_EXPIRED);
        release_head(d, c);
        return;
    }
    it->attempt++;
    char *block = NULL;
    const char *lines[BG_ENTRY_MAX_HEADERS + 3];
    if (build_headers(it, &block, lines, sizeof(lines) / sizeof(lines[0])) != 0) {
        it->attempt--;
        c->due_ms = loop_ms(d) + 1000;
        schedule(d, c);
        return;
    }
    bg_http_request req = {.method = "POST",
                           .url = d->cfg->bot.url,
                           .headers = lines,
                           .body = it->entry.body.p != NULL ? it->entry.body.p : "",
                           .body_len = it->entry.body.len,
                           .timeout_ms = (long)d->cfg->bot.timeout_s * 1000,
                           .max_body = 1 << 20,
                           .no_replay = 1};
    c->call = bg_http_start(d->http, &req, on_delivered, c);
    free(block); /* curl copied the header lines */
    if (c->call == NULL) {
        it->attempt--;
        c->due_ms = loop_ms(d) + 1000;
        schedule(d, c);
        return;
    }
    d->in_flight++;
    count_in_flight(d);
}

/* Starts deliveries while there is room, then reads more if memory allows. */
static void
pump(bg_dispatcher *d)
{
    while (!d->stopped && d->in_flight < d->concurrency && !h2o_linklist_is_empty(&d->ready)) {
        struct st_conv *c = H2O_STRUCT_FROM_MEMBER(struct st_conv, ready_link, d->ready.next);
        h2o_linklist_unlink(&c->ready_link);
        c->in_ready = 0;
        deliver(d, c);
    }
    maybe_read(d);
}

/* ---- reading ------------------------------------------------------------------------------ */

/* A read or claimed batch waits here for its retry state (HMGET) before it is held. */
struct st_batch {
    bg_dispatcher *d;
    size_t n;
    char **ids;
    char **raws;
    size_t *raw_lens;
};

static void
batch_free(struct st_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->ids[i]);
        free(b->raws[i]);
    }
    free(b->ids);
    free(b->raws);
    free(b->raw_lens);
    free(b);
}

static void
on_retry_state(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    struct st_batch *b = data;
    bg_dispatcher *d = b->d;
    d->incoming -= b->n;
    for (size_t i = 0; i < b->n; i++) {
        int attempt = 0;
        long long next = 0;
        long status = 0;
        if (err == 0 && reply->type == REDIS_REPLY_ARRAY && i < reply->elements &&
            reply->element[i]->type == REDIS_REPLY_STRING)
            sscanf(reply->element[i]->str, "%d %lld %ld", &attempt, &next, &status);
        hold(d, b->ids[i], b->raws[i], b->raw_lens[i], attempt, (int64_t)next, status);
    }
    batch_free(b);
    pump(d);
}

/* The value of field "entry" in a stream entry's field list, or NULL. */
static const redisReply *
entry_field(const redisReply *fields)
{
    if (fields == NULL || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, "entry") == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1];
    return NULL;
}

/*
 * Takes a list of stream entries ([id, [field, value, ...]] each; [id, nil] for an entry
 * deleted while pending). Deleted ones are acknowledged away; the others are held, after
 * their retry state was looked up. Returns the last id seen (into last, may be NULL).
 */
static void
take_entries(bg_dispatcher *d, const redisReply *list, char *last, size_t lastlen)
{
    if (list == NULL || list->type != REDIS_REPLY_ARRAY || list->elements == 0)
        return;
    struct st_batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return;
    b->d = d;
    b->ids = calloc(list->elements, sizeof(char *));
    b->raws = calloc(list->elements, sizeof(char *));
    b->raw_lens = calloc(list->elements, sizeof(size_t));
    const char **argv = calloc(list->elements + 2, sizeof(char *));
    if (b->ids == NULL || b->raws == NULL || b->raw_lens == NULL || argv == NULL) {
        free(argv);
        batch_free(b);
        return;
    }
    for (size_t i = 0; i < list->elements; i++) {
        const redisReply *e = list->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        const char *id = e->element[0]->str;
        if (last != NULL)
            snprintf(last, lastlen, "%s", id);
        const redisReply *v = entry_field(e->element[1]);
        if (v == NULL) {
            /* deleted (or not ours): nothing to deliver, nothing to keep pending */
            const char *ack[] = {"XACK", d->cfg->redis.stream, BG_CONSUMER_GROUP, id};
            write_outcome(d, "acknowledgement of a deleted entry", 4, ack, NULL);
            continue;
        }
        if ((b->ids[b->n] = strdup(id)) == NULL || (b->raws[b->n] = malloc(v->len + 1)) == NULL) {
            free(b->ids[b->n]);
            b->ids[b->n] = NULL;
            continue;
        }
        memcpy(b->raws[b->n], v->str, v->len);
        b->raw_lens[b->n] = v->len;
        b->n++;
    }
    if (b->n == 0) {
        free(argv);
        batch_free(b);
        return;
    }
    d->incoming += b->n; /* counted against read_ahead until held */
    argv[0] = "HMGET";
    argv[1] = d->stream_retry;
    for (size_t i = 0; i < b->n; i++)
        argv[2 + i] = b->ids[i];
    if (bg_redis_command(d->writer, on_retry_state, b, (int)b->n + 2, argv, NULL) != 0)
        on_retry_state(d->writer, NULL, BG_EREDIS_DOWN, b);
    free(argv);
}

static void
on_read(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    bg_dispatcher *d = data;
    d->reading = 0;
    if (err != 0) {
        count_redis_error(d, err);
        bg_timer_start(&d->read_retry_timer, 500);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        count_redis_error(d, BG_EREDIS_ERROR);
        bg_log_warn("dispatch", "XREADGROUP refused: %.*s", (int)reply->len, reply->str);
        if (strncmp(reply->str, "NOGROUP", 7) == 0)
            d->phase = PHASE_OWN_PENDING, strcpy(d->own_cursor, "0");
        bg_timer_start(&d->read_retry_timer, 1000);
        return;
    }
    const redisReply *entries = NULL;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2)
        entries = reply->element[0]->element[1];
    if (d->phase == PHASE_OWN_PENDING) {
        if (entries == NULL || entries->elements == 0) {
            d->phase = PHASE_NEW; /* our earlier life's entries are all back */
        } else {
            take_entries(d, entries, d->own_cursor, sizeof(d->own_cursor));
        }
    } else {
        take_entries(d, entries, NULL, 0);
    }
    maybe_read(d);
}

static void
maybe_read(bg_dispatcher *d)
{
    if (d->stopped || d->reading || !bg_redis_is_ready(d->reader) ||
        d->held + d->incoming >= d->read_ahead || bg_timer_is_active(&d->read_retry_timer))
        return;
    size_t room = d->read_ahead - d->held - d->incoming;
    char count[16];
    snprintf(count, sizeof(count), "%zu", room < READ_BATCH ? room : READ_BATCH);
    int rc;
    if (d->phase == PHASE_OWN_PENDING) {
        const char *argv[] = {"XREADGROUP", "GROUP",   BG_CONSUMER_GROUP,    d->consumer,  "COUNT",
                              count,        "STREAMS", d->cfg->redis.stream, d->own_cursor};
        rc = bg_redis_command(d->reader, on_read, d, 9, argv, NULL);
    } else {
        const char *argv[] = {
            "XREADGROUP", "GROUP",     BG_CONSUMER_GROUP, d->consumer,          "COUNT", count,
            "BLOCK",      d->block_ms, "STREAMS",         d->cfg->redis.stream, ">"};
        rc = bg_redis_command(d->reader, on_read, d, 11, argv, NULL);
    }
    if (rc == 0)
        d->reading = 1;
}

static void
on_read_retry(bg_timer *t)
{
    maybe_read(t->data);
}

static void
on_group_created(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    bg_dispatcher *d = data;
    if (err == 0 && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0)
        bg_log_warn("dispatch", "XGROUP CREATE refused: %.*s", (int)reply->len, reply->str);
    maybe_read(d);
}

/* Each (re)connection of the reader: make sure the group exists, then take back what
 * this consumer left pending before reading new entries. */
static void
on_reader_ready(bg_redis *redis, void *data)
{
    bg_dispatcher *d = data;
    d->phase = PHASE_OWN_PENDING;
    strcpy(d->own_cursor, "0");
    d->reading = 0;
    const char *argv[] = {"XGROUP",          "CREATE", d->cfg->redis.stream,
                          BG_CONSUMER_GROUP, "0",      "MKSTREAM"};
    bg_redis_command(redis, on_group_created, d, 6, argv, NULL);
}

/* ---- claiming and touching ------------------------------------------------------------- */

static void
on_claimed(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    bg_dispatcher *d = data;
    d->claiming = 0;
    if (err != 0 || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    snprintf(d->claim_cursor, sizeof(d->claim_cursor), "%s", reply->element[0]->str);
    if (reply->element[1]->type == REDIS_REPLY_ARRAY && reply->element[1]->elements > 0) {
        bg_log_info("dispatch", "claimed %zu entries left pending by another consumer",
                    reply->element[1]->elements);
        take_entries(d, reply->element[1], NULL, 0);
    }
}

static void
on_claim_timer(bg_timer *t)
{
    bg_dispatcher *d = t->data;
    uint64_t every = (uint64_t)d->cfg->bot.claim_idle_s * 500;
    bg_timer_start(&d->claim_timer, every > 0 ? every : 500);
    if (d->stopped || d->claiming || d->held >= d->read_ahead)
        return;
    char idle[24], count[16];
    snprintf(idle, sizeof(idle), "%lld", (long long)d->cfg->bot.claim_idle_s * 1000);
    snprintf(count, sizeof(count), "%d", CLAIM_BATCH);
    const char *argv[] = {"XAUTOCLAIM", d->cfg->redis.stream, BG_CONSUMER_GROUP, d->consumer,
                          idle,         d->claim_cursor,      "COUNT",           count};
    if (bg_redis_command(d->writer, on_claimed, d, 8, argv, NULL) == 0)
        d->claiming = 1;
}

/*
 * Resets the idle time of every entry held here (XCLAIM to ourselves, JUSTID: the
 * delivery count is left alone), so that no other consumer's XAUTOCLAIM takes an entry
 * that is waiting in our memory or being delivered right now.
 */
static void
on_touch_timer(bg_timer *t)
{
    bg_dispatcher *d = t->data;
    uint64_t every = (uint64_t)d->cfg->bot.claim_idle_s * 1000 / 3;
    bg_timer_start(&d->touch_timer, every > 0 ? every : 300);
    if (d->items.size == 0)
        return;
    const char *argv[6 + TOUCH_BATCH + 1];
    int n = 0;
    for (size_t b = 0; b < d->items.n_buckets; b++) {
        for (struct st_map_node *node = d->items.buckets[b]; node != NULL; node = node->next) {
            if (n == 0) {
                argv[0] = "XCLAIM";
                argv[1] = d->cfg->redis.stream;
                argv[2] = BG_CONSUMER_GROUP;
                argv[3] = d->consumer;
                argv[4] = "0";
                n = 5;
            }
            argv[n++] = node->key;
            if (n == 5 + TOUCH_BATCH) {
                argv[n++] = "JUSTID";
                write_outcome(d, "hold on entries", n, argv, NULL);
                n = 0;
            }
        }
    }
    if (n > 0) {
        argv[n++] = "JUSTID";
        write_outcome(d, "hold on entries", n, argv, NULL);
    }
}

/* ---- life ------------------------------------------------------------------------------- */

bg_dispatcher *
bg_dispatcher_new(h2o_loop_t *loop, const bg_config *cfg, bg_redis *writer, bg_http *http,
                  char *err, size_t errlen)
{
    bg_dispatcher *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->loop = loop;
    d->cfg = cfg;
    d->writer = writer;
    d->http = http;
    /* The reader blocks in XREADGROUP for at most half the command deadline. */
    int block = cfg->redis.timeout_ms / 2;
    snprintf(d->block_ms, sizeof(d->block_ms), "%d", block > 1000 ? 1000 : block < 1 ? 1 : block);
    d->reader = bg_redis_new_sibling(writer, err, errlen);
    if (d->reader == NULL) {
        free(d);
        return NULL;
    }
    char host[64] = "botgate";
    const char *pod = getenv("POD_NAME");
    if (pod != NULL && pod[0] != '\0')
        snprintf(host, sizeof(host), "%s", pod);
    else
        gethostname(host, sizeof(host) - 1);
    snprintf(d->consumer, sizeof(d->consumer), "%s%s", host, cfg->bot.consumer_suffix);
    snprintf(d->stream_retry, sizeof(d->stream_retry), "%s:retry", cfg->redis.stream);
    snprintf(d->stream_dlq, sizeof(d->stream_dlq), "%s:dlq", cfg->redis.stream);
    d->backoff =
        (bg_backoff){cfg->bot.backoff_initial_ms, cfg->bot.backoff_max_ms, cfg->bot.max_attempts};
    d->concurrency = (size_t)cfg->bot.concurrency;
    d->read_ahead = d->concurrency * 16 < 256 ? 256 : d->concurrency * 16;
    srand((unsigned)(wall_ms() ^ getpid())); /* back-off jitter only */
    h2o_linklist_init_anchor(&d->ready);
    strcpy(d->own_cursor, "0");
    strcpy(d->claim_cursor, "0-0");
    bg_timer_init(&d->retry_timer, loop, on_retry_timer, d);
    bg_timer_init(&d->claim_timer, loop, on_claim_timer, d);
    bg_timer_init(&d->touch_timer, loop, on_touch_timer, d);
    bg_timer_init(&d->read_retry_timer, loop, on_read_retry, d);
    bg_redis_set_ready_cb(d->reader, on_reader_ready, d);
    return d;
}

void
bg_dispatcher_start(bg_dispatcher *d)
{
    bg_log_info("dispatch", "delivering to %s as consumer %s of group %s (concurrency %zu)",
                d->cfg->bot.url, d->consumer, BG_CONSUMER_GROUP, d->concurrency);
    bg_redis_start(d->reader);
    bg_timer_start(&d->claim_timer, (uint64_t)d->cfg->bot.claim_idle_s * 500);
    bg_timer_start(&d->touch_timer, (uint64_t)d->cfg->bot.claim_idle_s * 1000 / 3);
}

void
bg_dispatcher_stop(bg_dispatcher *d)
{
    d->stopped = 1;
}

size_t
bg_dispatcher_in_flight(const bg_dispatcher *d)
{
    /* a delivery is over once its outcome is recorded: a drain waits for both */
    return d->in_flight + d->writing;
}

const char *
bg_dispatcher_consumer(const bg_dispatcher *d)
{
    return d->consumer;
}

void
bg_dispatcher_free(bg_dispatcher *d)
{
    if (d == NULL)
        return;
    d->stopped = 1;
    bg_redis_free(d->reader); /* a pending read is answered "down": nothing to do */
    for (size_t b = 0; b < d->convs.n_buckets; b++) {
        for (struct st_map_node *node = d->convs.buckets[b]; node != NULL; node = node->next) {
            struct st_conv *c = node->value;
            if (c->call != NULL)
                bg_http_cancel(c->call); /* stays pending in Redis */
            for (struct st_item *it = c->head, *next; it != NULL; it = next) {
                next = it->next;
                item_free(it);
            }
            free(c);
        }
    }
    map_free(&d->convs);
    map_free(&d->items);
    free(d->heap);
    bg_timer_dispose(&d->retry_timer);
    bg_timer_dispose(&d->claim_timer);
    bg_timer_dispose(&d->touch_timer);
    bg_timer_dispose(&d->read_retry_timer);
    free(d);
}
