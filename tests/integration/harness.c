/*
 * The integration harness (see harness.h for the contract of each function).
 *
 * Everything here is plain blocking code: a test is a script of real requests against real
 * processes, and waiting is done by polling a condition until a deadline, never by sleeping
 * a guessed time.
 */
#include "harness.h"
#include "cert.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

extern char **environ;

#define MAX_CHILDREN 64

/* Every child still running, so that bgt_env_finish can stop what a failed test left. */
static pid_t children[MAX_CHILDREN];

static void
child_add(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
}

static void
child_remove(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid)
            children[i] = 0;
}

/* ---- the run's temporary directory ---------------------------------------------------- */

int
bgt_env_init(bgt_env *env)
{
    snprintf(env->dir, sizeof(env->dir), "/tmp/botgate-it-XXXXXX");
    if (mkdtemp(env->dir) == NULL) {
        fprintf(stderr, "harness: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "harness: curl_global_init failed\n");
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int
dump_log_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    size_t n = strlen(path);
    if (flag == FTW_F && n > 4 && strcmp(path + n - 4, ".log") == 0)
        bgt_dump_file(path, 64 * 1024);
    return 0;
}

static int
remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void
bgt_env_finish(bgt_env *env, bool failed)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] > 0) {
            fprintf(stderr, "harness: killing leftover child %d\n", (int)children[i]);
            bgt_kill_wait(children[i], SIGKILL, 5000);
        }
    if (env->dir[0] == '\0')
        return;
    if (failed)
        nftw(env->dir, dump_log_cb, 16, FTW_PHYS);
    if (getenv("BOTGATE_KEEP_TMP") != NULL)
        fprintf(stderr, "harness: kept %s\n", env->dir);
    else
        nftw(env->dir, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
    curl_global_cleanup();
}

int
bgt_env_exit(bgt_env *env, int failed)
{
    bgt_env_finish(env, failed != 0);
    if (failed != 0) {
        fflush(NULL);
        _exit(1);
    }
    return 0;
}

char *
bgt_path(char *out, size_t cap, const char *dir, const char *name)
{
    if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap) {
        fprintf(stderr, "harness: path too long: %s/%s\n", dir, name);
        abort();
    }
    return out;
}

char *
bgt_pathf(char *out, size_t cap, const char *dir, const char *fmt, ...)
{
    char name[BGT_PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(name)) {
        fprintf(stderr, "harness: path too long: %s/%s...\n", dir, name);
        abort();
    }
    return bgt_path(out, cap, dir, name);
}

/* mkdir path (0700); one that exists is fine. */
static int
make_dir(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "harness: mkdir %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int
bgt_write_file(const char *path, const char *data, long len)
{
    size_t n = len < 0 ? strlen(data) : (size_t)len;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "harness: open %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            fprintf(stderr, "harness: write %s: %s\n", path, strerror(errno));
            close(fd);
            return -1;
        }
        data += w;
        n -= (size_t)w;
    }
    return close(fd);
}

char *
bgt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

void
bgt_dump_file(const char *path, size_t max_bytes)
{
    size_t n;
    char *text = bgt_read_file(path, &n);
    fprintf(stderr, "----- %s -----\n", path);
    if (text != NULL) {
        const char *p = text;
        if (n > max_bytes) {
            p = text + n - max_bytes;
            fprintf(stderr, "[... %zu bytes left out ...]\n", n - max_bytes);
        }
        fputs(p, stderr);
        if (n > 0 && text[n - 1] != '\n')
            fputc('\n', stderr);
    }
    fprintf(stderr, "----- end of %s -----\n", path);
    free(text);
}

int64_t
bgt_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
bgt_wall_s(void)
{
    return bgt_wall_us() / 1000000;
}

int64_t
bgt_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
bgt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int
bgt_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t slen = sizeof(sin);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sin, &slen) == 0)
        port = ntohs(sin.sin_port);
    close(fd);
    if (port < 0)
        fprintf(stderr, "harness: no free port: %s\n", strerror(errno));
    return port;
}

int
bgt_tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

void
bgt_fresh_id(char *out, size_t cap, const char *prefix)
{
    static int counter;
    snprintf(out, cap, "%s%d-%lld-%d", prefix, (int)getpid(), (long long)bgt_wall_us(), ++counter);
}

/* ---- processes ------------------------------------------------------------------------ */

static bool
env_is_scrubbed(const char *kv)
{
    return strncmp(kv, "BOTGATE_", 8) == 0 || strncmp(kv, "MicrosoftApp", 12) == 0;
}

const char *const *bgt_spawn_env;

pid_t
bgt_spawn(char *const argv[], const char *out_path, const char *err_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int err = err_path != NULL ? open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0600) : out;
        if (in < 0 || out < 0 || err < 0)
            _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        close(in);
        close(out);
        if (err != out)
            close(err);
        /* Nothing else of the test's: a socket a test thread has open at the fork (an HTTP
         * request in flight) would otherwise stay open in the child after the test closed
         * it, and the server at its other end would see a client that never leaves. */
        closefrom(3);
        signal(SIGPIPE, SIG_DFL);
        size_t n = 0;
        for (char **e = environ; *e != NULL; e++)
            n++;
        for (const char *const *e = bgt_spawn_env; e != NULL && *e != NULL; e++)
            n++;
        char **envp = calloc(n + 1, sizeof(*envp));
        size_t k = 0;
        for (char **e = environ; *e != NULL; e++)
            if (!env_is_scrubbed(*e))
                envp[k++] = *e;
        for (const char *const *e = bgt_spawn_env; e != NULL && *e != NULL; e++)
            envp[k++] = (char *)*e;
        execvpe(argv[0], argv, envp);
        fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    child_add(pid);
    return pid;
}

int
bgt_wait_pid(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            child_remove(pid);
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            fprintf(stderr, "harness: waitpid %d: %s\n", (int)pid, strerror(errno));
            child_remove(pid);
            *status = -1;
            return 0;
        }
        if (bgt_mono_ms() >= deadline)
            return -1;
        bgt_sleep_ms(10);
    }
}

const char *
bgt_describe_status(int status, char *buf, size_t cap)
{
    if (status == -1)
        snprintf(buf, cap, "unknown status");
    else if (WIFEXITED(status))
        snprintf(buf, cap, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, cap, "wait status 0x%x", status);
    return buf;
}

int
bgt_kill_wait(pid_t pid, int sig, int timeout_ms)
{
    int status = -1;
    kill(pid, sig);
    if (bgt_wait_pid(pid, timeout_ms, &status) == 0)
        return status;
    fprintf(stderr, "harness: pid %d ignored signal %d for %d ms, SIGKILL\n", (int)pid, sig,
            timeout_ms);
    kill(pid, SIGKILL);
    bgt_wait_pid(pid, 10000, &status);
    return status;
}

/* How a child that should come up went: ready (the check said so), exited first (*status
 * says how), or neither within timeout_ms. */
enum child_start { CHILD_READY, CHILD_EXITED, CHILD_LATE };

static enum child_start
child_await(pid_t pid, int timeout_ms, int step_ms, bool (*ready)(void *), void *arg, int *status)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    while (bgt_mono_ms() < deadline) {
        if (bgt_wait_pid(pid, 0, status) == 0)
            return CHILD_EXITED;
        if (ready(arg))
            return CHILD_READY;
        bgt_sleep_ms(step_ms);
    }
    return CHILD_LATE;
}

/* The verdict on a server stopped with SIGTERM: 0 when it exited with status 0 (under ASan,
 * also: no leak); otherwise -1, after printing the status and the end of its log. */
static int
judge_exit(int status, const char *who, const char *log)
{
    if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    char why[64];
    fprintf(stderr, "harness: %s did not exit cleanly after SIGTERM: %s\n", who,
            bgt_describe_status(status, why, sizeof(why)));
    bgt_dump_file(log, 64 * 1024);
    return -1;
}

/* ---- TLS -------------------------------------------------------------------------------- */

int
bgt_tls_make_cert(const char *dir, char *cert_out, char *key_out)
{
    return bgt_tls_make_cert_ex(dir, "", 30, cert_out, key_out);
}

