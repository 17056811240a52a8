/*
 * The Connector's signing keys on the loop (see botgate/keys.h).
 *
 * Each source is a small state machine: idle → metadata → jwks → idle. The key set in
 * use is replaced only by a complete, parsed new one; every failure on the way leaves
 * it as it was.
 */
#include "botgate/keys.h"
#include "botgate/error.h"
#include "botgate/failure.h"
#include "botgate/failures.h"
#include "botgate/log.h"
#include "botgate/timer.h"

#include <stdlib.h>
#include <string.h>

#define FETCH_TIMEOUT_MS 10000
#define MAX_DOCUMENT (1 << 20)
#define RETRY_INITIAL_MS 1000
#define RETRY_MAX_MS 60000
#define KID_REFRESH_MIN_INTERVAL_MS 60000

/* The Emulator's keys: Azure AD's common v2 metadata, as the SDKs use. */
#define EMULATOR_METADATA_URL                                                                      \
    "https://login.microsoftonline.com/botframework.com/v2.0/.well-known/openid-configuration"

struct st_waiter {
    bg_keys_wait_cb cb;
    void *data;
};

struct st_source {
    bg_keys *keys;
    const char *name;
    const char *metadata_url;
    bg_keyset *set;
    bg_http_call *call;
    char *jwks_uri;
    bg_timer timer; /* next refresh or retry */
    int retry_ms;
    int failing; /* the last fetch failed */
    struct st_waiter *waiters;
    size_t n_waiters, cap_waiters;
};

struct bg_keys {
    h2o_loop_t *loop;
    bg_http *http;
    const bg_config *cfg;
    struct st_source channel, emulator;
    int emulator_on;
    int64_t last_kid_refresh_ms;
    int have_kid_refresh;
    bg_keys_change_cb change_cb;
    void *change_data;
    bg_keys_stats stats;
    bg_failures *failures; /* NULL: failed fetches are only logged */
};

static void fetch(struct st_source *src);

static void
wake_waiters(struct st_source *src)
{
    /* a callback may add a new waiter: take the list first */
    struct st_waiter *w = src->waiters;
    size_t n = src->n_waiters;
    src->waiters = NULL;
    src->n_waiters = src->cap_waiters = 0;
    for (size_t i = 0; i < n; i++)
        w[i].cb(w[i].data);
    free(w);
}

static int
add_waiter(struct st_source *src, bg_keys_wait_cb cb, void *data)
{
    if (src->n_waiters == src->cap_waiters) {
        size_t cap = src->cap_waiters ? src->cap_waiters * 2 : 16;
        struct st_waiter *w = realloc(src->waiters, cap * sizeof(*w));
        if (w == NULL)
            return 0;
        src->waiters = w;
        src->cap_waiters = cap;
    }
    src->waiters[src->n_waiters++] = (struct st_waiter){cb, data};
    return 1;
}

static void
fetch_failed(struct st_source *src, const char *url, const bg_http_result *res, const char *why)
{
    bg_keys *keys = src->keys;
    keys->stats.failures++;
    src->failing = 1;
    char detail[300];
    if (why != NULL)
        snprintf(detail, sizeof(detail), "%s", why);
    else if (res->curl_code != CURLE_OK)
        snprintf(detail, sizeof(detail), "%s", res->error);
    else
        snprintf(detail, sizeof(detail), "HTTP %ld", res->status);
    /* A failed call is recorded; an answer that came and could not be used (why) is
     * not an upstream failure of any class, and is only logged. */
    if (why == NULL)
        bg_failures_record(keys->failures,
                           bg_failure_class(res->curl_code, res->status, res->connect_us), url,
                           NULL, detail);
    bg_log_warn("auth", "%s keys: fetching %s failed: %s; %s, retry in %d s", src->name, url,
                detail, src->set != NULL ? "keeping the keys held" : "no keys yet",
                src->retry_ms / 1000);
    bg_timer_start(&src->timer, (uint64_t)src->retry_ms);
    src->retry_ms = src->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : src->retry_ms * 2;
    wake_waiters(src);
}

static void
on_jwks(const bg_http_result *res, void *data)
{
    struct st_source *src = data;
    bg_keys *keys = src->keys;
    src->call = NULL;
    if (res->curl_code != CURLE_OK || res->status != 200) {
        fetch_failed(src, src->jwks_uri, res, NULL);
        return;
    }
    char err[200];
    bg_keyset *set = NULL;
    if (bg_keyset_parse(&set, res->body, res->body_len, err, sizeof(err)) != 0) {
        fetch_failed(src, src->jwks_uri, res, err);
        return;
    }
    if (bg_keyset_size(set) == 0) {
        bg_keyset_free(set);
        fetch_failed(src, src->jwks_uri, res, "the JWKS holds no key");
        return;
    }
    bg_keyset *old = src->set;
    src->set = set;
    if (src == &keys->channel)
        keys->stats.loaded_at_ms = (int64_t)h2o_now(keys->loop);
    bg_log_info("auth", "%s keys: %zu from %s", src->name, bg_keyset_size(set), src->jwks_uri);
    if (keys->change_cb != NULL)
        keys->change_cb(keys, keys->change_data);
    bg_keyset_free(old);
    src->failing = 0;
    src->retry_ms = RETRY_INITIAL_MS;
    bg_timer_start(&src->timer, (uint64_t)keys->cfg->auth.jwks_refresh_s * 1000);
    wake_waiters(src);
}

