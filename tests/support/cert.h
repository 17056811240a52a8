/*
 * Certificates and PEM text for the test servers: what the integration harness (its
 * self-signed serving certificate, the fake Connector's key files) and the fake Connector
 * (its CA, its serving certificate, its signing keys) make with OpenSSL 3. Keys and
 * certificates are made at test time; nothing secret is committed.
 */
#ifndef BOTGATE_TEST_CERT_H
#define BOTGATE_TEST_CERT_H

#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* A version 3 certificate for key: subject O=org (org NULL: none), CN=cn; a random serial;
 * valid from an hour ago for `days`. The issuer name, the extensions and the signature are
 * the caller's. NULL on failure. */
X509 *bgt_cert_new(EVP_PKEY *key, const char *org, const char *cn, long days);

/* Adds the extension nid with value in OpenSSL's configuration syntax ("critical,CA:TRUE",
 * "DNS:localhost,IP:127.0.0.1", "keyid:always"); issuer is the certificate that signs cert
 * (cert itself when self-signed). 0 or -1. */
int bgt_cert_add_ext(X509 *cert, X509 *issuer, int nid, const char *value);

/* Writes a self-signed EC P-256 certificate for CN=cn with the subjectAltName san (OpenSSL's
 * syntax, "DNS:localhost,IP:127.0.0.1"; NULL: none), CA:TRUE so that it can serve as its own
 * trust anchor, valid from now + not_before_s to now + not_after_s (seconds; negative is in
 * the past: an expired certificate), to cert_path, and its key to key_path (mode 0600).
 * 0 or -1. */
int bgt_cert_write_self_signed(const char *cert_path, const char *key_path, const char *cn,
                               const char *san, long not_before_s, long not_after_s);

/* PEM text, malloc'd and NUL-terminated, of a private key (PKCS#8, unencrypted: test keys
 * only), a public key or a certificate; its length without the NUL goes to *len (len may be
 * NULL). NULL on failure. */
char *bgt_pem_private_key(EVP_PKEY *key, size_t *len);
char *bgt_pem_public_key(EVP_PKEY *key, size_t *len);
char *bgt_pem_cert(X509 *cert, size_t *len);

/* The private key or the certificate a PEM file holds (the first one); NULL when the file
 * is absent or holds none. */
EVP_PKEY *bgt_pem_read_private_key(const char *path);
X509 *bgt_pem_read_cert(const char *path);

#endif
