/*
 * Delivery decisions: the outcome of every status class, the attempt limit, the back-off
 * schedule and its jitter bounds, Retry-After in both forms and in every way it can be
 * wrong, token expiry, and the routing of synchronous activities with their deadlines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "botgate/delivery.h"

/* The defaults of bot.*: 1 s doubling to 5 min, 10 attempts. */
static const bg_backoff defaults = {.initial_ms = 1000, .max_ms = 300000, .max_attempts = 10};

/* Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date, in Unix seconds. */
#define RFC_DATE_S INT64_C(784111777)

static bg_attempt_result
status(long s)
{
    return (bg_attempt_result){.transport_error = 0, .status = s};
}

static bg_attempt_result
with_retry_after(long s, const char *value)
{
    return (bg_attempt_result){
        .status = s, .retry_after = value, .retry_after_len = value != NULL ? strlen(value) : 0};
}

static bg_delivery_decision
decide(const bg_attempt_result *r, int attempt)
{
    return bg_delivery_decide(&defaults, attempt, r, 0.5, RFC_DATE_S);
}

/* Every 2xx is delivered, whatever the attempt count. */
static void
test_2xx_ack(void **state)
{
    (void)state;
    static const long ok[] = {200, 201, 202, 204, 206, 299};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        bg_attempt_result r = status(ok[i]);
        for (int attempt = 1; attempt <= 11; attempt += 5) {
            bg_delivery_decision d = decide(&r, attempt);
            assert_int_equal(d.action, BG_DELIVERY_ACK);
            assert_null(d.reason);
            assert_int_equal(d.delay_ms, 0);
        }
    }
}

/* 408, 429, every 5xx and no answer at all are retried, with a delay and no reason. */
static void
test_retryable(void **state)
{
    (void)state;
    static const long retry[] = {408, 429, 500, 501, 502, 503, 504, 507, 599};
    for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++) {
        bg_attempt_result r = status(retry[i]);
        bg_delivery_decision d = decide(&r, 1);
        if (d.action != BG_DELIVERY_RETRY)
            fail_msg("status %ld: action %d", retry[i], d.action);
        assert_null(d.reason);
        assert_true(d.delay_ms >= 500 && d.delay_ms < 1000);
    }
    /* Refused, reset, timeout, DNS, TLS: no status; whatever status field is left over. */
    bg_attempt_result r = {.transport_error = 1, .status = 0};
    assert_int_equal(decide(&r, 1).action, BG_DELIVERY_RETRY);
    r.status = 400; /* a stale value is not looked at */
    assert_int_equal(decide(&r, 1).action, BG_DELIVERY_RETRY);
    r.status = 200;
    assert_int_equal(decide(&r, 1).action, BG_DELIVERY_RETRY);
    /* No transport error but no status either: nothing said "refused", so retry. */
    bg_attempt_result zero = status(0);
    assert_int_equal(decide(&zero, 1).action, BG_DELIVERY_RETRY);
    bg_attempt_result negative = status(-1);
    assert_int_equal(decide(&negative, 1).action, BG_DELIVERY_RETRY);
}

/* Other 4xx, 1xx and 3xx are dead at once with reason http_4xx, on any attempt. */
static void
test_dead_status(void **state)
{
    (void)state;
    static const long dead[] = {400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 499,
                                100, 101, 199, 300, 301, 302, 304, 307, 308, 600, 999};
    for (size_t i = 0; i < sizeof(dead) / sizeof(dead[0]); i++) {
        bg_attempt_result r = status(dead[i]);
        for (int attempt = 1; attempt <= 10; attempt += 9) {
            bg_delivery_decision d = decide(&r, attempt);
            if (d.action != BG_DELIVERY_DEAD)
                fail_msg("status %ld attempt %d: action %d", dead[i], attempt, d.action);
            assert_string_equal(d.reason, BG_DEAD_STATUS);
            assert_string_equal(d.reason, "http_4xx");
        }
    }
}

