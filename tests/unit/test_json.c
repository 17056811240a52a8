/*
 * The strict JSON reader (policy/json.c) against jansson, whose behaviour it promises to
 * the letter: for every input below, under each flag set, it accepts exactly when
 * json_loadb accepts, and when both refuse they report the same line, column, position
 * and sentence. Then the pull API itself, and inputs built to make it slow or deep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "botgate/json.h"

/* The flag sets compared, each with its jansson equivalent. */
static const struct {
    unsigned ours;
    size_t jansson;
} flag_sets[] = {
    {BG_JSON_REJECT_DUPLICATES | BG_JSON_ALLOW_NUL | BG_JSON_INT_AS_REAL | BG_JSON_NUL_QUIRK,
     JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL}, /* activity.c */
    {BG_JSON_REJECT_DUPLICATES | BG_JSON_NUL_QUIRK, JSON_REJECT_DUPLICATES},
    {BG_JSON_NUL_QUIRK, 0},
    {BG_JSON_ALLOW_NUL | BG_JSON_NUL_QUIRK, JSON_ALLOW_NUL},
    {BG_JSON_INT_AS_REAL | BG_JSON_NUL_QUIRK, JSON_DECODE_INT_AS_REAL},
};
#define N_FLAG_SETS (sizeof(flag_sets) / sizeof(flag_sets[0]))

/* Prints buf as a C literal, for failure messages. */
static const char *
quoted(const char *buf, size_t len)
{
    static char out[400];
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < sizeof(out); i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
    }
    out[o] = '\0';
    return out;
}

/* Fails the test unless the reader and jansson agree on buf under flag set f. */
static void
agree(const char *buf, size_t len, size_t f)
{
    json_error_t jerr;
    json_t *j = json_loadb(buf, len, JSON_DECODE_ANY | flag_sets[f].jansson, &jerr);
    json_decref(j);
    bg_json_error e;
    int rc = bg_json_validate(buf, len, flag_sets[f].ours, 0, &e);
    if ((rc == 0) != (j != NULL))
        fail_msg("flags %zu, \"%s\": reader %s (%s), jansson %s (%s)", f, quoted(buf, len),
                 rc == 0 ? "accepts" : "refuses", rc == 0 ? "" : e.text,
                 j != NULL ? "accepts" : "refuses", j != NULL ? "" : jerr.text);
    if (j != NULL)
        return;
    int dup = json_error_code(&jerr) == json_error_duplicate_key;
    if (e.line != jerr.line || e.column != jerr.column || e.position != (size_t)jerr.position ||
        strcmp(e.text, jerr.text) != 0 || (e.code == BG_JSON_EDUPLICATE) != dup)
        fail_msg("flags %zu, \"%s\":\n  reader  %d:%d @%zu code %d \"%s\"\n  jansson %d:%d @%d "
                 "code %d \"%s\"",
                 f, quoted(buf, len), e.line, e.column, e.position, e.code, e.text, jerr.line,
                 jerr.column, jerr.position, (int)json_error_code(&jerr), jerr.text);
}

/* agree() under every flag set. */
static void
agree_all(const char *buf, size_t len)
{
    for (size_t f = 0; f < N_FLAG_SETS; f++)
        agree(buf, len, f);
}