int
bgt_tls_make_cert_ex(const char *dir, const char *prefix, long days, char *cert_out, char *key_out)
{
    bgt_pathf(cert_out, BGT_PATH_MAX, dir, "%scert.pem", prefix);
    bgt_pathf(key_out, BGT_PATH_MAX, dir, "%skey.pem", prefix);
    if (bgt_cert_write_self_signed(cert_out, key_out, "localhost", "DNS:localhost,IP:127.0.0.1",
                                   -3600, days * 86400L) != 0) {
        fprintf(stderr, "harness: could not make a certificate in %s\n", dir);
        return -1;
    }
    return 0;
}

/* ---- redis-server ----------------------------------------------------------------------- */

redisContext *
bgt_redis_connect(const char *sock, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    if (c == NULL)
        return NULL;
    if (c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* The server of r answers PING with PONG. */
static bool
redis_pings(void *r)
{
    redisContext *c = bgt_redis_connect(((bgt_redis *)r)->sock, 500);
    if (c == NULL)
        return false;
    redisReply *rep = redisCommand(c, "PING");
    bool ok = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    if (rep != NULL)
        freeReplyObject(rep);
    redisFree(c);
    return ok;
}

static int
redis_launch(bgt_redis *r)
{
    char *argv[40];
    char port[16], primary[16];
    int n = 0;
    snprintf(port, sizeof(port), "%d", r->opts.port);
    snprintf(primary, sizeof(primary), "%d", r->opts.replicaof_port);
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--unixsocket";
    argv[n++] = r->sock;
    argv[n++] = "--unixsocketperm";
    argv[n++] = "700";
    argv[n++] = "--dir";
    argv[n++] = r->dir;
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--appendonly";
    argv[n++] = r->opts.aof ? "yes" : "no";
    if (r->opts.aof) {
        argv[n++] = "--appendfsync";
        argv[n++] = "always";
    }
    if (r->opts.debug_command) {
        argv[n++] = "--enable-debug-command";
        argv[n++] = "local";
    }
    if (r->opts.replicaof_port != 0) {
        argv[n++] = "--replicaof";
        argv[n++] = "127.0.0.1";
        argv[n++] = primary;
    }
    argv[n] = NULL;

    r->pid = bgt_spawn(argv, r->log, NULL);
    if (r->pid < 0) {
        r->pid = 0;
        return -1;
    }
    int status;
    switch (child_await(r->pid, 10000, 20, redis_pings, r, &status)) {
    case CHILD_READY:
        return 0;
    case CHILD_EXITED: {
        char why[64];
        fprintf(stderr, "harness: redis-server exited at start (%s)\n",
                bgt_describe_status(status, why, sizeof(why)));
        bgt_dump_file(r->log, 16 * 1024);
        break;
    }
    case CHILD_LATE:
        fprintf(stderr, "harness: redis-server did not answer PING within 10 s\n");
        bgt_dump_file(r->log, 16 * 1024);
        bgt_kill_wait(r->pid, SIGKILL, 5000);
        break;
    }
    r->pid = 0;
    return -1;
}

int
bgt_redis_start(bgt_redis *r, const char *env_dir, const char *name, const bgt_redis_opts *opts)
{
    memset(r, 0, sizeof(*r));
    if (opts != NULL)
        r->opts = *opts;
    bgt_pathf(r->dir, sizeof(r->dir), env_dir, "redis-%s", name);
    if (make_dir(r->dir) != 0)
        return -1;
    bgt_path(r->sock, sizeof(r->sock), r->dir, "redis.sock");
    bgt_path(r->log, sizeof(r->log), r->dir, "redis.log");
    snprintf(r->url, sizeof(r->url), "unix://%s", r->sock);
    return redis_launch(r);
}

int
bgt_redis_stop(bgt_redis *r)
{
    if (r->ctx != NULL) {
        redisFree(r->ctx);
        r->ctx = NULL;
    }
    if (r->pid == 0)
        return 0;
    redisContext *c = bgt_redis_connect(r->sock, 2000);
    if (c != NULL) {
        redisReply *rep = redisCommand(c, "SHUTDOWN NOSAVE");
        if (rep != NULL)
            freeReplyObject(rep);
        redisFree(c);
    }
    int status;
    if (bgt_wait_pid(r->pid, 10000, &status) != 0)
        bgt_kill_wait(r->pid, SIGTERM, 5000);
    r->pid = 0;
    return 0;
}

int
bgt_main_with_redis(bgt_env *env, bgt_redis *redis, const char *group,
                    const struct CMUnitTest *tests, size_t n)
{
    if (bgt_env_init(env) != 0)
        return 1;
    int failed = 1;
    if (bgt_redis_start(redis, env->dir, "main", NULL) == 0)
        failed = _cmocka_run_group_tests(group, tests, n, NULL, NULL);
    bgt_redis_stop(redis);
    return bgt_env_exit(env, failed);
}

void
bgt_redis_kill(bgt_redis *r)
{
    if (r->ctx != NULL) {
        redisFree(r->ctx);
        r->ctx = NULL;
    }
    if (r->pid != 0)
        bgt_kill_wait(r->pid, SIGKILL, 5000);
    r->pid = 0;
}

static redisReply *
tcp_vcmd(int port, const char *fmt, va_list ap)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c == NULL || c->err != 0) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *rep = redisvCommand(c, fmt, ap);
    redisFree(c);
    return rep;
}

redisReply *
bgt_redis_tcp_cmd(int port, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = tcp_vcmd(port, fmt, ap);
    va_end(ap);
    return rep;
}

static bool
tcp_pings(void *r)
{
    redisReply *rep = bgt_redis_tcp_cmd(((bgt_redis *)r)->opts.port, "PING");
    bool ok = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    if (rep != NULL)
        freeReplyObject(rep);
    return ok;
}

int
bgt_sentinel_start(bgt_redis *r, const char *env_dir, const char *name, int port,
                   const char *master_name, int master_port, int down_after_ms,
                   int failover_timeout_ms)
{
    memset(r, 0, sizeof(*r));
    r->opts.port = port;
    bgt_pathf(r->dir, sizeof(r->dir), env_dir, "sentinel-%s", name);
    if (make_dir(r->dir) != 0)
        return -1;
    bgt_path(r->log, sizeof(r->log), r->dir, "sentinel.log");
    char conf[BGT_PATH_MAX], text[1024];
    bgt_path(conf, sizeof(conf), r->dir, "sentinel.conf");
    snprintf(text, sizeof(text),
             "port %d\nbind 127.0.0.1\ndir %s\n"
             "sentinel monitor %s 127.0.0.1 %d 2\n"
             "sentinel down-after-milliseconds %s %d\n"
             "sentinel failover-timeout %s %d\n"
             "sentinel parallel-syncs %s 1\n",
             port, r->dir, master_name, master_port, master_name, down_after_ms, master_name,
             failover_timeout_ms, master_name);
    if (bgt_write_file(conf, text, -1) != 0)
        return -1;
    char *argv[] = {"redis-server", conf, "--sentinel", NULL};
    r->pid = bgt_spawn(argv, r->log, NULL);
    if (r->pid < 0) {
        r->pid = 0;
        return -1;
    }
    int status;
    if (child_await(r->pid, 10000, 20, tcp_pings, r, &status) == CHILD_READY)
        return 0;
    fprintf(stderr, "harness: sentinel %s did not answer PING within 10 s\n", name);
    bgt_dump_file(r->log, 16 * 1024);
    bgt_redis_kill(r);
    return -1;
}

int
bgt_redis_restart(bgt_redis *r)
{
    if (r->pid != 0)
        bgt_redis_stop(r);
    return redis_launch(r);
}

static redisReply *
redis_vcmd(bgt_redis *r, const char *fmt, va_list ap)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (r->ctx == NULL && (r->ctx = bgt_redis_connect(r->sock, 5000)) == NULL)
            continue;
        va_list aq;
        va_copy(aq, ap);
        redisReply *rep = redisvCommand(r->ctx, fmt, aq);
        va_end(aq);
        if (rep != NULL)
            return rep;
        fprintf(stderr, "harness: redis: %s\n", r->ctx->errstr);
        redisFree(r->ctx);
        r->ctx = NULL;
    }
    fprintf(stderr, "harness: redis at %s does not answer\n", r->sock);
    return NULL;
}

redisReply *
bgt_redis_cmd(bgt_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redis_vcmd(r, fmt, ap);
    va_end(ap);
    return rep;
}

