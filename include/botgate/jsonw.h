/*
 * A JSON object writer for log lines: one flat object, appended member by member into a
 * caller's buffer, closed with "}\n". Never allocates.
 *
 * Strings are escaped so that the line is valid JSON whatever the bytes: '"', '\\' and
 * control characters are escaped, valid UTF-8 is copied, and a byte that is not part of a
 * valid UTF-8 sequence becomes U+FFFD. A value that does not fit is cut at a character
 * boundary and the line marks itself "truncated":true, so a line never overflows and
 * never ends mid-escape.
 *
 *   char buf[1024];
 *   bg_jsonw w;
 *   bg_jsonw_begin(&w, buf, sizeof(buf));
 *   bg_jsonw_str(&w, "kind", "request", 7);
 *   bg_jsonw_int(&w, "status", 202);
 *   size_t len = bg_jsonw_end(&w);     // buf holds {"kind":"request","status":202}\n
 */
#ifndef BOTGATE_JSONW_H
#define BOTGATE_JSONW_H

#include <stddef.h>
#include <stdint.h>

/* Room kept for the closing: ,"truncated":true}\n */
#define BG_JSONW_RESERVE 20

typedef struct bg_jsonw {
    char *buf;
    size_t cap, len;
    int members;   /* written so far */
    int truncated; /* something was cut or left out */
} bg_jsonw;

/* cap must be at least 64. */
void bg_jsonw_begin(bg_jsonw *w, char *buf, size_t cap);
/* A string member; s NULL writes nothing (an absent field is left out, not null). */
void bg_jsonw_str(bg_jsonw *w, const char *key, const char *s, size_t len);
/* The same for a NUL-terminated string (NULL: nothing). */
void bg_jsonw_cstr(bg_jsonw *w, const char *key, const char *s);
void bg_jsonw_int(bg_jsonw *w, const char *key, int64_t v);
void bg_jsonw_bool(bg_jsonw *w, const char *key, int v);
/* Closes the object and the line; returns the line's length (buf is NUL-terminated). */
size_t bg_jsonw_end(bg_jsonw *w);

/* "2026-11-27T06:35:48.123456Z" for a Unix time in µs; out needs 28 bytes. */
void bg_jsonw_time(char out[28], int64_t unix_us);

#endif
