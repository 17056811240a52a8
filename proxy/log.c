#include "botgate/log.h"
#include "botgate/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static bg_log_level min_level = BG_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int
bg_log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            min_level = (bg_log_level)i;
            return 0;
        }
    }
    return BG_EINVAL;
}

bg_log_level
bg_log_get_level(void)
{
    return min_level;
}

/*
 * Formats the whole line first and writes it with one fputs on an unbuffered stderr, so
 * that lines from botgate and its private redis-server do not interleave mid-line. The
 * lines are short and rare (nothing per request), so the cost does not matter.
 */
void
bg_log(bg_log_level level, const char *module, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char line[1024];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), level_names[level], module);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n] = '\n';
    line[n + 1] = '\0';
    fputs(line, stderr);
}
