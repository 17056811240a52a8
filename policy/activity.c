/*
 * Reads the few fields botgate acts on out of a Bot Framework activity (activity.h).
 *
 * The rule that shapes this file: botgate must read the value the bot will read. The bot
 * (the Bot Framework SDK) parses the same bytes with JSON.parse or Json.NET, so wherever
 * jansson could be stricter or looser than those, we pick the behaviour that agrees:
 *
 *   - Duplicate keys are refused (BG_EJSON, "duplicate key ..."), in every object of the
 *     body, with jansson's JSON_REJECT_DUPLICATES. Parsers disagree on them: JSON.parse and
 *     Json.NET's JObject keep the last, others keep the first or fail. A body that says
 *     serviceUrl, channelId, conversation.id, id or type twice could be read one way by the
 *     authentication check and another by the bot (or by a proxy between them), so the only
 *     safe reading is none. Keys are compared after decoding escapes ("\u0061" == "a"). The
 *     Connector never sends a duplicate key, so nothing genuine is lost; we refuse them
 *     anywhere, not only in the fields we read, because which fields the bot reads is not
 *     ours to know.
 *   - NUL in strings: JSON.parse accepts "\u0000". jansson refuses it in ANY string unless
 *     JSON_ALLOW_NUL is set, so we set it: a NUL in the message text is the bot's business.
 *     Only in the fields we copy out is a NUL an error (BG_EACTIVITY), since C strings would
 *     silently cut it off and botgate would route on a different value than the bot sees.
 *     jansson (2.14) still refuses a NUL inside an object KEY ("NUL byte in object key not
 *     supported"), whatever the flags: that is BG_EJSON.
 *   - Big integers: JSON.parse turns 123456789012345678901234567890 into a double; jansson
 *     fails with "too big integer" unless JSON_DECODE_INT_AS_REAL is set, so we set it (we
 *     read no numbers). A real beyond DBL_MAX (1e400) is still refused; JSON.parse makes it
 *     Infinity. Invalid UTF-8 and lone surrogates ("\ud800") are refused by jansson
 *     (BG_EJSON), and we keep it so: Node decodes invalid UTF-8 to U+FFFD before JSON.parse
 *     sees it, so different bytes would reach the bot as the same string, and our byte
 *     comparison of serviceUrl with the token's claim would no longer be the bot's. None of
 *     these occur in what the Connector sends.
 *   - Trailing bytes: JSON_DISABLE_EOF_CHECK is NOT set, so "{...} x" fails (BG_EJSON);
 *     trailing whitespace is fine, as for JSON.parse.
 *   - Depth: jansson's parser stops at JSON_PARSER_MAX_DEPTH (2048) nested arrays/objects
 *     with "maximum parsing depth reached" (json_error_stack_overflow). That bounds its
 *     recursion on our stack; deeper bodies are BG_EJSON. policy.body_max_bytes bounds the
 *     rest.
 *
 * JSON_DECODE_ANY is set only so that a scalar body gets a precise message ("is a JSON
 * string, not an object") instead of jansson's "'[' or '{' expected".
 */
#include "botgate/activity.h"
#include "botgate/error.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACTIVITY_JSON_FLAGS                                                                        \
    (JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL | JSON_REJECT_DUPLICATES)

/* jansson's own text is at most JSON_ERROR_TEXT_LENGTH (160) bytes and quotes at most 20
 * bytes of the body ("near '...'"); we keep at most this much of it in our message. */
#define ACTIVITY_JANSSON_TEXT_MAX 100

/*
 * Backs len off so that s[0..len) does not end inside a UTF-8 sequence. Messages end up
 * in JSON error bodies and log lines; a cut multi-byte character would make them invalid.
 */
static size_t
utf8_floor(const char *s, size_t len)
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
 * `return fail(...)`. A message cut by errlen is cut on a character boundary.
 */
static int
fail(int code, char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= errlen)
        err[utf8_floor(err, errlen - 1)] = '\0';
    return code;
}

/*
 * Copies jansson's error text into out (outlen > 0), capped at ACTIVITY_JANSSON_TEXT_MAX
 * bytes on a character boundary, with control bytes replaced by '?'. The text can quote a
 * few bytes of the body (a token near the error) and must stay one printable line.
 */
