/*
 * Source allowlists (cidr.h): IPv4 and IPv6 networks, and who the client is behind
 * trusted proxies.
 *
 * Every address is held in one 16-byte form, IPv6, with IPv4 written v4-mapped
 * (::ffff:a.b.c.d) and its prefix counted from bit 0 of those 128 bits:
 *
 *   10.0.0.0/8   ->  00 00 00 00 00 00 00 00 00 00 ff ff 0a 00 00 00   prefix 8 + 96 = 104
 *                    |<------------ 96 bits: ::ffff: ----------->|<- v4 ->|
 *
 * so one comparison serves both families, and a v4-mapped IPv6 peer (what a dual-stack
 * socket reports for an IPv4 client) matches IPv4 entries without a special case.
 * Addresses are read with inet_pton only: it is pure, and it refuses the forms that make
 * allowlists lie (glibc's inet_pton takes neither "010.0.0.1" as octal nor "10.1" as
 * 10.0.0.1, unlike inet_aton).
 */
#include "botgate/cidr.h"
#include "botgate/error.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest address text accepted: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" is 45. */
#define ADDR_TEXT_MAX 64

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Writes a reason into err when there is room; keeps callers to one line each. */
static int
fail(char *err, size_t errlen, const char *why)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", why);
    return BG_EINVAL;
}

/*
 * Reads an address (no prefix, no port) of n bytes into the 16-byte form. The text is
 * copied so that it can be NUL-terminated for inet_pton; a ':' decides the family, so
 * that "1.2.3.4" is never tried as IPv6 and "::1" never as IPv4. Returns 1 for an IPv4
 * address, 2 for IPv6, 0 when it is not an address.
 */
static int
parse_addr(const char *text, size_t n, uint8_t out[16])
{
    char buf[ADDR_TEXT_MAX];
    if (n == 0 || n >= sizeof(buf) || memchr(text, '\0', n) != NULL)
        return 0;
    memcpy(buf, text, n);
    buf[n] = '\0';
    if (memchr(buf, ':', n) != NULL)
        return inet_pton(AF_INET6, buf, out) == 1 ? 2 : 0;
    uint8_t v4[4];
    if (inet_pton(AF_INET, buf, v4) != 1)
        return 0;
    memcpy(out, v4_mapped_prefix, sizeof(v4_mapped_prefix));
    memcpy(out + 12, v4, 4);
    return 1;
}

/*
 * 1 when the first `prefix` bits of a and b agree. Whole bytes first, then the leading
 * bits of the byte the prefix ends in; prefix 0 agrees with everything.
 */
static int
prefix_equal(const uint8_t a[16], const uint8_t b[16], int prefix)
{
    int whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, (size_t)whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return ((a[whole] ^ b[whole]) & mask) == 0;
}

/*
 * 1 when every bit of addr after the first `prefix` is zero: "10.0.0.1/8" is almost
 * always a typo for a host or for "10.0.0.0/8", and silently widening it would let in
 * a whole network nobody wrote down.
 */
static int
host_bits_zero(const uint8_t addr[16], int prefix)
{
    uint8_t masked[16];
    memcpy(masked, addr, 16);
    int whole = prefix / 8, rest = prefix % 8;
    if (whole < 16) {
        masked[whole] &= (uint8_t)(0xff << (8 - rest));
        memset(masked + whole + 1, 0, (size_t)(15 - whole));
    }
    return memcmp(masked, addr, 16) == 0;
}

/*
 * Reads a prefix length: 1 to 3 decimal digits, no sign, no leading zero (so "/08" is
 * not read as anything), at most max. Returns the value or -1.
 */
