/*
 * Failure records: every failed upstream call (a delivery attempt to the bot, a
 * synchronous call to it, a key fetch) appended to the capped stream <redis.stream>:failures
 * (BG_FAILURES_SUFFIX), and `botgate failures`, the operator's triage view of it.
 *
 *   +------------+--------------------------------------------------------------+
 *   | field      | value                                                        |
 *   +------------+--------------------------------------------------------------+
 *   | t_ms       | when, Unix ms                                                |
 *   | class      | one of failure.h's classes ("connect_refused", "http_5xx"...)|
 *   | target     | the URL called (bot.url, the key document's URL)             |
 *   | request_id | botgate's id of the inbound request; empty for a key fetch   |
 *   | detail     | curl's error text or "HTTP 503", at most 200 bytes; never a  |
 *   |            | token or a body                                              |
 *   +------------+--------------------------------------------------------------+
 *
 * XADD ... MAXLEN ~ redis.failures_maxlen: the stream keeps about the newest that many.
 * Recording never blocks and never fails the caller: the XADD goes out on the shared
 * connection and its answer is ignored; with Redis down the record is dropped (a Redis
 * outage is logged, and counted in the metrics, by those who see it). At most
 * BG_FAILURES_PER_SECOND records per class and second are written; the rest are counted,
 * and the next record of that class says how many were left out ("(+37 suppressed)").
 *
 *   botgate failures [--since DURATION] [--limit N] [--json] [-c FILE]
 *
 * prints the records from now back to --since (default 15m; N s/m/h/d), newest first,
 * at most --limit (default 1000), then one summary line per class: "http_5xx: 12, last 3s
 * ago". --json: one object per record per line, then one {"summary": ...} line.
 * Exit status: 0 (also with nothing to show), 1 Redis unreachable, 2 bad usage or
 * configuration.
 */
#ifndef BOTGATE_FAILURES_H
#define BOTGATE_FAILURES_H

#include <stdint.h>

#include "botgate/redis.h"

#define BG_FAILURES_SUFFIX ":failures"
#define BG_FAILURES_PER_SECOND 100
#define BG_FAILURES_DETAIL_MAX 200

#define BG_FAILURES_FIELD_T_MS "t_ms"
#define BG_FAILURES_FIELD_CLASS "class"
#define BG_FAILURES_FIELD_TARGET "target"
#define BG_FAILURES_FIELD_REQUEST_ID "request_id"
#define BG_FAILURES_FIELD_DETAIL "detail"

typedef struct bg_failures bg_failures;

/* A recorder writing through redis (not owned) to <stream>:failures. NULL: out of memory. */
bg_failures *bg_failures_new(bg_redis *redis, const char *stream, long long maxlen);
void bg_failures_free(bg_failures *f);

/*
 * Appends one record (fire-and-forget). f may be NULL (nothing recorded); target,
 * request_id and detail may be NULL (recorded empty). detail is cut to
 * BG_FAILURES_DETAIL_MAX bytes.
 */
void bg_failures_record(bg_failures *f, const char *cls, const char *target, const char *request_id,
                        const char *detail);

/* Records written, and those left out by the rate limit, since bg_failures_new. */
typedef struct bg_failures_stats {
    uint64_t written, suppressed;
} bg_failures_stats;
bg_failures_stats bg_failures_get_stats(const bg_failures *f);

/*
 * Runs `botgate failures ARGS...` (argv: what follows "failures"; envp: environ) and
 * returns the exit status (above).
 */
int bg_failures_run(int argc, char **argv, char *const *envp);

#endif