long long
bgt_redis_xlen(bgt_redis *r, const char *stream)
{
    redisReply *rep = bgt_redis_cmd(r, "XLEN %s", stream);
    long long n = -1;
    if (rep != NULL && rep->type == REDIS_REPLY_INTEGER)
        n = rep->integer;
    else if (rep != NULL)
        fprintf(stderr, "harness: XLEN %s: unexpected reply type %d %s\n", stream, rep->type,
                rep->type == REDIS_REPLY_ERROR ? rep->str : "");
    if (rep != NULL)
        freeReplyObject(rep);
    return n;
}

void
bgt_reply_copy(char *out, size_t cap, const redisReply *v)
{
    snprintf(out, cap, "%.*s", (int)v->len, v->str);
}

int
bgt_redis_xrange(bgt_redis *r, const char *stream, bgt_stream_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    redisReply *rep = bgt_redis_cmd(r, "XRANGE %s - +", stream);
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
        if (rep != NULL)
            freeReplyObject(rep);
        return -1;
    }
    bgt_stream_entry *v = calloc(rep->elements + 1, sizeof(*v));
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        v[*n].id = strndup(e->element[0]->str, e->element[0]->len);
        redisReply *fields = e->element[1];
        v[*n].n_fields = fields->elements / 2;
        for (size_t f = 0; f + 1 < fields->elements; f += 2) {
            redisReply *name = fields->element[f], *value = fields->element[f + 1];
            if (name->len == 5 && memcmp(name->str, "entry", 5) == 0 && v[*n].entry == NULL) {
                v[*n].entry = malloc(value->len + 1);
                memcpy(v[*n].entry, value->str, value->len);
                v[*n].entry[value->len] = '\0';
                v[*n].entry_len = value->len;
            }
        }
        (*n)++;
    }
    freeReplyObject(rep);
    *out = v;
    return 0;
}

void
bgt_stream_entries_free(bgt_stream_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].id);
        free(v[i].entry);
    }
    free(v);
}

/* ---- queue entries ---------------------------------------------------------------------- */

bool
bgt_slice_eq(bg_slice s, const char *want)
{
    if (want == NULL)
        return s.p == NULL;
    return s.p != NULL && s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

bg_slice
bgt_entry_header(const bg_entry *e, const char *name)
{
    for (size_t i = 0; i < e->n_headers; i++)
        if (bgt_slice_eq(e->headers[i].name, name))
            return e->headers[i].value;
    return (bg_slice){NULL, 0};
}

char *
bgt_teams_message(const char *id, const char *conversation_id, const char *service_url, size_t size)
{
    char idfield[256] = "", convfield[512] = "";
    if (id != NULL)
        snprintf(idfield, sizeof(idfield), "\"id\":\"%s\",", id);
    if (conversation_id != NULL)
        snprintf(convfield, sizeof(convfield),
                 "\"conversation\":{\"conversationType\":\"personal\","
                 "\"tenantId\":\"72f988bf-86f1-41af-91ab-2d7cd011db47\",\"id\":\"%s\"},",
                 conversation_id);
    const char *fmt =
        "{\"text\":\"%s\",\"textFormat\":\"plain\",\"type\":\"message\",%s"
        "\"timestamp\":\"2024-05-01T10:00:00.000Z\","
        "\"localTimestamp\":\"2024-05-01T12:00:00.000+02:00\","
        "\"serviceUrl\":\"%s\",\"channelId\":\"msteams\","
        "\"from\":{\"id\":\"29:1a2b3c4d5e6f\",\"name\":\"Ada Lovelace\","
        "\"aadObjectId\":\"6f1c2a4e-9d7b-4c3a-8e2f-1b0a9c8d7e6f\"},%s"
        "\"recipient\":{\"id\":\"28:0c6f4a1e-2b3d-4c5e-8f9a-0b1c2d3e4f5a\",\"name\":\"Echo Bot\"},"
        "\"entities\":[{\"locale\":\"en-US\",\"country\":\"US\",\"platform\":\"Web\","
        "\"timezone\":\"Europe/Berlin\",\"type\":\"clientInfo\"}],"
        "\"channelData\":{\"tenant\":{\"id\":\"72f988bf-86f1-41af-91ab-2d7cd011db47\"}},"
        "\"locale\":\"en-US\"}";
    int base = snprintf(NULL, 0, fmt, "", idfield, service_url, convfield);
    size_t textlen = size > (size_t)base ? size - (size_t)base : 8;
    char *text = malloc(textlen + 1);
    static const char words[] = "Hello botgate, this is a message from Teams. ";
    for (size_t i = 0; i < textlen; i++)
        text[i] = words[i % (sizeof(words) - 1)];
    text[textlen] = '\0';
    int len = snprintf(NULL, 0, fmt, text, idfield, service_url, convfield);
    char *out = malloc((size_t)len + 1);
    snprintf(out, (size_t)len + 1, fmt, text, idfield, service_url, convfield);
    free(text);
    return out;
}

/* ---- HTTP client ------------------------------------------------------------------------ */

typedef struct buf {
    char *p;
    size_t len;
} buf;

static void
buf_append(buf *b, const char *p, size_t n)
{
    b->p = realloc(b->p, b->len + n + 1);
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static size_t
on_body(char *p, size_t size, size_t n, void *ud)
{
    buf_append(ud, p, size * n);
    return size * n;
}

/* A new status line starts a new header block: keep only the final response's (not a
 * 100 Continue's). */
static size_t
on_header(char *p, size_t size, size_t n, void *ud)
{
    buf *b = ud;
    if (size * n >= 5 && memcmp(p, "HTTP/", 5) == 0)
        b->len = 0;
    buf_append(b, p, size * n);
    return size * n;
}

typedef struct upload {
    const char *p;
    size_t left;
} upload;

static size_t
on_read(char *dst, size_t size, size_t n, void *ud)
{
    upload *u = ud;
    size_t k = size * n;
    if (k > 1000)
        k = 1000; /* several chunks, not one */
    if (k > u->left)
        k = u->left;
    memcpy(dst, u->p, k);
    u->p += k;
    u->left -= k;
    return k;
}

static bool
has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);
    for (; headers != NULL && *headers != NULL; headers++)
        if (strncasecmp(*headers, name, n) == 0 && ((*headers)[n] == ':'))
            return true;
    return false;
}

int
bgt_http_request(const bgt_http_req *req, bgt_http_resp *resp)
{
    memset(resp, 0, sizeof(*resp));
    CURL *h = curl_easy_init();
    if (h == NULL) {
        resp->curl_code = CURLE_FAILED_INIT;
        return -1;
    }
    struct curl_slist *hl = NULL;
    for (const char *const *p = req->headers; p != NULL && *p != NULL; p++)
        hl = curl_slist_append(hl, *p);
    bool is_post = strcmp(req->method, "POST") == 0;
    if (req->body != NULL || is_post) {
        if (!has_header(req->headers, "Content-Type"))
            hl = curl_slist_append(hl, "Content-Type:");
        if (!has_header(req->headers, "Expect"))
            hl = curl_slist_append(hl, "Expect:");
    }
    if (req->chunked)
        hl = curl_slist_append(hl, "Transfer-Encoding: chunked");

    buf body = {0}, head = {0};
    upload up = {req->body, req->body_len};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 15000L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
                     req->version == BGT_HTTP_2 ? (long)CURL_HTTP_VERSION_2TLS
                                                : (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    if (req->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, req->ca_file);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &head);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    if (req->chunked) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &up);
    } else if (is_post) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
        if (req->body != NULL) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        }
    }
    if (strcmp(req->method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);

    int64_t t0 = bgt_mono_ms();
    CURLcode rc = curl_easy_perform(h);
    resp->elapsed_ms = bgt_mono_ms() - t0;
    resp->curl_code = rc;
    snprintf(resp->curl_error, sizeof(resp->curl_error), "%s",
             errbuf[0] ? errbuf : curl_easy_strerror(rc));
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &resp->http_version);
    if (body.p == NULL)
        buf_append(&body, "", 0);
    if (head.p == NULL)
        buf_append(&head, "", 0);
    resp->body = body.p;
    resp->body_len = body.len;
    resp->headers = head.p;
    resp->headers_len = head.len;
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return rc == CURLE_OK ? 0 : -1;
}

