/*
 * Certificates and PEM text for the test servers (see cert.h).
 */
#include "cert.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

X509 *
bgt_cert_new(EVP_PKEY *key, const char *org, const char *cn, long days)
{
    X509 *cert = X509_new();
    uint64_t serial = 0;
    if (cert == NULL || getrandom(&serial, sizeof(serial), 0) != sizeof(serial)) {
        X509_free(cert);
        return NULL;
    }
    X509_set_version(cert, X509_VERSION_3);
    ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), serial >> 1); /* positive */
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), days * 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    if (org != NULL)
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)org, -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    return cert;
}

int
bgt_cert_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

int
bgt_cert_write_self_signed(const char *cert_path, const char *key_path, const char *cn,
                           const char *san, long not_before_s, long not_after_s)
{
    int rc = -1;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = key != NULL ? bgt_cert_new(key, NULL, cn, 0) : NULL;
    FILE *f = NULL;
    if (cert == NULL)
        goto out;
    X509_gmtime_adj(X509_getm_notBefore(cert), not_before_s);
    X509_gmtime_adj(X509_getm_notAfter(cert), not_after_s);
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    if (bgt_cert_add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
        bgt_cert_add_ext(cert, cert, NID_subject_key_identifier, "hash") != 0 ||
        bgt_cert_add_ext(cert, cert, NID_authority_key_identifier, "keyid:always") != 0 ||
        (san != NULL && bgt_cert_add_ext(cert, cert, NID_subject_alt_name, san) != 0))
        goto out;
    if (X509_sign(cert, key, EVP_sha256()) == 0)
        goto out;
    if ((f = fopen(cert_path, "w")) == NULL || !PEM_write_X509(f, cert))
        goto out;
    fclose(f);
    f = NULL;
    int fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        if (fd >= 0)
            close(fd);
        goto out;
    }
    if (!PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL))
        goto out;
    rc = 0;
out:
    if (f != NULL && fclose(f) != 0)
        rc = -1;
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

/* What the memory BIO holds once `written` (the PEM_write_bio_* call succeeded), as a
 * malloc'd string; frees the BIO either way. */
static char *
bio_text(BIO *bio, int written, size_t *len)
{
    char *out = NULL;
    if (bio != NULL && written) {
        char *data;
        long n = BIO_get_mem_data(bio, &data);
        out = malloc((size_t)n + 1);
        if (out != NULL) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
            if (len != NULL)
                *len = (size_t)n;
        }
    }
    BIO_free(bio);
    return out;
}

char *
bgt_pem_private_key(EVP_PKEY *key, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    return bio_text(
        bio, bio != NULL && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), len);
}

char *
bgt_pem_public_key(EVP_PKEY *key, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    return bio_text(bio, bio != NULL && PEM_write_bio_PUBKEY(bio, key), len);
}

char *
bgt_pem_cert(X509 *cert, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    return bio_text(bio, bio != NULL && PEM_write_bio_X509(bio, cert), len);
}

/* The first object of the PEM file path: a certificate when `cert`, else a private key. */
static void *
read_pem(const char *path, int cert)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    void *obj = cert ? (void *)PEM_read_X509(f, NULL, NULL, NULL)
                     : (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return obj;
}

EVP_PKEY *
bgt_pem_read_private_key(const char *path)
{
    return read_pem(path, 0);
}

X509 *
bgt_pem_read_cert(const char *path)
{
    return read_pem(path, 1);
}
