/*
 * The failure recorder (failures.h): XADD to <stream>:failures on the shared connection,
 * rate-limited per class.
 */
#include "botgate/clock.h"
#include "botgate/failures.h"
#include "botgate/failure.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_CLASSES 9

struct st_class_window {
    int64_t second;      /* the wall-clock second counted */
    unsigned count;      /* records written in it */
    uint64_t suppressed; /* left out since the last record written */
};

struct bg_failures {
    bg_redis *redis;
    char *key;
    char maxlen[24];
    struct st_class_window windows[N_CLASSES];
    bg_failures_stats stats;
};

bg_failures *
bg_failures_new(bg_redis *redis, const char *stream, long long maxlen)
{
    bg_failures *f = calloc(1, sizeof(*f));
    size_t n = strlen(stream) + sizeof(BG_FAILURES_SUFFIX);
    if (f == NULL || (f->key = malloc(n)) == NULL) {
        free(f);
        return NULL;
    }
    snprintf(f->key, n, "%s" BG_FAILURES_SUFFIX, stream);
    snprintf(f->maxlen, sizeof(f->maxlen), "%lld", maxlen);
    f->redis = redis;
    return f;
}

void
bg_failures_free(bg_failures *f)
{
    if (f == NULL)
        return;
    free(f->key);
    free(f);
}

bg_failures_stats
bg_failures_get_stats(const bg_failures *f)
{
    return f != NULL ? f->stats : (bg_failures_stats){0, 0};
}

/* The answer is not looked at: a record that did not make it is not worth a retry, and
 * whoever uses the connection sees (and logs) an outage. No data pointer, so that an
 * answer arriving after bg_failures_free touches nothing. */
static void
on_written(bg_redis *redis, redisReply *reply, int err, void *data)
{
    (void)redis, (void)reply, (void)err, (void)data;
}

/* Copies at most max bytes of s, not cutting a UTF-8 sequence, control bytes as '?'. */
static void
copy_detail(char *out, size_t cap, const char *s, size_t max)
{
    size_t n = 0;
    if (s != NULL) {
        n = strlen(s);
        if (n > max) {
            n = max;
            while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                n--; /* s[n] continues a sequence: cut before its start */
        }
        if (n >= cap)
            n = cap - 1;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
        }
    }
    out[n] = '\0';
}

void
bg_failures_record(bg_failures *f, const char *cls, const char *target, const char *request_id,
                   const char *detail)
{
    if (f == NULL || cls == NULL)
        return;
    size_t ci = 0;
    while (bg_failure_classes[ci] != NULL && strcmp(bg_failure_classes[ci], cls) != 0)
        ci++;
    if (bg_failure_classes[ci] == NULL || ci >= N_CLASSES)
        return; /* not a class: a programming error, nothing to record */
    int64_t now = bg_wall_ms();
    struct st_class_window *w = &f->windows[ci];
    if (w->second != now / 1000) {
        w->second = now / 1000;
        w->count = 0;
    }
    if (w->count >= BG_FAILURES_PER_SECOND) {
        w->suppressed++;
        f->stats.suppressed++;
        return;
    }
    w->count++;
    char t_ms[24], text[BG_FAILURES_DETAIL_MAX + 1], full[BG_FAILURES_DETAIL_MAX + 64];
    snprintf(t_ms, sizeof(t_ms), "%" PRId64, now);
    copy_detail(text, sizeof(text), detail, BG_FAILURES_DETAIL_MAX);
    if (w->suppressed > 0)
        snprintf(full, sizeof(full), "%s (+%" PRIu64 " suppressed)", text, w->suppressed);
    else
        snprintf(full, sizeof(full), "%s", text);
    const char *argv[] = {"XADD",
                          f->key,
                          "MAXLEN",
                          "~",
                          f->maxlen,
                          "*",
                          BG_FAILURES_FIELD_T_MS,
                          t_ms,
                          BG_FAILURES_FIELD_CLASS,
                          cls,
                          BG_FAILURES_FIELD_TARGET,
                          target != NULL ? target : "",
                          BG_FAILURES_FIELD_REQUEST_ID,
                          request_id != NULL ? request_id : "",
                          BG_FAILURES_FIELD_DETAIL,
                          full};
    if (bg_redis_command(f->redis, on_written, NULL, 16, argv, NULL) == 0) {
        f->stats.written++;
        w->suppressed = 0;
    }
}
