/*
 * The private redis-server: what botgate starts beside itself when redis.url is empty,
 * so that `make run` needs nothing configured. It listens only on a unix socket
 * (<state_dir>/redis/redis.sock, mode 0700), keeps its data in <state_dir>/redis with
 * appendonly yes and appendfsync always (botgate's pipelining makes that a group
 * commit), and is stopped with botgate — or by the kernel (PR_SET_PDEATHSIG) if botgate
 * dies without stopping it.
 */
#ifndef BOTGATE_PRIVATE_REDIS_H
#define BOTGATE_PRIVATE_REDIS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct bg_private_redis {
    pid_t pid;
    char url[4200]; /* unix:///.../redis.sock */
    char dir[200];
} bg_private_redis;

/*
 * Writes <state_dir>/redis/redis.sock, the private redis's socket, into out (cap bytes;
 * out may be NULL when cap is 0). Returns the path's length, as snprintf: cap is too small
 * when the result is >= cap. `botgate serve` calls it with state_dir made absolute,
 * `botgate dlq` with state_dir as configured.
 */
size_t bg_private_redis_socket_path(const char *state_dir, char *out, size_t cap);
/* Starts redis-server and waits (start-up only, at most 10 s) until its socket accepts.
 * Returns 0, or BG_EIO with the reason in err. */
int bg_private_redis_start(bg_private_redis *pr, const char *state_dir, char *err, size_t errlen);
/* SIGTERM (Redis then writes and syncs its AOF), waits up to 10 s, then SIGKILL. */
void bg_private_redis_stop(bg_private_redis *pr);

#endif
