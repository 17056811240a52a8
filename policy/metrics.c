/*
 * Metrics registry and the Prometheus text exposition format 0.0.4 (see botgate/metrics.h).
 *
 * Updates are the hot path (every request counts itself): a series is a plain struct at a
 * fixed address and an update is an addition. Everything that allocates or searches —
 * registering a family, making a series, rendering — happens at start-up, on a new label
 * value, or when /metrics is scraped.
 */
#include "botgate/metrics.h"
#include "botgate/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- histograms ------------------------------------------------------------------------ */

int
bg_histogram_init(bg_histogram *h, const double *bounds, size_t n_bounds)
{
    if (n_bounds > BG_METRICS_MAX_BOUNDS || (n_bounds > 0 && bounds == NULL))
        return BG_EINVAL;
    for (size_t i = 0; i < n_bounds; i++)
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return BG_EINVAL;
    memset(h, 0, sizeof(*h));
    h->n_bounds = n_bounds;
    if (n_bounds > 0)
        memcpy(h->bounds, bounds, n_bounds * sizeof(bounds[0]));
    return 0;
}

/* A linear scan: at most two dozen bounds, and the usual value sits in the first few. */
void
bg_histogram_observe(bg_histogram *h, double v)
{
    if (isnan(v))
        return;
    size_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum += v;
}

/* ---- the registry ------------------------------------------------------------------------ */

void
bg_metrics_init(bg_metrics *m)
{
    memset(m, 0, sizeof(*m));
}

static void
family_free(bg_metric_family *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n_series; i++) {
        for (size_t j = 0; j < BG_METRICS_MAX_LABELS; j++)
            free(f->series[i].labels[j]);
        free(f->series[i].hist);
    }
    free(f->series);
    for (size_t j = 0; j < BG_METRICS_MAX_LABELS; j++)
        free(f->label_names[j]);
    free(f->name);
    free(f->help);
    free(f);
}

void
bg_metrics_free(bg_metrics *m)
{
    for (size_t i = 0; i < m->n_families; i++)
        family_free(m->families[i]);
    free(m->families);
    memset(m, 0, sizeof(*m));
}

static int
is_name(const char *s, int colon_ok)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        int alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

bg_metric_family *
bg_metrics_find(const bg_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->n_families; i++)
        if (strcmp(m->families[i]->name, name) == 0)
            return m->families[i];
    return NULL;
}

static int
check_desc(const bg_metrics *m, const bg_metric_desc *d, size_t *n_labels)
{
    if (d->type != BG_METRIC_COUNTER && d->type != BG_METRIC_GAUGE &&
        d->type != BG_METRIC_HISTOGRAM)
        return BG_EINVAL;
    if (!is_name(d->name, 1) || bg_metrics_find(m, d->name) != NULL)
        return BG_EINVAL;
    size_t n = 0;
    while (n < BG_METRICS_MAX_LABELS && d->labels[n] != NULL) {
        const char *l = d->labels[n];
        if (!is_name(l, 0) || strncmp(l, "__", 2) == 0 ||
            (d->type == BG_METRIC_HISTOGRAM && strcmp(l, "le") == 0))
            return BG_EINVAL;
        for (size_t k = 0; k < n; k++)
            if (strcmp(d->labels[k], l) == 0)
                return BG_EINVAL;
        n++;
    }
    /* a family without labels has exactly one series */
    if (n == 0 && d->max_series > 1)
        return BG_EINVAL;
    *n_labels = n;
    return 0;
}

