/*
 * The relay's routes, target URLs and token schedule (see botgate/relay_path.h).
 *
 * The parser reads the raw request-target byte by byte and decides on the decoded id,
 * never on a second decoding: "%252F" decodes once to "%2F", whose '%' is refused. That
 * the URL called upstream cannot be steered is a property of bg_relay_target_url: its
 * scheme, authority and prefix come from the directory, and the ids are re-encoded with
 * everything but unreserved bytes escaped, so no '/', '?', '#' or '.' sequence of the
 * caller's survives as syntax.
 */
#include "botgate/relay_path.h"
#include "botgate/error.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define PREFIX "/v3/conversations/"
#define SERVICE_URL_MAX 2048

static void
say(char *why, size_t whylen, const char *msg)
{
    if (why != NULL && whylen > 0)
        snprintf(why, whylen, "%s", msg);
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 3986 pchar without '%' (escapes are handled apart): unreserved, sub-delims, ':' '@'. */
static int
is_raw_pchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

/* A decoded id byte: printable ASCII without the bytes that are syntax somewhere. */
static int
is_id_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && strchr("/\\%?#\"<>`^{}", c) == NULL;
}

/* Decodes one segment [s, s + len) into out (BG_RELAY_ID_MAX + 1 bytes). */
static int
decode_id(const char *s, size_t len, char *out, const char *what, char *why, size_t whylen)
{
    size_t n = 0;
    char msg[120];
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (len - i < 3) {
                snprintf(msg, sizeof(msg), "%s: a '%%' not followed by two hex digits", what);
                say(why, whylen, msg);
                return BG_ERELAY_PATH;
            }
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0) {
                snprintf(msg, sizeof(msg), "%s: a '%%' not followed by two hex digits", what);
                say(why, whylen, msg);
                return BG_ERELAY_PATH;
            }
            c = (unsigned char)(h << 4 | l);
            i += 2;
            if (!is_id_byte(c)) {
                snprintf(msg, sizeof(msg),
                         "%s: an encoded byte that ids never hold (an encoded '/', '\\', '%%' "
                         "or control byte)",
                         what);
                say(why, whylen, msg);
                return BG_ERELAY_PATH;
            }
        } else if (!is_raw_pchar(c)) {
            snprintf(msg, sizeof(msg), "%s: a byte that must be percent-encoded", what);
            say(why, whylen, msg);
            return BG_ERELAY_PATH;
        }
        if (n == BG_RELAY_ID_MAX) {
            snprintf(msg, sizeof(msg), "%s: longer than %d bytes", what, BG_RELAY_ID_MAX);
            say(why, whylen, msg);
            return BG_ERELAY_PATH;
        }
        out[n++] = (char)c;
    }
    out[n] = '\0';
    if (n == 0) {
        snprintf(msg, sizeof(msg), "%s: empty", what);
        say(why, whylen, msg);
        return BG_ERELAY_PATH;
    }
    if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0) {
        snprintf(msg, sizeof(msg), "%s: '.' and '..' are not ids", what);
        say(why, whylen, msg);
        return BG_ERELAY_PATH;
    }
    return 0;
}

static int
method_is(const char *m, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(m, want, len) == 0;
}

int
bg_relay_path_parse(const char *method, size_t method_len, const char *path, size_t path_len,
                    bg_relay_path *out, const char **allow, char *why, size_t whylen)
{
    const size_t plen = sizeof(PREFIX) - 1;
    if (allow != NULL)
        *allow = NULL;
    if (path_len < plen || memcmp(path, PREFIX, plen) != 0) {
        say(why, whylen, "the relay serves /v3/conversations/{id}/activities[/{activityId}]");
        return BG_ENOTFOUND;
    }
    const char *p = path + plen, *end = path + path_len;
    /* the query and fragment are not part of any route: refused, not ignored */
    for (const char *q = p; q < end; q++)
        if (*q == '?' || *q == '#') {
            say(why, whylen, "a query or fragment in a relay path");
            return BG_ERELAY_PATH;
        }
    /* segments: {conversation} "activities" [{activity}] */
    const char *seg[4];
    size_t seglen[4], n = 0;
    for (const char *s = p;;) {
        const char *slash = memchr(s, '/', (size_t)(end - s));
        const char *e = slash != NULL ? slash : end;
        if (n == 4) {
            say(why, whylen, "the relay serves /v3/conversations/{id}/activities[/{activityId}]");
            return BG_ENOTFOUND;
        }
        seg[n] = s;
        seglen[n++] = (size_t)(e - s);
        if (slash == NULL)
            break;
        s = slash + 1;
    }
    if (n < 2 || n > 3 || seglen[1] != 10 || memcmp(seg[1], "activities", 10) != 0) {
        say(why, whylen, "the relay serves /v3/conversations/{id}/activities[/{activityId}]");
        return BG_ENOTFOUND;
    }
    int is_post = method_is(method, method_len, "POST");
    int is_put = method_is(method, method_len, "PUT");
    int is_delete = method_is(method, method_len, "DELETE");
    if (n == 2 && !is_post) {
        if (allow != NULL)
            *allow = "POST";
        say(why, whylen, "POST only on /v3/conversations/{id}/activities");
        return BG_EMETHOD;
    }
    if (n == 3 && !is_post && !is_put && !is_delete) {
        if (allow != NULL)
            *allow = "POST, PUT, DELETE";
        say(why, whylen, "POST, PUT or DELETE only on /v3/conversations/{id}/activities/{id}");
        return BG_EMETHOD;
    }
    int rc = decode_id(seg[0], seglen[0], out->conversation_id, "conversation id", why, whylen);
    if (rc != 0)
        return rc;
    out->activity_id[0] = '\0';
    if (n == 3 &&
        (rc = decode_id(seg[2], seglen[2], out->activity_id, "activity id", why, whylen)) != 0)
        return rc;
    out->op = n == 2    ? BG_RELAY_SEND
              : is_post ? BG_RELAY_REPLY
              : is_put  ? BG_RELAY_UPDATE
                        : BG_RELAY_DELETE;
    return 0;
}

