/*
 * Fuzzes the activity field extractor (policy/activity.c): the request body, as the
 * Connector (or anyone who reaches the port) sends it.
 *
 * Input: the body bytes. Besides "no crash, no overread, no leak": the answer is one of
 * the documented codes; on success `type` is present and non-empty and every field is a
 * terminated string no longer than the body; on failure the struct is empty and the
 * reason is a terminated, non-empty sentence, also when cut to a tiny buffer.
 */
#include "fuzz.h"

#include "botgate/activity.h"
#include "botgate/error.h"

/* Reads a field to its end: ASan stops a string that is not terminated in its memory. */
static size_t
field_len(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = fuzz_copy(data, size);
    bg_activity act;
    char err[160];
    int rc = bg_activity_parse(&act, body, size, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == BG_EJSON || rc == BG_EACTIVITY || rc == BG_ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(act.type != NULL && act.type[0] != '\0');
        size_t total = field_len(act.id) + field_len(act.channel_id) + field_len(act.service_url) +
                       field_len(act.conversation_id) + field_len(act.delivery_mode) +
                       field_len(act.tenant_id);
        FUZZ_CHECK(total < size); /* every field's bytes came out of the body */
        bg_activity_clear(&act);
    } else {
        FUZZ_CHECK(act.type == NULL && act.id == NULL && act.channel_id == NULL &&
                   act.service_url == NULL && act.conversation_id == NULL &&
                   act.delivery_mode == NULL && act.tenant_id == NULL);
        FUZZ_CHECK(fuzz_err_ok(err, sizeof(err)) && err[0] != '\0');
        /* The same failure with a buffer too small for the sentence: cut, terminated. */
        char tiny[7];
        bg_activity again;
        FUZZ_CHECK(bg_activity_parse(&again, body, size, tiny, sizeof(tiny)) == rc);
        FUZZ_CHECK(fuzz_err_ok(tiny, sizeof(tiny)));
    }
    /* The reason is optional. */
    rc = bg_activity_parse(&act, body, size, NULL, 0);
    if (rc == 0)
        bg_activity_clear(&act);
    free(body);
    return 0;
}
