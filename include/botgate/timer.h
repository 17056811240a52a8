/*
 * A one-shot timer of any delay on h2o 2.2.5's event loop.
 *
 * h2o 2.2 has only h2o_timeout_t, a FIFO of entries that all share one fixed delay. A
 * timer of variable delay is therefore its own 0 ms queue holding a single entry whose
 * registration time is set into the future: the loop fires it once `now` reaches it.
 * Use a plain h2o_timeout_t instead when many entries share one delay (request
 * deadlines): that is cheaper.
 */
#ifndef BOTGATE_TIMER_H
#define BOTGATE_TIMER_H

#include <stdint.h>
#include <h2o.h>

typedef struct bg_timer bg_timer;
typedef void (*bg_timer_cb)(bg_timer *timer);

struct bg_timer {
    h2o_loop_t *loop;
    h2o_timeout_t queue;
    h2o_timeout_entry_t entry;
    bg_timer_cb cb;
    void *data;
};

void bg_timer_init(bg_timer *timer, h2o_loop_t *loop, bg_timer_cb cb, void *data);
/* (Re)arms the timer to fire once after delay_ms. */
void bg_timer_start(bg_timer *timer, uint64_t delay_ms);
void bg_timer_stop(bg_timer *timer);
int bg_timer_is_active(const bg_timer *timer);
/* Stops it and releases it from the loop; required before the loop is destroyed. */
void bg_timer_dispose(bg_timer *timer);

#endif
