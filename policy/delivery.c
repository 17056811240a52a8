/*
 * Delivery decisions (delivery.h): the rule after each attempt, the back-off schedule,
 * Retry-After, and synchronous routing. Pure: the time and a random number in [0,1) are
 * parameters, so the dispatcher's whole retry behaviour is unit-tested here.
 *
 * The shape of the rule, and why:
 *
 *   2xx                       ACK    the bot has it
 *   408 429 5xx, no answer    RETRY  the bot (or the way to it) is busy or down; the same
 *                                    bytes may succeed later. Out of attempts: DEAD.
 *   anything else             DEAD   a 4xx says the bot will refuse these bytes whenever
 *                                    they come; a 3xx would send them somewhere else, and
 *                                    botgate never follows redirects with a bearer token.
 *
 * Every number here is bounded by int64 arithmetic that cannot overflow for any input
 * (attempt up to INT_MAX, a Retry-After of a hundred digits, a date in year 9999).
 */
#include "botgate/delivery.h"

#include <stdbool.h>
#include <string.h>

/* Enough to hold any bot.backoff_max_ms (at most 86400000) times a few: parsed values past
 * this are "huge" and end up capped at max_ms anyway, so we stop accumulating digits. */
#define RETRY_AFTER_SATURATE_S ((int64_t)1 << 40)

/* 1 for the statuses worth the same bytes again: 408 Request Timeout, 429 Too Many
 * Requests, and every 5xx. */
