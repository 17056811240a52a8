/*
 * The queue entry (entry.h): the msgpack map botgate stores in the Redis stream for each
 * accepted activity, and the reader the dispatcher (or any consumer) uses to get it back.
 *
 * Writing uses msgpack-c's packer. Reading does NOT use msgpack-c's unpacker, on purpose.
 * msgpack_unpack_next() does reference the input for str and bin (no copy: the slices
 * would stay valid as long as buf), but it allocates each array and map up front from the
 * element count the bytes CLAIM, before it has seen a single element (48 bytes a pair,
 * rounded up to a power of two): the five bytes "df ff ff ff ff" (map32, 4294967295
 * pairs) make it ask malloc for 256 GiB, and "df 00 10 00 00" (2^20 pairs) quietly costs
 * 64 MiB. Without a sanitizer that malloc fails and it reports NOMEM; under ASan, and so
 * under every fuzzer, it aborts the process. A stored entry is input like any other
 * (anyone who can write the stream writes it), so the reader below walks the bytes
 * itself: it allocates nothing, every slice points into buf, every length is checked
 * against what is left, and it costs one pass over len bytes whatever the counts claim.
 */
#include "botgate/entry.h"
#include "botgate/error.h"

#include <msgpack.h>
#include <stdbool.h>
#include <string.h>

/*
 * Layout, version 1. One msgpack map, string keys, in this order when botgate writes it
 * (readers must not rely on the order: any map is valid):
 *
 *   +-----------------+-------------------+-------------------------------------------+
 *   | key             | value             |                                           |
 *   +-----------------+-------------------+-------------------------------------------+
 *   | version         | uint              | 1. Required.                              |
 *   | request_id      | str               | botgate's id for the inbound request      |
 *   | received_at_us  | int               | Unix time of receipt, µs. Required.       |
 *   | activity_id     | str               | the activity's `id`                       |
 *   | type            | str               | the activity's `type`                     |
 *   | channel_id      | str               | the activity's `channelId`                |
 *   | conversation_id | str               | the activity's `conversation.id`          |
 *   | service_url     | str               | the activity's `serviceUrl`               |
 *   | token_exp       | int               | the caller token's exp, Unix s; 0 unknown |
 *   | headers         | map str -> str    | forwarded request headers, names lower    |
 *   |                 |                   | case, each name once (repeats joined with |
 *   |                 |                   | ", "), at most 32                         |
 *   | body            | bin               | the request body, byte for byte. Required.|
 *   | attempt         | uint              | delivery attempts made so far             |
 *   +-----------------+-------------------+-------------------------------------------+
 *
 * A str key whose value is absent is left out of the map (the map's count says how many
 * pairs follow); the other keys are always written. botgate writes integers in msgpack's
 * shortest form (a positive int64 comes out as a uint), so a reader must accept any int or
 * uint encoding of a value in range, as this one does. Unknown
 * keys are skipped; a repeated key, a value of another type, trailing bytes after the map,
 * or a version other than 1 make the entry unreadable (BG_EENTRY).
 *
 * The bytes of a small entry, as bg_entry_encode writes them (tests/unit/test_entry.c
 * checks this dump byte for byte):
 *
 *   8a                                   fixmap, 10 pairs (two str keys absent)
 *   a7 "version"                01       1
 *   aa "request_id"             a2 "r1"
 *   ae "received_at_us"         cf 00 06 18 66 85 97 9f a8   1715678467301288
 *   a4 "type"                   a7 "message"
 *   aa "channel_id"             a7 "msteams"
 *   af "conversation_id"        a4 "a:1x"
 *   a9 "token_exp"              ce 66 43 3b 13               1715682067
 *   a7 "headers"                81                           fixmap, 1 pair
 *        ac "content-type"      b0 "application/json"
 *   a4 "body"                   c4 02 7b 7d                  bin8, 2 bytes: {}
 *   a7 "attempt"                00                           0
 *
 * 173 bytes. activity_id and service_url were absent; `a7 "version"` is a fixstr header
 * (0xa0 | length 7) and then the 7 bytes of the string. The caller had passed the header
 * name as "Content-Type".
 */
