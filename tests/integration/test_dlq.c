/*
 * `botgate dlq`, end to end: a real redis-server holding dead letters written exactly as
 * the dispatcher writes them (dlq.h), and the real botgate binary run as an operator
 * would run it. What is checked is what the operator relies on: the list's lines and
 * JSON, that a replay puts the very same bytes back on the main stream (oldest first,
 * under a new ID) and takes them off the dead-letter stream, that a drop drops, and the
 * exit status: 0 done, 1 no such ID or Redis unreachable, 2 bad usage or configuration.
 *
 * Under ASan a leak makes botgate's exit status non-zero, so every status check is also a
 * leak check.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "botgate/dlq.h"
#include "botgate/entry.h"
#include "harness.h"

#define STREAM "botgate:activities"
#define DLQ STREAM BG_DLQ_SUFFIX
#define SERVICE_URL "https://smba.trafficmanager.net/emea/"
#define RUN_TIMEOUT_MS 20000

static bgt_env env;
static bgt_redis redis;
static char config[BGT_PATH_MAX]; /* redis.url = the test's redis, default stream */

/* ---- helpers ---------------------------------------------------------------------------- */

/* Writes a configuration file named `name` in the run's directory; path into out. */
static void
write_config(char *out, const char *name, const char *yaml)
{
    bgt_path(out, BGT_PATH_MAX, env.dir, name);
    assert_int_equal(bgt_write_file(out, yaml, -1), 0);
}

/*
 * Runs `botgate dlq ARGS... -c cfg` (the words after "dlq", NULL-terminated; cfg NULL:
 * no -c). Returns the exit status; *out and *err (malloc'd, NUL-terminated, never NULL)
 * receive its stdout and stderr.
 */
static int
run_dlq(char **out, char **err, const char *cfg, ...)
{
    const char *args[24];
    int n = 0;
    args[n++] = "dlq";
    va_list ap;
    va_start(ap, cfg);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 20;)
        args[n++] = a;
    va_end(ap);
    if (cfg != NULL) {
        args[n++] = "-c";
        args[n++] = cfg;
    }
    args[n] = NULL;
    return bgt_botgate_run_output(args, env.dir, "dlq-run", RUN_TIMEOUT_MS, out, err);
}

/* Runs and asserts the exit status, printing both outputs when it differs. */
static void
expect_status(int want, char **out, char **err, int rc)
{
    if (rc != want)
        fail_msg("botgate dlq: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", rc, want, *out, *err);
}

static void
del_keys(const char *stream)
{
    char dlq[256], retry[256];
    snprintf(dlq, sizeof(dlq), "%s" BG_DLQ_SUFFIX, stream);
    snprintf(retry, sizeof(retry), "%s" BG_RETRY_SUFFIX, stream);
    redisReply *r = bgt_redis_cmd(&redis, "DEL %s %s %s", stream, dlq, retry);
    assert_non_null(r);
    freeReplyObject(r);
}

/* A queue entry as ingress stores it: the activity's fields, two forwarded headers, the
 * body bytes. malloc'd msgpack; *len its size. */
static char *
make_entry(const char *type, const char *activity_id, const char *conversation_id,
           int64_t token_exp, size_t *len)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"type\":\"%s\",\"id\":\"%s\",\"channelId\":\"msteams\",\"serviceUrl\":\"%s\","
             "\"conversation\":{\"id\":\"c\"},\"text\":\"hello\"}",
             type, activity_id, SERVICE_URL);
    bg_entry e;
    memset(&e, 0, sizeof(e));
    e.version = BG_ENTRY_VERSION;
    e.request_id = (bg_slice){"req-1", 5};
    e.received_at_us = bgt_wall_us();
    e.activity_id = (bg_slice){activity_id, strlen(activity_id)};
    e.type = (bg_slice){type, strlen(type)};
    e.channel_id = (bg_slice){"msteams", 7};
    e.conversation_id = (bg_slice){conversation_id, strlen(conversation_id)};
    e.service_url = (bg_slice){SERVICE_URL, strlen(SERVICE_URL)};
    e.token_exp = token_exp;
    e.n_headers = 2;
    e.headers[0] = (bg_entry_header){{"content-type", 12}, {"application/json", 16}};
    e.headers[1] = (bg_entry_header){{"authorization", 13}, {"Bearer abc.def.ghi", 18}};
    e.body = (bg_slice){body, strlen(body)};
    char *out;
    assert_int_equal(bg_entry_encode(&e, &out, len), 0);
    return out;
}

