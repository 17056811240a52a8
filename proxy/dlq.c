/*
 * `botgate dlq list|replay|drop` (dlq.h): look at, re-queue and discard dead letters.
 *
 * A command line, not a server: one blocking hiredis connection, each command a round
 * trip, the exit status the whole answer (0 done, 1 missing ID or Redis trouble, 2 bad
 * usage or configuration). The dead-letter stream's layout is drawn in dlq.h.
 *
 * Two rules shape the commands:
 *
 *   - A replay never loses or doubles an entry. Reading the dead letter, XADDing its
 *     `entry` bytes to the main stream and XDELing it from the dead-letter stream happen
 *     in one Lua script (REPLAY_SCRIPT), so a second operator replaying or dropping the
 *     same ID at the same moment finds it either still there or gone, never half-moved.
 *   - `--all` means the entries that were there when the command started. The dispatcher
 *     may dead-letter again what we replay (a bot that still answers 400) while we run;
 *     walking up to the newest ID seen at the start keeps `replay --all` from chasing its
 *     own tail, and `drop --all` from dropping letters nobody has looked at.
 */
#include "botgate/dlq.h"
#include "botgate/cli.h"
#include "botgate/config.h"
#include "botgate/config_file.h"
#include "botgate/delivery.h"
#include "botgate/entry.h"
#include "botgate/error.h"
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

/* Entries fetched per XRANGE/XREVRANGE: entries carry the body (up to
 * policy.body_max_bytes), so a page stays a few MiB at the default body limit. */
#define DLQ_PAGE 100
/* A stream ID as text: two uint64 and a dash, plus "(" for an exclusive range. */
#define DLQ_ID_MAX 48

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/*
 * Moves one dead letter back, atomically. KEYS[1] the dead-letter stream, KEYS[2] the main
 * stream (or, when the letter names the partition it came from in its `stream` field, that
 * partition's stream: redis.partitions), ARGV[1] the full ID. Returns nil when there is no such
 * entry, else {new ID, entry bytes} (the bytes so that the caller can look at the token's expiry
 * without a second read). A letter without an `entry` field is an error and stays where it is. The
 * XADD has no MAXLEN, unlike ingress's: a replay must never trim undelivered entries.
 */
static const char REPLAY_SCRIPT[] =
    "local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]\n"
    "if e == nil then return false end\n"
    "local f = e[2]\n"
    "local target = KEYS[2]\n"
    "for i = 1, #f, 2 do\n"
    "  if f[i] == '" BG_DLQ_FIELD_STREAM "' then target = f[i + 1] end\n"
    "end\n"
    "for i = 1, #f, 2 do\n"
    "  if f[i] == '" BG_DLQ_FIELD_ENTRY "' then\n"
    "    local id = redis.call('XADD', target, '*', '" BG_DLQ_FIELD_ENTRY "', f[i + 1])\n"
    "    redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "    return {id, f[i + 1]}\n"
    "  end\n"
    "end\n"
    "return redis.error_reply('dead letter ' .. ARGV[1] .. ' has no " BG_DLQ_FIELD_ENTRY
    " field')\n";

/* What the command line asked for. */
struct st_dlq_args {
    const char *verb; /* "list", "replay", "drop" */
    const char *config_file;
    long limit; /* list: 0 = every entry */
    bool json;
    bool all;
    char id[DLQ_ID_MAX]; /* replay/drop: the normalised ID ("ms-seq") */
};

/* One dead letter as XRANGE returns it: slices into the hiredis reply. */
struct st_dlq_letter {
    bg_slice id;
    bg_slice entry, reason, attempts, last_status, error, original_id, failed_at_ms;
};

/* A session: the connection and the two keys. */
struct st_dlq {
    bg_redis_sync redis;
    const char *stream;
    char *dlq_key;
};

/* The subcommand's own usage, printed on a usage error (to stderr) or for help. */
static void
usage(FILE *out)
{
    fprintf(out,
            "usage: botgate dlq list [--limit N] [--json] [-c FILE]\n"
            "       botgate dlq replay ID|--all [-c FILE]\n"
            "       botgate dlq drop ID|--all [-c FILE]\n"
            "\n"
            "list    dead letters in <redis.stream>:dlq, newest first, one line each: id, age,\n"
            "        type, conversation, reason, attempts, last status (--json: one JSON\n"
            "        object per line)\n"
            "replay  put the entry back on redis.stream under a new id (attempts start over);\n"
            "        --all replays every dead letter, oldest first\n"
            "drop    delete the dead letter (--all: every one)\n"
            "\n"
            "Exit status: 0 done, 1 no such ID or Redis unreachable, 2 bad usage or "
            "configuration.\n");
}

