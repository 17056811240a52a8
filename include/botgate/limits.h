/*
 * Overload limits: what botgate holds at once, so that beyond its capacity it sheds work
 * with an answer that says "later" (429 + Retry-After) instead of queueing without
 * bound.
 *
 *   policy.max_connections          client connections open at once (all public
 *                                   listeners; the admin listener is not counted, so that
 *                                   a scrape still works under overload). One more is
 *                                   closed as soon as it is accepted, before TLS: nothing
 *                                   is spent on it.
 *   policy.max_inflight_writes      requests waiting on Redis (and synchronous calls
 *                                   waiting on the bot): one more gets 429
 *                                   too_many_writes.
 *   policy.max_inflight_body_bytes  body bytes held by requests being handled (waiting
 *                                   for keys, Redis or the bot): one that would pass the
 *                                   cap gets 429 too_many_bytes.
 *
 * Every shed is counted in botgate_requests_refused_total under its reason. The
 * connection registry also serves the shutdown: h2o 2.2 does not close idle HTTP/1
 * keep-alive connections when asked to shut down, and h2o_context_dispose aborts while one
 * is open, so the last step shuts their sockets down and lets h2o close them.
 */
#ifndef BOTGATE_LIMITS_H
#define BOTGATE_LIMITS_H

#include <stddef.h>
#include <h2o.h>

typedef struct bg_limits bg_limits;

bg_limits *bg_limits_new(size_t max_connections, size_t max_inflight_writes,
                         size_t max_inflight_body_bytes);
/* Forgets the connections still open (their sockets stay h2o's) and frees. */
void bg_limits_free(bg_limits *limits);

/* A socket just accepted: 0 when it is now tracked (hand it to h2o_accept), or
 * BG_ESHED_CONNECTIONS when the cap is reached (capped: a public listener's) — then the
 * socket is already closed. */
int bg_limits_accept(bg_limits *limits, h2o_socket_t *sock, int capped);
/* Connections of the public listeners open now. */
size_t bg_limits_connections(const bg_limits *limits);
/* Accepted sockets still open, admin ones and those still in their TLS handshake
 * included. */
size_t bg_limits_sockets(const bg_limits *limits);
/* shutdown(2) of every tracked connection (admin ones too): h2o sees the end on its next read and
 * closes the connection the usual way. */
void bg_limits_shutdown_connections(bg_limits *limits);

/* 0 when one more write may start with `inflight` already waiting, else
 * BG_ESHED_WRITES. */
int bg_limits_may_write(const bg_limits *limits, size_t inflight);
/* Takes len body bytes: 0, or BG_ESHED_BODY (nothing taken) past the cap. Each 0 is
 * matched by one bg_limits_put_body(len). */
int bg_limits_take_body(bg_limits *limits, size_t len);
void bg_limits_put_body(bg_limits *limits, size_t len);

/*
 * HTTP/1 bytes that arrived behind this request on its connection, before its answer:
 * another request pipelined, or one smuggled behind a framing that botgate and a proxy in
 * front read differently (Content-Length with Transfer-Encoding: h2o 2.2 reads the body
 * chunked and would then parse what the proxy counted as body as a request of its own).
 * 0 for HTTP/2, and when the body is not in the connection's buffer; line ends alone
 * (CR, LF) do not count.
 */
size_t bg_http1_trailing_bytes(h2o_req_t *req);

#endif