/* Hand-picked inputs: each rule of the grammar, each jansson message, at the edges. */
static const char *const cases[] = {
    /* structure */
    "{}",
    "[]",
    " \t\r\n{ \"a\" : 1 } \n",
    "{\"a\":1,}",
    "{,}",
    "{\"a\":1 \"b\":2}",
    "{'a':1}",
    "{a:1}",
    "{\"a\"}",
    "{\"a\":}",
    "{",
    "[",
    "",
    " ",
    "\n\n  ",
    "{\"a\"",
    "{\"a\":",
    "{\"a\":1",
    "{\"a\":1,",
    "[1",
    "[1,",
    "[1,]",
    "[,1]",
    "[1 2]",
    "[1:2]",
    "{\"a\":1]",
    "[1}",
    "]",
    "}",
    ":",
    ",",
    "{\"a\"::1}",
    "{\"a\":1}x",
    "{\"a\":1}{}",
    "{\"a\":1},",
    "[1]]",
    "{\f}",
    "\f{}",
    "{\"a\":[1,2.5e3,-0,true,false,null,{\"b\":\"c\"},[]]}",
    "{\"a\":{\"b\"}}",
    "{\"a\":{\"b\":1,}}",
    "{\"a\":[}",
    "{\n\"type\":\n\"message\",\n}",
    "[\n\n  1,\n  ]",
    /* top-level scalars (JSON_DECODE_ANY) */
    "1",
    "-1.5e3",
    "\"s\"",
    "true",
    "false",
    "null",
    "1 2",
    "\"a\" x",
    "null,",
    "truefalse",
    /* numbers */
    "{\"a\":01}",
    "{\"a\":-01}",
    "{\"a\":00}",
    "{\"a\":1.}",
    "{\"a\":.5}",
    "{\"a\":-}",
    "{\"a\":-a}",
    "{\"a\":1e}",
    "{\"a\":1e+}",
    "{\"a\":1e-}",
    "{\"a\":1E+2}",
    "{\"a\":+1}",
    "{\"a\":-0.0e-0}",
    "{\"a\":0e5}",
    "{\"a\":1.5E-3}",
    "{\"a\":1.5.5}",
    "{\"a\":1e5e5}",
    "{\"a\":9223372036854775807}",
    "{\"a\":9223372036854775808}",
    "{\"a\":-9223372036854775808}",
    "{\"a\":-9223372036854775809}",
    "{\"a\":99999999999999999999999}",
    "{\"a\":-99999999999999999999999}",
    "{\"a\":1e400}",
    "{\"a\":-1e400}",
    "{\"a\":1e-400}",
    "{\"a\":1e308}",
    "{\"a\":1.7976931348623157e308}",
    "{\"a\":1.7976931348623159e308}",
    "{\"a\":179769313486231570000e288}",
    "{\"a\":0.000000000000000000000000000001e330}",
    "{\"a\":1e99999999999999999999}",
    "{\"a\":1e-99999999999999999999}",
    "{\"a\":[99999999999999999999]}",
    "{\"a\":[1e999]}",
    "{\"a\":0x10}",
    "{\"a\":Infinity}",
    "{\"a\":-Infinity}",
    "{\"a\":NaN}",
    "{\"a\":1 2}",
    "-",
    "0",
    "-0",
    "01",
    "1.",
    "1e",
    "12345678901234567890123",
    "[0,-0,0.0,-0.0e0]",
    /* literals and words */
    "{\"a\":tru}",
    "{\"a\":True}",
    "{\"a\":nul}",
    "{\"a\":nulls}",
    "{\"a\":falsey}",
    "{\"a\":true1}",
    "{\"a\":abcdefghijklmnopqrstu}",
    "{\"a\":abcdefghijklmnopqrst}",
    "{\"a\":x}",
    "[nul",
    "[true",
    "[t",
    /* escapes */
    "{\"a\":\"\\u0000\"}",
    "{\"a\\u0000\":1}",
    "{\"a\":\"\\ud800\"}",
    "{\"a\":\"\\udc00\"}",
    "{\"a\":\"\\ud83d\\udc4b\"}",
    "{\"a\":\"\\uD83D\\uDC4B\"}",
    "{\"a\":\"\\ud83d\\u0041\"}",
    "{\"a\":\"\\ud83d\"}",
    "{\"a\":\"\\ud83d\\\"}",
    "{\"a\":\"\\ud83d\\n\"}",
    "{\"a\":\"\\ud83d\\ud83d\\udc4b\"}",
    "{\"a\":\"\\udc4b\\ud83d\"}",
    "{\"a\":\"\\x41\"}",
    "{\"a\":\"\\'\"}",
    "{\"a\":\"\\u12\"}",
    "{\"a\":\"\\u12G4\"}",
    "{\"a\":\"\\u\"}",
    "{\"a\":\"\\/\\b\\f\\n\\r\\t\\\\\\\"\"}",
    "{\"a\":\"\\\"}",
    "{\"a\":\"\\u00e9\\u20ac\"}",
    "{\"a\":\"unterminated}",
    "\"\\",
    "\"\\u",
    "\"\\u1",
    "\"\\u12345",
    "\"abc",
    "\"",
    "{\"a\":\"\\ud800\" x}",
    "{\"a\":\"\\ud800\x01\"}",
    "\"\\u0000\"",
    "[\"\\u0000\",1,]",
    "{\"a\":\"\\ud800\\u\"}",
    "{\"a\":\"0123456789\\ud800\"}",
    /* raw bytes in strings */
    "{\"a\":\"\x01\"}",
    "{\"a\":\"\t\"}",
    "{\"a\":\"\n\"}",
    "{\"a\":\"x\ny\"}",
    "{\"a\":\"\x7f\"}",
    "{\"a\":\"\x1f\"}",
    "{\"a\":\"\xc0\xaf\"}",
    "{\"a\":\"\xed\xa0\x80\"}",
    "{\"a\":\"\xf4\x90\x80\x80\"}",
    "{\"a\":\"\xe2\x82\"}",
    "{\"a\":\"\x80\"}",
    "{\"a\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}",
    "{\"a\":\"\xf8\"}",
    "{\"\xc3\xa9\":1}",
    "{\"a\":\"0123456789012345678901234\x01\"}",
    "{\"a\":\"\\\xff\"}",
    "{\"a\":\"\\\xc3\xa9\"}",
    "{\"a\":\"\\u12\xff\"}",
    "{\"a\":\"\\u12\xc3\xa9\"}",
    "{\"a\":\"\\u1234\xff\"}",
    "\"\xe2\x82",
    "\"\xf0\x9f\x98",
    "\"\\\x01\"",
    "{\"a\":\"\\\n\"}",
    /* raw bytes outside strings */
    "{\"a\":1}\xc3\xa9",
    "\xef\xbb\xbf{}",
    "{\"a\":1\xff}",
    "{\"a\":-\xff}",
    "{\"a\":1.\xff}",
    "{\"a\":1e\xff}",
    "{\"a\":1e+\xff}",
    "{\"a\":tru\xff}",
    "{\"a\":\xc3\xbc}",
    "{\"a\":\x01}",
    "{\"a\":\x7f}",
    "\xff",
    "\xc3",
    "\xc3\xa9",
    "[1,\xe2\x82\xac]",
    "{\"a\":\xe2\x82}",
    "{\"type\":'message'}",
    "{\"a\":\xf0\x9f\x98\x80}",
    "[\xed\xa0\x80]",
    "{\"a\":1\xc3\xa9}",
    "{\"\xc3\xa9\xc3\xa9\":\n  \xc3\xa9}",
    /* duplicates, also after decoding, and against other errors */
    "{\"a\":1,\"a\":2}",
    "{\"a\":1,\"\\u0061\":2}",
    "{\"a\":1,\"A\":2}",
    "{\"\":1,\"\":2}",
    "{\"a\":{\"b\":1,\"b\":2}}",
    "{\"a\":[{\"x\":1,\"x\":1}]}",
    "{\"a\":{\"a\":1},\"b\":{\"a\":2}}",
    "{\"a\":1,\"a\"",
    "{\"a\":1,\"a\":",
    "{\"a\":1,\"a\" 2}",
    "{\"a\":1,\"a\":2,}",
    "{\"a\":1,\"a\":2,\"b\":x}",
    "{\"a\":1,\"b\":{\"c\":1,\"c\":2},\"a\":3}",
    "{\"a\":1,\"a\":2,\"b\":{\"c\":1,\"c\":2}}",
    "{\"b\":{\"c\":1,\"c\":2},\"a\":1,\"a\":2}",
    "{\"a\":1,\"b\":2,\"a\":3,\"b\":4}",
    "{\"b\":1,\"a\":2,\"a\":3,\"b\":4}",
    "{\"longer-than-twenty-bytes\":1,\"longer-than-twenty-bytes\":2}",
    "{\"abcdefghijklmnop\":1,\"abcdefghijklmnop\":2}",
    "{\"abcdefghijklmnopq\":1,\"abcdefghijklmnopq\":2}",
    "{\"a\":1,\"a\":\"\\ud800\"}",
    "{\"a\":1,\"a\":2}\xff",
    "{\"x\":{\"a\":1,\"a\":2,\"b\":[1,}}",
    "{\"a\":1,\"a\":2}}",
    "{\"\\u00e9\":1,\"\xc3\xa9\":2}",
    "{\"\\ud83d\\udc4b\":1,\"\xf0\x9f\x91\x8b\":2}",
    "{\"a\\/b\":1,\"a/b\":2}",
    "{\"a\\u0000\":1,\"a\\u0000\":2}",
    "{\"12345678\":1,\"12345679\":2,\"12345678\":3}",
    "{\"123456789\":1,\"123456788\":2}",
};

