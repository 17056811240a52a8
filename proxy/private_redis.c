#include "botgate/private_redis.h"
#include "botgate/error.h"
#include "botgate/log.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int
socket_answers(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path); /* the caller checked it fits */
    memcpy(sa.sun_path, path, n < sizeof(sa.sun_path) ? n : sizeof(sa.sun_path) - 1);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* <state_dir>/PRIVATE_REDIS_DIR holds the data, the log and the socket. */
#define PRIVATE_REDIS_DIR "redis"
#define PRIVATE_REDIS_SOCK "redis.sock"

size_t
bg_private_redis_socket_path(const char *state_dir, char *out, size_t cap)
{
    return (size_t)snprintf(out, cap, "%s/" PRIVATE_REDIS_DIR "/" PRIVATE_REDIS_SOCK, state_dir);
}

int
bg_private_redis_start(bg_private_redis *pr, const char *state_dir, char *err, size_t errlen)
{
    char base[PATH_MAX], sock[PATH_MAX];
    memset(pr, 0, sizeof(*pr));
    if (mkdir(state_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "state_dir: cannot create %s: %s", state_dir, strerror(errno));
        return BG_EIO;
    }
    if (realpath(state_dir, base) == NULL) {
        snprintf(err, errlen, "state_dir: %s: %s", state_dir, strerror(errno));
        return BG_EIO;
    }
    if ((size_t)snprintf(pr->dir, sizeof(pr->dir), "%s/" PRIVATE_REDIS_DIR, base) >=
            sizeof(pr->dir) ||
        bg_private_redis_socket_path(base, sock, sizeof(sock)) >=
            sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(err, errlen, "state_dir: %s is too long for a unix socket path", base);
        return BG_EIO;
    }
    if (mkdir(pr->dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "state_dir: cannot create %s: %s", pr->dir, strerror(errno));
        return BG_EIO;
    }
    snprintf(pr->url, sizeof(pr->url), "unix://%s", sock);
    unlink(sock); /* a stale socket of a botgate killed with its Redis */

    char logfile[PATH_MAX];
    snprintf(logfile, sizeof(logfile), "%s/redis.log", pr->dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "redis.url: cannot start redis-server: %s", strerror(errno));
        return BG_EIO;
    }
    if (pid == 0) {
        /* Its own process group: a terminal's Ctrl-C reaches botgate, which then drains
         * and stops Redis last. The death signal covers a botgate killed outright. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock,
               "--unixsocketperm", "700", "--dir", pr->dir, "--appendonly", "yes", "--appendfsync",
               "always", "--save", "", "--daemonize", "no", "--logfile", logfile, (char *)NULL);
        _exit(127);
    }
    pr->pid = pid;
    for (int waited = 0; waited < 10000; waited += 20) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            pr->pid = 0;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                snprintf(err, errlen,
                         "redis.url: empty, and redis-server is not installed (install it, or "
                         "set redis.url)");
            else
                snprintf(err, errlen, "redis.url: the private redis-server exited; see %s",
                         logfile);
            return BG_EIO;
        }
        if (socket_answers(sock)) {
            bg_log_info("redis", "started a private redis-server (pid %d) at %s, data in %s",
                        (int)pid, pr->url, pr->dir);
            return 0;
        }
        sleep_ms(20);
    }
    bg_private_redis_stop(pr);
    snprintf(err, errlen, "redis.url: the private redis-server did not open %s in 10 s", sock);
    return BG_EIO;
}

void
bg_private_redis_stop(bg_private_redis *pr)
{
    if (pr->pid <= 0)
        return;
    kill(pr->pid, SIGTERM);
    for (int waited = 0; waited < 10000; waited += 20) {
        if (waitpid(pr->pid, NULL, WNOHANG) == pr->pid) {
            pr->pid = 0;
            return;
        }
        sleep_ms(20);
    }
    bg_log_warn("redis", "the private redis-server did not stop in 10 s: killing it");
    kill(pr->pid, SIGKILL);
    waitpid(pr->pid, NULL, 0);
    pr->pid = 0;
}
