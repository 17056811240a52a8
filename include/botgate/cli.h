/*
 * What the command lines that read Redis (`botgate dlq`, `botgate failures`) share
 * besides the session (botgate/redis_sync.h): the clock their ages are measured with, and
 * how an age is shown to an operator.
 */
#ifndef BOTGATE_CLI_H
#define BOTGATE_CLI_H

#include <stddef.h>
#include <stdint.h>

/* The wall clock in Unix ms: ages are measured against timestamps and stream IDs, which
 * the dispatcher and Redis stamp with the same kind of clock. */
int64_t bg_cli_wall_ms(void);

/* "12s", "3m12s", "2h05m", "4d03h": two units at most, enough to tell "just now" from
 * "since the weekend". A negative age (clocks apart) reads "0s". */
void bg_cli_format_age(int64_t ms, char *out, size_t cap);

#endif
