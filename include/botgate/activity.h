/*
 * The few fields of a Bot Framework activity that botgate acts on.
 *
 * botgate never rewrites an activity: the raw body bytes travel to the bot untouched.
 * It only reads what routing, de-duplication and (later) authentication need. The
 * extractor is pure and bounded: it parses at most `len` bytes and keeps owned copies.
 */
#ifndef BOTGATE_ACTIVITY_H
#define BOTGATE_ACTIVITY_H

#include <stddef.h>

typedef struct bg_activity {
    char *type;            /* required, non-empty: "message", "invoke", ... */
    char *id;              /* optional: the Connector's activity id */
    char *channel_id;      /* optional here; required by authentication */
    char *service_url;     /* optional here; required by authentication */
    char *conversation_id; /* optional: conversation.id */
    char *delivery_mode;   /* optional: "normal", "expectReplies", ... */
    char *name;            /* optional: an invoke's name ("composeExtension/query", ...) */
    char *tenant_id;       /* optional: conversation.tenantId or channelData.tenant.id */
} bg_activity;

/*
 * Parses body (JSON, `len` bytes, not NUL-terminated) into act. Absent optional fields
 * are NULL. Returns 0; BG_EJSON when the body is not one JSON object (trailing bytes
 * included); BG_EACTIVITY when a field has the wrong JSON type, holds a NUL character, or
 * `type` is missing or empty; BG_ENOMEM; BG_EINVAL when act is NULL or body is NULL with
 * len > 0. On error writes a sentence naming the field into err (may be NULL; cut to
 * errlen on a character boundary; 160 bytes always suffice) and leaves act empty. Fields
 * present but JSON null count as absent. A key given twice anywhere in the body is
 * BG_EJSON: parsers disagree on which copy counts (first, last, error), and botgate must
 * never read a different serviceUrl than the bot. act is overwritten, not freed: clear
 * one before reusing it.
 */
int bg_activity_parse(bg_activity *act, const char *body, size_t len, char *err, size_t errlen);

/* Frees what act owns and zeroes it. */
void bg_activity_clear(bg_activity *act);

#endif
