/*
 * The doctor's judgement (botgate/doctor.h): observations in, a status and a cause out.
 * Only OpenSSL's verify codes and errno values are used from their headers: nothing here
 * does I/O or reads a clock.
 */
#include "botgate/doctor.h"

#include <errno.h>
#include <openssl/x509_vfy.h>
#include <stdlib.h>
#include <string.h>

/* One row per cause, in the enum's order: the code the JSON and the tests read, and the
 * sentence the verdict prints. A sentence names the cause and the first thing to do. */
static const struct {
    const char *code, *text;
} causes[BG_DOCTOR_CAUSE_COUNT] = {
    [BG_DOCTOR_OK] = {"none", "all checks pass"},
    [BG_DOCTOR_DNS] = {"dns", "the host name does not resolve: check the messaging endpoint's "
                              "host and its DNS record"},
    [BG_DOCTOR_CONNECT_REFUSED] = {"connect_refused",
                                   "connection refused: nothing listens on that address and "
                                   "port (the bot or botgate is down, or the port is wrong)"},
    [BG_DOCTOR_CONNECT_TIMEOUT] = {"connect_timeout",
                                   "connection timed out: a firewall or network security group "
                                   "drops the traffic, or the host is down"},
    [BG_DOCTOR_CONNECT_ERROR] = {"connect_error",
                                 "the host cannot be reached: no route to it (see the tcp step)"},
    [BG_DOCTOR_TLS_HANDSHAKE] = {"tls_handshake",
                                 "the TLS handshake fails: the port does not speak TLS, or "
                                 "offers nothing the Connector accepts (see the tls step)"},
    [BG_DOCTOR_CERT_EXPIRED] = {"cert_expired",
                                "the certificate has expired: renew it and reload botgate "
                                "(SIGHUP)"},
    [BG_DOCTOR_CERT_NOT_YET_VALID] = {"cert_not_yet_valid",
                                      "the certificate is not valid yet: check its dates and "
                                      "the clocks"},
    [BG_DOCTOR_CERT_SELF_SIGNED] = {"cert_self_signed",
                                    "the certificate is self-signed: the Connector only trusts "
                                    "certificates from a public CA"},
    [BG_DOCTOR_CERT_UNTRUSTED] = {"cert_untrusted",
                                  "the certificate chain is not trusted: the server does not "
                                  "send its intermediate certificates, or its CA is not public"},
    [BG_DOCTOR_CERT_HOSTNAME] = {"cert_hostname_mismatch",
                                 "the certificate does not name this host: hostname mismatch"},
    [BG_DOCTOR_CERT_INVALID] = {"cert_invalid",
                                "the certificate fails verification (see the tls step)"},
    [BG_DOCTOR_CERT_EXPIRING] = {"cert_expiring",
                                 "the certificate expires within 30 days: renew it"},
    [BG_DOCTOR_HTTP_TOO_SLOW] = {"http_too_slow",
                                 "the bot is too slow: the Connector gives up at 15 s"},
    [BG_DOCTOR_HTTP_SLOW] =
        {"http_slow", "the bot is slow: close to the Connector's 15 s limit (over --warn-ms)"},
    [BG_DOCTOR_HTTP_NO_ANSWER] = {"http_no_answer",
                                  "the endpoint accepts connections and closes them without "
                                  "an answer: the bot (or a proxy before it) crashes or resets"},
    [BG_DOCTOR_HTTP_5XX] = {"http_5xx",
                            "the endpoint answers 5xx: the bot or botgate fails (see its log)"},
    [BG_DOCTOR_HTTP_UNAUTHORIZED] = {"http_unauthorized",
                                     "the endpoint refuses a tokenless ping: it is up and "
                                     "checks tokens (for uptime probes, botgate's "
                                     "policy.answer_ping answers it)"},
    [BG_DOCTOR_HTTP_4XX] = {"http_4xx",
                            "the endpoint refuses the POST (4xx): a wrong path, or a proxy "
                            "in front refuses it (see the http step)"},
    [BG_DOCTOR_HTTP_REDIRECT] = {"http_redirect",
                                 "the endpoint redirects: the Connector does not follow "
                                 "redirects, register the final URL"},
    [BG_DOCTOR_AAD_BAD_SECRET] = {"aad_bad_secret",
                                  "the app password is wrong: AAD refuses the client secret "
                                  "(MicrosoftAppPassword)"},
    [BG_DOCTOR_AAD_SECRET_EXPIRED] = {"aad_secret_expired",
                                      "the app password has expired: make a new client secret "
                                      "for the app registration (MicrosoftAppPassword)"},
    [BG_DOCTOR_AAD_APP_NOT_FOUND] = {"aad_app_not_found",
                                     "the app id is not found in the tenant: check "
                                     "MicrosoftAppId, and MicrosoftAppTenantId for a "
                                     "single-tenant app"},
    [BG_DOCTOR_AAD_TENANT_NOT_FOUND] = {"aad_tenant_not_found",
                                        "the tenant does not exist: check MicrosoftAppTenantId"},
    [BG_DOCTOR_AAD_INVALID_CLIENT] = {"aad_invalid_client",
                                      "AAD refuses the app's credentials (invalid_client): a "
                                      "wrong app id or a wrong secret"},
    [BG_DOCTOR_AAD_UNAUTHORIZED_CLIENT] = {"aad_unauthorized_client",
                                           "AAD does not let this app get tokens this way "
                                           "(unauthorized_client): check the app id, "
                                           "MicrosoftAppType and the tenant"},
    [BG_DOCTOR_AAD_INVALID_REQUEST] = {"aad_invalid_request",
                                       "AAD finds the token request malformed "
                                       "(invalid_request): check the tenant and the login URL"},
    [BG_DOCTOR_AAD_INVALID_SCOPE] = {"aad_invalid_scope",
                                     "AAD refuses the scope (invalid_scope): check relay.scope"},
    [BG_DOCTOR_AAD_OUTAGE] = {"aad_outage",
                              "AAD is unavailable (temporarily_unavailable or 5xx): an outage "
                              "on Microsoft's side, retry later"},
    [BG_DOCTOR_AAD_UNREACHABLE] = {"aad_unreachable",
                                   "the login endpoint cannot be reached: check outbound DNS, "
                                   "firewall and proxy"},
    [BG_DOCTOR_AAD_ERROR] = {"aad_error", "AAD refuses the token request (see the token step)"},
    [BG_DOCTOR_REDIS_UNREACHABLE] = {"redis_unreachable",
                                     "botgate's Redis is unreachable: botgate answers 503 to "
                                     "every activity"},
    [BG_DOCTOR_QUEUE_BACKLOG] = {"queue_backlog",
                                 "deliveries are backing up: the oldest pending activity has "
                                 "waited over 5 minutes (the bot is slow or down)"},
    [BG_DOCTOR_DEAD_LETTERS] = {"dead_letters",
                                "activities were dead-lettered: see `botgate dlq list`"},
    [BG_DOCTOR_RECENT_FAILURES] = {"recent_failures",
                                   "calls to the bot failed in the last 15 minutes: see "
                                   "`botgate failures`"},
};