/*
 * Reads a decimal uint64 of at most 20 digits from [s, s+len) into *out. Returns 0 or -1
 * (empty, a non-digit, out of range). Used for stream IDs and the letter's counters.
 */
static int
parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/*
 * Normalises a stream ID typed by an operator into "ms-seq" (out, DLQ_ID_MAX bytes).
 * "ms" alone means "ms-0", as XDEL reads it; we make it explicit because XRANGE would read
 * "ms" as the whole millisecond and the replay script would pick any entry of it. Returns
 * 0, or -1 when s is not an ID (a usage error, exit 2).
 */
static int
normalise_id(const char *s, char *out)
{
    const char *dash = strchr(s, '-');
    uint64_t ms, seq = 0;
    size_t ms_len = dash != NULL ? (size_t)(dash - s) : strlen(s);
    if (parse_u64(s, ms_len, &ms) != 0 ||
        (dash != NULL && parse_u64(dash + 1, strlen(dash + 1), &seq) != 0))
        return -1;
    snprintf(out, DLQ_ID_MAX, "%" PRIu64 "-%" PRIu64, ms, seq);
    return 0;
}

/* Parses the words after "dlq". Returns 0, or EXIT_USAGE after printing why. */
static int
parse_args(int argc, char **argv, struct st_dlq_args *a)
{
    memset(a, 0, sizeof(*a));
    if (argc < 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    a->verb = argv[0];
    bool is_list = strcmp(a->verb, "list") == 0;
    if (!is_list && strcmp(a->verb, "replay") != 0 && strcmp(a->verb, "drop") != 0) {
        fprintf(stderr, "botgate dlq: unknown command '%s'\n", a->verb);
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        const char *w = argv[i];
        bool has_value = i + 1 < argc;
        if ((strcmp(w, "-c") == 0 || strcmp(w, "--config") == 0) && has_value) {
            a->config_file = argv[++i];
        } else if (is_list && strcmp(w, "--json") == 0) {
            a->json = true;
        } else if (is_list && strcmp(w, "--limit") == 0 && has_value) {
            char *end;
            errno = 0;
            long n = strtol(argv[++i], &end, 10);
            if (errno != 0 || end == argv[i] || *end != '\0' || n < 1) {
                fprintf(stderr, "botgate dlq list: --limit takes a number >= 1, not '%s'\n",
                        argv[i]);
                return EXIT_USAGE;
            }
            a->limit = n;
        } else if (!is_list && strcmp(w, "--all") == 0) {
            a->all = true;
        } else if (!is_list && w[0] != '-' && id == NULL) {
            id = w;
        } else {
            fprintf(stderr, "botgate dlq %s: unexpected argument '%s'\n", a->verb, w);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!is_list && (id == NULL) == !a->all) {
        fprintf(stderr, "botgate dlq %s: give one ID or --all\n", a->verb);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (id != NULL && normalise_id(id, a->id) != 0) {
        fprintf(stderr, "botgate dlq %s: '%s' is not a stream ID (like 1715678467301-0)\n", a->verb,
                id);
        return EXIT_USAGE;
    }
    return 0;
}

static void
session_close(struct st_dlq *s)
{
    bg_redis_sync_close(&s->redis);
    free(s->dlq_key);
    memset(s, 0, sizeof(*s));
}

/*
 * Reads one XRANGE element ([id, [field, value, ...]]) into l, its slices pointing into
 * the reply. Returns 0, or -1 when the element is not of that shape (a key that is not
 * ours). Unknown fields are skipped, missing ones stay absent.
 */
static int
read_letter(const redisReply *e, struct st_dlq_letter *l)
{
    memset(l, 0, sizeof(*l));
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return -1;
    l->id = (bg_slice){e->element[0]->str, e->element[0]->len};
    const redisReply *f = e->element[1];
    if (f->type != REDIS_REPLY_ARRAY)
        return 0; /* an entry without fields */
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        {BG_DLQ_FIELD_ENTRY, offsetof(struct st_dlq_letter, entry)},
        {BG_DLQ_FIELD_REASON, offsetof(struct st_dlq_letter, reason)},
        {BG_DLQ_FIELD_ATTEMPTS, offsetof(struct st_dlq_letter, attempts)},
        {BG_DLQ_FIELD_LAST_STATUS, offsetof(struct st_dlq_letter, last_status)},
        {BG_DLQ_FIELD_ERROR, offsetof(struct st_dlq_letter, error)},
        {BG_DLQ_FIELD_ORIGINAL_ID, offsetof(struct st_dlq_letter, original_id)},
        {BG_DLQ_FIELD_FAILED_AT_MS, offsetof(struct st_dlq_letter, failed_at_ms)},
    };
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        for (size_t j = 0; j < sizeof(fields) / sizeof(fields[0]); j++)
            if (k->len == strlen(fields[j].name) && memcmp(k->str, fields[j].name, k->len) == 0)
                *(bg_slice *)((char *)l + fields[j].off) = (bg_slice){v->str, v->len};
    }
    return 0;
}

/* A decimal counter field, or -1 when absent or not a number. */
static int64_t
letter_number(bg_slice s)
{
    uint64_t v;
    if (s.p == NULL || parse_u64(s.p, s.len, &v) != 0 || v > INT64_MAX)
        return -1;
    return (int64_t)v;
}

/* When the letter was written: failed_at_ms, or else the ms part of its stream ID (Redis
 * stamps the XADD with its clock, which is the same moment). -1 when neither reads. */
static int64_t
letter_failed_at_ms(const struct st_dlq_letter *l)
{
    int64_t at = letter_number(l->failed_at_ms);
    if (at >= 0)
        return at;
    const char *dash = memchr(l->id.p, '-', l->id.len);
    uint64_t ms;
    size_t n = dash != NULL ? (size_t)(dash - l->id.p) : l->id.len;
    if (parse_u64(l->id.p, n, &ms) != 0 || ms > INT64_MAX)
        return -1;
    return (int64_t)ms;
}

/*
 * Writes a field for a terminal: absent as `absent`, empty as "", control bytes as '?'.
 * Types and conversation ids come from whoever called the bot; an escape sequence in
 * one must not reach the operator's terminal, and a newline must not split the line.
 */
static void
put_text(FILE *out, bg_slice s, const char *absent)
{
    if (s.p == NULL) {
        fputs(absent, out);
        return;
    }
    if (s.len == 0) {
        fputs("\"\"", out);
        return;
    }
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        fputc(c < 0x20 || c == 0x7f ? '?' : c, out);
    }
}

