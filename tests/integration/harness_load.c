/*
 * The load loop of the hardening tests (see harness_load.h): libcurl multi driven from the
 * test's thread, one easy handle per request in flight, answers collected as they come.
 */
#include "harness_load.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

/* One request in flight: its easy handle, headers, body and where its answer goes. */
struct st_load_req {
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t shot; /* index into load->shots */
    char answer[512];
    size_t answer_len;
    bool retry_after;
    struct st_load_req *prev, *next; /* the load's list of requests in flight */
};

struct bgt_load {
    bgt_load_opts o;
    CURLM *multi;
    char *authz; /* "Authorization: Bearer ..." or NULL */
    bgt_shot *shots;
    size_t n_shots, cap_shots;
    int in_flight;
    struct st_load_req *live; /* requests in flight */
    int64_t t0_ms;
};

bgt_load *
bgt_load_new(const bgt_load_opts *o)
{
    bgt_load *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->o = *o;
    if (l->o.conversations <= 0)
        l->o.conversations = 8;
    if (l->o.concurrency <= 0)
        l->o.concurrency = 8;
    if (l->o.body_size == 0)
        l->o.body_size = 800;
    if (l->o.timeout_ms <= 0)
        l->o.timeout_ms = 10000;
    if (l->o.version == 0)
        l->o.version = BGT_HTTP_1_1;
    l->multi = curl_multi_init();
    if (l->multi == NULL) {
        fprintf(stderr, "harness: curl_multi_init failed\n");
        free(l);
        return NULL;
    }
    /* HTTP/2: every request a stream of one connection, as the Connector does */
    curl_multi_setopt(l->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    l->t0_ms = bgt_mono_ms();
    return l;
}

void
bgt_load_set_token(bgt_load *l, const char *token)
{
    free(l->authz);
    l->authz = NULL;
    if (token != NULL) {
        size_t n = strlen(token) + 32;
        l->authz = malloc(n);
        snprintf(l->authz, n, "Authorization: Bearer %s", token);
    }
}

static size_t
on_answer(char *data, size_t size, size_t n, void *arg)
{
    struct st_load_req *r = arg;
    size_t len = size * n, room = sizeof(r->answer) - 1 - r->answer_len;
    memcpy(r->answer + r->answer_len, data, len < room ? len : room);
    r->answer_len += len < room ? len : room;
    r->answer[r->answer_len] = '\0';
    return len;
}

static size_t
on_header(char *data, size_t size, size_t n, void *arg)
{
    struct st_load_req *r = arg; /* not the shot: the shots array may move meanwhile */
    size_t len = size * n;
    if (len >= 12 && strncasecmp(data, "retry-after:", 12) == 0)
        r->retry_after = true;
    return len;
}

static int
start_one(bgt_load *l)
{
    if (l->n_shots == l->cap_shots) {
        size_t cap = l->cap_shots > 0 ? l->cap_shots * 2 : 1024;
        bgt_shot *v = realloc(l->shots, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        l->shots = v;
        l->cap_shots = cap;
    }
    struct st_load_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -1;
    size_t i = l->n_shots++;
    bgt_shot *s = &l->shots[i];
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s.%zu", l->o.tag, i);
    char conv[96];
    snprintf(conv, sizeof(conv), "a:%s-c%zu", l->o.tag, i % (size_t)l->o.conversations);
    r->body = bgt_teams_message(s->id, conv, BGT_CONNECTOR_SERVICE_URL, l->o.body_size);
    r->shot = i;
    r->headers = curl_slist_append(NULL, "Content-Type: application/json");
    r->headers = curl_slist_append(r->headers, "Expect:");
    if (l->authz != NULL)
        r->headers = curl_slist_append(r->headers, l->authz);
    CURL *h = r->easy = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, l->o.url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, l->o.timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
                     l->o.version == BGT_HTTP_2 ? (long)CURL_HTTP_VERSION_2TLS
                                                : (long)CURL_HTTP_VERSION_1_1);
    if (l->o.ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, l->o.ca_file);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_PRIVATE, r);
    s->start_ms = bgt_mono_ms();
    r->next = l->live;
    if (l->live != NULL)
        l->live->prev = r;
    l->live = r;
    curl_multi_add_handle(l->multi, h);
    l->in_flight++;
    return 0;
}

static void
release_one(bgt_load *l, struct st_load_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        l->live = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    curl_multi_remove_handle(l->multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r);
    l->in_flight--;
}

