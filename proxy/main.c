/*
 * The botgate command line.
 *
 *   botgate serve [-c FILE]   run the sidecar (configuration: FILE, then the environment)
 *   botgate dlq list|replay|drop ...   the dead-letter stream (proxy/dlq.c)
 *   botgate failures [--since D] ...   recent upstream failures (proxy/failures_cli.c)
 *   botgate doctor URL [...]           the 502 runbook against an endpoint (proxy/doctor.c)
 *   botgate version           print the version
 *
 * Exit status: 0 after an orderly stop, 2 for a bad command line or configuration (the
 * message names the key and the reason), 1 for any other failure.
 */
#include "botgate/config.h"
#include "botgate/config_file.h"
#include "botgate/devcert.h"
#include "botgate/dlq.h"
#include "botgate/doctor.h"
#include "botgate/error.h"
#include "botgate/failures.h"
#include "botgate/log.h"
#include "botgate/private_redis.h"
#include "botgate/server.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static void
usage(FILE *out)
{
    fprintf(out, "usage: botgate serve [-c FILE] [--role ingress|dispatcher|all]\n"
                 "       botgate dlq list [--limit N] [--json] [-c FILE]\n"
                 "       botgate dlq replay ID|--all [-c FILE]\n"
                 "       botgate dlq drop ID|--all [-c FILE]\n"
                 "       botgate failures [--since DURATION] [--limit N] [--json] [-c FILE]\n"
                 "       botgate doctor URL [--json] [--ca-file F] [-c FILE] [--login-url URL]\n"
                 "                      [--warn-ms N] [--fail-ms N] [--connect-ms N]\n"
                 "       botgate version\n"
                 "\n"
                 "serve    run the sidecar; FILE is YAML (see conf/botgate.yaml), and every\n"
                 "         key can be set by BOTGATE_<SECTION>_<KEY> in the environment;\n"
                 "         --role: accept and store only (ingress), deliver only\n"
                 "         (dispatcher), or both (all, the default)\n"
                 "dlq      list, replay (back to the queue) or drop dead-lettered activities\n"
                 "         (botgate dlq help)\n"
                 "failures recent failed calls to the bot and the key endpoints, newest first,\n"
                 "         with a summary per class (botgate failures help)\n"
                 "doctor   run the Teams 502 runbook against URL and name the likely cause\n"
                 "         (botgate doctor help)\n"
                 "version  print the version\n");
}

/* The certificate files must be readable before any port is opened: a typo in a path is
 * a configuration error (exit 2), not a crash loop later. */
static int
check_readable(const char *key, const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "%s: %s: %s", key, path, strerror(errno));
        return -1;
    }
    return 0;
}

static int
serve(int argc, char **argv)
{
    const char *file = NULL;
    bg_role role = BG_ROLE_ALL;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            file = argv[++i];
        } else if (strcmp(argv[i], "--role") == 0 && i + 1 < argc) {
            const char *r = argv[++i];
            if (strcmp(r, "all") == 0)
                role = BG_ROLE_ALL;
            else if (strcmp(r, "ingress") == 0)
                role = BG_ROLE_INGRESS;
            else if (strcmp(r, "dispatcher") == 0)
                role = BG_ROLE_DISPATCHER;
            else {
                fprintf(stderr,
                        "botgate serve: --role must be ingress, dispatcher or all, not '%s'\n", r);
                return 2;
            }
        } else {
            fprintf(stderr, "botgate serve: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char err[512];
    bg_config cfg;
    int status = bg_config_read(&cfg, file, environ, err, sizeof(err));
    if (status != 0) {
        fprintf(stderr, "botgate: %s%s\n", status == BG_ECONFIG ? "configuration: " : "", err);
        return status == BG_ECONFIG ? 2 : 1;
    }
    status = 2;
    bg_log_set_level(cfg.log.level);

    int any_tls = 0;
    for (size_t i = 0; i < cfg.n_listen; i++)
        any_tls |= cfg.listen[i].tls;
    char cert[4096], key[4096];
    if (any_tls && cfg.tls.cert_file[0] != '\0') {
        if (check_readable("tls.cert_file", cfg.tls.cert_file, err, sizeof(err)) != 0 ||
            check_readable("tls.key_file", cfg.tls.key_file, err, sizeof(err)) != 0) {
            fprintf(stderr, "botgate: configuration: %s\n", err);
            goto out;
        }
        snprintf(cert, sizeof(cert), "%s", cfg.tls.cert_file);
        snprintf(key, sizeof(key), "%s", cfg.tls.key_file);
    } else if (any_tls &&
               bg_devcert_ensure(cfg.state_dir, cert, key, sizeof(cert), err, sizeof(err)) != 0) {
        fprintf(stderr, "botgate: configuration: %s\n", err);
        goto out;
    }

    if (cfg.auth.app_id[0] == '\0')
        bg_log_warn("auth", "auth.app_id (MicrosoftAppId) is empty: authentication is OFF, every "
                            "request without a token is accepted. Development only.");

    bg_private_redis private_redis = {0};
    if (cfg.redis.url[0] == '\0' && cfg.redis.sentinels.n == 0) {
        if (bg_private_redis_start(&private_redis, cfg.state_dir, err, sizeof(err)) != 0) {
            fprintf(stderr, "botgate: %s\n", err);
            status = 1;
            goto out;
        }
        free(cfg.redis.url);
        cfg.redis.url = strdup(private_redis.url);
    }
    status = cfg.redis.url != NULL ? bg_server_run(&cfg, role, cert, key) : 1;
    bg_private_redis_stop(&private_redis);
out:
    bg_config_free(&cfg);
    return status;
}

int
main(int argc, char **argv)
{
    setvbuf(stderr, NULL, _IONBF, 0);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "serve") == 0) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        int status = serve(argc - 2, argv + 2);
        curl_global_cleanup();
        return status;
    }
    if (strcmp(argv[1], "dlq") == 0)
        return bg_dlq_run(argc - 2, argv + 2, environ);
    if (strcmp(argv[1], "failures") == 0)
        return bg_failures_run(argc - 2, argv + 2, environ);
    if (strcmp(argv[1], "doctor") == 0)
        return bg_doctor_run(argc - 2, argv + 2, environ);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("botgate %s\n", BOTGATE_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "botgate: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
