/*
 * The two clocks botgate reads, in one place: the wall clock for times that leave the
 * process (stream ids, records, log lines, an entry's received_at) and the monotonic clock
 * for durations measured inside it (the access log's step timings, the doctor's).
 */
#ifndef BOTGATE_CLOCK_H
#define BOTGATE_CLOCK_H

#include <stdint.h>

int64_t bg_wall_us(void); /* Unix time, µs */
int64_t bg_wall_ms(void); /* Unix time, ms */
int64_t bg_mono_us(void); /* CLOCK_MONOTONIC, µs: only differences mean anything */

#endif