/* One dead letter as the dispatcher writes it. */
typedef struct letter {
    char id[64]; /* its ID in the dead-letter stream, once added */
    char *entry; /* msgpack (or anything, for a broken letter) */
    size_t entry_len;
} letter;

/*
 * XADDs a dead letter (fields in dlq.h's order) to `dlq` under `id` ("*": Redis picks) and
 * records its ID in l->id. The entry is l->entry.
 */
static void
add_letter_at(letter *l, const char *dlq, const char *id, const char *reason, int attempts,
              int last_status, const char *error, const char *original_id, int64_t failed_at_ms)
{
    redisReply *r = bgt_redis_cmd(&redis,
                                  "XADD %s %s entry %b reason %s attempts %d last_status %d "
                                  "error %s original_id %s failed_at_ms %lld",
                                  dlq, id, l->entry, l->entry_len, reason, attempts, last_status,
                                  error, original_id, (long long)failed_at_ms);
    assert_non_null(r);
    if (r->type != REDIS_REPLY_STRING)
        fail_msg("XADD %s: reply type %d %s", dlq, r->type,
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
    snprintf(l->id, sizeof(l->id), "%s", r->str);
    freeReplyObject(r);
}

/* A dead letter of a `type` activity in conversation `conv`, dead-lettered `age_ms` ago. */
static void
add_letter(letter *l, const char *type, const char *activity_id, const char *conv,
           const char *reason, int attempts, int last_status, const char *error, int64_t age_ms)
{
    l->entry = make_entry(type, activity_id, conv, 0, &l->entry_len);
    add_letter_at(l, DLQ, "*", reason, attempts, last_status, error, "1715678467301-0",
                  bgt_wall_us() / 1000 - age_ms);
}

static void
letters_free(letter *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].entry);
}

/* Splits text into lines in place; returns how many (at most cap). */
static size_t
split_lines(char *text, char **lines, size_t cap)
{
    size_t n = 0;
    for (char *p = text; *p != '\0' && n < cap;) {
        char *nl = strchr(p, '\n');
        lines[n++] = p;
        if (nl == NULL)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    return n;
}

/*
 * Asserts that a list line is "<id>  <age>  <rest>" with age one of `ages` (a slow machine
 * may take a second longer between writing the letter and listing it).
 */
static void
assert_list_line(const char *line, const char *id, const char *const *ages, const char *rest)
{
    for (; *ages != NULL; ages++) {
        char want[512];
        snprintf(want, sizeof(want), "%s  %s  %s", id, *ages, rest);
        if (strcmp(line, want) == 0)
            return;
    }
    fail_msg("list line \"%s\" is not \"%s  <age>  %s\"", line, id, rest);
}

/* Asserts that the stream holds exactly these entries' bytes, in this order. */
static void
assert_stream_holds(const char *stream, letter *const *want, size_t n)
{
    bgt_stream_entry *v;
    size_t got;
    assert_int_equal(bgt_redis_xrange(&redis, stream, &v, &got), 0);
    if (got != n)
        fail_msg("%s holds %zu entries, want %zu", stream, got, n);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(v[i].entry);
        assert_int_equal(v[i].n_fields, 1); /* XADD <stream> * entry <bytes>: nothing else */
        if (v[i].entry_len != want[i]->entry_len ||
            memcmp(v[i].entry, want[i]->entry, want[i]->entry_len) != 0)
            fail_msg("%s entry %zu (%s) is not the bytes of dead letter %s", stream, i, v[i].id,
                     want[i]->id);
    }
    bgt_stream_entries_free(v, got);
}

/* The IDs left in the dead-letter stream, as one space-separated string (malloc'd). */
static char *
dlq_ids(const char *dlq)
{
    bgt_stream_entry *v;
    size_t n;
    assert_int_equal(bgt_redis_xrange(&redis, dlq, &v, &n), 0);
    size_t cap = 1 + n * 64;
    char *s = calloc(1, cap);
    for (size_t i = 0; i < n; i++) {
        strcat(s, i > 0 ? " " : "");
        strcat(s, v[i].id);
    }
    bgt_stream_entries_free(v, n);
    return s;
}

/* ---- set-up ------------------------------------------------------------------------------ */

static int
group_setup(void **state)
{
    (void)state;
    if (bgt_redis_start(&redis, env.dir, "dlq", NULL) != 0)
        return -1;
    char yaml[512];
    snprintf(yaml, sizeof(yaml), "redis:\n  url: \"%s\"\n  timeout_ms: 2000\n", redis.url);
    bgt_path(config, sizeof(config), env.dir, "dlq.yaml");
    return bgt_write_file(config, yaml, -1);
}

