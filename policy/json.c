/*
 * The strict pull reader of json.h: jansson's grammar, limits and error messages without
 * its tree.
 *
 * Why not jansson: a 1.3 KB Teams message cost about 19 us with json_loadb (a callback
 * per byte, an allocation per value, a hash table per object) only for botgate to read
 * eight strings; bg_activity_parse takes about 1.4 us on it with this reader. Why
 * jansson's behaviour to the letter: botgate must accept what the bot's parser accepts
 * and refuse the rest, and its error messages ("invalid JSON at line 1 column 9: invalid
 * token near '''") are part of its API.
 *
 * How it mirrors jansson (src/load.c, 2.14): a lexer (lex) reads one token the way
 * lex_scan does, including the one byte of look-ahead after a number or a word, and
 * reports lexical errors itself; the parser functions (bg_json_value, bg_json_member,
 * bg_json_element, bg_json_finish) make parse_value's, parse_object's, parse_array's and
 * parse_json's decisions on that token, in the same order. Positions follow jansson's
 * stream: the byte offset where it stood when it gave up (after the token, or before a
 * byte it un-read), the line counted in '\n's and the column in UTF-8 characters. A
 * message quotes the token ("near '...'") only when it is at most 20 bytes, as jansson's
 * error_set does; callers must still treat the quote as untrusted bytes.
 *
 * Duplicate keys: jansson looks each key up in its hash table as it reads it. Here each
 * object's keys are pushed onto one stack (the open objects' keys are contiguous slices
 * of it) and checked when the object closes: up to 32 keys in a small table on the stack
 * (small_dup), more by sorting (segment_dup: O(n log n) whatever the keys, with no hash
 * to flood). A duplicate is therefore seen late, at the '}' (or at the first other error,
 * whichever comes first); the error reported is still the one jansson would have met
 * first (fail(), pop()): the duplicate when its second copy ends before the other error's
 * position, and the earliest duplicate of all the open objects.
 */
#include "botgate/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jansson quotes the token near an error only up to this many bytes. */
#define CTX_MAX 20

/* What the reader may be asked next. */
enum { S_VALUE, S_INSIDE, S_DONE };

/* Tokens: the punctuation characters themselves, and these. */
enum {
    T_ERROR = -2,   /* a lexical error, already recorded */
    T_INVALID = -1, /* no token (jansson's TOKEN_INVALID): the parser says why */
    T_EOF = 0,
    T_STRING = 256,
    T_NUMBER,
    T_TRUE,
    T_FALSE,
    T_NULL,
};

/* Objects with at most this many keys are checked for duplicates by small_dup(). */
#define SMALL_OBJECT 32

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static size_t open_dup(bg_json_reader *r, size_t *tok);

/*
 * jansson's line, column and position for byte offset pos: lines counted in '\n's from 1,
 * the column in characters since the line's start (its stream counts the first byte of
 * each UTF-8 sequence). NUL bytes before nul_limit (the start of the token being read)
 * are not counted: the only way past a NUL is jansson dropping it after a number or word
 * (drop_nul, BG_JSON_NUL_QUIRK), and a dropped byte is one its stream never counted.
 * Only computed for an error, so a scan from the start is fine.
 */
static void
locate(const char *buf, size_t pos, size_t nul_limit, bg_json_error *e)
{
    const char *p = buf, *end = buf + pos, *start = buf, *limit = buf + nul_limit;
    int l = 1, c = 0;
    size_t dropped = 0;
    if (limit > end)
        limit = end;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        l++;
        start = ++p;
    }
    for (const char *q = start; q < end; q++)
        c += ((unsigned char)*q & 0xc0) != 0x80 && !(*q == '\0' && q < limit);
    for (const char *q = buf; q < limit && (q = memchr(q, '\0', (size_t)(limit - q))) != NULL; q++)
        dropped++;
    e->line = l;
    e->column = c;
    e->position = pos - dropped;
}

/*
 * Records an error at pos with msg and, as jansson's error_set does, the bytes
 * buf[ctx_start..ctx_end) (what its lexer had saved of the token, which starts at
 * ctx_start) as " near '...'" when they are 1 to 20 bytes; with no bytes, " near end of
 * file", except after a UTF-8 decoding error (utf8), which jansson reports bare. The
 * quote ends at a NUL byte, as jansson's C string does; one starting with NUL counts as
 * none. Returns -1.
 */
static int
set_error(bg_json_reader *r, bg_json_errcode code, size_t pos, size_t ctx_start, size_t ctx_end,
          int utf8, const char *msg)
{
    bg_json_error *e = &r->err;
    size_t n = ctx_end - ctx_start;
    const char *ctx = r->buf + ctx_start;
    e->code = code;
    locate(r->buf, pos, ctx_start, e);
    if (n > 0 && ctx[0] != '\0') {
        if (n <= CTX_MAX)
            snprintf(e->text, sizeof(e->text), "%.100s near '%.*s'", msg, (int)n, ctx);
        else
            snprintf(e->text, sizeof(e->text), "%s", msg);
    } else if (utf8) {
        snprintf(e->text, sizeof(e->text), "%s", msg);
    } else {
        snprintf(e->text, sizeof(e->text), "%.100s near end of file", msg);
    }
    return -1;
}

