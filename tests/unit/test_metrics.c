/*
 * policy/metrics.c: histograms, the registry's bounds, and the exposition, checked by
 * parsing it back with a reader written from the format's grammar (below), not from the
 * writer: every line must parse, HELP and TYPE come once per family before its samples,
 * histogram buckets are cumulative and end in +Inf = _count, and every count is exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "botgate/error.h"
#include "botgate/metrics.h"

/* ---- a reader of the Prometheus text format 0.0.4 ------------------------------------- */

#define X_MAX_LABELS 4
#define X_MAX_FAMILIES 64

typedef struct xsample {
    char name[128];
    size_t n_labels;
    char lname[X_MAX_LABELS][32];
    char lvalue[X_MAX_LABELS][256]; /* unescaped */
    double value;
} xsample;

typedef struct xfamily {
    char name[128];
    char type[16];
    char help[512]; /* unescaped */
    int n_help, n_type, n_samples;
} xfamily;

typedef struct xpo {
    xfamily fam[X_MAX_FAMILIES];
    size_t n_fam;
    xsample *s;
    size_t n_s;
    char err[512];
} xpo;

static int
x_fail(xpo *x, int line, const char *fmt, const char *what)
{
    snprintf(x->err, sizeof(x->err), "line %d: ", line);
    size_t n = strlen(x->err);
    snprintf(x->err + n, sizeof(x->err) - n, fmt, what);
    return -1;
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* (metric) or without ':' (label); returns the length, 0 if none. */
static size_t
x_name(const char *p, int colon)
{
    size_t n = 0;
    for (;; n++) {
        char c = p[n];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
            (n > 0 && c >= '0' && c <= '9'))
            continue;
        return n;
    }
}

/* A sample value: a Go ParseFloat number, NaN, +Inf, -Inf. Returns the length, 0 if bad. */
static size_t
x_value(const char *p, double *v)
{
    size_t n = strcspn(p, " \n");
    if (n == 3 && memcmp(p, "NaN", 3) == 0) {
        *v = NAN;
        return n;
    }
    if (n == 4 && (memcmp(p, "+Inf", 4) == 0 || memcmp(p, "-Inf", 4) == 0)) {
        *v = p[0] == '+' ? INFINITY : -INFINITY;
        return n;
    }
    if (n == 0 || strspn(p, "0123456789.eE+-") < n)
        return 0;
    char buf[64], *end;
    if (n >= sizeof(buf))
        return 0;
    memcpy(buf, p, n);
    buf[n] = '\0';
    *v = strtod(buf, &end);
    return *end == '\0' ? n : 0;
}

static xfamily *
x_family(xpo *x, const char *name, size_t len)
{
    for (size_t i = 0; i < x->n_fam; i++)
        if (strlen(x->fam[i].name) == len && memcmp(x->fam[i].name, name, len) == 0)
            return &x->fam[i];
    return NULL;
}

/* "\\", "\n" and (in quotes) "\"": the only escapes; returns the bytes consumed or 0. */
static size_t
x_unescape(const char *p, char *out, size_t cap, int quoted)
{
    size_t i = 0, o = 0;
    for (;;) {
        char c = p[i];
        if (c == '\0' || c == '\n' || (quoted && c == '"'))
            break;
        if (c == '\\') {
            char e = p[i + 1];
            c = e == '\\' ? '\\' : e == 'n' ? '\n' : (quoted && e == '"') ? '"' : 0;
            if (c == 0)
                return 0;
            i++;
        }
        if (o + 1 >= cap)
            return 0;
        out[o++] = c;
        i++;
    }
    out[o] = '\0';
    return i;
}

