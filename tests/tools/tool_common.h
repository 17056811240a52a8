/*
 * What the test tools (tests/tools/fake_connector.c, slow_bot.c) share: small file helpers,
 * and the frame of a server on h2o's evloop that writes DIR/ready once it listens and stops
 * cleanly on SIGTERM or SIGINT. tests/CMakeLists.txt builds this file as a static library
 * linked into each tool.
 *
 * A tool's server embeds a tool_server as its first member and drives it in this order:
 *
 *   tool_server_init       the h2o configuration, one handler for every path, the loop
 *   tool_server_start      the listener, the signal handlers, DIR/ready
 *   tool_server_run        the loop, until a signal
 *   tool_server_stop_listening, (the tool ends its held requests),
 *   tool_server_close_conns, (and whatever is left),
 *   tool_server_dispose    every allocation returned, so that ASan's leak check is quiet
 *
 * Messages go to stderr, prefixed with the tool's name (tool_prog, which each tool defines).
 */
#ifndef BOTGATE_TEST_TOOL_COMMON_H
#define BOTGATE_TEST_TOOL_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <h2o.h>

/* The size of every path buffer that tool_join fills. */
#define TOOL_PATH_CAP 512

/* The tool's name: the prefix of its messages and its HTTP Server header. Each tool
 * defines it. */
extern const char tool_prog[];

/* ---- files ------------------------------------------------------------------------------- */

/* Prints "<tool>: <message>" and exits with status 1. */
void tool_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* out (TOOL_PATH_CAP bytes) = dir "/" name; a path too long ends the tool. Returns out. */
char *tool_join(char *out, const char *dir, const char *name);

bool tool_exists(const char *path);

/* mkdir path (0700); one that exists is fine. 0, or -1 after a message. */
int tool_mkdir(const char *path);

/* Reads a whole (small) file into a NUL-terminated malloc'd buffer; NULL when absent or
 * unreadable. len and st (each may be NULL) receive its length and the identity of the
 * file that was read. */
char *tool_read_file(const char *path, size_t *len, struct stat *st);

/* Writes all len bytes to fd (EINTR retried). 0 or -1 (errno set). */
int tool_write_all(int fd, const char *data, size_t len);

/* Writes data to path through a temporary file and rename(), so that a reader (the tool
 * itself, re-reading its files on every request) never sees half a file. 0, or -1 after a
 * message. */
int tool_write_file_atomic(const char *path, const char *data, size_t len, mode_t mode);

/* One line to stderr: "HH:MM:SS.mmm <tool>: " (wall-clock time, UTC), the message, a
 * newline. */
void tool_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tool_vlog(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* ---- the server -------------------------------------------------------------------------- */

/* A connection, tracked so that a stop can end idle keep-alive connections too, and so
 * that a held request can be tied to its socket (h2o 2.2 shows a request's peer, not its
 * socket): peer is the address getpeername() gave (peer_len 0: unknown). */
typedef struct tool_conn {
    h2o_linklist_t link; /* in tool_server.conns */
    h2o_socket_t *sock;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    struct tool_server *server;
} tool_conn;

typedef struct tool_server {
    const char *dir;
    char host[64]; /* as it appears in URLs: 127.0.0.1 or [::1] */
    int port;
    h2o_globalconf_t globalconf;
    h2o_context_t ctx;
    h2o_evloop_t *loop;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    h2o_linklist_t conns; /* every open tool_conn */
    /* one queue of delay 0 whose entries carry their due time as registered_at, kept in
     * order (h2o 2.2's h2o_timeout_t runs its entries first to last and stops at the
     * first that is not due): a one-shot timer of any delay (tool_server_schedule) */
    h2o_timeout_t delay_queue;
    /* called when a connection closes, before it is freed; may be NULL */
    void (*on_conn_close)(tool_conn *c);
    char ready[TOOL_PATH_CAP]; /* DIR/ready */
    bool wrote_ready;          /* a second server on the same DIR must not remove the first's */
    bool stopping;
} tool_server;

/* Fills s (zeroed by the caller) for a server on dir whose every request goes to on_req:
 * TLS with ssl_ctx (NULL: plain HTTP/1.1); max_entity > 0 caps a request's body. */
void tool_server_init(tool_server *s, const char *dir, int (*on_req)(h2o_handler_t *, h2o_req_t *),
                      SSL_CTX *ssl_ctx, size_t max_entity);

/* Listens on address:port (port 0: the kernel picks; s->port and s->host say which),
 * catches SIGTERM and SIGINT (no SA_RESTART: the signal interrupts epoll_wait), ignores
 * SIGPIPE, and writes the port and a newline to DIR/ready. 0, or -1 after a message. */
int tool_server_start(tool_server *s, const char *address, int port);

/* Runs the loop until SIGTERM or SIGINT. Returns the signal, or -1 when the loop failed
 * (said on stderr). */
int tool_server_run(tool_server *s);

/* The first step of a stop: DIR/ready removed (if this server wrote it), s->stopping set,
 * no new connections. */
void tool_server_stop_listening(tool_server *s);

/* Asks every connection to close, gives them 100 ms, then cuts them (libcurl's idle
 * keep-alive connections in botgate too) and runs the loop until they are gone (2 s at
 * most). */
void tool_server_close_conns(tool_server *s);

/* The last step: says how many connections are still open, then frees everything
 * tool_server_init made. */
void tool_server_dispose(tool_server *s);

/* Links entry (its cb set) into s->delay_queue to run at due_ms (h2o's loop clock,
 * h2o_now). */
void tool_server_schedule(tool_server *s, h2o_timeout_entry_t *entry, uint64_t due_ms);

/* ---- requests ---------------------------------------------------------------------------- */

/* The request's normalized path is exactly path. */
bool tool_path_is(h2o_req_t *req, const char *path);

/* The reason phrase of an HTTP status ("Status" for one not in the table). */
const char *tool_reason(int status);

/* The number of entries after anchor. */
size_t tool_list_count(h2o_linklist_t *anchor);

#endif