/* Each hand-picked input, under each flag set. */
static void
test_cases_agree(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        agree_all(cases[i], strlen(cases[i]));
    /* raw NUL bytes: inside a string, outside, at the start, after the value */
    static const struct {
        const char *s;
        size_t len;
    } nul[] = {
#define WITH_LEN(s) {s, sizeof(s) - 1}
        WITH_LEN("{\"a\":\"x\0y\"}"),
        WITH_LEN("{\"a\":1}\0"),
        WITH_LEN("\0"),
        WITH_LEN("{\0}"),
        WITH_LEN("[1,\0]"),
        WITH_LEN("{\"a\0\":1}"),
        WITH_LEN("\"\0\""),
        WITH_LEN("{\"a\":nul\0l}"),
        WITH_LEN("[-\0]"),
        WITH_LEN("{\"a\":\"\\\0\"}"),
        WITH_LEN("{\"a\":\"\\u1\0\"}"),
        /* jansson drops a NUL right after a number or literal, and counts it nowhere */
        WITH_LEN("[1\0]"),
        WITH_LEN("[1\0x]"),
        WITH_LEN("[1\0\0]"),
        WITH_LEN("[true\0,\0]"),
        WITH_LEN("{\"a\" 1\0}"),
        WITH_LEN("[1\0"),
        WITH_LEN("[1\0,2\0,\n 3\0 x]"),
        WITH_LEN("[tru\0]"),
        WITH_LEN("1\0"),
        WITH_LEN("[1e5\0,-0.5\0,null\0]"),
        WITH_LEN("{\"a\":1\0,\"a\":2}"),
        WITH_LEN("{\"a\":1\0,\"b\":\"\x01\"}"),
        WITH_LEN("[1.\0]"),
        WITH_LEN("[1e\0]"),
        WITH_LEN("[0\0 1]"),
#undef WITH_LEN
    };
    for (size_t i = 0; i < sizeof(nul) / sizeof(nul[0]); i++)
        agree_all(nul[i].s, nul[i].len);
}