static const char *
start_get(struct st_source *src, const char *url, bg_http_cb cb)
{
    bg_http_request req = {.method = "GET",
                           .url = url,
                           .timeout_ms = FETCH_TIMEOUT_MS,
                           .max_body = MAX_DOCUMENT,
                           .https_only = 1};
    src->call = bg_http_start(src->keys->http, &req, cb, src);
    return src->call != NULL ? NULL : "out of memory";
}

static void
on_metadata(const bg_http_result *res, void *data)
{
    struct st_source *src = data;
    src->call = NULL;
    if (res->curl_code != CURLE_OK || res->status != 200) {
        fetch_failed(src, src->metadata_url, res, NULL);
        return;
    }
    char err[200];
    char *uri = NULL;
    if (bg_openid_jwks_uri(res->body, res->body_len, &uri, err, sizeof(err)) != 0) {
        fetch_failed(src, src->metadata_url, res, err);
        return;
    }
    free(src->jwks_uri);
    src->jwks_uri = uri;
    const char *why = start_get(src, uri, on_jwks);
    if (why != NULL)
        fetch_failed(src, uri, res, why);
}

static void
fetch(struct st_source *src)
{
    if (src->call != NULL)
        return;
    bg_timer_stop(&src->timer);
    src->keys->stats.fetches++;
    const char *why = start_get(src, src->metadata_url, on_metadata);
    if (why != NULL) {
        bg_http_result none = {.curl_code = CURLE_OUT_OF_MEMORY, .error = why};
        fetch_failed(src, src->metadata_url, &none, why);
    }
}

static void
on_timer(bg_timer *t)
{
    fetch(t->data);
}

static void
source_init(bg_keys *keys, struct st_source *src, const char *name, const char *url)
{
    src->keys = keys;
    src->name = name;
    src->metadata_url = url;
    src->retry_ms = RETRY_INITIAL_MS;
    bg_timer_init(&src->timer, keys->loop, on_timer, src);
}

static void
source_dispose(struct st_source *src)
{
    if (src->keys == NULL)
        return;
    if (src->call != NULL)
        bg_http_cancel(src->call);
    src->call = NULL;
    bg_timer_dispose(&src->timer);
    wake_waiters(src);
    bg_keyset_free(src->set);
    free(src->jwks_uri);
}

bg_keys *
bg_keys_new(h2o_loop_t *loop, bg_http *http, const bg_config *cfg)
{
    bg_keys *keys = calloc(1, sizeof(*keys));
    if (keys == NULL)
        return NULL;
    keys->loop = loop;
    keys->http = http;
    keys->cfg = cfg;
    source_init(keys, &keys->channel, "channel", cfg->auth.openid_metadata_url);
    keys->emulator_on = cfg->auth.allow_emulator;
    if (keys->emulator_on)
        source_init(keys, &keys->emulator, "emulator",
                    cfg->auth.emulator_openid_metadata_url[0] != '\0'
                        ? cfg->auth.emulator_openid_metadata_url
                        : EMULATOR_METADATA_URL);
    return keys;
}

void
bg_keys_set_change_cb(bg_keys *keys, bg_keys_change_cb cb, void *data)
{
    keys->change_cb = cb;
    keys->change_data = data;
}

void
bg_keys_set_failures(bg_keys *keys, bg_failures *failures)
{
    keys->failures = failures;
}

void
bg_keys_start(bg_keys *keys)
{
    fetch(&keys->channel);
    if (keys->emulator_on)
        fetch(&keys->emulator);
}

const bg_keyset *
bg_keys_channel(const bg_keys *keys)
{
    return keys->channel.set;
}

const bg_keyset *
bg_keys_emulator(const bg_keys *keys)
{
    return keys->emulator_on ? keys->emulator.set : NULL;
}

int
bg_keys_ready(const bg_keys *keys)
{
    return keys->channel.set != NULL && (!keys->emulator_on || keys->emulator.set != NULL);
}

int
bg_keys_wait(bg_keys *keys, int unknown_kid, bg_keys_wait_cb cb, void *data)
{
    struct st_source *src = &keys->channel;
    if (src->set == NULL) /* only the fetch in flight: the retry timer paces the rest */
        return src->call != NULL && add_waiter(src, cb, data);
    if (!unknown_kid)
        return 0;
    if (src->call == NULL) {
        int64_t now = (int64_t)h2o_now(keys->loop);
        if (keys->have_kid_refresh && now - keys->last_kid_refresh_ms < KID_REFRESH_MIN_INTERVAL_MS)
            return 0;
        keys->have_kid_refresh = 1;
        keys->last_kid_refresh_ms = now;
        bg_log_info("auth", "a token names a key we do not hold: refreshing the keys");
        fetch(src);
        if (keys->emulator_on)
            fetch(&keys->emulator);
    }
    return src->call != NULL && add_waiter(src, cb, data);
}

int
bg_keys_failing(const bg_keys *keys)
{
    return keys->channel.failing || (keys->emulator_on && keys->emulator.failing);
}

bg_keys_stats
bg_keys_get_stats(const bg_keys *keys)
{
    return keys->stats;
}

void
bg_keys_free(bg_keys *keys)
{
    if (keys == NULL)
        return;
    source_dispose(&keys->channel);
    source_dispose(&keys->emulator);
    free(keys);
}
