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
#include "botgate/clock.h"
#include "botgate/dispatcher.h"
#include "botgate/access_log.h"
#include "botgate/delivery.h"
#include "botgate/entry.h"
#include "botgate/error.h"
#include "botgate/failure.h"
#include "botgate/failures.h"
#include "botgate/log.h"
#include "botgate/partition.h"
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

static struct st_map_node **
map_slot(struct st_map *m, const char *key, size_t len)
{
    if (m->n_buckets == 0)
        return NULL;
    struct st_map_node **slot = &m->buckets[bg_fnv1a64(key, len) & (m->n_buckets - 1)];
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
            size_t j = bg_fnv1a64(node->key, node->len) & (n - 1);
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
    struct st_map_node **slot = &m->buckets[bg_fnv1a64(key, len) & (m->n_buckets - 1)];
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
    char key[64]; /* "<partition>/<id>": ids are unique within one stream only */
    char *raw;    /* the msgpack entry, owned */
    size_t raw_len;
    bg_entry entry; /* slices into raw */
    int decoded;
    int attempt;           /* attempts made so far */
    int64_t attempt_at_us; /* wall clock when the last attempt started */
    long last_status;
    char last_error[128];
};

struct st_conv {
    bg_dispatcher *d;
    unsigned part;   /* every entry of a conversation is in one partition */
    const char *key; /* the conversation key (the map's copy) */
    size_t key_len;
    struct st_item *head, *tail;
    bg_http_call *call; /* the head's delivery in flight, or NULL */
    int64_t due_ms;     /* loop time before which the head must not be tried */
    size_t heap_pos;    /* in the retry heap, or SIZE_MAX */
    int in_ready;
    h2o_linklist_t ready_link;
};

/*
 * A partition (botgate/partition.h) as this dispatcher sees it:
 *
 *   NONE ──lease won──▶ CLAIM ──all pending taken (XAUTOCLAIM)──▶ ACTIVE (read with ">")
 *     ▲                   │                                          │
 *     └───lease lost──────┴────────────── more than the fair share ──▶ RELEASING
 *     └───────────── nothing of it in flight: lease given back ◀────────┘
 *
 * `epoch` changes whenever what is held of the partition is dropped: an answer to a read
 * issued before that carries the old epoch and is ignored (its entries stay pending in
 * Redis, for the claim of whoever holds the lease next, this dispatcher included).
 */
enum { PART_NONE, PART_CLAIM, PART_ACTIVE, PART_RELEASING };

struct st_part {
    char *stream; /* redis.stream, or "<redis.stream>:p<k>" */
    char *retry;  /* "<stream>:retry": attempt counts of its entries */
    char *lease;  /* "<redis.stream>:lease:<k>": the owner's consumer name */
    int state;
    unsigned epoch;
    unsigned read_epoch; /* the epoch when the read in flight was sent */
    int group_ready;     /* XGROUP CREATE answered on this reader connection */
    char cursor[48];     /* PART_CLAIM: XAUTOCLAIM's cursor */
    size_t in_flight;    /* deliveries of its entries in progress */
};

struct bg_dispatcher {
    h2o_loop_t *loop;
    const bg_config *cfg;
    bg_redis *reader; /* XREADGROUP (blocks) */
    bg_redis *writer; /* outcomes */
    bg_http *http;
    char consumer[128];
    char stream_dlq[256];  /* <stream>:dlq */
    char members[256];     /* <stream>:members: live dispatchers, by lease expiry */
    struct st_part *parts; /* redis.partitions */
    size_t n_parts;
    int64_t lease_ms;        /* bot.claim_idle_s: a silent owner loses its partitions */
    int64_t lease_until;     /* loop ms: our leases are surely valid until then */
    int64_t balance_sent_at; /* loop ms */
    int balancing;           /* the balance script is out */
    int handed_over;         /* stopped, and the leases were given back */
    int op_part;             /* the partition of the claim step in flight */
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
    bg_timer retry_timer, balance_timer, read_retry_timer;
    int reading, stopped;
    bg_server_metrics *metrics; /* NULL: nothing is counted */
    bg_failures *failures;      /* NULL: nothing is recorded */
    bg_access_log *access_log;  /* NULL: no lines */
};

