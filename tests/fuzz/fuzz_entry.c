/*
 * Fuzzes the queue entry reader (policy/entry.c): the bytes anyone who can write the
 * Redis stream controls.
 *
 * Input: the msgpack bytes of an entry. Besides "no crash, no overread, no allocation,
 * no leak", whenever bg_entry_decode accepts the bytes:
 *   - every slice points inside the input;
 *   - encode(decoded) succeeds and decodes to the same entry (header names compared
 *     without case: the writer stores them lower case);
 *   - encoding that again gives the very same bytes (the writer is deterministic).
 */
#include "fuzz.h"

#include <strings.h>

#include "botgate/entry.h"
#include "botgate/error.h"

/* A decoded slice lies within [buf, buf + len) or is absent. */
static int
inside(bg_slice s, const char *buf, size_t len)
{
    if (s.p == NULL)
        return s.len == 0;
    return s.p >= buf && s.len <= len && s.p - buf <= (ptrdiff_t)(len - s.len);
}

/* Same presence and the same bytes. */
static int
slice_eq(bg_slice a, bg_slice b)
{
    if ((a.p == NULL) != (b.p == NULL) || a.len != b.len)
        return 0;
    return a.len == 0 || memcmp(a.p, b.p, a.len) == 0;
}

/* Same bytes, ASCII case aside. */
static int
slice_eq_nocase(bg_slice a, bg_slice b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char x = (unsigned char)a.p[i], y = (unsigned char)b.p[i];
        if (x >= 'A' && x <= 'Z')
            x += 'a' - 'A';
        if (x != y)
            return 0;
    }
    return 1;
}

static int
entry_slices_inside(const bg_entry *e, const char *buf, size_t len)
{
    int ok = inside(e->request_id, buf, len) && inside(e->activity_id, buf, len) &&
             inside(e->type, buf, len) && inside(e->channel_id, buf, len) &&
             inside(e->conversation_id, buf, len) && inside(e->service_url, buf, len) &&
             inside(e->body, buf, len) && e->n_headers <= BG_ENTRY_MAX_HEADERS;
    for (size_t i = 0; ok && i < e->n_headers; i++)
        ok = inside(e->headers[i].name, buf, len) && inside(e->headers[i].value, buf, len);
    return ok;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size);
    bg_entry e;
    int rc = bg_entry_decode(&e, buf, size);
    FUZZ_CHECK(rc == 0 || rc == BG_EENTRY);
    if (rc != 0) {
        free(buf);
        return 0;
    }
    FUZZ_CHECK(e.version == BG_ENTRY_VERSION);
    FUZZ_CHECK(entry_slices_inside(&e, buf, size));

    char *out = NULL, *out2 = NULL;
    size_t outlen = 0, outlen2 = 0;
    FUZZ_CHECK(bg_entry_encode(&e, &out, &outlen) == 0);
    bg_entry d;
    FUZZ_CHECK(bg_entry_decode(&d, out, outlen) == 0);
    FUZZ_CHECK(d.version == e.version && d.received_at_us == e.received_at_us &&
               d.token_exp == e.token_exp && d.attempt == e.attempt);
    FUZZ_CHECK(slice_eq(d.request_id, e.request_id) && slice_eq(d.activity_id, e.activity_id) &&
               slice_eq(d.type, e.type) && slice_eq(d.channel_id, e.channel_id) &&
               slice_eq(d.conversation_id, e.conversation_id) &&
               slice_eq(d.service_url, e.service_url) && slice_eq(d.body, e.body));
    FUZZ_CHECK(d.n_headers == e.n_headers);
    for (size_t i = 0; i < e.n_headers; i++) {
        FUZZ_CHECK(slice_eq_nocase(e.headers[i].name, d.headers[i].name));
        FUZZ_CHECK(slice_eq(e.headers[i].value, d.headers[i].value));
    }
    FUZZ_CHECK(bg_entry_encode(&d, &out2, &outlen2) == 0);
    FUZZ_CHECK(outlen2 == outlen && memcmp(out, out2, outlen) == 0);
    free(out);
    free(out2);
    free(buf);
    return 0;
}