static int
group_teardown(void **state)
{
    (void)state;
    if (redis.ctx != NULL)
        redisFree(redis.ctx);
    redis.ctx = NULL;
    return bgt_redis_stop(&redis);
}

static int
reset(void **state)
{
    (void)state;
    del_keys(STREAM);
    return 0;
}

/* ---- list ---------------------------------------------------------------------------------- */

/* Text: newest first, one line per letter with id, age, type, conversation, reason,
 * attempts and last status; a transport error's text; a letter whose entry does not
 * decode shows "?"; a hostile conversation id cannot break the line or reach the
 * terminal as an escape sequence. */
static void
test_list_text(void **state)
{
    (void)state;
    letter l[5];
    add_letter(&l[0], "message", "a1", "19:3e1f@thread.tacv2", "http_4xx", 1, 400, "",
               192 * 1000 + 500);
    add_letter(&l[1], "conversationUpdate", "a2", "a:1Zx", "max_attempts", 10, 503, "",
               (2 * 3600 + 5 * 60) * 1000 + 500);
    add_letter(&l[2], "message", "a3", "c3", "max_attempts", 10, 0, "connection refused", 0);
    l[3].entry = strdup("not msgpack");
    l[3].entry_len = strlen(l[3].entry);
    add_letter_at(&l[3], DLQ, "*", "bad_entry", 0, 0, "", "5-0", bgt_wall_us() / 1000);
    add_letter(&l[4], "message", "a5", "evil\x1b[31m\nnext", "token_expired_in_queue", 0, 0, "",
               3 * 86400 * 1000 + 4 * 3600 * 1000 + 1000);

    char *out, *err;
    expect_status(0, &out, &err, run_dlq(&out, &err, config, "list", NULL));
    char *lines[16];
    size_t n = split_lines(out, lines, 16);
    if (n != 5)
        fail_msg("%zu lines, want 5:\n%s", n, out);
    static const char *const now[] = {"0s", "1s", "2s", "3s", NULL};
    static const char *const days[] = {"3d04h", NULL};
    static const char *const hours[] = {"2h05m", NULL};
    static const char *const minutes[] = {"3m12s", "3m13s", "3m14s", "3m15s", NULL};
    /* newest first: l[4], l[3], l[2], l[1], l[0] */
    assert_list_line(lines[0], l[4].id, days,
                     "message  evil?[31m?next  token_expired_in_queue  attempts=0  status=0");
    assert_list_line(lines[1], l[3].id, now, "?  ?  bad_entry  attempts=0  status=0");
    assert_list_line(lines[2], l[2].id, now,
                     "message  c3  max_attempts  attempts=10  status=0  error=connection refused");
    assert_list_line(lines[3], l[1].id, hours,
                     "conversationUpdate  a:1Zx  max_attempts  attempts=10  status=503");
    assert_list_line(lines[4], l[0].id, minutes,
                     "message  19:3e1f@thread.tacv2  http_4xx  attempts=1  status=400");
    free(out);
    free(err);

    /* Listing changes nothing. */
    assert_int_equal(bgt_redis_xlen(&redis, DLQ), 5);
    assert_int_equal(bgt_redis_xlen(&redis, STREAM), 0);
    letters_free(l, 5);
}

/* --json: one object per line with the same fields, numbers as numbers, plus
 * activity_id; a letter whose entry does not decode has nulls for the activity. */