int
bg_metrics_add(bg_metrics *m, const bg_metric_desc *d, bg_metric_family **out)
{
    size_t n_labels;
    int rc = check_desc(m, d, &n_labels);
    if (rc != 0)
        return rc;
    bg_metric_family *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return BG_ENOMEM;
    f->type = d->type;
    f->n_labels = n_labels;
    f->max_series = d->max_series > 0 ? d->max_series : 1;
    if (d->type == BG_METRIC_HISTOGRAM &&
        bg_histogram_init(&f->proto, d->bounds, d->n_bounds) != 0) {
        free(f);
        return BG_EINVAL;
    }
    f->name = strdup(d->name);
    f->help = strdup(d->help != NULL ? d->help : "");
    f->series = calloc(f->max_series, sizeof(f->series[0]));
    int ok = f->name != NULL && f->help != NULL && f->series != NULL;
    for (size_t i = 0; ok && i < n_labels; i++)
        ok = (f->label_names[i] = strdup(d->labels[i])) != NULL;
    if (ok && m->n_families == m->cap_families) {
        size_t cap = m->cap_families ? m->cap_families * 2 : 32;
        bg_metric_family **v = realloc(m->families, cap * sizeof(*v));
        if ((ok = v != NULL)) {
            m->families = v;
            m->cap_families = cap;
        }
    }
    if (ok && n_labels == 0)
        ok = bg_metrics_series(f, NULL, NULL) != NULL;
    if (!ok) {
        family_free(f);
        return BG_ENOMEM;
    }
    m->families[m->n_families++] = f;
    if (out != NULL)
        *out = f;
    return 0;
}

bg_metric_series *
bg_metrics_series(bg_metric_family *f, const char *v0, const char *v1)
{
    const char *want[BG_METRICS_MAX_LABELS] = {v0 != NULL ? v0 : "", v1 != NULL ? v1 : ""};
    for (size_t i = 0; i < f->n_series; i++) {
        bg_metric_series *s = &f->series[i];
        size_t j = 0;
        while (j < f->n_labels && strcmp(s->labels[j], want[j]) == 0)
            j++;
        if (j == f->n_labels)
            return s;
    }
    if (f->n_series == f->max_series) {
        f->dropped++;
        return NULL;
    }
    bg_metric_series *s = &f->series[f->n_series];
    memset(s, 0, sizeof(*s));
    for (size_t j = 0; j < f->n_labels; j++) {
        if ((s->labels[j] = strdup(want[j])) == NULL)
            goto nomem;
    }
    if (f->type == BG_METRIC_HISTOGRAM) {
        if ((s->hist = malloc(sizeof(*s->hist))) == NULL)
            goto nomem;
        *s->hist = f->proto;
    }
    s->absent = f->type == BG_METRIC_GAUGE; /* a gauge shows once it has been set */
    f->n_series++;
    return s;
nomem:
    for (size_t j = 0; j < f->n_labels; j++)
        free(s->labels[j]);
    memset(s, 0, sizeof(*s));
    return NULL;
}

void
bg_metric_inc(bg_metric_series *s)
{
    if (s != NULL)
        s->value += 1;
}

void
bg_metric_add(bg_metric_series *s, double v)
{
    if (s != NULL && v >= 0)
        s->value += v;
}

void
bg_metric_set(bg_metric_series *s, double v)
{
    if (s != NULL) {
        s->value = v;
        s->absent = 0;
    }
}

void
bg_metric_clear(bg_metric_series *s)
{
    if (s != NULL)
        s->absent = 1;
}

void
bg_metric_observe(bg_metric_series *s, double v)
{
    if (s != NULL && s->hist != NULL)
        bg_histogram_observe(s->hist, v);
}

/* ---- the exposition ------------------------------------------------------------------------ */