/* A JSON string of s, or null when absent. jansson refuses invalid UTF-8 (the entry's
 * strings are whatever the caller sent); then the bytes past ASCII become '?', so that
 * every line stays valid JSON. */
static json_t *
json_slice(bg_slice s)
{
    if (s.p == NULL)
        return json_null();
    json_t *v = json_stringn(s.p, s.len);
    if (v != NULL)
        return v;
    char *copy = malloc(s.len + 1);
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < s.len; i++)
        copy[i] = (unsigned char)s.p[i] >= 0x80 ? '?' : s.p[i];
    v = json_stringn(copy, s.len);
    free(copy);
    return v;
}

static json_t *
json_number_or_null(int64_t v)
{
    return v >= 0 ? json_integer(v) : json_null();
}

/*
 * Prints one letter: a text line (id, age, type, conversation, reason, attempts, last
 * status, and the transport error when there is one) or a JSON object on one line. The
 * activity's fields come from the stored entry; one that does not decode shows "?" (null
 * in JSON). Returns 0, or -1 on a write error or out of memory.
 */
static int
print_letter(const struct st_dlq_letter *l, bool as_json, int64_t now_ms)
{
    bg_entry e;
    bool decoded = l->entry.p != NULL && bg_entry_decode(&e, l->entry.p, l->entry.len) == 0;
    if (!decoded)
        memset(&e, 0, sizeof(e));
    int64_t failed_at = letter_failed_at_ms(l);
    int64_t age_ms = failed_at >= 0 && now_ms > failed_at ? now_ms - failed_at : 0;
    int64_t attempts = letter_number(l->attempts);
    int64_t status = letter_number(l->last_status);
    char age[32];
    bg_cli_format_age(age_ms, age, sizeof(age));

    if (!as_json) {
        const char *missing = decoded ? "-" : "?";
        fwrite(l->id.p, 1, l->id.len, stdout);
        printf("  %s  ", age);
        put_text(stdout, e.type, missing);
        fputs("  ", stdout);
        put_text(stdout, e.conversation_id, missing);
        fputs("  ", stdout);
        put_text(stdout, l->reason, "?");
        if (attempts >= 0)
            printf("  attempts=%" PRId64, attempts);
        else
            fputs("  attempts=?", stdout);
        if (status >= 0)
            printf("  status=%" PRId64, status);
        else
            fputs("  status=?", stdout);
        if (l->error.p != NULL && l->error.len > 0) {
            fputs("  error=", stdout);
            put_text(stdout, l->error, "");
        }
        fputc('\n', stdout);
        return ferror(stdout) ? -1 : 0;
    }

    json_t *o = json_object();
    if (o == NULL)
        return -1;
    int bad = 0;
    bad |= json_object_set_new(o, "id", json_slice(l->id));
    bad |= json_object_set_new(o, "age", json_string(age));
    bad |= json_object_set_new(o, "age_ms", json_integer(age_ms));
    bad |= json_object_set_new(o, "failed_at_ms", json_number_or_null(failed_at));
    bad |= json_object_set_new(o, "type", json_slice(e.type));
    bad |= json_object_set_new(o, "conversation_id", json_slice(e.conversation_id));
    bad |= json_object_set_new(o, "activity_id", json_slice(e.activity_id));
    bad |= json_object_set_new(o, "reason", json_slice(l->reason));
    bad |= json_object_set_new(o, "attempts", json_number_or_null(attempts));
    bad |= json_object_set_new(o, "last_status", json_number_or_null(status));
    bad |= json_object_set_new(o, "error", json_slice(l->error));
    bad |= json_object_set_new(o, "original_id", json_slice(l->original_id));
    bad |= json_object_set_new(o, "entry_readable", json_boolean(decoded));
    char *text = bad == 0 ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL)
        return -1;
    puts(text);
    free(text);
    return ferror(stdout) ? -1 : 0;
}