const char *
bg_doctor_cause_code(bg_doctor_cause c)
{
    return (unsigned)c < BG_DOCTOR_CAUSE_COUNT ? causes[c].code : "unknown";
}

const char *
bg_doctor_cause_text(bg_doctor_cause c)
{
    return (unsigned)c < BG_DOCTOR_CAUSE_COUNT ? causes[c].text : "unknown cause";
}

const char *
bg_doctor_status_name(bg_doctor_status s)
{
    switch (s) {
    case BG_DOCTOR_PASS:
        return "pass";
    case BG_DOCTOR_WARN:
        return "warn";
    case BG_DOCTOR_FAIL:
        return "fail";
    default:
        return "skip";
    }
}

static bg_doctor_result
result(bg_doctor_status s, bg_doctor_cause c)
{
    return (bg_doctor_result){.status = s, .cause = c};
}

static const bg_doctor_result pass = {.status = BG_DOCTOR_PASS, .cause = BG_DOCTOR_OK};

bg_doctor_cause
bg_doctor_verdict(const bg_doctor_result *steps, size_t n, bool *failed)
{
    bg_doctor_cause warning = BG_DOCTOR_OK;
    *failed = false;
    for (size_t i = 0; i < n; i++) {
        if (steps[i].status == BG_DOCTOR_FAIL) {
            *failed = true;
            return steps[i].cause;
        }
        if (steps[i].status == BG_DOCTOR_WARN && warning == BG_DOCTOR_OK)
            warning = steps[i].cause;
    }
    return warning;
}

