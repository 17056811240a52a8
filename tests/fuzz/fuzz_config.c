/*
 * Fuzzes the configuration loader (policy/config.c): a YAML file and environment
 * variables, both written by people, sometimes by templates.
 *
 * Input: one flag byte, then either (flag bit 0 clear) a YAML document, or (bit 0 set)
 * environment lines "NAME=value" separated by '\n', with a small fixed YAML document
 * under them. Besides "no crash, no overread, no leak": the answer is 0 or BG_ECONFIG
 * (BG_ENOMEM aside); a refusal comes with a terminated, non-empty reason; a configuration
 * that loads can be freed and initialised again.
 */
#include "fuzz.h"

#include "botgate/config.h"
#include "botgate/error.h"

#define MAX_ENV 16

static const char base_yaml[] = "auth: {app_id: fuzz-app}\n"
                                "policy: {allow_cidrs: [10.0.0.0/8]}\n";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    data++, size--;

    char *yaml = NULL;
    size_t yaml_len = 0;
    char *env[MAX_ENV + 1] = {NULL};
    size_t n_env = 0;
    if ((flags & 1) == 0) {
        yaml = fuzz_copy(data, size);
        yaml_len = size;
    } else {
        while (size > 0 && n_env < MAX_ENV) {
            size_t line_len, rest_len;
            const uint8_t *rest;
            fuzz_split(data, size, &line_len, &rest, &rest_len);
            env[n_env++] = fuzz_cstr(data, line_len);
            data = rest, size = rest_len;
        }
    }

    bg_config cfg;
    FUZZ_CHECK(bg_config_init(&cfg) == 0);
    char err[256];
    int rc;
    if ((flags & 1) == 0)
        rc = bg_config_load(&cfg, yaml, yaml_len, "fuzz.yaml", NULL, err, sizeof(err));
    else
        rc = bg_config_load(&cfg, (flags & 2) != 0 ? NULL : base_yaml,
                            (flags & 2) != 0 ? 0 : sizeof(base_yaml) - 1, "fuzz.yaml", env, err,
                            sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == BG_ECONFIG || rc == BG_ENOMEM);
    if (rc == BG_ECONFIG)
        FUZZ_CHECK(fuzz_err_ok(err, sizeof(err)) && err[0] != '\0');
    if (rc == 0) {
        FUZZ_CHECK(cfg.n_listen <= BG_CONFIG_MAX_LISTENERS);
        FUZZ_CHECK(cfg.policy.allow_cidrs.n <= BG_CONFIG_MAX_LIST);
    }
    bg_config_free(&cfg);
    FUZZ_CHECK(bg_config_init(&cfg) == 0);
    bg_config_free(&cfg);

    free(yaml);
    for (size_t i = 0; i < n_env; i++)
        free(env[i]);
    return 0;
}