/*
 * Records the first syntax error (see set_error), unless a duplicate key that jansson
 * would have refused earlier is waiting in an open object: then that one. -1.
 */
static int __attribute__((format(printf, 6, 7)))
fail(bg_json_reader *r, size_t pos, size_t ctx_start, size_t ctx_end, int utf8, const char *fmt,
     ...)
{
    if (r->err.code != BG_JSON_OK)
        return -1;
    size_t dup_tok = 0, dup_end = open_dup(r, &dup_tok);
    if (dup_end <= pos)
        return set_error(r, BG_JSON_EDUPLICATE, dup_end, dup_tok, dup_end, 0,
                         "duplicate object key");
    char msg[BG_JSON_ERROR_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return set_error(r, BG_JSON_ESYNTAX, pos, ctx_start, ctx_end, utf8, msg);
}

/* A parser error about the token just read: reported after it, quoting it. */
static int
fail_tok(bg_json_reader *r, const char *msg)
{
    return fail(r, r->tok_end, r->tok_start, r->tok_end, 0, "%s", msg);
}

/* jansson's "unable to decode byte 0x..": invalid UTF-8 at offset at, which its stream
 * refuses wherever it meets it; ctx_start is where the current token began. T_ERROR. */
static int
fail_utf8(bg_json_reader *r, size_t at, size_t ctx_start)
{
    fail(r, at, ctx_start, at, 1, "unable to decode byte 0x%x", (unsigned char)r->buf[at]);
    return T_ERROR;
}

/* Out of memory, or a call out of order: recorded as such, never as a duplicate. -1. */
static int
fail_plain(bg_json_reader *r, bg_json_errcode code, const char *msg)
{
    if (r->err.code != BG_JSON_OK)
        return -1;
    r->err.code = code;
    locate(r->buf, r->pos, r->tok_start, &r->err);
    snprintf(r->err.text, sizeof(r->err.text), "%s", msg);
    return -1;
}

/* A call the reader's state does not allow (json.h: "Use"). */
static int
usage(bg_json_reader *r)
{
    return fail_plain(r, BG_JSON_EUSAGE, "the JSON reader was called out of order");
}

/* The length of the valid UTF-8 sequence at p (before end), or 0 (RFC 3629 §4; jansson's
 * utf8_check_first and utf8_check_full). */
static size_t
utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned long cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* The value of one hex digit, or -1. */
static int
hex_digit(unsigned c)
{
    if (c - '0' < 10)
        return (int)(c - '0');
    c |= 0x20;
    if (c - 'a' < 6)
        return (int)(c - 'a' + 10);
    return -1;
}

/* The value of the 4 hex digits at p (validated by the lexer). */
static unsigned long
hex4(const char *p)
{
    unsigned long v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 4 | (unsigned long)hex_digit((unsigned char)p[i]);
    return v;
}

/* 1 for a byte a string may hold as is: printable ASCII but '"' and '\\'. */
static int
plain_byte(unsigned c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/*
 * The first byte at or after p that ends a run of plain string bytes (a quote, a
 * backslash, a control byte, a non-ASCII byte), or end. Strings are most of a body, so
 * this looks at 8 bytes at a time: m has a top bit set in the first byte to stop at (the
 * classic has-zero-byte and has-less-than tests; a borrow only ever starts at a byte that
 * is itself one to stop at, so bytes before it are never flagged), and maybe in later
 * ones. (SSE2, 16 bytes at a time, measured no faster on activities.)
 */
static const unsigned char *
skip_plain(const unsigned char *p, const unsigned char *end)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - p >= 8) {
        uint64_t x, q, s, m;
        memcpy(&x, p, 8);
        q = x ^ (ONES * '"');
        s = x ^ (ONES * '\\');
        m = (((q - ONES) & ~q) | ((s - ONES) & ~s) | (x - ONES * 0x20) | x) & HIGHS;
        if (m != 0)
            return p + (__builtin_ctzll(m) >> 3);
        p += 8;
    }
#endif
    while (p < end && plain_byte(*p))
        p++;
    return p;
}

/*
 * Reads the string token whose opening quote is at offset tok, as lex_scan_string does:
 * first the scan (control bytes, UTF-8, escape syntax: errors at once, at jansson's
 * position), then what its decoding pass refuses (lone or mismatched surrogates: reported
 * after the whole token, the first one only). Fills r->str. T_STRING or T_ERROR.
 */