static int
x_comment(xpo *x, int ln, const char *p, xfamily **cur)
{
    int help = strncmp(p, "# HELP ", 7) == 0, type = strncmp(p, "# TYPE ", 7) == 0;
    if (!help && !type)
        return x_fail(x, ln, "%s", "a comment that is neither HELP nor TYPE");
    p += 7;
    size_t n = x_name(p, 1);
    if (n == 0 || n >= sizeof(x->fam[0].name) || p[n] != ' ')
        return x_fail(x, ln, "%s", "bad metric name");
    xfamily *f = x_family(x, p, n);
    if (f == NULL) {
        if (x->n_fam == X_MAX_FAMILIES)
            return x_fail(x, ln, "%s", "too many families");
        f = &x->fam[x->n_fam++];
        memcpy(f->name, p, n);
    } else if (f != *cur) {
        return x_fail(x, ln, "family %s is not contiguous", f->name);
    }
    if (f->n_samples > 0)
        return x_fail(x, ln, "%s after samples", help ? "HELP" : "TYPE");
    *cur = f;
    p += n + 1;
    if (help) {
        f->n_help++;
        size_t k = x_unescape(p, f->help, sizeof(f->help), 0);
        if (k != strlen(p))
            return x_fail(x, ln, "bad HELP text: %s", p);
    } else {
        f->n_type++;
        if (strcmp(p, "counter") != 0 && strcmp(p, "gauge") != 0 && strcmp(p, "histogram") != 0 &&
            strcmp(p, "summary") != 0 && strcmp(p, "untyped") != 0)
            return x_fail(x, ln, "bad TYPE %s", p);
        snprintf(f->type, sizeof(f->type), "%s", p);
    }
    return 0;
}

/* Whether a sample named name belongs to family f (histograms: _bucket, _sum, _count). */
static int
x_belongs(const xfamily *f, const char *name)
{
    size_t n = strlen(f->name);
    if (strcmp(name, f->name) == 0)
        return strcmp(f->type, "histogram") != 0;
    if (strcmp(f->type, "histogram") != 0 || strncmp(name, f->name, n) != 0)
        return 0;
    return strcmp(name + n, "_bucket") == 0 || strcmp(name + n, "_sum") == 0 ||
           strcmp(name + n, "_count") == 0;
}

static int
x_sample(xpo *x, int ln, const char *p, xfamily *cur)
{
    xsample s;
    memset(&s, 0, sizeof(s));
    size_t n = x_name(p, 1);
    if (n == 0 || n >= sizeof(s.name))
        return x_fail(x, ln, "%s", "bad sample name");
    memcpy(s.name, p, n);
    p += n;
    if (cur == NULL || cur->n_type != 1 || cur->n_help != 1 || !x_belongs(cur, s.name))
        return x_fail(x, ln, "sample %s without its HELP and TYPE", s.name);
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (s.n_labels == X_MAX_LABELS)
                return x_fail(x, ln, "%s", "too many labels");
            size_t k = x_name(p, 0);
            if (k == 0 || k >= sizeof(s.lname[0]) || p[k] != '=' || p[k + 1] != '"')
                return x_fail(x, ln, "%s", "bad label");
            memcpy(s.lname[s.n_labels], p, k);
            for (size_t j = 0; j < s.n_labels; j++)
                if (strcmp(s.lname[j], s.lname[s.n_labels]) == 0)
                    return x_fail(x, ln, "label %s twice", s.lname[j]);
            p += k + 2;
            size_t v = x_unescape(p, s.lvalue[s.n_labels], sizeof(s.lvalue[0]), 1);
            if (p[v] != '"')
                return x_fail(x, ln, "%s", "bad label value");
            p += v + 1;
            s.n_labels++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return x_fail(x, ln, "%s", "bad label list");
        }
        p++;
    }
    if (*p++ != ' ')
        return x_fail(x, ln, "%s", "no space before the value");
    size_t v = x_value(p, &s.value);
    if (v == 0)
        return x_fail(x, ln, "bad value %s", p);
    p += v;
    if (*p == ' ') { /* an optional timestamp: an integer */
        p++;
        if (*p == '-')
            p++;
        size_t d = strspn(p, "0123456789");
        if (d == 0)
            return x_fail(x, ln, "%s", "bad timestamp");
        p += d;
    }
    if (*p != '\0')
        return x_fail(x, ln, "trailing bytes: %s", p);
    for (size_t i = 0; i < x->n_s; i++) {
        const xsample *o = &x->s[i];
        int same = strcmp(o->name, s.name) == 0 && o->n_labels == s.n_labels;
        for (size_t j = 0; same && j < s.n_labels; j++)
            same = strcmp(o->lname[j], s.lname[j]) == 0 && strcmp(o->lvalue[j], s.lvalue[j]) == 0;
        if (same)
            return x_fail(x, ln, "sample %s repeated", s.name);
    }
    xsample *grown = realloc(x->s, (x->n_s + 1) * sizeof(*grown));
    if (grown == NULL)
        return x_fail(x, ln, "%s", "out of memory");
    x->s = grown;
    x->s[x->n_s++] = s;
    cur->n_samples++;
    return 0;
}