static int
parse_prefix(const char *s, int max)
{
    size_t n = strlen(s);
    if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

/*
 * One entry of policy.allow_cidrs or policy.trusted_proxies. Strict on purpose: an
 * allowlist entry that means something other than what its author thought is a hole, so
 * anything but "ADDRESS" or "ADDRESS/PREFIX" with the host bits clear is refused at
 * start, with a reason the configuration error can quote.
 */
int
bg_cidr_parse(bg_cidr *out, const char *text, char *err, size_t errlen)
{
    if (out == NULL || text == NULL)
        return fail(err, errlen, "is missing");
    memset(out, 0, sizeof(*out));
    if (*text == '\0')
        return fail(err, errlen, "is empty");
    for (const char *p = text; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f)
            return fail(err, errlen, "must not contain spaces or control characters");
    const char *slash = strchr(text, '/');
    size_t addr_len = slash != NULL ? (size_t)(slash - text) : strlen(text);
    uint8_t addr[16];
    int family = parse_addr(text, addr_len, addr);
    if (family == 0)
        return fail(err, errlen, "is not an IP address or CIDR (10.0.0.0/8, fd00::/8)");
    int prefix = 128; /* a host: all 128 bits, for IPv4 too (v4-mapped) */
    if (slash != NULL) {
        prefix = parse_prefix(slash + 1, family == 1 ? 32 : 128);
        if (prefix < 0)
            return fail(err, errlen, "has a prefix length outside 0..32 (IPv4) or 0..128 (IPv6)");
        if (family == 1)
            prefix += 96;
    }
    if (!host_bits_zero(addr, prefix)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen,
                     "has address bits set beyond its /%d prefix (a network is written with "
                     "them zero, as 10.0.0.0/8)",
                     family == 1 ? prefix - 96 : prefix);
        return BG_EINVAL;
    }
    memcpy(out->addr, addr, 16);
    out->prefix = prefix;
    return 0;
}

/*
 * A configuration list into entries, all or nothing. The reason names the item by index,
 * "[1]: is not an IP address ...", so that the caller can put the key in front of it
 * ("policy.allow_cidrs[1]: ...") as every other configuration error reads.
 */
int
bg_cidr_list_parse(bg_cidr_list *list, char *const *texts, size_t n, char *err, size_t errlen)
{
    if (list == NULL || (texts == NULL && n > 0))
        return fail(err, errlen, "no list");
    list->n = 0;
    list->v = NULL;
    if (n == 0)
        return 0;
    bg_cidr *v = calloc(n, sizeof(*v));
    if (v == NULL)
        return BG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char why[160];
        if (bg_cidr_parse(&v[i], texts[i], why, sizeof(why)) != 0) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "[%zu]: %s", i, why);
            free(v);
            return BG_EINVAL;
        }
    }
    list->n = n;
    list->v = v;
    return 0;
}

/* Frees the entries; the list is then empty and may be parsed into again. */
void
bg_cidr_list_free(bg_cidr_list *list)
{
    if (list == NULL)
        return;
    free(list->v);
    list->v = NULL;
    list->n = 0;
}

/*
 * A socket address into the 16-byte form (and its port, host order). Returns 0, or -1
 * for a family that is neither IPv4 nor IPv6 (a Unix socket has no address to allow).
 */
static int
sockaddr_to_addr(const struct sockaddr *sa, uint8_t out[16], uint16_t *port)
{
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, sa, sizeof(sin));
        memcpy(out, v4_mapped_prefix, sizeof(v4_mapped_prefix));
        memcpy(out + 12, &sin.sin_addr, 4);
        *port = ntohs(sin.sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, sa, sizeof(sin6));
        memcpy(out, &sin6.sin6_addr, 16);
        *port = ntohs(sin6.sin6_port);
        return 0;
    }
    return -1;
}

/* 1 when addr falls in one of the list's networks; a linear scan, as lists are short. */
static int
list_has(const bg_cidr_list *list, const uint8_t addr[16])
{
    if (list == NULL)
        return 0;
    for (size_t i = 0; i < list->n; i++)
        if (prefix_equal(list->v[i].addr, addr, list->v[i].prefix))
            return 1;
    return 0;
}

/* The allowlist check, on the 16-byte form so v4 and v4-mapped v6 peers match alike. */
int
bg_cidr_list_match(const bg_cidr_list *list, const struct sockaddr *sa)
{
    uint8_t addr[16];
    uint16_t port;
    if (sockaddr_to_addr(sa, addr, &port) != 0)
        return 0;
    return list_has(list, addr);
}

/*
 * One element of X-Forwarded-For, already trimmed, into the 16-byte form and a port (0
 * when it carries none). Accepted forms:
 *
 *   192.0.2.7        2001:db8::7        bare addresses, what most proxies write
 *   192.0.2.7:4711                      Azure Application Gateway appends the client's port
 *   [2001:db8::7]    [2001:db8::7]:4711 the bracketed forms RFC 7239 uses for IPv6
 *
 * A bare IPv6 address never carries a port (its last group would be read as one). The
 * port, when present, is 1 to 5 digits up to 65535. Anything else ("unknown", a host
 * name, RFC 7239's "_hidden" identifiers) is not an address: -1.
 */
