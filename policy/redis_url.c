/*
 * The redis.url parser (see botgate/redis_url.h).
 *
 *   redis://user:pa@ss@[::1]:6380/2
 *           '---- authority ----''- db: the rest of the URL
 *           credentials: up to the authority's last '@', split at their first ':'
 *
 * The checks run in the order the configuration check always had, so that a URL it
 * refused is refused with the same words; the checks only the connections made
 * (credentials without ':', a relative socket path, ?db junk, a host name over 255
 * bytes, a database over 65535) come after them.
 */
#include "botgate/redis_url.h"
#include "botgate/error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REDIS_DEFAULT_PORT 6379
#define REDIS_PORT_MAX 65535
#define REDIS_HOST_MAX 255
#define REDIS_DB_MAX 65535

#define WHY_NO_HOST "redis:// needs a host (redis://HOST[:PORT][/DB])"

/* A parsed URL as slices of the text: what bg_redis_url_parse then copies. */
struct st_redis_url_parts {
    int is_unix;
    const char *path, *user, *password, *host; /* NULL when absent */
    size_t path_len, user_len, password_len, host_len;
    int port, db;
};

/*
 * A decimal number in s[0..n): digits only and, when `canonical`, no leading zero (the
 * configuration's rule for every integer). Returns the value, -1 when s is not such a
 * number, -2 when it is one above max.
 */
static long
parse_number(const char *s, size_t n, long max, bool canonical)
{
    if (n == 0 || (canonical && n > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++)
        if ((v = v * 10 + (s[i] - '0')) > max)
            return -2;
    return v;
}

/* unix:///path[?db=N] (url past "unix://"). Returns NULL or the reason. */
static const char *
split_unix(const char *path, struct st_redis_url_parts *p)
{
    const char *q = strchr(path, '?');
    if (*path == '\0')
        return "unix:// needs a socket path (unix:///run/redis.sock)";
    p->path = path;
    p->path_len = q != NULL ? (size_t)(q - path) : strlen(path);
    if (p->path_len == 0 || path[0] != '/')
        return "unix:// needs an absolute path";
    if (q != NULL) {
        long db = strncmp(q, "?db=", 4) == 0
                      ? parse_number(q + 4, strlen(q + 4), REDIS_DB_MAX, false)
                      : -1;
        if (db < 0)
            return "only ?db=N may follow a unix path";
        p->db = (int)db;
    }
    p->is_unix = 1;
    return NULL;
}

/* redis://[[user]:password@]host[:port][/db] (url past "redis://"). Returns NULL or the
 * reason. */
static const char *
split_redis(const char *auth, struct st_redis_url_parts *p)
{
    const char *end = auth + strcspn(auth, "/"), *at = NULL, *host = auth, *host_end, *port;
    for (const char *c = auth; c < end; c++)
        if (*c == '@')
            at = c;
    if (at != NULL)
        host = at + 1;
    if (host == end)
        return WHY_NO_HOST;
    if (*host == '[') {
        host_end = memchr(host, ']', (size_t)(end - host));
        if (host_end == NULL || host_end == host + 1 || (host_end + 1 < end && host_end[1] != ':'))
            return "redis:// has a malformed IPv6 host (redis://[ADDRESS]:PORT)";
        p->host = host + 1;
        port = host_end + 1 < end ? host_end + 2 : NULL;
    } else {
        if ((host_end = memchr(host, ':', (size_t)(end - host))) == NULL)
            host_end = end;
        if (host_end == host)
            return WHY_NO_HOST;
        p->host = host;
        port = host_end < end ? host_end + 1 : NULL;
    }
    p->host_len = (size_t)(host_end - p->host);
    if (p->host_len > REDIS_HOST_MAX)
        return "has a host that is too long";
    long v = REDIS_DEFAULT_PORT;
    if (port != NULL && (v = parse_number(port, (size_t)(end - port), REDIS_PORT_MAX, true)) < 1)
        return "redis:// has a port outside 1..65535";
    p->port = (int)v;
    if (*end == '/' && end[1] != '\0') {
        if ((v = parse_number(end + 1, strlen(end + 1), REDIS_DB_MAX, true)) == -1)
            return "the database after / must be a number (redis://HOST:PORT/0)";
        if (v < 0)
            return "bad database number";
        p->db = (int)v;
    }
    if (at != NULL) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon == NULL)
            return "credentials must be [user]:password@";
        if (colon > auth) {
            p->user = auth;
            p->user_len = (size_t)(colon - auth);
        }
        p->password = colon + 1;
        p->password_len = (size_t)(at - colon - 1);
    }
    return NULL;
}

/* A NUL-terminated copy of s[0..n), or NULL when s is NULL. *ok turns false when out of
 * memory. */
static char *
dup_slice(const char *s, size_t n, bool *ok)
{
    if (s == NULL)
        return NULL;
    char *d = malloc(n + 1);
    if (d == NULL) {
        *ok = false;
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

int
bg_redis_url_parse(bg_redis_url *u, const char *url, const char **why)
{
    struct st_redis_url_parts p;
    memset(&p, 0, sizeof(p));
    if (u != NULL)
        memset(u, 0, sizeof(*u));
    if (strncmp(url, "unix://", 7) == 0)
        *why = split_unix(url + 7, &p);
    else if (strncmp(url, "redis://", 8) == 0)
        *why = split_redis(url + 8, &p);
    else
        *why = "must be empty, redis://HOST[:PORT][/DB] or unix://PATH";
    if (*why != NULL)
        return BG_ECONFIG;
    if (u == NULL)
        return 0;
    bool ok = true;
    u->is_unix = p.is_unix;
    u->path = dup_slice(p.path, p.path_len, &ok);
    u->host = dup_slice(p.host, p.host_len, &ok);
    u->port = p.port;
    u->user = dup_slice(p.user, p.user_len, &ok);
    u->password = dup_slice(p.password, p.password_len, &ok);
    u->db = p.db;
    if (!ok) {
        bg_redis_url_free(u);
        *why = "out of memory";
        return BG_ENOMEM;
    }
    return 0;
}

void
bg_redis_url_show(const bg_redis_url *u, char *out, size_t cap)
{
    if (u->is_unix)
        snprintf(out, cap, "unix://%s", u->path);
    else
        snprintf(out, cap, "redis://%s:%d/%d", u->host, u->port, u->db);
}

void
bg_redis_url_free(bg_redis_url *u)
{
    free(u->path);
    free(u->host);
    free(u->user);
    free(u->password);
    memset(u, 0, sizeof(*u));
}