/* Objects big enough for the sort path (over 32 keys), with duplicates where jansson
 * meets them first or last, and other errors before and after them. */
static void
test_large_objects_agree(void **state)
{
    (void)state;
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    static const char *const tails[] = {"}",
                                        ",\"k7\":0}",
                                        ",\"k7\":0,\"k3\":0}",
                                        ",\"k40\":x}",
                                        ",\"k40\":{\"k40\":1,\"k40\":2}}",
                                        ",\"k40\":1,\"k39\":x}",
                                        ",}"};
    for (size_t n = 30; n <= 70; n += 20)
        for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
            size_t o = 0;
            buf[o++] = '{';
            for (size_t i = 0; i < n; i++)
                o += (size_t)sprintf(buf + o, "%s\"k%zu\":%zu", i ? "," : "", i, i);
            o += (size_t)sprintf(buf + o, "%s", tails[t]);
            agree_all(buf, o);
            /* the same object one level down, an outer duplicate after it */
            memmove(buf + 5, buf, o);
            memcpy(buf, "{\"o\":", 5);
            o += 5;
            o += (size_t)sprintf(buf + o, ",\"o\":1}");
            agree_all(buf, o);
        }
    free(buf);
}

/* n nested arrays around inner (with its length): "[[[inner]]]". Malloc'd. */
static char *
nest(size_t n, const char *open, const char *inner, const char *close, size_t *len)
{
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
    char *b = malloc(n * (lo + lc) + li + 1);
    assert_non_null(b);
    size_t o = 0;
    for (size_t i = 0; i < n; i++, o += lo)
        memcpy(b + o, open, lo);
    memcpy(b + o, inner, li);
    o += li;
    for (size_t i = 0; i < n; i++, o += lc)
        memcpy(b + o, close, lc);
    *len = o;
    return b;
}