int
bgt_http_get(const char *url, int version, const char *ca_file, bgt_http_resp *resp)
{
    bgt_http_req req = {.method = "GET", .url = url, .version = version, .ca_file = ca_file};
    return bgt_http_request(&req, resp);
}

int
bgt_http_post(const char *url, int version, const char *ca_file, const char *const *headers,
              const char *body, size_t len, bgt_http_resp *resp)
{
    bgt_http_req req = {.method = "POST",
                        .url = url,
                        .headers = headers,
                        .body = body,
                        .body_len = len,
                        .version = version,
                        .ca_file = ca_file};
    return bgt_http_request(&req, resp);
}

const char *
bgt_http_header(const bgt_http_resp *resp, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    const char *line = resp->headers;
    while (line != NULL && *line != '\0') {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        if (len > n && strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1, *ve = line + len;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && isspace((unsigned char)ve[-1]))
                ve--;
            snprintf(out, cap, "%.*s", (int)(ve - v), v);
            return out;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return NULL;
}

const char *
bgt_http_error_code(const bgt_http_resp *resp, char *out, size_t cap)
{
    json_error_t jerr;
    json_t *root = json_loadb(resp->body, resp->body_len, 0, &jerr);
    const char *result = NULL;
    json_t *error = json_object_get(root, "error");
    json_t *code = json_object_get(error, "code");
    json_t *message = json_object_get(error, "message");
    if (json_is_string(code) && json_is_string(message) && json_string_length(message) > 0) {
        snprintf(out, cap, "%s", json_string_value(code));
        result = out;
    }
    json_decref(root);
    return result;
}

void
bgt_http_resp_free(bgt_http_resp *resp)
{
    free(resp->body);
    free(resp->headers);
    resp->body = resp->headers = NULL;
}

/* method url (HTTP/1.1, ca_file the trust anchor for https): the body, malloc'd, when the
 * answer is a 200; NULL otherwise. */
static char *
http_ok_body(const char *method, const char *url, const char *ca_file, long timeout_ms)
{
    bgt_http_req req = {.method = method,
                        .url = url,
                        .version = BGT_HTTP_1_1,
                        .ca_file = ca_file,
                        .timeout_ms = timeout_ms};
    bgt_http_resp resp;
    bgt_http_request(&req, &resp);
    char *body = NULL;
    if (resp.curl_code == CURLE_OK && resp.status == 200) {
        body = resp.body;
        resp.body = NULL;
    }
    bgt_http_resp_free(&resp);
    return body;
}

char *
bgt_url(char *out, size_t cap, const char *base, const char *path)
{
    snprintf(out, cap, "%s%s", base, path);
    return out;
}

void
bgt_http_resp_print(const char *what, const bgt_http_resp *r)
{
    fprintf(stderr, "%s: curl %d (%s), status %ld, http version %ld, %lld ms\n%s%.*s\n", what,
            r->curl_code, r->curl_error, r->status, r->http_version, (long long)r->elapsed_ms,
            r->headers != NULL ? r->headers : "", (int)(r->body_len > 2000 ? 2000 : r->body_len),
            r->body != NULL ? r->body : "");
}

bool
bgt_poll_status(const char *base, const char *path, const char *ca_file, long status,
                int timeout_ms, long *last)
{
    char u[BGT_PATH_MAX];
    bgt_url(u, sizeof(u), base, path);
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    for (;;) {
        bgt_http_resp resp;
        bgt_http_get(u, BGT_HTTP_1_1, ca_file, &resp);
        *last = resp.curl_code == CURLE_OK ? resp.status : -resp.curl_code;
        bgt_http_resp_free(&resp);
        if (*last == status)
            return true;
        if (bgt_mono_ms() >= deadline)
            return false;
        bgt_sleep_ms(50);
    }
}

/* ---- assertions --------------------------------------------------------------------------- */

void
bgt_expect_status_at(const bgt_http_resp *r, long status, const char *file, int line)
{
    if (r->curl_code != CURLE_OK || r->status != status) {
        bgt_http_resp_print("unexpected response", r);
        print_error("ERROR: expected HTTP %ld, got %ld (curl %d: %s)\n", status, r->status,
                    r->curl_code, r->curl_error);
        _fail(file, line);
    }
}

void
bgt_expect_error_at(const bgt_http_resp *r, long status, const char *code, const char *file,
                    int line)
{
    bgt_expect_status_at(r, status, file, line);
    char got[64];
    if (bgt_http_error_code(r, got, sizeof(got)) == NULL) {
        bgt_http_resp_print("not a JSON error body", r);
        print_error("ERROR: expected {\"error\":{\"code\":\"%s\",\"message\":...}}\n", code);
        _fail(file, line);
    }
    if (strcmp(got, code) != 0) {
        bgt_http_resp_print("wrong error code", r);
        print_error("ERROR: expected error code %s, got %s\n", code, got);
        _fail(file, line);
    }
}

/* ---- botgate ------------------------------------------------------------------------------ */

const char *
bgt_botgate_bin(void)
{
    const char *bin = getenv("BOTGATE_BIN");
    if (bin == NULL || *bin == '\0') {
        fprintf(stderr, "harness: BOTGATE_BIN is not set (ctest sets it)\n");
        return NULL;
    }
    return bin;
}

static void
appendf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *tmp = malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(tmp, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf_append(b, tmp, (size_t)n);
    free(tmp);
}

char *
bgt_config_yaml(const bgt_botgate_conf *c)
{
    buf b = {0};
    appendf(&b, "listen:\n");
    if (c->tls_port > 0)
        appendf(&b, "  - {address: 127.0.0.1, port: %d, tls: true}\n", c->tls_port);
    if (c->plain_port > 0)
        appendf(&b, "  - {address: 127.0.0.1, port: %d, tls: false}\n", c->plain_port);
    appendf(&b, "tls:\n  cert_file: \"%s\"\n  key_file: \"%s\"\n",
            c->cert_file != NULL ? c->cert_file : "", c->key_file != NULL ? c->key_file : "");
    appendf(&b, "redis:\n  url: \"%s\"\n  timeout_ms: %d\n",
            c->redis_url != NULL ? c->redis_url : "",
            c->redis_timeout_ms > 0 ? c->redis_timeout_ms : 2000);
    if (c->redis_extra != NULL)
        appendf(&b, "%s", c->redis_extra);
    if (c->state_dir != NULL)
        appendf(&b, "state_dir: \"%s\"\n", c->state_dir);
    appendf(&b, "admin:\n  listen: \"%s\"\nrelay:\n%s", c->admin != NULL ? c->admin : "",
            c->relay != NULL ? c->relay : "  listen: \"\"\n");
    appendf(&b, "log:\n  access: \"%s\"\n  level: %s\n%s",
            c->log_access != NULL ? c->log_access : "off",
            c->log_level != NULL ? c->log_level : "info", c->log_extra != NULL ? c->log_extra : "");
    if (c->extra != NULL)
        appendf(&b, "%s", c->extra);
    return b.p;
}

/* GET b's health URL answers 200. */
static bool
health_ok(void *arg)
{
    bgt_botgate *b = arg;
    char *body =
        http_ok_body("GET", b->health_url, b->ca_file[0] != '\0' ? b->ca_file : NULL, 2000);
    bool ok = body != NULL;
    free(body);
    return ok;
}

const char *bgt_botgate_role;

int
bgt_botgate_start_conf(bgt_botgate *b, const char *env_dir, const char *name,
                       const bgt_botgate_conf *c, const char *health_url)
{
    char *yaml = bgt_config_yaml(c);
    int rc = bgt_botgate_start(b, env_dir, name, yaml, health_url, NULL);
    free(yaml);
    return rc;
}

int
bgt_botgate_start(bgt_botgate *b, const char *env_dir, const char *name, const char *yaml,
                  const char *health_url, const char *ca_file)
{
    memset(b, 0, sizeof(*b));
    const char *bin = bgt_botgate_bin();
    if (bin == NULL)
        return -1;
    bgt_pathf(b->config, sizeof(b->config), env_dir, "botgate-%s.yaml", name);
    bgt_pathf(b->log, sizeof(b->log), env_dir, "botgate-%s.log", name);
    snprintf(b->health_url, sizeof(b->health_url), "%s", health_url);
    snprintf(b->ca_file, sizeof(b->ca_file), "%s", ca_file != NULL ? ca_file : "");
    if (bgt_write_file(b->config, yaml, -1) != 0)
        return -1;

    char *argv[] = {(char *)bin, "serve", "-c", b->config, NULL, NULL, NULL};
    if (bgt_botgate_role != NULL) {
        argv[4] = "--role";
        argv[5] = (char *)bgt_botgate_role;
    }
    b->pid = bgt_spawn(argv, b->log, NULL);
    if (b->pid < 0) {
        b->pid = 0;
        return -1;
    }
    int status;
    switch (child_await(b->pid, 20000, 50, health_ok, b, &status)) {
    case CHILD_READY:
        return 0;
    case CHILD_EXITED: {
        char why[64];
        fprintf(stderr, "harness: botgate %s exited at start (%s); config:\n%s\n", name,
                bgt_describe_status(status, why, sizeof(why)), yaml);
        break;
    }
    case CHILD_LATE:
        fprintf(stderr, "harness: botgate %s: %s did not answer 200 within 20 s; config:\n%s\n",
                name, health_url, yaml);
        bgt_kill_wait(b->pid, SIGKILL, 5000);
        break;
    }
    bgt_dump_file(b->log, 64 * 1024);
    b->pid = 0;
    return -1;
}

int
bgt_botgate_stop(bgt_botgate *b)
{
    if (b->pid == 0) {
        fprintf(stderr, "harness: botgate is not running\n");
        return -1;
    }
    int status = bgt_kill_wait(b->pid, SIGTERM, 40000);
    b->pid = 0;
    return judge_exit(status, "botgate", b->log);
}

void
bgt_botgate_kill(bgt_botgate *b)
{
    if (b->pid > 0)
        bgt_kill_wait(b->pid, SIGKILL, 5000);
    b->pid = 0;
}

int
bgt_botgate_run(const char *const *args, const char *log_path, int timeout_ms, char **err_out)
{
    if (err_out != NULL)
        *err_out = NULL;
    const char *bin = bgt_botgate_bin();
    if (bin == NULL)
        return -1;
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)bin;
    for (; args != NULL && *args != NULL && n < 31; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    char err_path[BGT_PATH_MAX + 16];
    snprintf(err_path, sizeof(err_path), "%s.stderr.log", log_path);
    unlink(log_path);
    unlink(err_path);
    pid_t pid = bgt_spawn(argv, log_path, err_path);
    if (pid < 0)
        return -1;
    int status, rc;
    if (bgt_wait_pid(pid, timeout_ms, &status) != 0) {
        fprintf(stderr, "harness: %s %s did not exit within %d ms; killed\n", bin,
                argv[1] != NULL ? argv[1] : "", timeout_ms);
        bgt_kill_wait(pid, SIGKILL, 5000);
        rc = -1;
    } else if (status != -1 && WIFEXITED(status)) {
        rc = WEXITSTATUS(status);
    } else if (status != -1 && WIFSIGNALED(status)) {
        rc = 128 + WTERMSIG(status);
    } else {
        rc = -1;
    }
    if (err_out != NULL)
        *err_out = bgt_read_file(err_path, NULL);
    return rc;
}

int
bgt_botgate_run_output(const char *const *args, const char *env_dir, const char *prefix,
                       int timeout_ms, char **out, char **err)
{
    static int counter;
    char log[BGT_PATH_MAX];
    bgt_pathf(log, sizeof(log), env_dir, "%s-%d.log", prefix, ++counter);
    char *e = NULL;
    int rc = bgt_botgate_run(args, log, timeout_ms, &e);
    char *o = bgt_read_file(log, NULL);
    *out = o != NULL ? o : strdup("");
    *err = e != NULL ? e : strdup("");
    return rc;
}

static bool
line_has_all(const char *line, size_t len, const char *const *needles)
{
    for (; *needles != NULL; needles++) {
        size_t n = strlen(*needles);
        bool found = false;
        for (size_t i = 0; !found && i + n <= len; i++)
            found = strncasecmp(line + i, *needles, n) == 0;
        if (!found)
            return false;
    }
    return true;
}

bool
bgt_log_has_line(const char *path, const char *const *needles, int timeout_ms)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    for (;;) {
        char *text = bgt_read_file(path, NULL);
        bool found = false;
        for (const char *line = text; !found && line != NULL && *line != '\0';) {
            const char *end = strchr(line, '\n');
            size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
            found = line_has_all(line, len, needles);
            line = end != NULL ? end + 1 : NULL;
        }
        free(text);
        if (found)
            return true;
        if (bgt_mono_ms() >= deadline)
            return false;
        bgt_sleep_ms(50);
    }
}