static void pump(bg_dispatcher *d);
static void maybe_read(bg_dispatcher *d);
static void maybe_hand_over(bg_dispatcher *d);
static void lose_all(bg_dispatcher *d, const char *why);

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

void
bg_dispatcher_set_access_log(bg_dispatcher *d, bg_access_log *log)
{
    d->access_log = log;
}

/* An attempt's access line (res NULL: the entry was settled without one). */
static void
log_attempt(bg_dispatcher *d, const struct st_item *it, const bg_http_result *res,
            const char *outcome, const char *reason, int64_t retry_in_ms)
{
    if (d->access_log == NULL)
        return;
    const bg_entry *e = &it->entry;
    int64_t now = bg_wall_us();
    bg_access_delivery a = {
        .request_id = e->request_id,
        .entry_id = it->id,
        .activity_id = e->activity_id,
        .activity_type = e->type,
        .channel_id = e->channel_id,
        .conversation_id = e->conversation_id,
        .attempt = res != NULL ? it->attempt : 0,
        .status = res != NULL && res->curl_code == CURLE_OK ? res->status : 0,
        .outcome = outcome,
        .reason = reason,
        .error = res != NULL && res->curl_code != CURLE_OK ? it->last_error : NULL,
        .queue_wait_us =
            res != NULL && e->received_at_us > 0 ? it->attempt_at_us - e->received_at_us : -1,
        .connect_us = res != NULL ? res->connect_us : -1,
        .tls_us = res != NULL ? res->tls_us : -1,
        .first_byte_us = res != NULL ? res->first_byte_us : -1,
        .total_us = res != NULL ? res->total_us : -1,
        .e2e_us = strcmp(outcome, "delivered") == 0 && e->received_at_us > 0
                      ? now - e->received_at_us
                      : -1,
        .retry_in_ms = retry_in_ms};
    bg_access_log_delivery(d->access_log, &a);
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

/* A partition whose entries may be held and delivered now. */
static int
part_live(const bg_dispatcher *d, unsigned k)
{
    return d->parts[k].state == PART_CLAIM || d->parts[k].state == PART_ACTIVE;
}

/*
 * Takes an entry read from partition k's stream (raw msgpack copied), with its attempt
 * count and next time from the retry hash (attempt 0 when none), if k is still held in
 * the epoch the read was sent in. Items already held are ignored: a claim can return
 * them again.
 */
static void
hold(bg_dispatcher *d, unsigned k, unsigned epoch, const char *id, const char *raw, size_t raw_len,
     int attempt, int64_t next_wall_ms, long last_status)
{
    size_t idlen = strlen(id);
    char key[64];
    int keylen = snprintf(key, sizeof(key), "%u/%s", k, id);
    if (!part_live(d, k) || d->parts[k].epoch != epoch ||
        idlen >= sizeof(((struct st_item *)0)->id) || keylen >= (int)sizeof(key) ||
        map_get(&d->items, key, (size_t)keylen) != NULL)
        return;
    struct st_item *it = calloc(1, sizeof(*it));
    if (it == NULL || (it->raw = malloc(raw_len ? raw_len : 1)) == NULL) {
        free(it);
        return;
    }
    memcpy(it->id, id, idlen + 1);
    memcpy(it->key, key, (size_t)keylen + 1);
    memcpy(it->raw, raw, raw_len);
    it->raw_len = raw_len;
    it->attempt = attempt;
    it->last_status = last_status;
    it->decoded = bg_entry_decode(&it->entry, it->raw, it->raw_len) == 0;
    /* The conversation key: its id, or this entry alone when it has none (or is
     * unreadable: it is dead-lettered on its own). */
    char convbuf[64];
    const char *conv;
    size_t convlen;
    if (it->decoded && it->entry.conversation_id.p != NULL) {
        conv = it->entry.conversation_id.p;
        convlen = it->entry.conversation_id.len;
    } else {
        convlen = (size_t)snprintf(convbuf, sizeof(convbuf), "\x01%s", it->key);
        conv = convbuf;
    }
    struct st_conv *c = conv_get(d, conv, convlen);
    if (c != NULL)
        c->part = k;
    if (c == NULL || map_put(&d->items, it->key, strlen(it->key), it, NULL) != 0) {
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
        int64_t wait = next_wall_ms - bg_wall_ms();
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
    map_del(&d->items, it->key, strlen(it->key));
    item_free(it);
    d->held--;
    c->due_ms = 0;
    schedule(d, c);
    conv_drop_if_idle(d, c);
}

/*
 * Forgets what is held of c without settling it: the entries stay pending in Redis, for
 * whoever holds the partition's lease next (a claim takes them in id order). A head being
 * delivered stays until its attempt ends.
 */
static void
conv_forget(bg_dispatcher *d, struct st_conv *c)
{
    struct st_item **p = &c->head;
    if (c->call != NULL && *p != NULL)
        p = &(*p)->next;
    while (*p != NULL) {
        struct st_item *it = *p;
        *p = it->next;
        map_del(&d->items, it->key, strlen(it->key));
        item_free(it);
        d->held--;
    }
    c->tail = c->head;
    conv_drop_if_idle(d, c);
}

/* Partition k is no longer ours to deliver (lease lost or being given back). */
static void
drop_part(bg_dispatcher *d, unsigned k)
{
    d->parts[k].epoch++;
    for (size_t b = 0; b < d->convs.n_buckets; b++) {
        for (struct st_map_node *node = d->convs.buckets[b], *next; node != NULL; node = next) {
            next = node->next;
            struct st_conv *c = node->value;
            if (c->part == k)
                conv_forget(d, c);
        }
    }
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
    "'failed_at_ms', ARGV[8], 'stream', KEYS[1])\n"
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
    const struct st_part *part = &d->parts[it->conv->part];
    const char *argv[] = {"EVAL",      ack_script,        "2",   part->stream,
                          part->retry, BG_CONSUMER_GROUP, it->id};
    write_outcome(d, "acknowledgement", 7, argv, NULL);
}

static void
record_dead(bg_dispatcher *d, struct st_item *it, const char *reason)
{
    char attempts[16], status[16], at[24];
    snprintf(attempts, sizeof(attempts), "%d", it->attempt);
    snprintf(status, sizeof(status), "%ld", it->last_status);
    snprintf(at, sizeof(at), "%" PRId64, bg_wall_ms());
    const struct st_part *part = &d->parts[it->conv->part];
    const char *argv[] = {
        "EVAL", dead_script, "3",    part->stream, part->retry, d->stream_dlq,  BG_CONSUMER_GROUP,
        it->id, it->raw,     reason, attempts,     status,      it->last_error, at};
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
    const char *argv[] = {"HSET", d->parts[it->conv->part].retry, it->id, value};
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
    d->parts[c->part].in_flight--;
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
    const char *cls = bg_failure_class(res->curl_code, res->status, res->connect_us);
    log_attempt(d, it, res,
                dec.action == BG_DELIVERY_ACK    ? "delivered"
                : dec.action == BG_DELIVERY_DEAD ? "dead"
                                                 : "retry",
                dec.action == BG_DELIVERY_DEAD ? dec.reason : cls,
                dec.action == BG_DELIVERY_RETRY ? dec.delay_ms : -1);
    if (dec.action != BG_DELIVERY_ACK) {
        char detail[160];
        if (res->curl_code != CURLE_OK)
            snprintf(detail, sizeof(detail), "%s", it->last_error);
        else
            snprintf(detail, sizeof(detail), "HTTP %ld", res->status);
        record_failure(d, it, cls, detail);
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
        int64_t next_wall = bg_wall_ms() + dec.delay_ms;
        char what[160];
        if (r.transport_error)
            snprintf(what, sizeof(what), "%s", it->last_error);
        else
            snprintf(what, sizeof(what), "HTTP %ld", res->status);
        bg_log_info("dispatch", "entry %s: attempt %d failed (%s), retry in %" PRId64 " ms", it->id,
                    it->attempt, what, dec.delay_ms);
        record_retry(d, it, next_wall);
        c->due_ms = loop_ms(d) + dec.delay_ms;
        if (part_live(d, c->part))
            schedule(d, c);
        else
            conv_forget(d, c); /* the partition went meanwhile: its next owner retries */
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
        log_attempt(d, it, NULL, "dead", BG_DEAD_BAD_ENTRY, -1);
        record_dead(d, it, BG_DEAD_BAD_ENTRY);
        release_head(d, c);
        return;
    }
    if (bg_delivery_token_expired(it->entry.token_exp, (int64_t)time(NULL))) {
        snprintf(it->last_error, sizeof(it->last_error), "the forwarded token expired at %" PRId64,
                 it->entry.token_exp);
        record_failure(d, it, BG_FAILURE_TOKEN_EXPIRED, it->last_error);
        log_attempt(d, it, NULL, "dead", BG_DEAD_TOKEN_EXPIRED, -1);
        record_dead(d, it, BG_DEAD_TOKEN_EXPIRED);
        release_head(d, c);
        return;
    }
    it->attempt++;
    it->attempt_at_us = bg_wall_us();
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
    d->parts[c->part].in_flight++;
    count_in_flight(d);
}

/* Starts deliveries while there is room, then reads more if memory allows. */
static void
pump(bg_dispatcher *d)
{
    /* Our leases were last renewed too long ago (Redis unreachable): another dispatcher
     * may hold them by now, so nothing more is started here until they are ours again. */
    if (loop_ms(d) > d->lease_until)
        lose_all(d, "the leases could not be renewed in time");
    maybe_hand_over(d);
    while (!d->stopped && d->in_flight < d->concurrency && !h2o_linklist_is_empty(&d->ready)) {
        struct st_conv *c = H2O_STRUCT_FROM_MEMBER(struct st_conv, ready_link, d->ready.next);
        h2o_linklist_unlink(&c->ready_link);
        c->in_ready = 0;
        deliver(d, c);
    }
    maybe_read(d);
}

/* ---- reading ------------------------------------------------------------------------------ */

/* A read or claimed batch of one partition waits here for its retry state (HMGET) before
 * it is held; epoch is the partition's when the read was sent. */
struct st_batch {
    bg_dispatcher *d;
    unsigned part, epoch;
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
        hold(d, b->part, b->epoch, b->ids[i], b->raws[i], b->raw_lens[i], attempt, (int64_t)next,
             status);
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
 * Takes a list of partition k's stream entries ([id, [field, value, ...]] each; [id, nil]
 * for an entry deleted while pending). Deleted ones are acknowledged away; the others are
 * held, after their retry state was looked up, if k is still in epoch by then.
 */
static void
take_entries(bg_dispatcher *d, unsigned k, unsigned epoch, const redisReply *list)
{
    if (list == NULL || list->type != REDIS_REPLY_ARRAY || list->elements == 0)
        return;
    struct st_batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return;
    b->d = d;
    b->part = k;
    b->epoch = epoch;
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
        const redisReply *v = entry_field(e->element[1]);
        if (v == NULL) {
            /* deleted (or not ours): nothing to deliver, nothing to keep pending */
            const char *ack[] = {"XACK", d->parts[k].stream, BG_CONSUMER_GROUP, id};
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
    argv[1] = d->parts[k].retry;
    for (size_t i = 0; i < b->n; i++)
        argv[2 + i] = b->ids[i];
    if (bg_redis_command(d->writer, on_retry_state, b, (int)b->n + 2, argv, NULL) != 0)
        on_retry_state(d->writer, NULL, BG_EREDIS_DOWN, b);
    free(argv);
}

/* A failed read or claim step: counted, and tried again after a pause. */
static int
read_failed(bg_dispatcher *d, const char *what, redisReply *reply, int err)
{
    if (err == 0 && reply->type != REDIS_REPLY_ERROR)
        return 0;
    count_redis_error(d, err != 0 ? err : BG_EREDIS_ERROR);
    if (err == 0)
        bg_log_warn("dispatch", "%s refused: %.*s", what, (int)reply->len, reply->str);
    bg_timer_start(&d->read_retry_timer, err != 0 ? 500 : 1000);
    return 1;
}

/* Every partition held goes back to CLAIM: its group is made sure of and what is pending
 * in it is taken again (what is held already is ignored), before ">" reads resume. */
static void
reclaim_all(bg_dispatcher *d)
{
    for (size_t k = 0; k < d->n_parts; k++) {
        d->parts[k].group_ready = 0;
        if (part_live(d, (unsigned)k)) {
            d->parts[k].state = PART_CLAIM;
            strcpy(d->parts[k].cursor, "0-0");
        }
    }
}

static void
on_read(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    bg_dispatcher *d = data;
    d->reading = 0;
    if (read_failed(d, "XREADGROUP", reply, err)) {
        if (err == 0 && strncmp(reply->str, "NOGROUP", 7) == 0)
            reclaim_all(d); /* the group went (FLUSHALL, a fresh master): made again */
        return;
    }
    /* [[stream, [entry, ...]], ...] for the streams that had something */
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *s = reply->element[i];
        if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
            s->element[0]->type != REDIS_REPLY_STRING)
            continue;
        for (size_t k = 0; k < d->n_parts; k++)
            if (strcmp(d->parts[k].stream, s->element[0]->str) == 0)
                take_entries(d, (unsigned)k, d->parts[k].read_epoch, s->element[1]);
    }
    maybe_read(d);
}

static void
on_group_created(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    bg_dispatcher *d = data;
    d->reading = 0;
    if (err == 0 && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) == 0)
        err = 0, reply->type = REDIS_REPLY_STATUS;
    if (read_failed(d, "XGROUP CREATE", reply, err))
        return;
    d->parts[d->op_part].group_ready = 1;
    maybe_read(d);
}

