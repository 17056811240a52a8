/*
 * The queue entry: what bg_entry_encode writes is what the README documents, what any
 * msgpack writer produces in that layout bg_entry_decode reads, and no byte sequence makes
 * the reader crash, overrun, allocate or leak.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "botgate/entry.h"
#include "botgate/error.h"

#define S(lit) ((bg_slice){(lit), sizeof(lit) - 1})

/* Compares a slice with a string literal's bytes (which may include NULs). */
#define assert_slice(s, lit)                                                                       \
    do {                                                                                           \
        assert_non_null((s).p);                                                                    \
        assert_int_equal((s).len, sizeof(lit) - 1);                                                \
        assert_memory_equal((s).p, (lit), sizeof(lit) - 1);                                        \
    } while (0)

#define assert_absent(s)                                                                           \
    do {                                                                                           \
        assert_null((s).p);                                                                        \
        assert_int_equal((s).len, 0);                                                              \
    } while (0)

/* A slice points into [buf, buf + len): the decoder copied nothing. */
static void
assert_inside(bg_slice s, const char *buf, size_t len)
{
    assert_true(s.p >= buf && s.p + s.len <= buf + len);
}

static const char binary_body[] = "{\"type\":\"message\"}\0\xff\x00\xfe\x80 raw";

/* An entry with every field set, headers in mixed case, a body with NUL and 0xff bytes. */
static void
full_entry(bg_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->version = BG_ENTRY_VERSION;
    e->request_id = S("req-8f14e45f");
    e->received_at_us = 1715678467301288;
    e->activity_id = S("1715678467301");
    e->type = S("message");
    e->channel_id = S("msteams");
    e->conversation_id = S("19:3e1f@thread.tacv2;messageid=1715678467301");
    e->service_url = S("https://smba.trafficmanager.net/emea/");
    e->token_exp = 1715682067;
    e->n_headers = 3;
    e->headers[0].name = S("Authorization");
    e->headers[0].value = S("Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig");
    e->headers[1].name = S("content-type");
    e->headers[1].value = S("application/json; charset=utf-8");
    e->headers[2].name = S("X-Ms-Conversation-Id");
    e->headers[2].value = S("");
    e->body = (bg_slice){binary_body, sizeof(binary_body) - 1};
    e->attempt = 3;
}

static void
encode_ok(const bg_entry *e, char **buf, size_t *len)
{
    assert_int_equal(bg_entry_encode(e, buf, len), 0);
    assert_non_null(*buf);
    assert_true(*len > 0);
}

/* Every field survives the round trip; header names come back lower case; every slice
 * points into the encoded buffer. */
static void
test_round_trip_every_field(void **state)
{
    (void)state;
    bg_entry in, out;
    full_entry(&in);
    char *buf;
    size_t len;
    encode_ok(&in, &buf, &len);
    assert_int_equal(bg_entry_decode(&out, buf, len), 0);

    assert_int_equal(out.version, 1);
    assert_slice(out.request_id, "req-8f14e45f");
    assert_int_equal(out.received_at_us, 1715678467301288);
    assert_slice(out.activity_id, "1715678467301");
    assert_slice(out.type, "message");
    assert_slice(out.channel_id, "msteams");
    assert_slice(out.conversation_id, "19:3e1f@thread.tacv2;messageid=1715678467301");
    assert_slice(out.service_url, "https://smba.trafficmanager.net/emea/");
    assert_int_equal(out.token_exp, 1715682067);
    assert_int_equal(out.n_headers, 3);
    assert_slice(out.headers[0].name, "authorization");
    assert_slice(out.headers[0].value, "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig");
    assert_slice(out.headers[1].name, "content-type");
    assert_slice(out.headers[1].value, "application/json; charset=utf-8");
    assert_slice(out.headers[2].name, "x-ms-conversation-id");
    assert_slice(out.headers[2].value, "");
    assert_slice(out.body, binary_body);
    assert_int_equal(out.attempt, 3);

    const bg_slice all[] = {out.request_id,
                            out.activity_id,
                            out.type,
                            out.channel_id,
                            out.conversation_id,
                            out.service_url,
                            out.headers[0].name,
                            out.headers[0].value,
                            out.headers[1].name,
                            out.headers[1].value,
                            out.headers[2].name,
                            out.headers[2].value,
                            out.body};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        assert_inside(all[i], buf, len);
    free(buf);
}