static const char *
x_label(const xsample *s, const char *name)
{
    for (size_t j = 0; j < s->n_labels; j++)
        if (strcmp(s->lname[j], name) == 0)
            return s->lvalue[j];
    return NULL;
}

/* The labels of a bucket sample other than le, as one comparable string. */
static void
x_key(const xsample *s, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t j = 0; j < s->n_labels; j++) {
        if (strcmp(s->lname[j], "le") == 0)
            continue;
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s=%s;", s->lname[j], s->lvalue[j]);
    }
}

/* Per histogram and label set: le ascending, counts cumulative, +Inf last and = _count. */
static int
x_check_histograms(xpo *x)
{
    for (size_t f = 0; f < x->n_fam; f++) {
        const xfamily *fam = &x->fam[f];
        if (strcmp(fam->type, "histogram") != 0)
            continue;
        char bucket[140], count[140], sum[140];
        snprintf(bucket, sizeof(bucket), "%s_bucket", fam->name);
        snprintf(count, sizeof(count), "%s_count", fam->name);
        snprintf(sum, sizeof(sum), "%s_sum", fam->name);
        for (size_t i = 0; i < x->n_s; i++) {
            if (strcmp(x->s[i].name, count) != 0)
                continue;
            char key[600], k2[600];
            x_key(&x->s[i], key, sizeof(key));
            double last_le = -INFINITY, last = 0;
            int seen_inf = 0, seen_sum = 0, n_buckets = 0;
            for (size_t j = 0; j < x->n_s; j++) {
                const xsample *b = &x->s[j];
                x_key(b, k2, sizeof(k2));
                if (strcmp(k2, key) != 0)
                    continue;
                if (strcmp(b->name, sum) == 0)
                    seen_sum = 1;
                if (strcmp(b->name, bucket) != 0)
                    continue;
                const char *le = x_label(b, "le");
                double lv;
                if (le == NULL || x_value(le, &lv) != strlen(le) || isnan(lv))
                    return x_fail(x, 0, "%s: a bucket without a numeric le", fam->name);
                if (seen_inf || !(lv > last_le))
                    return x_fail(x, 0, "%s: le not ascending", fam->name);
                if (b->value < last)
                    return x_fail(x, 0, "%s: buckets not cumulative", fam->name);
                last_le = lv, last = b->value, n_buckets++;
                seen_inf = isinf(lv) && lv > 0;
            }
            if (!seen_inf || last != x->s[i].value || !seen_sum || n_buckets == 0)
                return x_fail(x, 0, "%s: no +Inf bucket equal to _count, or no _sum", fam->name);
        }
    }
    return 0;
}

static void
x_free(xpo *x)
{
    free(x->s);
    memset(x, 0, sizeof(*x));
}

/* Parses text (the whole body). 0, or -1 with the reason in x->err. */
static int
x_parse(xpo *x, const char *text)
{
    memset(x, 0, sizeof(*x));
    if (text[0] != '\0' && text[strlen(text) - 1] != '\n')
        return x_fail(x, 0, "%s", "the last line has no newline");
    xfamily *cur = NULL;
    int ln = 0;
    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = (size_t)(nl - p);
        char line[2048];
        ln++;
        if (len >= sizeof(line))
            return x_fail(x, ln, "%s", "line too long");
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;
        if (len == 0)
            return x_fail(x, ln, "%s", "empty line");
        int rc = line[0] == '#' ? x_comment(x, ln, line, &cur) : x_sample(x, ln, line, cur);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < x->n_fam; i++)
        if (x->fam[i].n_help != 1 || x->fam[i].n_type != 1)
            return x_fail(x, 0, "family %s lacks HELP or TYPE, or has two", x->fam[i].name);
    return x_check_histograms(x);
}

