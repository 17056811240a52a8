/*
 * The failure classifier (botgate/failure.h). Only curl's error numbers are used from
 * its header: nothing here calls libcurl.
 */
#include "botgate/failure.h"

#include <curl/curl.h>
#include <stddef.h>
#include <string.h>

const char *const bg_failure_classes[] = {BG_FAILURE_CONNECT_REFUSED,
                                          BG_FAILURE_CONNECT_TIMEOUT,
                                          BG_FAILURE_DNS,
                                          BG_FAILURE_TLS,
                                          BG_FAILURE_TIMEOUT,
                                          BG_FAILURE_HTTP_5XX,
                                          BG_FAILURE_HTTP_4XX,
                                          BG_FAILURE_TOKEN_EXPIRED,
                                          BG_FAILURE_REDIS,
                                          NULL};

const char *
bg_failure_class(int curl_code, long status, int64_t connect_us)
{
    switch (curl_code) {
    case CURLE_OK:
        if (status >= 200 && status <= 299)
            return NULL;
        if (status >= 500 && status <= 599)
            return BG_FAILURE_HTTP_5XX;
        if (status <= 0 || status > 599)
            return BG_FAILURE_HTTP_5XX; /* not HTTP: a broken server, not a refusal */
        return BG_FAILURE_HTTP_4XX;     /* 4xx, and 1xx/3xx: never an acceptance */
    case CURLE_OPERATION_TIMEDOUT:
        return connect_us > 0 ? BG_FAILURE_TIMEOUT : BG_FAILURE_CONNECT_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return BG_FAILURE_DNS;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
        return BG_FAILURE_TLS;
    default:
        /* CURLE_COULDNT_CONNECT, and a connection reset or closed without (a whole)
         * answer: RECV_ERROR, SEND_ERROR, GOT_NOTHING, PARTIAL_FILE, ...; and whatever
         * else kept an answer from coming */
        return BG_FAILURE_CONNECT_REFUSED;
    }
}

int
bg_failure_class_valid(const char *name)
{
    for (size_t i = 0; name != NULL && bg_failure_classes[i] != NULL; i++)
        if (strcmp(bg_failure_classes[i], name) == 0)
            return 1;
    return 0;
}