/* Retryable outcomes are retried up to max_attempts, then dead with max_attempts. */
static void
test_attempt_limit(void **state)
{
    (void)state;
    bg_attempt_result r = status(500);
    for (int attempt = 1; attempt < 10; attempt++)
        assert_int_equal(decide(&r, attempt).action, BG_DELIVERY_RETRY);
    bg_delivery_decision d = decide(&r, 10);
    assert_int_equal(d.action, BG_DELIVERY_DEAD);
    assert_string_equal(d.reason, BG_DEAD_ATTEMPTS);
    assert_string_equal(d.reason, "max_attempts");
    assert_int_equal(d.delay_ms, 0);
    d = decide(&r, 11); /* past the limit (max_attempts lowered since) */
    assert_int_equal(d.action, BG_DELIVERY_DEAD);
    assert_string_equal(d.reason, BG_DEAD_ATTEMPTS);

    bg_attempt_result down = {.transport_error = 1};
    assert_string_equal(decide(&down, 10).reason, BG_DEAD_ATTEMPTS);
    /* A 2xx on the last attempt is still a delivery; a 4xx is still http_4xx. */
    bg_attempt_result ok = status(200);
    assert_int_equal(decide(&ok, 10).action, BG_DELIVERY_ACK);
    bg_attempt_result bad = status(400);
    assert_string_equal(decide(&bad, 10).reason, BG_DEAD_STATUS);

    /* max_attempts 1: the first failure is the last. */
    bg_backoff once = {.initial_ms = 1000, .max_ms = 300000, .max_attempts = 1};
    d = bg_delivery_decide(&once, 1, &r, 0.0, 0);
    assert_int_equal(d.action, BG_DELIVERY_DEAD);
    assert_string_equal(d.reason, BG_DEAD_ATTEMPTS);
    /* The bound of bot.max_attempts: 1000. */
    bg_backoff many = {.initial_ms = 1000, .max_ms = 300000, .max_attempts = 1000};
    assert_int_equal(bg_delivery_decide(&many, 999, &r, 0.0, 0).action, BG_DELIVERY_RETRY);
    assert_int_equal(bg_delivery_decide(&many, 1000, &r, 0.0, 0).action, BG_DELIVERY_DEAD);
}

/* The schedule with the defaults: base 1, 2, 4, ... 256 s, then 300 s (the cap); with
 * random01 0 the delay is base/2, with 0.999 just under base. */
static void
test_backoff_sequence(void **state)
{
    (void)state;
    bg_backoff b = {.initial_ms = 1000, .max_ms = 300000, .max_attempts = 1000};
    bg_attempt_result r = status(503);
    static const int64_t base[] = {1000,  2000,   4000,   8000,   16000, 32000,
                                   64000, 128000, 256000, 300000, 300000};
    for (int attempt = 1; attempt <= (int)(sizeof(base) / sizeof(base[0])); attempt++) {
        int64_t want = base[attempt - 1];
        bg_delivery_decision lo = bg_delivery_decide(&b, attempt, &r, 0.0, 0);
        bg_delivery_decision hi = bg_delivery_decide(&b, attempt, &r, 0.999, 0);
        assert_int_equal(lo.action, BG_DELIVERY_RETRY);
        assert_int_equal(lo.delay_ms, want / 2);
        assert_true(hi.delay_ms < want);
        assert_true(hi.delay_ms >= want - want / 1000 - 1);
        assert_true(hi.delay_ms > lo.delay_ms);
    }
    assert_int_equal(bg_delivery_decide(&b, 1, &r, 0.999, 0).delay_ms, 999);
    assert_int_equal(bg_delivery_decide(&b, 10, &r, 0.999, 0).delay_ms, 299850);
    assert_int_equal(bg_delivery_decide(&b, 2, &r, 0.5, 0).delay_ms, 1500);

    /* Huge attempt numbers stay at the cap: no overflow of 2^(attempt-1). */
    static const int big[] = {31, 32, 33, 63, 64, 65, 500, 999, 1000 - 1};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        bg_delivery_decision d = bg_delivery_decide(&b, big[i], &r, 0.0, 0);
        assert_int_equal(d.action, BG_DELIVERY_RETRY);
        assert_int_equal(d.delay_ms, 150000);
    }
    bg_backoff unbounded = {.initial_ms = 3600000, .max_ms = 86400000, .max_attempts = 2000000};
    assert_int_equal(bg_delivery_decide(&unbounded, 1999999, &r, 0.999, 0).delay_ms / 1000,
                     86356); /* just under 86400 s */

    /* A cap below the initial delay wins; attempt 0 or negative counts as the first. */
    bg_backoff capped = {.initial_ms = 1000, .max_ms = 300, .max_attempts = 10};
    assert_int_equal(bg_delivery_decide(&capped, 1, &r, 0.0, 0).delay_ms, 150);
    assert_int_equal(bg_delivery_decide(&b, 0, &r, 0.0, 0).delay_ms, 500);
    assert_int_equal(bg_delivery_decide(&b, -5, &r, 0.0, 0).delay_ms, 500);

    /* random01 outside [0,1) is pulled back in: never past base, never below base/2. */
    assert_int_equal(bg_delivery_decide(&b, 1, &r, -1.0, 0).delay_ms, 500);
    assert_int_equal(bg_delivery_decide(&b, 1, &r, NAN, 0).delay_ms, 500);
    assert_true(bg_delivery_decide(&b, 1, &r, 1.0, 0).delay_ms < 1000);
    assert_true(bg_delivery_decide(&b, 1, &r, 7.0, 0).delay_ms < 1000);
    assert_true(bg_delivery_decide(&b, 1, &r, INFINITY, 0).delay_ms < 1000);
}