/* The sample named name whose labels are exactly the given pairs (NULL-terminated
 * name/value list); NAN when there is none. */
static double
x_get(const xpo *x, const char *name, ...)
{
    const char *want[2 * X_MAX_LABELS];
    size_t n = 0;
    va_list ap;
    va_start(ap, name);
    for (const char *a; n < 2 * X_MAX_LABELS && (a = va_arg(ap, const char *)) != NULL;)
        want[n++] = a;
    va_end(ap);
    for (size_t i = 0; i < x->n_s; i++) {
        const xsample *s = &x->s[i];
        if (strcmp(s->name, name) != 0 || s->n_labels != n / 2)
            continue;
        size_t k = 0;
        while (k < n && x_label(s, want[k]) != NULL &&
               strcmp(x_label(s, want[k]), want[k + 1]) == 0)
            k += 2;
        if (k == n)
            return s->value;
    }
    return NAN;
}

static const xfamily *
x_fam(const xpo *x, const char *name)
{
    for (size_t i = 0; i < x->n_fam; i++)
        if (strcmp(x->fam[i].name, name) == 0)
            return &x->fam[i];
    return NULL;
}

/* Renders m and parses it back; fails the test when the text does not parse. */
static void
render_parse(const bg_metrics *m, xpo *x, bg_metrics_buf *buf)
{
    memset(buf, 0, sizeof(*buf));
    assert_int_equal(bg_metrics_render(m, buf), 0);
    if (x_parse(x, buf->p != NULL ? buf->p : "") != 0) {
        fprintf(stderr, "exposition:\n%s\nparse error: %s\n", buf->p, x->err);
        fail();
    }
}

/* ---- tests ------------------------------------------------------------------------------ */

static void
test_histogram_init(void **state)
{
    (void)state;
    bg_histogram h;
    const double ok[] = {BG_METRICS_BUCKETS_ACK};
    const double bot[] = {BG_METRICS_BUCKETS_BOT};
    assert_int_equal(bg_histogram_init(&h, ok, sizeof(ok) / sizeof(ok[0])), 0);
    assert_int_equal(bg_histogram_init(&h, bot, sizeof(bot) / sizeof(bot[0])), 0);
    assert_int_equal(bg_histogram_init(&h, NULL, 0), 0);
    const double down[] = {1, 0.5};
    assert_int_equal(bg_histogram_init(&h, down, 2), BG_EINVAL);
    const double same[] = {1, 1};
    assert_int_equal(bg_histogram_init(&h, same, 2), BG_EINVAL);
    const double nan[] = {1, NAN};
    assert_int_equal(bg_histogram_init(&h, nan, 2), BG_EINVAL);
    const double inf[] = {1, INFINITY};
    assert_int_equal(bg_histogram_init(&h, inf, 2), BG_EINVAL);
    double many[BG_METRICS_MAX_BOUNDS + 1];
    for (size_t i = 0; i < BG_METRICS_MAX_BOUNDS + 1; i++)
        many[i] = (double)i;
    assert_int_equal(bg_histogram_init(&h, many, BG_METRICS_MAX_BOUNDS), 0);
    assert_int_equal(bg_histogram_init(&h, many, BG_METRICS_MAX_BOUNDS + 1), BG_EINVAL);
}

static void
test_histogram_observe(void **state)
{
    (void)state;
    bg_histogram h;
    const double b[] = {0.1, 1, 10};
    assert_int_equal(bg_histogram_init(&h, b, 3), 0);
    bg_histogram_observe(&h, 0.05); /* bucket 0 */
    bg_histogram_observe(&h, 0.1);  /* le is inclusive: bucket 0 */
    bg_histogram_observe(&h, 0.5);  /* 1 */
    bg_histogram_observe(&h, 10);   /* 2 */
    bg_histogram_observe(&h, 11);   /* +Inf */
    bg_histogram_observe(&h, -1);   /* below everything: bucket 0 */
    bg_histogram_observe(&h, NAN);  /* ignored */
    assert_int_equal(h.buckets[0], 3);
    assert_int_equal(h.buckets[1], 1);
    assert_int_equal(h.buckets[2], 1);
    assert_int_equal(h.buckets[3], 1);
    assert_int_equal(h.count, 6);
    assert_true(fabs(h.sum - 20.65) < 1e-9);
}