static int
lex_string(bg_json_reader *r, size_t tok)
{
    const unsigned char *b = (const unsigned char *)r->buf, *end = b + r->len;
    const unsigned char *p = b + tok + 1;
    int escaped = 0, has_nul = 0;
    long high = -1;            /* a high surrogate whose low half must follow */
    long bad1 = -1, bad2 = -1; /* the first invalid surrogate (and its partner) */
    for (;;) {
        p = skip_plain(p, end);
        if (p == end)
            return fail(r, r->len, tok, r->len, 0, "premature end of input"), T_ERROR;
        unsigned c = *p;
        if (c == '"')
            break;
        if (c < 0x20) {
            size_t at = (size_t)(p - b);
            if (c == '\n')
                fail(r, at, tok, at, 0, "unexpected newline");
            else
                fail(r, at, tok, at, 0, "control character 0x%x", c);
            return T_ERROR;
        }
        if (c >= 0x80) {
            size_t n = utf8_len(p, end);
            if (n == 0)
                return fail_utf8(r, (size_t)(p - b), tok);
            p += n;
            continue;
        }
        /* A backslash. jansson reads (and quotes) each byte of the escape as it checks it;
         * a bad one is reported after it, the end of input where the input ends. */
        escaped = 1;
        const unsigned char *e = p + 1;
        if (e == end)
            return fail(r, r->len, tok, r->len, 0, "invalid escape"), T_ERROR;
        if (*e >= 0x80 && utf8_len(e, end) == 0)
            return fail_utf8(r, (size_t)(e - b), tok);
        if (*e != 'u') {
            if (*e == '\0' || strchr("\"\\/bfnrt", *e) == NULL) {
                size_t at = (size_t)(e + 1 - b);
                return fail(r, at, tok, at, 0, "invalid escape"), T_ERROR;
            }
            p = e + 1;
            continue;
        }
        long v = 0;
        for (int i = 1; i <= 4; i++) {
            const unsigned char *h = e + i;
            if (h == end)
                return fail(r, r->len, tok, r->len, 0, "invalid escape"), T_ERROR;
            if (*h >= 0x80 && utf8_len(h, end) == 0)
                return fail_utf8(r, (size_t)(h - b), tok);
            int d = hex_digit(*h);
            if (d < 0) {
                size_t at = (size_t)(h + 1 - b);
                return fail(r, at, tok, at, 0, "invalid escape"), T_ERROR;
            }
            v = v << 4 | d;
        }
        p = e + 5;
        if (bad1 >= 0)
            continue; /* only the first bad surrogate is reported */
        if (high >= 0) {
            /* jansson pairs a high surrogate with the \u right after it, whatever it is */
            if (v >= 0xdc00 && v <= 0xdfff)
                high = -1;
            else
                bad1 = high, bad2 = v;
        } else if (v >= 0xd800 && v <= 0xdbff) {
            if (end - p >= 2 && p[0] == '\\' && p[1] == 'u')
                high = v;
            else
                bad1 = v;
        } else if (v >= 0xdc00 && v <= 0xdfff) {
            bad1 = v;
        } else if (v == 0) {
            has_nul = 1;
        }
    }
    size_t close = (size_t)(p - b);
    r->pos = r->tok_end = close + 1;
    if (bad1 >= 0) {
        if (bad2 >= 0)
            fail(r, close + 1, tok, close + 1, 0, "invalid Unicode '\\u%04lX\\u%04lX'", bad1, bad2);
        else
            fail(r, close + 1, tok, close + 1, 0, "invalid Unicode '\\u%04lX'", bad1);
        return T_ERROR;
    }
    r->str.raw = r->buf + tok + 1;
    r->str.raw_len = close - tok - 1;
    r->str.s = NULL;
    r->str.len = 0;
    r->str.escaped = escaped;
    r->str.has_nul = has_nul;
    return T_STRING;
}

/* 1 for an ASCII digit. */
static int
digit(unsigned c)
{
    return c - '0' < 10;
}

/*
 * After a number or literal read whole: jansson read one byte past it and un-read it; a
 * NUL byte un-read so is lost (its stream buffer takes the NUL for its own end and reads
 * on), so "[1\0]" is [1]. With BG_JSON_NUL_QUIRK, skips such a NUL (the token and
 * r->tok_end stay as they are: an error about this token is still reported right after
 * it). Returns tok.
 */
static int
drop_nul(bg_json_reader *r, int tok)
{
    if ((r->flags & BG_JSON_NUL_QUIRK) && r->pos < r->len && r->buf[r->pos] == '\0')
        r->pos++;
    return tok;
}

/*
 * strtod on buf[start..end) and jansson's overflow rule (a real beyond DBL_MAX,
 * HUGE_VAL with ERANGE, is refused; underflow to 0 is not). 0, 1 overflow, -1 no memory.
 */
