/*
 * The serving certificate: loaded at start, loaded again on SIGHUP and, with
 * tls.reload_check_s > 0, when the certificate or key file changes (a timer on the loop
 * compares each file's device, inode, size and modification time; a Kubernetes Secret
 * volume swaps a symlink, which changes the inode).
 *
 * A reload builds a whole new SSL_CTX from the files and checks it (the chain parses, the
 * key parses and matches the certificate, the certificate has not expired) before anything
 * serving changes. Only then does every TLS listener's accept context point at the new
 * SSL_CTX, and the old one is released. OpenSSL counts references: each connection's SSL
 * holds its SSL_CTX and its own copy of the certificate and key, taken when h2o accepted
 * it. So a handshake in progress finishes with the pair it began with, open connections
 * keep theirs, and only connections accepted after the swap see the new certificate. A
 * refused certificate changes nothing: the log says why and which certificate stays.
 *
 * Outcomes are counted in botgate_tls_reloads_total{result="ok"|"failed"}, and the
 * certificate's expiry gauge follows the certificate in use.
 */
#ifndef BOTGATE_TLS_RELOAD_H
#define BOTGATE_TLS_RELOAD_H

#include <stddef.h>
#include <openssl/ssl.h>

struct bg_server;

/* A server SSL_CTX (TLS 1.2+, ALPN h2 and http/1.1) serving cert_file (PEM, chain allowed)
 * with key_file. NULL with the failing key and OpenSSL's reason in err. */
SSL_CTX *bg_tls_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen);

/* Once the listeners are open and the signals installed: remembers the files, takes
 * SIGHUP (a handler that writes to a pipe the loop watches, so that a signal is never
 * missed between two waits) and, when check_s > 0, starts the timer that watches the
 * files every check_s seconds. 0, or -1 with the reason in err. Nothing to do (returns 0)
 * when the server has no TLS listener. */
int bg_tls_reload_start(struct bg_server *server, const char *cert_file, const char *key_file,
                        int check_s, char *err, size_t errlen);

/* Loads the files again and, when they are good, serves them to new connections. why
 * ("SIGHUP", "files changed") goes to the log. 0, or -1 when refused (the old
 * certificate stays). */
int bg_tls_reload(struct bg_server *server, const char *why);

/* Stops the watch, gives SIGHUP back (ignored) and releases it; before the loop is
 * destroyed. */
void bg_tls_reload_stop(struct bg_server *server);

#endif