static void
test_registry_refuses(void **state)
{
    (void)state;
    bg_metrics m;
    bg_metrics_init(&m);
    bg_metric_family *f = NULL;
    assert_int_equal(
        bg_metrics_add(&m, &(bg_metric_desc){.type = BG_METRIC_COUNTER, .name = "9bad"}, &f),
        BG_EINVAL);
    assert_int_equal(
        bg_metrics_add(&m, &(bg_metric_desc){.type = BG_METRIC_COUNTER, .name = "a-b"}, &f),
        BG_EINVAL);
    assert_int_equal(
        bg_metrics_add(&m, &(bg_metric_desc){.type = BG_METRIC_COUNTER, .name = ""}, &f),
        BG_EINVAL);
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_COUNTER,
                                                      .name = "a_total",
                                                      .labels = {"a:b"},
                                                      .max_series = 4},
                                    &f),
                     BG_EINVAL);
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_COUNTER,
                                                      .name = "a_total",
                                                      .labels = {"__x"},
                                                      .max_series = 4},
                                    &f),
                     BG_EINVAL);
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_COUNTER,
                                                      .name = "a_total",
                                                      .labels = {"x", "x"},
                                                      .max_series = 4},
                                    &f),
                     BG_EINVAL);
    const double b[] = {1, 2};
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_HISTOGRAM,
                                                      .name = "h_seconds",
                                                      .labels = {"le"},
                                                      .max_series = 4,
                                                      .bounds = b,
                                                      .n_bounds = 2},
                                    &f),
                     BG_EINVAL);
    const double bad[] = {2, 1};
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_HISTOGRAM,
                                                      .name = "h_seconds",
                                                      .bounds = bad,
                                                      .n_bounds = 2},
                                    &f),
                     BG_EINVAL);
    /* no labels, yet room for several series: a mistake */
    assert_int_equal(
        bg_metrics_add(&m, &(bg_metric_desc){.type = BG_METRIC_GAUGE, .name = "g", .max_series = 3},
                       &f),
        BG_EINVAL);
    assert_int_equal(
        bg_metrics_add(&m, &(bg_metric_desc){.type = BG_METRIC_GAUGE, .name = "ns:g_1"}, &f), 0);
    assert_ptr_equal(bg_metrics_find(&m, "ns:g_1"), f);
    assert_null(bg_metrics_find(&m, "nope"));
    /* one name, one family */
    assert_int_equal(
        bg_metrics_add(&m, &(bg_metric_desc){.type = BG_METRIC_COUNTER, .name = "ns:g_1"}, &f),
        BG_EINVAL);
    assert_int_equal(m.n_families, 1);
    bg_metrics_free(&m);
}

static void
test_series_bounded(void **state)
{
    (void)state;
    bg_metrics m;
    bg_metrics_init(&m);
    bg_metric_family *f;
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_COUNTER,
                                                      .name = "x_total",
                                                      .help = "x",
                                                      .labels = {"reason"},
                                                      .max_series = 3},
                                    &f),
                     0);
    bg_metric_series *a = bg_metrics_series(f, "a", NULL);
    assert_non_null(a);
    assert_ptr_equal(bg_metrics_series(f, "a", "ignored"), a); /* the same series */
    assert_non_null(bg_metrics_series(f, "b", NULL));
    assert_non_null(bg_metrics_series(f, NULL, NULL)); /* "" */
    assert_ptr_equal(bg_metrics_series(f, "", NULL), bg_metrics_series(f, NULL, NULL));
    assert_null(bg_metrics_series(f, "d", NULL));
    assert_int_equal(f->dropped, 1);
    /* series never move: a kept pointer stays valid */
    assert_ptr_equal(bg_metrics_series(f, "a", NULL), a);
    /* NULL is accepted by every update */
    bg_metric_inc(NULL);
    bg_metric_add(NULL, 2);
    bg_metric_set(NULL, 1);
    bg_metric_clear(NULL);
    bg_metric_observe(NULL, 1);
    bg_metric_inc(a);
    bg_metric_add(a, 2.5);
    bg_metric_add(a, -7); /* a counter never goes down */
    assert_true(a->value == 3.5);
    bg_metrics_free(&m);
}

