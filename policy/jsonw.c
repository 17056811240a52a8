#include "botgate/jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void
bg_jsonw_begin(bg_jsonw *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 1;
    w->members = 0;
    w->truncated = 0;
    buf[0] = '{';
    buf[1] = '\0';
}

/* Room for n more bytes, keeping the closing's reserve. */
static int
room(const bg_jsonw *w, size_t n)
{
    return w->len + n + BG_JSONW_RESERVE <= w->cap;
}

static void
put(bg_jsonw *w, const char *p, size_t n)
{
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

/* ,"key": — keys are the program's own names: plain ASCII, nothing to escape. value_min
 * is the least room the value needs; without both, the member is left out. */
static int
put_key(bg_jsonw *w, const char *key, size_t value_min)
{
    size_t klen = strlen(key);
    if (!room(w, klen + 4 + value_min)) {
        w->truncated = 1;
        return 0;
    }
    if (w->members++ > 0)
        put(w, ",", 1);
    put(w, "\"", 1);
    put(w, key, klen);
    put(w, "\":", 2);
    return 1;
}

/* The length of the valid UTF-8 sequence at p (1..4), or 0 when the bytes are not one
 * (overlong forms, surrogates and code points over U+10FFFF are not valid). */
static size_t
utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, min = 0x10000;
    else
        return 0;
    if (avail < n)
        return 0;
    unsigned cp = c & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

void
bg_jsonw_str(bg_jsonw *w, const char *key, const char *s, size_t len)
{
    if (s == NULL || !put_key(w, key, 2))
        return;
    put(w, "\"", 1); /* put_key made sure of room for both quotes */
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        char esc[8];
        const char *out = esc;
        size_t n, used;
        unsigned c = p[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, n = 2, used = 1;
        } else if (c < 0x20 || c == 0x7F) {
            n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c), used = 1;
        } else if ((used = utf8_seq(p + i, len - i)) != 0) {
            out = s + i, n = used;
        } else {
            out = "\\ufffd", n = 6, used = 1;
        }
        if (!room(w, n + 1)) {
            w->truncated = 1;
            break;
        }
        put(w, out, n);
        i += used;
    }
    put(w, "\"", 1);
}

void
bg_jsonw_cstr(bg_jsonw *w, const char *key, const char *s)
{
    if (s != NULL)
        bg_jsonw_str(w, key, s, strlen(s));
}

void
bg_jsonw_int(bg_jsonw *w, const char *key, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRId64, v);
    if (put_key(w, key, (size_t)n))
        put(w, num, (size_t)n);
}

void
bg_jsonw_bool(bg_jsonw *w, const char *key, int v)
{
    if (!put_key(w, key, 5))
        return;
    if (v)
        put(w, "true", 4);
    else
        put(w, "false", 5);
}

size_t
bg_jsonw_end(bg_jsonw *w)
{
    /* the reserve holds this whatever was written before */
    if (w->truncated) {
        const char *t = w->members > 0 ? ",\"truncated\":true" : "\"truncated\":true";
        put(w, t, strlen(t));
    }
    put(w, "}\n", 2);
    w->buf[w->len] = '\0';
    return w->len;
}

void
bg_jsonw_time(char out[28], int64_t unix_us)
{
    time_t sec = (time_t)(unix_us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(out, 28, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 28 - n, ".%06uZ", (unsigned)(unix_us % 1000000) % 1000000u);
}
