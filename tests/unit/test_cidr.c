/*
 * Source allowlists (policy/cidr.c): entries parsed strictly, prefix edges matched
 * exactly, v4-mapped peers treated as IPv4, and the client behind trusted proxies read
 * from X-Forwarded-For the only way that cannot be spoofed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "botgate/cidr.h"
#include "botgate/error.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* A socket address for a literal: IPv4 as sockaddr_in, anything with ':' as sockaddr_in6. */
static struct sockaddr_storage
sa_of(const char *text, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(text, ':') == NULL) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, text, &sin->sin_addr), 1);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
    }
    return ss;
}

/* 1 when the address literal is in the list. */
static int
matches(const bg_cidr_list *list, const char *text)
{
    struct sockaddr_storage ss = sa_of(text, 0);
    return bg_cidr_list_match(list, (const struct sockaddr *)&ss);
}

/* A list from literals that must all parse. */
static void
list_of(bg_cidr_list *list, char *const *texts, size_t n)
{
    char err[200] = "";
    assert_int_equal(bg_cidr_list_parse(list, texts, n, err, sizeof(err)), 0);
    assert_int_equal(list->n, n);
}

/* The 16-byte form a literal is expected to have (IPv4 v4-mapped). */
static void
assert_addr(const uint8_t addr[16], const char *text)
{
    uint8_t want[16];
    if (strchr(text, ':') == NULL) {
        memset(want, 0, 10);
        want[10] = want[11] = 0xff;
        assert_int_equal(inet_pton(AF_INET, text, want + 12), 1);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, want), 1);
    }
    assert_memory_equal(addr, want, 16);
}

static void
test_parse_accepts(void **state)
{
    (void)state;
    static const struct {
        const char *text, *addr;
        int prefix;
    } ok[] = {
        {"10.0.0.0/8", "10.0.0.0", 104},
        {"192.0.2.7", "192.0.2.7", 128}, /* a host */
        {"192.0.2.7/32", "192.0.2.7", 128},
        {"192.0.2.6/31", "192.0.2.6", 127},
        {"0.0.0.0/0", "0.0.0.0", 96},
        {"255.255.255.255", "255.255.255.255", 128},
        {"2001:db8::/32", "2001:db8::", 32},
        {"2001:db8::1", "2001:db8::1", 128},
        {"2001:db8::1/128", "2001:db8::1", 128},
        {"2001:db8::/127", "2001:db8::", 127},
        {"::/0", "::", 0},
        {"::1", "::1", 128},
        {"fd00::/8", "fd00::", 8},
        {"::ffff:10.0.0.0/104", "10.0.0.0", 104}, /* the v4-mapped spelling of 10.0.0.0/8 */
        {"2001:DB8::/32", "2001:db8::", 32},
        {"10.0.0.0/9", "10.0.0.0", 105},
    };
    for (size_t i = 0; i < N(ok); i++) {
        bg_cidr c;
        char err[200] = "";
        int rc = bg_cidr_parse(&c, ok[i].text, err, sizeof(err));
        if (rc != 0)
            fail_msg("%s: %s", ok[i].text, err);
        assert_addr(c.addr, ok[i].addr);
        assert_int_equal(c.prefix, ok[i].prefix);
    }
}