/* A registry shaped like botgate's, with every kind and some awkward label values. */
static void
test_render_parse_back(void **state)
{
    (void)state;
    bg_metrics m;
    bg_metrics_init(&m);
    bg_metric_family *req, *up, *queue, *ack, *lat, *info;
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_COUNTER,
                                                      .name = "botgate_requests_total",
                                                      .help = "Requests \\ by \"route\"\nand code.",
                                                      .labels = {"route", "code"},
                                                      .max_series = 16},
                                    &req),
                     0);
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_GAUGE,
                                                      .name = "botgate_up",
                                                      .help = "1 while serving."},
                                    &up),
                     0);
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_GAUGE,
                                                      .name = "botgate_queue_length",
                                                      .help = "Entries in the stream."},
                                    &queue),
                     0);
    const double ab[] = {BG_METRICS_BUCKETS_ACK};
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_HISTOGRAM,
                                                      .name = "botgate_ack_seconds",
                                                      .help = "Ack latency.",
                                                      .bounds = ab,
                                                      .n_bounds = sizeof(ab) / sizeof(ab[0])},
                                    &ack),
                     0);
    const double bb[] = {BG_METRICS_BUCKETS_BOT};
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_HISTOGRAM,
                                                      .name = "x_seconds",
                                                      .help = "Labelled histogram.",
                                                      .labels = {"bot"},
                                                      .max_series = 4,
                                                      .bounds = bb,
                                                      .n_bounds = sizeof(bb) / sizeof(bb[0])},
                                    &lat),
                     0);
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_GAUGE,
                                                      .name = "botgate_build_info",
                                                      .help = "Build.",
                                                      .labels = {"version"},
                                                      .max_series = 1},
                                    &info),
                     0);
    for (int i = 0; i < 41; i++)
        bg_metric_inc(bg_metrics_series(req, "messages", "202"));
    bg_metric_inc(bg_metrics_series(req, "messages", "415"));
    const char *awkward = "a\"b\\c\nd{e}=,f";
    bg_metric_add(bg_metrics_series(req, "other", awkward), 3);
    bg_metric_set(bg_metrics_series(up, NULL, NULL), 1);
    bg_metric_set(bg_metrics_series(info, "0.1.0", NULL), 1);
    /* the queue gauge stays unset: the family is left out */
    double obs[] = {0.0001, 0.0005, 0.0007, 0.003, 0.2, 4.9, 5, 7, 1e-9};
    for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
        bg_metric_observe(bg_metrics_series(ack, NULL, NULL), obs[i]);
    bg_metric_observe(bg_metrics_series(lat, "b1", NULL), 14.9);
    bg_metric_observe(bg_metrics_series(lat, "b1", NULL), 15);
    bg_metric_observe(bg_metrics_series(lat, "b1", NULL), 301);
    bg_metric_observe(bg_metrics_series(lat, "b2", NULL), 0.004);

    xpo x;
    bg_metrics_buf buf;
    render_parse(&m, &x, &buf);
    assert_int_equal(x_get(&x, "botgate_requests_total", "route", "messages", "code", "202", NULL),
                     41);
    assert_int_equal(x_get(&x, "botgate_requests_total", "route", "messages", "code", "415", NULL),
                     1);
    assert_int_equal(x_get(&x, "botgate_requests_total", "route", "other", "code", awkward, NULL),
                     3);
    assert_string_equal(x_fam(&x, "botgate_requests_total")->help,
                        "Requests \\ by \"route\"\nand code.");
    assert_string_equal(x_fam(&x, "botgate_requests_total")->type, "counter");
    assert_int_equal(x_get(&x, "botgate_up", NULL), 1);
    assert_int_equal(x_get(&x, "botgate_build_info", "version", "0.1.0", NULL), 1);
    assert_null(x_fam(&x, "botgate_queue_length"));
    assert_null(strstr(buf.p, "botgate_queue_length"));
    /* histogram: exact cumulative counts at each bound */
    assert_string_equal(x_fam(&x, "botgate_ack_seconds")->type, "histogram");
    assert_int_equal(x_get(&x, "botgate_ack_seconds_bucket", "le", "0.0005", NULL), 3);
    assert_int_equal(x_get(&x, "botgate_ack_seconds_bucket", "le", "0.001", NULL), 4);
    assert_int_equal(x_get(&x, "botgate_ack_seconds_bucket", "le", "0.005", NULL), 5);
    assert_int_equal(x_get(&x, "botgate_ack_seconds_bucket", "le", "0.25", NULL), 6);
    assert_int_equal(x_get(&x, "botgate_ack_seconds_bucket", "le", "5", NULL), 8);
    assert_int_equal(x_get(&x, "botgate_ack_seconds_bucket", "le", "+Inf", NULL), 9);
    assert_int_equal(x_get(&x, "botgate_ack_seconds_count", NULL), 9);
    double sum = 0;
    for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
        sum += obs[i];
    assert_true(x_get(&x, "botgate_ack_seconds_sum", NULL) == sum); /* read back exactly */
    assert_int_equal(x_get(&x, "x_seconds_bucket", "bot", "b1", "le", "15", NULL), 2);
    assert_int_equal(x_get(&x, "x_seconds_bucket", "bot", "b1", "le", "300", NULL), 2);
    assert_int_equal(x_get(&x, "x_seconds_bucket", "bot", "b1", "le", "+Inf", NULL), 3);
    assert_int_equal(x_get(&x, "x_seconds_bucket", "bot", "b2", "le", "0.005", NULL), 1);
    assert_int_equal(x_get(&x, "x_seconds_count", "bot", "b2", NULL), 1);
    /* 13 + 1 bucket lines for the unlabelled one, 16 + 1 for each labelled series */
    size_t buckets = 0;
    for (size_t i = 0; i < x.n_s; i++)
        buckets += strstr(x.s[i].name, "_bucket") != NULL;
    assert_int_equal(buckets, 14 + 2 * 17);
    x_free(&x);
    bg_metrics_buf_free(&buf);

    /* a gauge cleared again drops out; set again, it is back */
    bg_metric_clear(bg_metrics_series(up, NULL, NULL));
    render_parse(&m, &x, &buf);
    assert_null(x_fam(&x, "botgate_up"));
    x_free(&x);
    bg_metrics_buf_free(&buf);
    bg_metric_set(bg_metrics_series(up, NULL, NULL), 0);
    render_parse(&m, &x, &buf);
    assert_int_equal(x_get(&x, "botgate_up", NULL), 0);
    x_free(&x);
    bg_metrics_buf_free(&buf);
    bg_metrics_free(&m);
}

