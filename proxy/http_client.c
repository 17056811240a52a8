/*
 * libcurl's multi interface on h2o's evloop (see botgate/http_client.h).
 *
 * curl tells us which sockets to watch (on_curl_socket) and when to wake it
 * (on_curl_timer); we tell curl what happened (curl_multi_socket_action) and then reap
 * finished transfers (reap). h2o's write notification is one-shot, so a socket that
 * curl wants writable is re-armed before curl is told it is writable: curl does not
 * repeat a POLL_OUT it already asked for.
 */
#include "botgate/http_client.h"
#include "botgate/log.h"
#include "botgate/timer.h"

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct bg_http {
    h2o_loop_t *loop;
    CURLM *multi;
    bg_timer timer;
    STACK_OF(X509) * extra_cas;
    h2o_linklist_t calls; /* every call in flight, for bg_http_free */
};

struct bg_http_call {
    bg_http *http;
    CURL *easy;
    bg_http_cb cb;
    void *data;
    struct curl_slist *headers;
    char *body; /* request body copy */
    size_t body_len, body_off;
    char *answer;
    size_t answer_len, answer_cap, max_body;
    int too_large;
    char error[CURL_ERROR_SIZE];
    char content_type[128];
    char retry_after[64];
    h2o_linklist_t link;
};

/* A socket curl asked us to watch. */
struct st_http_sock {
    bg_http *http;
    curl_socket_t fd; /* curl's fd (h2o watches a dup) */
    h2o_socket_t *sock;
    int want; /* CURL_POLL_IN / OUT / INOUT */
    int reading;
    int write_armed;
};

static void reap(bg_http *http);
static void on_sock_writable(h2o_socket_t *sock, const char *err);

static void
act(bg_http *http, curl_socket_t fd, int mask)
{
    int running;
    curl_multi_socket_action(http->multi, fd, mask, &running);
    reap(http);
}

static void
on_sock_readable(h2o_socket_t *sock, const char *err)
{
    (void)err;
    struct st_http_sock *s = sock->data;
    act(s->http, s->fd, CURL_CSELECT_IN);
}

static void
arm_write(struct st_http_sock *s)
{
    if (!s->write_armed) {
        s->write_armed = 1;
        h2o_socket_notify_write(s->sock, on_sock_writable);
    }
}

static void
on_sock_writable(h2o_socket_t *sock, const char *err)
{
    (void)err;
    struct st_http_sock *s = sock->data;
    s->write_armed = 0;
    if ((s->want & CURL_POLL_OUT) == 0)
        return;
    arm_write(s); /* curl will not ask again for what it already asked */
    act(s->http, s->fd, CURL_CSELECT_OUT);
}

static int
on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    bg_http *http = userp;
    struct st_http_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(http->multi, fd, NULL);
            h2o_socket_close(s->sock);
            free(s);
        }
        return 0;
    }
    if (s == NULL) {
        int dupfd = dup(fd);
        if (dupfd < 0 || (s = calloc(1, sizeof(*s))) == NULL) {
            if (dupfd >= 0)
                close(dupfd);
            return -1;
        }
        s->http = http;
        s->fd = fd;
        s->sock = h2o_evloop_socket_create(http->loop, dupfd, H2O_SOCKET_FLAG_DONT_READ);
        s->sock->data = s;
        curl_multi_assign(http->multi, fd, s);
    }
    s->want = what;
    if (what & CURL_POLL_IN) {
        if (!s->reading) {
            s->reading = 1;
            h2o_socket_read_start(s->sock, on_sock_readable);
        }
    } else if (s->reading) {
        s->reading = 0;
        h2o_socket_read_stop(s->sock);
    }
    if (what & CURL_POLL_OUT)
        arm_write(s);
    return 0;
}

static void
on_timer(bg_timer *t)
{
    act(t->data, CURL_SOCKET_TIMEOUT, 0);
}

/* curl may not be called back into from here: only (re)arm our timer. */
static int
on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    bg_http *http = userp;
    if (timeout_ms < 0)
        bg_timer_stop(&http->timer);
    else
        bg_timer_start(&http->timer, (uint64_t)timeout_ms);
    return 0;
}