/* Retry-After as delta-seconds on 429 and 503: replaces the back-off when larger, capped
 * at max_ms; smaller values leave the back-off alone. */
static void
test_retry_after_seconds(void **state)
{
    (void)state;
    bg_attempt_result r = with_retry_after(429, "120");
    bg_delivery_decision d = bg_delivery_decide(&defaults, 1, &r, 0.0, 0);
    assert_int_equal(d.action, BG_DELIVERY_RETRY);
    assert_int_equal(d.delay_ms, 120000);
    r = with_retry_after(503, "120");
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, 0).delay_ms, 120000);
    /* Smaller than the back-off: the back-off stands (0 included). */
    r = with_retry_after(503, "0");
    assert_int_equal(bg_delivery_decide(&defaults, 3, &r, 0.0, 0).delay_ms, 2000);
    r = with_retry_after(429, "1");
    assert_int_equal(bg_delivery_decide(&defaults, 3, &r, 0.0, 0).delay_ms, 2000);
    /* Optional whitespace around the value, leading zeros. */
    r = with_retry_after(429, " \t 007 ");
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, 0).delay_ms, 7000);
    /* The cap: an hour, a huge number, more digits than any integer holds. */
    r = with_retry_after(429, "3600");
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, 0).delay_ms, 300000);
    r = with_retry_after(429, "9223372036854775807");
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, 0).delay_ms, 300000);
    r = with_retry_after(429, "99999999999999999999999999999999999999999999999999999999999999");
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, 0).delay_ms, 300000);
    /* Only 429 and 503 carry a Retry-After worth obeying. */
    static const long others[] = {408, 500, 502, 504};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        r = with_retry_after(others[i], "120");
        assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, 0).delay_ms, 500);
    }
    /* Out of attempts, Retry-After or not. */
    r = with_retry_after(429, "120");
    assert_int_equal(bg_delivery_decide(&defaults, 10, &r, 0.0, 0).action, BG_DELIVERY_DEAD);
    /* The length is what counts, not a NUL terminator: "12" of "1200". */
    r = (bg_attempt_result){.status = 429, .retry_after = "1200", .retry_after_len = 2};
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, 0).delay_ms, 12000);
}

/* Retry-After as an IMF-fixdate, relative to now_s. */
static void
test_retry_after_date(void **state)
{
    (void)state;
    const char *date = "Sun, 06 Nov 1994 08:49:37 GMT";
    bg_attempt_result r = with_retry_after(503, date);
    /* 90 s before the date. */
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, RFC_DATE_S - 90).delay_ms, 90000);
    /* At or past the date: nothing to wait for beyond the back-off. */
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, RFC_DATE_S).delay_ms, 500);
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, RFC_DATE_S + 3600).delay_ms, 500);
    /* Far ahead: capped. */
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, 0).delay_ms, 300000);
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, INT64_MIN).delay_ms, 300000);
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, INT64_MAX).delay_ms, 500);

    static const struct {
        const char *date;
        int64_t unix_s;
    } dates[] = {
        {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
        {"Sun, 06 Nov 1994 08:49:37 GMT", RFC_DATE_S},
        {"Tue, 29 Feb 2000 12:00:00 GMT", 951825600},  /* leap year (divisible by 400) */
        {"Thu, 29 Feb 2024 23:59:59 GMT", 1709251199}, /* leap year */
        {"Fri, 31 Dec 2038 23:59:59 GMT", 2177452799}, /* past 2^31 */
        {"Fri, 31 Dec 9999 23:59:59 GMT", INT64_C(253402300799)},
        {"Sat, 31 Dec 2016 23:59:60 GMT", 1483228800}, /* a leap second */
        {"Mon, 06 Nov 1994 08:49:37 GMT", RFC_DATE_S}, /* day name not checked */
    };
    for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
        r = with_retry_after(429, dates[i].date);
        /* now 100 s before the date: asks for 100 s. */
        bg_delivery_decision d = bg_delivery_decide(&defaults, 1, &r, 0.0, dates[i].unix_s - 100);
        if (d.delay_ms != 100000)
            fail_msg("%s: delay %lld", dates[i].date, (long long)d.delay_ms);
    }
}

