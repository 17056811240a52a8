/*
 * A strict JSON reader that builds no tree: one pass over the bytes, pulled by the caller.
 *
 * botgate reads a handful of fields out of request bodies and tokens whose every byte
 * another parser (the bot's, the SDK's) will also read, so this reader is held to
 * jansson 2.14's json_loadb with JSON_DECODE_ANY: it accepts exactly the texts jansson
 * accepts with the corresponding flags, refuses the others, and for a refused text reports
 * the line, column, byte position and sentence jansson reports ("invalid token near 'x'",
 * "duplicate object key near '\"id\"'"), so that callers keep their error messages.
 * tests/unit/test_json.c compares the two on hard inputs and on mutations of real
 * activities; tests/fuzz/fuzz_activity.c does so under libFuzzer.
 *
 *   - RFC 8259 grammar; whitespace is space, tab, LF, CR; the top-level value may be any
 *     value and bg_json_finish() refuses anything but whitespace after it;
 *   - strings: no raw control byte, valid UTF-8 (no overlong form, no surrogate, nothing
 *     above U+10FFFF; outside strings too), escapes \" \\ \/ \b \f \n \r \t \uXXXX, with
 *     surrogate pairs joined and lone surrogates refused; "\u0000" only with
 *     BG_JSON_ALLOW_NUL and never in a key;
 *   - numbers: an integer outside int64 is refused unless BG_JSON_INT_AS_REAL, a real
 *     beyond DBL_MAX always;
 *   - depth: a value nested deeper than max_depth (the top-level value is at depth 1) is
 *     refused; BG_JSON_MAX_DEPTH is jansson's JSON_PARSER_MAX_DEPTH;
 *   - BG_JSON_REJECT_DUPLICATES: a key given twice in any one object (compared after
 *     decoding escapes) is refused;
 *   - BG_JSON_NUL_QUIRK: jansson's one quirk that decides acceptance, kept for callers
 *     that must accept exactly what it does: a NUL byte right after a number or
 *     true/false/null is skipped and counted nowhere ("[1\0]" is [1]), as jansson's
 *     stream loses a NUL it un-reads. Without it, such a NUL is refused like any other.
 *
 * The reader never recurses and never writes to the input. It allocates only when a body
 * outgrows its inline buffers (more than 32 keys in the open objects, 16 levels of
 * nesting, 128 bytes of escaped keys); bg_json_free() releases that. Duplicates are found
 * when each object closes, in a table for up to 32 keys, by sorting for more (O(n log n)
 * in the worst case, whatever the keys), and the error reported is still the first jansson
 * would meet.
 *
 * Use: bg_json_init(); bg_json_value() for the top-level value; for an object,
 * bg_json_member() until it returns 0, reading each member's value with bg_json_value()
 * or bg_json_skip(); for an array, bg_json_element() likewise; bg_json_leave() drops the
 * rest of the innermost open object or array; bg_json_finish() after the top-level value;
 * bg_json_free(). Calls out of that order fail (BG_JSON_EUSAGE). After the first error
 * every call fails and r->err holds the error.
 */
#ifndef BOTGATE_JSON_H
#define BOTGATE_JSON_H

#include <stddef.h>
#include <stdint.h>

#define BG_JSON_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */
#define BG_JSON_ERROR_TEXT 160 /* jansson's JSON_ERROR_TEXT_LENGTH */

/* Flags for bg_json_init(), each named after the jansson flag it mirrors. */
enum {
    BG_JSON_REJECT_DUPLICATES = 1 << 0, /* JSON_REJECT_DUPLICATES, in every object */
    BG_JSON_ALLOW_NUL = 1 << 1,         /* JSON_ALLOW_NUL: "\u0000" in string values */
    BG_JSON_INT_AS_REAL = 1 << 2,       /* JSON_DECODE_INT_AS_REAL */
    /* Not jansson's: only arrays and objects count against max_depth, a scalar may sit one
     * level below the deepest container (the JWT reader's historical limit). */
    BG_JSON_DEPTH_CONTAINERS = 1 << 3,
    /* jansson 2.14's stream drops a NUL byte it un-reads after a number or literal:
     * "[1\0]" parses as [1]. Set to accept exactly what jansson accepts. */
    BG_JSON_NUL_QUIRK = 1 << 4,
};

typedef enum bg_json_type {
    BG_JSON_OBJECT = 1,
    BG_JSON_ARRAY,
    BG_JSON_STRING,
    BG_JSON_NUMBER,
    BG_JSON_TRUE,
    BG_JSON_FALSE,
    BG_JSON_NULL,
} bg_json_type;

typedef enum bg_json_errcode {
    BG_JSON_OK = 0,
    BG_JSON_ESYNTAX,    /* not JSON by the rules above, depth included */
    BG_JSON_EDUPLICATE, /* a key given twice in one object (BG_JSON_REJECT_DUPLICATES) */
    BG_JSON_ENOMEM,     /* out of memory */
    BG_JSON_EUSAGE,     /* the reader's functions were called out of order */
} bg_json_errcode;

/* The first error, as jansson's json_error_t would hold it. */
typedef struct bg_json_error {
    bg_json_errcode code;
    int line;        /* 1-based */
    int column;      /* characters (not bytes) since the line's start */
    size_t position; /* bytes from the start */
    char text[BG_JSON_ERROR_TEXT];
} bg_json_error;