static void
call_free(bg_http_call *call)
{
    if (h2o_linklist_is_linked(&call->link))
        h2o_linklist_unlink(&call->link);
    if (call->easy != NULL) {
        curl_multi_remove_handle(call->http->multi, call->easy);
        curl_easy_cleanup(call->easy);
    }
    curl_slist_free_all(call->headers);
    free(call->body);
    free(call->answer);
    free(call);
}

static int64_t
info_us(CURL *easy, CURLINFO what)
{
    curl_off_t v = 0;
    curl_easy_getinfo(easy, what, &v);
    return (int64_t)v;
}

static void
reap(bg_http *http)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(http->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        bg_http_call *call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        bg_http_result res = {0};
        res.curl_code = msg->data.result;
        res.body_too_large = call->too_large;
        if (call->too_large && res.curl_code == CURLE_WRITE_ERROR)
            res.curl_code = CURLE_FILESIZE_EXCEEDED;
        res.error = res.curl_code != CURLE_OK
                        ? (call->error[0] != '\0' ? call->error : curl_easy_strerror(res.curl_code))
                        : NULL;
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &res.status);
        res.connect_us = info_us(call->easy, CURLINFO_CONNECT_TIME_T);
        res.tls_us = info_us(call->easy, CURLINFO_APPCONNECT_TIME_T);
        res.first_byte_us = info_us(call->easy, CURLINFO_STARTTRANSFER_TIME_T);
        res.total_us = info_us(call->easy, CURLINFO_TOTAL_TIME_T);
        res.content_type = call->content_type[0] != '\0' ? call->content_type : NULL;
        res.retry_after = call->retry_after[0] != '\0' ? call->retry_after : NULL;
        res.body = call->answer != NULL ? call->answer : "";
        res.body_len = call->answer_len;
        h2o_linklist_unlink(&call->link);
        call->cb(&res, call->data);
        call_free(call);
    }
}

/* Keeps the two answer headers callers act on; a later answer (after a 100 Continue or a
 * redirect) replaces an earlier one's. */
