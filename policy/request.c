#include "botgate/request.h"
#include "botgate/error.h"

#include <string.h>
#include <strings.h>

static int
is_space(char c)
{
    return c == ' ' || c == '\t';
}

int
bg_request_is_json(const char *v, size_t len)
{
    static const char media[] = "application/json";
    const size_t n = sizeof(media) - 1;
    while (len > 0 && is_space(*v))
        v++, len--;
    if (len < n || strncasecmp(v, media, n) != 0)
        return 0;
    v += n, len -= n;
    while (len > 0 && is_space(*v))
        v++, len--;
    return len == 0 || *v == ';';
}

int
bg_request_bearer(const char *v, size_t len, const char **token, size_t *token_len)
{
    static const char scheme[] = "Bearer ";
    const size_t n = sizeof(scheme) - 1;
    if (len <= n || memcmp(v, scheme, n) != 0)
        return BG_EAUTH_MALFORMED;
    for (size_t i = n; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c <= ' ' || c == 0x7f)
            return BG_EAUTH_MALFORMED;
    }
    *token = v + n;
    *token_len = len - n;
    return 0;
}

int
bg_request_id_is_valid(const char *v, size_t len)
{
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}