static void
sanitize_jansson_text(char *out, size_t outlen, const char *text)
{
    size_t len = strnlen(text, JSON_ERROR_TEXT_LENGTH);
    if (len > ACTIVITY_JANSSON_TEXT_MAX)
        len = ACTIVITY_JANSSON_TEXT_MAX;
    if (len > outlen - 1)
        len = outlen - 1;
    len = utf8_floor(text, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[len] = '\0';
}

/* The JSON type's name as JavaScript people say it, for "body is a JSON array". */
static const char *
json_type_name(const json_t *v)
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
get_object(json_t *obj, const char *key, const char *path, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return fail(BG_EACTIVITY, err, errlen, "%s must be an object", path);
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
get_string(json_t *obj, const char *key, const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(BG_EACTIVITY, err, errlen, "%s must be a string", path);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (memchr(s, '\0', len) != NULL)
        return fail(BG_EACTIVITY, err, errlen, "%s must not contain a NUL character", path);
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return fail(BG_ENOMEM, err, errlen, "out of memory copying %s", path);
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
extract(bg_activity *act, json_t *root, char *err, size_t errlen)
{
    int rc;
    if ((rc = get_string(root, "type", "type", &act->type, err, errlen)) != 0)
        return rc;
    if (act->type == NULL)
        return fail(BG_EACTIVITY, err, errlen, "type is missing");
    if (act->type[0] == '\0')
        return fail(BG_EACTIVITY, err, errlen, "type must not be empty");
    if ((rc = get_string(root, "id", "id", &act->id, err, errlen)) != 0)
        return rc;
    if ((rc = get_string(root, "channelId", "channelId", &act->channel_id, err, errlen)) != 0)
        return rc;
    if ((rc = get_string(root, "serviceUrl", "serviceUrl", &act->service_url, err, errlen)) != 0)
        return rc;
    if ((rc = get_string(root, "deliveryMode", "deliveryMode", &act->delivery_mode, err, errlen)) !=
        0)
        return rc;
    /* An invoke's name picks its synchronous deadline (composeExtension/...); only the
     * top-level one: from.name and conversation.name are people's and chats' names. */
    if ((rc = get_string(root, "name", "name", &act->name, err, errlen)) != 0)
        return rc;

    json_t *conversation;
    if ((rc = get_object(root, "conversation", "conversation", &conversation, err, errlen)) != 0)
        return rc;
    if ((rc = get_string(conversation, "id", "conversation.id", &act->conversation_id, err,
                         errlen)) != 0)
        return rc;
    if ((rc = get_string(conversation, "tenantId", "conversation.tenantId", &act->tenant_id, err,
                         errlen)) != 0)
        return rc;

    /* channelData is channel-specific and typed `any` in the Bot Framework schema: a
     * channel may send a string there. Only an object can carry Teams' tenant, so any
     * other type simply means "no tenant here"; inside an object, tenant and tenant.id are
     * held to their Teams types like every other field we read. */
    json_t *channel_data = json_object_get(root, "channelData");
    if (!json_is_object(channel_data))
        return 0;
    json_t *tenant;
    if ((rc = get_object(channel_data, "tenant", "channelData.tenant", &tenant, err, errlen)) != 0)
        return rc;
    char *cd_tenant_id;
    if ((rc = get_string(tenant, "id", "channelData.tenant.id", &cd_tenant_id, err, errlen)) != 0)
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
int
bg_activity_parse(bg_activity *act, const char *body, size_t len, char *err, size_t errlen)
{
    if (act == NULL || (body == NULL && len > 0))
        return fail(BG_EINVAL, err, errlen, "invalid argument");
    memset(act, 0, sizeof(*act));
    if (err != NULL && errlen > 0)
        err[0] = '\0';

    json_error_t jerr;
    json_t *root = json_loadb(body != NULL ? body : "", len, ACTIVITY_JSON_FLAGS, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return fail(BG_ENOMEM, err, errlen, "out of memory parsing the body");
        char text[ACTIVITY_JANSSON_TEXT_MAX + 1];
        sanitize_jansson_text(text, sizeof(text), jerr.text);
        if (json_error_code(&jerr) == json_error_duplicate_key)
            return fail(BG_EJSON, err, errlen, "duplicate key at line %d column %d: %s", jerr.line,
                        jerr.column, text);
        return fail(BG_EJSON, err, errlen, "invalid JSON at line %d column %d: %s", jerr.line,
                    jerr.column, text);
    }
    if (!json_is_object(root)) {
        int rc =
            fail(BG_EJSON, err, errlen, "the body is %s, not a JSON object", json_type_name(root));
        json_decref(root);
        return rc;
    }

    int rc = extract(act, root, err, errlen);
    json_decref(root);
    if (rc != 0)
        bg_activity_clear(act);
    return rc;
}

/* Frees every string act owns and zeroes it, so that clearing twice is harmless. */
void
bg_activity_clear(bg_activity *act)
{
    if (act == NULL)
        return;
    free(act->type);
    free(act->id);
    free(act->channel_id);
    free(act->service_url);
    free(act->conversation_id);
    free(act->delivery_mode);
    free(act->name);
    free(act->tenant_id);
    memset(act, 0, sizeof(*act));
}