enum entry_kind {
    KIND_UINT32,  /* uint32_t field, msgpack uint */
    KIND_INT64,   /* int64_t field, msgpack int */
    KIND_STR,     /* bg_slice field, msgpack str; absent = key left out */
    KIND_BIN,     /* bg_slice field, msgpack bin */
    KIND_HEADERS, /* n_headers + headers[], msgpack map str -> str */
};

/* The table both directions follow: the writer walks it in order, the reader looks keys
 * up in it, so a key's name, type and place are said once. */
static const struct st_entry_field {
    const char *key;
    enum entry_kind kind;
    size_t offset; /* of the field in bg_entry */
    bool required; /* the reader refuses an entry without it */
} entry_fields[] = {
    {"version", KIND_UINT32, offsetof(bg_entry, version), true},
    {"request_id", KIND_STR, offsetof(bg_entry, request_id), false},
    {"received_at_us", KIND_INT64, offsetof(bg_entry, received_at_us), true},
    {"activity_id", KIND_STR, offsetof(bg_entry, activity_id), false},
    {"type", KIND_STR, offsetof(bg_entry, type), false},
    {"channel_id", KIND_STR, offsetof(bg_entry, channel_id), false},
    {"conversation_id", KIND_STR, offsetof(bg_entry, conversation_id), false},
    {"service_url", KIND_STR, offsetof(bg_entry, service_url), false},
    {"token_exp", KIND_INT64, offsetof(bg_entry, token_exp), false},
    {"headers", KIND_HEADERS, offsetof(bg_entry, headers), false},
    {"body", KIND_BIN, offsetof(bg_entry, body), true},
    {"attempt", KIND_UINT32, offsetof(bg_entry, attempt), false},
};
#define ENTRY_N_FIELDS (sizeof(entry_fields) / sizeof(entry_fields[0]))

/* How deep the reader follows arrays and maps inside a value it skips (an unknown key's).
 * Bounds its recursion; msgpack-c's own unpacker stops at the same depth. */
#define ENTRY_SKIP_MAX_DEPTH 32

/* The field a table row describes, inside e (and its const twin for the writer). */
static void *
field_ptr(bg_entry *e, const struct st_entry_field *f)
{
    return (char *)e + f->offset;
}

static const void *
field_cptr(const bg_entry *e, const struct st_entry_field *f)
{
    return (const char *)e + f->offset;
}

/*
 * A slice the writer can store: NULL only when empty, and short enough for a 32-bit
 * msgpack length (msgpack-c would silently truncate a longer one).
 */
static bool
slice_ok(const bg_slice *s)
{
    return (s->p != NULL || s->len == 0) && s->len <= UINT32_MAX;
}

/* Header names compare without regard to ASCII case, as HTTP's do. */
static bool
header_name_eq(const bg_slice *a, const bg_slice *b)
{
    if (a->len != b->len)
        return false;
    for (size_t i = 0; i < a->len; i++) {
        unsigned char x = (unsigned char)a->p[i], y = (unsigned char)b->p[i];
        if (x >= 'A' && x <= 'Z')
            x += 'a' - 'A';
        if (y >= 'A' && y <= 'Z')
            y += 'a' - 'A';
        if (x != y)
            return false;
    }
    return true;
}

/* True when headers[i]'s name came earlier: its value went out with that first one. */
static bool
header_repeats(const bg_entry *e, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (header_name_eq(&e->headers[i].name, &e->headers[j].name))
            return true;
    return false;
}

/* The stored value's length for the name of headers[first]: every value given for that
 * name, in order, with ", " between them. */
static uint64_t
header_joined_len(const bg_entry *e, size_t first)
{
    uint64_t len = 0;
    bool more = false;
    for (size_t j = first; j < e->n_headers; j++)
        if (header_name_eq(&e->headers[first].name, &e->headers[j].name)) {
            len += e->headers[j].value.len + (more ? 2 : 0);
            more = true;
        }
    return len;
}

/*
 * Checks what the writer cannot store faithfully before anything is allocated: a version
 * other than this code's, too many headers, a slice that is NULL yet non-empty or too long
 * for a msgpack length.
 */
