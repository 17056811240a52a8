/*
 * redis.url (policy/redis_url.c): every accepted form read into the fields the
 * connections use, every refusal with its reason, and the configuration refusing exactly
 * what the parser refuses, in the same words.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "botgate/config.h"
#include "botgate/error.h"
#include "botgate/redis_url.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct good {
    const char *url;
    int is_unix;
    const char *path, *host;
    int port;
    const char *user, *password;
    int db;
    const char *shown;
};

/* NULL and "" differ: a password may be empty, and then AUTH is still sent. */
static void
assert_same_string(const char *got, const char *want, const char *url, const char *field)
{
    if (want == NULL ? got == NULL : got != NULL && strcmp(got, want) == 0)
        return;
    print_error("%s: %s is \"%s\", want \"%s\"\n", url, field, got ? got : "(null)",
                want ? want : "(null)");
    fail();
}

static void
test_accepts(void **state)
{
    (void)state;
    static const struct good cases[] = {
        {"redis://localhost", 0, NULL, "localhost", 6379, NULL, NULL, 0,
         "redis://localhost:6379/0"},
        {"redis://10.0.0.5:6380", 0, NULL, "10.0.0.5", 6380, NULL, NULL, 0,
         "redis://10.0.0.5:6380/0"},
        {"redis://h:65535/", 0, NULL, "h", 65535, NULL, NULL, 0, "redis://h:65535/0"},
        {"redis://h:1/0", 0, NULL, "h", 1, NULL, NULL, 0, "redis://h:1/0"},
        {"redis://h/65535", 0, NULL, "h", 6379, NULL, NULL, 65535, "redis://h:6379/65535"},
        {"redis://[::1]:6380", 0, NULL, "::1", 6380, NULL, NULL, 0, "redis://::1:6380/0"},
        {"redis://[fd00::1]/3", 0, NULL, "fd00::1", 6379, NULL, NULL, 3, "redis://fd00::1:6379/3"},
        {"redis://:secret@10.0.0.5:6379/2", 0, NULL, "10.0.0.5", 6379, NULL, "secret", 2,
         "redis://10.0.0.5:6379/2"},
        {"redis://user:pw@[::1]:6379", 0, NULL, "::1", 6379, "user", "pw", 0, "redis://::1:6379/0"},
        /* the last '@' ends the credentials, the first ':' ends the user */
        {"redis://:p@ss@redis:6379/1", 0, NULL, "redis", 6379, NULL, "p@ss", 1,
         "redis://redis:6379/1"},
        {"redis://u:p:w@h", 0, NULL, "h", 6379, "u", "p:w", 0, "redis://h:6379/0"},
        {"redis://u::@@h", 0, NULL, "h", 6379, "u", ":@", 0, "redis://h:6379/0"},
        {"redis://u:@h", 0, NULL, "h", 6379, "u", "", 0, "redis://h:6379/0"},
        {"redis://:@h", 0, NULL, "h", 6379, NULL, "", 0, "redis://h:6379/0"},
        {"unix:///run/redis.sock", 1, "/run/redis.sock", NULL, 0, NULL, NULL, 0,
         "unix:///run/redis.sock"},
        {"unix:///run/redis.sock?db=7", 1, "/run/redis.sock", NULL, 0, NULL, NULL, 7,
         "unix:///run/redis.sock"},
        /* both connections always read ?db= with leading zeros */
        {"unix:///r.sock?db=007", 1, "/r.sock", NULL, 0, NULL, NULL, 7, "unix:///r.sock"},
        /* blanks are config.c's to refuse: the private redis's path may hold one */
        {"unix:///my state/redis/redis.sock", 1, "/my state/redis/redis.sock", NULL, 0, NULL, NULL,
         0, "unix:///my state/redis/redis.sock"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        const struct good *c = &cases[i];
        bg_redis_url u;
        const char *why = NULL;
        int rc = bg_redis_url_parse(&u, c->url, &why);
        if (rc != 0) {
            print_error("%s: refused (%s)\n", c->url, why);
            fail();
        }
        assert_int_equal(u.is_unix, c->is_unix);
        assert_same_string(u.path, c->path, c->url, "path");
        assert_same_string(u.host, c->host, c->url, "host");
        assert_int_equal(u.port, c->port);
        assert_same_string(u.user, c->user, c->url, "user");
        assert_same_string(u.password, c->password, c->url, "password");
        assert_int_equal(u.db, c->db);
        char shown[300];
        bg_redis_url_show(&u, shown, sizeof(shown));
        assert_string_equal(shown, c->shown);
        bg_redis_url_free(&u);
        assert_null(u.host);
        assert_null(u.password);
        bg_redis_url_free(&u); /* twice is harmless */
        assert_int_equal(bg_redis_url_parse(NULL, c->url, &why), 0);
    }
}

struct bad {
    const char *url;
    const char *why;
};

#define NO_HOST "redis:// needs a host (redis://HOST[:PORT][/DB])"
#define BAD_PORT "redis:// has a port outside 1..65535"
#define BAD_V6 "redis:// has a malformed IPv6 host (redis://[ADDRESS]:PORT)"
#define BAD_DB "the database after / must be a number (redis://HOST:PORT/0)"
#define BAD_SCHEME "must be empty, redis://HOST[:PORT][/DB] or unix://PATH"
#define BAD_QUERY "only ?db=N may follow a unix path"

static const struct bad refusals[] = {
    /* scheme */
    {"http://redis:6379", BAD_SCHEME},
    {"rediss://redis:6379", BAD_SCHEME},
    {"REDIS://redis", BAD_SCHEME},
    {"localhost:6379", BAD_SCHEME},
    /* host */
    {"redis://", NO_HOST},
    {"redis:///0", NO_HOST},
    {"redis://:6379", NO_HOST},
    {"redis://u:p@", NO_HOST},
    {"redis://u:p@:6379", NO_HOST},
    {"redis://u:p@/0", NO_HOST},
    {"redis://[]:6379", BAD_V6},
    {"redis://[::1", BAD_V6},
    {"redis://[::1/0]", BAD_V6},
    {"redis://[::1]6379", BAD_V6},
    /* junk after the host: the port or the brackets take it */
    {"redis://[::1]x", BAD_V6},
    {"redis://h:6379x", BAD_PORT},
    {"redis://h:6379:1", BAD_PORT},
    /* port */
    {"redis://h:", BAD_PORT},
    {"redis://h:0", BAD_PORT},
    {"redis://h:x", BAD_PORT},
    {"redis://h:65536", BAD_PORT},
    {"redis://h:99999999999999999999999", BAD_PORT},
    {"redis://h:-1", BAD_PORT},
    {"redis://h:+6379", BAD_PORT},
    {"redis://h:06379", BAD_PORT},
    {"redis://[::1]:", BAD_PORT},
    {"redis://[::1]:0", BAD_PORT},
    /* database */
    {"redis://h/db", BAD_DB},
    {"redis://h/-1", BAD_DB},
    {"redis://h/-0", BAD_DB},
    {"redis://h/+1", BAD_DB},
    {"redis://h/01", BAD_DB},
    {"redis://h/1/2", BAD_DB},
    {"redis://h/0@x", BAD_DB},
    {"redis://h/65536", "bad database number"},
    {"redis://h/99999999999999999999999", "bad database number"},
    /* credentials: a password cannot hold '/', which ends the authority */
    {"redis://secret@h", "credentials must be [user]:password@"},
    {"redis://user@h:6379/0", "credentials must be [user]:password@"},
    {"redis://:pa/ss@h", NO_HOST},
    /* unix */
    {"unix://", "unix:// needs a socket path (unix:///run/redis.sock)"},
    {"unix://relative.sock", "unix:// needs an absolute path"},
    {"unix://?db=1", "unix:// needs an absolute path"},
    {"unix:///r.sock?", BAD_QUERY},
    {"unix:///r.sock?db=", BAD_QUERY},
    {"unix:///r.sock?db=x", BAD_QUERY},
    {"unix:///r.sock?db=-1", BAD_QUERY},
    {"unix:///r.sock?db=65536", BAD_QUERY},
    {"unix:///r.sock?database=1", BAD_QUERY},
    {"unix:///r.sock?db=1&x=2", BAD_QUERY},
};

static void
test_refuses(void **state)
{
    (void)state;
    for (size_t i = 0; i < N(refusals); i++) {
        const struct bad *c = &refusals[i];
        bg_redis_url u;
        const char *why = NULL;
        int rc = bg_redis_url_parse(&u, c->url, &why);
        if (rc != BG_ECONFIG || why == NULL || strcmp(why, c->why) != 0) {
            print_error("%s: rc %d, \"%s\"; want \"%s\"\n", c->url, rc, why ? why : "(null)",
                        c->why);
            fail();
        }
        /* nothing to free after a refusal */
        assert_null(u.path);
        assert_null(u.host);
        assert_null(u.user);
        assert_null(u.password);
        why = NULL;
        assert_int_equal(bg_redis_url_parse(NULL, c->url, &why), BG_ECONFIG);
        assert_string_equal(why, c->why);
    }
}

/* Host names: up to 255 bytes (as written, brackets excluded). */
static void
test_host_length(void **state)
{
    (void)state;
    char url[400], host[300];
    const char *why;
    bg_redis_url u;
    memset(host, 'a', 255);
    host[255] = '\0';
    snprintf(url, sizeof(url), "redis://:pw@%s:6380/1", host);
    assert_int_equal(bg_redis_url_parse(&u, url, &why), 0);
    assert_string_equal(u.host, host);
    assert_int_equal(u.port, 6380);
    bg_redis_url_free(&u);
    snprintf(url, sizeof(url), "redis://%sa:6380/1", host);
    assert_int_equal(bg_redis_url_parse(&u, url, &why), BG_ECONFIG);
    assert_string_equal(why, "has a host that is too long");
}

/* Loads a configuration whose only key is redis.url = url (from t.yaml, line 2). Returns
 * bg_config_load's result; cfg is freed unless it is 0. */
static int
load_url(bg_config *cfg, const char *url, char *err, size_t errlen)
{
    char yaml[512];
    snprintf(yaml, sizeof(yaml), "redis:\n  url: '%s'\n", url);
    assert_int_equal(bg_config_init(cfg), 0);
    int rc = bg_config_load(cfg, yaml, strlen(yaml), "t.yaml", NULL, err, errlen);
    if (rc != 0)
        bg_config_free(cfg);
    return rc;
}

/* The configuration refuses what the parser refuses, naming the key and giving the same
 * reason, and never shows the password. Blanks are refused by the configuration alone. */
static void
test_config_agrees(void **state)
{
    (void)state;
    bg_config cfg;
    char err[512], want[256];
    for (size_t i = 0; i < N(refusals); i++) {
        int rc = load_url(&cfg, refusals[i].url, err, sizeof(err));
        snprintf(want, sizeof(want), "t.yaml:2: redis.url: %s", refusals[i].why);
        if (rc != BG_ECONFIG || strcmp(err, want) != 0) {
            print_error("%s: rc %d, \"%s\"; want \"%s\"\n", refusals[i].url, rc, err, want);
            fail();
        }
    }
    static const char *const blanks[] = {"redis://h x", "unix:///my state/redis.sock",
                                         "redis://:pass word@h"};
    for (size_t i = 0; i < N(blanks); i++) {
        assert_int_equal(load_url(&cfg, blanks[i], err, sizeof(err)), BG_ECONFIG);
        assert_string_equal(err, "t.yaml:2: redis.url: must not contain spaces");
        assert_null(strstr(err, "word"));
    }
    assert_int_equal(load_url(&cfg, "redis://u:p@ss@[::1]:6380/2", err, sizeof(err)), 0);
    assert_string_equal(cfg.redis.url, "redis://u:p@ss@[::1]:6380/2");
    bg_config_free(&cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_refuses),
        cmocka_unit_test(test_host_length),
        cmocka_unit_test(test_config_agrees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
