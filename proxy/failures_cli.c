/*
 * `botgate failures` (failures.h): the failure records of the last minutes, newest
 * first, and a summary line per class — the triage view.
 *
 * A command line in the style of `botgate dlq` (dlq.c): the configuration read as
 * `botgate serve` reads it, one blocking hiredis connection (redis.timeout_ms as connect
 * and command timeout; an empty redis.url means the private redis of `botgate serve`),
 * exit status 0 shown (also when there is nothing to show), 1 Redis trouble, 2 bad usage
 * or configuration.
 *
 * The records are read with XREVRANGE from "+" down to the stream ID of now - since, in
 * pages: the IDs are Redis's clock in ms, the same clock as t_ms give or take the
 * round trip.
 */
#include "botgate/cli.h"
#include "botgate/config.h"
#include "botgate/config_file.h"
#include "botgate/error.h"
#include "botgate/failure.h"
#include "botgate/failures.h"
#include "botgate/redis_sync.h"

#include <errno.h>
#include <hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE 500
#define DEFAULT_SINCE_MS (15 * 60 * 1000LL)
#define DEFAULT_LIMIT 1000
#define N_CLASSES 9

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

struct st_args {
    const char *config_file;
    int64_t since_ms;
    long limit;
    bool json;
};

struct st_summary {
    long count;
    int64_t last_t_ms;
};

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: botgate failures [--since DURATION] [--limit N] [--json] [-c FILE]\n"
            "\n"
            "Failed calls to the bot and the key endpoints, recorded in <redis.stream>:failures,\n"
            "newest first: time, class, target, request id, detail; then one line per class\n"
            "with its count and the age of its newest record.\n"
            "\n"
            "--since   how far back, N followed by s, m, h or d (default 15m)\n"
            "--limit   records printed at most (default 1000; the summary counts them all)\n"
            "--json    one JSON object per line: the records, then one per class\n"
            "\n"
            "Classes: connect_refused connect_timeout dns tls timeout http_5xx http_4xx\n"
            "         token_expired_in_queue redis\n"
            "Exit status: 0 done (also with nothing to show), 1 Redis unreachable,\n"
            "2 bad usage or configuration.\n");
}

/* "90s", "15m", "2h", "7d" -> ms; -1 for anything else (no sign, no fraction, no
 * missing unit, at most 10 years). */
static int64_t
parse_duration(const char *s)
{
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno != 0 || end[0] == '\0' || end[1] != '\0')
        return -1;
    int64_t unit;
    switch (end[0]) {
    case 's':
        unit = 1000;
        break;
    case 'm':
        unit = 60 * 1000;
        break;
    case 'h':
        unit = 3600 * 1000;
        break;
    case 'd':
        unit = 86400 * 1000LL;
        break;
    default:
        return -1;
    }
    if (n > 3650ULL * 86400 * 1000 / (unsigned long long)unit)
        return -1;
    return (int64_t)n * unit;
}

static int
parse_args(int argc, char **argv, struct st_args *a)
{
    *a = (struct st_args){.since_ms = DEFAULT_SINCE_MS, .limit = DEFAULT_LIMIT};
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        bool has_value = i + 1 < argc;
        if ((strcmp(w, "-c") == 0 || strcmp(w, "--config") == 0) && has_value) {
            a->config_file = argv[++i];
        } else if (strcmp(w, "--json") == 0) {
            a->json = true;
        } else if (strcmp(w, "--since") == 0 && has_value) {
            if ((a->since_ms = parse_duration(argv[++i])) < 0) {
                fprintf(stderr,
                        "botgate failures: --since takes a duration like 90s, 15m, 2h or 7d, "
                        "not '%s'\n",
                        argv[i]);
                return EXIT_USAGE;
            }
        } else if (strcmp(w, "--limit") == 0 && has_value) {
            char *end;
            errno = 0;
            long n = strtol(argv[++i], &end, 10);
            if (errno != 0 || end == argv[i] || *end != '\0' || n < 1) {
                fprintf(stderr, "botgate failures: --limit takes a number >= 1, not '%s'\n",
                        argv[i]);
                return EXIT_USAGE;
            }
            a->limit = n;
        } else {
            fprintf(stderr, "botgate failures: unexpected argument '%s'\n", w);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    return 0;
}

/* ---- records ------------------------------------------------------------------------- */

struct st_record {
    const char *id;
    const char *t_ms, *cls, *target, *request_id, *detail; /* NULL when absent */
};

static int
read_record(const redisReply *e, struct st_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    rec->id = e->element[0]->str;
    const redisReply *f = e->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        if (f->element[i]->type != REDIS_REPLY_STRING ||
            f->element[i + 1]->type != REDIS_REPLY_STRING)
            continue;
        const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
        if (strcmp(k, BG_FAILURES_FIELD_T_MS) == 0)
            rec->t_ms = v;
        else if (strcmp(k, BG_FAILURES_FIELD_CLASS) == 0)
            rec->cls = v;
        else if (strcmp(k, BG_FAILURES_FIELD_TARGET) == 0)
            rec->target = v;
        else if (strcmp(k, BG_FAILURES_FIELD_REQUEST_ID) == 0)
            rec->request_id = v;
        else if (strcmp(k, BG_FAILURES_FIELD_DETAIL) == 0)
            rec->detail = v;
    }
    return 0;
}