static void
test_list_json(void **state)
{
    (void)state;
    letter l[3];
    add_letter(&l[0], "message", "1715678467301", "19:3e1f@thread.tacv2", "http_4xx", 1, 404, "",
               75 * 1000 + 500);
    add_letter(&l[1], "invoke", "f:9", "a:1Zx", "max_attempts", 10, 0, "timeout", 0);
    l[2].entry = strdup("\xc1");
    l[2].entry_len = 1;
    add_letter_at(&l[2], DLQ, "*", "bad_entry", 0, 0, "", "7-0", bgt_wall_us() / 1000);

    char *out, *err;
    expect_status(0, &out, &err, run_dlq(&out, &err, config, "list", "--json", NULL));
    char *lines[8];
    size_t n = split_lines(out, lines, 8);
    assert_int_equal(n, 3);
    json_t *o[3];
    for (size_t i = 0; i < n; i++) {
        json_error_t jerr;
        o[i] = json_loads(lines[i], 0, &jerr);
        if (o[i] == NULL || !json_is_object(o[i]))
            fail_msg("line %zu is not a JSON object (%s): %s", i, jerr.text, lines[i]);
    }
    /* newest first */
    assert_string_equal(json_string_value(json_object_get(o[0], "id")), l[2].id);
    assert_true(json_is_null(json_object_get(o[0], "type")));
    assert_true(json_is_null(json_object_get(o[0], "conversation_id")));
    assert_true(json_is_null(json_object_get(o[0], "activity_id")));
    assert_string_equal(json_string_value(json_object_get(o[0], "reason")), "bad_entry");

    assert_string_equal(json_string_value(json_object_get(o[1], "id")), l[1].id);
    assert_string_equal(json_string_value(json_object_get(o[1], "type")), "invoke");
    assert_string_equal(json_string_value(json_object_get(o[1], "conversation_id")), "a:1Zx");
    assert_string_equal(json_string_value(json_object_get(o[1], "activity_id")), "f:9");
    assert_int_equal(json_integer_value(json_object_get(o[1], "attempts")), 10);
    assert_int_equal(json_integer_value(json_object_get(o[1], "last_status")), 0);
    assert_string_equal(json_string_value(json_object_get(o[1], "error")), "timeout");

    json_t *first = o[2];
    assert_string_equal(json_string_value(json_object_get(first, "id")), l[0].id);
    assert_string_equal(json_string_value(json_object_get(first, "type")), "message");
    assert_string_equal(json_string_value(json_object_get(first, "conversation_id")),
                        "19:3e1f@thread.tacv2");
    assert_string_equal(json_string_value(json_object_get(first, "activity_id")), "1715678467301");
    assert_string_equal(json_string_value(json_object_get(first, "reason")), "http_4xx");
    assert_true(json_is_integer(json_object_get(first, "attempts")));
    assert_int_equal(json_integer_value(json_object_get(first, "attempts")), 1);
    assert_int_equal(json_integer_value(json_object_get(first, "last_status")), 404);
    assert_string_equal(json_string_value(json_object_get(first, "original_id")),
                        "1715678467301-0");
    const char *age = json_string_value(json_object_get(first, "age"));
    assert_non_null(age);
    assert_true(strcmp(age, "1m15s") == 0 || strcmp(age, "1m16s") == 0 ||
                strcmp(age, "1m17s") == 0 || strcmp(age, "1m18s") == 0);
    json_int_t age_ms = json_integer_value(json_object_get(first, "age_ms"));
    assert_true(age_ms >= 75000 && age_ms < 79000);
    assert_true(json_is_integer(json_object_get(first, "failed_at_ms")));
    for (size_t i = 0; i < n; i++)
        json_decref(o[i]);
    free(out);
    free(err);
    letters_free(l, 3);
}

/* --limit N: the N newest; more letters than one page (100) come out whole and in order. */
static void
test_list_limit_and_pages(void **state)
{
    (void)state;
    enum { N = 250 };
    letter *l = calloc(N, sizeof(*l));
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof(id), "m%d", i);
        add_letter(&l[i], "message", id, "c", "http_4xx", 1, 400, "", 0);
    }
    char *out, *err;
    expect_status(0, &out, &err, run_dlq(&out, &err, config, "list", "--limit", "2", NULL));
    char **lines = calloc(N + 8, sizeof(*lines));
    size_t n = split_lines(out, lines, N + 8);
    assert_int_equal(n, 2);
    assert_memory_equal(lines[0], l[N - 1].id, strlen(l[N - 1].id));
    assert_memory_equal(lines[1], l[N - 2].id, strlen(l[N - 2].id));
    free(out);
    free(err);

    expect_status(0, &out, &err, run_dlq(&out, &err, config, "list", "--limit", "120", NULL));
    assert_int_equal(split_lines(out, lines, N + 8), 120);
    free(out);
    free(err);

    expect_status(0, &out, &err, run_dlq(&out, &err, config, "list", NULL));
    n = split_lines(out, lines, N + 8);
    assert_int_equal(n, N);
    for (size_t i = 0; i < n; i++) {
        const char *id = l[N - 1 - i].id;
        if (strncmp(lines[i], id, strlen(id)) != 0 || lines[i][strlen(id)] != ' ')
            fail_msg("line %zu is %s, want id %s", i, lines[i], id);
    }
    free(out);
    free(err);
    free(lines);
    letters_free(l, N);
    free(l);
}