/*
 * list: XREVRANGE pages of DLQ_PAGE, newest first, until --limit or the oldest entry.
 * Each page starts just below the last ID printed (an exclusive "(" range, Redis >= 6.2,
 * which XAUTOCLAIM already requires), so entries removed meanwhile cannot confuse it.
 */
static int
cmd_list(struct st_dlq *s, const struct st_dlq_args *a)
{
    char end[DLQ_ID_MAX] = "+";
    long printed = 0;
    int64_t now = bg_cli_wall_ms();
    for (;;) {
        long want = DLQ_PAGE;
        if (a->limit > 0 && a->limit - printed < want)
            want = a->limit - printed;
        if (want <= 0)
            break;
        char count[24];
        snprintf(count, sizeof(count), "%ld", want);
        const char *argv[6] = {"XREVRANGE", s->dlq_key, end, "-", "COUNT", count};
        redisReply *r = bg_redis_sync_command(&s->redis, 6, argv);
        if (r == NULL)
            return EXIT_FAIL;
        if (r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "botgate dlq: %s: unexpected XREVRANGE answer\n", s->redis.where);
            freeReplyObject(r);
            return EXIT_FAIL;
        }
        size_t n = r->elements;
        bool more = (long)n == want;
        for (size_t i = 0; i < n; i++) {
            struct st_dlq_letter l;
            if (read_letter(r->element[i], &l) != 0 || l.id.len >= DLQ_ID_MAX - 1) {
                more = false; /* not a stream entry: cannot page past it */
                continue;
            }
            if (print_letter(&l, a->json, now) != 0) {
                fprintf(stderr, "botgate dlq: cannot write the list\n");
                freeReplyObject(r);
                return EXIT_FAIL;
            }
            printed++;
            snprintf(end, sizeof(end), "(%.*s", (int)l.id.len, l.id.p);
        }
        freeReplyObject(r);
        if (!more)
            break;
    }
    if (printed == 0 && !a->json)
        fprintf(stderr, "botgate dlq: no dead letters in %s\n", s->dlq_key);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}

/* Warns when a replayed entry carries a token that has expired: the dispatcher will
 * dead-letter it again (token_expired_in_queue), since the bot would refuse it. */