static void
finish_one(bgt_load *l, CURL *h, CURLcode code)
{
    struct st_load_req *r;
    curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&r);
    bgt_shot *s = &l->shots[r->shot];
    s->end_ms = bgt_mono_ms();
    s->curl_code = (int)code;
    if (code == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &s->status);
        s->retry_after = r->retry_after;
    }
    if (s->status >= 400) {
        bgt_http_resp resp = {.body = r->answer, .body_len = r->answer_len};
        if (bgt_http_error_code(&resp, s->code, sizeof(s->code)) == NULL)
            s->code[0] = '\0';
    }
    release_one(l, r);
}

/* One turn: start what the pacing allows (when `start`), let curl work up to 10 ms,
 * collect what ended. */
static void
pump(bgt_load *l, bool start)
{
    if (start) {
        int64_t elapsed = bgt_mono_ms() - l->t0_ms;
        while (
            l->in_flight < l->o.concurrency &&
            (l->o.rate_per_s <= 0 || (int64_t)l->n_shots < (elapsed * l->o.rate_per_s) / 1000 + 1))
            if (start_one(l) != 0)
                break;
    }
    int running;
    curl_multi_perform(l->multi, &running);
    curl_multi_poll(l->multi, NULL, 0, 10, NULL);
    curl_multi_perform(l->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(l->multi, &left)) != NULL)
        if (m->msg == CURLMSG_DONE)
            finish_one(l, m->easy_handle, m->data.result);
}

void
bgt_load_run(bgt_load *l, int ms)
{
    int64_t deadline = bgt_mono_ms() + ms;
    /* pacing counts from the first run, not from creation */
    if (l->n_shots == 0)
        l->t0_ms = bgt_mono_ms();
    while (bgt_mono_ms() < deadline)
        pump(l, true);
}

int
bgt_load_drain(bgt_load *l, int timeout_ms)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    while (l->in_flight > 0 && bgt_mono_ms() < deadline)
        pump(l, false);
    if (l->in_flight > 0) {
        fprintf(stderr, "harness: load: %d requests still in flight after %d ms\n", l->in_flight,
                timeout_ms);
        return -1;
    }
    return 0;
}

const bgt_shot *
bgt_load_shots(const bgt_load *l, size_t *n)
{
    *n = l->n_shots;
    return l->shots;
}

size_t
bgt_load_count_status(const bgt_load *l, long status)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n_shots; i++)
        n += l->shots[i].end_ms != 0 && l->shots[i].status == status;
    return n;
}

void
bgt_load_free(bgt_load *l)
{
    if (l == NULL)
        return;
    /* requests still in flight (a failed test): cancelled */
    while (l->live != NULL)
        release_one(l, l->live);
    curl_multi_cleanup(l->multi);
    free(l->authz);
    free(l->shots);
    free(l);
}

/* The bot's 2xx answers per activity id of this load: counts[i] for shot i. Ids of other
 * loads are ignored. */
static int
delivered_counts(const bgt_load *l, const char *bot_dir, long *counts)
{
    bgt_bot_request *v;
    size_t n;
    if (bgt_bot_received(bot_dir, &v, &n) != 0)
        return -1;
    memset(counts, 0, l->n_shots * sizeof(*counts));
    size_t tl = strlen(l->o.tag);
    for (size_t i = 0; i < n; i++) {
        const char *id = v[i].activity_id;
        if (id == NULL || strncmp(id, l->o.tag, tl) != 0 || id[tl] != '.')
            continue;
        char *end;
        unsigned long k = strtoul(id + tl + 1, &end, 10);
        if (*end != '\0' || k >= l->n_shots)
            continue;
        if (strcmp(v[i].outcome, "answered") == 0 && v[i].status >= 200 && v[i].status < 300)
            counts[k]++;
    }
    bgt_bot_requests_free(v, n);
    return 0;
}

int
bgt_load_count_delivered(const bgt_load *l, const char *bot_dir, int timeout_ms,
                         bgt_delivery_count *out)
{
    memset(out, 0, sizeof(*out));
    long *counts = calloc(l->n_shots + 1, sizeof(*counts));
    if (counts == NULL)
        return -1;
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    for (;;) {
        if (delivered_counts(l, bot_dir, counts) != 0) {
            free(counts);
            return -1;
        }
        memset(out, 0, sizeof(*out));
        for (size_t i = 0; i < l->n_shots; i++) {
            bool acked = l->shots[i].status == 202;
            out->acked += acked;
            if (acked && counts[i] > 0)
                out->delivered++;
            if (!acked && counts[i] > 0)
                out->unacked_delivered++;
            if (counts[i] > 1)
                out->duplicates += counts[i] - 1;
        }
        out->lost = out->acked - out->delivered;
        if (out->lost == 0 || bgt_mono_ms() >= deadline)
            break;
        bgt_sleep_ms(200);
    }
    free(counts);
    return 0;
}
