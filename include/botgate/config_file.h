/*
 * The configuration as every botgate command reads it: the defaults, then the YAML file
 * (if one is named), then the environment (botgate/config.h has the precedence), then the
 * refusal of keys whose module is not built yet. `botgate serve` and `botgate dlq` call
 * it, so that both read one file the same way.
 */
#ifndef BOTGATE_CONFIG_FILE_H
#define BOTGATE_CONFIG_FILE_H

#include "botgate/config.h"

#include <stddef.h>

/*
 * Fills cfg from file (NULL: the defaults and the environment only) and envp (as
 * environ; may be NULL). Returns 0; BG_ECONFIG with the message to print after
 * "botgate: configuration: " in err (a file that cannot be read or is over 1 MiB, a key
 * and its reason, or bg_config_load's "out of memory while loading the configuration");
 * or BG_ENOMEM when not even the defaults could be allocated (err "out of memory"). On
 * failure cfg holds nothing to free. Start-up only: it blocks on the file.
 */
int bg_config_read(bg_config *cfg, const char *file, char *const *envp, char *err, size_t errlen);

#endif