/* An empty (or missing) dead-letter stream: nothing on stdout, exit 0. */
static void
test_list_empty(void **state)
{
    (void)state;
    char *out, *err;
    expect_status(0, &out, &err, run_dlq(&out, &err, config, "list", NULL));
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "no dead letters"));
    free(out);
    free(err);
    expect_status(0, &out, &err, run_dlq(&out, &err, config, "list", "--json", NULL));
    assert_string_equal(out, "");
    free(out);
    free(err);
}

/* ---- replay -------------------------------------------------------------------------------- */

/* replay ID: the main stream gains the very bytes under a new ID, the dead-letter stream
 * loses that letter and keeps the others; replaying it again finds nothing (exit 1). */
static void
test_replay_one(void **state)
{
    (void)state;
    letter l[2];
    add_letter(&l[0], "message", "a1", "c1", "http_4xx", 1, 400, "", 0);
    add_letter(&l[1], "message", "a2", "c2", "http_4xx", 1, 400, "", 0);
    char *out, *err;
    expect_status(0, &out, &err, run_dlq(&out, &err, config, "replay", l[0].id, NULL));
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "replayed %s as ", l[0].id);
    assert_memory_equal(out, prefix, strlen(prefix));
    bgt_stream_entry *v;
    size_t n;
    assert_int_equal(bgt_redis_xrange(&redis, STREAM, &v, &n), 0);
    assert_int_equal(n, 1);
    char want_line[256];
    snprintf(want_line, sizeof(want_line), "%s%s\n", prefix, v[0].id);
    assert_string_equal(out, want_line);
    assert_string_not_equal(v[0].id, l[0].id);
    bgt_stream_entries_free(v, n);
    letter *want[] = {&l[0]};
    assert_stream_holds(STREAM, want, 1);
    char *left = dlq_ids(DLQ);
    assert_string_equal(left, l[1].id);
    free(left);
    free(out);
    free(err);

    expect_status(1, &out, &err, run_dlq(&out, &err, config, "replay", l[0].id, NULL));
    assert_non_null(strstr(err, "no dead letter"));
    assert_int_equal(bgt_redis_xlen(&redis, STREAM), 1);
    free(out);
    free(err);
    letters_free(l, 2);
}

/* replay --all: oldest first, so each conversation's activities return in their order;
 * more than one page (100) of letters; the dead-letter stream ends empty. */
static void
test_replay_all_order(void **state)
{
    (void)state;
    enum { N = 230 };
    letter *l = calloc(N, sizeof(*l));
    for (int i = 0; i < N; i++) {
        char id[16], conv[16];
        snprintf(id, sizeof(id), "m%d", i);
        snprintf(conv, sizeof(conv), "conv-%d", i % 3); /* interleaved conversations */
        add_letter(&l[i], "message", id, conv, "max_attempts", 10, 503, "", 0);
    }
    char *out, *err;
    expect_status(0, &out, &err, run_dlq(&out, &err, config, "replay", "--all", NULL));
    char **lines = calloc(N + 8, sizeof(*lines));
    size_t n = split_lines(out, lines, N + 8);
    assert_int_equal(n, N + 1);
    for (size_t i = 0; i < N; i++) {
        char prefix[128];
        snprintf(prefix, sizeof(prefix), "replayed %s as ", l[i].id);
        if (strncmp(lines[i], prefix, strlen(prefix)) != 0)
            fail_msg("line %zu is \"%s\", want it to start \"%s\"", i, lines[i], prefix);
    }
    assert_string_equal(lines[N], "replayed 230 entries");
    letter **want = calloc(N, sizeof(*want));
    for (int i = 0; i < N; i++)
        want[i] = &l[i];
    assert_stream_holds(STREAM, want, N);
    assert_int_equal(bgt_redis_xlen(&redis, DLQ), 0);
    free(out);
    free(err);

    /* Nothing left: still success. */
    expect_status(0, &out, &err, run_dlq(&out, &err, config, "replay", "--all", NULL));
    assert_string_equal(out, "replayed 0 entries\n");
    free(out);
    free(err);
    free(want);
    free(lines);
    letters_free(l, N);
    free(l);
}

/* An ID given as milliseconds alone means "<ms>-0" (as XDEL reads it), never another entry
 * of the same millisecond. */
