/*
 * The dead-letter stream and `botgate dlq`, the operator's tool for it.
 *
 * The dispatcher moves an entry it gives up on from <redis.stream> to <redis.stream>:dlq
 * (BG_DLQ_SUFFIX) with one XADD whose fields are:
 *
 *   +--------------+---------------------------------------------------------------+
 *   | field        | value                                                         |
 *   +--------------+---------------------------------------------------------------+
 *   | entry        | the original msgpack queue entry (entry.h), byte for byte     |
 *   | reason       | why: one of delivery.h's BG_DEAD_* ("http_4xx", ...)          |
 *   | attempts     | delivery attempts made, decimal                               |
 *   | last_status  | the last HTTP status, decimal; 0 when no answer came          |
 *   | error        | a short text for a transport error ("connection refused"), or |
 *   |              | empty                                                         |
 *   | original_id  | the entry's id in <redis.stream>                              |
 *   | failed_at_ms | when it was dead-lettered, Unix ms                            |
 *   | stream       | the stream it came from (its partition: partition.h); a       |
 *   |              | replay puts it back there (a letter without it: redis.stream) |
 *   +--------------+---------------------------------------------------------------+
 *
 * The attempt count of an entry still queued lives in the hash <its stream>:retry
 * (BG_RETRY_SUFFIX), keyed by its stream id; that is why a replay, which XADDs the
 * entry bytes again under a new id, starts over at attempt 0.
 *
 *   botgate dlq list [--limit N] [--json] [-c FILE]   newest first, one line per entry
 *   botgate dlq replay ID|--all [-c FILE]             back to <redis.stream>, oldest first
 *   botgate dlq drop ID|--all [-c FILE]               XDEL
 *
 * The tool reads the configuration as `botgate serve` does (FILE, then the environment)
 * for redis.url, redis.stream and redis.timeout_ms; an empty redis.url means the private
 * redis of `botgate serve` at <state_dir>/redis/redis.sock. It talks to Redis with
 * blocking hiredis calls: a command line may wait.
 */
#ifndef BOTGATE_DLQ_H
#define BOTGATE_DLQ_H

#define BG_DLQ_SUFFIX ":dlq"
#define BG_RETRY_SUFFIX ":retry"

#define BG_DLQ_FIELD_ENTRY "entry"
#define BG_DLQ_FIELD_REASON "reason"
#define BG_DLQ_FIELD_ATTEMPTS "attempts"
#define BG_DLQ_FIELD_LAST_STATUS "last_status"
#define BG_DLQ_FIELD_ERROR "error"
#define BG_DLQ_FIELD_ORIGINAL_ID "original_id"
#define BG_DLQ_FIELD_FAILED_AT_MS "failed_at_ms"
/* the stream (partition) the entry was read from; a replay puts it back there */
#define BG_DLQ_FIELD_STREAM "stream"

/*
 * Runs `botgate dlq ARGS...` (argv holds what follows "dlq"; envp is environ, for the
 * BOTGATE_* overrides) and returns the exit status: 0 done; 1 an ID that does not exist,
 * Redis unreachable or answering with an error (the message on stderr); 2 a bad command
 * line or configuration. Output goes to stdout, messages to stderr.
 */
int bg_dlq_run(int argc, char **argv, char *const *envp);

#endif
