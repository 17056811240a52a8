/*
 * Fuzzes the key documents (policy/auth.c): the OpenID metadata document and the JWKS it
 * names, fetched over HTTPS but parsed as untrusted bytes all the same (a proxy, a
 * misconfigured mirror, a compromised CDN).
 *
 * Input: one document, read both as OpenID metadata (bg_openid_jwks_uri) and as a JWKS
 * (bg_keyset_parse). Besides "no crash, no overread, no leak": the answers are the
 * documented ones; a jwks_uri returned is a terminated https:// string; a refusal comes
 * with a terminated reason; a parsed key set answers bg_keyset_has_kid for any kid.
 */
#include "fuzz.h"

#include <strings.h>

#include "botgate/auth.h"
#include "botgate/error.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *doc = fuzz_copy(data, size);
    char err[256];

    char *uri = NULL;
    int rc = bg_openid_jwks_uri(doc, size, &uri, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == BG_EAUTH_MALFORMED || rc == BG_ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(uri != NULL && strncasecmp(uri, "https://", 8) == 0);
        free(uri);
    } else {
        FUZZ_CHECK(fuzz_err_ok(err, sizeof(err)));
    }

    bg_keyset *keys = NULL;
    rc = bg_keyset_parse(&keys, doc, size, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == BG_EAUTH_MALFORMED || rc == BG_ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(keys != NULL);
        size_t n = bg_keyset_size(keys);
        (void)n;
        (void)bg_keyset_has_kid(keys, "fuzz-k1");
        (void)bg_keyset_has_kid(keys, "");
        /* A kid spelled by the input itself: its first 40 bytes, cut at a NUL. */
        char *kid = fuzz_cstr(data, size < 40 ? size : 40);
        (void)bg_keyset_has_kid(keys, kid);
        free(kid);
        bg_keyset_free(keys);
    } else {
        FUZZ_CHECK(fuzz_err_ok(err, sizeof(err)));
    }
    free(doc);
    return 0;
}