/* ---- /proc --------------------------------------------------------------------------------- */

int
bgt_count_procs_using(const char *comm, const char *path)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return -1;
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        char p[300], name[64] = "";
        snprintf(p, sizeof(p), "/proc/%s/comm", de->d_name);
        char *c = bgt_read_file(p, NULL);
        if (c == NULL)
            continue;
        snprintf(name, sizeof(name), "%s", c);
        free(c);
        name[strcspn(name, "\n")] = '\0';
        if (strcmp(name, comm) != 0)
            continue;
        /* A zombie has no cwd and an empty command line: it no longer uses anything. */
        char cwd[BGT_PATH_MAX] = "";
        snprintf(p, sizeof(p), "/proc/%s/cwd", de->d_name);
        ssize_t n = readlink(p, cwd, sizeof(cwd) - 1);
        if (n > 0)
            cwd[n] = '\0';
        bool uses = n > 0 && strstr(cwd, path) != NULL;
        snprintf(p, sizeof(p), "/proc/%s/cmdline", de->d_name);
        size_t len;
        char *cmd = bgt_read_file(p, &len);
        for (size_t i = 0; cmd != NULL && i < len; i++)
            if (cmd[i] == '\0')
                cmd[i] = ' ';
        if (cmd != NULL && strstr(cmd, path) != NULL)
            uses = true;
        free(cmd);
        if (uses)
            count++;
    }
    closedir(d);
    return count;
}

/* ---- the test tools (tests/tools/): started, asked and stopped alike -------------------------
 */

#define MAX_TOOL_RUNS 8

/* One tool process, by directory. */
typedef struct tool_run {
    pid_t pid; /* 0: free slot */
    int port;
    char dir[BGT_PATH_MAX];
} tool_run;

/* What differs between the tools, and the ones of each kind running. */
typedef struct tool_kind {
    const char *prog;    /* in $BOTGATE_TOOLS_DIR; its log is <dir>/<prog>.log */
    const char *what;    /* in messages */
    const char *command; /* the first argument, or NULL */
    char *(*url)(char *out, size_t cap, int port, const char *path);
    bool trust_ca; /* its URLs are https, with <dir>/ca.pem as the trust anchor */
    tool_run runs[MAX_TOOL_RUNS];
} tool_kind;

static tool_kind connector_kind = {.prog = "fake_connector",
                                   .what = "fake connector",
                                   .command = "serve",
                                   .url = bgt_connector_url,
                                   .trust_ca = true};
static tool_kind bot_kind = {.prog = "slow_bot", .what = "slow bot", .url = bgt_bot_url};
/* The connector started last: the one bgt_connector_stats() asks. */
static tool_run *last_connector;

static tool_run *
tool_find(tool_kind *k, const char *dir)
{
    for (int i = 0; i < MAX_TOOL_RUNS; i++)
        if (k->runs[i].pid != 0 && strcmp(k->runs[i].dir, dir) == 0)
            return &k->runs[i];
    fprintf(stderr, "harness: no %s running in %s\n", k->what, dir);
    return NULL;
}

static void
tool_forget(tool_run *r)
{
    if (last_connector == r)
        last_connector = NULL;
    memset(r, 0, sizeof(*r));
}

/* GET or POST path on the tool of dir at port; the body (malloc'd) on 200, else NULL. */
static char *
tool_call(const tool_kind *k, const char *dir, int port, const char *method, const char *path)
{
    char url[BGT_PATH_MAX], ca[BGT_PATH_MAX];
    k->url(url, sizeof(url), port, path);
    return http_ok_body(method, url, k->trust_ca ? bgt_path(ca, sizeof(ca), dir, "ca.pem") : NULL,
                        5000);
}

/* A tool starting in dir: serving once dir/ready names a port on which /stats answers. */
typedef struct tool_probe {
    const tool_kind *kind;
    const char *dir;
    const char *ready;
    int port; /* the port, once serving */
} tool_probe;

