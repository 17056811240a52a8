/*
 * Source allowlists: IPv4 and IPv6 CIDRs, and the client address behind trusted proxies.
 * Pure: addresses in, a verdict out.
 */
#ifndef BOTGATE_CIDR_H
#define BOTGATE_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct bg_cidr {
    uint8_t addr[16]; /* IPv4 stored v4-mapped (::ffff:a.b.c.d), prefix counted in 128 bits */
    int prefix;       /* 0..128 */
} bg_cidr;

typedef struct bg_cidr_list {
    size_t n;
    bg_cidr *v;
} bg_cidr_list;

/* Parses "10.0.0.0/8", "2001:db8::/32", "192.0.2.7" (a host) into one entry. Bits beyond
 * the prefix must be zero ("10.0.0.1/8" is refused: a typo, not a network). Refused too:
 * white space anywhere, a prefix with a sign or a leading zero, brackets, zones ("%eth0"),
 * and the inet_aton shorthands ("10.1", "010.0.0.1"). Returns 0 or BG_EINVAL with a
 * reason in err (without the key: the caller puts "policy.allow_cidrs[i]: " in front). */
int bg_cidr_parse(bg_cidr *out, const char *text, char *err, size_t errlen);
/* Parses n strings into list (malloc'd; free with bg_cidr_list_free), all or nothing. 0,
 * BG_ENOMEM, or BG_EINVAL with "[i]: reason" in err, i the index of the first bad one. */
int bg_cidr_list_parse(bg_cidr_list *list, char *const *texts, size_t n, char *err, size_t errlen);
void bg_cidr_list_free(bg_cidr_list *list);

/* 1 when the address (AF_INET or AF_INET6 sockaddr; v4-mapped v6 matches v4 entries) is
 * in the list. An empty list matches nothing. */
int bg_cidr_list_match(const bg_cidr_list *list, const struct sockaddr *sa);

/*
 * The client address of a request that came from `peer`: when peer is a trusted proxy,
 * the right-most address of the X-Forwarded-For value (xff, xff_len bytes, not
 * NUL-terminated, may be NULL) that is not a trusted proxy; when every address is
 * trusted, the left-most; when there is none, peer; when peer is not trusted, peer itself
 * (X-Forwarded-For is then ignored: anyone can write it). A malformed address met on that
 * walk makes the client unknowable: BG_EINVAL (the caller refuses); the elements left of
 * the client are never read.
 *
 * xff must hold EVERY X-Forwarded-For line of the request, joined in order by ", " (a
 * proxy may append its own line instead of extending the first; reading only one line
 * would let the client's own line decide). Elements are split on ',' with optional
 * spaces and tabs; blank elements are skipped. An element is "192.0.2.7", "2001:db8::7",
 * "192.0.2.7:4711" (Azure Application Gateway appends the client's port), "[2001:db8::7]"
 * or "[2001:db8::7]:4711" (RFC 7239's forms); anything else ("unknown", a name) is
 * malformed. Writes the client as a sockaddr_in6 (IPv4 as v4-mapped; the port it came
 * with, 0 when unknown) into *client; returns 0, or BG_EINVAL also for a peer that is
 * neither AF_INET nor AF_INET6.
 */
int bg_cidr_client_address(const bg_cidr_list *trusted, const struct sockaddr *peer,
                           const char *xff, size_t xff_len, struct sockaddr_in6 *client);

#endif