static void
test_values(void **state)
{
    (void)state;
    bg_metrics m;
    bg_metrics_init(&m);
    bg_metric_family *g;
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_GAUGE,
                                                      .name = "v",
                                                      .help = "values",
                                                      .labels = {"k"},
                                                      .max_series = 16},
                                    &g),
                     0);
    const struct {
        const char *k;
        double v;
        const char *text;
    } cases[] = {
        {"zero", 0, "v{k=\"zero\"} 0\n"},
        {"neg", -86400 * 3, "v{k=\"neg\"} -259200\n"},
        {"tenth", 0.1, "v{k=\"tenth\"} 0.1\n"},
        {"tiny", 1e-7, "v{k=\"tiny\"} 1e-07\n"},
        {"big", 9007199254740992.0, "v{k=\"big\"} 9007199254740992\n"},
        {"huge", 1e20, "v{k=\"huge\"} 1e+20\n"},
        {"exact", 9007199254740991.0, "v{k=\"exact\"} 9007199254740991\n"},
        {"third", 1.0 / 3, "v{k=\"third\"} 0.3333333333333333\n"},
        {"nan", NAN, "v{k=\"nan\"} NaN\n"},
        {"inf", INFINITY, "v{k=\"inf\"} +Inf\n"},
        {"ninf", -INFINITY, "v{k=\"ninf\"} -Inf\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        bg_metric_set(bg_metrics_series(g, cases[i].k, NULL), cases[i].v);
    xpo x;
    bg_metrics_buf buf;
    render_parse(&m, &x, &buf);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (strstr(buf.p, cases[i].text) == NULL) {
            fprintf(stderr, "want %s in:\n%s", cases[i].text, buf.p);
            fail();
        }
        double got = x_get(&x, "v", "k", cases[i].k, NULL);
        assert_true(isnan(cases[i].v) ? isnan(got) : got == cases[i].v);
    }
    x_free(&x);
    /* render appends */
    size_t len = buf.len;
    assert_int_equal(bg_metrics_render(&m, &buf), 0);
    assert_int_equal(buf.len, 2 * len);
    assert_memory_equal(buf.p, buf.p + len, len);
    bg_metrics_buf_free(&buf);
    bg_metrics_free(&m);
}

