/*
 * The queue entry: what botgate stores in the Redis stream for each accepted activity,
 * and what the dispatcher (or any consumer) reads back. A public, versioned contract
 * (README.md, "Queue entry"): a new bot can consume the stream itself.
 *
 * Stream entry: XADD <stream> * entry <msgpack bytes> (the dispatcher XDELs it once done)
 * The msgpack layout is drawn next to the encoder in policy/entry.c.
 */
#ifndef BOTGATE_ENTRY_H
#define BOTGATE_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#define BG_ENTRY_VERSION 1
#define BG_ENTRY_MAX_HEADERS 32

/* Borrowed slices: the entry points into the caller's memory (encode) or into the
 * decoded buffer (decode). Strings are not NUL-terminated; absent = {NULL, 0}. */
typedef struct bg_slice {
    const char *p;
    size_t len;
} bg_slice;

typedef struct bg_entry_header {
    bg_slice name; /* lower case */
    bg_slice value;
} bg_entry_header;

typedef struct bg_entry {
    uint32_t version;       /* BG_ENTRY_VERSION when encoding */
    bg_slice request_id;    /* botgate's id for the inbound request */
    int64_t received_at_us; /* Unix time of receipt, microseconds */
    bg_slice activity_id;
    bg_slice type;
    bg_slice channel_id;
    bg_slice conversation_id;
    bg_slice service_url;
    int64_t token_exp; /* the token's exp (Unix seconds); 0 = unknown */
    size_t n_headers;
    bg_entry_header headers[BG_ENTRY_MAX_HEADERS];
    bg_slice body;    /* the raw activity bytes, as received */
    uint32_t attempt; /* delivery attempts made so far; 0 when first stored */
} bg_entry;

/*
 * Encodes e as msgpack into a malloc'd buffer (*out, *outlen; the caller frees it).
 * Returns 0, BG_ENOMEM, or BG_EINVAL (too many headers; e->version neither 0 nor
 * BG_ENTRY_VERSION; a slice NULL with len > 0, or longer than 4 GiB - 1). Always writes
 * BG_ENTRY_VERSION. Header names are stored lower case; a name given more than once (in
 * any case) is stored once, its values joined by ", " in order.
 */
int bg_entry_encode(const bg_entry *e, char **out, size_t *outlen);

/*
 * Decodes buf into e. The slices in e point into `buf`, which must outlive e; nothing is
 * allocated. Unknown map keys are skipped (a newer minor writer stays readable); a version
 * this code does not know, a missing required key (version, received_at_us, body), a wrong
 * type or out-of-range value, a key or header name given twice, more than
 * BG_ENTRY_MAX_HEADERS headers, or bytes after the map return BG_EENTRY and leave e zeroed.
 * Returns 0 on success.
 */
int bg_entry_decode(bg_entry *e, const char *buf, size_t len);

#endif
