/*
 * Reads the few fields botgate acts on out of a Bot Framework activity (activity.h).
 *
 * The rule that shapes this file: botgate must read the value the bot will read. The bot
 * (the Bot Framework SDK) parses the same bytes with JSON.parse or Json.NET. The body is
 * read by policy/json.c, which accepts and refuses exactly what jansson's json_loadb does
 * with JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL |
 * JSON_REJECT_DUPLICATES (the flags this file used when it built a jansson tree), and
 * where jansson could be stricter or looser than the bot's parser, those flags pick the
 * behaviour that agrees:
 *
 *   - Duplicate keys are refused (BG_EJSON, "duplicate key ..."), in every object of the
 *     body. Parsers disagree on them: JSON.parse and Json.NET's JObject keep the last,
 *     others keep the first or fail. A body that says serviceUrl, channelId,
 *     conversation.id, id or type twice could be read one way by the authentication check
 *     and another by the bot (or by a proxy between them), so the only safe reading is
 *     none. Keys are compared after decoding escapes ("\u0061" == "a"). The Connector never
 *     sends a duplicate key, so nothing genuine is lost; we refuse them anywhere, not only
 *     in the fields we read, because which fields the bot reads is not ours to know.
 *   - NUL in strings: JSON.parse accepts "\u0000", and so do we (JSON_ALLOW_NUL): a NUL in
 *     the message text is the bot's business. Only in the fields we copy out is a NUL an
 *     error (BG_EACTIVITY), since C strings would silently cut it off and botgate would
 *     route on a different value than the bot sees. A NUL inside an object KEY is refused
 *     as jansson (2.14) refuses it ("NUL byte in object key not supported"): BG_EJSON.
 *   - Big integers: JSON.parse turns 123456789012345678901234567890 into a double; so do
 *     we (JSON_DECODE_INT_AS_REAL; we read no numbers). A real beyond DBL_MAX (1e400) is
 *     still refused; JSON.parse makes it Infinity. Invalid UTF-8 and lone surrogates
 *     ("\ud800") are refused (BG_EJSON): Node decodes invalid UTF-8 to U+FFFD before
 *     JSON.parse sees it, so different bytes would reach the bot as the same string, and
 *     our byte comparison of serviceUrl with the token's claim would no longer be the
 *     bot's. None of these occur in what the Connector sends.
 *   - Trailing bytes: "{...} x" fails (BG_EJSON); trailing whitespace is fine, as for
 *     JSON.parse.
 *   - Depth: like jansson, at most BG_JSON_MAX_DEPTH (2048) nested values, every value on
 *     the way down counted ("maximum parsing depth reached"); deeper bodies are BG_EJSON.
 *     The reader keeps its own stack, so no depth reaches ours. policy.body_max_bytes
 *     bounds the rest.
 *
 * The body is read once, front to back, keeping nothing but where the fields we want lie
 * in it; everything else is validated and skipped. Only once the whole body has proved to
 * be one JSON object are the fields checked, in a fixed order, and copied out: a JSON
 * error anywhere wins over a field's wrong type, as it did with the tree.
 */
#include "botgate/activity.h"
#include "botgate/error.h"
#include "botgate/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jansson's flags as this file used them, and its NUL quirk (json.h): what it accepted,
 * botgate still accepts, and nothing more. */
#define ACTIVITY_JSON_FLAGS                                                                        \
    (BG_JSON_ALLOW_NUL | BG_JSON_INT_AS_REAL | BG_JSON_REJECT_DUPLICATES | BG_JSON_NUL_QUIRK)

/* The reader's text is at most BG_JSON_ERROR_TEXT (160) bytes and quotes at most 20 bytes
 * of the body ("near '...'"); we keep at most this much of it in our message. */
#define ACTIVITY_JSON_TEXT_MAX 100

/* One field as found in the body: its JSON type (0: absent) and, for a string, where its
 * bytes lie. */