static int
parse_xff_element(const char *s, size_t n, uint8_t out[16], uint16_t *port)
{
    const char *addr = s, *port_text = NULL;
    size_t addr_len = n, port_len = 0;
    *port = 0;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return -1;
        addr = s + 1;
        addr_len = (size_t)(close - addr);
        size_t after = n - (size_t)(close + 1 - s);
        if (after > 0) {
            if (close[1] != ':')
                return -1;
            port_text = close + 2;
            port_len = after - 1;
        }
        if (parse_addr(addr, addr_len, out) != 2)
            return -1;
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon != NULL && memchr(colon + 1, ':', n - (size_t)(colon + 1 - s)) == NULL) {
            /* One colon: IPv4 with a port (IPv6 has at least two). */
            addr_len = (size_t)(colon - s);
            port_text = colon + 1;
            port_len = n - addr_len - 1;
            if (parse_addr(addr, addr_len, out) != 1)
                return -1;
        } else if (parse_addr(addr, addr_len, out) == 0) {
            return -1;
        }
    }
    if (port_text != NULL) {
        if (port_len == 0 || port_len > 5)
            return -1;
        unsigned v = 0;
        for (size_t i = 0; i < port_len; i++) {
            if (port_text[i] < '0' || port_text[i] > '9')
                return -1;
            v = v * 10 + (unsigned)(port_text[i] - '0');
        }
        if (v == 0 || v > 65535)
            return -1;
        *port = (uint16_t)v;
    }
    return 0;
}

/* Fills the caller's sockaddr_in6 from the 16-byte form and a port. */
static void
set_client(struct sockaddr_in6 *client, const uint8_t addr[16], uint16_t port)
{
    memset(client, 0, sizeof(*client));
    client->sin6_family = AF_INET6;
    memcpy(&client->sin6_addr, addr, 16);
    client->sin6_port = htons(port);
}

/* Optional white space of an HTTP list (RFC 9110 OWS): space and tab only. */
static int
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * The client behind trusted proxies. Each trusted hop appends the address it received
 * the request from, so the X-Forwarded-For value reads, left to right, from the farthest
 * hop to the nearest; only what trusted hops wrote can be believed, and everything left
 * of the first untrusted address (walking from the right) may have been written by the
 * client itself. Hence: walk from the right, skip trusted proxies, stop at the first
 * other address; the elements further left are never even parsed.
 *
 * Elements are split on ',' (several X-Forwarded-For lines arrive joined by ", "); blank
 * elements ("a,,b", a trailing comma) are skipped, as RFC 9110 asks of list recipients.
 * A malformed element met on the walk is BG_EINVAL: guessing past it could pick an
 * address the attacker chose. When the walk runs out (no header, or every element a
 * trusted proxy), the client is the left-most element seen, or the peer when there was
 * none. The port written into *client is the one the client address came with (the
 * peer's, or an element's ":port"), 0 when unknown.
 */
int
bg_cidr_client_address(const bg_cidr_list *trusted, const struct sockaddr *peer, const char *xff,
                       size_t xff_len, struct sockaddr_in6 *client)
{
    uint8_t addr[16];
    uint16_t port;
    if (client == NULL || sockaddr_to_addr(peer, addr, &port) != 0)
        return BG_EINVAL;
    if (!list_has(trusted, addr) || xff == NULL) {
        set_client(client, addr, port);
        return 0;
    }
    size_t end = xff_len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && is_ows(xff[a]))
            a++;
        while (b > a && is_ows(xff[b - 1]))
            b--;
        end = start > 0 ? start - 1 : 0;
        if (a == b)
            continue;
        uint8_t hop[16];
        uint16_t hop_port;
        if (parse_xff_element(xff + a, b - a, hop, &hop_port) != 0)
            return BG_EINVAL;
        memcpy(addr, hop, 16);
        port = hop_port;
        if (!list_has(trusted, hop))
            break;
    }
    set_client(client, addr, port);
    return 0;
}