static void
test_replay_ms_only_id(void **state)
{
    (void)state;
    letter l[2];
    l[0].entry = make_entry("message", "a", "c", 0, &l[0].entry_len);
    l[1].entry = make_entry("message", "b", "c", 0, &l[1].entry_len);
    add_letter_at(&l[0], DLQ, "5-0", "http_4xx", 1, 400, "", "1-0", 5);
    add_letter_at(&l[1], DLQ, "5-1", "http_4xx", 1, 400, "", "1-1", 5);
    assert_string_equal(l[0].id, "5-0");
    char *out, *err;
    expect_status(0, &out, &err, run_dlq(&out, &err, config, "replay", "5", NULL));
    assert_memory_equal(out, "replayed 5-0 as ", 16);
    letter *want[] = {&l[0]};
    assert_stream_holds(STREAM, want, 1);
    char *left = dlq_ids(DLQ);
    assert_string_equal(left, "5-1");
    free(left);
    free(out);
    free(err);
    letters_free(l, 2);
}

/* A letter whose token has expired is replayed as asked, with a warning that the
 * dispatcher will dead-letter it again. */
static void
test_replay_expired_token_warns(void **state)
{
    (void)state;
    letter l;
    l.entry = make_entry("message", "a", "c", bgt_wall_us() / 1000000 - 3600, &l.entry_len);
    add_letter_at(&l, DLQ, "*", "token_expired_in_queue", 0, 0, "", "1-0", 0);
    char *out, *err;
    expect_status(0, &out, &err, run_dlq(&out, &err, config, "replay", l.id, NULL));
    assert_non_null(strstr(err, "token expired"));
    assert_non_null(strstr(err, "token_expired_in_queue"));
    assert_int_equal(bgt_redis_xlen(&redis, STREAM), 1);
    free(out);
    free(err);
    letters_free(&l, 1);
}

/* A letter without an `entry` field is not replayed, stays put, and is an error. */
static void
test_replay_letter_without_entry(void **state)
{
    (void)state;
    redisReply *r = bgt_redis_cmd(&redis, "XADD %s 9-0 reason http_4xx attempts 1", DLQ);
    assert_non_null(r);
    freeReplyObject(r);
    char *out, *err;
    expect_status(1, &out, &err, run_dlq(&out, &err, config, "replay", "9-0", NULL));
    assert_non_null(strstr(err, "has no entry field"));
    assert_int_equal(bgt_redis_xlen(&redis, DLQ), 1);
    assert_int_equal(bgt_redis_xlen(&redis, STREAM), 0);
    free(out);
    free(err);
}

/* ---- drop ---------------------------------------------------------------------------------- */

/* drop ID removes that letter only; drop --all the rest; the main stream is untouched. */
static void
test_drop(void **state)
{
    (void)state;
    letter l[3];
    for (int i = 0; i < 3; i++)
        add_letter(&l[i], "message", "a", "c", "http_4xx", 1, 400, "", 0);
    char *out, *err;
    expect_status(0, &out, &err, run_dlq(&out, &err, config, "drop", l[1].id, NULL));
    char want[128];
    snprintf(want, sizeof(want), "dropped %s\n", l[1].id);
    assert_string_equal(out, want);
    char *left = dlq_ids(DLQ);
    snprintf(want, sizeof(want), "%s %s", l[0].id, l[2].id);
    assert_string_equal(left, want);
    free(left);
    free(out);
    free(err);

    expect_status(1, &out, &err, run_dlq(&out, &err, config, "drop", l[1].id, NULL));
    assert_non_null(strstr(err, "no dead letter"));
    free(out);
    free(err);

    expect_status(0, &out, &err, run_dlq(&out, &err, config, "drop", "--all", NULL));
    assert_string_equal(out, "dropped 2 entries\n");
    assert_int_equal(bgt_redis_xlen(&redis, DLQ), 0);
    assert_int_equal(bgt_redis_xlen(&redis, STREAM), 0);
    free(out);
    free(err);

    expect_status(0, &out, &err, run_dlq(&out, &err, config, "drop", "--all", NULL));
    assert_string_equal(out, "dropped 0 entries\n");
    free(out);
    free(err);
    letters_free(l, 3);
}

/* IDs that do not exist: exit 1 with a message, nothing changed. */
static void
test_unknown_id(void **state)
{
    (void)state;
    letter l;
    add_letter(&l, "message", "a", "c", "http_4xx", 1, 400, "", 0);
    static const char *const verbs[] = {"replay", "drop"};
    for (size_t i = 0; i < 2; i++) {
        char *out, *err;
        expect_status(1, &out, &err, run_dlq(&out, &err, config, verbs[i], "1-0", NULL));
        assert_non_null(strstr(err, "no dead letter 1-0 in " DLQ));
        assert_string_equal(out, "");
        free(out);
        free(err);
    }
    assert_int_equal(bgt_redis_xlen(&redis, DLQ), 1);
    assert_int_equal(bgt_redis_xlen(&redis, STREAM), 0);
    letters_free(&l, 1);
}