/* The record's time: t_ms, else the ms of its stream ID. */
static int64_t
record_t_ms(const struct st_record *rec)
{
    const char *s = rec->t_ms != NULL ? rec->t_ms : rec->id;
    return (int64_t)strtoll(s, NULL, 10);
}

static void
format_time(int64_t t_ms, char *out, size_t cap)
{
    time_t t = (time_t)(t_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", base, (int)(t_ms % 1000));
}

/* A field for a terminal: absent "-", empty "\"\"", control bytes '?'. */
static void
put_text(const char *s)
{
    if (s == NULL) {
        fputs("-", stdout);
        return;
    }
    if (s[0] == '\0') {
        fputs("\"\"", stdout);
        return;
    }
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        putchar(c < 0x20 || c == 0x7f ? '?' : c);
    }
}

/* A JSON string, or null; invalid UTF-8 bytes past ASCII become '?'. */
static json_t *
json_text(const char *s)
{
    if (s == NULL)
        return json_null();
    json_t *v = json_string(s);
    if (v != NULL)
        return v;
    char *copy = strdup(s);
    if (copy == NULL)
        return json_null();
    for (char *p = copy; *p != '\0'; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(copy);
    free(copy);
    return v != NULL ? v : json_null();
}

static int
print_json(json_t *o)
{
    if (o == NULL)
        return -1;
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (line == NULL)
        return -1;
    int rc = puts(line) < 0 ? -1 : 0;
    free(line);
    return rc;
}

static int
print_record(const struct st_record *rec, bool as_json)
{
    int64_t t = record_t_ms(rec);
    char when[40];
    format_time(t, when, sizeof(when));
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "id", json_text(rec->id));
        json_object_set_new(o, "t_ms", json_integer(t));
        json_object_set_new(o, "time", json_string(when));
        json_object_set_new(o, "class", json_text(rec->cls));
        json_object_set_new(o, "target", json_text(rec->target));
        json_object_set_new(o, "request_id", json_text(rec->request_id));
        json_object_set_new(o, "detail", json_text(rec->detail));
        return print_json(o);
    }
    printf("%s  ", when);
    put_text(rec->cls);
    putchar(' ');
    put_text(rec->target);
    putchar(' ');
    put_text(rec->request_id);
    putchar(' ');
    put_text(rec->detail);
    return putchar('\n') == EOF ? -1 : 0;
}

static int
print_summary(const struct st_summary *sum, long other, int64_t now, bool as_json)
{
    for (size_t i = 0; i < N_CLASSES; i++) {
        if (sum[i].count == 0)
            continue;
        char age[32];
        bg_cli_format_age(now - sum[i].last_t_ms, age, sizeof(age));
        if (as_json) {
            json_t *o = json_object();
            json_object_set_new(o, "summary", json_string(bg_failure_classes[i]));
            json_object_set_new(o, "count", json_integer(sum[i].count));
            json_object_set_new(o, "last_t_ms", json_integer(sum[i].last_t_ms));
            json_object_set_new(o, "last_age_s", json_integer((now - sum[i].last_t_ms) / 1000));
            if (print_json(o) != 0)
                return -1;
        } else if (printf("%s: %ld, last %s ago\n", bg_failure_classes[i], sum[i].count, age) < 0) {
            return -1;
        }
    }
    if (other > 0 && !as_json)
        printf("(other: %ld records of no known class)\n", other);
    return 0;
}