bg_doctor_result
bg_doctor_connect_result(int err)
{
    switch (err) {
    case 0:
        return pass;
    case ECONNREFUSED:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_CONNECT_REFUSED);
    case ETIMEDOUT:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_CONNECT_TIMEOUT);
    default:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_CONNECT_ERROR);
    }
}

bg_doctor_result
bg_doctor_tls_verify_result(const long *errors, size_t n)
{
    if (n == 0)
        return pass;
    switch (errors[0]) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_CERT_EXPIRED);
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_CERT_NOT_YET_VALID);
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_CERT_SELF_SIGNED);
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_CERT_UNTRUSTED);
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_CERT_HOSTNAME);
    default:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_CERT_INVALID);
    }
}

bg_doctor_result
bg_doctor_expiry_result(int64_t not_after_s, int64_t now_s, int64_t *days_left)
{
    int64_t left = not_after_s - now_s;
    /* whole days, toward zero: "expired 2 days ago" once two whole days have passed */
    *days_left = left / 86400;
    if (left <= 0)
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_CERT_EXPIRED);
    if (*days_left < BG_DOCTOR_CERT_WARN_DAYS)
        return result(BG_DOCTOR_WARN, BG_DOCTOR_CERT_EXPIRING);
    return pass;
}

bg_doctor_result
bg_doctor_http_result(bool answered, bool timed_out, long status, int64_t elapsed_ms,
                      int64_t warn_ms, int64_t fail_ms)
{
    if (timed_out || elapsed_ms > fail_ms)
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_HTTP_TOO_SLOW);
    if (!answered)
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_HTTP_NO_ANSWER);
    if (status >= 500 || status < 100)
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_HTTP_5XX);
    if (status == 401 || status == 403)
        return result(BG_DOCTOR_WARN, BG_DOCTOR_HTTP_UNAUTHORIZED);
    if (status >= 400)
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_HTTP_4XX);
    if (status >= 300 || status < 200)
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_HTTP_REDIRECT);
    if (elapsed_ms > warn_ms)
        return result(BG_DOCTOR_WARN, BG_DOCTOR_HTTP_SLOW);
    return pass;
}

long
bg_doctor_aadsts(const char *description)
{
    const char *p = description != NULL ? strstr(description, "AADSTS") : NULL;
    if (p == NULL)
        return 0;
    p += 6;
    long n = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 9; p++, digits++)
        n = n * 10 + (*p - '0');
    return digits > 0 ? n : 0;
}

static bool
is(const char *a, const char *b)
{
    return a != NULL && strcmp(a, b) == 0;
}

bg_doctor_result
bg_doctor_aad_result(long http_status, const char *error, const char *description, long aadsts)
{
    if (http_status == 200)
        return pass;
    if (http_status == 0)
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_AAD_UNREACHABLE);
    if (aadsts == 0)
        aadsts = bg_doctor_aadsts(description);
    switch (aadsts) {
    case 7000215:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_AAD_BAD_SECRET);
    case 7000222:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_AAD_SECRET_EXPIRED);
    case 700016:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_AAD_APP_NOT_FOUND);
    case 90002:
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_AAD_TENANT_NOT_FOUND);
    default:
        break;
    }
    if (is(error, "invalid_client"))
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_AAD_INVALID_CLIENT);
    if (is(error, "unauthorized_client"))
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_AAD_UNAUTHORIZED_CLIENT);
    if (is(error, "invalid_request"))
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_AAD_INVALID_REQUEST);
    if (is(error, "invalid_scope"))
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_AAD_INVALID_SCOPE);
    if (is(error, "temporarily_unavailable") || is(error, "server_error") || http_status >= 500)
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_AAD_OUTAGE);
    return result(BG_DOCTOR_FAIL, BG_DOCTOR_AAD_ERROR);
}

bg_doctor_result
bg_doctor_redis_result(const bg_doctor_queue *q)
{
    if (!q->reachable)
        return result(BG_DOCTOR_FAIL, BG_DOCTOR_REDIS_UNREACHABLE);
    if (q->pending > 0 && q->oldest_pending_s > BG_DOCTOR_PENDING_WARN_S)
        return result(BG_DOCTOR_WARN, BG_DOCTOR_QUEUE_BACKLOG);
    if (q->dead_letters > 0)
        return result(BG_DOCTOR_WARN, BG_DOCTOR_DEAD_LETTERS);
    if (q->recent_failures > 0)
        return result(BG_DOCTOR_WARN, BG_DOCTOR_RECENT_FAILURES);
    return pass;
}