/*
 * A claim step: XAUTOCLAIM with no idle minimum takes every entry pending in the
 * partition, whoever read it (the lease's previous owner, dead or gone, or this
 * dispatcher's earlier life), in id order. Once the cursor is back at 0-0 the partition is
 * ACTIVE: only then are new entries read, so none overtakes an older one of its
 * conversation.
 */
static void
on_claimed(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    bg_dispatcher *d = data;
    d->reading = 0;
    if (read_failed(d, "XAUTOCLAIM", reply, err))
        return;
    struct st_part *p = &d->parts[d->op_part];
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        bg_timer_start(&d->read_retry_timer, 1000);
        return;
    }
    if (p->state == PART_CLAIM && p->epoch == p->read_epoch) {
        if (reply->element[1]->type == REDIS_REPLY_ARRAY && reply->element[1]->elements > 0) {
            bg_log_info("dispatch", "%s: took %zu pending entries", p->stream,
                        reply->element[1]->elements);
            take_entries(d, (unsigned)d->op_part, p->epoch, reply->element[1]);
        }
        snprintf(p->cursor, sizeof(p->cursor), "%s", reply->element[0]->str);
        if (strcmp(p->cursor, "0-0") == 0)
            p->state = PART_ACTIVE;
    }
    maybe_read(d);
}