/* Many random observations: every bucket's count equals a count made independently. */
static void
test_histogram_exact_counts(void **state)
{
    (void)state;
    bg_metrics m;
    bg_metrics_init(&m);
    bg_metric_family *f;
    const double b[] = {BG_METRICS_BUCKETS_BOT};
    size_t nb = sizeof(b) / sizeof(b[0]);
    assert_int_equal(bg_metrics_add(&m,
                                    &(bg_metric_desc){.type = BG_METRIC_HISTOGRAM,
                                                      .name = "botgate_bot_seconds",
                                                      .help = "Bot time.",
                                                      .bounds = b,
                                                      .n_bounds = nb},
                                    &f),
                     0);
    bg_metric_series *s = bg_metrics_series(f, NULL, NULL);
    unsigned long below[BG_METRICS_MAX_BOUNDS] = {0};
    unsigned seed = 12345;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        /* log-uniform over 1 ms .. 1000 s, plus exact bounds now and then */
        double v =
            (i % 97 == 0) ? b[(seed >> 8) % nb] : pow(10, -3 + 6.0 * (seed >> 8) / 16777216.0);
        bg_metric_observe(s, v);
        for (size_t k = 0; k < nb; k++)
            below[k] += v <= b[k];
    }
    xpo x;
    bg_metrics_buf buf;
    render_parse(&m, &x, &buf);
    char le[40];
    for (size_t k = 0; k < nb; k++) {
        snprintf(le, sizeof(le), "%g", b[k]);
        assert_int_equal(x_get(&x, "botgate_bot_seconds_bucket", "le", le, NULL), below[k]);
    }
    assert_int_equal(x_get(&x, "botgate_bot_seconds_count", NULL), n);
    x_free(&x);
    bg_metrics_buf_free(&buf);
    bg_metrics_free(&m);
}

/* The reader itself refuses what the format does not allow (it is what the other tests
 * trust). */
static void
test_reader_refuses(void **state)
{
    (void)state;
    const char *bad[] = {
        "a 1\n",                                          /* no HELP/TYPE */
        "# HELP a x\n# TYPE a counter\na 1",              /* no final newline */
        "# HELP a x\n# TYPE a counter\na{b=\"c} 1\n",     /* unterminated value */
        "# HELP a x\n# TYPE a counter\na{b=\"\\t\"} 1\n", /* bad escape */
        "# HELP a x\n# TYPE a counter\na 1x\n",           /* bad value */
        "# HELP a x\n# TYPE a counter\na 1\na 2\n",       /* repeated */
        "# HELP a x\n# TYPE a counter\n# HELP a y\n",     /* HELP twice */
        "# HELP a x\n# TYPE a wrong\n",                   /* bad type */
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
        "h_sum 1\nh_count 1\n", /* not cumulative */
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", /* no +Inf */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        xpo x;
        if (x_parse(&x, bad[i]) == 0) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            fail();
        }
        x_free(&x);
    }
    xpo x;
    assert_int_equal(x_parse(&x, "# HELP a x\n# TYPE a counter\na{b=\"q\\\"\\n\\\\\"} 1 -5\n"), 0);
    assert_int_equal(x_get(&x, "a", "b", "q\"\n\\", NULL), 1);
    x_free(&x);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram_init),         cmocka_unit_test(test_histogram_observe),
        cmocka_unit_test(test_registry_refuses),       cmocka_unit_test(test_series_bounded),
        cmocka_unit_test(test_render_parse_back),      cmocka_unit_test(test_values),
        cmocka_unit_test(test_histogram_exact_counts), cmocka_unit_test(test_reader_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