static int
list(bg_redis_sync *s, const char *key, const struct st_args *a)
{
    int64_t now = bg_cli_wall_ms();
    int64_t from = now - a->since_ms;
    char min[32], end[48] = "+", count[16];
    snprintf(min, sizeof(min), "%" PRId64, from > 0 ? from : 0);
    snprintf(count, sizeof(count), "%d", PAGE);
    struct st_summary sum[N_CLASSES] = {{0}};
    long printed = 0, total = 0, other = 0;
    for (;;) {
        const char *argv[6] = {"XREVRANGE", key, end, min, "COUNT", count};
        redisReply *r = bg_redis_sync_command(s, 6, argv);
        if (r == NULL)
            return EXIT_FAIL;
        if (r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "botgate failures: %s: unexpected XREVRANGE answer\n", s->where);
            freeReplyObject(r);
            return EXIT_FAIL;
        }
        bool more = r->elements == PAGE;
        for (size_t i = 0; i < r->elements; i++) {
            struct st_record rec;
            if (read_record(r->element[i], &rec) != 0 || strlen(rec.id) >= sizeof(end) - 2) {
                more = false; /* not a stream entry: cannot page past it */
                continue;
            }
            snprintf(end, sizeof(end), "(%s", rec.id);
            total++;
            size_t ci = 0;
            while (ci < N_CLASSES &&
                   (rec.cls == NULL || strcmp(bg_failure_classes[ci], rec.cls) != 0))
                ci++;
            if (ci < N_CLASSES) {
                if (sum[ci].count++ == 0)
                    sum[ci].last_t_ms = record_t_ms(&rec); /* newest first */
            } else {
                other++;
            }
            if (printed < a->limit) {
                if (print_record(&rec, a->json) != 0) {
                    fprintf(stderr, "botgate failures: cannot write the list\n");
                    freeReplyObject(r);
                    return EXIT_FAIL;
                }
                printed++;
            }
        }
        freeReplyObject(r);
        if (!more)
            break;
    }
    if (total == 0 && !a->json)
        fprintf(stderr, "botgate failures: none in %s in the last %" PRId64 "s\n", key,
                a->since_ms / 1000);
    if (total > printed && !a->json)
        printf("(%ld more not shown: --limit %ld)\n", total - printed, a->limit);
    if (print_summary(sum, other, now, a->json) != 0)
        return EXIT_FAIL;
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

int
bg_failures_run(int argc, char **argv, char *const *envp)
{
    if (argc >= 1 && (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0 ||
                      strcmp(argv[0], "-h") == 0)) {
        usage(stdout);
        return EXIT_OK;
    }
    struct st_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc;
    bg_config cfg;
    char err[512];
    if ((rc = bg_config_read(&cfg, a.config_file, envp, err, sizeof(err))) != 0) {
        fprintf(stderr, "botgate: %s%s\n", rc == BG_ECONFIG ? "configuration: " : "", err);
        return rc == BG_ECONFIG ? EXIT_USAGE : EXIT_FAIL;
    }
    bg_redis_sync s = {0};
    size_t n = strlen(cfg.redis.stream) + sizeof(BG_FAILURES_SUFFIX);
    char *key = malloc(n);
    if (key == NULL) {
        rc = EXIT_FAIL;
        goto out;
    }
    snprintf(key, n, "%s" BG_FAILURES_SUFFIX, cfg.redis.stream);
    if ((rc = bg_redis_sync_target(&s, "botgate failures", &cfg, err, sizeof(err))) != 0) {
        if (rc == BG_ECONFIG)
            fprintf(stderr, "botgate: configuration: %s\n", err);
        rc = rc == BG_ECONFIG ? EXIT_USAGE : EXIT_FAIL;
        goto out;
    }
    if (bg_redis_sync_connect(&s, cfg.redis.timeout_ms) != 0) {
        rc = EXIT_FAIL;
        goto out;
    }
    rc = list(&s, key, &a);
out:
    bg_redis_sync_close(&s);
    free(key);
    bg_config_free(&cfg);
    return rc;
}