/*
 * One operation at a time on the reader connection, so that a partition's claim and its
 * reads are answered in the order they were sent: first the partitions being claimed
 * (group, then XAUTOCLAIM pages), then one blocking XREADGROUP over every ACTIVE one.
 */
static void
maybe_read(bg_dispatcher *d)
{
    if (d->stopped || d->reading || !bg_redis_is_ready(d->reader) ||
        d->held + d->incoming >= d->read_ahead || bg_timer_is_active(&d->read_retry_timer))
        return;
    size_t room = d->read_ahead - d->held - d->incoming;
    char count[16];
    for (size_t k = 0; k < d->n_parts; k++) {
        struct st_part *p = &d->parts[k];
        if (p->state != PART_CLAIM)
            continue;
        d->op_part = (int)k;
        p->read_epoch = p->epoch;
        int rc;
        if (!p->group_ready) {
            const char *argv[] = {"XGROUP",          "CREATE", p->stream,
                                  BG_CONSUMER_GROUP, "0",      "MKSTREAM"};
            rc = bg_redis_command(d->reader, on_group_created, d, 6, argv, NULL);
        } else {
            snprintf(count, sizeof(count), "%zu", room < CLAIM_BATCH ? room : CLAIM_BATCH);
            const char *argv[] = {"XAUTOCLAIM", p->stream, BG_CONSUMER_GROUP, d->consumer,
                                  "0",          p->cursor, "COUNT",           count};
            rc = bg_redis_command(d->reader, on_claimed, d, 8, argv, NULL);
        }
        d->reading = rc == 0;
        return;
    }
    size_t n_active = 0;
    for (size_t k = 0; k < d->n_parts; k++)
        n_active += d->parts[k].state == PART_ACTIVE;
    if (n_active == 0)
        return;
    /* COUNT is per stream */
    size_t per = room / n_active;
    snprintf(count, sizeof(count), "%zu", per < 1 ? 1 : per > READ_BATCH ? READ_BATCH : per);
    const char **argv = calloc(9 + 2 * n_active, sizeof(char *));
    if (argv == NULL)
        return;
    int n = 0;
    argv[n++] = "XREADGROUP";
    argv[n++] = "GROUP";
    argv[n++] = BG_CONSUMER_GROUP;
    argv[n++] = d->consumer;
    argv[n++] = "COUNT";
    argv[n++] = count;
    argv[n++] = "BLOCK";
    argv[n++] = d->block_ms;
    argv[n++] = "STREAMS";
    for (size_t k = 0; k < d->n_parts; k++) {
        if (d->parts[k].state == PART_ACTIVE) {
            argv[n++] = d->parts[k].stream;
            d->parts[k].read_epoch = d->parts[k].epoch;
        }
    }
    for (size_t i = 0; i < n_active; i++)
        argv[n++] = ">";
    d->reading = bg_redis_command(d->reader, on_read, d, n, argv, NULL) == 0;
    free(argv);
}

