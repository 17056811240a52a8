/*
 * Metrics: counters, gauges and fixed-bucket histograms in a registry the caller owns,
 * and the Prometheus text exposition format (version 0.0.4) that /metrics serves.
 *
 * Pure: no clock, no I/O, no globals. proxy/ keeps one registry in bg_server, updates it
 * on the loop (one thread: no locks, no atomics) and renders it when scraped.
 *
 * The shapes are chosen for the request path: a family reserves room for all its series
 * when it is registered (max_series, the bound on its label set), so a series, once
 * looked up, stays where it is: a caller may keep the pointer, and an update is one
 * addition with no allocation. A series is made the first time its label values are
 * asked for; past max_series, the lookup answers NULL, the update is skipped and the
 * family counts it in `dropped` (a bounded label set is the caller's promise; this is the
 * guard).
 *
 * What bg_metrics_render writes, per family, in registration order:
 *
 *   # HELP botgate_requests_total Requests answered, by route and status.
 *   # TYPE botgate_requests_total counter
 *   botgate_requests_total{route="messages",code="202"} 41
 *   # HELP botgate_ack_seconds ...
 *   # TYPE botgate_ack_seconds histogram
 *   botgate_ack_seconds_bucket{le="0.0005"} 3       <- cumulative: observations <= le
 *   ...
 *   botgate_ack_seconds_bucket{le="+Inf"} 41        <- always equal to _count
 *   botgate_ack_seconds_sum 0.052
 *   botgate_ack_seconds_count 41
 *
 * HELP text escapes '\' and newline; label values escape '\', '"' and newline. A family
 * with no series to show (no labelled series made yet, every gauge cleared) is left out
 * whole, HELP and TYPE included. Values: integers as integers (counts stay exact up to
 * 2^53), others in the shortest form that reads back to the same double, NaN, +Inf, -Inf.
 */
#ifndef BOTGATE_METRICS_H
#define BOTGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define BG_METRICS_MAX_LABELS 2
#define BG_METRICS_MAX_BOUNDS 24

/* Bucket upper bounds, in seconds, for the two kinds of latency botgate measures:
 * its own answer (the 202 after the Redis write: well under a millisecond to a few
 * seconds when Redis stalls) and the bot's (a fast bot to bot.timeout_s's default 300 s;
 * 15 s is the Connector's timeout, the line a synchronous bot must stay under). */
#define BG_METRICS_BUCKETS_ACK                                                                     \
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5
#define BG_METRICS_BUCKETS_BOT                                                                     \
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300

typedef enum bg_metric_type {
    BG_METRIC_COUNTER = 0,
    BG_METRIC_GAUGE,
    BG_METRIC_HISTOGRAM,
} bg_metric_type;

/* Fixed buckets: bounds ascending, +Inf implied after the last. */
typedef struct bg_histogram {
    size_t n_bounds;
    double bounds[BG_METRICS_MAX_BOUNDS];
    uint64_t buckets[BG_METRICS_MAX_BOUNDS + 1]; /* per bucket, NOT cumulative; the last one
                                                  * holds what is above every bound */
    uint64_t count;
    double sum;
} bg_histogram;

/* 0, or BG_EINVAL when bounds are not finite and strictly ascending, or more than
 * BG_METRICS_MAX_BOUNDS (zero bounds is allowed: only +Inf). */
int bg_histogram_init(bg_histogram *h, const double *bounds, size_t n_bounds);
/* Counts v in the first bucket whose bound is >= v (Prometheus's `le`). NaN is ignored. */
void bg_histogram_observe(bg_histogram *h, double v);

typedef struct bg_metric_series {
    char *labels[BG_METRICS_MAX_LABELS]; /* values, owned; NULL past the family's labels */
    double value;                        /* counter or gauge */
    int absent;                          /* gauge: left out of the exposition */
    bg_histogram *hist;                  /* histogram families only */
} bg_metric_series;

typedef struct bg_metric_family {
    char *name, *help;
    bg_metric_type type;
    size_t n_labels;
    char *label_names[BG_METRICS_MAX_LABELS];
    size_t max_series, n_series;
    bg_metric_series *series; /* max_series slots, never moved */
    bg_histogram proto;       /* histograms: the bounds every new series starts with */
    unsigned long dropped;    /* lookups refused because max_series series exist */
} bg_metric_family;

/* What a family is. Use designated initialisers; what is left out is 0/NULL. */
typedef struct bg_metric_desc {
    bg_metric_type type;
    const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]*; by convention counters end in _total */
    const char *help; /* one sentence, any bytes (escaped) */
    const char *labels[BG_METRICS_MAX_LABELS]; /* label names, [a-zA-Z_][a-zA-Z0-9_]* but not
                                                * __*, not "le" on histograms; NULL ends */
    size_t max_series;                         /* bound on the label set; 0 means 1 */
    const double *bounds;                      /* histograms: bucket upper bounds */
    size_t n_bounds;
} bg_metric_desc;

/* The registry: its families, in the order they were added. */
typedef struct bg_metrics {
    bg_metric_family **families;
    size_t n_families, cap_families;
} bg_metrics;

void bg_metrics_init(bg_metrics *m);
/* Frees every family and series. m may then be initialised again. */
void bg_metrics_free(bg_metrics *m);

/*
 * Adds a family; *out (may be NULL) receives it. Returns 0, BG_EINVAL for a bad name,
 * label name or bounds, or a name already registered, or BG_ENOMEM. A family without
 * labels gets its one series at once (a counter shows 0 before the first event).
 */
int bg_metrics_add(bg_metrics *m, const bg_metric_desc *desc, bg_metric_family **out);
/* The family named name, or NULL. */
bg_metric_family *bg_metrics_find(const bg_metrics *m, const char *name);

/*
 * The series with these label values (v0 for the first label, v1 for the second; those
 * past the family's labels are ignored; NULL counts as ""), made on first use. NULL when
 * the family holds max_series other series already (f->dropped counts it) or out of
 * memory: every update below accepts NULL and then does nothing.
 */
bg_metric_series *bg_metrics_series(bg_metric_family *f, const char *v0, const char *v1);

/* Counters: +1, +v (v >= 0; anything else is ignored: a counter never goes down). */
void bg_metric_inc(bg_metric_series *s);
void bg_metric_add(bg_metric_series *s, double v);
/* Gauges: the value (shown from then on), or left out of the exposition until set. */
void bg_metric_set(bg_metric_series *s, double v);
void bg_metric_clear(bg_metric_series *s);
/* Histograms. */
void bg_metric_observe(bg_metric_series *s, double v);

/* A growable byte buffer; {0} is an empty one. */
typedef struct bg_metrics_buf {
    char *p; /* NUL-terminated while len > 0 */
    size_t len, cap;
} bg_metrics_buf;
void bg_metrics_buf_free(bg_metrics_buf *b);

/* Appends the exposition of every family to out. 0 or BG_ENOMEM (out keeps what fitted). */
int bg_metrics_render(const bg_metrics *m, bg_metrics_buf *out);

/* The Content-Type of what bg_metrics_render writes. */
#define BG_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