const char *
bg_relay_op_method(bg_relay_op op)
{
    return op == BG_RELAY_UPDATE ? "PUT" : op == BG_RELAY_DELETE ? "DELETE" : "POST";
}

const char *
bg_relay_op_name(bg_relay_op op)
{
    static const char *const names[] = {"send", "reply", "update", "delete"};
    return (unsigned)op < 4 ? names[op] : "unknown";
}

long
bg_relay_pct_encode(const char *s, size_t len, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    if (cap == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~';
        size_t need = plain ? 1 : 3;
        if (n + need >= cap) {
            out[0] = '\0';
            return -1;
        }
        if (plain) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
    return (long)n;
}

int
bg_relay_service_url_ok(const char *u)
{
    if (u == NULL || strncasecmp(u, "https://", 8) != 0 || strlen(u) > SERVICE_URL_MAX)
        return 0;
    for (const char *c = u; *c != '\0'; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '?' || *c == '#' ||
            *c == '\\')
            return 0;
    const char *host = u + 8;
    size_t auth = strcspn(host, "/");
    if (auth == 0 || memchr(host, '@', auth) != NULL || host[0] == ':')
        return 0;
    return 1;
}

int
bg_relay_target_url(const char *service_url, const bg_relay_path *p, char *out, size_t cap,
                    char *why, size_t whylen)
{
    if (!bg_relay_service_url_ok(service_url)) {
        say(why, whylen,
            "the stored serviceUrl is not an https:// URL with a host (and no userinfo, query "
            "or fragment)");
        return BG_EINVAL;
    }
    size_t base = strlen(service_url);
    while (base > 8 && service_url[base - 1] == '/')
        base--;
    char conv[3 * BG_RELAY_ID_MAX + 1], act[3 * BG_RELAY_ID_MAX + 1];
    if (bg_relay_pct_encode(p->conversation_id, strlen(p->conversation_id), conv, sizeof(conv)) <
            0 ||
        bg_relay_pct_encode(p->activity_id, strlen(p->activity_id), act, sizeof(act)) < 0) {
        say(why, whylen, "an id too long to encode");
        return BG_EINVAL;
    }
    int n = snprintf(out, cap, "%.*s/v3/conversations/%s/activities%s%s", (int)base, service_url,
                     conv, p->op == BG_RELAY_SEND ? "" : "/", p->op == BG_RELAY_SEND ? "" : act);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        say(why, whylen, "the Connector URL is too long");
        return BG_EINVAL;
    }
    return 0;
}

int
bg_relay_token_url(const char *token_url, const char *app_type, const char *tenant_id, char *out,
                   size_t cap)
{
    static const char seg[] = "/botframework.com/";
    const char *at = NULL;
    int single = app_type != NULL && strcasecmp(app_type, "SingleTenant") == 0 &&
                 tenant_id != NULL && tenant_id[0] != '\0';
    if (single)
        at = strstr(token_url, seg);
    int n = at == NULL ? snprintf(out, cap, "%s", token_url)
                       : snprintf(out, cap, "%.*s/%s/%s", (int)(at - token_url), token_url,
                                  tenant_id, at + sizeof(seg) - 1);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return BG_EINVAL;
    }
    return 0;
}

int64_t
bg_relay_token_refresh_at(int64_t obtained_ms, int64_t expires_in_s, int refresh_pct)
{
    if (expires_in_s < 0)
        expires_in_s = 0;
    return obtained_ms + expires_in_s * 10 * refresh_pct;
}

int64_t
bg_relay_token_usable_until(int64_t obtained_ms, int64_t expires_in_s)
{
    if (expires_in_s < 0)
        expires_in_s = 0;
    int64_t life_ms = expires_in_s * 1000;
    int64_t margin = life_ms / 10 < 60000 ? life_ms / 10 : 60000;
    return obtained_ms + life_ms - margin;
}

int
bg_relay_token_force_allowed(int64_t now_ms, int64_t last_forced_ms)
{
    return last_forced_ms == 0 || now_ms - last_forced_ms >= BG_RELAY_TOKEN_FORCE_INTERVAL_MS;
}

long
bg_relay_retry_delay_ms(int attempt, long retry_after_s)
{
    if (attempt < 1 || attempt > BG_RELAY_MAX_RETRIES)
        return -1;
    if (retry_after_s >= 0)
        return retry_after_s <= BG_RELAY_MAX_RETRY_AFTER_S ? retry_after_s * 1000 : -1;
    return 250L << (attempt - 1);
}

int
bg_relay_retryable(int curl_code, int64_t connect_us, long status, int has_retry_after)
{
    if (curl_code != CURLE_OK)
        return connect_us == 0 &&
               (curl_code == CURLE_COULDNT_CONNECT || curl_code == CURLE_COULDNT_RESOLVE_HOST ||
                curl_code == CURLE_OPERATION_TIMEDOUT);
    if (status == 502 || status == 503)
        return 1;
    return status == 429 && has_retry_after;
}

int
bg_relay_refusal_retryable(int curl_code, long status, int retries_made, int refused_before)
{
    return curl_code == CURLE_OK && status == 401 && !refused_before &&
           retries_made < BG_RELAY_MAX_RETRIES;
}