/* The depth limit, at and around jansson's 2048, for each kind of innermost value. */
static void
test_depth_agrees(void **state)
{
    (void)state;
    static const char *const inner[] = {"", "1", "\"s\"", "[]", "{}", "x", ",", "]"};
    static const size_t depths[] = {2046, 2047, 2048, 2049};
    for (size_t d = 0; d < sizeof(depths) / sizeof(depths[0]); d++)
        for (size_t i = 0; i < sizeof(inner) / sizeof(inner[0]); i++) {
            size_t len;
            char *b = nest(depths[d], "[", inner[i], "]", &len);
            agree(b, len, 0);
            free(b);
            b = nest(depths[d], "{\"a\":", inner[i], "}", &len);
            agree(b, len, 0);
            free(b);
        }
    /* far deeper: refused at 2048 without recursing (ASan would see a stack overflow) */
    size_t len;
    char *b = nest(200000, "[", "", "]", &len);
    agree(b, len, 0);
    free(b);
}

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* Bodies to mutate: an activity, and documents full of the rarer constructs. */
static const char *const seeds[] = {
    ("{\"text\":\"<at>Echo Bot</at> Gr\xc3\xbc\xc3\x9f\x65 "
     "\\ud83d\\udc4b\\n\",\"type\":\"message\","
     "\"id\":\"1715678467301\",\"channelId\":\"msteams\",\"serviceUrl\":\"https://smba."
     "trafficmanager.net/emea/\",\"from\":{\"id\":\"29:1Xq7\",\"name\":\"Ada\"},\"conversation\":{"
     "\"isGroup\":true,\"tenantId\":\"72f988bf\",\"id\":\"19:3e1f@thread.tacv2\"},\"entities\":[{"
     "\"type\":\"mention\"},{\"locale\":\"de-CH\"}],\"channelData\":{\"tenant\":{\"id\":\"t\"}},"
     "\"n\":[0,-1.5e3,12345678901234567890123,1e-400,null,false]}"),
    ("[{\"\\u0061\":\"\\u00e9\\/\\\"\",\"b\":[[],{}],\"c\":\"\xe2\x82\xac\xf0\x9f\x98\x80\"},"
     "-0.0e+1,\"\\ud800\\udc00\",true]"),
    "{\n  \"a\": 1,\n  \"b\": {\"a\": [1, 2, {\"a\": null}]},\n  \"\\u0000k\": \"v\\u0000\"\n}",
};

/* Snippets spliced in by the mutator: tokens that sit at the grammar's edges. */
static const char *const snippets[] = {
    "\"",
    "\\",
    "\\u",
    "\\ud800",
    "\\udc00",
    "\\u0000",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    " ",
    "\n",
    "0",
    "-",
    "e",
    ".",
    "1e400",
    "99999999999999999999",
    "tru",
    "null",
    "\"a\":1,",
    "\"type\":\"x\",",
    "\xc3",
    "\xc3\xa9",
    "\xed\xa0\x80",
    "\xff",
    "\x01",
    "\t",
    "[[[[",
};

/* Applies 1 to 3 random edits to buf (len bytes, room for cap), returns the new length. */
static size_t
mutate(uint64_t *s, char *buf, size_t len, size_t cap)
{
    int edits = 1 + (int)(rnd(s) % 3);
    for (int e = 0; e < edits; e++) {
        size_t at = len ? rnd(s) % (len + 1) : 0;
        switch (rnd(s) % 5) {
        case 0: /* overwrite a byte */
            if (at < len)
                buf[at] = (char)(rnd(s) % 2 ? rnd(s)
                                            : (uint64_t) "\"\\{}[],: 0-e.u\x01\x80"[rnd(s) % 16]);
            break;
        case 1: { /* delete a range */
            size_t n = at < len ? 1 + rnd(s) % (len - at < 8 ? len - at : 8) : 0;
            memmove(buf + at, buf + at + n, len - at - n);
            len -= n;
            break;
        }
        case 2: { /* splice a snippet */
            const char *sn = snippets[rnd(s) % (sizeof(snippets) / sizeof(snippets[0]))];
            size_t n = strlen(sn);
            if (len + n <= cap) {
                memmove(buf + at + n, buf + at, len - at);
                memcpy(buf + at, sn, n);
                len += n;
            }
            break;
        }
        case 3: { /* repeat a range (makes duplicate keys) */
            size_t n = at < len ? 1 + rnd(s) % (len - at < 40 ? len - at : 40) : 0;
            if (len + n <= cap) {
                memmove(buf + at + n, buf + at, len - at);
                len += n;
            }
            break;
        }
        default: /* truncate */
            if (rnd(s) % 4 == 0)
                len = at;
            break;
        }
    }
    return len;
}

