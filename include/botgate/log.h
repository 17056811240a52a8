/*
 * The operational log: one line per event on stderr, "TIME LEVEL module: message".
 *
 * This is the log for operators (start-up, Redis going away, configuration warnings),
 * not the access log. It never carries a token, a secret or a message body: callers pass
 * names and reasons, not request bytes.
 */
#ifndef BOTGATE_LOG_H
#define BOTGATE_LOG_H

typedef enum bg_log_level {
    BG_LOG_DEBUG = 0,
    BG_LOG_INFO = 1,
    BG_LOG_WARN = 2,
    BG_LOG_ERROR = 3,
} bg_log_level;

/* Sets the lowest level written; "debug", "info", "warn" or "error". Returns 0 or BG_EINVAL. */
int bg_log_set_level(const char *name);
bg_log_level bg_log_get_level(void);

void bg_log(bg_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define bg_log_debug(module, ...) bg_log(BG_LOG_DEBUG, module, __VA_ARGS__)
#define bg_log_info(module, ...) bg_log(BG_LOG_INFO, module, __VA_ARGS__)
#define bg_log_warn(module, ...) bg_log(BG_LOG_WARN, module, __VA_ARGS__)
#define bg_log_error(module, ...) bg_log(BG_LOG_ERROR, module, __VA_ARGS__)

#endif