static bool
tool_serves(void *arg)
{
    tool_probe *p = arg;
    char *text = bgt_read_file(p->ready, NULL);
    int port = text != NULL ? atoi(text) : 0;
    free(text);
    /* /stats, not /v1/keys: it answers even when dir/down exists (a test may start the
     * connector down), and it is not counted */
    char *stats = port > 0 ? tool_call(p->kind, p->dir, port, "GET", "/stats") : NULL;
    bool serves = stats != NULL;
    free(stats);
    if (serves)
        p->port = port;
    return serves;
}

/* Starts `$BOTGATE_TOOLS_DIR/<prog> [command] --dir dir --port *port` and waits until it
 * serves (see bgt_connector_start, bgt_bot_start). The slot it runs in, or NULL. */
static tool_run *
tool_start(tool_kind *k, const char *dir, int *port)
{
    const char *tools = getenv("BOTGATE_TOOLS_DIR");
    if (tools == NULL || tools[0] == '\0') {
        fprintf(stderr,
                "harness: BOTGATE_TOOLS_DIR is not set (ctest sets it to the tests "
                "build directory, where %s is)\n",
                k->prog);
        return NULL;
    }
    tool_run *slot = NULL;
    for (int i = 0; i < MAX_TOOL_RUNS; i++) {
        tool_run *r = &k->runs[i];
        /* a slot whose process is gone (bgt_env_finish reaped it after a failed test) is free */
        if (r->pid != 0 && kill(r->pid, 0) != 0)
            tool_forget(r);
        if (r->pid != 0 && strcmp(r->dir, dir) == 0) {
            fprintf(stderr, "harness: a %s already runs in %s\n", k->what, dir);
            return NULL;
        }
        if (r->pid == 0 && slot == NULL)
            slot = r;
    }
    if (slot == NULL) {
        fprintf(stderr, "harness: more than %d %ss\n", MAX_TOOL_RUNS, k->what);
        return NULL;
    }
    if (make_dir(dir) != 0)
        return NULL;
    char bin[BGT_PATH_MAX], ready[BGT_PATH_MAX], log[BGT_PATH_MAX], portarg[16];
    bgt_path(bin, sizeof(bin), tools, k->prog);
    bgt_path(ready, sizeof(ready), dir, "ready");
    bgt_pathf(log, sizeof(log), dir, "%s.log", k->prog);
    snprintf(portarg, sizeof(portarg), "%d", *port);
    unlink(ready);

    char *argv[8];
    int n = 0;
    argv[n++] = bin;
    if (k->command != NULL)
        argv[n++] = (char *)k->command;
    argv[n++] = "--dir";
    argv[n++] = (char *)dir;
    argv[n++] = "--port";
    argv[n++] = portarg;
    argv[n] = NULL;
    pid_t pid = bgt_spawn(argv, log, NULL);
    if (pid < 0)
        return NULL;
    tool_probe probe = {.kind = k, .dir = dir, .ready = ready};
    int status;
    switch (child_await(pid, 20000, 50, tool_serves, &probe, &status)) {
    case CHILD_READY:
        slot->pid = pid;
        slot->port = probe.port;
        snprintf(slot->dir, sizeof(slot->dir), "%s", dir);
        *port = probe.port;
        return slot;
    case CHILD_EXITED: {
        char why[64];
        fprintf(stderr, "harness: %s in %s exited at start (%s)\n", k->prog, dir,
                bgt_describe_status(status, why, sizeof(why)));
        bgt_dump_file(log, 16 * 1024);
        return NULL;
    }
    case CHILD_LATE:
        break;
    }
    fprintf(stderr, "harness: %s in %s did not serve /stats within 20 s\n", k->prog, dir);
    bgt_kill_wait(pid, SIGKILL, 5000);
    bgt_dump_file(log, 16 * 1024);
    return NULL;
}

/* SIGTERM, and the verdict on the exit (see bgt_connector_stop, bgt_bot_stop). */
static int
tool_stop(tool_kind *k, const char *dir)
{
    tool_run *r = tool_find(k, dir);
    if (r == NULL)
        return -1;
    int status = bgt_kill_wait(r->pid, SIGTERM, 20000);
    tool_forget(r);
    char who[BGT_PATH_MAX + 64], log[BGT_PATH_MAX];
    snprintf(who, sizeof(who), "%s in %s", k->prog, dir);
    return judge_exit(status, who, bgt_pathf(log, sizeof(log), dir, "%s.log", k->prog));
}

static void
tool_kill(tool_kind *k, const char *dir)
{
    for (int i = 0; i < MAX_TOOL_RUNS; i++)
        if (k->runs[i].pid != 0 && strcmp(k->runs[i].dir, dir) == 0) {
            bgt_kill_wait(k->runs[i].pid, SIGKILL, 5000);
            tool_forget(&k->runs[i]);
        }
}

/* tool_stop and tool_kill for a test's directory variable, "" when no tool runs there:
 * stopping or killing leaves it "" (see bgt_bot_stop_clear). */
static int
tool_stop_clear(tool_kind *k, char *dir)
{
    if (dir[0] == '\0')
        return 0;
    int rc = tool_stop(k, dir);
    dir[0] = '\0';
    return rc;
}

static void
tool_kill_clear(tool_kind *k, char *dir)
{
    if (dir[0] != '\0')
        tool_kill(k, dir);
    dir[0] = '\0';
}

