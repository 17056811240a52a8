/*
 * Fuzzes the relay's path parser and the URL it leads to (policy/relay_path.c).
 *
 * Input: the method up to the first '\n', then the raw request-target (the rest, bytes as
 * they come, not NUL-terminated). Properties checked besides "no crash, no overread, no
 * leak":
 *   - the answer is 0, BG_ENOTFOUND, BG_EMETHOD (with the Allow value) or BG_ERELAY_PATH,
 *     with a reason;
 *   - an accepted path has ids of 1..BG_RELAY_ID_MAX printable bytes without '/', '\', '%',
 *     '?', '#', never "." or "..", and an activity id exactly for the routes that have one;
 *   - the URL built for it at a fixed serviceUrl starts with that serviceUrl's
 *     "https://connector.example/teams/v3/conversations/", has no query, fragment, empty,
 *     '.' or '..' segment or further authority, and decodes back to the same ids;
 *   - percent-encoding the target and parsing it again as a conversation id gives the same
 *     bytes back or a refusal, never another id.
 */
#include "fuzz.h"

#include "botgate/error.h"
#include "botgate/relay_path.h"

#define BASE "https://connector.example/teams"

static int
id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > BG_RELAY_ID_MAX || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= 0x20 || c >= 0x7f || strchr("/\\%?#", c) != NULL)
            return 0;
    }
    return 1;
}

static int
hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes [s, s + len) of bg_relay_pct_encode's output into out (NUL-terminated). */
static void
decode(const char *s, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            FUZZ_CHECK(i + 2 < len);
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            FUZZ_CHECK(h >= 0 && l >= 0);
            out[n++] = (char)(h << 4 | l);
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    out[n] = '\0';
}

static void
check_url(const bg_relay_path *p)
{
    char url[8192], why[200], got[BG_RELAY_ID_MAX + 1];
    FUZZ_CHECK(bg_relay_target_url(BASE "/", p, url, sizeof(url), why, sizeof(why)) == 0);
    const char *prefix = BASE "/v3/conversations/";
    FUZZ_CHECK(strncmp(url, prefix, strlen(prefix)) == 0);
    const char *rest = url + strlen(prefix);
    FUZZ_CHECK(strpbrk(rest, "?#@:\\") == NULL);
    /* no dot segment: every segment after the prefix is an encoded id or "activities" */
    for (const char *seg = rest; seg != NULL;
         seg = strchr(seg, '/') != NULL ? strchr(seg, '/') + 1 : NULL) {
        size_t n = strcspn(seg, "/");
        FUZZ_CHECK(n > 0 && !(n == 1 && seg[0] == '.') &&
                   !(n == 2 && seg[0] == '.' && seg[1] == '.'));
    }
    const char *slash = strchr(rest, '/');
    FUZZ_CHECK(slash != NULL);
    decode(rest, (size_t)(slash - rest), got);
    FUZZ_CHECK(strcmp(got, p->conversation_id) == 0);
    if (p->op == BG_RELAY_SEND) {
        FUZZ_CHECK(strcmp(slash, "/activities") == 0);
    } else {
        FUZZ_CHECK(strncmp(slash, "/activities/", 12) == 0);
        decode(slash + 12, strlen(slash + 12), got);
        FUZZ_CHECK(strcmp(got, p->activity_id) == 0);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t mlen, plen;
    const uint8_t *pbytes;
    fuzz_split(data, size, &mlen, &pbytes, &plen);
    char *method = fuzz_copy(data, mlen);
    char *path = fuzz_copy(pbytes, plen);
    bg_relay_path p;
    const char *allow = NULL;
    char why[200];
    int rc = bg_relay_path_parse(method, mlen, path, plen, &p, &allow, why, sizeof(why));
    FUZZ_CHECK(rc == 0 || rc == BG_ENOTFOUND || rc == BG_EMETHOD || rc == BG_ERELAY_PATH);
    if (rc != 0)
        FUZZ_CHECK(fuzz_err_ok(why, sizeof(why)) && why[0] != '\0');
    if (rc == BG_EMETHOD)
        FUZZ_CHECK(allow != NULL);
    if (rc == 0) {
        FUZZ_CHECK(id_ok(p.conversation_id));
        FUZZ_CHECK(p.op == BG_RELAY_SEND ? p.activity_id[0] == '\0' : id_ok(p.activity_id));
        check_url(&p);
    }

    /* the target's bytes as a conversation id: encoded, then parsed back */
    if (plen <= BG_RELAY_ID_MAX) {
        char enc[3 * BG_RELAY_ID_MAX + 1], again[4 * BG_RELAY_ID_MAX];
        FUZZ_CHECK(bg_relay_pct_encode(path, plen, enc, sizeof(enc)) >= 0);
        snprintf(again, sizeof(again), "/v3/conversations/%s/activities", enc);
        bg_relay_path q;
        int rc2 =
            bg_relay_path_parse("POST", 4, again, strlen(again), &q, &allow, why, sizeof(why));
        FUZZ_CHECK(rc2 == 0 || rc2 == BG_ERELAY_PATH);
        if (rc2 == 0)
            FUZZ_CHECK(strlen(q.conversation_id) == plen &&
                       memcmp(q.conversation_id, path, plen) == 0);
    }
    free(method);
    free(path);
    return 0;
}