static void
on_read_retry(bg_timer *t)
{
    maybe_read(t->data);
}

/* Each (re)connection of the reader: the groups are made sure of, and what this consumer
 * left pending (a read whose answer the lost connection took with it) is taken back. */
static void
on_reader_ready(bg_redis *redis, void *data)
{
    (void)redis;
    bg_dispatcher *d = data;
    d->reading = 0;
    reclaim_all(d);
    maybe_read(d);
}

/* ---- partition leases ------------------------------------------------------------------
 *
 *   <stream>:members   sorted set: consumer name → when its membership lapses (Redis ms)
 *   <stream>:lease:<k> string: the consumer name of partition k's owner, PX lease_ms
 *
 * Every min(lease_ms/3, 1 s) each dispatcher runs the balance script: it renews its
 * membership and the leases it holds, gives back those it was asked to, and takes free
 * partitions up to its fair share, ceil(partitions / live members), looking from an
 * offset of its own so that dispatchers starting together spread out. A dispatcher that
 * stops renewing (killed, cut off from Redis) loses its leases lease_ms later; the others
 * take them, claim the pending entries and go on in id order. One holding more than its
 * fair share (a member joined) gives the extra partitions back once nothing of them is in
 * flight, so that one conversation is never delivered by two dispatchers at once.
 *
 * The reply is {fair share, {partitions held}}. Time is Redis's (TIME), so that the
 * dispatchers' clocks need not agree.
 */