static int
to_double(const char *buf, size_t start, size_t end, double *out)
{
    size_t n = end - start;
    char local[128], *copy = n < sizeof(local) ? local : malloc(n + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, buf + start, n);
    copy[n] = '\0';
    errno = 0;
    double d = strtod(copy, NULL);
    int overflow = (d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE;
    if (copy != local)
        free(copy);
    *out = d;
    return overflow;
}

/*
 * Reads the number token starting at offset s, as lex_scan_number does: "-", "01",
 * "1.", "1e+" are T_INVALID quoting what was read ("0", "1." ...), the byte after the
 * number was looked at (a bad UTF-8 byte there is jansson's first error), an integer
 * outside int64 is an error unless BG_JSON_INT_AS_REAL, a real beyond DBL_MAX always.
 * strtod only runs when the digits and exponent leave overflow possible.
 */
static int
lex_number(bg_json_reader *r, size_t s)
{
    const unsigned char *b = (const unsigned char *)r->buf;
    size_t len = r->len, e = s, int_start, int_end;
    int neg = 0, ok = 1, real = 0;
    long exp_val = 0;
    int exp_big = 0;
    if (b[e] == '-')
        neg = 1, e++;
    int_start = e;
    if (e < len && b[e] == '0') {
        e++;
        if (e < len && digit(b[e]))
            ok = 0; /* jansson un-reads the digit: "invalid token near '0'" */
    } else if (e < len && digit(b[e])) {
        while (e < len && digit(b[e]))
            e++;
    } else {
        ok = 0;
    }
    int_end = e;
    if (ok && e < len && b[e] == '.') {
        e++;
        if (e < len && digit(b[e])) {
            while (e < len && digit(b[e]))
                e++;
            real = 1;
        } else {
            ok = 0;
        }
    }
    if (ok && e < len && (b[e] == 'e' || b[e] == 'E')) {
        size_t x = e + 1;
        int exp_neg = 0;
        if (x < len && (b[x] == '+' || b[x] == '-'))
            exp_neg = b[x++] == '-';
        if (x < len && digit(b[x])) {
            while (x < len && digit(b[x])) {
                if (exp_val < 100000000)
                    exp_val = exp_val * 10 + (b[x] - '0');
                else
                    exp_big = 1;
                x++;
            }
            if (exp_neg)
                exp_val = -exp_val;
            real = 1;
        } else {
            ok = 0;
        }
        e = x;
    }
    r->pos = r->tok_end = e;
    if (e < len && b[e] >= 0x80 && utf8_len(b + e, b + len) == 0)
        return fail_utf8(r, e, s);
    if (!ok)
        return T_INVALID;

    r->num_int = !real;
    if (!real && !(r->flags & BG_JSON_INT_AS_REAL)) {
        uint64_t mag = 0;
        int overflow = 0;
        for (size_t i = int_start; i < int_end; i++) {
            unsigned d = b[i] - '0';
            if (mag > (UINT64_MAX - d) / 10)
                overflow = 1;
            else
                mag = mag * 10 + d;
        }
        if (overflow || mag > (uint64_t)INT64_MAX + (uint64_t)neg) {
            fail(r, e, s, e, 0, "%s", neg ? "too big negative integer" : "too big integer");
            return T_ERROR;
        }
        r->num_i = neg ? (int64_t)(0 - mag) : (int64_t)mag;
        return drop_nul(r, T_NUMBER);
    }
    /* |value| < 10^(integer digits + exponent): below 10^308 no strtod can overflow */
    long int_digits = (long)(int_end - int_start);
    if (exp_big || int_digits > 100000000 || int_digits + exp_val > 307) {
        double d;
        int rc = to_double(r->buf, s, e, &d);
        if (rc < 0) {
            fail_plain(r, BG_JSON_ENOMEM, "out of memory");
            return T_ERROR;
        }
        if (rc > 0) {
            fail(r, e, s, e, 0, "real number overflow");
            return T_ERROR;
        }
    }
    return drop_nul(r, T_NUMBER);
}

/* 1 for an ASCII letter: what jansson gathers into one word ("true", "nulls", "NaN"). */
static int
alpha(unsigned c)
{
    c |= 0x20;
    return c - 'a' < 26;
}

/* 1 for JSON whitespace (RFC 8259 §2: space, tab, LF, CR; not form feed). */
static int
space(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/*
 * Reads the next token into r->tok (and r->tok_start/tok_end, r->str, r->num_*), moving
 * r->pos past it: what jansson's lex_scan does. A byte that starts no token is
 * T_INVALID quoting it (the whole character when it is valid UTF-8).
 */
static int
lex(bg_json_reader *r)
{
    const unsigned char *b = (const unsigned char *)r->buf;
    size_t p = r->pos, len = r->len;
    while (p < len && space(b[p]))
        p++;
    r->tok_start = p;
    if (p == len) {
        r->pos = r->tok_end = len;
        return r->tok = T_EOF;
    }
    unsigned c = b[p];
    if (c == '"') /* the commonest token, tested before the switch's indirect jump */
        return r->tok = lex_string(r, p);
    switch (c) {
    case '{':
    case '}':
    case '[':
    case ']':
    case ':':
    case ',':
        r->pos = r->tok_end = p + 1;
        return r->tok = (int)c;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return r->tok = lex_number(r, p);
    default:
        break;
    }
    if (alpha(c)) {
        size_t e = p;
        while (e < len && alpha(b[e]))
            e++;
        r->pos = r->tok_end = e;
        if (e < len && b[e] >= 0x80 && utf8_len(b + e, b + len) == 0)
            return r->tok = fail_utf8(r, e, p);
        size_t n = e - p;
        if (n == 4 && memcmp(b + p, "true", 4) == 0)
            return r->tok = drop_nul(r, T_TRUE);
        if (n == 5 && memcmp(b + p, "false", 5) == 0)
            return r->tok = drop_nul(r, T_FALSE);
        if (n == 4 && memcmp(b + p, "null", 4) == 0)
            return r->tok = drop_nul(r, T_NULL);
        return r->tok = T_INVALID;
    }
    size_t n = 1;
    if (c >= 0x80 && (n = utf8_len(b + p, b + len)) == 0)
        return r->tok = fail_utf8(r, p, p);
    r->pos = r->tok_end = p + n;
    return r->tok = T_INVALID;
}

/*
 * The parser's fast path: when the next token is the punctuation c (what a well-formed
 * body nearly always holds next), reads it and returns 1, as lex() would have. Otherwise
 * returns 0 having only skipped whitespace; the caller then calls lex(), which reads the
 * same token the slow way, so errors come out exactly as without this.
 */
static int
next_is(bg_json_reader *r, int c)
{
    const unsigned char *b = (const unsigned char *)r->buf;
    size_t p = r->pos;
    while (p < r->len && space(b[p]))
        p++;
    r->pos = p;
    if (p == r->len || b[p] != c)
        return 0;
    r->tok_start = p;
    r->pos = r->tok_end = p + 1;
    r->tok = c;
    return 1;
}

/* ---- keys ------------------------------------------------------------------------------ */

/* The decoded bytes of key k. */
static const char *
key_bytes(const bg_json_reader *r, const st_bg_json_key *k)
{
    return (k->in_arena ? r->arena : r->buf) + k->off;
}

/* A total order on keys: by their first 8 bytes, then length, then the rest. Equal means
 * the same decoded key. */
static int
key_cmp(const bg_json_reader *r, const st_bg_json_key *a, const st_bg_json_key *b)
{
    if (a->tag != b->tag)
        return a->tag < b->tag ? -1 : 1;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    if (a->len <= 8)
        return 0;
    return memcmp(key_bytes(r, a) + 8, key_bytes(r, b) + 8, a->len - 8);
}

/* Swaps two keys. */
static void
key_swap(st_bg_json_key *a, st_bg_json_key *b)
{
    st_bg_json_key t = *a;
    *a = *b;
    *b = t;
}

/* Heapsort's sift-down of k[i] within k[0..n). */
static void
key_sift(const bg_json_reader *r, st_bg_json_key *k, size_t i, size_t n)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && key_cmp(r, &k[c], &k[c + 1]) < 0)
            c++;
        if (key_cmp(r, &k[i], &k[c]) >= 0)
            return;
        key_swap(&k[i], &k[c]);
        i = c;
    }
}