/* Thousands of mutations of the seeds, under every flag set. */
static void
test_mutations_agree(void **state)
{
    (void)state;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    char buf[4096];
    for (int i = 0; i < 30000; i++) {
        const char *seed = seeds[(size_t)i % (sizeof(seeds) / sizeof(seeds[0]))];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        len = mutate(&s, buf, len, sizeof(buf));
        char *exact = malloc(len ? len : 1); /* ASan sees a read past len */
        assert_non_null(exact);
        memcpy(exact, buf, len);
        agree(exact, len, (size_t)i % N_FLAG_SETS);
        free(exact);
    }
}

/* The pull API on an object: decoded keys, string and number values, nested values
 * skipped or descended into. */
static void
test_pull_api(void **state)
{
    (void)state;
    const char doc[] = "{\"\\u0073erviceUrl\":\"https:\\/\\/a\\u00e9/\",\"n\":-42,\"r\":2.5e1,"
                       "\"big\":12345678901234567890123,\"t\":true,\"o\":{\"x\":[1,{\"y\":2}]},"
                       "\"a\":[\"s\",3],\"z\":null}";
    bg_json_reader r;
    bg_json_type t;
    bg_json_str key;
    int64_t i = 0;
    double d = 0;
    char out[64];
    bg_json_init(&r, doc, sizeof(doc) - 1, BG_JSON_REJECT_DUPLICATES, 0);
    assert_int_equal(bg_json_value(&r, &t), 0);
    assert_int_equal(t, BG_JSON_OBJECT);

    assert_int_equal(bg_json_member(&r, &key), 1);
    assert_int_equal(key.len, 10);
    assert_memory_equal(key.s, "serviceUrl", 10);
    assert_true(key.escaped);
    assert_int_equal(bg_json_value(&r, &t), 0);
    assert_int_equal(t, BG_JSON_STRING);
    const bg_json_str *s = bg_json_string(&r);
    assert_true(s->escaped);
    size_t n = bg_json_decode(s, out);
    assert_true(n <= s->raw_len);
    assert_int_equal(n, 12);
    assert_memory_equal(out, "https://a\xc3\xa9/", 12);

    assert_int_equal(bg_json_member(&r, &key), 1);
    assert_false(key.escaped);
    assert_ptr_equal(key.s, key.raw); /* an unescaped key is not copied */
    assert_int_equal(bg_json_value(&r, &t), 0);
    assert_int_equal(t, BG_JSON_NUMBER);
    assert_int_equal(bg_json_number(&r, &i, &d), 1);
    assert_int_equal(i, -42);

    assert_int_equal(bg_json_member(&r, &key), 1);
    assert_int_equal(bg_json_value(&r, &t), 0);
    assert_int_equal(bg_json_number(&r, &i, &d), 0);
    assert_true(d == 25.0);

    assert_int_equal(bg_json_member(&r, &key), 1); /* "big": too big for int64 */
    assert_int_equal(bg_json_value(&r, &t), -1);
    assert_int_equal(r.err.code, BG_JSON_ESYNTAX);
    /* 23 bytes: over jansson's 20, so the token is not quoted */
    assert_string_equal(r.err.text, "too big integer");
    assert_int_equal(bg_json_member(&r, &key), -1); /* dead after an error */
    bg_json_free(&r);

    /* the same with INT_AS_REAL: read through, skipping and descending */
    bg_json_init(&r, doc, sizeof(doc) - 1, BG_JSON_REJECT_DUPLICATES | BG_JSON_INT_AS_REAL, 0);
    assert_int_equal(bg_json_value(&r, &t), 0);
    int members = 0, more;
    while ((more = bg_json_member(&r, &key)) == 1) {
        members++;
        if (key.len == 1 && key.s[0] == 'o') {
            assert_int_equal(bg_json_value(&r, &t), 0);
            assert_int_equal(t, BG_JSON_OBJECT);
            assert_int_equal(bg_json_member(&r, &key), 1);
            assert_int_equal(bg_json_value(&r, &t), 0);
            assert_int_equal(t, BG_JSON_ARRAY);
            assert_int_equal(bg_json_element(&r), 1);
            assert_int_equal(bg_json_value(&r, &t), 0);
            assert_int_equal(t, BG_JSON_NUMBER);
            assert_int_equal(bg_json_number(&r, &i, &d), 0); /* INT_AS_REAL: a double */
            assert_true(d == 1.0);
            assert_int_equal(bg_json_leave(&r), 0); /* the rest of the array */
            assert_int_equal(bg_json_member(&r, &key), 0);
        } else if (key.len == 1 && key.s[0] == 'a') {
            assert_int_equal(bg_json_value(&r, &t), 0);
            assert_int_equal(bg_json_element(&r), 1);
            assert_int_equal(bg_json_value(&r, &t), 0);
            assert_int_equal(t, BG_JSON_STRING);
            assert_int_equal(bg_json_element(&r), 1);
            assert_int_equal(bg_json_skip(&r), 0);
            assert_int_equal(bg_json_element(&r), 0);
        } else {
            assert_int_equal(bg_json_skip(&r), 0);
        }
    }
    assert_int_equal(more, 0);
    assert_int_equal(members, 8);
    assert_int_equal(bg_json_finish(&r), 0);
    bg_json_free(&r);
}

