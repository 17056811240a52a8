/*
 * Fuzzes the allowlist parser and the X-Forwarded-For walk (policy/cidr.c).
 *
 * Input: one flag byte, then an allowlist entry up to the first '\n', then an
 * X-Forwarded-For value (the rest, bytes as they come, not NUL-terminated). Properties
 * checked besides "no crash, no overread, no leak":
 *   - an accepted entry has its prefix in 0..128 and no bit set beyond it, prints back
 *     (inet_ntop) to a text that parses to the same entry, and matches its own address;
 *   - the walk answers 0 or BG_EINVAL, and a peer that is not trusted is its own client.
 */
#include "fuzz.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "botgate/cidr.h"
#include "botgate/error.h"

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* The entry's bits beyond the prefix, counted independently of cidr.c. */
static int
host_bits_clear(const bg_cidr *c)
{
    for (int bit = c->prefix; bit < 128; bit++)
        if (c->addr[bit / 8] & (0x80 >> (bit % 8)))
            return 0;
    return 1;
}

/* A socket address for the 16-byte form, as a dual-stack socket reports it. */
static struct sockaddr_in6
sa6_of(const uint8_t addr[16])
{
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin6_family = AF_INET6;
    memcpy(&sa.sin6_addr, addr, 16);
    return sa;
}

/* Properties of an entry bg_cidr_parse accepted. */
static void
check_entry(const bg_cidr *c)
{
    FUZZ_CHECK(c->prefix >= 0 && c->prefix <= 128);
    FUZZ_CHECK(host_bits_clear(c));
    char text[INET6_ADDRSTRLEN + 8], addr[INET6_ADDRSTRLEN];
    int v4 = memcmp(c->addr, v4_mapped, 12) == 0 && c->prefix >= 96;
    if (v4) {
        FUZZ_CHECK(inet_ntop(AF_INET, c->addr + 12, addr, sizeof(addr)) != NULL);
        snprintf(text, sizeof(text), "%s/%d", addr, c->prefix - 96);
    } else {
        FUZZ_CHECK(inet_ntop(AF_INET6, c->addr, addr, sizeof(addr)) != NULL);
        snprintf(text, sizeof(text), "%s/%d", addr, c->prefix);
    }
    bg_cidr again;
    char err[160];
    FUZZ_CHECK(bg_cidr_parse(&again, text, err, sizeof(err)) == 0);
    FUZZ_CHECK(again.prefix == c->prefix && memcmp(again.addr, c->addr, 16) == 0);

    bg_cidr one = *c;
    bg_cidr_list list = {1, &one};
    struct sockaddr_in6 sa = sa6_of(c->addr);
    FUZZ_CHECK(bg_cidr_list_match(&list, (const struct sockaddr *)&sa) == 1);
    if (memcmp(c->addr, v4_mapped, 12) == 0) {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        memcpy(&sin.sin_addr, c->addr + 12, 4);
        FUZZ_CHECK(bg_cidr_list_match(&list, (const struct sockaddr *)&sin) == 1);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    size_t line_len, xff_len;
    const uint8_t *xff_bytes;
    fuzz_split(data + 1, size - 1, &line_len, &xff_bytes, &xff_len);

    char *text = fuzz_cstr(data + 1, line_len);
    bg_cidr entry;
    char err[160];
    int parsed = bg_cidr_parse(&entry, text, err, sizeof(err));
    FUZZ_CHECK(parsed == 0 || parsed == BG_EINVAL);
    if (parsed == 0)
        check_entry(&entry);
    else
        FUZZ_CHECK(fuzz_err_ok(err, sizeof(err)) && err[0] != '\0');
    free(text);

    /* Trusted: a v4 and a v6 proxy network, and the fuzzed entry when it parsed. */
    bg_cidr trusted_v[3];
    char *fixed[] = {"10.0.0.0/8", "2001:db8:ffff::/48"};
    bg_cidr_list fixed_list;
    FUZZ_CHECK(bg_cidr_list_parse(&fixed_list, fixed, 2, err, sizeof(err)) == 0);
    memcpy(trusted_v, fixed_list.v, 2 * sizeof(bg_cidr));
    bg_cidr_list_free(&fixed_list);
    size_t n_trusted = 2;
    if (parsed == 0)
        trusted_v[n_trusted++] = entry;
    bg_cidr_list trusted = {n_trusted, trusted_v};

    /* The peer: one of four fixed ones, or the fuzzed entry's own address. */
    static const char *const peers[] = {"::ffff:10.0.0.1", "2001:db8:ffff::1",
                                        "::ffff:198.51.100.1", "2001:db8:1::1"};
    uint8_t peer_addr[16];
    if ((flags & 4) != 0 && parsed == 0)
        memcpy(peer_addr, entry.addr, 16);
    else
        FUZZ_CHECK(inet_pton(AF_INET6, peers[flags % 4], peer_addr) == 1);
    struct sockaddr_storage peer;
    memset(&peer, 0, sizeof(peer));
    if ((flags & 8) != 0 && memcmp(peer_addr, v4_mapped, 12) == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&peer;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, peer_addr + 12, 4);
    } else {
        struct sockaddr_in6 sa = sa6_of(peer_addr);
        memcpy(&peer, &sa, sizeof(sa));
    }

    char *xff = fuzz_copy(xff_bytes, xff_len);
    struct sockaddr_in6 client;
    int rc = bg_cidr_client_address(&trusted, (const struct sockaddr *)&peer,
                                    (flags & 16) != 0 ? NULL : xff, xff_len, &client);
    FUZZ_CHECK(rc == 0 || rc == BG_EINVAL);
    int peer_trusted = bg_cidr_list_match(&trusted, (const struct sockaddr *)&peer);
    if (!peer_trusted)
        FUZZ_CHECK(rc == 0 && memcmp(&client.sin6_addr, peer_addr, 16) == 0);
    if (rc == 0)
        FUZZ_CHECK(client.sin6_family == AF_INET6);
    free(xff);
    return 0;
}
