/*
 * redis.url, read the same way by everyone who reads it: the configuration check
 * (policy/config.c), the event-loop connection (proxy/redis.c) and `botgate dlq`
 * (proxy/dlq.c). One parser, so that a URL the configuration accepts is one every
 * connection can use, and means the same thing to each.
 *
 *   redis://[[user]:password@]host[:port][/db]     host: a name, an IPv4 or an [IPv6]
 *   unix:///absolute/path[?db=N]
 *
 * The authority (credentials, host, port) ends at the first '/'; the credentials end at
 * its last '@', so a password may hold '@' and ':' but not '/'. port is 1..65535
 * (default 6379) and db 0..65535 (default 0), in decimal; after redis:// without a
 * leading zero, as every integer in the configuration. An empty URL is not parsed here:
 * it means the private redis-server (botgate/private_redis.h).
 *
 * Pure: no name resolution (proxy/redis.c resolves once at start), no I/O. Blanks are not
 * refused here, because the private redis's socket path may hold one; config.c refuses
 * them in a configured URL.
 */
#ifndef BOTGATE_REDIS_URL_H
#define BOTGATE_REDIS_URL_H

#include <stddef.h>

typedef struct bg_redis_url {
    int is_unix;
    char *path;     /* unix: the socket path; else NULL */
    char *host;     /* redis: as written, without the [] of an IPv6; else NULL */
    int port;       /* redis: 1..65535; unix: 0 */
    char *user;     /* NULL when the URL names none (AUTH password) */
    char *password; /* NULL without credentials; may be "" */
    int db;         /* 0..65535 */
} bg_redis_url;

/*
 * Parses url into u (u may be NULL to only check it, which allocates nothing). Returns 0,
 * BG_ECONFIG with the reason in *why ("redis:// has a port outside 1..65535": text for
 * after "redis.url: ", never holding the password), or BG_ENOMEM (*why "out of memory").
 * *why points to static text. On failure u holds nothing to free.
 */
int bg_redis_url_parse(bg_redis_url *u, const char *url, const char **why);

/* Writes the printable form of u into out, without credentials: "redis://host:6379/0",
 * "unix:///run/redis.sock". For logs and messages. */
void bg_redis_url_show(const bg_redis_url *u, char *out, size_t cap);

/* Frees what bg_redis_url_parse allocated and empties u; u may be empty already. */
void bg_redis_url_free(bg_redis_url *u);

#endif