/* ---- configuration and failures ------------------------------------------------------------ */

/* redis.stream is honoured: <stream>:dlq is read, <stream> receives the replay. */
static void
test_custom_stream(void **state)
{
    (void)state;
    del_keys("tenant1:acts");
    char cfg[BGT_PATH_MAX], yaml[512];
    snprintf(yaml, sizeof(yaml), "redis:\n  url: \"%s\"\n  stream: \"tenant1:acts\"\n", redis.url);
    write_config(cfg, "custom-stream.yaml", yaml);
    letter l;
    l.entry = make_entry("message", "a", "c", 0, &l.entry_len);
    add_letter_at(&l, "tenant1:acts" BG_DLQ_SUFFIX, "*", "http_4xx", 1, 400, "", "1-0", 0);
    char *out, *err;
    expect_status(0, &out, &err, run_dlq(&out, &err, cfg, "list", NULL));
    assert_memory_equal(out, l.id, strlen(l.id));
    free(out);
    free(err);
    expect_status(0, &out, &err, run_dlq(&out, &err, cfg, "replay", "--all", NULL));
    letter *want[] = {&l};
    assert_stream_holds("tenant1:acts", want, 1);
    assert_int_equal(bgt_redis_xlen(&redis, "tenant1:acts" BG_DLQ_SUFFIX), 0);
    assert_int_equal(bgt_redis_xlen(&redis, STREAM), 0);
    free(out);
    free(err);
    del_keys("tenant1:acts");
    letters_free(&l, 1);
}

/* An empty redis.url means the private redis of `botgate serve`, at
 * <state_dir>/redis/redis.sock (here a link to the test's redis); when nothing listens
 * there, exit 1 with a hint. */
static void
test_private_redis_path(void **state)
{
    (void)state;
    char state_dir[BGT_PATH_MAX], sub[BGT_PATH_MAX], link[BGT_PATH_MAX + 16];
    bgt_path(state_dir, sizeof(state_dir), env.dir, "state");
    bgt_path(sub, sizeof(sub), state_dir, "redis");
    assert_true(mkdir(state_dir, 0700) == 0 || errno == EEXIST);
    assert_true(mkdir(sub, 0700) == 0 || errno == EEXIST);
    snprintf(link, sizeof(link), "%s/redis.sock", sub);
    unlink(link);
    assert_int_equal(symlink(redis.sock, link), 0);

    char cfg[BGT_PATH_MAX], yaml[512];
    snprintf(yaml, sizeof(yaml), "state_dir: \"%s\"\nredis:\n  url: \"\"\n", state_dir);
    write_config(cfg, "private.yaml", yaml);
    letter l;
    add_letter(&l, "message", "a", "c", "http_4xx", 1, 400, "", 0);
    char *out, *err;
    expect_status(0, &out, &err, run_dlq(&out, &err, cfg, "list", NULL));
    assert_memory_equal(out, l.id, strlen(l.id));
    free(out);
    free(err);

    unlink(link);
    expect_status(1, &out, &err, run_dlq(&out, &err, cfg, "list", NULL));
    assert_non_null(strstr(err, "cannot connect"));
    assert_non_null(strstr(err, "botgate serve"));
    free(out);
    free(err);
    letters_free(&l, 1);
}

/* Redis unreachable: a socket nobody listens on, a TCP port nobody listens on, and the
 * test's own redis stopped. Exit 1 for every verb, nothing on stdout. */
static void
test_redis_down(void **state)
{
    (void)state;
    char cfg_sock[BGT_PATH_MAX], cfg_tcp[BGT_PATH_MAX], yaml[512];
    snprintf(yaml, sizeof(yaml), "redis:\n  url: \"unix://%s/nobody.sock\"\n", env.dir);
    write_config(cfg_sock, "down-sock.yaml", yaml);
    snprintf(yaml, sizeof(yaml), "redis:\n  url: \"redis://127.0.0.1:%d/0\"\n  timeout_ms: 500\n",
             bgt_free_port());
    write_config(cfg_tcp, "down-tcp.yaml", yaml);
    const char *cfgs[] = {cfg_sock, cfg_tcp};
    for (size_t i = 0; i < 2; i++) {
        char *out, *err;
        expect_status(1, &out, &err, run_dlq(&out, &err, cfgs[i], "list", NULL));
        assert_non_null(strstr(err, "cannot connect"));
        assert_string_equal(out, "");
        free(out);
        free(err);
    }

    assert_int_equal(bgt_redis_stop(&redis), 0);
    static const char *const verbs[][2] = {{"list", NULL}, {"replay", "--all"}, {"drop", "1-0"}};
    for (size_t i = 0; i < 3; i++) {
        char *out, *err;
        int rc = verbs[i][1] != NULL ? run_dlq(&out, &err, config, verbs[i][0], verbs[i][1], NULL)
                                     : run_dlq(&out, &err, config, verbs[i][0], NULL);
        expect_status(1, &out, &err, rc);
        assert_non_null(strstr(err, "cannot connect"));
        free(out);
        free(err);
    }
    assert_int_equal(bgt_redis_restart(&redis), 0);
}