/* Integers at the edges of their types, and a body and header set at their limits. */
static void
test_round_trip_limits(void **state)
{
    (void)state;
    static const int64_t ints[] = {0,
                                   1,
                                   -1,
                                   127,
                                   128,
                                   -32,
                                   -33,
                                   255,
                                   256,
                                   65535,
                                   65536,
                                   -32768,
                                   -32769,
                                   4294967295LL,
                                   4294967296LL,
                                   INT32_MIN,
                                   (int64_t)INT32_MIN - 1,
                                   INT64_MAX,
                                   INT64_MIN};
    static const uint32_t uints[] = {0, 1, 127, 128, 255, 256, 65535, 65536, UINT32_MAX};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        bg_entry in, out;
        memset(&in, 0, sizeof(in));
        in.received_at_us = ints[i];
        in.token_exp = ints[sizeof(ints) / sizeof(ints[0]) - 1 - i];
        in.attempt = uints[i % (sizeof(uints) / sizeof(uints[0]))];
        char *buf;
        size_t len;
        encode_ok(&in, &buf, &len);
        assert_int_equal(bg_entry_decode(&out, buf, len), 0);
        assert_true(out.received_at_us == in.received_at_us);
        assert_true(out.token_exp == in.token_exp);
        assert_int_equal(out.attempt, in.attempt);
        free(buf);
    }

    /* 32 headers (the limit) and a 300 KiB body (bin32) with every byte value. */
    bg_entry in, out;
    memset(&in, 0, sizeof(in));
    char names[BG_ENTRY_MAX_HEADERS][16];
    for (size_t i = 0; i < BG_ENTRY_MAX_HEADERS; i++) {
        int n = snprintf(names[i], sizeof(names[i]), "x-h%zu", i);
        in.headers[i].name = (bg_slice){names[i], (size_t)n};
        in.headers[i].value = (bg_slice){names[i], (size_t)n};
    }
    in.n_headers = BG_ENTRY_MAX_HEADERS;
    size_t body_len = 300 * 1024;
    char *body = malloc(body_len);
    assert_non_null(body);
    for (size_t i = 0; i < body_len; i++)
        body[i] = (char)(i * 7);
    in.body = (bg_slice){body, body_len};
    char *buf;
    size_t len;
    encode_ok(&in, &buf, &len);
    assert_int_equal(bg_entry_decode(&out, buf, len), 0);
    assert_int_equal(out.n_headers, BG_ENTRY_MAX_HEADERS);
    assert_memory_equal(out.headers[31].name.p, "x-h31", 5);
    assert_int_equal(out.body.len, body_len);
    assert_memory_equal(out.body.p, body, body_len);
    free(buf);
    free(body);
}

/* Absent strings leave their key out and come back {NULL, 0}; an empty string is a value
 * and comes back non-NULL with length 0. A zeroed entry (version 0) is written as 1. */
static void
test_absent_optional_fields(void **state)
{
    (void)state;
    bg_entry in, out;
    memset(&in, 0, sizeof(in));
    in.received_at_us = 42;
    char *buf;
    size_t len;
    encode_ok(&in, &buf, &len);
    assert_int_equal((unsigned char)buf[0], 0x86); /* 6 pairs: no str key written */
    assert_null(memmem(buf, len, "request_id", 10));
    assert_int_equal(bg_entry_decode(&out, buf, len), 0);
    assert_int_equal(out.version, BG_ENTRY_VERSION);
    assert_int_equal(out.received_at_us, 42);
    assert_absent(out.request_id);
    assert_absent(out.activity_id);
    assert_absent(out.type);
    assert_absent(out.channel_id);
    assert_absent(out.conversation_id);
    assert_absent(out.service_url);
    assert_int_equal(out.token_exp, 0);
    assert_int_equal(out.n_headers, 0);
    assert_non_null(out.body.p); /* present, empty */
    assert_int_equal(out.body.len, 0);
    assert_int_equal(out.attempt, 0);
    free(buf);

    in.type = (bg_slice){"", 0};
    encode_ok(&in, &buf, &len);
    assert_int_equal(bg_entry_decode(&out, buf, len), 0);
    assert_non_null(out.type.p);
    assert_int_equal(out.type.len, 0);
    assert_absent(out.activity_id);
    free(buf);
}

