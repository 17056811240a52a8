/*
 * Fuzzes the request-level pipeline of POST /api/messages end to end, without the
 * sockets: the pure checks proxy/ingress.c runs on a request, in its order, and then what
 * it stores — the queue entry — read back as the dispatcher reads it.
 *
 * Input: "<Content-Type>\n<Authorization>\n<X-Request-Id>\n<body>" (missing lines are
 * absent headers). The steps and their properties:
 *
 *  - bg_request_is_json: 1 exactly when the value, blanks aside, is application/json (any
 *    case), alone or followed by ';' (a reference implementation below);
 *  - bg_request_bearer: on success the token lies inside the value, right after
 *    "Bearer ", is non-empty and holds no byte <= ' ' or DEL; on failure nothing is set;
 *  - bg_request_id_is_valid: 1 exactly for 1..64 of [A-Za-z0-9._-];
 *  - bg_activity_parse: a documented code; on success `type` is non-empty;
 *  - the entry built as the handler builds it (fill_entry: the activity's fields, the
 *    Content-Type and Authorization headers, the raw body) encodes, and decodes to the same
 *    fields, the same header values and the very same body bytes: what was acknowledged is
 *    exactly what will be delivered.
 */
#include "fuzz.h"

#include <ctype.h>
#include <strings.h>

#include "botgate/activity.h"
#include "botgate/auth.h"
#include "botgate/entry.h"
#include "botgate/error.h"
#include "botgate/request.h"

/* The next line of [*p, end): its bytes in *line, *len; 0 when there is none. */
static int
next_line(const char **p, const char *end, const char **line, size_t *len)
{
    if (*p >= end)
        return 0;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (nl == NULL)
        return 0;
    *line = *p;
    *len = (size_t)(nl - *p);
    *p = nl + 1;
    return 1;
}

static int
ref_is_json(const char *v, size_t len)
{
    size_t i = 0;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    static const char media[] = "application/json";
    for (size_t k = 0; k < sizeof(media) - 1; k++, i++)
        if (i >= len || tolower((unsigned char)v[i]) != media[k])
            return 0;
    while (i < len && (v[i] == ' ' || v[i] == '\t'))
        i++;
    return i == len || v[i] == ';';
}

static int
ref_id_valid(const char *v, size_t len)
{
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)v[i]) && v[i] != '.' && v[i] != '_' && v[i] != '-')
            return 0;
    return 1;
}

static bg_slice
slice_of(const char *s)
{
    return s != NULL ? (bg_slice){s, strlen(s)} : (bg_slice){NULL, 0};
}

static int
slice_eq(bg_slice a, bg_slice b)
{
    if ((a.p == NULL) != (b.p == NULL) || a.len != b.len)
        return 0;
    return a.len == 0 || memcmp(a.p, b.p, a.len) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_copy(data, size);
    const char *p = in, *end = in + size;
    const char *ct = NULL, *az = NULL, *rid = NULL;
    size_t ct_len = 0, az_len = 0, rid_len = 0;
    int have_ct = next_line(&p, end, &ct, &ct_len);
    int have_az = have_ct && next_line(&p, end, &az, &az_len);
    int have_rid = have_az && next_line(&p, end, &rid, &rid_len);
    (void)have_rid;
    const char *body = p;
    size_t body_len = (size_t)(end - p);

    /* Content-Type */
    int json = have_ct ? bg_request_is_json(ct, ct_len) : 0;
    if (have_ct)
        FUZZ_CHECK(json == ref_is_json(ct, ct_len));

    /* Authorization */
    const char *token = NULL;
    size_t token_len = 0;
    if (have_az && az_len > 0) {
        int rc = bg_request_bearer(az, az_len, &token, &token_len);
        if (rc == 0) {
            FUZZ_CHECK(az_len > 7 && memcmp(az, "Bearer ", 7) == 0);
            FUZZ_CHECK(token == az + 7 && token_len == az_len - 7 && token_len > 0);
            for (size_t i = 0; i < token_len; i++)
                FUZZ_CHECK((unsigned char)token[i] > ' ' && (unsigned char)token[i] != 0x7f);
        } else {
            FUZZ_CHECK(rc == BG_EAUTH_MALFORMED && token == NULL && token_len == 0);
        }
        if (token_len > BG_AUTH_MAX_TOKEN)
            token = NULL, token_len = 0; /* refused before the body: token_too_large */
    }

    /* X-Request-Id */
    if (rid != NULL)
        FUZZ_CHECK(bg_request_id_is_valid(rid, rid_len) == ref_id_valid(rid, rid_len));

    /* the activity, and what would be stored */
    bg_activity act;
    char why[160];
    int rc = bg_activity_parse(&act, body, body_len, why, sizeof(why));
    FUZZ_CHECK(rc == 0 || rc == BG_EJSON || rc == BG_EACTIVITY || rc == BG_ENOMEM);
    if (rc == 0 && json) {
        FUZZ_CHECK(act.type != NULL && act.type[0] != '\0');
        bg_entry e = {.version = BG_ENTRY_VERSION,
                      .request_id = rid != NULL && ref_id_valid(rid, rid_len)
                                        ? (bg_slice){rid, rid_len}
                                        : slice_of("0123456789abcdef0123456789abcdef"),
                      .received_at_us = 1700000000000000,
                      .activity_id = slice_of(act.id),
                      .type = slice_of(act.type),
                      .channel_id = slice_of(act.channel_id),
                      .conversation_id = slice_of(act.conversation_id),
                      .service_url = slice_of(act.service_url),
                      .token_exp = token != NULL ? 1700003600 : 0,
                      .body = {body_len > 0 ? body : "", body_len}};
        e.headers[e.n_headers++] = (bg_entry_header){slice_of("content-type"), {ct, ct_len}};
        if (token != NULL)
            e.headers[e.n_headers++] = (bg_entry_header){slice_of("authorization"), {az, az_len}};
        char *buf = NULL;
        size_t buflen = 0;
        int erc = bg_entry_encode(&e, &buf, &buflen);
        FUZZ_CHECK(erc == 0 || erc == BG_ENOMEM);
        if (erc == 0) {
            bg_entry d;
            FUZZ_CHECK(bg_entry_decode(&d, buf, buflen) == 0);
            FUZZ_CHECK(slice_eq(d.body, e.body));
            FUZZ_CHECK(slice_eq(d.request_id, e.request_id));
            FUZZ_CHECK(slice_eq(d.activity_id, e.activity_id));
            FUZZ_CHECK(slice_eq(d.type, e.type));
            FUZZ_CHECK(slice_eq(d.channel_id, e.channel_id));
            FUZZ_CHECK(slice_eq(d.conversation_id, e.conversation_id));
            FUZZ_CHECK(slice_eq(d.service_url, e.service_url));
            FUZZ_CHECK(d.token_exp == e.token_exp && d.received_at_us == e.received_at_us);
            FUZZ_CHECK(d.n_headers == e.n_headers);
            for (size_t i = 0; i < d.n_headers; i++) {
                FUZZ_CHECK(slice_eq(d.headers[i].name, e.headers[i].name));
                FUZZ_CHECK(slice_eq(d.headers[i].value, e.headers[i].value));
            }
            free(buf);
        }
    }
    bg_activity_clear(&act);
    free(in);
    return 0;
}