static void
warn_if_token_expired(const char *id, const redisReply *entry)
{
    bg_entry e;
    if (entry->type != REDIS_REPLY_STRING || bg_entry_decode(&e, entry->str, entry->len) != 0)
        return;
    int64_t now_s = bg_cli_wall_ms() / 1000;
    if (bg_delivery_token_expired(e.token_exp, now_s))
        fprintf(stderr,
                "botgate dlq: warning: %s: its token expired %" PRId64
                " s ago; the bot would refuse it, so it will be dead-lettered again "
                "(" BG_DEAD_TOKEN_EXPIRED ")\n",
                id, now_s - e.token_exp);
}

/*
 * Replays one ID with REPLAY_SCRIPT. Returns 0 (printed "replayed ID as NEW"), 1 when
 * the ID is not in the dead-letter stream (*missing set), or EXIT_FAIL on a Redis error.
 */
static int
replay_one(struct st_dlq *s, const char *id, bool *missing)
{
    *missing = false;
    const char *argv[6] = {"EVAL", REPLAY_SCRIPT, "2", s->dlq_key, s->stream, id};
    redisReply *r = bg_redis_sync_command(&s->redis, 6, argv);
    if (r == NULL)
        return EXIT_FAIL;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        *missing = true;
        return EXIT_FAIL;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "botgate dlq: %s: unexpected answer to the replay of %s\n", s->redis.where,
                id);
        freeReplyObject(r);
        return EXIT_FAIL;
    }
    printf("replayed %s as %.*s\n", id, (int)r->element[0]->len, r->element[0]->str);
    warn_if_token_expired(id, r->element[1]);
    freeReplyObject(r);
    return EXIT_OK;
}

/*
 * The newest ID in the dead-letter stream now, into out: where `--all` stops. Returns 0
 * (out empty when the stream is empty or missing) or EXIT_FAIL.
 */
static int
newest_id(struct st_dlq *s, char *out)
{
    out[0] = '\0';
    const char *argv[6] = {"XREVRANGE", s->dlq_key, "+", "-", "COUNT", "1"};
    redisReply *r = bg_redis_sync_command(&s->redis, 6, argv);
    if (r == NULL)
        return EXIT_FAIL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
        r->element[0]->element[0]->type == REDIS_REPLY_STRING &&
        r->element[0]->element[0]->len < DLQ_ID_MAX)
        snprintf(out, DLQ_ID_MAX, "%.*s", (int)r->element[0]->element[0]->len,
                 r->element[0]->element[0]->str);
    freeReplyObject(r);
    return 0;
}

/*
 * Visits every dead letter from the oldest up to `last` (inclusive), a page at a time,
 * calling visit(s, ids, n, data) with the page's IDs in order. Returns 0, or the first
 * non-zero status of visit or of Redis.
 */
static int
walk_up_to(struct st_dlq *s, const char *last,
           int (*visit)(struct st_dlq *s, const char *const *ids, size_t n, void *data), void *data)
{
    char start[DLQ_ID_MAX] = "-";
    for (;;) {
        char count[16];
        snprintf(count, sizeof(count), "%d", DLQ_PAGE);
        const char *argv[6] = {"XRANGE", s->dlq_key, start, last, "COUNT", count};
        redisReply *r = bg_redis_sync_command(&s->redis, 6, argv);
        if (r == NULL)
            return EXIT_FAIL;
        const char *ids[DLQ_PAGE];
        char idbuf[DLQ_PAGE][DLQ_ID_MAX];
        size_t n = 0;
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && n < DLQ_PAGE; i++) {
            struct st_dlq_letter l;
            if (read_letter(r->element[i], &l) != 0 || l.id.len >= DLQ_ID_MAX - 1)
                continue;
            snprintf(idbuf[n], DLQ_ID_MAX, "%.*s", (int)l.id.len, l.id.p);
            ids[n] = idbuf[n];
            n++;
        }
        size_t got = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        freeReplyObject(r);
        if (n > 0) {
            int rc = visit(s, ids, n, data);
            if (rc != 0)
                return rc;
            snprintf(start, sizeof(start), "(%s", ids[n - 1]);
        }
        if (n == 0 || got < DLQ_PAGE)
            return 0;
    }
}

/* replay --all's visitor: each ID in order; one that vanished meanwhile (dropped by
 * someone else) is skipped. */
static int
visit_replay(struct st_dlq *s, const char *const *ids, size_t n, void *data)
{
    long *done = data;
    for (size_t i = 0; i < n; i++) {
        bool missing;
        int rc = replay_one(s, ids[i], &missing);
        if (rc != 0 && !missing)
            return rc;
        if (rc == 0)
            (*done)++;
    }
    return 0;
}