static size_t
on_header(char *p, size_t size, size_t n, void *userp)
{
    bg_http_call *call = userp;
    size_t len = size * n, vlen;
    char *dst = NULL;
    size_t cap = 0;
    if (len > 13 && strncasecmp(p, "content-type:", 13) == 0) {
        p += 13, len -= 13, dst = call->content_type, cap = sizeof(call->content_type);
    } else if (len > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        p += 12, len -= 12, dst = call->retry_after, cap = sizeof(call->retry_after);
    } else if (len > 5 && strncmp(p, "HTTP/", 5) == 0) {
        call->content_type[0] = call->retry_after[0] = '\0';
    }
    if (dst != NULL) {
        while (len > 0 && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n' || p[len - 1] == ' '))
            len--;
        vlen = len < cap - 1 ? len : cap - 1;
        memcpy(dst, p, vlen);
        dst[vlen] = '\0';
    }
    return size * n;
}

static size_t
on_write(char *p, size_t size, size_t n, void *userp)
{
    bg_http_call *call = userp;
    size_t len = size * n;
    if (call->answer_len + len > call->max_body) {
        call->too_large = 1;
        return 0; /* aborts the transfer */
    }
    if (call->answer_len + len + 1 > call->answer_cap) {
        size_t cap = call->answer_cap ? call->answer_cap : 4096;
        while (cap < call->answer_len + len + 1)
            cap *= 2;
        char *a = realloc(call->answer, cap);
        if (a == NULL)
            return 0;
        call->answer = a;
        call->answer_cap = cap;
    }
    memcpy(call->answer + call->answer_len, p, len);
    call->answer_len += len;
    call->answer[call->answer_len] = '\0';
    return len;
}

/*
 * The request body of a no_replay call, handed to curl through a read callback and
 * deliberately without a seek callback: when a kept-alive connection dies before any
 * answer byte, libcurl would otherwise re-send the request at once on a fresh connection
 * (its "Connection died, retrying a fresh connect"), unseen by the caller: for the
 * dispatcher, a second delivery with the same X-Botgate-Attempt and no back-off. Unable
 * to rewind, curl fails the transfer instead (CURLE_SEND_FAIL_REWIND), and the caller's
 * own retry rule decides. The synchronous proxy keeps curl's quiet re-send: the channel
 * is waiting, and an invoke is not retried by anyone else.
 */
static size_t
on_read(char *buf, size_t size, size_t n, void *userp)
{
    bg_http_call *call = userp;
    size_t left = call->body_len - call->body_off, want = size * n;
    size_t len = left < want ? left : want;
    memcpy(buf, call->body + call->body_off, len);
    call->body_off += len;
    return len;
}

/* Adds auth.ca_file's CAs to the store curl built from the system's. */
static CURLcode
on_ssl_ctx(CURL *easy, void *ssl_ctx, void *userp)
{
    (void)easy;
    bg_http *http = userp;
    X509_STORE *store = SSL_CTX_get_cert_store(ssl_ctx);
    for (int i = 0; i < sk_X509_num(http->extra_cas); i++)
        X509_STORE_add_cert(store, sk_X509_value(http->extra_cas, i));
    return CURLE_OK;
}

bg_http_call *
bg_http_start(bg_http *http, const bg_http_request *req, bg_http_cb cb, void *data)
{
    bg_http_call *call = calloc(1, sizeof(*call));
    if (call == NULL)
        return NULL;
    call->http = http;
    call->cb = cb;
    call->data = data;
    call->max_body = req->max_body;
    if ((call->easy = curl_easy_init()) == NULL)
        goto fail;
    for (const char *const *h = req->headers; h != NULL && *h != NULL; h++) {
        struct curl_slist *l = curl_slist_append(call->headers, *h);
        if (l == NULL)
            goto fail;
        call->headers = l;
    }
    CURL *e = call->easy;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    curl_easy_setopt(e, CURLOPT_PRIVATE, call);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->error);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, req->https_only ? "https" : "http,https");
    if (http->extra_cas != NULL) {
        curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
        curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, http);
    }
    if (req->body != NULL) {
        if ((call->body = malloc(req->body_len + 1)) == NULL)
            goto fail;
        memcpy(call->body, req->body, req->body_len);
        call->body_len = req->body_len;
    }
    if (req->body != NULL && !req->no_replay) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else if (req->body != NULL) {
        /* no Expect: 100-continue round trip for a body curl reads through on_read */
        struct curl_slist *l = curl_slist_append(call->headers, "Expect:");
        if (l == NULL)
            goto fail;
        call->headers = l;
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, call);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    if (curl_multi_add_handle(http->multi, e) != CURLM_OK)
        goto fail;
    h2o_linklist_insert(&http->calls, &call->link);
    return call;
fail:
    curl_easy_cleanup(call->easy);
    call->easy = NULL;
    call_free(call);
    return NULL;
}

void
bg_http_cancel(bg_http_call *call)
{
    call_free(call);
}

static STACK_OF(X509) * read_cas(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "auth.ca_file: %s: cannot be read", path);
        return NULL;
    }
    STACK_OF(X509) *cas = sk_X509_new_null();
    X509 *x;
    while (cas != NULL && (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
        sk_X509_push(cas, x);
    fclose(f);
    if (cas == NULL || sk_X509_num(cas) == 0) {
        sk_X509_free(cas);
        snprintf(err, errlen, "auth.ca_file: %s: no PEM certificate in it", path);
        return NULL;
    }
    return cas;
}

bg_http *
bg_http_new(h2o_loop_t *loop, const char *ca_file, char *err, size_t errlen)
{
    bg_http *http = calloc(1, sizeof(*http));
    if (http == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (ca_file != NULL && ca_file[0] != '\0' &&
        (http->extra_cas = read_cas(ca_file, err, errlen)) == NULL) {
        free(http);
        return NULL;
    }
    http->loop = loop;
    http->multi = curl_multi_init();
    h2o_linklist_init_anchor(&http->calls);
    bg_timer_init(&http->timer, loop, on_timer, http);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http);
    return http;
}

void
bg_http_free(bg_http *http)
{
    if (http == NULL)
        return;
    while (!h2o_linklist_is_empty(&http->calls))
        call_free(H2O_STRUCT_FROM_MEMBER(bg_http_call, link, http->calls.next));
    curl_multi_cleanup(http->multi); /* closes cached connections: POLL_REMOVE for each */
    bg_timer_dispose(&http->timer);
    sk_X509_pop_free(http->extra_cas, X509_free);
    free(http);
}