/*
 * Sorts k[0..n): insertion sort for the small objects that are nearly all objects,
 * heapsort (O(n log n), no extra memory, no bad input) for the rest.
 */
static void
key_sort(const bg_json_reader *r, st_bg_json_key *k, size_t n)
{
    if (n <= 16) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && key_cmp(r, &k[j - 1], &k[j]) > 0; j--)
                key_swap(&k[j - 1], &k[j]);
        return;
    }
    for (size_t i = n / 2; i-- > 0;)
        key_sift(r, k, i, n);
    for (size_t end = n; end-- > 1;) {
        key_swap(&k[0], &k[end]);
        key_sift(r, k, 0, end);
    }
}

/*
 * Sorts keys[lo..hi) (one object's) and returns where jansson would have refused a
 * duplicate among them: the end of the earliest key that repeats an earlier one (the
 * second-smallest end in a run of equal keys, the smallest over runs), with *tok its
 * opening quote; SIZE_MAX when all differ.
 */
static size_t
segment_dup(bg_json_reader *r, size_t lo, size_t hi, size_t *tok)
{
    st_bg_json_key *k = r->keys + lo;
    size_t n = hi - lo, best = SIZE_MAX;
    if (n < 2)
        return SIZE_MAX;
    key_sort(r, k, n);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1, e1 = k[i].end, e2 = SIZE_MAX;
        for (; j < n && key_cmp(r, &k[i], &k[j]) == 0; j++) {
            if (k[j].end < e1)
                e2 = e1, e1 = k[j].end;
            else if (k[j].end < e2)
                e2 = k[j].end;
        }
        if (e2 < best) {
            best = e2; /* ends are unique: find the key it belongs to */
            for (size_t m = i; m < j; m++)
                if (k[m].end == e2)
                    *tok = k[m].tok;
        }
        i = j;
    }
    return best;
}

/*
 * 1 when keys[lo .. lo+n) (n <= SMALL_OBJECT) hold a key twice: an open-addressing table
 * of 64 slots on the stack, probed by the keys' tags. Cheaper than sorting for the small
 * objects that make up nearly every body; keys crafted to collide cost at most n*n
 * comparisons, a bounded factor. Which duplicate jansson would name is left to
 * segment_dup, on the way to the error.
 */
static int
small_dup(const bg_json_reader *r, size_t lo, size_t n)
{
    unsigned char slot[64];
    memset(slot, 0xff, sizeof(slot));
    const st_bg_json_key *k = r->keys + lo;
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)(((k[i].tag ^ k[i].len) * 0x9e3779b97f4a7c15ull) >> 58);
        for (; slot[h] != 0xff; h = (h + 1) & 63)
            if (key_cmp(r, &k[slot[h]], &k[i]) == 0)
                return 1;
        slot[h] = (unsigned char)i;
    }
    return 0;
}

