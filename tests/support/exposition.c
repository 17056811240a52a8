/*
 * The Prometheus text format 0.0.4 reader of exposition.h, shared by the unit and
 * integration metrics tests.
 */
#include "exposition.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void
x_free(xpo *x)
{
    free(x->s);
    memset(x, 0, sizeof(*x));
}

/* Parses text (the whole body). 0, or -1 with the reason in x->err. */
int
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
double
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

const xfamily *
x_fam(const xpo *x, const char *name)
{
    for (size_t i = 0; i < x->n_fam; i++)
        if (strcmp(x->fam[i].name, name) == 0)
            return &x->fam[i];
    return NULL;
}
