#include "botgate/devcert.h"
#include "botgate/error.h"
#include "botgate/log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 1 when cert_path holds a certificate valid for at least another day. */
static int
still_good(const char *cert_path, const char *key_path)
{
    if (access(key_path, R_OK) != 0)
        return 0;
    FILE *f = fopen(cert_path, "r");
    if (f == NULL)
        return 0;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL)
        return 0;
    time_t tomorrow = time(NULL) + 86400;
    int ok = X509_cmp_time(X509_get0_notAfter(x), &tomorrow) > 0;
    X509_free(x);
    return ok;
}

static int
write_pem(const char *path, EVP_PKEY *pkey, X509 *x)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return -1;
    }
    int ok = pkey != NULL ? PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL)
                          : PEM_write_X509(f, x);
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int
make_pair(const char *cert_path, const char *key_path)
{
    int rc = -1;
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name = NULL;
    X509V3_CTX v3;
    X509_EXTENSION *ext = NULL;
    if (pkey == NULL || x == NULL)
        goto out;
    X509_set_version(x, 2);
    unsigned char serial[8];
    FILE *ur = fopen("/dev/urandom", "r");
    if (ur == NULL || fread(serial, 1, sizeof(serial), ur) != sizeof(serial)) {
        if (ur != NULL)
            fclose(ur);
        goto out;
    }
    fclose(ur);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        BN_free(bn);
        goto out;
    }
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400);
    X509_set_pubkey(x, pkey);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                               (const unsigned char *)"botgate development", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    const char *exts[][2] = {
        {"subjectAltName", "DNS:localhost,IP:127.0.0.1,IP:::1"},
        {"basicConstraints", "critical,CA:TRUE"},
        {"keyUsage", "critical,digitalSignature,keyCertSign"},
        {"extendedKeyUsage", "serverAuth"},
    };
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        ext = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
        if (ext == NULL || !X509_add_ext(x, ext, -1))
            goto out;
        X509_EXTENSION_free(ext);
        ext = NULL;
    }
    if (!X509_sign(x, pkey, EVP_sha256()))
        goto out;
    if (write_pem(key_path, pkey, NULL) != 0 || write_pem(cert_path, NULL, x) != 0)
        goto out;
    rc = 0;
out:
    X509_EXTENSION_free(ext);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}

int
bg_devcert_ensure(const char *state_dir, char *cert, char *key, size_t size, char *err,
                  size_t errlen)
{
    if (mkdir(state_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "state_dir: cannot create %s: %s", state_dir, strerror(errno));
        return BG_EIO;
    }
    if ((size_t)snprintf(cert, size, "%s/dev-cert.pem", state_dir) >= size ||
        (size_t)snprintf(key, size, "%s/dev-key.pem", state_dir) >= size) {
        snprintf(err, errlen, "state_dir: path too long");
        return BG_EIO;
    }
    if (still_good(cert, key)) {
        bg_log_warn("tls",
                    "using the development certificate %s: set tls.cert_file and "
                    "tls.key_file in production",
                    cert);
        return 0;
    }
    if (make_pair(cert, key) != 0) {
        snprintf(err, errlen, "state_dir: cannot write a development certificate in %s", state_dir);
        return BG_EIO;
    }
    bg_log_warn("tls",
                "made a development certificate %s (self-signed, localhost): set "
                "tls.cert_file and tls.key_file in production",
                cert);
    return 0;
}