/* Calls out of order are refused, not guessed at. */
static void
test_usage_errors(void **state)
{
    (void)state;
    bg_json_reader r;
    bg_json_type t;
    bg_json_str key;
    bg_json_init(&r, "{}", 2, 0, 0);
    assert_int_equal(bg_json_member(&r, &key), -1); /* no object open yet */
    assert_int_equal(r.err.code, BG_JSON_EUSAGE);
    bg_json_free(&r);

    bg_json_init(&r, "[1]", 3, 0, 0);
    assert_int_equal(bg_json_value(&r, &t), 0);
    assert_int_equal(bg_json_member(&r, &key), -1); /* an array, not an object */
    assert_int_equal(r.err.code, BG_JSON_EUSAGE);
    bg_json_free(&r);

    bg_json_init(&r, "{\"a\":1}", 7, 0, 0);
    assert_int_equal(bg_json_value(&r, &t), 0);
    assert_int_equal(bg_json_member(&r, &key), 1);
    assert_int_equal(bg_json_member(&r, &key), -1); /* the value comes first */
    bg_json_free(&r);

    bg_json_init(&r, "1", 1, 0, 0);
    assert_int_equal(bg_json_finish(&r), -1); /* nothing read yet */
    bg_json_free(&r);

    bg_json_init(&r, NULL, 0, 0, 0);
    assert_int_equal(bg_json_value(&r, &t), -1);
    assert_string_equal(r.err.text, "unexpected token near end of file");
    bg_json_free(&r);
}

/* In place, as auth.c decodes its token segments: writes stay behind the reads. */
static void
test_decode_in_place(void **state)
{
    (void)state;
    char doc[] = "{\"k\\u0065y\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\udc4b\"}";
    bg_json_reader r;
    bg_json_type t;
    bg_json_str key;
    bg_json_init(&r, doc, sizeof(doc) - 1, 0, 0);
    assert_int_equal(bg_json_value(&r, &t), 0);
    assert_int_equal(bg_json_member(&r, &key), 1);
    char *k = (char *)key.raw;
    size_t kn = bg_json_decode(&key, k);
    k[kn] = '\0';
    assert_string_equal(k, "key");
    assert_int_equal(bg_json_value(&r, &t), 0);
    const bg_json_str *s = bg_json_string(&r);
    char *v = (char *)s->raw;
    size_t vn = bg_json_decode(s, v);
    v[vn] = '\0';
    assert_string_equal(v, "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x91\x8b");
    assert_int_equal(bg_json_member(&r, &key), 0);
    assert_int_equal(bg_json_finish(&r), 0);
    bg_json_free(&r);
}

/* Without BG_JSON_NUL_QUIRK (auth.c's reader), a NUL after a number or literal is
 * refused like any other stray byte; with it, skipped as jansson skips it. */