/* Bad command lines and configurations: exit 2, with a message. */
static void
test_bad_usage(void **state)
{
    (void)state;
    static const char *const cases[][4] = {
        {NULL},
        {"frob", NULL},
        {"replay", NULL},
        {"drop", NULL},
        {"replay", "1-0", "--all", NULL},
        {"replay", "1-0", "2-0", NULL},
        {"replay", "abc", NULL},
        {"drop", "1-x", NULL},
        {"drop", "99999999999999999999999-0", NULL},
        {"list", "--limit", "0", NULL},
        {"list", "--limit", "x", NULL},
        {"list", "--limit", NULL},
        {"list", "--all", NULL},
        {"list", "extra", NULL},
        {"replay", "--json", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out, *err;
        int rc = run_dlq(&out, &err, config, cases[i][0], cases[i][0] ? cases[i][1] : NULL,
                         cases[i][0] && cases[i][1] ? cases[i][2] : NULL, NULL);
        if (rc != 2)
            fail_msg("case %zu (%s %s %s): exit %d, want 2\n%s", i, cases[i][0] ? cases[i][0] : "",
                     cases[i][0] ? cases[i][1] : "", cases[i][0] && cases[i][1] ? cases[i][2] : "",
                     rc, err);
        assert_true(strlen(err) > 0);
        free(out);
        free(err);
    }

    char *out, *err;
    char missing[BGT_PATH_MAX];
    bgt_path(missing, sizeof(missing), env.dir, "no-such.yaml");
    expect_status(2, &out, &err, run_dlq(&out, &err, missing, "list", NULL));
    assert_non_null(strstr(err, "configuration"));
    free(out);
    free(err);

    static const char *const bad_yaml[] = {
        "redis:\n  url: \"http://127.0.0.1:6379\"\n",
        "redis:\n  url: \"unix://relative.sock\"\n",
        "redis:\n  timeout_ms: 0\n",
        "redis:\n  no_such_key: 1\n",
    };
    for (size_t i = 0; i < sizeof(bad_yaml) / sizeof(bad_yaml[0]); i++) {
        char cfg[BGT_PATH_MAX];
        write_config(cfg, "bad.yaml", bad_yaml[i]);
        expect_status(2, &out, &err, run_dlq(&out, &err, cfg, "list", NULL));
        assert_non_null(strstr(err, "configuration"));
        free(out);
        free(err);
    }

    /* help is not an error */
    expect_status(0, &out, &err, run_dlq(&out, &err, NULL, "help", NULL));
    assert_non_null(strstr(out, "botgate dlq replay ID|--all"));
    free(out);
    free(err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_list_text, reset),
        cmocka_unit_test_setup(test_list_json, reset),
        cmocka_unit_test_setup(test_list_limit_and_pages, reset),
        cmocka_unit_test_setup(test_list_empty, reset),
        cmocka_unit_test_setup(test_replay_one, reset),
        cmocka_unit_test_setup(test_replay_all_order, reset),
        cmocka_unit_test_setup(test_replay_ms_only_id, reset),
        cmocka_unit_test_setup(test_replay_expired_token_warns, reset),
        cmocka_unit_test_setup(test_replay_letter_without_entry, reset),
        cmocka_unit_test_setup(test_drop, reset),
        cmocka_unit_test_setup(test_unknown_id, reset),
        cmocka_unit_test_setup(test_custom_stream, reset),
        cmocka_unit_test_setup(test_private_redis_path, reset),
        cmocka_unit_test_setup(test_bad_usage, reset),
        cmocka_unit_test_setup(test_redis_down, reset),
    };
    if (bgt_env_init(&env) != 0)
        return 1;
    int failed = cmocka_run_group_tests_name("dlq", tests, group_setup, group_teardown);
    return bgt_env_exit(&env, failed);
}
