/*
 * The relay's Connector token manager (see botgate/relay_token.h).
 *
 * State: the held token (or none), one fetch in flight (or none), one timer that is
 * either the next refresh or the next retry, and the callers waiting for a first token.
 * Times are h2o_now (ms). The request body is the form AAD's v2.0 endpoint takes:
 *
 *   grant_type=client_credentials&client_id=<app id>&client_secret=<password>&scope=<scope>
 *
 * each value percent-encoded. The answer, {"token_type":"Bearer","expires_in":3599,
 * "access_token":"..."}, or on failure {"error":"invalid_client","error_description":
 * "AADSTS7000215: ..."}, is read with jansson.
 *
 * A token is named by its serial number (serial, one more for each token obtained) rather
 * than by its bytes: a refusal (bg_relay_token_refused) says which token the Connector
 * refused, and only a refusal of the one held drops it. Forced fetches are spaced by
 * bg_relay_token_force_allowed from the start of the last one (forced_at_ms).
 */
#include "botgate/relay_token.h"
#include "botgate/error.h"
#include "botgate/failure.h"
#include "botgate/failures.h"
#include "botgate/log.h"
#include "botgate/relay_path.h"
#include "botgate/timer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BACKOFF_INITIAL_MS 1000
#define BACKOFF_MAX_MS 30000
#define FAIL_FAST_MS 1000 /* after a failure, callers are told at once for this long */
#define ANSWER_MAX (64 * 1024)

struct bg_relay_token_wait {
    h2o_linklist_t link;
    bg_relay_token *t;
    bg_relay_token_cb cb;
    void *data;
};

struct bg_relay_token {
    h2o_loop_t *loop;
    bg_http *http;
    struct bg_failures *failures;
    char url[2048];
    char *form; /* the request body: holds the secret; freed zeroed */
    size_t form_len;
    const char *secret; /* cfg's: kept out of every message */
    const char *scope;  /* cfg's */
    int refresh_pct;
    long timeout_ms;
    char *token;
    uint64_t serial; /* of the last token obtained: the held one's, when one is held */
    int64_t obtained_ms, expires_ms, usable_until_ms;
    int64_t forced_at_ms;   /* the last fetch a refusal started; 0 = none */
    int64_t limited_for_ms; /* forced_at_ms of the last rate-limited refusal logged */
    bg_http_call *call;
    bg_timer timer;
    int backoff_ms;
    int64_t failed_at_ms; /* the last fetch failed then; 0 = it did not */
    char error[300];      /* why it failed */
    h2o_linklist_t waits;
    uint64_t fetches_ok, fetches_failed;
};

static void fetch(bg_relay_token *t);

/* Forgets the held token, its bytes zeroed first. */
static void
drop_token(bg_relay_token *t)
{
    if (t->token == NULL)
        return;
    memset(t->token, 0, strlen(t->token));
    free(t->token);
    t->token = NULL;
}

static void
on_timer(bg_timer *timer)
{
    bg_relay_token *t = timer->data;
    if (t->call == NULL)
        fetch(t);
}

static void
wake_waits(bg_relay_token *t, const char *token, const char *error)
{
    while (!h2o_linklist_is_empty(&t->waits)) {
        bg_relay_token_wait *w = H2O_STRUCT_FROM_MEMBER(bg_relay_token_wait, link, t->waits.next);
        h2o_linklist_unlink(&w->link);
        w->cb(w->data, token, error);
        free(w);
    }
}

/* Replaces every copy of the secret in s by "***": AAD does not echo it, but a proxy or
 * a misconfigured endpoint might. */
static void
scrub(char *s, const char *secret)
{
    size_t n = strlen(secret);
    char *at;
    if (n == 0)
        return;
    while ((at = strstr(s, secret)) != NULL) {
        memcpy(at, "***", 3);
        memmove(at + 3, at + n, strlen(at + n) + 1);
    }
}

/* AAD's error sentence from an error answer: "invalid_client: AADSTS7000215: ...". */
static void
describe_answer(const bg_http_result *res, char *out, size_t cap)
{
    json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
    const char *e = doc != NULL ? json_string_value(json_object_get(doc, "error")) : NULL;
    const char *d =
        doc != NULL ? json_string_value(json_object_get(doc, "error_description")) : NULL;
    if (e != NULL)
        snprintf(out, cap, "HTTP %ld %s%s%s", res->status, e, d != NULL ? ": " : "",
                 d != NULL ? d : "");
    else
        snprintf(out, cap, "HTTP %ld", res->status);
    json_decref(doc);
}

