/*
 * Failure classes: what went wrong with one upstream call (delivery to the bot, a key
 * fetch, the relay), as one word from a closed set, for the failure records
 * (botgate/failures.h) and the operator's triage view (`botgate failures`).
 *
 *   +------------------------+-----------------------------------------------------------+
 *   | class                  | when                                                      |
 *   +------------------------+-----------------------------------------------------------+
 *   | connect_refused        | no usable connection: refused (nothing listens), no route,|
 *   |                        | or the peer reset/closed it before a whole answer came    |
 *   |                        | (CURLE_COULDNT_CONNECT, RECV_ERROR, SEND_ERROR,           |
 *   |                        | GOT_NOTHING, PARTIAL_FILE, ...); also any other transport |
 *   |                        | error that is none of the classes below                   |
 *   | connect_timeout        | the deadline passed before a connection was made          |
 *   | dns                    | the name did not resolve                                  |
 *   | tls                    | handshake or certificate failure (CURLE_SSL_*,            |
 *   |                        | CURLE_PEER_FAILED_VERIFICATION)                           |
 *   | timeout                | connected, and the answer missed the deadline             |
 *   | http_5xx               | answered 5xx, or with no valid status (0, > 599)          |
 *   | http_4xx               | answered 4xx; also 1xx and 3xx (never an acceptance)      |
 *   | token_expired_in_queue | the forwarded token expired before delivery (fixed)       |
 *   | redis                  | Redis failed a write (fixed; logged, not recorded: the    |
 *   |                        | record would go to the Redis that failed)                 |
 *   +------------------------+-----------------------------------------------------------+
 *
 * A reset or a connection closed without an answer counts as connect_refused, not
 * timeout: both say "the bot's process is down or crashing", while timeout says "the
 * bot is up and slow". curl's error text, kept in the record's detail, tells them apart.
 */
#ifndef BOTGATE_FAILURE_H
#define BOTGATE_FAILURE_H

#include <stdint.h>

#define BG_FAILURE_CONNECT_REFUSED "connect_refused"
#define BG_FAILURE_CONNECT_TIMEOUT "connect_timeout"
#define BG_FAILURE_DNS "dns"
#define BG_FAILURE_TLS "tls"
#define BG_FAILURE_TIMEOUT "timeout"
#define BG_FAILURE_HTTP_5XX "http_5xx"
#define BG_FAILURE_HTTP_4XX "http_4xx"
#define BG_FAILURE_TOKEN_EXPIRED "token_expired_in_queue"
#define BG_FAILURE_REDIS "redis"

/* Every class, in the order above, NULL-terminated. */
extern const char *const bg_failure_classes[];

/*
 * The class of one call's outcome: curl_code (a CURLcode; 0 = CURLE_OK, an HTTP answer
 * came), status (the HTTP status when curl_code is 0), connect_us (libcurl's connect
 * time; 0 = no connection was made). Returns NULL when the outcome is not a failure
 * (CURLE_OK and a 2xx). Pure: the same arguments give the same class.
 */
const char *bg_failure_class(int curl_code, long status, int64_t connect_us);

/* 1 when name is one of the classes. */
int bg_failure_class_valid(const char *name);

#endif
