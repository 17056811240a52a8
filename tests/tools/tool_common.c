/*
 * What the test tools share (see tool_common.h for the contract of each function).
 */
#include "tool_common.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- files ------------------------------------------------------------------------------- */

void
tool_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", tool_prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

char *
tool_join(char *out, const char *dir, const char *name)
{
    if ((size_t)snprintf(out, TOOL_PATH_CAP, "%s/%s", dir, name) >= TOOL_PATH_CAP)
        tool_die("path too long: %s/%s", dir, name);
    return out;
}

bool
tool_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

int
tool_mkdir(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    fprintf(stderr, "%s: mkdir %s: %s\n", tool_prog, path, strerror(errno));
    return -1;
}

char *
tool_read_file(const char *path, size_t *len, struct stat *st)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    if (st != NULL && fstat(fileno(f), st) != 0) {
        fclose(f);
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n + 1024 + 1 > cap) {
            char *p = realloc(buf, cap *= 2);
            if (p == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    if (buf == NULL)
        return NULL;
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

int
tool_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

int
tool_write_file_atomic(const char *path, const char *data, size_t len, mode_t mode)
{
    char tmp[TOOL_PATH_CAP + 32];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        goto fail;
    if (tool_write_all(fd, data, len) != 0) {
        close(fd);
        unlink(tmp);
        goto fail;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "%s: write %s: %s\n", tool_prog, path, strerror(errno));
    return -1;
}

void
tool_vlog(const char *fmt, va_list ap)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d.%03d %s: ", tm.tm_hour, tm.tm_min, tm.tm_sec,
            (int)(tv.tv_usec / 1000), tool_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void
tool_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tool_vlog(fmt, ap);
    va_end(ap);
}

/* ---- the server -------------------------------------------------------------------------- */

static volatile sig_atomic_t stop_signal;

static void
on_signal(int sig)
{
    stop_signal = sig;
}

void
tool_server_init(tool_server *s, const char *dir, int (*on_req)(h2o_handler_t *, h2o_req_t *),
                 SSL_CTX *ssl_ctx, size_t max_entity)
{
    s->dir = dir;
    tool_join(s->ready, dir, "ready");
    h2o_linklist_init_anchor(&s->conns);

    h2o_config_init(&s->globalconf);
    s->globalconf.server_name = h2o_iovec_init(tool_prog, strlen(tool_prog));
    if (max_entity > 0)
        s->globalconf.max_request_entity_size = max_entity;
    h2o_hostconf_t *host =
        h2o_config_register_host(&s->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = on_req;

    s->loop = h2o_evloop_create();
    h2o_context_init(&s->ctx, s->loop, &s->globalconf);
    h2o_timeout_init(s->loop, &s->delay_queue, 0);
    s->accept_ctx.ctx = &s->ctx;
    s->accept_ctx.hosts = s->globalconf.hosts;
    s->accept_ctx.ssl_ctx = ssl_ctx;
}

static void
on_conn_close(void *data)
{
    tool_conn *c = data;
    if (c->server->on_conn_close != NULL)
        c->server->on_conn_close(c);
    h2o_linklist_unlink(&c->link);
    free(c);
}

static void
on_accept(h2o_socket_t *listener, const char *err)
{
    tool_server *s = listener->data;
    if (err != NULL)
        return;
    for (int i = 0; i < 16; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(s->listener);
        if (sock == NULL)
            return;
        tool_conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            h2o_socket_close(sock);
            continue;
        }
        c->sock = sock;
        c->server = s;
        c->peer_len = sizeof(c->peer);
        if (getpeername(h2o_socket_get_fd(sock), (struct sockaddr *)&c->peer, &c->peer_len) != 0)
            c->peer_len = 0;
        h2o_linklist_insert(&s->conns, &c->link);
        sock->on_close.cb = on_conn_close;
        sock->on_close.data = c;
        h2o_accept(&s->accept_ctx, sock);
    }
}

static int
open_listener(tool_server *s, const char *address, int port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_NUMERICHOST},
                    *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int rc = getaddrinfo(address, portstr, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "%s: listen %s: %s\n", tool_prog, address, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
        fprintf(stderr, "%s: listen %s:%d: %s\n", tool_prog, address, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    snprintf(s->host, sizeof(s->host), strchr(address, ':') != NULL ? "[%s]" : "%s", address);
    s->listener = h2o_evloop_socket_create(s->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    s->listener->data = s;
    h2o_socket_read_start(s->listener, on_accept);
    return 0;
}

int
tool_server_start(tool_server *s, const char *address, int port)
{
    if (open_listener(s, address, port) != 0)
        return -1;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: the signal interrupts epoll_wait */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char portline[16];
    int plen = snprintf(portline, sizeof(portline), "%d\n", s->port);
    if (tool_write_file_atomic(s->ready, portline, (size_t)plen, 0644) != 0)
        return -1;
    s->wrote_ready = true;
    return 0;
}

int
tool_server_run(tool_server *s)
{
    while (!stop_signal) {
        if (h2o_evloop_run(s->loop, INT32_MAX) != 0 && errno != EINTR) {
            fprintf(stderr, "%s: event loop: %s\n", tool_prog, strerror(errno));
            return -1;
        }
    }
    return stop_signal;
}

void
tool_server_stop_listening(tool_server *s)
{
    if (s->wrote_ready)
        unlink(s->ready);
    s->wrote_ready = false;
    s->stopping = true;
    if (s->listener != NULL) {
        h2o_socket_close(s->listener);
        s->listener = NULL;
    }
}

static void
run_while_conns(tool_server *s, uint64_t ms)
{
    uint64_t deadline = h2o_now(s->loop) + ms;
    while (!h2o_linklist_is_empty(&s->conns) && h2o_now(s->loop) < deadline)
        h2o_evloop_run(s->loop, 20);
}

void
tool_server_close_conns(tool_server *s)
{
    h2o_context_request_shutdown(&s->ctx);
    run_while_conns(s, 100);
    for (h2o_linklist_t *n = s->conns.next; n != &s->conns; n = n->next) {
        tool_conn *c = H2O_STRUCT_FROM_MEMBER(tool_conn, link, n);
        shutdown(h2o_socket_get_fd(c->sock), SHUT_RDWR);
    }
    run_while_conns(s, 2000);
}

void
tool_server_dispose(tool_server *s)
{
    if (!h2o_linklist_is_empty(&s->conns))
        fprintf(stderr, "%s: %zu connections still open at exit\n", tool_prog,
                tool_list_count(&s->conns));
    /* h2o_context_request_shutdown leaves HTTP/2's GOAWAY re-send timer linked, and
     * h2o_context_dispose asserts that its timeouts are empty. */
    if (h2o_timeout_is_linked(&s->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&s->ctx.http2._graceful_shutdown_timeout);
    h2o_timeout_dispose(s->loop, &s->delay_queue);
    h2o_context_dispose(&s->ctx);
    h2o_evloop_destroy(s->loop);
    h2o_config_dispose(&s->globalconf);
}

void
tool_server_schedule(tool_server *s, h2o_timeout_entry_t *entry, uint64_t due_ms)
{
    /* link (h2o's bookkeeping), then move the entry to its place by due time */
    h2o_timeout_link(s->loop, &s->delay_queue, entry);
    h2o_linklist_unlink(&entry->_link);
    entry->registered_at = due_ms;
    h2o_linklist_t *pos = s->delay_queue._entries.next;
    for (; pos != &s->delay_queue._entries; pos = pos->next)
        if (H2O_STRUCT_FROM_MEMBER(h2o_timeout_entry_t, _link, pos)->registered_at > due_ms)
            break;
    h2o_linklist_insert(pos, &entry->_link);
}

/* ---- requests ---------------------------------------------------------------------------- */

bool
tool_path_is(h2o_req_t *req, const char *path)
{
    return h2o_memis(req->path_normalized.base, req->path_normalized.len, path, strlen(path));
}

const char *
tool_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Status";
    }
}

size_t
tool_list_count(h2o_linklist_t *anchor)
{
    size_t n = 0;
    for (h2o_linklist_t *l = anchor->next; l != anchor; l = l->next)
        n++;
    return n;
}
