/*
 * bg_activity_parse: the fields botgate reads out of an activity, and every way a body
 * can fail to be one. The rule under test throughout: botgate reads the value the bot
 * (JSON.parse) will read, or refuses the body.
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

#include "botgate/activity.h"
#include "botgate/error.h"

/* The fuzz target, with its reference parser (the jansson-based extractor this one
 * replaced) and its properties: test_agrees_with_jansson runs it here over mutated
 * activities, so that the comparison runs with every unit test run, not only under
 * libFuzzer. */
#include "../fuzz/fuzz_activity.c"

/* Parses a NUL-terminated literal (its strlen is the body length). */
static int
parse(bg_activity *act, const char *json, char *err, size_t errlen)
{
    return bg_activity_parse(act, json, strlen(json), err, errlen);
}

/* Asserts that json is refused with code and that the message contains `needle`, and that
 * act is left empty. */
static void
assert_refused(const char *json, int code, const char *needle)
{
    bg_activity act;
    char err[256];
    int rc = parse(&act, json, err, sizeof(err));
    if (rc != code || strstr(err, needle) == NULL)
        fail_msg("body %s: rc %d (want %d), err \"%s\" (want \"%s\")", json, rc, code, err, needle);
    bg_activity zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&act, &zero, sizeof(act));
    bg_activity_clear(&act);
}

/* A real Teams channel message, as the Connector sends it to /api/messages (ids shortened
 * but of the real shapes; text with a mention, an emoji and non-ASCII). */
static const char teams_message[] =
    "{\n"
    "  \"text\": \"<at>Echo Bot</at> Grüße aus Zürich \\ud83d\\udc4b\\n\",\n"
    "  \"textFormat\": \"plain\",\n"
    "  \"attachments\": [\n"
    "    {\"contentType\": \"text/html\",\n"
    "     \"content\": \"<div><div><span itemscope=\\\"\\\" "
    "itemtype=\\\"http://schema.skype.com/Mention\\\" itemid=\\\"0\\\">Echo Bot</span>"
    " Grüße aus Zürich 👋</div></div>\"}\n"
    "  ],\n"
    "  \"type\": \"message\",\n"
    "  \"timestamp\": \"2024-05-14T09:21:07.3145912Z\",\n"
    "  \"localTimestamp\": \"2024-05-14T11:21:07.3145912+02:00\",\n"
    "  \"id\": \"1715678467301\",\n"
    "  \"channelId\": \"msteams\",\n"
    "  \"serviceUrl\": \"https://smba.trafficmanager.net/emea/\",\n"
    "  \"from\": {\n"
    "    \"id\": \"29:1Xq7lR4uGkV9pE0wJ3yZ8cN2bH5mT6fA\",\n"
    "    \"name\": \"Ada Lovelace\",\n"
    "    \"aadObjectId\": \"6f1c2e9a-4b7d-4c3e-9a1f-0d2b3c4e5f60\"\n"
    "  },\n"
    "  \"conversation\": {\n"
    "    \"isGroup\": true,\n"
    "    \"conversationType\": \"channel\",\n"
    "    \"tenantId\": \"72f988bf-86f1-41af-91ab-2d7cd011db47\",\n"
    "    \"id\": \"19:3e1fa9c2b7d04e5f8a6c1b2d3e4f5a6b@thread.tacv2;messageid=1715678467301\"\n"
    "  },\n"
    "  \"recipient\": {\"id\": \"28:c9e8f7a6-b5c4-4d3e-8f2a-1b0c9d8e7f6a\", \"name\": \"Echo "
    "Bot\"},\n"
    "  \"entities\": [\n"
    "    {\"mentioned\": {\"id\": \"28:c9e8f7a6-b5c4-4d3e-8f2a-1b0c9d8e7f6a\", \"name\": \"Echo "
    "Bot\"},\n"
    "     \"text\": \"<at>Echo Bot</at>\", \"type\": \"mention\"},\n"
    "    {\"locale\": \"de-CH\", \"country\": \"CH\", \"platform\": \"Web\",\n"
    "     \"timezone\": \"Europe/Zurich\", \"type\": \"clientInfo\"}\n"
    "  ],\n"
    "  \"channelData\": {\n"
    "    \"teamsChannelId\": \"19:3e1fa9c2b7d04e5f8a6c1b2d3e4f5a6b@thread.tacv2\",\n"
    "    \"teamsTeamId\": \"19:0a1b2c3d4e5f60718293a4b5c6d7e8f9@thread.tacv2\",\n"
    "    \"channel\": {\"id\": \"19:3e1fa9c2b7d04e5f8a6c1b2d3e4f5a6b@thread.tacv2\"},\n"
    "    \"team\": {\"id\": \"19:0a1b2c3d4e5f60718293a4b5c6d7e8f9@thread.tacv2\"},\n"
    "    \"tenant\": {\"id\": \"72f988bf-86f1-41af-91ab-2d7cd011db47\"}\n"
    "  },\n"
    "  \"locale\": \"de-CH\",\n"
    "  \"localTimezone\": \"Europe/Zurich\"\n"
    "}\n";