static const char balance_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local me, lease = ARGV[1], tonumber(ARGV[2])\n"
    "redis.call('ZADD', KEYS[1], now + lease, me)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "local n = #KEYS - 1\n"
    "local fair = math.ceil(n / redis.call('ZCARD', KEYS[1]))\n"
    "for k in string.gmatch(ARGV[4], '%d+') do\n"
    "  local key = KEYS[tonumber(k) + 2]\n"
    "  if key and redis.call('GET', key) == me then redis.call('DEL', key) end\n"
    "end\n"
    "local held = {}\n"
    "for i = 2, #KEYS do\n"
    "  if redis.call('GET', KEYS[i]) == me then\n"
    "    redis.call('PEXPIRE', KEYS[i], lease)\n"
    "    held[#held + 1] = i - 2\n"
    "  end\n"
    "end\n"
    "if ARGV[5] == '1' then\n"
    "  for j = 0, n - 1 do\n"
    "    if #held >= fair then break end\n"
    "    local k = (tonumber(ARGV[3]) + j) % n\n"
    "    if redis.call('SET', KEYS[k + 2], me, 'NX', 'PX', lease) then held[#held + 1] = k end\n"
    "  end\n"
    "end\n"
    "return {fair, held}\n";

/* Forgets every partition held; returns how many there were. */
static size_t
drop_all(bg_dispatcher *d)
{
    size_t n = 0;
    for (size_t k = 0; k < d->n_parts; k++) {
        if (d->parts[k].state != PART_NONE) {
            d->parts[k].state = PART_NONE;
            drop_part(d, (unsigned)k);
            n++;
        }
    }
    return n;
}

static void
lose_all(bg_dispatcher *d, const char *why)
{
    size_t lost = drop_all(d);
    if (lost > 0)
        bg_log_warn("dispatch", "%zu partition(s) given up: %s", lost, why);
}

