#include "botgate/timer.h"

static void
on_timeout(h2o_timeout_entry_t *entry)
{
    bg_timer *timer = H2O_STRUCT_FROM_MEMBER(bg_timer, entry, entry);
    timer->cb(timer);
}

void
bg_timer_init(bg_timer *timer, h2o_loop_t *loop, bg_timer_cb cb, void *data)
{
    timer->loop = loop;
    timer->cb = cb;
    timer->data = data;
    timer->entry = (h2o_timeout_entry_t){0, on_timeout, {NULL, NULL}};
    h2o_timeout_init(loop, &timer->queue, 0);
}

void
bg_timer_start(bg_timer *timer, uint64_t delay_ms)
{
    bg_timer_stop(timer);
    h2o_timeout_link(timer->loop, &timer->queue, &timer->entry);
    /* The queue's delay is 0: moving the registration time forward delays the firing. */
    timer->entry.registered_at += delay_ms;
}

void
bg_timer_stop(bg_timer *timer)
{
    if (h2o_timeout_is_linked(&timer->entry))
        h2o_timeout_unlink(&timer->entry);
}

int
bg_timer_is_active(const bg_timer *timer)
{
    return h2o_timeout_is_linked((h2o_timeout_entry_t *)&timer->entry);
}

void
bg_timer_dispose(bg_timer *timer)
{
    bg_timer_stop(timer);
    h2o_timeout_dispose(timer->loop, &timer->queue);
}