static void
failed(bg_relay_token *t, const char *cls, const bg_http_result *res)
{
    t->fetches_failed++;
    t->failed_at_ms = (int64_t)h2o_now(t->loop);
    scrub(t->error, t->secret);
    bg_log_warn("relay", "Connector token request to %s failed (%s): %s; %s, retried in %d ms",
                t->url, cls, t->error,
                t->token != NULL && t->failed_at_ms < t->usable_until_ms
                    ? "the token held stays in use"
                    : "no token held: relay calls get 502",
                t->backoff_ms);
    bg_failures_record(t->failures, cls, t->url, NULL, t->error);
    (void)res;
    bg_timer_start(&t->timer, (uint64_t)t->backoff_ms);
    t->backoff_ms = t->backoff_ms * 2 < BACKOFF_MAX_MS ? t->backoff_ms * 2 : BACKOFF_MAX_MS;
    wake_waits(t, NULL, t->error);
}

static void
on_answer(const bg_http_result *res, void *data)
{
    bg_relay_token *t = data;
    t->call = NULL;
    const char *cls = bg_failure_class(res->curl_code, res->status, res->connect_us);
    if (cls != NULL) {
        if (res->curl_code != CURLE_OK)
            snprintf(t->error, sizeof(t->error), "%s", res->error);
        else
            describe_answer(res, t->error, sizeof(t->error));
        failed(t, cls, res);
        return;
    }
    json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
    json_t *tok = doc != NULL ? json_object_get(doc, "access_token") : NULL;
    json_t *exp = doc != NULL ? json_object_get(doc, "expires_in") : NULL;
    long long expires_in = json_is_integer(exp)  ? (long long)json_integer_value(exp)
                           : json_is_string(exp) ? atoll(json_string_value(exp))
                                                 : -1;
    const char *value = json_string_value(tok);
    char *copy = value != NULL && value[0] != '\0' && expires_in > 0 ? strdup(value) : NULL;
    json_decref(doc);
    if (copy == NULL) {
        snprintf(t->error, sizeof(t->error),
                 "HTTP %ld without a usable access_token and expires_in", res->status);
        failed(t, BG_FAILURE_HTTP_5XX, res);
        return;
    }
    drop_token(t);
    t->token = copy;
    t->serial++;
    t->fetches_ok++;
    t->failed_at_ms = 0;
    t->error[0] = '\0';
    t->backoff_ms = BACKOFF_INITIAL_MS;
    t->obtained_ms = (int64_t)h2o_now(t->loop);
    t->expires_ms = t->obtained_ms + expires_in * 1000;
    t->usable_until_ms = bg_relay_token_usable_until(t->obtained_ms, expires_in);
    int64_t refresh = bg_relay_token_refresh_at(t->obtained_ms, expires_in, t->refresh_pct);
    bg_timer_start(&t->timer, (uint64_t)(refresh - t->obtained_ms));
    bg_log_info("relay", "Connector token obtained: valid %lld s, refreshed in %lld s", expires_in,
                (long long)((refresh - t->obtained_ms) / 1000));
    wake_waits(t, t->token, NULL);
}

static void
fetch(bg_relay_token *t)
{
    static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                          "Accept: application/json", NULL};
    bg_http_request req = {.method = "POST",
                           .url = t->url,
                           .headers = headers,
                           .body = t->form,
                           .body_len = t->form_len,
                           .timeout_ms = t->timeout_ms,
                           .max_body = ANSWER_MAX};
    bg_timer_stop(&t->timer);
    t->call = bg_http_start(t->http, &req, on_answer, t);
    if (t->call == NULL) {
        snprintf(t->error, sizeof(t->error), "out of memory");
        t->failed_at_ms = (int64_t)h2o_now(t->loop);
        bg_timer_start(&t->timer, (uint64_t)t->backoff_ms);
        wake_waits(t, NULL, t->error);
    }
}

/* "name=" and the percent-encoded value, appended at *n; 0 or -1 when it does not fit. */
static int
form_add(char *form, size_t cap, size_t *n, const char *name, const char *value)
{
    int k = snprintf(form + *n, cap - *n, "%s%s=", *n > 0 ? "&" : "", name);
    if (k < 0 || (size_t)k >= cap - *n)
        return -1;
    *n += (size_t)k;
    long e = bg_relay_pct_encode(value, strlen(value), form + *n, cap - *n);
    if (e < 0)
        return -1;
    *n += (size_t)e;
    return 0;
}

bg_relay_token *
bg_relay_token_new(h2o_loop_t *loop, bg_http *http, const bg_config *cfg, char *err, size_t errlen)
{
    bg_relay_token *t = calloc(1, sizeof(*t));
    size_t cap =
        3 * (strlen(cfg->auth.app_id) + strlen(cfg->auth.app_password) + strlen(cfg->relay.scope)) +
        100;
    if (t == NULL || (t->form = calloc(1, cap)) == NULL) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (bg_relay_token_url(cfg->relay.token_url, cfg->auth.app_type, cfg->auth.tenant_id, t->url,
                           sizeof(t->url)) != 0) {
        free(t->form);
        free(t);
        snprintf(err, errlen, "relay.token_url: too long");
        return NULL;
    }
    if (strncasecmp(t->url, "http://", 7) == 0)
        bg_log_warn("relay", "relay.token_url is plain http: the client secret crosses the "
                             "network unencrypted (use https:// outside tests)");
    size_t n = 0;
    form_add(t->form, cap, &n, "grant_type", "client_credentials");
    form_add(t->form, cap, &n, "client_id", cfg->auth.app_id);
    form_add(t->form, cap, &n, "client_secret", cfg->auth.app_password);
    form_add(t->form, cap, &n, "scope", cfg->relay.scope);
    t->form_len = n;
    t->loop = loop;
    t->http = http;
    t->secret = cfg->auth.app_password;
    t->scope = cfg->relay.scope;
    t->refresh_pct = cfg->relay.token_refresh_pct;
    t->timeout_ms = cfg->relay.timeout_ms;
    t->backoff_ms = BACKOFF_INITIAL_MS;
    h2o_linklist_init_anchor(&t->waits);
    bg_timer_init(&t->timer, loop, on_timer, t);
    return t;
}