/* drop --all's visitor: one XDEL for the page. */
static int
visit_drop(struct st_dlq *s, const char *const *ids, size_t n, void *data)
{
    long *done = data;
    const char *argv[2 + DLQ_PAGE];
    argv[0] = "XDEL";
    argv[1] = s->dlq_key;
    memcpy(argv + 2, ids, n * sizeof(ids[0]));
    redisReply *r = bg_redis_sync_command(&s->redis, (int)(2 + n), argv);
    if (r == NULL)
        return EXIT_FAIL;
    if (r->type == REDIS_REPLY_INTEGER)
        *done += (long)r->integer;
    freeReplyObject(r);
    return 0;
}

/* replay ID | replay --all (oldest first: order within a conversation is kept). */
static int
cmd_replay(struct st_dlq *s, const struct st_dlq_args *a)
{
    if (!a->all) {
        bool missing;
        int rc = replay_one(s, a->id, &missing);
        if (missing)
            fprintf(stderr, "botgate dlq: no dead letter %s in %s\n", a->id, s->dlq_key);
        return rc;
    }
    char last[DLQ_ID_MAX];
    long done = 0;
    int rc = newest_id(s, last);
    if (rc == 0 && last[0] != '\0')
        rc = walk_up_to(s, last, visit_replay, &done);
    printf("replayed %ld %s\n", done, done == 1 ? "entry" : "entries");
    return rc;
}

/* drop ID | drop --all. */
static int
cmd_drop(struct st_dlq *s, const struct st_dlq_args *a)
{
    if (!a->all) {
        const char *argv[3] = {"XDEL", s->dlq_key, a->id};
        redisReply *r = bg_redis_sync_command(&s->redis, 3, argv);
        if (r == NULL)
            return EXIT_FAIL;
        long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        freeReplyObject(r);
        if (n == 0) {
            fprintf(stderr, "botgate dlq: no dead letter %s in %s\n", a->id, s->dlq_key);
            return EXIT_FAIL;
        }
        printf("dropped %s\n", a->id);
        return EXIT_OK;
    }
    char last[DLQ_ID_MAX];
    long done = 0;
    int rc = newest_id(s, last);
    if (rc == 0 && last[0] != '\0')
        rc = walk_up_to(s, last, visit_drop, &done);
    printf("dropped %ld %s\n", done, done == 1 ? "entry" : "entries");
    return rc;
}

/* The subcommand: arguments, configuration, connection, then the verb. */
int
bg_dlq_run(int argc, char **argv, char *const *envp)
{
    struct st_dlq_args a;
    if (argc >= 1 && (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0 ||
                      strcmp(argv[0], "-h") == 0)) {
        usage(stdout);
        return EXIT_OK;
    }
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc;
    bg_config cfg;
    struct st_dlq s = {0};
    char err[512];
    if ((rc = bg_config_read(&cfg, a.config_file, envp, err, sizeof(err))) != 0) {
        fprintf(stderr, "botgate: %s%s\n", rc == BG_ECONFIG ? "configuration: " : "", err);
        rc = rc == BG_ECONFIG ? EXIT_USAGE : EXIT_FAIL;
        goto out;
    }
    if (bg_redis_sync_target(&s.redis, "botgate dlq", &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "botgate: configuration: %s\n", err);
        rc = EXIT_USAGE;
        goto out;
    }
    size_t keylen = strlen(cfg.redis.stream) + sizeof(BG_DLQ_SUFFIX);
    if ((s.dlq_key = malloc(keylen)) == NULL) {
        rc = EXIT_FAIL;
        goto out;
    }
    snprintf(s.dlq_key, keylen, "%s" BG_DLQ_SUFFIX, cfg.redis.stream);
    s.stream = cfg.redis.stream;
    if (bg_redis_sync_connect(&s.redis, cfg.redis.timeout_ms) != 0) {
        rc = EXIT_FAIL;
        goto out;
    }
    if (strcmp(a.verb, "list") == 0)
        rc = cmd_list(&s, &a);
    else if (strcmp(a.verb, "replay") == 0)
        rc = cmd_replay(&s, &a);
    else
        rc = cmd_drop(&s, &a);
    if (fflush(stdout) != 0 && rc == 0)
        rc = EXIT_FAIL;
out:
    session_close(&s);
    bg_config_free(&cfg);
    return rc;
}