/* The earliest duplicate (see segment_dup) in any open object, or SIZE_MAX. Only on the
 * way to an error: it sorts the open objects' keys. */
static size_t
open_dup(bg_json_reader *r, size_t *tok)
{
    size_t best = SIZE_MAX;
    if (!(r->flags & BG_JSON_REJECT_DUPLICATES))
        return SIZE_MAX;
    for (size_t i = 0; i < r->depth; i++) {
        if (!r->frames[i].is_object)
            continue;
        size_t hi = i + 1 < r->depth ? r->frames[i + 1].key_base : r->nkeys, t = 0;
        size_t end = segment_dup(r, r->frames[i].key_base, hi, &t);
        if (end < best)
            best = end, *tok = t;
    }
    return best;
}

/*
 * Grows one of the reader's arrays (*p, *cap elements of size elem) to hold at least
 * need, moving it off its inline buffer on the first growth. 0, or -1 out of memory.
 */
static int
grow(void **p, size_t *cap, size_t elem, size_t need, const void *inline_buf)
{
    size_t n = *cap;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem)
            return -1;
        n *= 2;
    }
    void *q;
    if (*p == inline_buf) {
        if ((q = malloc(n * elem)) != NULL)
            memcpy(q, *p, *cap * elem);
    } else {
        q = realloc(*p, n * elem);
    }
    if (q == NULL)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/*
 * A key's first 8 bytes, zero-padded: most keys differ there, so most comparisons are
 * one integer compare. One load when 8 bytes are there to read (the key lies in the
 * input, followed by at least its closing quote), masked to the key's length.
 */
static uint64_t
key_tag(const bg_json_reader *r, const char *s, size_t n, int in_arena)
{
    uint64_t t = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (!in_arena && (size_t)(r->buf + r->len - s) >= 8) {
        memcpy(&t, s, 8);
        return n >= 8 ? t : t & ((1ull << (8 * n)) - 1);
    }
#else
    (void)r, (void)in_arena;
#endif
    memcpy(&t, s, n < 8 ? n : 8);
    return t;
}

/*
 * Takes the string token just read as the innermost object's next key: decodes it when
 * it has escapes (into the arena), pushes it for the duplicate check
 * (BG_JSON_REJECT_DUPLICATES), and fills *out (may be NULL). 0 or -1.
 */
static int
add_key(bg_json_reader *r, bg_json_str *out)
{
    const bg_json_str *s = &r->str;
    const char *dec = s->raw;
    size_t n = s->raw_len, off = (size_t)(s->raw - r->buf);
    int dups = (r->flags & BG_JSON_REJECT_DUPLICATES) != 0;
    if (s->escaped) {
        /* Without the duplicate check, only the latest key needs keeping. */
        if (!dups)
            r->arena_len = r->frames[r->depth - 1].arena_base;
        if (r->arena_cap - r->arena_len < n &&
            grow((void **)&r->arena, &r->arena_cap, 1, r->arena_len + n, r->arena_inline) != 0)
            return fail_plain(r, BG_JSON_ENOMEM, "out of memory");
        off = r->arena_len;
        n = bg_json_decode(s, r->arena + off);
        r->arena_len += n;
        dec = r->arena + off;
    }
    if (dups) {
        if (r->nkeys == r->keys_cap && grow((void **)&r->keys, &r->keys_cap, sizeof(*r->keys),
                                            r->nkeys + 1, r->keys_inline) != 0)
            return fail_plain(r, BG_JSON_ENOMEM, "out of memory");
        st_bg_json_key *k = &r->keys[r->nkeys++];
        k->tag = key_tag(r, dec, n, s->escaped);
        k->off = off;
        k->len = n;
        k->tok = r->tok_start;
        k->end = r->tok_end;
        k->in_arena = s->escaped;
    }
    if (out != NULL) {
        *out = *s;
        out->s = dec;
        out->len = n;
    }
    return 0;
}

/* ---- the parser ------------------------------------------------------------------------ */

/* Opens an array or object: a frame on the stack. 0 or -1 out of memory. */
static int
push(bg_json_reader *r, int is_object)
{
    if (r->depth == r->frames_cap && grow((void **)&r->frames, &r->frames_cap, sizeof(*r->frames),
                                          r->depth + 1, r->frames_inline) != 0)
        return fail_plain(r, BG_JSON_ENOMEM, "out of memory");
    st_bg_json_frame *f = &r->frames[r->depth++];
    f->is_object = (unsigned char)is_object;
    f->started = 0;
    f->key_base = r->nkeys;
    f->arena_base = r->arena_len;
    r->state = S_INSIDE;
    return 0;
}

/* Closes the innermost array or object after its ']' or '}': an object's keys are checked
 * for duplicates, then dropped. 0 (as bg_json_member's "ended"), or -1. */