static uint64_t
balance_period_ms(const bg_dispatcher *d)
{
    return d->lease_ms / 3 < 1000 ? (uint64_t)(d->lease_ms / 3) : 1000;
}

static void
on_balanced(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis;
    bg_dispatcher *d = data;
    d->balancing = 0;
    if (d->handed_over)
        return;
    if (err != 0 || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        count_redis_error(d, err != 0 ? err : BG_EREDIS_ERROR);
        if (err == 0 && reply->type == REDIS_REPLY_ERROR)
            bg_log_warn("dispatch", "partition balance refused: %.*s", (int)reply->len, reply->str);
        return; /* the leases run out at lease_until unless a later balance renews them */
    }
    d->lease_until = d->balance_sent_at + d->lease_ms;
    size_t fair = (size_t)reply->element[0]->integer, live = 0, changed = 0;
    char *held = calloc(d->n_parts, 1);
    if (held == NULL)
        return;
    const redisReply *list = reply->element[1];
    for (size_t i = 0; i < list->elements; i++)
        if (list->element[i]->type == REDIS_REPLY_INTEGER && list->element[i]->integer >= 0 &&
            (size_t)list->element[i]->integer < d->n_parts)
            held[list->element[i]->integer] = 1;
    for (size_t k = 0; k < d->n_parts; k++) {
        struct st_part *p = &d->parts[k];
        if (held[k] && p->state == PART_NONE) {
            p->state = PART_CLAIM;
            p->epoch++;
            strcpy(p->cursor, "0-0");
            changed++;
        } else if (!held[k] && p->state != PART_NONE) {
            if (p->state != PART_RELEASING)
                bg_log_warn("dispatch", "%s: lease lost to another dispatcher", p->stream);
            p->state = PART_NONE;
            drop_part(d, (unsigned)k);
            changed++;
        }
        live += part_live(d, (unsigned)k);
    }
    free(held);
    /* more than the fair share: the last ones go back, once their deliveries end */
    for (size_t k = d->n_parts; k-- > 0 && live > fair;) {
        if (part_live(d, (unsigned)k)) {
            d->parts[k].state = PART_RELEASING;
            drop_part(d, (unsigned)k);
            live--;
            changed++;
        }
    }
    if (changed > 0)
        bg_log_info("dispatch", "delivering %zu of %zu partition(s) (fair share %zu)", live,
                    d->n_parts, fair);
    pump(d);
}

/*
 * A dispatcher that stops (SIGTERM) gives its leases back and leaves the membership once
 * nothing of its is in flight: its partitions go to the others at their next balance, not
 * bot.claim_idle_s later. Sent after its last outcome write on the same connection, so the
 * next owner finds every settled entry settled. With deliveries still running when the
 * grace period ends, nothing is given back: the leases lapse.
 */
static const char release_script[] =
    "for i = 2, #KEYS do\n"
    "  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end\n"
    "end\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "return 1\n";

static void
maybe_hand_over(bg_dispatcher *d)
{
    if (!d->stopped || d->handed_over || d->in_flight > 0)
        return;
    const char **argv = calloc(d->n_parts + 5, sizeof(char *));
    if (argv == NULL)
        return;
    d->handed_over = 1;
    bg_timer_stop(&d->balance_timer);
    bg_log_info("dispatch", "stopping: %zu partition(s) handed over to the other dispatchers",
                drop_all(d));
    char nkeys[16];
    snprintf(nkeys, sizeof(nkeys), "%zu", d->n_parts + 1);
    int a = 0;
    argv[a++] = "EVAL";
    argv[a++] = release_script;
    argv[a++] = nkeys;
    argv[a++] = d->members;
    for (size_t k = 0; k < d->n_parts; k++)
        argv[a++] = d->parts[k].lease;
    argv[a++] = d->consumer;
    write_outcome(d, "hand-over of the partitions", a, argv, NULL);
    free(argv);
}