/* bgt_write_file through a temporary name and rename(): the tool never reads half. */
static int
write_file_renamed(const char *path, const char *data, long len)
{
    char tmp[BGT_PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (bgt_write_file(tmp, data, len) != 0)
        return -1;
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "harness: rename %s: %s\n", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* Writes path through rename() (text NULL: removes it; a file already gone is fine). */
static int
file_set(const char *path, const char *text, long len)
{
    if (text != NULL)
        return write_file_renamed(path, text, len);
    if (unlink(path) != 0 && errno != ENOENT) {
        fprintf(stderr, "harness: unlink %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* file_set on dir/name, with a NUL-terminated text. */
static int
tool_file_set(const char *dir, const char *name, const char *text)
{
    char path[BGT_PATH_MAX];
    return file_set(bgt_path(path, sizeof(path), dir, name), text, -1);
}

/* ---- the fake Connector ------------------------------------------------------------------------
 */

char *
bgt_connector_url(char *out, size_t cap, int port, const char *path)
{
    snprintf(out, cap, "https://127.0.0.1:%d%s", port, path);
    return out;
}

int
bgt_connector_start(const char *dir, int *port)
{
    tool_run *r = tool_start(&connector_kind, dir, port);
    if (r == NULL)
        return -1;
    last_connector = r;
    return 0;
}

int
bgt_connector_stop(const char *dir)
{
    return tool_stop(&connector_kind, dir);
}

void
bgt_connector_kill(const char *dir)
{
    tool_kill(&connector_kind, dir);
}

int
bgt_connector_stop_clear(char *dir)
{
    return tool_stop_clear(&connector_kind, dir);
}

void
bgt_connector_kill_clear(char *dir)
{
    tool_kill_clear(&connector_kind, dir);
}

char *
bgt_connector_auth_yaml(const char *dir, int port, const char *app_id, const char *more)
{
    char meta[BGT_PATH_MAX], emu[BGT_PATH_MAX], ca[BGT_PATH_MAX];
    bgt_connector_url(meta, sizeof(meta), port, "/v1/.well-known/openidconfiguration");
    bgt_connector_url(emu, sizeof(emu), port, "/emulator/.well-known/openid-configuration");
    bgt_path(ca, sizeof(ca), dir, "ca.pem");
    buf b = {0};
    appendf(&b,
            "auth:\n  app_id: \"%s\"\n  openid_metadata_url: \"%s\"\n"
            "  emulator_openid_metadata_url: \"%s\"\n  ca_file: \"%s\"\n",
            app_id, meta, emu, ca);
    if (more != NULL)
        appendf(&b, "%s", more);
    return b.p;
}

static long
stats_from(const char *dir, int port, const char *path)
{
    char *body = tool_call(&connector_kind, dir, port, "GET", "/stats");
    if (body == NULL) {
        fprintf(stderr, "harness: GET /stats on the fake connector in %s failed\n", dir);
        return -1;
    }
    json_error_t jerr;
    json_t *doc = json_loads(body, 0, &jerr);
    free(body);
    json_t *n = json_object_get(json_object_get(doc, "requests"), path);
    long count = doc == NULL ? -1 : json_is_integer(n) ? (long)json_integer_value(n) : 0;
    json_decref(doc);
    return count;
}

long
bgt_connector_stats(const char *path)
{
    if (last_connector == NULL) {
        fprintf(stderr, "harness: no fake connector running\n");
        return -1;
    }
    return stats_from(last_connector->dir, last_connector->port, path);
}

long
bgt_connector_stats_of(const char *dir, const char *path)
{
    tool_run *c = tool_find(&connector_kind, dir);
    return c != NULL ? stats_from(c->dir, c->port, path) : -1;
}

int
bgt_connector_stats_reset(void)
{
    if (last_connector == NULL) {
        fprintf(stderr, "harness: no fake connector running\n");
        return -1;
    }
    char *body = tool_call(&connector_kind, last_connector->dir, last_connector->port, "POST",
                           "/stats/reset");
    bool ok = body != NULL;
    free(body);
    return ok ? 0 : -1;
}

int
bgt_connector_set_down(const char *dir, bool down)
{
    return tool_file_set(dir, "down", down ? "down\n" : NULL);
}

int
bgt_connector_set_slow(const char *dir, int slow_ms)
{
    char text[32];
    snprintf(text, sizeof(text), "%d\n", slow_ms);
    return tool_file_set(dir, "slow_ms", slow_ms > 0 ? text : NULL);
}

/* dir/<set>/<kid><suffix> */
static char *
key_path(char *out, size_t cap, const char *dir, const char *set, const char *kid,
         const char *suffix)
{
    snprintf(out, cap, "%s/%s/%s%s", dir, set != NULL ? set : "keys", kid, suffix);
    return out;
}

int
bgt_connector_add_key(const char *dir, const char *set, const char *kid, const char *endorse)
{
    char path[BGT_PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, set != NULL ? set : "keys");
    if (make_dir(path) != 0)
        return -1;
    /* endorse NULL: no endorsements file, so no "endorsements" member */
    buf b = {0};
    if (endorse != NULL)
        appendf(&b, "%s", "");
    for (const char *p = endorse; p != NULL && *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n > 0)
            appendf(&b, "%.*s\n", (int)n, p);
        p += n + (p[n] == ',');
    }
    int rc =
        file_set(key_path(path, sizeof(path), dir, set, kid, ".endorsements"), b.p, (long)b.len);
    free(b.p);
    if (rc != 0)
        return -1;
    bgt_key key;
    if (bgt_key_generate_rsa(&key, kid, 2048) != 0) {
        fprintf(stderr, "harness: RSA key generation failed\n");
        return -1;
    }
    size_t len = 0;
    char *pem = bgt_pem_private_key(key.pkey, &len);
    bgt_key_free(&key);
    rc = pem != NULL ? write_file_renamed(key_path(path, sizeof(path), dir, set, kid, ".pem"), pem,
                                          (long)len)
                     : -1;
    free(pem);
    return rc;
}

int
bgt_connector_drop_key(const char *dir, const char *set, const char *kid)
{
    char path[BGT_PATH_MAX];
    if (unlink(key_path(path, sizeof(path), dir, set, kid, ".pem")) != 0) {
        fprintf(stderr, "harness: unlink %s: %s\n", path, strerror(errno));
        return -1;
    }
    unlink(key_path(path, sizeof(path), dir, set, kid, ".endorsements"));
    return 0;
}

int
bgt_connector_rotate(const char *dir, const char *new_kid, const char *drop_kid,
                     const char *endorse)
{
    if (bgt_connector_add_key(dir, "keys", new_kid, endorse) != 0)
        return -1;
    return drop_kid != NULL ? bgt_connector_drop_key(dir, "keys", drop_kid) : 0;
}

char *
bgt_connector_mint_ex(const char *dir, const char *set, const char *kid, const bgt_mint *m)
{
    char path[BGT_PATH_MAX];
    bgt_key key;
    if (bgt_key_load(&key, key_path(path, sizeof(path), dir, set, kid, ".pem"), kid) != 0) {
        fprintf(stderr, "harness: cannot load the signing key %s\n", path);
        return NULL;
    }
    bgt_mint copy = *m;
    copy.key = &key;
    char *token = bgt_mint_token(&copy);
    bgt_key_free(&key);
    if (token == NULL)
        fprintf(stderr, "harness: minting with %s failed\n", path);
    return token;
}

char *
bgt_connector_mint(const char *dir, const char *kid, const char *app_id, const char *service_url,
                   long exp_in_s)
{
    static unsigned long counter;
    int64_t now = bgt_wall_us() / 1000000;
    char jti[96];
    snprintf(jti, sizeof(jti), "\"jti\":\"%d-%lld-%lu\"", (int)getpid(), (long long)now, ++counter);
    bgt_mint m = {.alg = "RS256",
                  .iss = BGT_CONNECTOR_ISSUER,
                  .aud = app_id,
                  .serviceurl = service_url,
                  .nbf = now - 60,
                  .nbf_set = 1,
                  .iat = now,
                  .iat_set = 1,
                  .exp = now + exp_in_s,
                  .exp_set = 1,
                  .extra_claims = jti};
    return bgt_connector_mint_ex(dir, "keys", kid != NULL ? kid : "key-1", &m);
}

/* ---- the slow bot ------------------------------------------------------------------------------
 */

char *
bgt_bot_url(char *out, size_t cap, int port, const char *path)
{
    snprintf(out, cap, "http://127.0.0.1:%d%s", port, path != NULL ? path : "/api/messages");
    return out;
}

int
bgt_bot_start(const char *dir, int *port)
{
    return tool_start(&bot_kind, dir, port) != NULL ? 0 : -1;
}

int
bgt_bot_start_named(char *dir, const char *env_dir, const char *name, int *port)
{
    bgt_pathf(dir, BGT_PATH_MAX, env_dir, "bot-%s", name);
    *port = 0;
    return bgt_bot_start(dir, port);
}

int
bgt_bot_stop(const char *dir)
{
    return tool_stop(&bot_kind, dir);
}

void
bgt_bot_kill(const char *dir)
{
    tool_kill(&bot_kind, dir);
}

int
bgt_bot_stop_clear(char *dir)
{
    return tool_stop_clear(&bot_kind, dir);
}

void
bgt_bot_kill_clear(char *dir)
{
    tool_kill_clear(&bot_kind, dir);
}

int
bgt_bot_set_delay(const char *dir, int ms)
{
    char text[32];
    snprintf(text, sizeof(text), "%d\n", ms);
    return tool_file_set(dir, "delay_ms", ms > 0 ? text : NULL);
}

int
bgt_bot_set_delay_random(const char *dir, int min_ms, int max_ms)
{
    char text[64];
    snprintf(text, sizeof(text), "random %d %d\n", min_ms, max_ms);
    return tool_file_set(dir, "delay_ms", text);
}

int
bgt_bot_set_statuses(const char *dir, const char *statuses)
{
    return tool_file_set(dir, "statuses", statuses);
}

int
bgt_bot_set_activity_statuses(const char *dir, const char *activity_id, const char *statuses)
{
    char name[BGT_PATH_MAX];
    if (strchr(activity_id, '/') != NULL ||
        (size_t)snprintf(name, sizeof(name), "status_%s", activity_id) >= sizeof(name)) {
        fprintf(stderr, "harness: activity id '%s' cannot name a status file\n", activity_id);
        return -1;
    }
    return tool_file_set(dir, name, statuses);
}

int
bgt_bot_set_retry_after(const char *dir, const char *value)
{
    return tool_file_set(dir, "retry_after", value);
}

int
bgt_bot_set_body(const char *dir, const char *body)
{
    return tool_file_set(dir, "body", body);
}

int
bgt_bot_set_hang(const char *dir, bool hang)
{
    return tool_file_set(dir, "hang", hang ? "hang\n" : NULL);
}

static char *
json_strdup_or_null(json_t *v)
{
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

/* Fills r from an arrival line of received.jsonl. */
static void
bot_request_from(bgt_bot_request *r, json_t *line)
{
    memset(r, 0, sizeof(*r));
    r->seq = (unsigned long)json_integer_value(json_object_get(line, "seq"));
    r->t_us = (int64_t)json_integer_value(json_object_get(line, "t_us"));
    r->path = json_strdup_or_null(json_object_get(line, "path"));
    r->activity_id = json_strdup_or_null(json_object_get(line, "activity_id"));
    r->conversation_id = json_strdup_or_null(json_object_get(line, "conversation_id"));
    r->type = json_strdup_or_null(json_object_get(line, "type"));
    r->name = json_strdup_or_null(json_object_get(line, "name"));
    r->delivery_mode = json_strdup_or_null(json_object_get(line, "delivery_mode"));
    json_t *attempt = json_object_get(line, "attempt");
    r->attempt = json_is_integer(attempt) ? (int)json_integer_value(attempt) : -1;
    json_t *at = json_object_get(line, "received_at");
    if (json_is_integer(at)) {
        char text[32];
        snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(at));
        r->received_at = strdup(text);
    } else {
        r->received_at = json_strdup_or_null(at);
    }
    r->authorization = json_is_true(json_object_get(line, "authorization"));
    r->body_len = (size_t)json_integer_value(json_object_get(line, "body_len"));
    snprintf(r->action, sizeof(r->action), "%s",
             json_is_string(json_object_get(line, "action"))
                 ? json_string_value(json_object_get(line, "action"))
                 : "");
    r->status = (int)json_integer_value(json_object_get(line, "status"));
    json_t *delay = json_object_get(line, "delay_ms");
    r->delay_ms = json_is_integer(delay) ? (long)json_integer_value(delay) : -1;
    r->in_flight = (long)json_integer_value(json_object_get(line, "in_flight"));
}

int
bgt_bot_received(const char *dir, bgt_bot_request **out, size_t *n)
{
    char path[BGT_PATH_MAX];
    *out = NULL;
    *n = 0;
    size_t len = 0;
    char *text = bgt_read_file(bgt_path(path, sizeof(path), dir, "received.jsonl"), &len);
    if (text == NULL)
        return 0;
    bgt_bot_request *v = NULL;
    size_t count = 0, cap = 0;
    /* only whole lines: the bot may be writing the last one right now */
    for (char *p = text, *nl; (nl = memchr(p, '\n', (size_t)(text + len - p))) != NULL;
         p = nl + 1) {
        json_error_t jerr;
        json_t *line = json_loadb(p, (size_t)(nl - p), 0, &jerr);
        if (line == NULL) {
            fprintf(stderr, "harness: %s: a line that is not JSON: %s\n", path, jerr.text);
            continue;
        }
        if (json_is_true(json_object_get(line, "done"))) {
            /* the end of the latest request with that seq that has not ended (seq restarts
             * with the bot) */
            unsigned long seq = (unsigned long)json_integer_value(json_object_get(line, "seq"));
            for (size_t i = count; i-- > 0;)
                if (v[i].seq == seq && v[i].outcome[0] == '\0') {
                    v[i].done_us = (int64_t)json_integer_value(json_object_get(line, "t_us"));
                    json_t *o = json_object_get(line, "outcome");
                    snprintf(v[i].outcome, sizeof(v[i].outcome), "%s",
                             json_is_string(o) ? json_string_value(o) : "?");
                    break;
                }
        } else {
            if (count == cap) {
                cap = cap > 0 ? cap * 2 : 64;
                v = realloc(v, cap * sizeof(*v));
            }
            bot_request_from(&v[count++], line);
        }
        json_decref(line);
    }
    free(text);
    *out = v;
    *n = count;
    return 0;
}

void
bgt_bot_requests_free(bgt_bot_request *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].path);
        free(v[i].activity_id);
        free(v[i].conversation_id);
        free(v[i].type);
        free(v[i].name);
        free(v[i].delivery_mode);
        free(v[i].received_at);
    }
    free(v);
}

long
bgt_bot_count_activity(const char *dir, const char *activity_id)
{
    bgt_bot_request *v;
    size_t n;
    if (bgt_bot_received(dir, &v, &n) != 0)
        return -1;
    long count = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].activity_id != NULL && strcmp(v[i].activity_id, activity_id) == 0)
            count++;
    bgt_bot_requests_free(v, n);
    return count;
}