static int
encode_check(const bg_entry *e)
{
    if (e->version != 0 && e->version != BG_ENTRY_VERSION)
        return BG_EINVAL;
    if (e->n_headers > BG_ENTRY_MAX_HEADERS)
        return BG_EINVAL;
    for (size_t i = 0; i < ENTRY_N_FIELDS; i++) {
        const struct st_entry_field *f = &entry_fields[i];
        if ((f->kind == KIND_STR || f->kind == KIND_BIN) && !slice_ok(field_cptr(e, f)))
            return BG_EINVAL;
    }
    for (size_t i = 0; i < e->n_headers; i++)
        if (!slice_ok(&e->headers[i].name) || !slice_ok(&e->headers[i].value))
            return BG_EINVAL;
    for (size_t i = 0; i < e->n_headers; i++)
        if (!header_repeats(e, i) && header_joined_len(e, i) > UINT32_MAX)
            return BG_EINVAL;
    return 0;
}

/*
 * Writes a header name as a msgpack str, lower-cased on the way (ASCII only), so that the
 * stored names are lower case whatever the caller passed; h2o already lower-cases, this
 * makes the format's promise hold for any caller. Goes through a small stack buffer
 * because the caller's bytes are const.
 */
static int
pack_lower(msgpack_packer *pk, const bg_slice *s)
{
    if (msgpack_pack_str(pk, s->len) != 0)
        return -1;
    char chunk[64];
    for (size_t off = 0; off < s->len;) {
        size_t n = s->len - off < sizeof(chunk) ? s->len - off : sizeof(chunk);
        for (size_t i = 0; i < n; i++) {
            char c = s->p[off + i];
            chunk[i] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
        }
        if (msgpack_pack_str_body(pk, chunk, n) != 0)
            return -1;
        off += n;
    }
    return 0;
}

/* Writes one str or bin value; an empty one gets no body call (msgpack-c's writer would
 * be handed a NULL pointer). */
static int
pack_bytes(msgpack_packer *pk, const bg_slice *s, bool bin)
{
    if ((bin ? msgpack_pack_bin(pk, s->len) : msgpack_pack_str(pk, s->len)) != 0)
        return -1;
    if (s->len == 0)
        return 0;
    return bin ? msgpack_pack_bin_body(pk, s->p, s->len) : msgpack_pack_str_body(pk, s->p, s->len);
}

/*
 * Writes the headers map. A name the request carried more than once (in any case) is
 * written once, at its first place, with its values joined by ", " in order: the list
 * form HTTP defines as equivalent (RFC 9110, 5.3). A map with a repeated key would mean
 * different things to different msgpack readers, so the format never has one.
 */
static int
pack_headers(msgpack_packer *pk, const bg_entry *e)
{
    size_t n_names = 0;
    for (size_t i = 0; i < e->n_headers; i++)
        if (!header_repeats(e, i))
            n_names++;
    if (msgpack_pack_map(pk, n_names) != 0)
        return -1;
    for (size_t i = 0; i < e->n_headers; i++) {
        if (header_repeats(e, i))
            continue;
        if (pack_lower(pk, &e->headers[i].name) != 0 ||
            msgpack_pack_str(pk, header_joined_len(e, i)) != 0)
            return -1;
        bool more = false;
        for (size_t j = i; j < e->n_headers; j++) {
            const bg_entry_header *h = &e->headers[j];
            if (!header_name_eq(&e->headers[i].name, &h->name))
                continue;
            if (more && msgpack_pack_str_body(pk, ", ", 2) != 0)
                return -1;
            if (h->value.len > 0 && msgpack_pack_str_body(pk, h->value.p, h->value.len) != 0)
                return -1;
            more = true;
        }
    }
    return 0;
}

/*
 * Writes the map drawn above, walking entry_fields in order. The only failure msgpack-c's
 * packer can report is its sbuffer's realloc failing, hence -1 means out of memory.
 */