/*
 * A string as read: raw points at the bytes between its quotes, in the input. Keys (from
 * bg_json_member) also come decoded in s/len: s points into the input when the key has no
 * escape, else into the reader, valid until the next call. Values are not decoded by the
 * reader: bg_json_decode() does it into a buffer of the caller's.
 */
typedef struct bg_json_str {
    const char *raw;
    size_t raw_len;
    const char *s; /* keys only */
    size_t len;    /* keys only */
    int escaped;   /* raw holds a backslash: the decoded bytes differ */
    int has_nul;   /* the decoded string holds a NUL ("\u0000", BG_JSON_ALLOW_NUL) */
} bg_json_str;

/* Private: one key of an open object, kept for the duplicate check. */
typedef struct st_bg_json_key {
    uint64_t tag; /* the decoded key's first 8 bytes, zero-padded: sorts most keys */
    size_t off;   /* the decoded key: an offset into the input or, in_arena, the arena */
    size_t len;   /* its length */
    size_t tok;   /* the key token's opening quote */
    size_t end;   /* one past its closing quote: where jansson reports a duplicate */
    int in_arena; /* the key had escapes and was decoded into the arena */
} st_bg_json_key;

/* Private: one open array or object. */
typedef struct st_bg_json_frame {
    unsigned char is_object;
    unsigned char started; /* a member or element was read (a ',' must come next) */
    size_t key_base;       /* this object's keys are keys[key_base .. the next frame's) */
    size_t arena_base;     /* and its escaped keys arena[arena_base ..) */
} st_bg_json_frame;

/* The reader. Fields are private but for err; put one on the stack with bg_json_init(). */
typedef struct bg_json_reader {
    bg_json_error err;
    const char *buf;
    size_t len, pos;
    unsigned flags;
    size_t max_depth;
    int state;   /* what may be called next */
    int tok;     /* the token last read */
    int pending; /* tok is an array element's first token, read but not yet taken */
    size_t tok_start, tok_end;
    bg_json_str str; /* the string token last read */
    int num_int;     /* the number last read is an integer (no fraction, no exponent) */
    int64_t num_i;   /* and its value, when not BG_JSON_INT_AS_REAL */
    st_bg_json_frame *frames;
    size_t depth, frames_cap;
    st_bg_json_key *keys;
    size_t nkeys, keys_cap;
    char *arena;
    size_t arena_len, arena_cap;
    st_bg_json_frame frames_inline[16];
    st_bg_json_key keys_inline[32];
    char arena_inline[128];
} bg_json_reader;

/* Starts reading buf[0..len) (not NUL-terminated; NULL allowed when len is 0).
 * max_depth 0 means BG_JSON_MAX_DEPTH. buf must outlive the reader. */
void bg_json_init(bg_json_reader *r, const char *buf, size_t len, unsigned flags, size_t max_depth);

/*
 * Reads the next value: the top-level one, a member's after bg_json_member() returned 1,
 * or an element after bg_json_element() returned 1. A scalar is read whole
 * (bg_json_string(), bg_json_number() give it); for an array or object only its opening
 * bracket is: read its insides with bg_json_member()/bg_json_element() or drop them with
 * bg_json_leave(). 0, or -1 with r->err set.
 */
int bg_json_value(bg_json_reader *r, bg_json_type *type);

/* Reads the next member's key (and the ':') of the innermost open object into *key: 1,
 * and its value must be read next; 0 when the object ended ('}' read, duplicates
 * checked); -1 on error. */
int bg_json_member(bg_json_reader *r, bg_json_str *key);

/* The same for the innermost open array: 1 when an element follows, 0 at its end. */
int bg_json_element(bg_json_reader *r);

/* Reads and drops the rest of the innermost open array or object, its end included:
 * validated, duplicates checked, nothing kept. 0 or -1. */
int bg_json_leave(bg_json_reader *r);

/* Reads and drops the next value (as bg_json_value() would read it), whatever it is. */
int bg_json_skip(bg_json_reader *r);

/* After the top-level value: 0 when only whitespace follows, else -1 ("end of file
 * expected"). */
int bg_json_finish(bg_json_reader *r);

/* The string value last read by bg_json_value(); valid until the next call. */
const bg_json_str *bg_json_string(const bg_json_reader *r);

/*
 * The number value last read by bg_json_value(): 1 and *i when it is an integer (no
 * fraction or exponent, and BG_JSON_INT_AS_REAL not set), else 0 and *d (strtod, which
 * assumes the "C" locale's decimal point; botgate never calls setlocale). -1 out of
 * memory (a number over 127 bytes is copied for strtod).
 */
int bg_json_number(const bg_json_reader *r, int64_t *i, double *d);

/*
 * Decodes a string read by this reader into out, which needs s->raw_len bytes (the
 * decoded string is never longer), and returns the decoded length; out is not
 * terminated. out may be s->raw itself when the caller owns the input and may write to
 * it: decoding never writes past what it has read. (The reader does not read those bytes
 * again, but an error found later would quote and count the decoded bytes.)
 */
size_t bg_json_decode(const bg_json_str *s, char *out);

/* Frees what the reader allocated (never the input); the reader is dead after it. */
void bg_json_free(bg_json_reader *r);

/*
 * Validates buf[0..len) as exactly one JSON value under flags and max_depth, as
 * json_loadb would. 0, or -1 with *err (may be NULL) filled.
 */
int bg_json_validate(const char *buf, size_t len, unsigned flags, size_t max_depth,
                     bg_json_error *err);

#endif
