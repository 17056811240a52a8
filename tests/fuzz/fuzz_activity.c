/*
 * Fuzzes the activity field extractor (policy/activity.c): the request body, as the
 * Connector (or anyone who reaches the port) sends it.
 *
 * Input: the body bytes. Besides "no crash, no overread, no leak": the answer is one of
 * the documented codes; on success `type` is present and non-empty and every field is a
 * terminated string no longer than the body; on failure the struct is empty and the
 * reason is a terminated, non-empty sentence, also when cut to a tiny buffer.
 *
 * And the differential property: bg_activity_parse gives exactly what the jansson-based
 * extractor it replaced gives (ref_activity_parse below, that code as it was, building a
 * jansson tree with JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL |
 * JSON_REJECT_DUPLICATES): the same code, the same error sentence (jansson's line, column
 * and reason included) and the same field values. tests/unit/test_activity.c includes
 * this file to run the same checks over mutated activities without libFuzzer.
 */
#include "fuzz.h"

#include <jansson.h>
#include <stdarg.h>

#include "botgate/activity.h"
#include "botgate/error.h"

/* ---- the reference: policy/activity.c as it was with jansson ------------------------- */

#define REF_JSON_FLAGS                                                                             \
    (JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES)

/* jansson's own text is at most JSON_ERROR_TEXT_LENGTH (160) bytes and quotes at most 20
 * bytes of the body ("near '...'"); we keep at most this much of it in our message. */
#define REF_TEXT_MAX 100

/*
 * Backs len off so that s[0..len) does not end inside a UTF-8 sequence. Messages end up
 * in JSON error bodies and log lines; a cut multi-byte character would make them invalid.
 */
static size_t
ref_utf8_floor(const char *s, size_t len)
{
    size_t end = len;
    /* Walk back over continuation bytes (10xxxxxx) to the lead byte of the last sequence. */
    while (end > 0 && ((unsigned char)s[end - 1] & 0xc0) == 0x80)
        end--;
    if (end == 0)
        return 0;
    unsigned char lead = (unsigned char)s[end - 1];
    size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    return (len - (end - 1) >= need) ? len : end - 1;
}

/*
 * Writes a sentence into err (if any) and returns code, so that every failure is one
 * `return ref_fail(...)`. A message cut by errlen is cut on a character boundary.
 */
static int __attribute__((format(printf, 4, 5)))
ref_fail(int code, char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= errlen)
        err[ref_utf8_floor(err, errlen - 1)] = '\0';
    return code;
}

/*
 * Copies jansson's error text into out (outlen > 0), capped at REF_TEXT_MAX
 * bytes on a character boundary, with control bytes replaced by '?'. The text can quote a
 * few bytes of the body (a token near the error) and must stay one printable line.
 */
static void
ref_sanitize_jansson_text(char *out, size_t outlen, const char *text)
{
    size_t len = strnlen(text, JSON_ERROR_TEXT_LENGTH);
    if (len > REF_TEXT_MAX)
        len = REF_TEXT_MAX;
    if (len > outlen - 1)
        len = outlen - 1;
    len = ref_utf8_floor(text, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[len] = '\0';
}

/* The JSON type's name as JavaScript people say it, for "body is a JSON array". */
static const char *
ref_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "an unknown value";
}

/*
 * Looks up obj[key] expecting an object. Absent or JSON null gives *out = NULL (absent,
 * as the SDK's `activity.conversation?.id` would see it); any other type is BG_EACTIVITY
 * naming `path`, the field's full dotted name. obj may be NULL (parent absent).
 */
static int
ref_get_object(json_t *obj, const char *key, const char *path, json_t **out, char *err,
               size_t errlen)
{
    *out = NULL;
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return ref_fail(BG_EACTIVITY, err, errlen, "%s must be an object", path);
    *out = v;
    return 0;
}

/*
 * Copies obj[key] into a malloc'd NUL-terminated string (*out). Absent or JSON null gives
 * *out = NULL; a non-string or a string holding a NUL byte is BG_EACTIVITY naming `path`:
 * a C copy would end at the NUL and botgate would act on a value the bot never sees.
 * obj may be NULL (parent absent).
 */
static int
ref_get_string(json_t *obj, const char *key, const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return ref_fail(BG_EACTIVITY, err, errlen, "%s must be a string", path);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (memchr(s, '\0', len) != NULL)
        return ref_fail(BG_EACTIVITY, err, errlen, "%s must not contain a NUL character", path);
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return ref_fail(BG_ENOMEM, err, errlen, "out of memory copying %s", path);
    memcpy(copy, s, len + 1);
    *out = copy;
    return 0;
}

/*
 * Pulls the fields out of a parsed object, in a fixed order so that the first problem
 * reported is always the same one. Every path we read is type-checked even when an
 * earlier one already decided the value (conversation.tenantId and channelData.tenant.id
 * both), so that a malformed field is refused however the others look.
 */
