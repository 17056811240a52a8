/*
 * A reader of the Prometheus text format 0.0.4, written from the format's grammar rather
 * than from botgate's writer, so that the unit and integration metrics tests check the
 * exposition against the format and not against itself: every line must parse, HELP and
 * TYPE come once per family before its samples, histogram buckets are cumulative in
 * ascending le and end in +Inf = _count.
 */
#ifndef BOTGATE_TESTS_EXPOSITION_H
#define BOTGATE_TESTS_EXPOSITION_H

#include <stddef.h>

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

/* Parses text (the whole body). 0, or -1 with the reason in x->err; x_free it either way. */
int x_parse(xpo *x, const char *text);

/* The sample named name whose labels are exactly the given pairs (NULL-terminated
 * name/value list); NAN when there is none. */
double x_get(const xpo *x, const char *name, ...);

/* The family named name, or NULL. */
const xfamily *x_fam(const xpo *x, const char *name);

void x_free(xpo *x);

#endif