void
bg_metrics_buf_free(bg_metrics_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* The writer keeps the first failure and ignores everything after it. */
struct st_writer {
    bg_metrics_buf *b;
    int err;
};

static int
reserve(struct st_writer *w, size_t more)
{
    bg_metrics_buf *b = w->b;
    if (w->err != 0)
        return -1;
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        w->err = BG_ENOMEM;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void
put(struct st_writer *w, const char *s, size_t len)
{
    if (reserve(w, len) != 0)
        return;
    memcpy(w->b->p + w->b->len, s, len);
    w->b->len += len;
    w->b->p[w->b->len] = '\0';
}

static void
puts_(struct st_writer *w, const char *s)
{
    put(w, s, strlen(s));
}

/* Escapes '\' and newline, and with quotes also '"' (HELP text has no quotes to escape). */
static void
put_escaped(struct st_writer *w, const char *s, int quotes)
{
    const char *run = s;
    for (const char *p = s;; p++) {
        const char *esc = NULL;
        if (*p == '\\')
            esc = "\\\\";
        else if (*p == '\n')
            esc = "\\n";
        else if (quotes && *p == '"')
            esc = "\\\"";
        else if (*p != '\0')
            continue;
        put(w, run, (size_t)(p - run));
        if (esc == NULL)
            return;
        puts_(w, esc);
        run = p + 1;
    }
}

/* Integers exactly; other values in the shortest %g form that reads back the same. */
static void
format_value(char *buf, size_t cap, double v)
{
    if (isnan(v)) {
        snprintf(buf, cap, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(buf, cap, "%lld", (long long)v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, cap, "%.*g", prec, v);
            if (strtod(buf, NULL) == v)
                break;
        }
    }
}

static void
put_value(struct st_writer *w, double v)
{
    char buf[40];
    format_value(buf, sizeof(buf), v);
    puts_(w, buf);
}

/* {a="x",b="y"} plus, for buckets, le="..."; nothing at all when there is no label. */
static void
put_labels(struct st_writer *w, const bg_metric_family *f, const bg_metric_series *s,
           const char *le)
{
    if (f->n_labels == 0 && le == NULL)
        return;
    puts_(w, "{");
    for (size_t j = 0; j < f->n_labels; j++) {
        if (j > 0)
            puts_(w, ",");
        puts_(w, f->label_names[j]);
        puts_(w, "=\"");
        put_escaped(w, s->labels[j], 1);
        puts_(w, "\"");
    }
    if (le != NULL) {
        puts_(w, f->n_labels > 0 ? ",le=\"" : "le=\"");
        puts_(w, le);
        puts_(w, "\"");
    }
    puts_(w, "}");
}

static void
put_sample(struct st_writer *w, const bg_metric_family *f, const char *suffix,
           const bg_metric_series *s, const char *le, double v)
{
    puts_(w, f->name);
    puts_(w, suffix);
    put_labels(w, f, s, le);
    puts_(w, " ");
    put_value(w, v);
    puts_(w, "\n");
}

static void
put_histogram(struct st_writer *w, const bg_metric_family *f, const bg_metric_series *s)
{
    const bg_histogram *h = s->hist;
    uint64_t cumulative = 0;
    char le[40];
    for (size_t i = 0; i < h->n_bounds; i++) {
        cumulative += h->buckets[i];
        format_value(le, sizeof(le), h->bounds[i]);
        put_sample(w, f, "_bucket", s, le, (double)cumulative);
    }
    put_sample(w, f, "_bucket", s, "+Inf", (double)h->count);
    put_sample(w, f, "_sum", s, NULL, h->sum);
    put_sample(w, f, "_count", s, NULL, (double)h->count);
}

static int
family_has_samples(const bg_metric_family *f)
{
    for (size_t i = 0; i < f->n_series; i++)
        if (!f->series[i].absent)
            return 1;
    return 0;
}

int
bg_metrics_render(const bg_metrics *m, bg_metrics_buf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    struct st_writer w = {out, 0};
    for (size_t i = 0; i < m->n_families; i++) {
        const bg_metric_family *f = m->families[i];
        if (!family_has_samples(f))
            continue;
        puts_(&w, "# HELP ");
        puts_(&w, f->name);
        puts_(&w, " ");
        put_escaped(&w, f->help, 0);
        puts_(&w, "\n# TYPE ");
        puts_(&w, f->name);
        puts_(&w, " ");
        puts_(&w, type_names[f->type]);
        puts_(&w, "\n");
        for (size_t j = 0; j < f->n_series; j++) {
            const bg_metric_series *s = &f->series[j];
            if (s->absent)
                continue;
            if (f->type == BG_METRIC_HISTOGRAM)
                put_histogram(&w, f, s);
            else
                put_sample(&w, f, "", s, NULL, s->value);
        }
    }
    return w.err;
}