static int
ref_extract(bg_activity *act, json_t *root, char *err, size_t errlen)
{
    int rc;
    if ((rc = ref_get_string(root, "type", "type", &act->type, err, errlen)) != 0)
        return rc;
    if (act->type == NULL)
        return ref_fail(BG_EACTIVITY, err, errlen, "type is missing");
    if (act->type[0] == '\0')
        return ref_fail(BG_EACTIVITY, err, errlen, "type must not be empty");
    if ((rc = ref_get_string(root, "id", "id", &act->id, err, errlen)) != 0)
        return rc;
    if ((rc = ref_get_string(root, "channelId", "channelId", &act->channel_id, err, errlen)) != 0)
        return rc;
    if ((rc = ref_get_string(root, "serviceUrl", "serviceUrl", &act->service_url, err, errlen)) !=
        0)
        return rc;
    if ((rc = ref_get_string(root, "deliveryMode", "deliveryMode", &act->delivery_mode, err,
                             errlen)) != 0)
        return rc;
    /* An invoke's name picks its synchronous deadline (composeExtension/...); only the
     * top-level one: from.name and conversation.name are people's and chats' names. */
    if ((rc = ref_get_string(root, "name", "name", &act->name, err, errlen)) != 0)
        return rc;

    json_t *conversation;
    if ((rc = ref_get_object(root, "conversation", "conversation", &conversation, err, errlen)) !=
        0)
        return rc;
    if ((rc = ref_get_string(conversation, "id", "conversation.id", &act->conversation_id, err,
                             errlen)) != 0)
        return rc;
    if ((rc = ref_get_string(conversation, "tenantId", "conversation.tenantId", &act->tenant_id,
                             err, errlen)) != 0)
        return rc;

    /* channelData is channel-specific and typed `any` in the Bot Framework schema: a
     * channel may send a string there. Only an object can carry Teams' tenant, so any
     * other type simply means "no tenant here"; inside an object, tenant and tenant.id are
     * held to their Teams types like every other field we read. */
    json_t *channel_data = json_object_get(root, "channelData");
    if (!json_is_object(channel_data))
        return 0;
    json_t *tenant;
    if ((rc = ref_get_object(channel_data, "tenant", "channelData.tenant", &tenant, err, errlen)) !=
        0)
        return rc;
    char *cd_tenant_id;
    if ((rc = ref_get_string(tenant, "id", "channelData.tenant.id", &cd_tenant_id, err, errlen)) !=
        0)
        return rc;
    if (act->tenant_id == NULL)
        act->tenant_id = cd_tenant_id;
    else
        free(cd_tenant_id);
    return 0;
}

/*
 * Parses body and fills act (see activity.h). act is overwritten, not freed first: call
 * bg_activity_clear() before reusing one. The parse happens in one pass over at most len
 * bytes; the tree lives only for this call, and act keeps owned copies of at most eight short
 * strings, so the caller can drop the body whenever it likes.
 */
static int
ref_activity_parse(bg_activity *act, const char *body, size_t len, char *err, size_t errlen)
{
    if (act == NULL || (body == NULL && len > 0))
        return ref_fail(BG_EINVAL, err, errlen, "invalid argument");
    memset(act, 0, sizeof(*act));
    if (err != NULL && errlen > 0)
        err[0] = '\0';

    json_error_t jerr;
    json_t *root = json_loadb(body != NULL ? body : "", len, REF_JSON_FLAGS, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return ref_fail(BG_ENOMEM, err, errlen, "out of memory parsing the body");
        char text[REF_TEXT_MAX + 1];
        ref_sanitize_jansson_text(text, sizeof(text), jerr.text);
        if (json_error_code(&jerr) == json_error_duplicate_key)
            return ref_fail(BG_EJSON, err, errlen, "duplicate key at line %d column %d: %s",
                            jerr.line, jerr.column, text);
        return ref_fail(BG_EJSON, err, errlen, "invalid JSON at line %d column %d: %s", jerr.line,
                        jerr.column, text);
    }
    if (!json_is_object(root)) {
        int rc = ref_fail(BG_EJSON, err, errlen, "the body is %s, not a JSON object",
                          ref_json_type_name(root));
        json_decref(root);
        return rc;
    }

    int rc = ref_extract(act, root, err, errlen);
    json_decref(root);
    if (rc != 0)
        bg_activity_clear(act); /* frees malloc'd strings: same owner rules */
    return rc;
}

/* ---- the target ---------------------------------------------------------------------- */

/* Reads a field to its end: ASan stops a string that is not terminated in its memory. */
static size_t
field_len(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

/* 1 when two fields are both absent or both the same string. */
static int
same_field(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* bg_activity_parse and the reference agree on body: code, sentence, every field. */
static void
check_against_reference(const char *body, size_t size, int rc, const bg_activity *act,
                        const char *err)
{
    bg_activity ref;
    char ref_err[160];
    int ref_rc = ref_activity_parse(&ref, body, size, ref_err, sizeof(ref_err));
    if (ref_rc != rc || (rc != 0 && strcmp(ref_err, err) != 0)) {
        fprintf(stderr, "differs from jansson: rc %d \"%s\", reference rc %d \"%s\"\n", rc,
                rc != 0 ? err : "", ref_rc, ref_rc != 0 ? ref_err : "");
        FUZZ_CHECK(!"bg_activity_parse agrees with the jansson reference");
    }
    FUZZ_CHECK(same_field(act->type, ref.type) && same_field(act->id, ref.id) &&
               same_field(act->channel_id, ref.channel_id) &&
               same_field(act->service_url, ref.service_url) &&
               same_field(act->conversation_id, ref.conversation_id) &&
               same_field(act->delivery_mode, ref.delivery_mode) &&
               same_field(act->name, ref.name) && same_field(act->tenant_id, ref.tenant_id));
    bg_activity_clear(&ref);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = fuzz_copy(data, size);
    bg_activity act;
    char err[160];
    int rc = bg_activity_parse(&act, body, size, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == BG_EJSON || rc == BG_EACTIVITY || rc == BG_ENOMEM);
    check_against_reference(body, size, rc, &act, err);
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