/* The dump drawn next to the encoder in policy/entry.c, byte for byte. */
static const unsigned char documented[] = {
    0x8a, 0xa7, 'v',  'e',  'r',  's',  'i', 'o',  'n',  0x01, 0xaa, 'r',  'e',  'q',  'u',  'e',
    's',  't',  '_',  'i',  'd',  0xa2, 'r', '1',  0xae, 'r',  'e',  'c',  'e',  'i',  'v',  'e',
    'd',  '_',  'a',  't',  '_',  'u',  's', 0xcf, 0x00, 0x06, 0x18, 0x66, 0x85, 0x97, 0x9f, 0xa8,
    0xa4, 't',  'y',  'p',  'e',  0xa7, 'm', 'e',  's',  's',  'a',  'g',  'e',  0xaa, 'c',  'h',
    'a',  'n',  'n',  'e',  'l',  '_',  'i', 'd',  0xa7, 'm',  's',  't',  'e',  'a',  'm',  's',
    0xaf, 'c',  'o',  'n',  'v',  'e',  'r', 's',  'a',  't',  'i',  'o',  'n',  '_',  'i',  'd',
    0xa4, 'a',  ':',  '1',  'x',  0xa9, 't', 'o',  'k',  'e',  'n',  '_',  'e',  'x',  'p',  0xce,
    0x66, 0x43, 0x3b, 0x13, 0xa7, 'h',  'e', 'a',  'd',  'e',  'r',  's',  0x81, 0xac, 'c',  'o',
    'n',  't',  'e',  'n',  't',  '-',  't', 'y',  'p',  'e',  0xb0, 'a',  'p',  'p',  'l',  'i',
    'c',  'a',  't',  'i',  'o',  'n',  '/', 'j',  's',  'o',  'n',  0xa4, 'b',  'o',  'd',  'y',
    0xc4, 0x02, '{',  '}',  0xa7, 'a',  't', 't',  'e',  'm',  'p',  't',  0x00,
};

/* The encoder writes exactly the documented example, and the decoder reads it. */
static void
test_documented_layout(void **state)
{
    (void)state;
    assert_int_equal(sizeof(documented), 173);
    bg_entry in, out;
    memset(&in, 0, sizeof(in));
    in.version = BG_ENTRY_VERSION;
    in.request_id = S("r1");
    in.received_at_us = 1715678467301288;
    in.type = S("message");
    in.channel_id = S("msteams");
    in.conversation_id = S("a:1x");
    in.token_exp = 1715682067;
    in.n_headers = 1;
    in.headers[0].name = S("Content-Type");
    in.headers[0].value = S("application/json");
    in.body = S("{}");
    char *buf;
    size_t len;
    encode_ok(&in, &buf, &len);
    assert_int_equal(len, sizeof(documented));
    assert_memory_equal(buf, documented, sizeof(documented));
    free(buf);

    assert_int_equal(bg_entry_decode(&out, (const char *)documented, sizeof(documented)), 0);
    assert_slice(out.request_id, "r1");
    assert_slice(out.headers[0].name, "content-type");
    assert_slice(out.body, "{}");
    assert_absent(out.activity_id);
    assert_absent(out.service_url);
}

/* ---- entries built by hand with msgpack-c, independent of bg_entry_encode ---- */

typedef void (*pack_fn)(msgpack_packer *pk);

struct kv {
    const char *key;
    pack_fn val;
};

static void
pack_cstr(msgpack_packer *pk, const char *s)
{
    assert_int_equal(msgpack_pack_str_with_body(pk, s, strlen(s)), 0);
}