/* Anything that is neither form is ignored: the back-off applies. */
static void
test_retry_after_garbage(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "   ",
        "-5",
        "+5",
        "1.5",
        "5s",
        "5 5",
        "0x10",
        "1e3",
        "soon",
        "sun, 06 Nov 1994 08:49:37 GMT", /* names are case-sensitive */
        "Sun, 06 nov 1994 08:49:37 GMT", /* ... */
        "Sun, 06 Nov 1994 08:49:37 gmt", /* ... */
        "Sun, 06 Nov 1994 08:49:37 UTC", /* only GMT */
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 6 Nov 1994 08:49:37 GMT", /* two-digit day */
        "Sun, 06 Nov 94 08:49:37 GMT",  /* four-digit year */
        "Sun,06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT", /* hour */
        "Sun, 06 Nov 1994 08:60:00 GMT", /* minute */
        "Sun, 06 Nov 1994 08:49:61 GMT", /* second */
        "Sun, 31 Nov 1994 08:49:37 GMT", /* no 31 November */
        "Sun, 29 Feb 1900 08:49:37 GMT", /* 1900 is no leap year */
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",  /* not a day name */
        "Sun, 06 Nov 1994 08:49:37 GMTX", /* trailing byte */
        "Sunday, 06-Nov-94 08:49:37 GMT", /* RFC 850: obsolete, not accepted */
        "Sun Nov  6 08:49:37 1994",       /* asctime: obsolete, not accepted */
        "Sun, 06 Nov 1994 0a:49:37 GMT",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bg_attempt_result r = with_retry_after(429, bad[i]);
        bg_delivery_decision d = bg_delivery_decide(&defaults, 1, &r, 0.0, 0);
        if (d.action != BG_DELIVERY_RETRY || d.delay_ms != 500)
            fail_msg("Retry-After \"%s\": action %d delay %lld", bad[i], d.action,
                     (long long)d.delay_ms);
    }
    /* NUL bytes inside the value; a NULL value with a length. */
    bg_attempt_result r = {.status = 429,
                           .retry_after = "12\0"
                                          "0",
                           .retry_after_len = 4};
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, 0).delay_ms, 500);
    r = (bg_attempt_result){.status = 429, .retry_after = NULL, .retry_after_len = 10};
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, 0).delay_ms, 500);
    /* A date with one byte too many or too few, read by length. */
    const char *date = "Sun, 06 Nov 1994 08:49:37 GMT";
    r = (bg_attempt_result){.status = 429, .retry_after = date, .retry_after_len = 28};
    assert_int_equal(bg_delivery_decide(&defaults, 1, &r, 0.0, 0).delay_ms, 500);
}

/* Expiry: at exp the token is dead (a JWT is valid strictly before exp); 0 = no token. */
static void
test_token_expiry(void **state)
{
    (void)state;
    assert_int_equal(bg_delivery_token_expired(1000, 999), 0);
    assert_int_equal(bg_delivery_token_expired(1000, 1000), 1);
    assert_int_equal(bg_delivery_token_expired(1000, 1001), 1);
    assert_int_equal(bg_delivery_token_expired(1000, INT64_MIN), 0);
    assert_int_equal(bg_delivery_token_expired(1000, INT64_MAX), 1);
    assert_int_equal(bg_delivery_token_expired(0, 0), 0);
    assert_int_equal(bg_delivery_token_expired(0, INT64_MAX), 0);
    assert_int_equal(bg_delivery_token_expired(INT64_MAX, INT64_MAX - 1), 0);
    assert_int_equal(bg_delivery_token_expired(1715678467, 1715678466), 0);
    assert_int_equal(bg_delivery_token_expired(1715678467, 1715678467), 1);
}

/* Synchronous routing: the type is one of sync_types, or deliveryMode is expectReplies;
 * both compared exactly, as the SDK compares them. */