int
bgt_bot_clear_received(const char *dir)
{
    char path[BGT_PATH_MAX];
    bgt_path(path, sizeof(path), dir, "received.jsonl");
    if (truncate(path, 0) != 0 && errno != ENOENT) {
        fprintf(stderr, "harness: truncate %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* GET /stats of the bot of dir, parsed; NULL (printed) on failure. */
static json_t *
bot_stats(const char *dir)
{
    tool_run *b = tool_find(&bot_kind, dir);
    char *body = b != NULL ? tool_call(&bot_kind, dir, b->port, "GET", "/stats") : NULL;
    json_t *doc = body != NULL ? json_loads(body, 0, NULL) : NULL;
    free(body);
    if (doc == NULL)
        fprintf(stderr, "harness: GET /stats on the slow bot in %s failed\n", dir);
    return doc;
}

int
bgt_bot_stats(const char *dir, long *received, long *max_in_flight)
{
    json_t *doc = bot_stats(dir);
    if (doc == NULL)
        return -1;
    if (received != NULL)
        *received = (long)json_integer_value(json_object_get(doc, "received"));
    if (max_in_flight != NULL)
        *max_in_flight = (long)json_integer_value(json_object_get(doc, "max_in_flight"));
    json_decref(doc);
    return 0;
}

long
bgt_bot_in_flight(const char *dir)
{
    json_t *doc = bot_stats(dir);
    long n = doc != NULL ? (long)json_integer_value(json_object_get(doc, "in_flight")) : -1;
    json_decref(doc);
    return n;
}

int
bgt_bot_stats_reset(const char *dir)
{
    tool_run *b = tool_find(&bot_kind, dir);
    char *body = b != NULL ? tool_call(&bot_kind, dir, b->port, "POST", "/stats/reset") : NULL;
    bool ok = body != NULL;
    free(body);
    return ok ? 0 : -1;
}

/* Arrival lines (answered: false) or "answered" end lines (answered: true) in
 * dir/received.jsonl, by their first bytes, as the bot writes them: arrivals start with
 * {"seq":, ends with {"done":true. */
static size_t
bot_count_lines(const char *dir, bool answered)
{
    char path[BGT_PATH_MAX];
    size_t len = 0, count = 0;
    char *text = bgt_read_file(bgt_path(path, sizeof(path), dir, "received.jsonl"), &len);
    if (text == NULL)
        return 0;
    for (char *p = text, *nl; (nl = memchr(p, '\n', (size_t)(text + len - p))) != NULL;
         p = nl + 1) {
        *nl = '\0';
        if (answered ? strncmp(p, "{\"done\":true", 12) == 0 &&
                           strstr(p, "\"outcome\":\"answered\"") != NULL
                     : strncmp(p, "{\"seq\":", 7) == 0)
            count++;
    }
    free(text);
    return count;
}

static int
bot_wait_lines(const char *dir, size_t n, int timeout_ms, bool answered)
{
    int64_t deadline = bgt_mono_ms() + timeout_ms;
    size_t have;
    for (;;) {
        have = bot_count_lines(dir, answered);
        if (have >= n)
            return 0;
        if (bgt_mono_ms() >= deadline)
            break;
        bgt_sleep_ms(20);
    }
    fprintf(stderr, "harness: the slow bot in %s %s %zu requests within %d ms, not %zu\n", dir,
            answered ? "answered" : "received", have, timeout_ms, n);
    return -1;
}

int
bgt_bot_wait_received(const char *dir, size_t n, int timeout_ms)
{
    return bot_wait_lines(dir, n, timeout_ms, false);
}

int
bgt_bot_wait_answered(const char *dir, size_t n, int timeout_ms)
{
    return bot_wait_lines(dir, n, timeout_ms, true);
}

void
bgt_scrape(const char *base, xpo *x)
{
    char u[128];
    bgt_http_resp resp;
    bgt_http_get(bgt_url(u, sizeof(u), base, "/metrics"), BGT_HTTP_1_1, NULL, &resp);
    bgt_expect_status(&resp, 200);
    if (x_parse(x, resp.body) != 0) {
        bgt_http_resp_print("/metrics", &resp);
        fail_msg("the exposition does not parse: %s", x->err);
    }
    bgt_http_resp_free(&resp);
}
