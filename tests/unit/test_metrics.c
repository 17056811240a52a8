/*
 * policy/metrics.c: histograms, the registry's bounds, and the exposition, checked by
 * parsing it back with a reader written from the format's grammar
 * (tests/support/exposition.c), not from the writer: every line must parse, HELP and TYPE
 * come once per family before its samples, histogram buckets are cumulative and end in
 * +Inf = _count, and every count is exact.
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
#include "exposition.h"

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