static void
test_is_sync(void **state)
{
    (void)state;
    char invoke[] = "invoke";
    char *defaults_types[] = {invoke};
    assert_int_equal(bg_delivery_is_sync("invoke", NULL, defaults_types, 1), 1);
    assert_int_equal(bg_delivery_is_sync("message", NULL, defaults_types, 1), 0);
    assert_int_equal(bg_delivery_is_sync("event", "normal", defaults_types, 1), 0);
    assert_int_equal(bg_delivery_is_sync("message", "expectReplies", defaults_types, 1), 1);
    assert_int_equal(bg_delivery_is_sync("message", "expectReplies", NULL, 0), 1);
    /* Case and exactness: the SDK's === / == on strings. */
    assert_int_equal(bg_delivery_is_sync("Invoke", NULL, defaults_types, 1), 0);
    assert_int_equal(bg_delivery_is_sync("INVOKE", NULL, defaults_types, 1), 0);
    assert_int_equal(bg_delivery_is_sync("invoke ", NULL, defaults_types, 1), 0);
    assert_int_equal(bg_delivery_is_sync("invok", NULL, defaults_types, 1), 0);
    assert_int_equal(bg_delivery_is_sync("invokeX", NULL, defaults_types, 1), 0);
    assert_int_equal(bg_delivery_is_sync("message", "ExpectReplies", defaults_types, 1), 0);
    assert_int_equal(bg_delivery_is_sync("message", "expectreplies", defaults_types, 1), 0);
    assert_int_equal(bg_delivery_is_sync("message", "expectReplies ", defaults_types, 1), 0);
    assert_int_equal(bg_delivery_is_sync("message", "", defaults_types, 1), 0);
    /* No sync types configured: only expectReplies is synchronous. */
    assert_int_equal(bg_delivery_is_sync("invoke", NULL, NULL, 0), 0);
    assert_int_equal(bg_delivery_is_sync("invoke", NULL, defaults_types, 0), 0);
    /* Several types, and a NULL slot, are fine. */
    char event[] = "event";
    char *several[] = {event, NULL, invoke};
    assert_int_equal(bg_delivery_is_sync("invoke", NULL, several, 3), 1);
    assert_int_equal(bg_delivery_is_sync("event", NULL, several, 3), 1);
    assert_int_equal(bg_delivery_is_sync("message", NULL, several, 3), 0);
    /* A NULL type is never synchronous by type (the contract forbids it; no crash). */
    assert_int_equal(bg_delivery_is_sync(NULL, NULL, several, 3), 0);
}

/* The deadline: composeExtension/... invokes get compose_ms, everything else default_ms. */
static void
test_sync_deadline(void **state)
{
    (void)state;
    static const char *const compose[] = {
        "composeExtension/query",     "composeExtension/submitAction", "composeExtension/fetchTask",
        "composeExtension/queryLink", "composeExtension/selectItem",   "composeExtension/",
    };
    for (size_t i = 0; i < sizeof(compose) / sizeof(compose[0]); i++)
        assert_int_equal(bg_delivery_sync_deadline_ms("invoke", compose[i], 12000, 4500), 4500);
    static const char *const other[] = {
        "composeExtensionX",       /* no slash: another name */
        "composeExtension",        /* ... */
        "ComposeExtension/query",  /* exact case */
        "composeextension/query",  /* ... */
        " composeExtension/query", /* prefix, not substring */
        "task/fetch",              /* task modules: the default */
        "adaptiveCard/action",     /* ... */
        "signin/verifyState",      /* ... */
        "",
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        assert_int_equal(bg_delivery_sync_deadline_ms("invoke", other[i], 12000, 4500), 12000);
    /* No name. */
    assert_int_equal(bg_delivery_sync_deadline_ms("invoke", NULL, 12000, 4500), 12000);
    /* The right name on another type (an expectReplies message, an event): the default. */
    assert_int_equal(bg_delivery_sync_deadline_ms("message", "composeExtension/query", 12000, 4500),
                     12000);
    assert_int_equal(bg_delivery_sync_deadline_ms("event", "composeExtension/query", 12000, 4500),
                     12000);
    assert_int_equal(bg_delivery_sync_deadline_ms("Invoke", "composeExtension/query", 12000, 4500),
                     12000);
    assert_int_equal(bg_delivery_sync_deadline_ms(NULL, "composeExtension/query", 12000, 4500),
                     12000);
    /* The configured values pass through. */
    assert_int_equal(bg_delivery_sync_deadline_ms("invoke", "composeExtension/query", 9000, 100),
                     100);
    assert_int_equal(bg_delivery_sync_deadline_ms("invoke", "task/fetch", 9000, 100), 9000);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_2xx_ack),          cmocka_unit_test(test_retryable),
        cmocka_unit_test(test_dead_status),      cmocka_unit_test(test_attempt_limit),
        cmocka_unit_test(test_backoff_sequence), cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_date), cmocka_unit_test(test_retry_after_garbage),
        cmocka_unit_test(test_token_expiry),     cmocka_unit_test(test_is_sync),
        cmocka_unit_test(test_sync_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