static int
pop(bg_json_reader *r)
{
    st_bg_json_frame *f = &r->frames[r->depth - 1];
    size_t n = r->nkeys - f->key_base;
    if (f->is_object && n > 1) {
        size_t tok = 0, end = n <= SMALL_OBJECT ? (small_dup(r, f->key_base, n) ? 0 : SIZE_MAX)
                                                : segment_dup(r, f->key_base, r->nkeys, &tok);
        if (end != SIZE_MAX) {
            /* an outer object may hold one jansson would have met first */
            end = open_dup(r, &tok);
            return set_error(r, BG_JSON_EDUPLICATE, end, tok, end, 0, "duplicate object key");
        }
    }
    r->nkeys = f->key_base;
    r->arena_len = f->arena_base;
    r->depth--;
    r->state = r->depth == 0 ? S_DONE : S_INSIDE;
    return 0;
}

/* Starts a reader (json.h). */
void
bg_json_init(bg_json_reader *r, const char *buf, size_t len, unsigned flags, size_t max_depth)
{
    r->err.code = BG_JSON_OK;
    r->err.line = 0;
    r->err.column = 0;
    r->err.position = 0;
    r->err.text[0] = '\0';
    r->buf = buf != NULL ? buf : "";
    r->len = buf != NULL ? len : 0;
    r->pos = 0;
    r->flags = flags;
    r->max_depth = max_depth != 0 ? max_depth : BG_JSON_MAX_DEPTH;
    r->state = S_VALUE;
    r->tok = T_EOF;
    r->pending = 0;
    r->tok_start = r->tok_end = 0;
    r->num_int = 0;
    r->num_i = 0;
    r->frames = r->frames_inline;
    r->frames_cap = sizeof(r->frames_inline) / sizeof(r->frames_inline[0]);
    r->depth = 0;
    r->keys = r->keys_inline;
    r->keys_cap = sizeof(r->keys_inline) / sizeof(r->keys_inline[0]);
    r->nkeys = 0;
    r->arena = r->arena_inline;
    r->arena_cap = sizeof(r->arena_inline);
    r->arena_len = 0;
}

/* Reads the next value (json.h): jansson's parse_value, depth check first. */
int
bg_json_value(bg_json_reader *r, bg_json_type *type)
{
    if (r->err.code != BG_JSON_OK)
        return -1;
    if (r->state != S_VALUE)
        return usage(r);
    int t = r->pending ? r->tok : lex(r);
    r->pending = 0;
    if (t == T_ERROR)
        return -1;
    if (r->depth >= r->max_depth &&
        (t == '{' || t == '[' || !(r->flags & BG_JSON_DEPTH_CONTAINERS)))
        return fail_tok(r, "maximum parsing depth reached");
    bg_json_type ty;
    switch (t) {
    case T_STRING:
        if (r->str.has_nul && !(r->flags & BG_JSON_ALLOW_NUL))
            return fail_tok(r, "\\u0000 is not allowed without JSON_ALLOW_NUL");
        ty = BG_JSON_STRING;
        break;
    case T_NUMBER:
        ty = BG_JSON_NUMBER;
        break;
    case T_TRUE:
        ty = BG_JSON_TRUE;
        break;
    case T_FALSE:
        ty = BG_JSON_FALSE;
        break;
    case T_NULL:
        ty = BG_JSON_NULL;
        break;
    case '{':
    case '[':
        if (push(r, t == '{') != 0)
            return -1;
        *type = t == '{' ? BG_JSON_OBJECT : BG_JSON_ARRAY;
        return 0;
    case T_INVALID:
        return fail_tok(r, "invalid token");
    default:
        return fail_tok(r, "unexpected token");
    }
    *type = ty;
    r->state = r->depth == 0 ? S_DONE : S_INSIDE;
    return 0;
}

/* The next member of the innermost object (json.h): jansson's parse_object loop. */
int
bg_json_member(bg_json_reader *r, bg_json_str *key)
{
    if (r->err.code != BG_JSON_OK)
        return -1;
    if (r->state != S_INSIDE || !r->frames[r->depth - 1].is_object)
        return usage(r);
    st_bg_json_frame *f = &r->frames[r->depth - 1];
    int t;
    if (next_is(r, '}'))
        return pop(r);
    if (f->started && !next_is(r, ',')) {
        if (lex(r) == T_ERROR)
            return -1;
        return fail_tok(r, "'}' expected");
    }
    f->started = 1;
    if ((t = lex(r)) == T_ERROR)
        return -1;
    if (t != T_STRING)
        return fail_tok(r, "string or '}' expected");
    if (r->str.has_nul)
        return fail_tok(r, "NUL byte in object key not supported");
    if (add_key(r, key) != 0)
        return -1;
    if (!next_is(r, ':')) {
        if (lex(r) == T_ERROR)
            return -1;
        return fail_tok(r, "':' expected");
    }
    r->state = S_VALUE;
    return 1;
}

/* The next element of the innermost array (json.h): jansson's parse_array loop. The
 * element's first token is read here (to see the ']') and taken by bg_json_value(). */
int
bg_json_element(bg_json_reader *r)
{
    if (r->err.code != BG_JSON_OK)
        return -1;
    if (r->state != S_INSIDE || r->frames[r->depth - 1].is_object)
        return usage(r);
    st_bg_json_frame *f = &r->frames[r->depth - 1];
    if (next_is(r, ']'))
        return pop(r);
    if (f->started && !next_is(r, ',')) {
        if (lex(r) == T_ERROR)
            return -1;
        return fail_tok(r, "']' expected");
    }
    int t = lex(r);
    if (t == T_ERROR)
        return -1;
    f->started = 1;
    if (t == T_EOF)
        return fail_tok(r, "']' expected");
    r->pending = 1;
    r->state = S_VALUE;
    return 1;
}

