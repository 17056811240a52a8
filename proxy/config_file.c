/*
 * Reading the configuration (see botgate/config_file.h): the file's bytes here, the
 * parsing and every check in policy/config.c.
 */
#include "botgate/config_file.h"
#include "botgate/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A configuration is a page of YAML; a file this large is a wrong path, not a config. */
#define CONFIG_MAX_BYTES (1 << 20)

/* Reads the whole file into a NUL-terminated buffer. Returns it, or NULL with the reason
 * in err. */
static char *
read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(CONFIG_MAX_BYTES + 1);
    size_t n = buf != NULL ? fread(buf, 1, CONFIG_MAX_BYTES + 1, f) : 0;
    int bad = buf == NULL || ferror(f) || n > CONFIG_MAX_BYTES;
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: unreadable or larger than 1 MiB", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int
bg_config_read(bg_config *cfg, const char *file, char *const *envp, char *err, size_t errlen)
{
    char *yaml = NULL;
    size_t len = 0;
    if (bg_config_init(cfg) != 0) {
        snprintf(err, errlen, "out of memory");
        return BG_ENOMEM;
    }
    if (file != NULL && (yaml = read_file(file, &len, err, errlen)) == NULL) {
        bg_config_free(cfg);
        return BG_ECONFIG;
    }
    int rc = bg_config_load(cfg, yaml, len, file != NULL ? file : "(defaults)", envp, err, errlen);
    free(yaml);
    if (rc != 0) {
        bg_config_free(cfg);
        return BG_ECONFIG;
    }
    return 0;
}
