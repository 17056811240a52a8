/*
 * Pure checks on an inbound request's headers, before its body is looked at.
 */
#ifndef BOTGATE_REQUEST_H
#define BOTGATE_REQUEST_H

#include <stddef.h>

/* 1 when a Content-Type value names application/json (any case, parameters allowed:
 * "application/json; charset=utf-8"), else 0. */
int bg_request_is_json(const char *value, size_t len);

/*
 * Takes the token out of an Authorization value: "Bearer" (exactly that spelling, as
 * the Bot Framework SDKs compare it), one space, then a non-empty token with no
 * whitespace. Returns 0 and points *token into value; BG_EAUTH_MALFORMED otherwise.
 */
int bg_request_bearer(const char *value, size_t len, const char **token, size_t *token_len);

/* 1 when an incoming X-Request-Id may be kept: 1..64 of [A-Za-z0-9._-]. */
int bg_request_id_is_valid(const char *value, size_t len);

#endif