/* Drops the rest of the innermost array or object (json.h), iteratively: the frames are
 * the reader's, so depth costs no C stack. */
int
bg_json_leave(bg_json_reader *r)
{
    if (r->err.code != BG_JSON_OK)
        return -1;
    if (r->state != S_INSIDE || r->depth == 0)
        return usage(r);
    size_t target = r->depth - 1;
    while (r->depth > target) {
        int more = r->frames[r->depth - 1].is_object ? bg_json_member(r, NULL) : bg_json_element(r);
        bg_json_type t;
        if (more < 0 || (more > 0 && bg_json_value(r, &t) != 0))
            return -1;
    }
    return 0;
}

/* Reads and drops the next value (json.h). */
int
bg_json_skip(bg_json_reader *r)
{
    bg_json_type t;
    if (bg_json_value(r, &t) != 0)
        return -1;
    return t == BG_JSON_OBJECT || t == BG_JSON_ARRAY ? bg_json_leave(r) : 0;
}

/* After the top-level value: only whitespace may follow (jansson without
 * JSON_DISABLE_EOF_CHECK). */
int
bg_json_finish(bg_json_reader *r)
{
    if (r->err.code != BG_JSON_OK)
        return -1;
    if (r->state != S_DONE)
        return usage(r);
    int t = lex(r);
    if (t == T_ERROR)
        return -1;
    if (t != T_EOF)
        return fail_tok(r, "end of file expected");
    return 0;
}

/* The string last read (json.h). */
const bg_json_str *
bg_json_string(const bg_json_reader *r)
{
    return &r->str;
}

/* The number last read (json.h): its integer value, or strtod on its text. */
int
bg_json_number(const bg_json_reader *r, int64_t *i, double *d)
{
    if (r->num_int && !(r->flags & BG_JSON_INT_AS_REAL)) {
        *i = r->num_i;
        return 1;
    }
    return to_double(r->buf, r->tok_start, r->tok_end, d) < 0 ? -1 : 0;
}

/* Writes code point cp (valid, not a surrogate) as UTF-8 at w; returns the new w. */
static char *
put_utf8(char *w, unsigned long cp)
{
    if (cp < 0x80) {
        *w++ = (char)cp;
    } else if (cp < 0x800) {
        *w++ = (char)(0xc0 | cp >> 6);
        *w++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xe0 | cp >> 12);
        *w++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *w++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *w++ = (char)(0xf0 | cp >> 18);
        *w++ = (char)(0x80 | (cp >> 12 & 0x3f));
        *w++ = (char)(0x80 | (cp >> 6 & 0x3f));
        *w++ = (char)(0x80 | (cp & 0x3f));
    }
    return w;
}

/*
 * Decodes a validated string (json.h). Runs without a backslash are moved whole; each
 * escape is never shorter than its decoding (\uXXXX is 6 bytes for at most 3, a pair 12
 * for 4), so writing at or before the read position is safe in place.
 */
size_t
bg_json_decode(const bg_json_str *s, char *out)
{
    const char *in = s->raw, *end = s->raw + s->raw_len;
    char *w = out;
    if (!s->escaped) {
        memmove(out, in, s->raw_len);
        return s->raw_len;
    }
    while (in < end) {
        const char *bs = memchr(in, '\\', (size_t)(end - in));
        size_t n = (size_t)((bs != NULL ? bs : end) - in);
        memmove(w, in, n);
        w += n;
        in += n;
        if (bs == NULL)
            break;
        char e = in[1];
        in += 2;
        switch (e) {
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'u': {
            unsigned long cp = hex4(in);
            in += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (hex4(in + 2) - 0xdc00);
                in += 6;
            }
            w = put_utf8(w, cp);
            break;
        }
        default: /* '"', '\\', '/' */
            *w++ = e;
            break;
        }
    }
    return (size_t)(w - out);
}

/* Frees the arrays that outgrew their inline buffers. */
void
bg_json_free(bg_json_reader *r)
{
    if (r->frames != r->frames_inline)
        free(r->frames);
    if (r->keys != r->keys_inline)
        free(r->keys);
    if (r->arena != r->arena_inline)
        free(r->arena);
    r->frames = r->frames_inline;
    r->keys = r->keys_inline;
    r->arena = r->arena_inline;
    r->depth = r->nkeys = r->arena_len = 0;
}

/* One value and nothing after it, checked without keeping anything (json.h). */
int
bg_json_validate(const char *buf, size_t len, unsigned flags, size_t max_depth, bg_json_error *err)
{
    bg_json_reader r;
    bg_json_init(&r, buf, len, flags, max_depth);
    int rc = bg_json_skip(&r) == 0 && bg_json_finish(&r) == 0 ? 0 : -1;
    if (err != NULL)
        *err = r.err;
    bg_json_free(&r);
    return rc;
}