static void
test_parse_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"", "is empty"},
        {"10.0.0.1/8", "beyond its /8 prefix"},
        {"192.0.2.7/31", "beyond its /31 prefix"},
        {"2001:db8::1/64", "beyond its /64 prefix"},
        {"::1/0", "beyond its /0 prefix"},
        {"10.0.0.0/33", "has a prefix length"},
        {"::/129", "has a prefix length"},
        {"2001:db8::/1000", "has a prefix length"},
        {"10.0.0.0/", "has a prefix length"},
        {"10.0.0.0/-1", "has a prefix length"},
        {"10.0.0.0/+8", "has a prefix length"},
        {"10.0.0.0/08", "has a prefix length"},
        {"10.0.0.0/0x8", "has a prefix length"},
        {"10.0.0.0/8/8", "has a prefix length"},
        {"10.0.0.0/8a", "has a prefix length"},
        {" 10.0.0.0/8", "spaces"},
        {"10.0.0.0/8 ", "spaces"},
        {"10.0.0.0 /8", "spaces"},
        {"10.0.0.0/ 8", "spaces"},
        {"10.0.0.0/8\n", "spaces"},
        {"10.0.0.0\t", "spaces"},
        {"proxy.local", "is not an IP address"},
        {"10.1", "is not an IP address"},      /* inet_aton would say 10.0.0.1 */
        {"010.0.0.1", "is not an IP address"}, /* inet_aton would say 8.0.0.1 */
        {"1.2.3.256", "is not an IP address"},
        {"1.2.3.4.5", "is not an IP address"},
        {"0x0a.0.0.0/8", "is not an IP address"},
        {"fe80::1%eth0", "is not an IP address"}, /* zones are per host, not networks */
        {"[::1]", "is not an IP address"},
        {"[::1]/128", "is not an IP address"},
        {"1.2.3.4:80", "is not an IP address"},
        {"2001:db8:::/48", "is not an IP address"},
        {"/8", "is not an IP address"},
        {"/", "is not an IP address"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/1",
         "is not an IP address"},
    };
    for (size_t i = 0; i < N(bad); i++) {
        bg_cidr c;
        char err[200] = "";
        if (bg_cidr_parse(&c, bad[i].text, err, sizeof(err)) != BG_EINVAL)
            fail_msg("accepted: \"%s\"", bad[i].text);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("\"%s\": reason \"%s\" lacks \"%s\"", bad[i].text, err, bad[i].why);
    }
    /* No reason buffer, or a tiny one: still refused, nothing overrun. */
    bg_cidr c;
    assert_int_equal(bg_cidr_parse(&c, "10.0.0.1/8", NULL, 0), BG_EINVAL);
    char tiny[4];
    assert_int_equal(bg_cidr_parse(&c, "10.0.0.1/8", tiny, sizeof(tiny)), BG_EINVAL);
    assert_int_equal(strlen(tiny), 3);
    assert_int_equal(bg_cidr_parse(&c, NULL, tiny, sizeof(tiny)), BG_EINVAL);
}

