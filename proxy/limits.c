/*
 * Overload limits (see botgate/limits.h).
 *
 * Connections are counted through the socket's on_close callback, which h2o calls when
 * it disposes the socket however the connection ends (HTTP/1, HTTP/2, a failed TLS
 * handshake): each counted socket has a small record on a list, so that the shutdown
 * can reach the ones still open.
 */
#include "botgate/limits.h"
#include "botgate/error.h"
#include "botgate/log.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

struct st_limits_conn {
    h2o_linklist_t link;
    bg_limits *limits;
    h2o_socket_t *sock;
    int capped; /* counts against policy.max_connections */
};

struct bg_limits {
    size_t max_connections, max_writes, max_body;
    size_t connections, tracked, body_bytes;
    h2o_linklist_t conns;
    time_t last_warned; /* shedding connections is logged at most once a second */
    unsigned long shed_since_warned;
};

bg_limits *
bg_limits_new(size_t max_connections, size_t max_inflight_writes, size_t max_inflight_body_bytes)
{
    bg_limits *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->max_connections = max_connections;
    l->max_writes = max_inflight_writes;
    l->max_body = max_inflight_body_bytes;
    h2o_linklist_init_anchor(&l->conns);
    return l;
}

static void
on_conn_close(void *data)
{
    struct st_limits_conn *c = data;
    h2o_linklist_unlink(&c->link);
    c->limits->connections -= c->capped;
    c->limits->tracked--;
    free(c);
}

int
bg_limits_accept(bg_limits *l, h2o_socket_t *sock, int capped)
{
    struct st_limits_conn *c = NULL;
    if ((capped && l->connections >= l->max_connections) || (c = calloc(1, sizeof(*c))) == NULL) {
        time_t now = time(NULL);
        if (now != l->last_warned) {
            bg_log_warn("limits",
                        "closing a new connection: %zu open, policy.max_connections is %zu "
                        "(%lu more in the last second)",
                        l->connections, l->max_connections, l->shed_since_warned);
            l->last_warned = now;
            l->shed_since_warned = 0;
        } else {
            l->shed_since_warned++;
        }
        h2o_socket_close(sock);
        return BG_ESHED_CONNECTIONS;
    }
    c->limits = l;
    c->sock = sock;
    c->capped = capped;
    h2o_linklist_insert(&l->conns, &c->link);
    sock->on_close.cb = on_conn_close;
    sock->on_close.data = c;
    l->connections += capped;
    l->tracked++;
    return 0;
}

size_t
bg_limits_connections(const bg_limits *l)
{
    return l->connections;
}

size_t
bg_limits_sockets(const bg_limits *l)
{
    return l->tracked;
}

void
bg_limits_shutdown_connections(bg_limits *l)
{
    for (h2o_linklist_t *n = l->conns.next; n != &l->conns; n = n->next) {
        struct st_limits_conn *c = H2O_STRUCT_FROM_MEMBER(struct st_limits_conn, link, n);
        shutdown(h2o_socket_get_fd(c->sock), SHUT_RDWR);
    }
}

void
bg_limits_free(bg_limits *l)
{
    if (l == NULL)
        return;
    while (!h2o_linklist_is_empty(&l->conns)) {
        struct st_limits_conn *c =
            H2O_STRUCT_FROM_MEMBER(struct st_limits_conn, link, l->conns.next);
        c->sock->on_close.cb = NULL;
        c->sock->on_close.data = NULL;
        h2o_linklist_unlink(&c->link);
        free(c);
    }
    free(l);
}

int
bg_limits_may_write(const bg_limits *l, size_t inflight)
{
    return inflight < l->max_writes ? 0 : BG_ESHED_WRITES;
}

int
bg_limits_take_body(bg_limits *l, size_t len)
{
    if (len > l->max_body - l->body_bytes)
        return BG_ESHED_BODY;
    l->body_bytes += len;
    return 0;
}

void
bg_limits_put_body(bg_limits *l, size_t len)
{
    l->body_bytes -= len;
}

/* h2o 2.2 reads an HTTP/1 body into the socket's input buffer and leaves it there until
 * the answer is sent: whatever lies beyond the body's end came after the request. */
size_t
bg_http1_trailing_bytes(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->entity.base == NULL ||
        req->conn->callbacks->get_socket == NULL)
        return 0;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->input == NULL)
        return 0;
    const char *start = sock->input->bytes, *end = start + sock->input->size;
    const char *body_end = req->entity.base + req->entity.len;
    if (req->entity.base < start || body_end > end)
        return 0;
    /* line ends after a body are an old clients' habit (RFC 9112 2.2), not a request */
    while (body_end < end && (*body_end == '\r' || *body_end == '\n'))
        body_end++;
    return (size_t)(end - body_end);
}