static void
on_balance_timer(bg_timer *t)
{
    bg_dispatcher *d = t->data;
    bg_timer_start(&d->balance_timer, balance_period_ms(d));
    if (d->balancing)
        return;
    size_t n = d->n_parts;
    const char **argv = calloc(n + 9, sizeof(char *));
    char *release = calloc(n, 6);
    if (argv == NULL || release == NULL) {
        free(argv);
        free(release);
        return;
    }
    char nkeys[16], lease[24], offset[24];
    snprintf(nkeys, sizeof(nkeys), "%zu", n + 1);
    snprintf(lease, sizeof(lease), "%" PRId64, d->lease_ms);
    snprintf(offset, sizeof(offset), "%" PRIu64,
             bg_fnv1a64(d->consumer, strlen(d->consumer)) % (uint64_t)n);
    size_t len = 0;
    for (size_t k = 0; k < n; k++)
        if (d->parts[k].state == PART_RELEASING && d->parts[k].in_flight == 0)
            len += (size_t)sprintf(release + len, "%zu,", k);
    int a = 0;
    argv[a++] = "EVAL";
    argv[a++] = balance_script;
    argv[a++] = nkeys;
    argv[a++] = d->members;
    for (size_t k = 0; k < n; k++)
        argv[a++] = d->parts[k].lease;
    argv[a++] = d->consumer;
    argv[a++] = lease;
    argv[a++] = offset;
    argv[a++] = release;
    argv[a++] = d->stopped ? "0" : "1";
    d->balance_sent_at = loop_ms(d);
    if (bg_redis_command(d->writer, on_balanced, d, a, argv, NULL) == 0)
        d->balancing = 1;
    else
        bg_timer_start(&d->balance_timer, 100); /* not connected yet */
    free(argv);
    free(release);
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
    snprintf(d->stream_dlq, sizeof(d->stream_dlq), "%s:dlq", cfg->redis.stream);
    snprintf(d->members, sizeof(d->members), "%s:members", cfg->redis.stream);
    d->lease_ms = (int64_t)cfg->bot.claim_idle_s * 1000;
    d->backoff =
        (bg_backoff){cfg->bot.backoff_initial_ms, cfg->bot.backoff_max_ms, cfg->bot.max_attempts};
    d->concurrency = (size_t)cfg->bot.concurrency;
    d->read_ahead = d->concurrency * 16 < 256 ? 256 : d->concurrency * 16;
    srand((unsigned)(bg_wall_ms() ^ getpid())); /* back-off jitter only */
    h2o_linklist_init_anchor(&d->ready);
    bg_timer_init(&d->retry_timer, loop, on_retry_timer, d);
    bg_timer_init(&d->balance_timer, loop, on_balance_timer, d);
    bg_timer_init(&d->read_retry_timer, loop, on_read_retry, d);
    bg_redis_set_ready_cb(d->reader, on_reader_ready, d);
    d->n_parts = (size_t)cfg->redis.partitions;
    if ((d->parts = calloc(d->n_parts, sizeof(*d->parts))) == NULL) {
        snprintf(err, errlen, "out of memory");
        bg_dispatcher_free(d);
        return NULL;
    }
    for (size_t k = 0; k < d->n_parts; k++) {
        struct st_part *p = &d->parts[k];
        size_t n = strlen(cfg->redis.stream) + 32;
        if ((p->stream = malloc(n)) == NULL || (p->retry = malloc(n)) == NULL ||
            (p->lease = malloc(n)) == NULL) {
            snprintf(err, errlen, "out of memory");
            bg_dispatcher_free(d);
            return NULL;
        }
        bg_partition_stream(p->stream, n, cfg->redis.stream, cfg->redis.partitions, (unsigned)k);
        snprintf(p->retry, n, "%s:retry", p->stream);
        snprintf(p->lease, n, "%s:lease:%zu", cfg->redis.stream, k);
    }
    return d;
}

void
bg_dispatcher_start(bg_dispatcher *d)
{
    bg_log_info("dispatch", "delivering to %s as consumer %s of group %s (concurrency %zu)",
                d->cfg->bot.url, d->consumer, BG_CONSUMER_GROUP, d->concurrency);
    bg_redis_start(d->reader);
    bg_timer_start(&d->balance_timer, 0);
}

void
bg_dispatcher_stop(bg_dispatcher *d)
{
    d->stopped = 1;
    maybe_hand_over(d);
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
    bg_timer_dispose(&d->balance_timer);
    for (size_t k = 0; d->parts != NULL && k < d->n_parts; k++) {
        free(d->parts[k].stream);
        free(d->parts[k].retry);
        free(d->parts[k].lease);
    }
    free(d->parts);
    bg_timer_dispose(&d->read_retry_timer);
    free(d);
}