void
bg_relay_token_set_failures(bg_relay_token *t, struct bg_failures *failures)
{
    t->failures = failures;
}

void
bg_relay_token_start(bg_relay_token *t)
{
    bg_log_info("relay", "Connector tokens from %s (scope %s)", t->url, t->scope);
    fetch(t);
}

const char *
bg_relay_token_current(bg_relay_token *t)
{
    if (t->token != NULL && (int64_t)h2o_now(t->loop) < t->usable_until_ms)
        return t->token;
    return NULL;
}

uint64_t
bg_relay_token_serial(const bg_relay_token *t)
{
    return t->token != NULL ? t->serial : 0;
}

/*
 * Three cases. The refused token is no longer held (replaced, or dropped by an earlier
 * refusal whose fetch is in flight or done): nothing to do, a retry gets the newer one.
 * It is held and a fetch is in flight (a refresh): dropped, the callers wait for that
 * fetch, and no request is added to AAD. It is held and nothing is in flight: dropped and
 * fetched now, if the last forced fetch is out of the rate limit's window; else kept (a
 * Connector that refuses every token gets one new token a window, and meanwhile the 401s).
 */
int
bg_relay_token_refused(bg_relay_token *t, uint64_t serial)
{
    if (t->token == NULL || serial != t->serial)
        return 1;
    int64_t now = (int64_t)h2o_now(t->loop);
    if (t->call == NULL && !bg_relay_token_force_allowed(now, t->forced_at_ms)) {
        if (t->limited_for_ms != t->forced_at_ms) { /* said once a window */
            t->limited_for_ms = t->forced_at_ms;
            bg_log_warn("relay",
                        "the Connector refused the Connector token held (401) %lld ms after "
                        "the last forced fetch: kept (at most one forced fetch per %d s)",
                        (long long)(now - t->forced_at_ms),
                        BG_RELAY_TOKEN_FORCE_INTERVAL_MS / 1000);
        }
        return 0;
    }
    drop_token(t);
    if (t->call != NULL) {
        bg_log_warn("relay", "the Connector refused the Connector token held (401): dropped, "
                             "the fetch in flight replaces it");
        return 1;
    }
    t->forced_at_ms = now;
    bg_log_warn("relay", "the Connector refused the Connector token held (401): dropped, a "
                         "new one fetched now");
    fetch(t);
    return 1;
}

bg_relay_token_wait *
bg_relay_token_wait_for(bg_relay_token *t, bg_relay_token_cb cb, void *data, const char **error)
{
    int64_t now = (int64_t)h2o_now(t->loop);
    if (t->call == NULL && t->failed_at_ms != 0 && now - t->failed_at_ms < FAIL_FAST_MS) {
        *error = t->error;
        return NULL;
    }
    bg_relay_token_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        *error = "out of memory";
        return NULL;
    }
    if (t->call == NULL)
        fetch(t);
    if (t->call == NULL) { /* could not even start: said now, not through cb */
        free(w);
        *error = t->error;
        return NULL;
    }
    w->t = t;
    w->cb = cb;
    w->data = data;
    h2o_linklist_insert(&t->waits, &w->link);
    return w;
}

void
bg_relay_token_cancel(bg_relay_token_wait *w)
{
    if (h2o_linklist_is_linked(&w->link))
        h2o_linklist_unlink(&w->link);
    free(w);
}

bg_relay_token_stats
bg_relay_token_get_stats(const bg_relay_token *t)
{
    return (bg_relay_token_stats){.fetches_ok = t->fetches_ok,
                                  .fetches_failed = t->fetches_failed,
                                  .obtained_ms = t->token != NULL ? t->obtained_ms : 0,
                                  .expires_ms = t->token != NULL ? t->expires_ms : 0};
}

void
bg_relay_token_free(bg_relay_token *t)
{
    if (t == NULL)
        return;
    if (t->call != NULL)
        bg_http_cancel(t->call);
    wake_waits(t, NULL, "shutting down");
    bg_timer_dispose(&t->timer);
    drop_token(t);
    memset(t->form, 0, t->form_len);
    free(t->form);
    free(t);
}