static bool
status_is_retryable(long status)
{
    return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

/*
 * min(max_ms, initial_ms * 2^(attempt-1)), without overflow: doubling stops as soon as the
 * cap is reached, so the loop runs at most ~32 times whatever attempt is. A non-positive
 * initial_ms gives 0 (retry at once), a non-positive max_ms as well.
 */
static int64_t
backoff_base_ms(const bg_backoff *b, int attempt)
{
    int64_t max = b->max_ms > 0 ? b->max_ms : 0;
    int64_t base = b->initial_ms > 0 ? b->initial_ms : 0;
    for (int i = 1; i < attempt && base > 0 && base < max; i++)
        base *= 2; /* base < max <= INT_MAX before the doubling: no overflow */
    return base < max ? base : max;
}

/*
 * Spreads retries of many entries that failed together (the bot restarted) over
 * [base/2, base): base/2 + random01 * (base - base/2). random01 outside [0,1) (NaN
 * included) is pulled back in, so a bad generator cannot produce a delay past base.
 */
static int64_t
jitter_ms(int64_t base, double random01)
{
    if (!(random01 >= 0.0)) /* NaN and negatives */
        random01 = 0.0;
    if (random01 >= 1.0)
        random01 = 0.999999;
    int64_t half = base / 2;
    return half + (int64_t)(random01 * (double)(base - half));
}

/* Skips optional whitespace (SP, HTAB) at both ends of [*p, *end). */
static void
trim_ows(const char **p, const char **end)
{
    while (*p < *end && (**p == ' ' || **p == '\t'))
        (*p)++;
    while (*end > *p && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
        (*end)--;
}

/* Reads exactly n ASCII digits at s as a number. Returns -1 when one is not a digit. */
static int
read_digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Index (0..6 or 0..11) of the three letters at s in names, exact case; -1 when absent.
 * HTTP-date names are case-sensitive (RFC 9110, section 5.6.7). */
static int
find_name(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (memcmp(s, names[i], 3) == 0)
            return i;
    return -1;
}

/*
 * Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard Hinnant's
 * days_from_civil): no timegm(), which reads the TZ environment and is not pure.
 */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* 1 when d is a day of month m (1..12) of year y. */
static bool
valid_day(int y, int m, int d)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int last = days[m - 1] + (m == 2 && leap);
    return d >= 1 && d <= last;
}

/*
 * Parses an IMF-fixdate, the HTTP date every current server sends (RFC 9110, 5.6.7):
 *
 *   Sun, 06 Nov 1994 08:49:37 GMT
 *   0123456789012345678901234567 8   (29 bytes, fixed positions)
 *
 * into Unix seconds. Done by hand rather than with strptime(), whose month and day names
 * follow the locale. The two obsolete forms (RFC 850, asctime) are not accepted: no
 * current server sends them, and an unreadable Retry-After only means our own back-off
 * applies. The day name must be a day name but is not checked against the date, as most
 * HTTP stacks do. Second 60 (a leap second) is accepted. Returns 0 and *out, or -1.
 */
static int
parse_imf_fixdate(const char *s, size_t len, int64_t *out)
{
    static const char *const wkday[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const month[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (len != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || s[25] != ' ' || memcmp(s + 26, "GMT", 3) != 0)
        return -1;
    if (find_name(s, wkday, 7) < 0)
        return -1;
    int mon = find_name(s + 8, month, 12);
    int day = read_digits(s + 5, 2);
    int year = read_digits(s + 12, 4);
    int hour = read_digits(s + 17, 2);
    int min = read_digits(s + 20, 2);
    int sec = read_digits(s + 23, 2);
    if (mon < 0 || day < 0 || year < 0 || hour < 0 || min < 0 || sec < 0)
        return -1;
    if (!valid_day(year, mon + 1, day) || hour > 23 || min > 59 || sec > 60)
        return -1;
    *out = days_from_civil(year, mon + 1, day) * 86400 + hour * 3600 + min * 60 + sec;
    return 0;
}

/*
 * The wait a Retry-After value asks for, in ms: delta-seconds (1*DIGIT) or an IMF-fixdate
 * relative to now_s (a date in the past asks for 0). Surrounding whitespace is allowed.
 * Returns -1 for anything else (empty, signed, fractional, garbage, NUL bytes): such a
 * header is ignored, as RFC 9110 lets a recipient do. Values too large to matter saturate,
 * since the caller caps them at backoff_max_ms.
 */
static int64_t
retry_after_ms(const char *v, size_t len, int64_t now_s)
{
    if (v == NULL)
        return -1;
    const char *p = v, *end = v + len;
    trim_ows(&p, &end);
    if (p == end)
        return -1;
    if (*p >= '0' && *p <= '9') {
        int64_t s = 0;
        for (const char *q = p; q < end; q++) {
            if (*q < '0' || *q > '9')
                return -1;
            if (s < RETRY_AFTER_SATURATE_S)
                s = s * 10 + (*q - '0');
        }
        return (s < RETRY_AFTER_SATURATE_S ? s : RETRY_AFTER_SATURATE_S) * 1000;
    }
    int64_t at;
    if (parse_imf_fixdate(p, (size_t)(end - p), &at) != 0)
        return -1;
    /* |at| < 2^38 and now_s is any int64: compare before subtracting. */
    if (at <= now_s)
        return 0;
    if (now_s < at - RETRY_AFTER_SATURATE_S)
        return RETRY_AFTER_SATURATE_S * 1000;
    return (at - now_s) * 1000;
}

/*
 * The rule after one attempt (delivery.h). The attempt limit is checked only for
 * retryable outcomes: a 4xx is dead at once whatever the count. A status of 0 (or less)
 * without transport_error counts as no answer: nothing came back that could say the bot
 * refuses the bytes, so they are retried rather than dead-lettered.
 */
bg_delivery_decision
bg_delivery_decide(const bg_backoff *b, int attempt, const bg_attempt_result *r, double random01,
                   int64_t now_s)
{
    bg_delivery_decision d = {.action = BG_DELIVERY_ACK, .delay_ms = 0, .reason = NULL};
    bool no_answer = r->transport_error || r->status <= 0;
    if (!no_answer && r->status >= 200 && r->status <= 299)
        return d;
    if (!no_answer && !status_is_retryable(r->status)) {
        d.action = BG_DELIVERY_DEAD;
        d.reason = BG_DEAD_STATUS;
        return d;
    }
    if (attempt < 1)
        attempt = 1;
    if (attempt >= b->max_attempts) {
        d.action = BG_DELIVERY_DEAD;
        d.reason = BG_DEAD_ATTEMPTS;
        return d;
    }
    d.action = BG_DELIVERY_RETRY;
    d.delay_ms = jitter_ms(backoff_base_ms(b, attempt), random01);
    if (!no_answer && (r->status == 429 || r->status == 503)) {
        int64_t asked = retry_after_ms(r->retry_after, r->retry_after_len, now_s);
        int64_t max = b->max_ms > 0 ? b->max_ms : 0;
        if (asked > max)
            asked = max;
        if (asked > d.delay_ms)
            d.delay_ms = asked;
    }
    return d;
}

/*
 * Expired when now_s has reached exp (a JWT is valid only before its exp). 0 means the
 * entry carries no token (authentication off) and never expires. The bot's SDK allows 5
 * minutes of clock skew; a caller that wants to match it passes now_s minus the skew.
 */
int
bg_delivery_token_expired(int64_t token_exp, int64_t now_s)
{
    return token_exp != 0 && now_s >= token_exp;
}

/*
 * Synchronous when the type is one of sync_types or deliveryMode is "expectReplies".
 * Both are exact, case-sensitive comparisons, as the Bot Framework SDKs make them
 * (`activity.type === ActivityTypes.Invoke`, `activity.DeliveryMode ==
 * DeliveryModes.ExpectReplies`): an "Invoke" the bot would not treat as an invoke must
 * not be treated as one here, or the channel would wait for a body the bot never sends.
 */
int
bg_delivery_is_sync(const char *type, const char *delivery_mode, char *const *sync_types,
                    size_t n_sync_types)
{
    if (delivery_mode != NULL && strcmp(delivery_mode, "expectReplies") == 0)
        return 1;
    if (type == NULL || sync_types == NULL)
        return 0;
    for (size_t i = 0; i < n_sync_types; i++)
        if (sync_types[i] != NULL && strcmp(type, sync_types[i]) == 0)
            return 1;
    return 0;
}

/*
 * compose_ms for an invoke named "composeExtension/<anything>" (query, submitAction,
 * fetchTask, queryLink, selectItem, ...: Teams waits 5 s for each), else default_ms.
 * Exact case, like the SDK's routing of invoke names.
 */
int
bg_delivery_sync_deadline_ms(const char *type, const char *name, int default_ms, int compose_ms)
{
    static const char prefix[] = "composeExtension/";
    if (type != NULL && strcmp(type, "invoke") == 0 && name != NULL &&
        strncmp(name, prefix, sizeof(prefix) - 1) == 0)
        return compose_ms;
    return default_ms;
}