/* The Teams sample yields exactly the fields the Connector put there. */
static void
test_teams_message(void **state)
{
    (void)state;
    bg_activity act;
    char err[256] = "";
    assert_int_equal(parse(&act, teams_message, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_string_equal(act.type, "message");
    assert_string_equal(act.id, "1715678467301");
    assert_string_equal(act.channel_id, "msteams");
    assert_string_equal(act.service_url, "https://smba.trafficmanager.net/emea/");
    assert_string_equal(act.conversation_id,
                        "19:3e1fa9c2b7d04e5f8a6c1b2d3e4f5a6b@thread.tacv2;messageid=1715678467301");
    assert_null(act.delivery_mode);
    assert_null(act.name); /* from.name and recipient.name are not the activity's name */
    assert_string_equal(act.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
    bg_activity_clear(&act);
    assert_null(act.type);
    bg_activity_clear(&act); /* twice is harmless */
}

/* Every field, read from its own key; the body need not be NUL-terminated (we hand the
 * parser a buffer whose next byte is garbage). */
static void
test_every_field(void **state)
{
    (void)state;
    const char json[] =
        "{\"type\":\"invoke\",\"id\":\"f:123\",\"channelId\":\"emulator\","
        "\"serviceUrl\":\"http://localhost:5000\",\"deliveryMode\":\"expectReplies\","
        "\"name\":\"composeExtension/query\","
        "\"conversation\":{\"id\":\"c1\",\"tenantId\":\"t1\"}}";
    char buf[sizeof(json) + 3];
    memcpy(buf, json, sizeof(json) - 1);
    memcpy(buf + sizeof(json) - 1, "xyz", 3);
    bg_activity act;
    assert_int_equal(bg_activity_parse(&act, buf, sizeof(json) - 1, NULL, 0), 0);
    assert_string_equal(act.type, "invoke");
    assert_string_equal(act.id, "f:123");
    assert_string_equal(act.channel_id, "emulator");
    assert_string_equal(act.service_url, "http://localhost:5000");
    assert_string_equal(act.delivery_mode, "expectReplies");
    assert_string_equal(act.name, "composeExtension/query");
    assert_string_equal(act.conversation_id, "c1");
    assert_string_equal(act.tenant_id, "t1");
    bg_activity_clear(&act);
}

/* Only type is required; everything else absent is NULL. Empty strings are values. */
static void
test_minimal_and_empty_values(void **state)
{
    (void)state;
    bg_activity act;
    assert_int_equal(parse(&act, "{\"type\":\"ping\"}", NULL, 0), 0);
    assert_string_equal(act.type, "ping");
    assert_null(act.id);
    assert_null(act.channel_id);
    assert_null(act.service_url);
    assert_null(act.conversation_id);
    assert_null(act.delivery_mode);
    assert_null(act.name);
    assert_null(act.tenant_id);
    bg_activity_clear(&act);

    assert_int_equal(
        parse(&act, "{\"type\":\"message\",\"id\":\"\",\"conversation\":{\"id\":\"\"}}", NULL, 0),
        0);
    assert_string_equal(act.id, "");
    assert_string_equal(act.conversation_id, "");
    bg_activity_clear(&act);
}

/* JSON null is absent, for every field and for the objects on the way. */
static void
test_null_fields(void **state)
{
    (void)state;
    bg_activity act;
    assert_int_equal(
        parse(&act,
              "{\"type\":\"message\",\"id\":null,\"channelId\":null,\"serviceUrl\":null,"
              "\"deliveryMode\":null,\"name\":null,"
              "\"conversation\":{\"id\":null,\"tenantId\":null},"
              "\"channelData\":{\"tenant\":{\"id\":null}}}",
              NULL, 0),
        0);
    assert_string_equal(act.type, "message");
    assert_null(act.id);
    assert_null(act.channel_id);
    assert_null(act.service_url);
    assert_null(act.delivery_mode);
    assert_null(act.name);
    assert_null(act.conversation_id);
    assert_null(act.tenant_id);
    bg_activity_clear(&act);

    assert_int_equal(
        parse(&act,
              "{\"type\":\"message\",\"conversation\":null,\"channelData\":{\"tenant\":null}}",
              NULL, 0),
        0);
    assert_null(act.conversation_id);
    assert_null(act.tenant_id);
    bg_activity_clear(&act);
}

/* type: missing, null, empty, or not a string. */
static void
test_type_required(void **state)
{
    (void)state;
    assert_refused("{}", BG_EACTIVITY, "type is missing");
    assert_refused("{\"id\":\"x\"}", BG_EACTIVITY, "type is missing");
    assert_refused("{\"type\":null}", BG_EACTIVITY, "type is missing");
    assert_refused("{\"type\":\"\"}", BG_EACTIVITY, "type must not be empty");
    assert_refused("{\"type\":1}", BG_EACTIVITY, "type must be a string");
    assert_refused("{\"type\":true}", BG_EACTIVITY, "type must be a string");
    assert_refused("{\"type\":[\"message\"]}", BG_EACTIVITY, "type must be a string");
    assert_refused("{\"type\":{\"v\":\"message\"}}", BG_EACTIVITY, "type must be a string");
}

/* Each field we read, given each wrong JSON type, is refused with its own dotted name. */
static void
test_wrong_types(void **state)
{
    (void)state;
    static const struct {
        const char *prefix; /* JSON up to the value */
        const char *suffix; /* JSON after it */
        const char *message;
    } fields[] = {
        {"{\"type\":\"message\",\"id\":", "}", "id must be a string"},
        {"{\"type\":\"message\",\"channelId\":", "}", "channelId must be a string"},
        {"{\"type\":\"message\",\"serviceUrl\":", "}", "serviceUrl must be a string"},
        {"{\"type\":\"message\",\"deliveryMode\":", "}", "deliveryMode must be a string"},
        {"{\"type\":\"invoke\",\"name\":", "}", "name must be a string"},
        {"{\"type\":\"message\",\"conversation\":{\"id\":", "}}",
         "conversation.id must be a string"},
        {"{\"type\":\"message\",\"conversation\":{\"tenantId\":", "}}",
         "conversation.tenantId must be a string"},
        {"{\"type\":\"message\",\"channelData\":{\"tenant\":{\"id\":", "}}}",
         "channelData.tenant.id must be a string"},
    };
    static const char *const wrong[] = {"1",  "-2.5",    "true", "false",
                                        "[]", "[\"a\"]", "{}",   "{\"a\":\"b\"}"};
    char json[256];
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
        for (size_t w = 0; w < sizeof(wrong) / sizeof(wrong[0]); w++) {
            snprintf(json, sizeof(json), "%s%s%s", fields[f].prefix, wrong[w], fields[f].suffix);
            assert_refused(json, BG_EACTIVITY, fields[f].message);
        }

    static const char *const not_objects[] = {"\"c1\"", "1", "true", "[]", "[{\"id\":\"c1\"}]"};
    for (size_t w = 0; w < sizeof(not_objects) / sizeof(not_objects[0]); w++) {
        snprintf(json, sizeof(json), "{\"type\":\"message\",\"conversation\":%s}", not_objects[w]);
        assert_refused(json, BG_EACTIVITY, "conversation must be an object");
        snprintf(json, sizeof(json), "{\"type\":\"message\",\"channelData\":{\"tenant\":%s}}",
                 not_objects[w]);
        assert_refused(json, BG_EACTIVITY, "channelData.tenant must be an object");
    }
}

/* A wrong type is refused even where another field already decided the value: a bad
 * channelData.tenant.id with a good conversation.tenantId is still a bad activity. */
static void
test_wrong_type_not_masked(void **state)
{
    (void)state;
    assert_refused("{\"type\":\"message\",\"conversation\":{\"tenantId\":\"t1\"},"
                   "\"channelData\":{\"tenant\":{\"id\":42}}}",
                   BG_EACTIVITY, "channelData.tenant.id must be a string");
    /* The first problem in reading order is the one named. */
    assert_refused("{\"id\":5,\"type\":7}", BG_EACTIVITY, "type must be a string");
}

/* Tenant: conversation.tenantId wins; channelData.tenant.id is the fallback; channelData
 * of another JSON type (the schema types it `any`) simply has no tenant. */
static void
test_tenant_fallbacks(void **state)
{
    (void)state;
    bg_activity act;
    assert_int_equal(parse(&act,
                           "{\"type\":\"message\",\"conversation\":{\"tenantId\":\"conv\"},"
                           "\"channelData\":{\"tenant\":{\"id\":\"cd\"}}}",
                           NULL, 0),
                     0);
    assert_string_equal(act.tenant_id, "conv");
    bg_activity_clear(&act);

    assert_int_equal(parse(&act,
                           "{\"type\":\"message\",\"conversation\":{\"id\":\"c\"},"
                           "\"channelData\":{\"tenant\":{\"id\":\"cd\"}}}",
                           NULL, 0),
                     0);
    assert_string_equal(act.tenant_id, "cd");
    assert_string_equal(act.conversation_id, "c");
    bg_activity_clear(&act);

    assert_int_equal(parse(&act,
                           "{\"type\":\"message\",\"conversation\":{\"tenantId\":null},"
                           "\"channelData\":{\"tenant\":{\"id\":\"cd\"}}}",
                           NULL, 0),
                     0);
    assert_string_equal(act.tenant_id, "cd");
    bg_activity_clear(&act);

    assert_int_equal(
        parse(&act, "{\"type\":\"message\",\"channelData\":{\"tenant\":{\"id\":\"cd\"}}}", NULL, 0),
        0);
    assert_string_equal(act.tenant_id, "cd");
    bg_activity_clear(&act);

    static const char *const other_channel_data[] = {
        "{\"type\":\"message\",\"channelData\":\"opaque\"}",
        "{\"type\":\"message\",\"channelData\":[{\"tenant\":{\"id\":\"x\"}}]}",
        "{\"type\":\"message\",\"channelData\":7}",
        "{\"type\":\"message\",\"channelData\":null}",
        "{\"type\":\"message\",\"channelData\":{}}",
        "{\"type\":\"message\",\"channelData\":{\"tenant\":{}}}",
        "{\"type\":\"message\",\"channelData\":{\"clientActivityId\":\"1\"}}",
    };
    for (size_t i = 0; i < sizeof(other_channel_data) / sizeof(other_channel_data[0]); i++) {
        assert_int_equal(parse(&act, other_channel_data[i], NULL, 0), 0);
        assert_null(act.tenant_id);
        bg_activity_clear(&act);
    }
}

/* A Teams message-extension query, as the Connector sends it (an invoke the channel waits
 * for): its top-level name is read, value.commandId and from.name are not. */
static void
test_invoke_name(void **state)
{
    (void)state;
    bg_activity act;
    assert_int_equal(
        parse(&act,
              "{\"name\":\"composeExtension/query\",\"type\":\"invoke\","
              "\"timestamp\":\"2024-05-14T09:25:11.000Z\",\"id\":\"f:4c5b1e7a\","
              "\"channelId\":\"msteams\",\"serviceUrl\":\"https://smba.trafficmanager.net/emea/\","
              "\"from\":{\"id\":\"29:1Xq7\",\"name\":\"Ada Lovelace\"},"
              "\"conversation\":{\"conversationType\":\"personal\",\"id\":\"a:1Zx\","
              "\"tenantId\":\"t1\"},"
              "\"recipient\":{\"id\":\"28:bot\",\"name\":\"Echo Bot\"},"
              "\"value\":{\"commandId\":\"searchQuery\",\"parameters\":[{\"name\":\"searchQuery\","
              "\"value\":\"botgate\"}],\"queryOptions\":{\"skip\":0,\"count\":25}},"
              "\"locale\":\"en-US\"}",
              NULL, 0),
        0);
    assert_string_equal(act.type, "invoke");
    assert_string_equal(act.name, "composeExtension/query");
    bg_activity_clear(&act);
    assert_null(act.name);

    /* An empty name is a value, kept as such (it is no composeExtension). */
    assert_int_equal(parse(&act, "{\"type\":\"invoke\",\"name\":\"\"}", NULL, 0), 0);
    assert_string_equal(act.name, "");
    bg_activity_clear(&act);
}

/* Fields deeper inside conversation, and fields of the same name elsewhere, are not ours. */
static void
test_nested_conversation(void **state)
{
    (void)state;
    bg_activity act;
    assert_int_equal(parse(&act,
                           "{\"conversation\":{\"isGroup\":true,\"conversationType\":\"personal\","
                           "\"properties\":{\"id\":\"not-this\",\"tenantId\":5},"
                           "\"id\":\"a:1Zx\",\"name\":null},"
                           "\"from\":{\"id\":\"29:from\"},\"recipient\":{\"id\":\"28:bot\"},"
                           "\"relatesTo\":{\"conversation\":{\"id\":\"other\"}},"
                           "\"type\":\"conversationUpdate\"}",
                           NULL, 0),
                     0);
    assert_string_equal(act.type, "conversationUpdate");
    assert_string_equal(act.conversation_id, "a:1Zx");
    assert_null(act.name); /* conversation.name is the chat's, not the activity's */
    assert_null(act.id);
    assert_null(act.tenant_id);
    bg_activity_clear(&act);
}

/* A body that is JSON but not an object: BG_EJSON, saying what it is. */
static void
test_non_object_bodies(void **state)
{
    (void)state;
    assert_refused("[]", BG_EJSON, "the body is an array, not a JSON object");
    assert_refused("[{\"type\":\"message\"}]", BG_EJSON, "an array");
    assert_refused("\"message\"", BG_EJSON, "a string");
    assert_refused("42", BG_EJSON, "a number");
    assert_refused("true", BG_EJSON, "a boolean");
    assert_refused("null", BG_EJSON, "null");
}

/* Not JSON at all, or cut short: BG_EJSON with jansson's position and reason. */
static void
test_invalid_json(void **state)
{
    (void)state;
    assert_refused("", BG_EJSON, "invalid JSON at line 1 column 0:");
    assert_refused("   ", BG_EJSON, "invalid JSON at line 1");
    assert_refused("{\"type\":\"message\"", BG_EJSON, "invalid JSON at line 1");
    assert_refused("{\"type\":'message'}", BG_EJSON, "invalid JSON at line 1 column 9");
    assert_refused("{\n\"type\":\n\"message\",\n}", BG_EJSON, "invalid JSON at line 4");
    assert_refused("{type:\"message\"}", BG_EJSON, "invalid JSON");
    assert_refused("\xef\xbb\xbf{\"type\":\"message\"}", BG_EJSON, "invalid JSON"); /* BOM */
    assert_refused("{\"type\":\"\xff\"}", BG_EJSON, "invalid JSON");                /* not UTF-8 */

    bg_activity act;
    assert_int_equal(bg_activity_parse(&act, NULL, 0, NULL, 0), BG_EJSON);
    assert_int_equal(bg_activity_parse(&act, NULL, 5, NULL, 0), BG_EINVAL);
    assert_int_equal(bg_activity_parse(NULL, "{}", 2, NULL, 0), BG_EINVAL);
}

/* Trailing bytes after the object are refused (JSON_DISABLE_EOF_CHECK is not set);
 * trailing whitespace is not, as for JSON.parse. */
static void
test_trailing_garbage(void **state)
{
    (void)state;
    assert_refused("{\"type\":\"message\"} x", BG_EJSON, "end of file expected");
    assert_refused("{\"type\":\"message\"}{\"type\":\"message\"}", BG_EJSON,
                   "end of file expected");
    assert_refused("{\"type\":\"message\"},", BG_EJSON, "end of file expected");
    /* A raw NUL byte after the object, counted in len. */
    bg_activity act;
    char err[256];
    const char body[] = "{\"type\":\"message\"}\0";
    assert_int_equal(bg_activity_parse(&act, body, sizeof(body) - 1, err, sizeof(err)), BG_EJSON);
    assert_non_null(strstr(err, "end of file expected"));

    assert_int_equal(parse(&act, "  {\"type\":\"message\"} \r\n\t ", NULL, 0), 0);
    assert_string_equal(act.type, "message");
    bg_activity_clear(&act);
}

/* "\u0000" in a field we copy out would cut the C string short: refused. In any other
 * string (the text) it is the bot's business, as JSON.parse accepts it. A NUL in a key is
 * refused by jansson itself. */
static void
test_embedded_nul(void **state)
{
    (void)state;
    assert_refused("{\"type\":\"mess\\u0000age\"}", BG_EACTIVITY,
                   "type must not contain a NUL character");
    assert_refused("{\"type\":\"message\",\"id\":\"\\u0000\"}", BG_EACTIVITY,
                   "id must not contain a NUL character");
    assert_refused("{\"type\":\"invoke\",\"name\":\"composeExtension/\\u0000query\"}", BG_EACTIVITY,
                   "name must not contain a NUL character");
    assert_refused("{\"type\":\"message\",\"conversation\":{\"id\":\"a\\u0000b\"}}", BG_EACTIVITY,
                   "conversation.id must not contain");
    assert_refused("{\"type\":\"message\",\"channelData\":{\"tenant\":{\"id\":\"t\\u0000\"}}}",
                   BG_EACTIVITY, "channelData.tenant.id must not contain");

    bg_activity act;
    assert_int_equal(parse(&act, "{\"type\":\"message\",\"text\":\"a\\u0000b\"}", NULL, 0), 0);
    assert_string_equal(act.type, "message");
    bg_activity_clear(&act);

    assert_refused("{\"type\":\"message\",\"x\\u0000y\":1}", BG_EJSON, "NUL byte in object key");
    /* A raw (unescaped) control byte inside a string is not JSON. */
    const char raw[] = "{\"type\":\"mess\0age\"}";
    char err[256];
    assert_int_equal(bg_activity_parse(&act, raw, sizeof(raw) - 1, err, sizeof(err)), BG_EJSON);
    assert_non_null(strstr(err, "control character 0x0"));
}

/* Duplicate keys are refused at every level, in the fields we read and in those we do
 * not, whatever their values: parsers disagree on which one counts (JSON.parse the last,
 * others the first), so the check and the bot could read different serviceUrls. */
static void
test_duplicate_keys_refused(void **state)
{
    (void)state;
    assert_refused("{\"type\":\"invoke\",\"type\":\"message\"}", BG_EJSON, "duplicate key");
    assert_refused("{\"type\":\"message\",\"type\":\"message\"}", BG_EJSON, "duplicate key");
    assert_refused("{\"type\":\"message\",\"serviceUrl\":\"https://a/\","
                   "\"serviceUrl\":\"https://evil/\"}",
                   BG_EJSON, "duplicate key");
    assert_refused("{\"type\":\"message\",\"channelId\":\"msteams\",\"channelId\":\"webchat\"}",
                   BG_EJSON, "duplicate key");
    assert_refused("{\"type\":\"message\",\"id\":\"1\",\"id\":\"2\"}", BG_EJSON, "duplicate key");
    assert_refused("{\"type\":\"invoke\",\"name\":\"composeExtension/query\","
                   "\"name\":\"adaptiveCard/action\"}",
                   BG_EJSON, "duplicate key");
    /* nested: conversation given twice, and conversation.id twice inside one object */
    assert_refused("{\"type\":\"message\",\"conversation\":{\"id\":\"c1\"},"
                   "\"conversation\":{\"id\":\"c2\"}}",
                   BG_EJSON, "duplicate key");
    assert_refused("{\"type\":\"message\",\"conversation\":{\"id\":\"c2\",\"id\":\"c3\"}}",
                   BG_EJSON, "duplicate key");
    /* in a field botgate never reads, deep inside */
    assert_refused("{\"type\":\"message\",\"channelData\":{\"a\":[{\"x\":1,\"x\":1}]}}", BG_EJSON,
                   "duplicate key");
    /* the same key spelled with an escape is the same key */
    assert_refused("{\"type\":\"message\",\"serviceUrl\":\"https://a/\","
                   "\"\\u0073erviceUrl\":\"https://evil/\"}",
                   BG_EJSON, "duplicate key");
    /* a wrong type first does not matter: the duplicate is the reason */
    assert_refused("{\"type\":5,\"type\":\"message\"}", BG_EJSON, "duplicate key");
    /* keys that differ only in case are different keys, as for the bot */
    bg_activity act;
    assert_int_equal(parse(&act,
                           "{\"type\":\"message\",\"serviceUrl\":\"https://a/\","
                           "\"serviceurl\":\"https://b/\",\"conversation\":{\"id\":\"c\"},"
                           "\"channelData\":{\"conversation\":{\"id\":\"d\"}}}",
                           NULL, 0),
                     0);
    assert_string_equal(act.service_url, "https://a/");
    assert_string_equal(act.conversation_id, "c");
    bg_activity_clear(&act);
}

/* Numbers we do not read never make a body fail where JSON.parse would take it: integers
 * beyond 64 bits are read as doubles (JSON_DECODE_INT_AS_REAL). */
static void
test_big_numbers(void **state)
{
    (void)state;
    bg_activity act;
    assert_int_equal(
        parse(&act,
              "{\"type\":\"message\",\"channelData\":{\"n\":123456789012345678901234567890,"
              "\"m\":-98765432109876543210987654321,\"tiny\":1e-400}}",
              NULL, 0),
        0);
    assert_string_equal(act.type, "message");
    bg_activity_clear(&act);
}

/* Builds `depth` nested arrays inside an activity: {"type":"message","x":[[...]]}. */
static char *
nested(size_t depth, size_t *len)
{
    const char head[] = "{\"type\":\"message\",\"x\":";
    char *b = malloc(sizeof(head) + 2 * depth + 2);
    assert_non_null(b);
    size_t n = sizeof(head) - 1;
    memcpy(b, head, n);
    memset(b + n, '[', depth);
    n += depth;
    memset(b + n, ']', depth);
    n += depth;
    b[n++] = '}';
    *len = n;
    return b;
}

/* jansson stops at JSON_PARSER_MAX_DEPTH (2048) levels, counting every value on the way
 * down, the activity object and a leaf scalar included: 2047 arrays inside the activity
 * parse, 2048 do not, nor does a much deeper body (no stack overflow either). */
static void
test_huge_depth(void **state)
{
    (void)state;
    bg_activity act;
    char err[256];
    size_t len;
    char *b = nested(2047, &len);
    assert_int_equal(bg_activity_parse(&act, b, len, err, sizeof(err)), 0);
    assert_string_equal(act.type, "message");
    bg_activity_clear(&act);
    free(b);

    b = nested(2048, &len);
    assert_int_equal(bg_activity_parse(&act, b, len, err, sizeof(err)), BG_EJSON);
    assert_non_null(strstr(err, "maximum parsing depth reached"));
    free(b);

    b = nested(100000, &len);
    assert_int_equal(bg_activity_parse(&act, b, len, err, sizeof(err)), BG_EJSON);
    assert_non_null(strstr(err, "maximum parsing depth reached"));
    assert_null(act.type);
    free(b);
}

/* Error messages: capped by errlen on a character boundary, never more than a few bytes of
 * the body, control bytes replaced, and err may be NULL. */
static void
test_error_messages(void **state)
{
    (void)state;
    bg_activity act;
    char err[256];

    /* A long string with a raw control byte: jansson quotes no context past 20 bytes, so
     * none of the body is echoed. */
    char body[600];
    snprintf(body, sizeof(body), "{\"type\":\"%0500d\x01\"}", 7);
    assert_int_equal(parse(&act, body, err, sizeof(err)), BG_EJSON);
    assert_string_equal(err, "invalid JSON at line 1 column 509: control character 0x1");

    /* A control byte quoted as the bad token becomes '?'. */
    assert_int_equal(parse(&act, "{\"type\":\x01}", err, sizeof(err)), BG_EJSON);
    assert_non_null(strstr(err, "near '?'"));
    for (const char *p = err; *p; p++)
        assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);

    /* A tiny buffer: cut and terminated; err may be NULL or empty. */
    char small[8];
    assert_int_equal(parse(&act, "{\"type\":5}", small, sizeof(small)), BG_EACTIVITY);
    assert_string_equal(small, "type mu");
    char tiny[1] = {'x'};
    assert_int_equal(parse(&act, "{\"type\":5}", tiny, sizeof(tiny)), BG_EACTIVITY);
    assert_int_equal(tiny[0], '\0');
    assert_int_equal(parse(&act, "{\"type\":5}", NULL, 100), BG_EACTIVITY);
    assert_int_equal(parse(&act, "{\"type\":5}", err, 0), BG_EACTIVITY);

    /* jansson quotes a short non-ASCII token; a cut inside it drops the whole character. */
    const char *umlaut = "{\"type\":\xc3\xbc}";
    assert_int_equal(parse(&act, umlaut, err, sizeof(err)), BG_EJSON);
    const char *u = strstr(err, "\xc3\xbc");
    assert_non_null(u);
    size_t at = (size_t)(u - err);
    char cut[256];
    assert_int_equal(parse(&act, umlaut, cut, at + 2), BG_EJSON); /* room for c3, not bc */
    assert_int_equal(strlen(cut), at);
    assert_memory_equal(cut, err, at);

    /* Success leaves err empty. */
    strcpy(err, "stale");
    assert_int_equal(parse(&act, "{\"type\":\"message\"}", err, sizeof(err)), 0);
    assert_string_equal(err, "");
    bg_activity_clear(&act);
}

/* Cutting a valid activity at every length never succeeds, never crashes, never leaks. */
static void
test_truncated_everywhere(void **state)
{
    (void)state;
    size_t len = strlen(teams_message);
    /* Trailing newline and the closing brace: drop whitespace off the end first. */
    size_t full = len;
    while (full > 0 && (teams_message[full - 1] == '\n' || teams_message[full - 1] == ' '))
        full--;
    for (size_t n = 0; n < full; n++) {
        char *copy = malloc(n ? n : 1); /* exact size: ASan catches any read past n */
        assert_non_null(copy);
        memcpy(copy, teams_message, n);
        bg_activity act;
        char err[128];
        int rc = bg_activity_parse(&act, copy, n, err, sizeof(err));
        if (rc != BG_EJSON)
            fail_msg("prefix of %zu bytes: rc %d, err %s", n, rc, err);
        free(copy);
    }
}

/* Keys are matched after decoding: an escaped spelling of a field is that field, and a
 * string value is decoded ("\/" is "/"). */
static void
test_escaped_keys_and_values(void **state)
{
    (void)state;
    bg_activity act;
    assert_int_equal(parse(&act,
                           "{\"\\u0074ype\":\"message\",\"service\\u0055rl\":"
                           "\"https:\\/\\/smba.trafficmanager.net\\/emea\\/\",\"conversation\":{"
                           "\"\\u0069\\u0064\":\"19:a\\u00e9\\ud83d\\udc4b\"}}",
                           NULL, 0),
                     0);
    assert_string_equal(act.type, "message");
    assert_string_equal(act.service_url, "https://smba.trafficmanager.net/emea/");
    assert_string_equal(act.conversation_id, "19:a\xc3\xa9\xf0\x9f\x91\x8b");
    bg_activity_clear(&act);
}

/* Each object has its own keys: the same key in sibling and nested objects is no
 * duplicate, but a duplicate deep inside one is found after many others. */
static void
test_key_sets_per_object(void **state)
{
    (void)state;
    bg_activity act;
    assert_int_equal(parse(&act,
                           "{\"id\":\"1\",\"from\":{\"id\":\"2\"},\"recipient\":{\"id\":\"3\"},"
                           "\"conversation\":{\"id\":\"4\",\"x\":{\"id\":\"5\"}},"
                           "\"channelData\":{\"tenant\":{\"id\":\"6\"},\"team\":{\"id\":\"7\"}},"
                           "\"type\":\"message\"}",
                           NULL, 0),
                     0);
    assert_string_equal(act.id, "1");
    assert_string_equal(act.conversation_id, "4");
    assert_string_equal(act.tenant_id, "6");
    bg_activity_clear(&act);
    assert_refused("{\"type\":\"message\",\"a\":{\"b\":{\"c\":[{\"d\":1},{\"d\":2,\"e\":3,"
                   "\"d\":4}]}},\"f\":5}",
                   BG_EJSON,
                   "duplicate key at line 1 column 57: duplicate object key near '\"d\"'");
}

/* Seconds since a. */
static double
seconds_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) + (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

/*
 * A hostile body: 100k distinct keys in channelData, all of one length and sharing their
 * first 16 bytes, then serviceUrl given twice. Refused as a duplicate, in well under the
 * time a pairwise check would take (5e9 comparisons); the same without the duplicate is
 * accepted.
 */
static void
test_many_keys(void **state)
{
    (void)state;
    size_t n = 100000;
    char *b = malloc(n * 40 + 256);
    assert_non_null(b);
    for (int dup = 0; dup < 2; dup++) {
        size_t o = (size_t)sprintf(b, "{\"type\":\"message\",\"channelData\":{");
        for (size_t i = 0; i < n; i++)
            o += (size_t)sprintf(b + o, "%s\"hostile-key-%09zu\":%zu", i ? "," : "", i, i);
        o += (size_t)sprintf(b + o, "},\"serviceUrl\":\"https://a/\"%s}",
                             dup ? ",\"serviceUrl\":\"https://evil/\"" : "");
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        bg_activity act;
        char err[160];
        int rc = bg_activity_parse(&act, b, o, err, sizeof(err));
        double s = seconds_since(&t0);
        if (dup) {
            assert_int_equal(rc, BG_EJSON);
            assert_non_null(strstr(err, "duplicate key"));
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(act.service_url, "https://a/");
            bg_activity_clear(&act);
        }
        if (s > 5)
            fail_msg("100k keys took %.1f s", s);
    }
    free(b);
}

/* xorshift64*: deterministic, so that a failure reproduces. */
static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

/* Pieces the mutator splices in: the fields we read, the values that break them, tokens
 * at the grammar's edges. */
static const char *const splices[] = {
    "\"type\":",
    "\"id\":",
    "\"serviceUrl\":",
    "\"conversation\":{\"id\":\"c\"},",
    "\"channelData\":{\"tenant\":{\"id\":\"t\"}},",
    "\"tenantId\":",
    "\"tenant\":",
    "null",
    "\"\"",
    "\"\\u0000\"",
    "\"\\u0074ype\":",
    "\"\\ud800\"",
    "1e400",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "\\",
    "\xc3",
    "\xff",
    "\x01",
    "\n",
    "0",
    "-",
    "true",
    "99999999999999999999",
};

/* Applies 1 to 3 random edits to buf (len bytes, room for cap); the new length. */
static size_t
mutate(uint64_t *s, char *buf, size_t len, size_t cap)
{
    for (int e = 1 + (int)(rnd(s) % 3); e > 0; e--) {
        size_t at = len ? rnd(s) % (len + 1) : 0;
        switch (rnd(s) % 4) {
        case 0: /* overwrite a byte */
            if (at < len)
                buf[at] = (char)rnd(s);
            break;
        case 1: { /* delete a range */
            size_t n = at < len ? 1 + rnd(s) % (len - at < 16 ? len - at : 16) : 0;
            memmove(buf + at, buf + at + n, len - at - n);
            len -= n;
            break;
        }
        case 2: { /* splice a piece */
            const char *sp = splices[rnd(s) % (sizeof(splices) / sizeof(splices[0]))];
            size_t n = strlen(sp);
            if (len + n <= cap) {
                memmove(buf + at + n, buf + at, len - at);
                memcpy(buf + at, sp, n);
                len += n;
            }
            break;
        }
        default: { /* repeat a range: duplicate keys, members, brackets */
            size_t n = at < len ? 1 + rnd(s) % (len - at < 64 ? len - at : 64) : 0;
            if (len + n <= cap) {
                memmove(buf + at + n, buf + at, len - at);
                len += n;
            }
            break;
        }
        }
    }
    return len;
}

/*
 * The differential check: the fuzz target (its properties, and agreement with the
 * jansson-based extractor on code, sentence and every field) over the bodies of this file
 * and thousands of mutations of them.
 */
static void
test_agrees_with_jansson(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        teams_message,
        "{\"type\":\"invoke\",\"id\":\"f:123\",\"channelId\":\"emulator\",\"serviceUrl\":"
        "\"http://localhost:5000\",\"deliveryMode\":\"expectReplies\",\"name\":"
        "\"composeExtension/query\",\"conversation\":{\"id\":\"c1\",\"tenantId\":\"t1\"}}",
        "{\"type\":\"message\",\"id\":null,\"conversation\":{\"id\":null,\"tenantId\":null},"
        "\"channelData\":{\"tenant\":{\"id\":null}}}",
        "{\"conversation\":{\"properties\":{\"id\":\"x\",\"tenantId\":5},\"id\":\"a:1Zx\"},"
        "\"relatesTo\":{\"conversation\":{\"id\":\"other\"}},\"type\":\"conversationUpdate\"}",
        "{\"type\":\"message\",\"channelData\":{\"n\":123456789012345678901234567890,"
        "\"tiny\":1e-400,\"t\":\"a\\u0000b\"}}",
    };
    size_t nb = sizeof(bodies) / sizeof(bodies[0]);
    for (size_t i = 0; i < nb; i++)
        LLVMFuzzerTestOneInput((const uint8_t *)bodies[i], strlen(bodies[i]));
    uint64_t s = 0x853c49e6748fea9bull;
    static char buf[8192];
    for (int i = 0; i < 20000; i++) {
        const char *body = bodies[(size_t)i % nb];
        size_t len = strlen(body);
        memcpy(buf, body, len);
        len = mutate(&s, buf, len, sizeof(buf));
        LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_teams_message),
        cmocka_unit_test(test_every_field),
        cmocka_unit_test(test_minimal_and_empty_values),
        cmocka_unit_test(test_null_fields),
        cmocka_unit_test(test_type_required),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_wrong_type_not_masked),
        cmocka_unit_test(test_tenant_fallbacks),
        cmocka_unit_test(test_invoke_name),
        cmocka_unit_test(test_nested_conversation),
        cmocka_unit_test(test_non_object_bodies),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_embedded_nul),
        cmocka_unit_test(test_duplicate_keys_refused),
        cmocka_unit_test(test_big_numbers),
        cmocka_unit_test(test_huge_depth),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_escaped_keys_and_values),
        cmocka_unit_test(test_key_sets_per_object),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_agrees_with_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