static int
pack_entry(msgpack_packer *pk, const bg_entry *e)
{
    size_t n_pairs = 0;
    for (size_t i = 0; i < ENTRY_N_FIELDS; i++) {
        const struct st_entry_field *f = &entry_fields[i];
        if (f->kind != KIND_STR || ((const bg_slice *)field_cptr(e, f))->p != NULL)
            n_pairs++;
    }
    if (msgpack_pack_map(pk, n_pairs) != 0)
        return -1;
    for (size_t i = 0; i < ENTRY_N_FIELDS; i++) {
        const struct st_entry_field *f = &entry_fields[i];
        const void *v = field_cptr(e, f);
        if (f->kind == KIND_STR && ((const bg_slice *)v)->p == NULL)
            continue;
        if (msgpack_pack_str_with_body(pk, f->key, strlen(f->key)) != 0)
            return -1;
        int rc = 0;
        switch (f->kind) {
        case KIND_UINT32:
            /* version is always this code's, whatever e says (0 or BG_ENTRY_VERSION). */
            rc = msgpack_pack_uint32(pk, f->offset == offsetof(bg_entry, version)
                                             ? (uint32_t)BG_ENTRY_VERSION
                                             : *(const uint32_t *)v);
            break;
        case KIND_INT64:
            rc = msgpack_pack_int64(pk, *(const int64_t *)v);
            break;
        case KIND_STR:
        case KIND_BIN:
            rc = pack_bytes(pk, v, f->kind == KIND_BIN);
            break;
        case KIND_HEADERS:
            rc = pack_headers(pk, e);
            break;
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

/*
 * Encodes e (see entry.h). Everything that could make the bytes lie about e is refused
 * before the first allocation; after that the only failure is memory, and the buffer is
 * freed on it.
 */
int
bg_entry_encode(const bg_entry *e, char **out, size_t *outlen)
{
    if (out != NULL)
        *out = NULL;
    if (outlen != NULL)
        *outlen = 0;
    if (e == NULL || out == NULL || outlen == NULL)
        return BG_EINVAL;
    int rc = encode_check(e);
    if (rc != 0)
        return rc;

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (pack_entry(&pk, e) != 0) {
        msgpack_sbuffer_destroy(&sb);
        return BG_ENOMEM;
    }
    *outlen = sb.size;
    *out = msgpack_sbuffer_release(&sb);
    return 0;
}

/* The reader's cursor over the caller's bytes. It never reads at or past end. */
struct st_entry_reader {
    const unsigned char *p;
    const unsigned char *end;
};

/* Hands out the next n bytes, or fails if fewer are left. */
static bool
take(struct st_entry_reader *r, size_t n, const unsigned char **out)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    *out = r->p;
    r->p += n;
    return true;
}

/* Reads an n-byte (1, 2, 4 or 8) big-endian unsigned number: msgpack's lengths and ints. */
static bool
take_be(struct st_entry_reader *r, size_t n, uint64_t *v)
{
    const unsigned char *b;
    if (!take(r, n, &b))
        return false;
    *v = 0;
    for (size_t i = 0; i < n; i++)
        *v = (*v << 8) | b[i];
    return true;
}

/* Reads a map header (fixmap, map16, map32): the number of pairs that follow. */
static bool
read_map(struct st_entry_reader *r, uint64_t *n)
{
    const unsigned char *b;
    if (!take(r, 1, &b))
        return false;
    if ((*b & 0xf0) == 0x80) {
        *n = *b & 0x0f;
        return true;
    }
    if (*b == 0xde)
        return take_be(r, 2, n);
    if (*b == 0xdf)
        return take_be(r, 4, n);
    return false;
}

/*
 * Reads a str (fixstr, str8/16/32) or, with bin set, a bin (bin8/16/32) as a slice into
 * the input. The length is checked against what is left before the slice is made.
 */
static bool
read_bytes(struct st_entry_reader *r, bool bin, bg_slice *s)
{
    const unsigned char *b;
    uint64_t len;
    if (!take(r, 1, &b))
        return false;
    if (!bin && (*b & 0xe0) == 0xa0) {
        len = *b & 0x1f;
    } else {
        unsigned char base = bin ? 0xc4 : 0xd9; /* the 8-bit form; 16 and 32 follow it */
        if (*b < base || *b > base + 2 || !take_be(r, (size_t)1 << (*b - base), &len))
            return false;
    }
    const unsigned char *data;
    if (!take(r, len, &data))
        return false;
    s->p = (const char *)data;
    s->len = len;
    return true;
}

/*
 * Reads any int or uint encoding (fixint, negative fixint, uint8..64, int8..64) as an
 * int64_t. A uint64 above INT64_MAX does not fit and fails.
 */
static bool
read_int(struct st_entry_reader *r, int64_t *v)
{
    const unsigned char *b;
    uint64_t u;
    if (!take(r, 1, &b))
        return false;
    if (*b <= 0x7f) {
        *v = *b;
        return true;
    }
    if (*b >= 0xe0) {
        *v = (int64_t)*b - 0x100;
        return true;
    }
    if (*b >= 0xcc && *b <= 0xcf) {
        if (!take_be(r, (size_t)1 << (*b - 0xcc), &u) || u > INT64_MAX)
            return false;
        *v = (int64_t)u;
        return true;
    }
    if (*b >= 0xd0 && *b <= 0xd3) {
        if (!take_be(r, (size_t)1 << (*b - 0xd0), &u))
            return false;
        /* Two's complement of the stored width (GCC and Clang convert modulo 2^N). */
        *v = *b == 0xd0   ? (int8_t)u
             : *b == 0xd1 ? (int16_t)u
             : *b == 0xd2 ? (int32_t)u
                          : (int64_t)u;
        return true;
    }
    return false;
}

/*
 * Steps over one value of any type: an unknown key's, which a newer writer may have
 * added. Each element consumes at least one byte, so the walk ends within len bytes
 * however large the counts the bytes claim; depth bounds the recursion.
 */
static bool
skip_value(struct st_entry_reader *r, int depth)
{
    const unsigned char *b, *data;
    uint64_t n = 0, len = 0;
    if (depth > ENTRY_SKIP_MAX_DEPTH || !take(r, 1, &b))
        return false;
    unsigned char t = *b;
    if (t <= 0x7f || t >= 0xe0) /* positive and negative fixint */
        return true;
    if ((t & 0xf0) == 0x80) { /* fixmap: a key and a value per pair */
        n = (uint64_t)(t & 0x0f) * 2;
    } else if ((t & 0xf0) == 0x90) { /* fixarray */
        n = t & 0x0f;
    } else if ((t & 0xe0) == 0xa0) { /* fixstr */
        return take(r, t & 0x1f, &data);
    } else {
        switch (t) {
        case 0xc0: /* nil */
        case 0xc2: /* false */
        case 0xc3: /* true */
            return true;
        case 0xc4: /* bin8, bin16, bin32 */
        case 0xc5:
        case 0xc6:
            return take_be(r, (size_t)1 << (t - 0xc4), &len) && take(r, len, &data);
        case 0xc7: /* ext8, ext16, ext32: length, a type byte, the data */
        case 0xc8:
        case 0xc9:
            return take_be(r, (size_t)1 << (t - 0xc7), &len) && take(r, len + 1, &data);
        case 0xca: /* float32 */
            return take(r, 4, &data);
        case 0xcb: /* float64 */
            return take(r, 8, &data);
        case 0xcc: /* uint8..uint64 */
        case 0xcd:
        case 0xce:
        case 0xcf:
            return take(r, (size_t)1 << (t - 0xcc), &data);
        case 0xd0: /* int8..int64 */
        case 0xd1:
        case 0xd2:
        case 0xd3:
            return take(r, (size_t)1 << (t - 0xd0), &data);
        case 0xd4: /* fixext 1, 2, 4, 8, 16: a type byte and the data */
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
            return take(r, 1 + ((size_t)1 << (t - 0xd4)), &data);
        case 0xd9: /* str8, str16, str32 */
        case 0xda:
        case 0xdb:
            return take_be(r, (size_t)1 << (t - 0xd9), &len) && take(r, len, &data);
        case 0xdc: /* array16, array32 */
        case 0xdd:
            if (!take_be(r, t == 0xdc ? 2 : 4, &n))
                return false;
            break;
        case 0xde: /* map16, map32 */
        case 0xdf:
            if (!take_be(r, t == 0xde ? 2 : 4, &n))
                return false;
            n *= 2;
            break;
        default: /* 0xc1: never used */
            return false;
        }
    }
    for (uint64_t i = 0; i < n; i++)
        if (!skip_value(r, depth + 1))
            return false;
    return true;
}

/*
 * Reads the headers map: at most BG_ENTRY_MAX_HEADERS pairs of str -> str, no name twice.
 * The count is checked before any pair is read, so e->headers is never overrun.
 */
static bool
read_headers(struct st_entry_reader *r, bg_entry *e)
{
    uint64_t n;
    if (!read_map(r, &n) || n > BG_ENTRY_MAX_HEADERS)
        return false;
    for (size_t i = 0; i < n; i++) {
        bg_entry_header *h = &e->headers[i];
        if (!read_bytes(r, false, &h->name) || !read_bytes(r, false, &h->value))
            return false;
        for (size_t j = 0; j < i; j++)
            if (header_name_eq(&h->name, &e->headers[j].name))
                return false;
    }
    e->n_headers = n;
    return true;
}

/* Reads one known key's value into its field, with the type the table gives it. */
static bool
read_field(struct st_entry_reader *r, bg_entry *e, const struct st_entry_field *f)
{
    int64_t v;
    switch (f->kind) {
    case KIND_UINT32:
        if (!read_int(r, &v) || v < 0 || v > UINT32_MAX)
            return false;
        *(uint32_t *)field_ptr(e, f) = (uint32_t)v;
        return true;
    case KIND_INT64:
        return read_int(r, field_ptr(e, f));
    case KIND_STR:
    case KIND_BIN:
        return read_bytes(r, f->kind == KIND_BIN, field_ptr(e, f));
    case KIND_HEADERS:
        return read_headers(r, e);
    }
    return false;
}

/* The table row for a key, or NULL for a key this version does not know. */
static const struct st_entry_field *
find_field(const bg_slice *key)
{
    for (size_t i = 0; i < ENTRY_N_FIELDS; i++)
        if (strlen(entry_fields[i].key) == key->len &&
            memcmp(entry_fields[i].key, key->p, key->len) == 0)
            return &entry_fields[i];
    return NULL;
}

/*
 * Walks the top-level map once: each key is a str, a known key is read into e (once), an
 * unknown one is stepped over. Then the map must have been the whole buffer, the required
 * keys present and the version ours.
 */
static bool
read_entry(struct st_entry_reader *r, bg_entry *e)
{
    uint64_t n;
    uint32_t seen = 0;
    if (!read_map(r, &n))
        return false;
    for (uint64_t i = 0; i < n; i++) {
        bg_slice key;
        if (!read_bytes(r, false, &key))
            return false;
        const struct st_entry_field *f = find_field(&key);
        if (f == NULL) {
            if (!skip_value(r, 1))
                return false;
            continue;
        }
        uint32_t bit = 1u << (f - entry_fields);
        if ((seen & bit) != 0 || !read_field(r, e, f))
            return false;
        seen |= bit;
    }
    if (r->p != r->end)
        return false;
    for (size_t i = 0; i < ENTRY_N_FIELDS; i++)
        if (entry_fields[i].required && (seen & (1u << i)) == 0)
            return false;
    return e->version == BG_ENTRY_VERSION;
}

/*
 * Decodes buf into e (see entry.h). Allocates nothing: every slice in e points into buf.
 * On failure e is zeroed, so no half-read entry escapes.
 */
int
bg_entry_decode(bg_entry *e, const char *buf, size_t len)
{
    if (e == NULL || (buf == NULL && len > 0))
        return BG_EINVAL;
    memset(e, 0, sizeof(*e));
    if (buf == NULL) /* an empty buffer holds no map */
        return BG_EENTRY;
    struct st_entry_reader r = {(const unsigned char *)buf, (const unsigned char *)buf + len};
    if (!read_entry(&r, e)) {
        memset(e, 0, sizeof(*e));
        return BG_EENTRY;
    }
    return 0;
}