/* Packs a map of the given pairs into sb (reset first). */
static void
build(msgpack_sbuffer *sb, const struct kv *kvs, size_t n)
{
    msgpack_sbuffer_clear(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    assert_int_equal(msgpack_pack_map(&pk, n), 0);
    for (size_t i = 0; i < n; i++) {
        pack_cstr(&pk, kvs[i].key);
        kvs[i].val(&pk);
    }
}

/* Values, good and bad. Fixed-width forms on purpose: the reader must take any width. */
static void
v_one_u64(msgpack_packer *pk)
{
    msgpack_pack_fix_uint64(pk, 1);
}
static void
v_one_i8(msgpack_packer *pk)
{
    msgpack_pack_fix_int8(pk, 1);
}
static void
v_two(msgpack_packer *pk)
{
    msgpack_pack_uint8(pk, 2);
}
static void
v_zero(msgpack_packer *pk)
{
    msgpack_pack_uint8(pk, 0);
}
static void
v_time_i32(msgpack_packer *pk)
{
    msgpack_pack_fix_int32(pk, -5); /* a negative time is odd, not malformed */
}
static void
v_time_u64(msgpack_packer *pk)
{
    msgpack_pack_fix_uint64(pk, 1715678467301288ULL);
}
static void
v_neg_i64(msgpack_packer *pk)
{
    msgpack_pack_fix_int64(pk, -1);
}
static void
v_u64_over_int64(msgpack_packer *pk)
{
    msgpack_pack_fix_uint64(pk, (uint64_t)INT64_MAX + 1);
}
static void
v_u64_over_uint32(msgpack_packer *pk)
{
    msgpack_pack_uint64(pk, (uint64_t)UINT32_MAX + 1);
}
static void
v_body_bin(msgpack_packer *pk)
{
    msgpack_pack_bin_with_body(pk, "\0\xff{}", 4);
}
static void
v_empty_bin(msgpack_packer *pk)
{
    msgpack_pack_bin(pk, 0);
}
static void
v_str(msgpack_packer *pk)
{
    pack_cstr(pk, "text");
}
static void
v_str16_raw(msgpack_packer *pk)
{
    /* The old "raw" family writes a 40-byte string as str16 (0xda), not str8. */
    static const char s[] = "https://smba.trafficmanager.net/amer/xyz";
    msgpack_pack_v4raw(pk, sizeof(s) - 1);
    msgpack_pack_v4raw_body(pk, s, sizeof(s) - 1);
}
static void
v_nil(msgpack_packer *pk)
{
    msgpack_pack_nil(pk);
}
static void
v_true(msgpack_packer *pk)
{
    msgpack_pack_true(pk);
}
static void
v_double(msgpack_packer *pk)
{
    msgpack_pack_double(pk, 1.5);
}
static void
v_float(msgpack_packer *pk)
{
    msgpack_pack_float(pk, 2.5f);
}
static void
v_array(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, -100000);
    pack_cstr(pk, "x");
    msgpack_pack_map(pk, 1);
    pack_cstr(pk, "k");
    msgpack_pack_array(pk, 0);
}
static void
v_map_nested(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    msgpack_pack_int(pk, 1); /* a non-str key is fine inside a skipped value */
    msgpack_pack_ext_with_body(pk, "abcd", 4, 7);
    pack_cstr(pk, "b");
    msgpack_pack_bin_with_body(pk, "zz", 2);
}
static void
v_ext8(msgpack_packer *pk)
{
    msgpack_pack_ext_with_body(pk, "abc", 3, -1); /* ext8 */
}
static void
v_fixext16(msgpack_packer *pk)
{
    msgpack_pack_ext_with_body(pk, "0123456789abcdef", 16, 1);
}
static void
v_timestamp(msgpack_packer *pk)
{
    msgpack_timestamp ts = {1715678467, 301288000};
    msgpack_pack_timestamp(pk, &ts);
}
static void
v_headers(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    pack_cstr(pk, "content-type");
    pack_cstr(pk, "application/json");
    pack_cstr(pk, "authorization");
    pack_cstr(pk, "Bearer t");
}
static void
v_headers_empty(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 0);
}
static void
v_headers_33(msgpack_packer *pk)
{
    msgpack_pack_map(pk, BG_ENTRY_MAX_HEADERS + 1);
    for (int i = 0; i < BG_ENTRY_MAX_HEADERS + 1; i++) {
        char name[16];
        snprintf(name, sizeof(name), "x-%d", i);
        pack_cstr(pk, name);
        pack_cstr(pk, "v");
    }
}
static void
v_headers_dup(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    pack_cstr(pk, "x-a");
    pack_cstr(pk, "1");
    pack_cstr(pk, "x-a");
    pack_cstr(pk, "2");
}
static void
v_headers_int_value(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    pack_cstr(pk, "content-length");
    msgpack_pack_int(pk, 12);
}
static void
v_headers_int_name(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    msgpack_pack_int(pk, 12);
    pack_cstr(pk, "v");
}
static void
v_headers_bin_value(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    pack_cstr(pk, "x-a");
    msgpack_pack_bin_with_body(pk, "v", 1);
}
static void
v_headers_as_array(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    pack_cstr(pk, "content-type");
    pack_cstr(pk, "application/json");
}
static void
v_bin_str(msgpack_packer *pk)
{
    msgpack_pack_bin_with_body(pk, "text", 4);
}
static void
v_deep(msgpack_packer *pk)
{
    for (int i = 0; i < 40; i++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_nil(pk);
}
static void
v_deep_ok(msgpack_packer *pk)
{
    for (int i = 0; i < 31; i++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_nil(pk);
}

/* A complete entry in another key order than botgate writes, every integer in a fixed
 * width, a str16 value, the old raw family, and unknown keys of every msgpack type
 * between the known ones: all read, the unknown ones skipped. */
static void
test_hand_built_entry(void **state)
{
    (void)state;
    const struct kv kvs[] = {
        {"x-future-nil", v_nil},
        {"attempt", v_two},
        {"body", v_body_bin},
        {"x-future-array", v_array},
        {"headers", v_headers},
        {"type", v_str},
        {"x-future-map", v_map_nested},
        {"service_url", v_str16_raw},
        {"received_at_us", v_time_u64},
        {"x-future-bool", v_true},
        {"x-future-double", v_double},
        {"x-future-float", v_float},
        {"x-future-ext8", v_ext8},
        {"x-future-fixext16", v_fixext16},
        {"x-future-timestamp", v_timestamp},
        {"x-future-neg", v_neg_i64},
        {"x-future-deep", v_deep_ok},
        {"token_exp", v_time_i32},
        {"version", v_one_u64},
        {"x-future-bin", v_bin_str},
    };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    build(&sb, kvs, sizeof(kvs) / sizeof(kvs[0]));
    assert_int_equal((unsigned char)sb.data[0], 0xde); /* 20 pairs: map16 */

    bg_entry e;
    assert_int_equal(bg_entry_decode(&e, sb.data, sb.size), 0);
    assert_int_equal(e.version, 1);
    assert_int_equal(e.attempt, 2);
    assert_slice(e.body, "\0\xff{}");
    assert_int_equal(e.n_headers, 2);
    assert_slice(e.headers[0].name, "content-type");
    assert_slice(e.headers[0].value, "application/json");
    assert_slice(e.headers[1].name, "authorization");
    assert_slice(e.headers[1].value, "Bearer t");
    assert_slice(e.type, "text");
    assert_slice(e.service_url, "https://smba.trafficmanager.net/amer/xyz");
    assert_int_equal(e.received_at_us, 1715678467301288LL);
    assert_int_equal(e.token_exp, -5);
    assert_absent(e.request_id);
    assert_absent(e.activity_id);
    assert_absent(e.channel_id);
    assert_absent(e.conversation_id);
    assert_inside(e.body, sb.data, sb.size);
    assert_inside(e.service_url, sb.data, sb.size);

    /* The smallest valid entry: the three required keys, version as int8. */
    const struct kv minimal[] = {
        {"body", v_empty_bin},
        {"received_at_us", v_zero},
        {"version", v_one_i8},
    };
    build(&sb, minimal, 3);
    assert_int_equal(bg_entry_decode(&e, sb.data, sb.size), 0);
    assert_int_equal(e.version, 1);
    assert_int_equal(e.body.len, 0);
    assert_int_equal(e.n_headers, 0);
    msgpack_sbuffer_destroy(&sb);
}

/* The three required keys, with one key's value replaced (or added) by `val`; NULL val
 * leaves the key out. */
static int
decode_variant(const char *key, pack_fn val)
{
    struct kv kvs[4] = {
        {"version", v_one_u64},
        {"received_at_us", v_time_u64},
        {"body", v_body_bin},
    };
    size_t n = 3;
    bool replaced = false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(kvs[i].key, key) == 0) {
            kvs[i].val = val;
            replaced = true;
        }
    if (!replaced)
        kvs[n++] = (struct kv){key, val};
    /* Drop a NULL value's pair. */
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (kvs[i].val != NULL)
            kvs[m++] = kvs[i];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    build(&sb, kvs, m);
    bg_entry e;
    memset(&e, 0xa5, sizeof(e));
    int rc = bg_entry_decode(&e, sb.data, sb.size);
    if (rc != 0) {
        bg_entry zero;
        memset(&zero, 0, sizeof(zero));
        assert_memory_equal(&e, &zero, sizeof(e)); /* nothing half-read escapes */
    }
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* Each way a map can be an unreadable entry: a missing required key, an unknown version,
 * each known key with a value of the wrong type or out of range. */
static void
test_decode_rejections(void **state)
{
    (void)state;
    assert_int_equal(decode_variant("x-unknown", v_str), 0); /* the base is valid */

    assert_int_equal(decode_variant("version", NULL), BG_EENTRY);
    assert_int_equal(decode_variant("received_at_us", NULL), BG_EENTRY);
    assert_int_equal(decode_variant("body", NULL), BG_EENTRY);

    assert_int_equal(decode_variant("version", v_zero), BG_EENTRY);
    assert_int_equal(decode_variant("version", v_two), BG_EENTRY);
    assert_int_equal(decode_variant("version", v_neg_i64), BG_EENTRY);
    assert_int_equal(decode_variant("version", v_u64_over_uint32), BG_EENTRY);

    static const struct {
        const char *key;
        pack_fn bad;
    } wrong[] = {
        {"version", v_str},
        {"version", v_nil},
        {"version", v_double},
        {"version", v_true},
        {"received_at_us", v_str},
        {"received_at_us", v_double},
        {"received_at_us", v_nil},
        {"received_at_us", v_u64_over_int64},
        {"token_exp", v_str},
        {"token_exp", v_float},
        {"token_exp", v_u64_over_int64},
        {"attempt", v_neg_i64},
        {"attempt", v_u64_over_uint32},
        {"attempt", v_str},
        {"body", v_str},
        {"body", v_nil},
        {"body", v_array},
        {"request_id", v_bin_str},
        {"activity_id", v_one_u64},
        {"type", v_nil},
        {"channel_id", v_array},
        {"conversation_id", v_map_nested},
        {"service_url", v_ext8},
        {"headers", v_headers_as_array},
        {"headers", v_str},
        {"headers", v_nil},
        {"headers", v_headers_33},
        {"headers", v_headers_dup},
        {"headers", v_headers_int_value},
        {"headers", v_headers_int_name},
        {"headers", v_headers_bin_value},
        {"x-unknown-too-deep", v_deep},
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++)
        if (decode_variant(wrong[i].key, wrong[i].bad) != BG_EENTRY)
            fail_msg("%s with bad value #%zu was accepted", wrong[i].key, i);

    /* The good forms of the same keys pass, so the rejections above are about the values. */
    assert_int_equal(decode_variant("headers", v_headers_empty), 0);
    assert_int_equal(decode_variant("attempt", v_zero), 0);
    assert_int_equal(decode_variant("token_exp", v_neg_i64), 0);
    assert_int_equal(decode_variant("received_at_us", v_time_i32), 0);
}

/* Buffers that are not one entry map. */
static void
test_decode_not_an_entry(void **state)
{
    (void)state;
    bg_entry e;
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"", 0},
        {"\x80", 1}, /* empty map: no required key */
        {"\x90", 1}, /* array */
        {"\xa3"
         "abc",
         4},                         /* str */
        {"\xc0", 1},                 /* nil */
        {"\x01", 1},                 /* int */
        {"\xc1", 1},                 /* the unused byte */
        {"\xdf\xff\xff\xff\xff", 5}, /* map32 claiming 4294967295 pairs */
        {"\xde\xff\xff", 3},         /* map16 claiming 65535 pairs */
        {"\x81\x01\x01", 3},         /* a non-str key */
        {"\x81\xc4\x01v\x01", 5},    /* a bin key */
        /* an unknown key whose value claims more than is there */
        {"\x81\xa1x\xdd\xff\xff\xff\xff", 8},
        {"\x81\xa1x\xdf\x7f\xff\xff\xff", 8},
        {"\x81\xa1x\xc6\xff\xff\xff\xff", 8},
        {"\x81\xa1x\xdb\xff\xff\xff\xff", 8},
        {"\x81\xa1x\xc9\xff\xff\xff\xff", 8},
        {"\x81\xa1x\xc1", 4},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (bg_entry_decode(&e, bad[i].bytes, bad[i].len) != BG_EENTRY)
            fail_msg("bad buffer #%zu was accepted", i);

    assert_int_equal(bg_entry_decode(&e, NULL, 0), BG_EENTRY);
    assert_int_equal(bg_entry_decode(&e, NULL, 1), BG_EINVAL);
    assert_int_equal(bg_entry_decode(NULL, "\x80", 1), BG_EINVAL);
}

/* A repeated known key is refused (which would a reader believe?); trailing bytes after
 * the map are refused, even a second valid entry. */
static void
test_decode_duplicate_key_and_trailing_bytes(void **state)
{
    (void)state;
    const struct kv dup[] = {
        {"version", v_one_u64},
        {"received_at_us", v_time_u64},
        {"body", v_body_bin},
        {"body", v_empty_bin},
    };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    build(&sb, dup, 4);
    bg_entry e;
    assert_int_equal(bg_entry_decode(&e, sb.data, sb.size), BG_EENTRY);
    build(&sb, dup, 3);
    assert_int_equal(bg_entry_decode(&e, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);

    bg_entry in;
    full_entry(&in);
    char *buf;
    size_t len;
    encode_ok(&in, &buf, &len);
    char *two = malloc(2 * len);
    assert_non_null(two);
    memcpy(two, buf, len);
    memcpy(two + len, buf, len);
    assert_int_equal(bg_entry_decode(&e, two, len + 1), BG_EENTRY);
    assert_int_equal(bg_entry_decode(&e, two, 2 * len), BG_EENTRY);
    assert_int_equal(bg_entry_decode(&e, two, len), 0);
    free(two);
    free(buf);
}

/* Every prefix of a full entry fails cleanly. Each is copied into a buffer of exactly its
 * length, so that ASan reports any read past the end. */
static void
test_truncated_at_every_length(void **state)
{
    (void)state;
    bg_entry in, e;
    full_entry(&in);
    char *buf;
    size_t len;
    encode_ok(&in, &buf, &len);
    for (size_t n = 0; n < len; n++) {
        char *copy = malloc(n ? n : 1);
        assert_non_null(copy);
        memcpy(copy, buf, n);
        if (bg_entry_decode(&e, copy, n) != BG_EENTRY)
            fail_msg("a prefix of %zu of %zu bytes was accepted", n, len);
        free(copy);
    }
    free(buf);
}

/* Every single-byte change to a full entry decodes or fails; it never crashes, overruns or
 * leaks (ASan watches). */
static void
test_corrupted_bytes(void **state)
{
    (void)state;
    bg_entry in, e;
    full_entry(&in);
    char *buf;
    size_t len;
    encode_ok(&in, &buf, &len);
    char *copy = malloc(len);
    assert_non_null(copy);
    for (size_t i = 0; i < len; i++)
        for (int v = 0; v < 256; v++) {
            memcpy(copy, buf, len);
            copy[i] = (char)v;
            int rc = bg_entry_decode(&e, copy, len);
            assert_true(rc == 0 || rc == BG_EENTRY);
            if (rc == 0) {
                assert_true(e.n_headers <= BG_ENTRY_MAX_HEADERS);
                assert_inside(e.body, copy, len);
            }
        }
    free(copy);
    free(buf);
}

/* A header name the request carried twice (in any case) is stored once, at its first
 * place, with the values joined by ", " in order; the stored map never repeats a key. */
static void
test_encode_joins_repeated_headers(void **state)
{
    (void)state;
    bg_entry in, out;
    memset(&in, 0, sizeof(in));
    in.n_headers = 5;
    in.headers[0] = (bg_entry_header){S("X-Ms-Tenant"), S("a")};
    in.headers[1] = (bg_entry_header){S("content-type"), S("application/json")};
    in.headers[2] = (bg_entry_header){S("x-ms-tenant"), S("")};
    in.headers[3] = (bg_entry_header){S("user-agent"), S("Microsoft-BotFramework/3.1")};
    in.headers[4] = (bg_entry_header){S("X-MS-TENANT"), S("b")};
    char *buf;
    size_t len;
    encode_ok(&in, &buf, &len);
    assert_int_equal(bg_entry_decode(&out, buf, len), 0);
    assert_int_equal(out.n_headers, 3);
    assert_slice(out.headers[0].name, "x-ms-tenant");
    assert_slice(out.headers[0].value, "a, , b");
    assert_slice(out.headers[1].name, "content-type");
    assert_slice(out.headers[2].name, "user-agent");
    assert_slice(out.headers[2].value, "Microsoft-BotFramework/3.1");
    free(buf);

    /* A long name (lower-cased in chunks) survives intact. */
    char name[200], lower[200];
    for (size_t i = 0; i < sizeof(name); i++) {
        name[i] = (char)('A' + i % 26);
        lower[i] = (char)('a' + i % 26);
    }
    memset(&in, 0, sizeof(in));
    in.n_headers = 1;
    in.headers[0] = (bg_entry_header){{name, sizeof(name)}, S("v")};
    encode_ok(&in, &buf, &len);
    assert_int_equal(bg_entry_decode(&out, buf, len), 0);
    assert_int_equal(out.headers[0].name.len, sizeof(lower));
    assert_memory_equal(out.headers[0].name.p, lower, sizeof(lower));
    free(buf);
}

/* What the encoder refuses, before it allocates anything. */
static void
test_encode_rejections(void **state)
{
    (void)state;
    bg_entry e;
    char *buf = (char *)&e; /* must come back NULL */
    size_t len = 99;

    full_entry(&e);
    e.n_headers = BG_ENTRY_MAX_HEADERS + 1;
    assert_int_equal(bg_entry_encode(&e, &buf, &len), BG_EINVAL);
    assert_null(buf);
    assert_int_equal(len, 0);

    full_entry(&e);
    e.version = 2;
    assert_int_equal(bg_entry_encode(&e, &buf, &len), BG_EINVAL);

    full_entry(&e);
    e.type = (bg_slice){NULL, 3};
    assert_int_equal(bg_entry_encode(&e, &buf, &len), BG_EINVAL);

    full_entry(&e);
    e.body = (bg_slice){NULL, 1};
    assert_int_equal(bg_entry_encode(&e, &buf, &len), BG_EINVAL);

    full_entry(&e);
    e.headers[1].value = (bg_slice){NULL, 1};
    assert_int_equal(bg_entry_encode(&e, &buf, &len), BG_EINVAL);

    full_entry(&e);
    e.body = (bg_slice){binary_body, (size_t)UINT32_MAX + 1};
    assert_int_equal(bg_entry_encode(&e, &buf, &len), BG_EINVAL);

    assert_int_equal(bg_entry_encode(NULL, &buf, &len), BG_EINVAL);
    assert_int_equal(bg_entry_encode(&e, NULL, &len), BG_EINVAL);
    assert_int_equal(bg_entry_encode(&e, &buf, NULL), BG_EINVAL);
    assert_null(buf);
}

/* A decoded entry re-encodes to the same bytes (the dispatcher may rewrite an entry with
 * attempt + 1): the format has one canonical form per entry. */
static void
test_reencode_is_stable(void **state)
{
    (void)state;
    bg_entry in, out;
    full_entry(&in);
    char *a, *b;
    size_t alen, blen;
    encode_ok(&in, &a, &alen);
    assert_int_equal(bg_entry_decode(&out, a, alen), 0);
    encode_ok(&out, &b, &blen);
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen);
    free(b);
    free(a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_field),
        cmocka_unit_test(test_round_trip_limits),
        cmocka_unit_test(test_absent_optional_fields),
        cmocka_unit_test(test_documented_layout),
        cmocka_unit_test(test_hand_built_entry),
        cmocka_unit_test(test_decode_rejections),
        cmocka_unit_test(test_decode_not_an_entry),
        cmocka_unit_test(test_decode_duplicate_key_and_trailing_bytes),
        cmocka_unit_test(test_truncated_at_every_length),
        cmocka_unit_test(test_corrupted_bytes),
        cmocka_unit_test(test_encode_joins_repeated_headers),
        cmocka_unit_test(test_encode_rejections),
        cmocka_unit_test(test_reencode_is_stable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