typedef struct st_field {
    bg_json_type type;
    bg_json_str str;
} st_field;

/* Everything extract() needs, gathered in the one pass over the body. */
typedef struct st_found {
    st_field type, id, channel_id, service_url, delivery_mode, name;
    st_field conversation, conversation_id, conversation_tenant;
    st_field channel_data, tenant, tenant_id;
} st_found;

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
 * Copies the reader's error text into out (outlen > 0), capped at ACTIVITY_JSON_TEXT_MAX
 * bytes on a character boundary, with control bytes replaced by '?'. The text can quote a
 * few bytes of the body (a token near the error) and must stay one printable line.
 */
static void
sanitize_json_text(char *out, size_t outlen, const char *text)
{
    size_t len = strnlen(text, BG_JSON_ERROR_TEXT);
    if (len > ACTIVITY_JSON_TEXT_MAX)
        len = ACTIVITY_JSON_TEXT_MAX;
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
json_type_name(bg_json_type t)
{
    switch (t) {
    case BG_JSON_OBJECT:
        return "an object";
    case BG_JSON_ARRAY:
        return "an array";
    case BG_JSON_STRING:
        return "a string";
    case BG_JSON_NUMBER:
        return "a number";
    case BG_JSON_TRUE:
    case BG_JSON_FALSE:
        return "a boolean";
    case BG_JSON_NULL:
        return "null";
    }
    return "an unknown value";
}

/* 1 when the decoded key is name. */
static int
key_is(const bg_json_str *key, const char *name, size_t name_len)
{
    return key->len == name_len && memcmp(key->s, name, name_len) == 0;
}

#define KEY_IS(key, lit) key_is((key), (lit), sizeof(lit) - 1)

/*
 * Reads a member's value into f: its type and, for a string, where it lies. An array or
 * object is read through (validated, duplicates checked) and kept only as its type.
 */
static int
read_field(bg_json_reader *r, st_field *f)
{
    if (bg_json_value(r, &f->type) != 0)
        return -1;
    if (f->type == BG_JSON_STRING)
        f->str = *bg_json_string(r);
    else if (f->type == BG_JSON_OBJECT || f->type == BG_JSON_ARRAY)
        return bg_json_leave(r);
    return 0;
}

/*
 * Reads a member's value into f like read_field, except that an object is descended into:
 * each of its members goes to pick(), which reads the value (or skips it). Used for
 * conversation, channelData and channelData.tenant.
 */
static int
read_object(bg_json_reader *r, st_field *f, st_found *found,
            int (*pick)(bg_json_reader *r, const bg_json_str *key, st_found *found))
{
    if (bg_json_value(r, &f->type) != 0)
        return -1;
    if (f->type == BG_JSON_ARRAY)
        return bg_json_leave(r);
    if (f->type != BG_JSON_OBJECT)
        return 0;
    bg_json_str key;
    int more;
    while ((more = bg_json_member(r, &key)) > 0)
        if (pick(r, &key, found) != 0)
            return -1;
    return more;
}

/* channelData.tenant's members: id. */
static int
pick_tenant(bg_json_reader *r, const bg_json_str *key, st_found *found)
{
    if (KEY_IS(key, "id"))
        return read_field(r, &found->tenant_id);
    return bg_json_skip(r);
}

/* channelData's members: tenant. */
static int
pick_channel_data(bg_json_reader *r, const bg_json_str *key, st_found *found)
{
    if (KEY_IS(key, "tenant"))
        return read_object(r, &found->tenant, found, pick_tenant);
    return bg_json_skip(r);
}

/* conversation's members: id, tenantId. */
static int
pick_conversation(bg_json_reader *r, const bg_json_str *key, st_found *found)
{
    if (KEY_IS(key, "id"))
        return read_field(r, &found->conversation_id);
    if (KEY_IS(key, "tenantId"))
        return read_field(r, &found->conversation_tenant);
    return bg_json_skip(r);
}

/* The activity's own members. Only the top-level name is the activity's: from.name and
 * conversation.name are people's and chats' names. */
static int
pick_activity(bg_json_reader *r, const bg_json_str *key, st_found *found)
{
    switch (key->len) {
    case 2:
        if (KEY_IS(key, "id"))
            return read_field(r, &found->id);
        break;
    case 4:
        if (KEY_IS(key, "type"))
            return read_field(r, &found->type);
        if (KEY_IS(key, "name"))
            return read_field(r, &found->name);
        break;
    case 9:
        if (KEY_IS(key, "channelId"))
            return read_field(r, &found->channel_id);
        break;
    case 10:
        if (KEY_IS(key, "serviceUrl"))
            return read_field(r, &found->service_url);
        break;
    case 11:
        if (KEY_IS(key, "channelData"))
            return read_object(r, &found->channel_data, found, pick_channel_data);
        break;
    case 12:
        if (KEY_IS(key, "deliveryMode"))
            return read_field(r, &found->delivery_mode);
        if (KEY_IS(key, "conversation"))
            return read_object(r, &found->conversation, found, pick_conversation);
        break;
    default:
        break;
    }
    return bg_json_skip(r);
}

/*
 * Copies field f into a malloc'd NUL-terminated string (*out). Absent or JSON null gives
 * *out = NULL; a non-string or a string holding a NUL is BG_EACTIVITY naming `path`, the
 * field's full dotted name: a C copy would end at the NUL and botgate would act on a
 * value the bot never sees.
 */
static int
take_string(const st_field *f, const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (f->type == 0 || f->type == BG_JSON_NULL)
        return 0;
    if (f->type != BG_JSON_STRING)
        return fail(BG_EACTIVITY, err, errlen, "%s must be a string", path);
    if (f->str.has_nul)
        return fail(BG_EACTIVITY, err, errlen, "%s must not contain a NUL character", path);
    char *copy = malloc(f->str.raw_len + 1);
    if (copy == NULL)
        return fail(BG_ENOMEM, err, errlen, "out of memory copying %s", path);
    size_t n = bg_json_decode(&f->str, copy);
    copy[n] = '\0';
    *out = copy;
    return 0;
}

/* Absent and JSON null are "no object here" (as `activity.conversation?.id` sees it); any
 * other non-object is BG_EACTIVITY naming path. */
static int
check_object(const st_field *f, const char *path, char *err, size_t errlen)
{
    if (f->type == 0 || f->type == BG_JSON_NULL || f->type == BG_JSON_OBJECT)
        return 0;
    return fail(BG_EACTIVITY, err, errlen, "%s must be an object", path);
}

/*
 * Checks and copies the fields found, in a fixed order so that the first problem
 * reported is always the same one. Every path we read is type-checked even when an
 * earlier one already decided the value (conversation.tenantId and channelData.tenant.id
 * both), so that a malformed field is refused however the others look.
 */
static int
extract(bg_activity *act, const st_found *f, char *err, size_t errlen)
{
    int rc;
    if ((rc = take_string(&f->type, "type", &act->type, err, errlen)) != 0)
        return rc;
    if (act->type == NULL)
        return fail(BG_EACTIVITY, err, errlen, "type is missing");
    if (act->type[0] == '\0')
        return fail(BG_EACTIVITY, err, errlen, "type must not be empty");
    if ((rc = take_string(&f->id, "id", &act->id, err, errlen)) != 0 ||
        (rc = take_string(&f->channel_id, "channelId", &act->channel_id, err, errlen)) != 0 ||
        (rc = take_string(&f->service_url, "serviceUrl", &act->service_url, err, errlen)) != 0 ||
        (rc = take_string(&f->delivery_mode, "deliveryMode", &act->delivery_mode, err, errlen)) !=
            0 ||
        (rc = take_string(&f->name, "name", &act->name, err, errlen)) != 0)
        return rc;

    /* conversation's members were recorded only if it is an object */
    if ((rc = check_object(&f->conversation, "conversation", err, errlen)) != 0 ||
        (rc = take_string(&f->conversation_id, "conversation.id", &act->conversation_id, err,
                          errlen)) != 0 ||
        (rc = take_string(&f->conversation_tenant, "conversation.tenantId", &act->tenant_id, err,
                          errlen)) != 0)
        return rc;

    /* channelData is channel-specific and typed `any` in the Bot Framework schema: a
     * channel may send a string there. Only an object can carry Teams' tenant, so any
     * other type simply means "no tenant here" (and nothing was recorded inside it);
     * inside an object, tenant and tenant.id are held to their Teams types like every
     * other field we read. */
    if (f->channel_data.type != BG_JSON_OBJECT)
        return 0;
    char *cd_tenant_id;
    if ((rc = check_object(&f->tenant, "channelData.tenant", err, errlen)) != 0 ||
        (rc = take_string(&f->tenant_id, "channelData.tenant.id", &cd_tenant_id, err, errlen)) != 0)
        return rc;
    if (act->tenant_id == NULL)
        act->tenant_id = cd_tenant_id;
    else
        free(cd_tenant_id);
    return 0;
}

/*
 * Reads the whole body once with the reader (json.h), recording where the fields lie:
 * 0 with *top the top-level value's type, or -1 with the reader's error. A top-level
 * value that is not an object is read through, so that "the body is an array" is said
 * only of a body that is valid JSON.
 */
static int
scan(bg_json_reader *r, st_found *found, bg_json_type *top)
{
    if (bg_json_value(r, top) != 0)
        return -1;
    if (*top == BG_JSON_OBJECT) {
        bg_json_str key;
        int more;
        while ((more = bg_json_member(r, &key)) > 0)
            if (pick_activity(r, &key, found) != 0)
                return -1;
        if (more < 0)
            return -1;
    } else if (*top == BG_JSON_ARRAY && bg_json_leave(r) != 0) {
        return -1;
    }
    return bg_json_finish(r);
}

/*
 * Parses body and fills act (see activity.h). act is overwritten, not freed first: call
 * bg_activity_clear() before reusing one. One pass over at most len bytes builds no tree;
 * the only allocations are act's copies of at most eight short strings (and the reader's,
 * for a body with more than 32 keys in its open objects or 16 levels of nesting), so the
 * caller can drop the body whenever it likes.
 */
int
bg_activity_parse(bg_activity *act, const char *body, size_t len, char *err, size_t errlen)
{
    if (act == NULL || (body == NULL && len > 0))
        return fail(BG_EINVAL, err, errlen, "invalid argument");
    memset(act, 0, sizeof(*act));
    if (err != NULL && errlen > 0)
        err[0] = '\0';

    bg_json_reader r;
    st_found found;
    bg_json_type top = 0;
    memset(&found, 0, sizeof(found));
    bg_json_init(&r, body, len, ACTIVITY_JSON_FLAGS, BG_JSON_MAX_DEPTH);
    int ok = scan(&r, &found, &top) == 0;
    bg_json_free(&r);
    if (!ok) {
        const bg_json_error *e = &r.err;
        if (e->code == BG_JSON_ENOMEM)
            return fail(BG_ENOMEM, err, errlen, "out of memory parsing the body");
        char text[ACTIVITY_JSON_TEXT_MAX + 1];
        sanitize_json_text(text, sizeof(text), e->text);
        if (e->code == BG_JSON_EDUPLICATE)
            return fail(BG_EJSON, err, errlen, "duplicate key at line %d column %d: %s", e->line,
                        e->column, text);
        return fail(BG_EJSON, err, errlen, "invalid JSON at line %d column %d: %s", e->line,
                    e->column, text);
    }
    if (top != BG_JSON_OBJECT)
        return fail(BG_EJSON, err, errlen, "the body is %s, not a JSON object",
                    json_type_name(top));

    int rc = extract(act, &found, err, errlen);
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
