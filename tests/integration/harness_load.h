/*
 * Load for the hardening tests: a client loop (libcurl multi, in the test's own thread)
 * that keeps POSTing Teams message activities to botgate while a test breaks something,
 * and remembers every request's fate, so that a test can count what was acknowledged
 * against what reached the bot.
 *
 * Every activity gets a fresh id "<tag>.<n>" (n from 0) in one of `conversations`
 * conversations; a shot records when it started and ended (monotonic ms), its status (0:
 * no answer), whether a Retry-After came with it and botgate's error code. Requests are
 * started at most `rate_per_s` a second (0: as fast as `concurrency` allows), at most
 * `concurrency` at once; connections are reused (keep-alive, or one HTTP/2 connection).
 */
#ifndef BOTGATE_TEST_HARNESS_LOAD_H
#define BOTGATE_TEST_HARNESS_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bgt_load_opts {
    const char *url;     /* the full URL of /api/messages */
    const char *ca_file; /* trust anchor for https:// */
    int version;         /* BGT_HTTP_1_1 (0 means this) or BGT_HTTP_2 */
    const char *tag;     /* activity ids are "<tag>.<n>" */
    int conversations;   /* 0: 8 */
    int concurrency;     /* 0: 8 */
    int rate_per_s;      /* 0: no pacing */
    size_t body_size;    /* 0: 800 bytes */
    long timeout_ms;     /* per request; 0: 10000 */
} bgt_load_opts;

typedef struct bgt_shot {
    char id[64];
    int64_t start_ms, end_ms; /* bgt_mono_ms; end_ms 0 while in flight */
    long status;              /* 0: no answer (curl_code says why) */
    int curl_code;
    bool retry_after; /* the answer carried Retry-After */
    char code[40];    /* botgate's error.code, "" for none */
} bgt_shot;

typedef struct bgt_load bgt_load;

/* NULL (printed) on failure. The options' strings must outlive the load. */
bgt_load *bgt_load_new(const bgt_load_opts *o);
void bgt_load_free(bgt_load *l);

/* Authorization: Bearer token for the requests started from now on (NULL: none). The
 * string is copied. */
void bgt_load_set_token(bgt_load *l, const char *token);

/* Keeps the load going for ms milliseconds: requests started, answers collected. */
void bgt_load_run(bgt_load *l, int ms);

/* Starts nothing more and waits up to timeout_ms for the requests in flight. Returns 0 when
 * none is left, -1 (printed) otherwise. */
int bgt_load_drain(bgt_load *l, int timeout_ms);

/* Every request started so far, in the order started. */
const bgt_shot *bgt_load_shots(const bgt_load *l, size_t *n);

/* How many shots ended with `status` (0: without an answer). */
size_t bgt_load_count_status(const bgt_load *l, long status);

/* What the bot made of the acknowledged requests: acked = shots answered 202, delivered =
 * of those, how many the bot answered 2xx at least once, lost = acked - delivered,
 * duplicates = 2xx answers beyond the first for the same id, unacked_delivered = ids
 * delivered though not acknowledged (a write Redis took while botgate answered 503). */
typedef struct bgt_delivery_count {
    long acked, delivered, lost, duplicates, unacked_delivered;
} bgt_delivery_count;

/* Polls the slow bot in bot_dir until every acknowledged id was delivered or timeout_ms
 * passed, then counts. Returns 0 (the count may still show losses), -1 when the bot's record
 * cannot be read. */
int bgt_load_count_delivered(const bgt_load *l, const char *bot_dir, int timeout_ms,
                             bgt_delivery_count *out);

#endif
