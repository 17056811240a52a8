/*
 * The development certificate: what a TLS listener uses when tls.cert_file and
 * tls.key_file are empty, so that `make run` serves HTTPS with nothing configured.
 *
 * A self-signed ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1, valid for a
 * year, made on first use in <state_dir>/dev-cert.pem and dev-key.pem (mode 0600) and
 * reused afterwards; made again when it has less than a day left. Never for production:
 * botgate says so in its log each time it uses one.
 */
#ifndef BOTGATE_DEVCERT_H
#define BOTGATE_DEVCERT_H

#include <stddef.h>

/* Ensures the pair exists under state_dir; writes their paths into cert/key (each
 * `size` bytes). Returns 0, or BG_EIO with a reason in err. */
int bg_devcert_ensure(const char *state_dir, char *cert, char *key, size_t size, char *err,
                      size_t errlen);

#endif