static void
test_list_parse(void **state)
{
    (void)state;
    char *good[] = {"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"};
    bg_cidr_list list;
    list_of(&list, good, N(good));
    assert_int_equal(list.v[1].prefix, 32);
    bg_cidr_list_free(&list);
    assert_int_equal(list.n, 0);
    assert_null(list.v);
    bg_cidr_list_free(&list); /* twice is harmless */

    char *bad[] = {"10.0.0.0/8", "10.0.0.1/8", "nope"};
    char err[200] = "";
    list.n = 99;
    assert_int_equal(bg_cidr_list_parse(&list, bad, N(bad), err, sizeof(err)), BG_EINVAL);
    assert_int_equal(list.n, 0);
    assert_null(list.v);
    assert_string_equal(err, "[1]: has address bits set beyond its /8 prefix (a network is "
                             "written with them zero, as 10.0.0.0/8)");

    assert_int_equal(bg_cidr_list_parse(&list, NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(list.n, 0);
    assert_int_equal(matches(&list, "10.0.0.1"), 0);
    bg_cidr_list_free(&list);
}

static void
test_match_v4(void **state)
{
    (void)state;
    char *texts[] = {"10.0.0.0/8", "192.0.2.6/31", "198.51.100.7/32", "203.0.113.9"};
    bg_cidr_list list;
    list_of(&list, texts, N(texts));
    assert_true(matches(&list, "10.0.0.0"));
    assert_true(matches(&list, "10.255.255.255"));
    assert_false(matches(&list, "11.0.0.0"));
    assert_false(matches(&list, "9.255.255.255"));
    assert_false(matches(&list, "192.0.2.5"));
    assert_true(matches(&list, "192.0.2.6"));
    assert_true(matches(&list, "192.0.2.7"));
    assert_false(matches(&list, "192.0.2.8"));
    assert_true(matches(&list, "198.51.100.7"));
    assert_false(matches(&list, "198.51.100.6"));
    assert_true(matches(&list, "203.0.113.9"));
    assert_false(matches(&list, "203.0.113.8"));
    /* v4-mapped IPv6 peers (dual-stack sockets) are their IPv4 address. */
    assert_true(matches(&list, "::ffff:10.1.2.3"));
    assert_true(matches(&list, "::ffff:192.0.2.7"));
    assert_false(matches(&list, "::ffff:11.1.2.3"));
    /* ...but IPv4-compatible (::a.b.c.d) and NAT64 addresses are IPv6 addresses. */
    assert_false(matches(&list, "::10.1.2.3"));
    assert_false(matches(&list, "64:ff9b::10.1.2.3"));
    assert_false(matches(&list, "::1"));
    bg_cidr_list_free(&list);
}

static void
test_match_v6(void **state)
{
    (void)state;
    char *texts[] = {"2001:db8::/32", "fd00::/8", "2001:db8:ffff::1/128", "fe80::/127"};
    bg_cidr_list list;
    list_of(&list, texts, N(texts));
    assert_true(matches(&list, "2001:db8::"));
    assert_true(matches(&list, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(matches(&list, "2001:db9::"));
    assert_false(matches(&list, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_true(matches(&list, "fdff::1"));
    assert_false(matches(&list, "fe00::1"));
    assert_false(matches(&list, "fc00::1"));
    assert_true(matches(&list, "fe80::"));
    assert_true(matches(&list, "fe80::1"));
    assert_false(matches(&list, "fe80::2"));
    assert_false(matches(&list, "10.0.0.1"));
    bg_cidr_list_free(&list);
}

/* /0 in each family: IPv4's /0 is every IPv4 address and no IPv6 one; IPv6's is all. */
static void
test_match_zero_prefix(void **state)
{
    (void)state;
    char *v4[] = {"0.0.0.0/0"}, *v6[] = {"::/0"};
    bg_cidr_list l4, l6;
    list_of(&l4, v4, 1);
    list_of(&l6, v6, 1);
    assert_true(matches(&l4, "0.0.0.0"));
    assert_true(matches(&l4, "255.255.255.255"));
    assert_true(matches(&l4, "::ffff:1.2.3.4"));
    assert_false(matches(&l4, "::1"));
    assert_false(matches(&l4, "2001:db8::1"));
    assert_true(matches(&l6, "::"));
    assert_true(matches(&l6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_true(matches(&l6, "1.2.3.4"));
    bg_cidr_list_free(&l4);
    bg_cidr_list_free(&l6);
}

/* Nothing matches an empty or absent list, nor a peer that has no IP address. */
static void
test_match_nothing(void **state)
{
    (void)state;
    bg_cidr_list empty = {0, NULL};
    assert_false(matches(&empty, "10.0.0.1"));
    assert_false(matches(NULL, "10.0.0.1"));
    char *all[] = {"::/0"};
    bg_cidr_list list;
    list_of(&list, all, 1);
    struct sockaddr_un un;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    assert_false(bg_cidr_list_match(&list, (const struct sockaddr *)&un));
    assert_false(bg_cidr_list_match(&list, NULL));
    bg_cidr_list_free(&list);
}

/* The trusted proxies of the X-Forwarded-For tests: a private v4 range and a v6 one. */
static char *proxies[] = {"10.0.0.0/8", "2001:db8:ffff::/48"};

/*
 * Runs bg_cidr_client_address for a peer and an X-Forwarded-For value (NULL: absent);
 * expects `want` ("addr" or "addr port"), or NULL for BG_EINVAL.
 */
static void
expect_client_n(const char *peer, const char *xff, size_t xff_len, const char *want,
                uint16_t want_port)
{
    bg_cidr_list trusted;
    list_of(&trusted, proxies, N(proxies));
    struct sockaddr_storage p = sa_of(peer, 55555);
    struct sockaddr_in6 client;
    memset(&client, 0xa5, sizeof(client));
    int rc = bg_cidr_client_address(&trusted, (const struct sockaddr *)&p, xff, xff_len, &client);
    bg_cidr_list_free(&trusted);
    if (want == NULL) {
        if (rc != BG_EINVAL)
            fail_msg("peer %s xff \"%s\": accepted", peer, xff != NULL ? xff : "(null)");
        return;
    }
    if (rc != 0)
        fail_msg("peer %s xff \"%s\": %d", peer, xff != NULL ? xff : "(null)", rc);
    assert_int_equal(client.sin6_family, AF_INET6);
    assert_addr(client.sin6_addr.s6_addr, want);
    assert_int_equal(ntohs(client.sin6_port), want_port);
    assert_int_equal(client.sin6_flowinfo, 0);
    assert_int_equal(client.sin6_scope_id, 0);
}

static void
expect_client(const char *peer, const char *xff, const char *want, uint16_t want_port)
{
    expect_client_n(peer, xff, xff != NULL ? strlen(xff) : 0, want, want_port);
}

/* A peer that is not a trusted proxy is the client, whatever it wrote. */
static void
test_client_untrusted_peer(void **state)
{
    (void)state;
    expect_client("198.51.100.1", NULL, "198.51.100.1", 55555);
    expect_client("198.51.100.1", "203.0.113.9", "198.51.100.1", 55555);
    expect_client("198.51.100.1", "10.0.0.2", "198.51.100.1", 55555);
    expect_client("198.51.100.1", "not an address", "198.51.100.1", 55555);
    expect_client("2001:db8:1::1", "203.0.113.9", "2001:db8:1::1", 55555);
    /* No trusted proxies at all: the same. */
    struct sockaddr_storage p = sa_of("10.0.0.2", 1);
    struct sockaddr_in6 client;
    assert_int_equal(
        bg_cidr_client_address(NULL, (const struct sockaddr *)&p, "203.0.113.9", 11, &client), 0);
    assert_addr(client.sin6_addr.s6_addr, "10.0.0.2");
    bg_cidr_list empty = {0, NULL};
    assert_int_equal(
        bg_cidr_client_address(&empty, (const struct sockaddr *)&p, "203.0.113.9", 11, &client), 0);
    assert_addr(client.sin6_addr.s6_addr, "10.0.0.2");
}

/* Behind trusted proxies: the right-most address that is not one of them. */
static void
test_client_walk(void **state)
{
    (void)state;
    expect_client("10.0.0.1", NULL, "10.0.0.1", 55555); /* the proxy itself (a probe) */
    expect_client("10.0.0.1", "", "10.0.0.1", 55555);
    expect_client("10.0.0.1", "203.0.113.9", "203.0.113.9", 0);
    expect_client("10.0.0.1", "203.0.113.9, 10.0.0.2", "203.0.113.9", 0);
    expect_client("10.0.0.1", "203.0.113.9,10.0.0.2", "203.0.113.9", 0);
    expect_client("10.0.0.1", "203.0.113.9 ,\t10.0.0.2\t", "203.0.113.9", 0);
    /* What the client wrote itself, left of the first untrusted hop, is not believed. */
    expect_client("10.0.0.1", "1.1.1.1, 203.0.113.9, 10.0.0.2", "203.0.113.9", 0);
    expect_client("10.0.0.1", "10.9.9.9, 203.0.113.9, 10.0.0.2", "203.0.113.9", 0);
    /* ...nor even parsed: garbage there does not matter. */
    expect_client("10.0.0.1", "<script>, unknown, 203.0.113.9", "203.0.113.9", 0);
    /* Several header lines, joined by ", " on the way in. */
    expect_client("10.0.0.1", "198.51.100.4, 203.0.113.9, 10.0.0.5, 10.0.0.2", "203.0.113.9", 0);
    /* Every hop trusted: the left-most one. */
    expect_client("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3", 0);
    expect_client("10.0.0.1", "2001:db8:ffff::5, 10.0.0.2", "2001:db8:ffff::5", 0);
    /* Blank list elements are skipped. */
    expect_client("10.0.0.1", "203.0.113.9,, 10.0.0.2,", "203.0.113.9", 0);
    expect_client("10.0.0.1", ",203.0.113.9", "203.0.113.9", 0);
    expect_client("10.0.0.1", " , ,\t", "10.0.0.1", 55555);
    expect_client("10.0.0.1", ",", "10.0.0.1", 55555);
    /* IPv6 peers and clients; a v4-mapped peer is trusted as its IPv4 address. */
    expect_client("2001:db8:ffff::1", "2001:db8:1::9", "2001:db8:1::9", 0);
    expect_client("::ffff:10.0.0.1", "203.0.113.9", "203.0.113.9", 0);
    expect_client("10.0.0.1", "::ffff:203.0.113.9", "203.0.113.9", 0);
    expect_client("10.0.0.1", "::ffff:10.0.0.7, 203.0.113.9", "203.0.113.9", 0);
}

/* The forms with ports and brackets, and the ones refused. */
static void
test_client_ports(void **state)
{
    (void)state;
    expect_client("10.0.0.1", "203.0.113.9:4711", "203.0.113.9", 4711);
    expect_client("10.0.0.1", "203.0.113.9:4711, 10.0.0.2:443", "203.0.113.9", 4711);
    expect_client("10.0.0.1", "203.0.113.9:65535", "203.0.113.9", 65535);
    expect_client("10.0.0.1", "[2001:db8::9]", "2001:db8::9", 0);
    expect_client("10.0.0.1", "[2001:db8::9]:443", "2001:db8::9", 443);
    expect_client("10.0.0.1", "[2001:db8:ffff::9]:443, 10.0.0.2", "2001:db8:ffff::9", 443);
    expect_client("10.0.0.1", "2001:db8::9", "2001:db8::9", 0);
    /* A bare IPv6 address's last group is part of the address, never a port. */
    expect_client("10.0.0.1", "2001:db8::443", "2001:db8::443", 0);
    static const char *refused[] = {
        "203.0.113.9:",
        "203.0.113.9:0",
        "203.0.113.9:65536",
        "203.0.113.9:123456",
        "203.0.113.9:-1",
        "203.0.113.9:8o",
        "203.0.113.9 :80",
        "[2001:db8::9",
        "[2001:db8::9]x",
        "[2001:db8::9]:",
        "[2001:db8::9]:0",
        "[203.0.113.9]",
        "[203.0.113.9]:1",
        "[]",
        "[[::1]]",
        "2001:db8::9]",
        "unknown",
        "_hidden",
        "proxy.local",
        "203.0.113.9 10.0.0.2",
        "10.1",
        "010.0.0.1",
        "fe80::1%eth0",
        "203.0.113.9/32",
        "\"203.0.113.9\"",
        "for=203.0.113.9",
        "203.0.113.9\r\n",
        "::ffff:1.2.3.4:80",
    };
    for (size_t i = 0; i < N(refused); i++)
        expect_client("10.0.0.1", refused[i], NULL, 0);
}

/* A malformed element met on the walk makes the client unknowable: refused, never guessed. */
static void
test_client_malformed(void **state)
{
    (void)state;
    expect_client("10.0.0.1", "203.0.113.9, garbage", NULL, 0);
    expect_client("10.0.0.1", "203.0.113.9, 10.0.0.2, garbage", NULL, 0);
    expect_client("10.0.0.1", "garbage, 10.0.0.2", NULL, 0); /* reached: all right of it trusted */
    expect_client("10.0.0.1", "203.0.113.9;10.0.0.2", NULL, 0);
    /* A NUL inside the value is not an end of string. */
    expect_client_n("10.0.0.1", "203.0.113.9\0", 12, NULL, 0);
    expect_client_n("10.0.0.1", "\0, 203.0.113.9", 14, "203.0.113.9", 0);
    /* The value is not NUL-terminated: only xff_len bytes count. */
    expect_client_n("10.0.0.1", "203.0.113.9, 10.0.0.2GARBAGE", 21, "203.0.113.9", 0);
    expect_client_n("10.0.0.1", "203.0.113.9XYZ", 11, "203.0.113.9", 0);
    /* A peer without an IP address. */
    bg_cidr_list trusted;
    list_of(&trusted, proxies, N(proxies));
    struct sockaddr_un un;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    struct sockaddr_in6 client;
    assert_int_equal(
        bg_cidr_client_address(&trusted, (const struct sockaddr *)&un, NULL, 0, &client),
        BG_EINVAL);
    assert_int_equal(bg_cidr_client_address(&trusted, NULL, NULL, 0, &client), BG_EINVAL);
    bg_cidr_list_free(&trusted);
}

/* A long, all-trusted chain is walked to its end in one pass. */
static void
test_client_long_chain(void **state)
{
    (void)state;
    char xff[16 * 1000 + 32];
    size_t n = 0;
    n += (size_t)snprintf(xff + n, sizeof(xff) - n, "203.0.113.9");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(xff + n, sizeof(xff) - n, ", 10.%d.%d.1", i / 256, i % 256);
    expect_client("10.0.0.1", xff, "203.0.113.9", 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_accepts),    cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_list_parse),       cmocka_unit_test(test_match_v4),
        cmocka_unit_test(test_match_v6),         cmocka_unit_test(test_match_zero_prefix),
        cmocka_unit_test(test_match_nothing),    cmocka_unit_test(test_client_untrusted_peer),
        cmocka_unit_test(test_client_walk),      cmocka_unit_test(test_client_ports),
        cmocka_unit_test(test_client_malformed), cmocka_unit_test(test_client_long_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