static void
test_nul_quirk_optional(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
    } docs[] = {{"{\"a\":1\0}", 8}, {"[true\0]", 7}, {"{\"a\":-0.5e3\0,\"b\":null\0}", 23}};
    unsigned auth = BG_JSON_REJECT_DUPLICATES | BG_JSON_DEPTH_CONTAINERS;
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        assert_int_equal(bg_json_validate(docs[i].s, docs[i].len, auth, 32, NULL), -1);
        assert_int_equal(bg_json_validate(docs[i].s, docs[i].len, BG_JSON_NUL_QUIRK, 0, NULL), 0);
    }
}

/* BG_JSON_DEPTH_CONTAINERS (auth.c's limit): containers up to max_depth, a scalar below. */
static void
test_depth_containers_only(void **state)
{
    (void)state;
    size_t len;
    char *b = nest(32, "[", "1", "]", &len); /* 32 arrays, a scalar at depth 33 */
    assert_int_equal(bg_json_validate(b, len, BG_JSON_DEPTH_CONTAINERS, 32, NULL), 0);
    assert_int_equal(bg_json_validate(b, len, 0, 32, NULL), -1); /* jansson's rule */
    free(b);
    b = nest(33, "[", "", "]", &len);
    assert_int_equal(bg_json_validate(b, len, BG_JSON_DEPTH_CONTAINERS, 32, NULL), -1);
    free(b);
}

/* Seconds since start, for the tests that must not be quadratic. */
static double
seconds_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) + (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

/* Writes an object of n keys, key i spelt by fmt, into a new buffer; dup_at < n repeats
 * key 0 there. */
static char *
many_keys(size_t n, const char *fmt, size_t dup_at, size_t *len)
{
    char *b = malloc(n * 48 + 16);
    assert_non_null(b);
    size_t o = 0;
    b[o++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            b[o++] = ',';
        o += (size_t)sprintf(b + o, fmt, i == dup_at ? 0 : i);
        o += (size_t)sprintf(b + o, ":%zu", i);
    }
    b[o++] = '}';
    *len = o;
    return b;
}

/*
 * 100k distinct keys in one object, spelt so that they share their first 8 bytes and
 * their length (every comparison goes to memcmp), or differ early: seconds, not the hours
 * a pairwise check would take; and the same with one duplicate at the end, found, in
 * agreement with jansson.
 */
static void
test_many_keys_not_quadratic(void **state)
{
    (void)state;
    static const char *const fmts[] = {"\"%zu\"", "\"same-prefix-%09zu\"",
                                       "\"\\u0073ame-prefix-%09zu\""};
    for (size_t f = 0; f < sizeof(fmts) / sizeof(fmts[0]); f++) {
        size_t len;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        char *b = many_keys(100000, fmts[f], SIZE_MAX, &len);
        assert_int_equal(bg_json_validate(b, len, BG_JSON_REJECT_DUPLICATES, 0, NULL), 0);
        free(b);
        b = many_keys(100000, fmts[f], 99999, &len);
        bg_json_error e;
        assert_int_equal(bg_json_validate(b, len, BG_JSON_REJECT_DUPLICATES, 0, &e), -1);
        assert_int_equal(e.code, BG_JSON_EDUPLICATE);
        agree(b, len, 1);
        free(b);
        double s = seconds_since(&t0);
        if (s > 10)
            fail_msg("100k keys (%s) took %.1f s", fmts[f], s);
    }
    /* nested objects each have their own keys: the same key in sibling objects is fine */
    const char sib[] = "{\"a\":{\"id\":1},\"b\":{\"id\":2,\"c\":{\"id\":3}},\"id\":4}";
    assert_int_equal(bg_json_validate(sib, sizeof(sib) - 1, BG_JSON_REJECT_DUPLICATES, 0, NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases_agree),
        cmocka_unit_test(test_large_objects_agree),
        cmocka_unit_test(test_depth_agrees),
        cmocka_unit_test(test_mutations_agree),
        cmocka_unit_test(test_pull_api),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_decode_in_place),
        cmocka_unit_test(test_nul_quirk_optional),
        cmocka_unit_test(test_depth_containers_only),
        cmocka_unit_test(test_many_keys_not_quadratic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
