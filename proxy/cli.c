/*
 * The command lines' clock and age format (botgate/cli.h).
 */
#include "botgate/cli.h"
#include "botgate/clock.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

int64_t
bg_cli_wall_ms(void)
{
    return bg_wall_ms();
}

void
bg_cli_format_age(int64_t ms, char *out, size_t cap)
{
    int64_t s = ms > 0 ? ms / 1000 : 0;
    if (s < 60)
        snprintf(out, cap, "%" PRId64 "s", s);
    else if (s < 3600)
        snprintf(out, cap, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, cap, "%" PRId64 "h%02" PRId64 "m", s / 3600, s % 3600 / 60);
    else
        snprintf(out, cap, "%" PRId64 "d%02" PRId64 "h", s / 86400, s % 86400 / 3600);
}
