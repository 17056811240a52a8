/*
 * fake_connector: the Bot Framework's side of authentication, for tests and benchmarks.
 *
 *   fake_connector serve  --dir DIR [--port PORT] [--listen ADDR] [--http1-only]
 *   fake_connector mint   --dir DIR [--kid K] [--aud APPID] [--serviceurl URL] [--iss ISS]
 *                         [--exp-in S] [--nbf-in S] [--alg RS256] [--count N] [--claims JSON]
 *                         [--emulator [--ver 1.0|2.0]]
 *   fake_connector rotate --dir DIR --kid NEWKID [--drop OLDKID] [--endorse a,b,c]
 *                         [--no-endorsements] [--emulator] [--bits N]
 *
 * `serve` is a real HTTPS server (h2o's evloop, HTTP/1.1 and HTTP/2 over TLS) with its own
 * CA, serving the OpenID metadata document and the JWKS of the key files in DIR, read
 * afresh on every request, so that a test rotates keys, takes the server down
 * (DIR/down) or slows it (DIR/slow_ms) by changing files, without a restart. It counts
 * requests per path and serves the counts at /stats. See tests/tools/README.md.
 *
 * DIR layout (made on first start where missing):
 *   ca.pem ca-key.pem              the CA botgate trusts (auth.ca_file)
 *   server.pem server-key.pem      the serving certificate (127.0.0.1, ::1, localhost)
 *   keys/<kid>.pem                 RSA signing keys (PKCS#8 PEM); kid = the file name
 *   keys/<kid>.endorsements        channel ids, one a line; absent = no "endorsements"
 *                                  member in the JWK; empty = an empty list
 *   emulator-keys/...              the same for the Emulator's (AAD's) key set
 *   down, slow_ms                  switches a test toggles at run time
 *   token_down, token_error,       the token endpoint's switches (tests/tools/README.md)
 *   token_expires_in, v3_statuses  and the /v3 routes' answers
 *   revoke                         one-shot: the tokens issued so far are refused from now
 *   token_requests.jsonl           one line per token request received
 *   v3_requests.jsonl              one line per /v3/conversations/... request received
 *   ready                          written once listening: the port, then a newline
 */
#include "cert.h"
#include "mint.h"
#include "tool_common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <h2o.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define PROG "fake_connector"
#define PATH_CAP TOOL_PATH_CAP
#define MAX_KEYS 64
#define MAX_STATS_PATHS 256
#define MAX_ISSUED 1024

#define BF_ISSUER "https://api.botframework.com"
/* The Emulator's tokens come from AAD, tenant botframework.com (botbuilder-js
 * authenticationConstants.ts / emulatorValidation.ts). */
#define EMU_TENANT "d6d49420-f39b-4df7-a1dc-d59a935871db"
#define EMU_ISSUER_V1 "https://sts.windows.net/" EMU_TENANT "/"
#define EMU_ISSUER_V2 "https://login.microsoftonline.com/" EMU_TENANT "/v2.0"

const char tool_prog[] = PROG;

static const char *const default_endorsements[] = {"msteams", "webchat", "directline", "test",
                                                   NULL};

/* Writes a private key (key) or a certificate (cert) as a PEM file, through rename(). */
static int
save_pem(const char *path, EVP_PKEY *key, X509 *cert)
{
    size_t len = 0;
    char *pem = key != NULL ? bgt_pem_private_key(key, &len) : bgt_pem_cert(cert, &len);
    int rc = pem != NULL ? tool_write_file_atomic(path, pem, len, key != NULL ? 0600 : 0644) : -1;
    free(pem);
    return rc;
}

/* ---- the CA and the serving certificate ---------------------------------------------------- */

/* A certificate for key, signed by issuer_key (issuer NULL: self-signed). */
static X509 *
make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca)
{
    X509 *cert = bgt_cert_new(key, "botgate tests", cn, 365);
    if (cert == NULL)
        return NULL;
    X509_set_issuer_name(cert, X509_get_subject_name(issuer != NULL ? issuer : cert));
    X509 *iss = issuer != NULL ? issuer : cert;
    if (bgt_cert_add_ext(cert, iss, NID_subject_key_identifier, "hash") != 0 ||
        bgt_cert_add_ext(cert, iss, NID_authority_key_identifier, "keyid:always") != 0)
        goto fail;
    if (ca) {
        if (bgt_cert_add_ext(cert, iss, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
            bgt_cert_add_ext(cert, iss, NID_key_usage, "critical,keyCertSign,cRLSign") != 0)
            goto fail;
    } else {
        if (bgt_cert_add_ext(cert, iss, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
            bgt_cert_add_ext(cert, iss, NID_key_usage, "critical,digitalSignature") != 0 ||
            bgt_cert_add_ext(cert, iss, NID_ext_key_usage, "serverAuth") != 0 ||
            bgt_cert_add_ext(cert, iss, NID_subject_alt_name,
                             "DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1") != 0)
            goto fail;
    }
    if (X509_sign(cert, issuer_key != NULL ? issuer_key : key, EVP_sha256()) == 0)
        goto fail;
    return cert;
fail:
    X509_free(cert);
    return NULL;
}

/* Makes DIR/ca.pem and DIR/server.pem (and their keys) where missing. A new CA means a new
 * serving certificate too. */
static int
ensure_certs(const char *dir)
{
    char ca_path[PATH_CAP], ca_key_path[PATH_CAP], srv_path[PATH_CAP], srv_key_path[PATH_CAP];
    tool_join(ca_path, dir, "ca.pem");
    tool_join(ca_key_path, dir, "ca-key.pem");
    tool_join(srv_path, dir, "server.pem");
    tool_join(srv_key_path, dir, "server-key.pem");
    EVP_PKEY *ca_key = NULL, *srv_key = NULL;
    X509 *ca = NULL, *srv = NULL;
    int rc = -1;
    bool new_ca = false;
    if (tool_exists(ca_path) && tool_exists(ca_key_path)) {
        ca = bgt_pem_read_cert(ca_path);
        ca_key = bgt_pem_read_private_key(ca_key_path);
        if (ca == NULL || ca_key == NULL) {
            fprintf(stderr, PROG ": cannot read %s or %s\n", ca_path, ca_key_path);
            goto out;
        }
    } else {
        ca_key = EVP_EC_gen("P-256");
        ca = ca_key != NULL ? make_cert(ca_key, "fake_connector test CA", NULL, NULL, true) : NULL;
        if (ca == NULL || save_pem(ca_key_path, ca_key, NULL) != 0 ||
            save_pem(ca_path, NULL, ca) != 0)
            goto out;
        new_ca = true;
        fprintf(stderr, PROG ": made a CA: %s\n", ca_path);
    }
    if (new_ca || !tool_exists(srv_path) || !tool_exists(srv_key_path)) {
        srv_key = EVP_EC_gen("P-256");
        srv = srv_key != NULL ? make_cert(srv_key, "localhost", ca, ca_key, false) : NULL;
        if (srv == NULL || save_pem(srv_key_path, srv_key, NULL) != 0 ||
            save_pem(srv_path, NULL, srv) != 0)
            goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, PROG ": could not make the certificates in %s\n", dir);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    X509_free(ca);
    X509_free(srv);
    return rc;
}

/* ---- key sets -------------------------------------------------------------------------------- */

/* One key file with its endorsements; the endorsement strings point into `lines`. */
typedef struct loaded_key {
    bgt_key key;
    char *lines;
} loaded_key;

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
valid_kid(const char *kid)
{
    size_t n = strlen(kid);
    if (n == 0 || n >= sizeof(((bgt_key *)0)->kid))
        return false;
    for (const char *p = kid; *p; p++)
        if (*p == '/' || *p < 0x21 || *p == 0x7f)
            return false;
    return kid[0] != '.';
}

/* The kids of the key files (<kid>.pem) in dir, in name order (malloc'd strings); returns how many,
 * -1 when the directory cannot be read. */
static int
list_kids(const char *dir, char **kids, int cap)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < cap) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".pem") != 0 || e->d_name[0] == '.')
            continue;
        kids[n] = strndup(e->d_name, len - 4);
        if (kids[n] != NULL)
            n++;
    }
    closedir(d);
    qsort(kids, (size_t)n, sizeof(*kids), cmp_names);
    return n;
}

/* Reads dir/<kid>.endorsements into k (absent file: no "endorsements" member). */
static void
load_endorsements(loaded_key *k, const char *dir)
{
    char name[PATH_CAP], path[PATH_CAP];
    snprintf(name, sizeof(name), "%s.endorsements", k->key.kid);
    tool_join(path, dir, name);
    k->lines = tool_read_file(path, NULL, NULL);
    if (k->lines == NULL) {
        k->key.no_endorsements_field = 1;
        return;
    }
    size_t n = 0, max = sizeof(k->key.endorsements) / sizeof(k->key.endorsements[0]) - 1;
    char *save = NULL;
    for (char *line = strtok_r(k->lines, "\r\n", &save); line != NULL;
         line = strtok_r(NULL, "\r\n", &save)) {
        while (*line == ' ' || *line == '\t')
            line++;
        char *end = line + strlen(line);
        while (end > line && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*line == '\0' || *line == '#')
            continue;
        if (n == max) {
            fprintf(stderr, PROG ": %s: more than %zu channels, the rest ignored\n", path, max);
            break;
        }
        k->key.endorsements[n++] = line;
    }
    k->key.endorsements[n] = NULL;
}

static void
free_keys(loaded_key *keys, int n)
{
    for (int i = 0; i < n; i++) {
        bgt_key_free(&keys[i].key);
        free(keys[i].lines);
    }
}

/* Loads every key file of dir (name order). Unreadable files are skipped with a message.
 * Returns the count (0 for a missing directory). */
static int
load_keys(const char *dir, loaded_key *keys, int cap)
{
    char *kids[MAX_KEYS];
    int nk = list_kids(dir, kids, cap < MAX_KEYS ? cap : MAX_KEYS);
    int n = 0;
    for (int i = 0; i < nk; i++) {
        char name[PATH_CAP], path[PATH_CAP];
        snprintf(name, sizeof(name), "%s.pem", kids[i]);
        tool_join(path, dir, name);
        memset(&keys[n], 0, sizeof(keys[n]));
        if (!valid_kid(kids[i]) || bgt_key_load(&keys[n].key, path, kids[i]) != 0) {
            fprintf(stderr, PROG ": %s: not a usable key file, left out of the JWKS\n", path);
        } else {
            load_endorsements(&keys[n], dir);
            n++;
        }
        free(kids[i]);
    }
    return n;
}

/* Writes the endorsements file (endorse NULL: removes it, so the JWK has no member), then
 * the key file: a reader sees the key only with its endorsements already in place. */
static int
write_key(const char *dir, const char *kid, int bits, const char *const *endorse)
{
    char name[PATH_CAP], path[PATH_CAP], epath[PATH_CAP];
    snprintf(name, sizeof(name), "%s.endorsements", kid);
    tool_join(epath, dir, name);
    snprintf(name, sizeof(name), "%s.pem", kid);
    tool_join(path, dir, name);
    if (endorse != NULL) {
        char buf[1024] = "";
        size_t off = 0;
        for (size_t i = 0; endorse[i] != NULL && off < sizeof(buf); i++)
            off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s\n", endorse[i]);
        if (off >= sizeof(buf) || tool_write_file_atomic(epath, buf, off, 0644) != 0)
            return -1;
    } else if (unlink(epath) != 0 && errno != ENOENT) {
        return -1;
    }
    bgt_key key;
    if (bgt_key_generate_rsa(&key, kid, bits) != 0) {
        fprintf(stderr, PROG ": RSA key generation failed\n");
        return -1;
    }
    size_t len = 0;
    char *pem = bgt_pem_private_key(key.pkey, &len);
    int rc = pem != NULL ? tool_write_file_atomic(path, pem, len, 0600) : -1;
    free(pem);
    bgt_key_free(&key);
    return rc;
}

/* A missing key directory is made with one key: keys/key-1 endorsed for the default
 * channels, emulator-keys/emulator-key-1 without endorsements (as AAD publishes its keys).
 * An existing directory is left as it is, even empty: a test may want an empty JWKS. */
static int
ensure_keys(const char *dir)
{
    char path[PATH_CAP];
    tool_join(path, dir, "keys");
    if (!tool_exists(path)) {
        if (tool_mkdir(path) != 0 || write_key(path, "key-1", 2048, default_endorsements) != 0)
            return -1;
        fprintf(stderr, PROG ": made signing key %s/key-1.pem\n", path);
    }
    tool_join(path, dir, "emulator-keys");
    if (!tool_exists(path)) {
        if (tool_mkdir(path) != 0 || write_key(path, "emulator-key-1", 2048, NULL) != 0)
            return -1;
        fprintf(stderr, PROG ": made signing key %s/emulator-key-1.pem\n", path);
    }
    return 0;
}

/* ---- the server ------------------------------------------------------------------------------ */

typedef struct stat_row {
    char *path;
    unsigned long count;
} stat_row;

/* A response held back for slow_ms (in the server's delay queue, sorted by due time). */
typedef struct pending {
    h2o_timeout_entry_t entry;
    h2o_req_t *req;
    int status;
    h2o_iovec_t body;
    uint64_t received_at;
} pending;

/* An access token the token endpoint issued, which the /v3 routes accept until expiry. */
typedef struct issued_token {
    char value[96];
    int64_t expires_ms; /* wall clock */
} issued_token;

typedef struct server {
    tool_server base; /* the listener, the connections, the delay queue */
    issued_token issued[MAX_ISSUED];
    size_t n_issued; /* a ring: the oldest is overwritten */
    unsigned long token_seq;
    SSL_CTX *ssl_ctx;
    stat_row stats[MAX_STATS_PATHS];
    size_t n_stats;
    unsigned long total;
} server;

static server srv;

static void
count_request(h2o_iovec_t path)
{
    srv.total++;
    for (size_t i = 0; i < srv.n_stats; i++)
        if (h2o_memis(srv.stats[i].path, strlen(srv.stats[i].path), path.base, path.len)) {
            srv.stats[i].count++;
            return;
        }
    if (srv.n_stats == MAX_STATS_PATHS) /* a scanner: the last row takes the rest */
        srv.stats[MAX_STATS_PATHS - 1].count++;
    else if ((srv.stats[srv.n_stats].path = strndup(path.base, path.len)) != NULL)
        srv.stats[srv.n_stats++].count = 1;
}

static void
reset_stats(void)
{
    for (size_t i = 0; i < srv.n_stats; i++)
        free(srv.stats[i].path);
    srv.n_stats = 0;
    srv.total = 0;
}

static char *
stats_json(void)
{
    json_t *paths = json_object();
    for (size_t i = 0; i < srv.n_stats; i++)
        json_object_set_new(paths, srv.stats[i].path, json_integer((json_int_t)srv.stats[i].count));
    json_t *doc = json_pack("{s:o,s:I}", "requests", paths, "total", (json_int_t)srv.total);
    char *out = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    return out;
}

static char *
keys_json(const char *sub)
{
    char path[PATH_CAP];
    loaded_key keys[MAX_KEYS];
    int n = load_keys(tool_join(path, srv.base.dir, sub), keys, MAX_KEYS);
    bgt_key plain[MAX_KEYS];
    for (int i = 0; i < n; i++)
        plain[i] = keys[i].key;
    char *out = bgt_jwks_json(plain, (size_t)n);
    free_keys(keys, n);
    return out;
}

static char *
openid_json(const char *issuer, const char *jwks_path)
{
    char uri[256];
    snprintf(uri, sizeof(uri), "https://%s:%d%s", srv.base.host, srv.base.port, jwks_path);
    return bgt_openid_json(issuer, uri);
}

static int
slow_ms(void)
{
    char path[PATH_CAP];
    char *text = tool_read_file(tool_join(path, srv.base.dir, "slow_ms"), NULL, NULL);
    int ms = text != NULL ? atoi(text) : 0;
    free(text);
    return ms > 0 ? ms : 0;
}

static void
log_request(h2o_req_t *req, int status, size_t len, uint64_t received_at)
{
    tool_log("%.*s %.*s %d %zu bytes %" PRIu64 " ms", (int)req->method.len, req->method.base,
             (int)req->path.len, req->path.base, status, len, h2o_now(srv.base.loop) - received_at);
}

static void
send_response(h2o_req_t *req, int status, h2o_iovec_t body, uint64_t received_at)
{
    log_request(req, status, body.len, received_at);
    req->res.status = status;
    req->res.reason = tool_reason(status);
    req->res.content_length = body.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    if (status == 503)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    h2o_send_inline(req, body.base, body.len);
}

static void
on_pending_due(h2o_timeout_entry_t *entry)
{
    pending *p = H2O_STRUCT_FROM_MEMBER(pending, entry, entry);
    send_response(p->req, p->status, p->body, p->received_at);
}

/* The request went away (client closed) before its answer was due. */
static void
on_pending_dispose(void *data)
{
    pending *p = data;
    if (h2o_timeout_is_linked(&p->entry))
        h2o_timeout_unlink(&p->entry);
}

static void
defer_response(h2o_req_t *req, int status, h2o_iovec_t body, uint64_t received_at, int delay)
{
    pending *p = h2o_mem_alloc_shared(&req->pool, sizeof(*p), on_pending_dispose);
    *p = (pending){.req = req, .status = status, .body = body, .received_at = received_at};
    p->entry.cb = on_pending_due;
    tool_server_schedule(&srv.base, &p->entry, received_at + (uint64_t)delay);
}

/* Answers every held-back response now (the server is stopping). */
static void
flush_pending(void)
{
    h2o_linklist_t *queue = &srv.base.delay_queue._entries;
    while (!h2o_linklist_is_empty(queue)) {
        h2o_timeout_entry_t *e = H2O_STRUCT_FROM_MEMBER(h2o_timeout_entry_t, _link, queue->next);
        h2o_timeout_unlink(e);
        e->cb(e);
    }
}

/* ---- the token endpoint and the Connector's /v3 routes ------------------------------------ */

static int64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends one JSON object and a newline to DIR/name (the record a test reads). */
static void
record_line(const char *name, json_t *doc)
{
    char path[PATH_CAP];
    char *line = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (line == NULL)
        return;
    int fd =
        open(tool_join(path, srv.base.dir, name), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        size_t n = strlen(line);
        line[n] = '\n'; /* replaces the NUL: written with its length */
        if (tool_write_all(fd, line, n + 1) != 0)
            tool_log("append to %s: %s", name, strerror(errno));
        close(fd);
    }
    free(line);
}

/* The value of form field `name` in an application/x-www-form-urlencoded body, decoded
 * ('+' is a space), as a malloc'd string; NULL when absent. */
static char *
form_value(h2o_iovec_t body, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = body.base, *end = body.base + body.len;
    while (p != NULL && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp != NULL ? amp : end;
        if ((size_t)(e - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *v = p + nlen + 1;
            char *out = malloc((size_t)(e - v) + 1);
            size_t n = 0;
            if (out == NULL)
                return NULL;
            for (; v < e; v++) {
                if (*v == '+') {
                    out[n++] = ' ';
                } else if (*v == '%' && e - v >= 3) {
                    char hex[3] = {v[1], v[2], 0};
                    out[n++] = (char)strtol(hex, NULL, 16);
                    v += 2;
                } else {
                    out[n++] = *v;
                }
            }
            out[n] = '\0';
            return out;
        }
        p = amp != NULL ? amp + 1 : NULL;
    }
    return NULL;
}

/* A number from DIR/name, or def when the file is absent. */
static long
file_number(const char *name, long def)
{
    char path[PATH_CAP];
    char *text = tool_read_file(tool_join(path, srv.base.dir, name), NULL, NULL);
    long v = text != NULL ? atol(text) : def;
    free(text);
    return v;
}

/*
 * POST /{tenant}/oauth2/v2.0/token: AAD's client-credentials grant. Answers (in this
 * order) DIR/token_down: 503 temporarily_unavailable; DIR/token_error: 401 with the file
 * as body; a form without grant_type=client_credentials, client_id, client_secret and
 * scope: 400 invalid_request; else 200 with a fresh token valid DIR/token_expires_in s
 * (default 3600). Every request is a line of DIR/token_requests.jsonl.
 */
static int
token_endpoint(h2o_req_t *req, const char *tenant, size_t tenant_len, int *status, char **json)
{
    char path[PATH_CAP];
    char *grant = form_value(req->entity, "grant_type");
    char *client_id = form_value(req->entity, "client_id");
    char *secret = form_value(req->entity, "client_secret");
    char *scope = form_value(req->entity, "scope");
    char token[96] = "";
    long expires_in = file_number("token_expires_in", 3600);
    char *err_body = tool_read_file(tool_join(path, srv.base.dir, "token_error"), NULL, NULL);
    if (tool_exists(tool_join(path, srv.base.dir, "token_down"))) {
        *status = 503;
        *json = strdup("{\"error\":\"temporarily_unavailable\",\"error_description\":"
                       "\"AADSTS50196: the token endpoint is down (token_down exists)\"}");
    } else if (err_body != NULL) {
        *status = 401;
        *json = err_body;
        err_body = NULL;
    } else if (grant == NULL || strcmp(grant, "client_credentials") != 0 || client_id == NULL ||
               client_id[0] == '\0' || secret == NULL || secret[0] == '\0' || scope == NULL ||
               scope[0] == '\0') {
        *status = 400;
        *json = strdup("{\"error\":\"invalid_request\",\"error_description\":\"AADSTS900144: "
                       "grant_type=client_credentials, client_id, client_secret and scope are "
                       "required\"}");
    } else {
        unsigned char rnd[8] = {0};
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            memset(rnd, 0x5a, sizeof(rnd));
        snprintf(token, sizeof(token), "fake-aad-%lu-%02x%02x%02x%02x%02x%02x%02x%02x",
                 ++srv.token_seq, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
        issued_token *it = &srv.issued[srv.n_issued++ % MAX_ISSUED];
        snprintf(it->value, sizeof(it->value), "%s", token);
        it->expires_ms = wall_ms() + expires_in * 1000;
        json_t *doc = json_pack("{s:s,s:I,s:I,s:s}", "token_type", "Bearer", "expires_in",
                                (json_int_t)expires_in, "ext_expires_in", (json_int_t)expires_in,
                                "access_token", token);
        *status = 200;
        *json = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
    }
    record_line("token_requests.jsonl",
                json_pack("{s:s%,s:s?,s:s?,s:s?,s:s?,s:i,s:s,s:I}", "tenant", tenant, tenant_len,
                          "grant_type", grant, "client_id", client_id, "client_secret", secret,
                          "scope", scope, "status", *status, "access_token", token, "t_ms",
                          (json_int_t)wall_ms()));
    free(grant);
    free(client_id);
    free(secret);
    free(scope);
    free(err_body);
    return 0;
}

/* DIR/revoke: every token issued so far is refused from now on, as if expired (a rotated
 * secret, a revoked token); tokens issued later are not. Consumed: the file is removed. */
static void
apply_revoke(void)
{
    char path[PATH_CAP];
    if (!tool_exists(tool_join(path, srv.base.dir, "revoke")))
        return;
    size_t n = srv.n_issued < MAX_ISSUED ? srv.n_issued : MAX_ISSUED;
    for (size_t k = 0; k < n; k++)
        srv.issued[k].expires_ms = 0;
    if (unlink(path) != 0)
        tool_log("unlink %s: %s", path, strerror(errno));
    tool_log("revoke: the %zu tokens issued so far are refused from now on", n);
}

/* "Authorization: Bearer <a token this server issued and that has not expired>". */
static bool
authorized(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len <= 7 || memcmp(v.base, "Bearer ", 7) != 0)
        return false;
    int64_t now = wall_ms();
    size_t n = srv.n_issued < MAX_ISSUED ? srv.n_issued : MAX_ISSUED;
    for (size_t k = 0; k < n; k++)
        if (h2o_memis(v.base + 7, v.len - 7, srv.issued[k].value, strlen(srv.issued[k].value)))
            return now < srv.issued[k].expires_ms;
    return false;
}

/* The next line of DIR/v3_statuses ("STATUS [RETRY-AFTER]"), consumed; the last one stays.
 * 200 when there is no file. */
static int
next_v3_status(char *retry_after, size_t cap)
{
    char path[PATH_CAP];
    size_t len = 0;
    char *text = tool_read_file(tool_join(path, srv.base.dir, "v3_statuses"), &len, NULL);
    retry_after[0] = '\0';
    if (text == NULL)
        return 200;
    char *nl = strchr(text, '\n');
    int status = atoi(text);
    char *sp = strchr(text, ' ');
    if (sp != NULL && (nl == NULL || sp < nl))
        snprintf(retry_after, cap, "%.*s", (int)strcspn(sp + 1, "\n"), sp + 1);
    if (nl != NULL && nl[1] != '\0')
        tool_write_file_atomic(path, nl + 1, strlen(nl + 1), 0644);
    free(text);
    return status >= 100 && status <= 599 ? status : 200;
}

/*
 * Any method on .../v3/conversations/...: the Connector's activity routes. Recorded in
 * DIR/v3_requests.jsonl (method, raw path, Authorization, Content-Type, body, status);
 * 401 without a token this server issued, else DIR/v3_statuses's next status (200 by
 * default: {"id":"<activity id>"} like the Connector).
 */
static void
v3_route(h2o_req_t *req, int *status, char **json, char *retry_after, size_t cap)
{
    ssize_t az = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    ssize_t ct = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (!authorized(req)) {
        *status = 401;
        *json = strdup("{\"message\":\"Authorization has been denied for this request.\"}");
    } else {
        *status = next_v3_status(retry_after, cap);
        char id[64];
        snprintf(id, sizeof(id), "1%012lu", (unsigned long)(wall_ms() % 1000000000000LL));
        json_t *doc = *status < 300 ? json_pack("{s:s}", "id", id)
                                    : json_pack("{s:{s:s,s:s}}", "error", "code", "ServiceError",
                                                "message", "v3_statuses said so");
        *json = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
    }
    record_line("v3_requests.jsonl",
                json_pack("{s:s%,s:s%,s:s%,s:s%,s:s%,s:i,s:I}", "method", req->method.base,
                          req->method.len, "path", req->input.path.base, req->input.path.len,
                          "authorization", az >= 0 ? req->headers.entries[az].value.base : "",
                          az >= 0 ? req->headers.entries[az].value.len : (size_t)0, "content_type",
                          ct >= 0 ? req->headers.entries[ct].value.base : "",
                          ct >= 0 ? req->headers.entries[ct].value.len : (size_t)0, "body",
                          req->entity.base != NULL ? req->entity.base : "", req->entity.len,
                          "status", *status, "t_ms", (json_int_t)wall_ms()));
}

static int
on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    uint64_t received_at = h2o_now(srv.base.loop);
    bool is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                  h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    bool is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    char path[PATH_CAP];

    /* the test's own window: neither counted, nor down, nor slow */
    if (tool_path_is(req, "/stats") || tool_path_is(req, "/stats/reset")) {
        if (tool_path_is(req, "/stats/reset")) {
            if (!is_post) {
                send_response(req, 405, h2o_iovec_init(H2O_STRLIT("{\"error\":\"use POST\"}")),
                              received_at);
                return 0;
            }
            reset_stats();
        }
        char *json = stats_json();
        h2o_iovec_t body = json != NULL ? h2o_strdup(&req->pool, json, SIZE_MAX)
                                        : h2o_iovec_init(H2O_STRLIT("{}"));
        free(json);
        send_response(req, json != NULL ? 200 : 500, body, received_at);
        return 0;
    }

    count_request(req->path_normalized);
    int status = 200;
    char *json = NULL;
    const char *fixed = NULL;
    const char *v3 = memmem(req->path.base, req->path.len, "/v3/conversations/", 18);
    const char *tok =
        memmem(req->path_normalized.base, req->path_normalized.len, "/oauth2/v2.0/token", 18);
    char retry_after[32] = "";
    if (v3 != NULL || tok != NULL)
        apply_revoke();
    if (tool_exists(tool_join(path, srv.base.dir, "down"))) {
        status = 503;
        fixed = "{\"error\":\"down (the file down exists)\"}";
    } else if (v3 != NULL) {
        v3_route(req, &status, &json, retry_after, sizeof(retry_after));
    } else if (is_post && tok != NULL && tok > req->path_normalized.base + 1 &&
               tok + 18 == req->path_normalized.base + req->path_normalized.len &&
               memchr(req->path_normalized.base + 1, '/',
                      (size_t)(tok - req->path_normalized.base - 1)) == NULL) {
        token_endpoint(req, req->path_normalized.base + 1,
                       (size_t)(tok - req->path_normalized.base - 1), &status, &json);
    } else if (!is_get) {
        status = 405;
        fixed = "{\"error\":\"method not allowed\"}";
    } else if (tool_path_is(req, "/v1/.well-known/openidconfiguration")) {
        json = openid_json(BF_ISSUER, "/v1/keys");
    } else if (tool_path_is(req, "/v1/keys")) {
        json = keys_json("keys");
    } else if (tool_path_is(req, "/emulator/.well-known/openid-configuration")) {
        json = openid_json(EMU_ISSUER_V2, "/emulator/keys");
    } else if (tool_path_is(req, "/emulator/keys")) {
        json = keys_json("emulator-keys");
    } else {
        status = 404;
        fixed = "{\"error\":\"not found\"}";
    }
    if (retry_after[0] != '\0')
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                       h2o_strdup(&req->pool, retry_after, SIZE_MAX).base, strlen(retry_after));
    if (status == 200 && json == NULL) {
        status = 500;
        fixed = "{\"error\":\"could not build the document\"}";
    }
    h2o_iovec_t body = json != NULL ? h2o_strdup(&req->pool, json, SIZE_MAX)
                                    : h2o_iovec_init(fixed, strlen(fixed));
    free(json);
    int delay = srv.base.stopping ? 0 : slow_ms();
    if (delay > 0)
        defer_response(req, status, body, received_at, delay);
    else
        send_response(req, status, body, received_at);
    return 0;
}

static SSL_CTX *
make_ssl_ctx(const char *dir, bool http1_only)
{
    char cert[PATH_CAP], key[PATH_CAP];
    tool_join(cert, dir, "server.pem");
    tool_join(key, dir, "server-key.pem");
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char ossl[200];
        ERR_error_string_n(ERR_get_error(), ossl, sizeof(ossl));
        fprintf(stderr, PROG ": %s / %s: %s\n", cert, key, ossl);
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* h2o_alpn_protocols: h2 and http/1.1, as login.botframework.com offers them */
    static const h2o_iovec_t http1_alpn[] = {{H2O_STRLIT("http/1.1")}, {NULL, 0}};
    h2o_ssl_register_alpn_protocols(ctx, http1_only ? http1_alpn : h2o_alpn_protocols);
    return ctx;
}

/* The stop: no new connections; held-back answers sent now; connections asked to close,
 * then idle keep-alive ones (libcurl's pool in botgate) cut, so that every allocation is
 * returned before exit and ASan's leak check has nothing to report. */
static void
stop_server(void)
{
    tool_server_stop_listening(&srv.base);
    flush_pending();
    tool_server_close_conns(&srv.base);
    flush_pending();
}

typedef struct serve_opts {
    const char *dir;
    const char *listen;
    int port;
    bool http1_only;
} serve_opts;

static int
cmd_serve(const serve_opts *o)
{
    char path[PATH_CAP];
    if (tool_mkdir(o->dir) != 0 || ensure_certs(o->dir) != 0 || ensure_keys(o->dir) != 0)
        return 1;

    memset(&srv, 0, sizeof(srv));
    if ((srv.ssl_ctx = make_ssl_ctx(o->dir, o->http1_only)) == NULL)
        return 1;
    tool_server_init(&srv.base, o->dir, on_req, srv.ssl_ctx, 0);

    int status = 1;
    if (tool_server_start(&srv.base, o->listen, o->port) != 0)
        goto out;
    fprintf(stderr,
            PROG ": listening on https://%s:%d (%s); CA %s\n"
                 "  metadata https://%s:%d/v1/.well-known/openidconfiguration\n"
                 "  emulator https://%s:%d/emulator/.well-known/openid-configuration\n",
            srv.base.host, srv.base.port, o->http1_only ? "HTTP/1.1" : "HTTP/1.1 and HTTP/2",
            tool_join(path, o->dir, "ca.pem"), srv.base.host, srv.base.port, srv.base.host,
            srv.base.port);

    int sig = tool_server_run(&srv.base);
    if (sig < 0)
        goto out;
    fprintf(stderr, PROG ": %s: stopping (%lu requests served)\n", strsignal(sig), srv.total);
    status = 0;
out:
    stop_server();
    tool_server_dispose(&srv.base);
    SSL_CTX_free(srv.ssl_ctx);
    reset_stats();
    return status;
}

/* ---- mint --------------------------------------------------------------------------------------
 */

typedef struct mint_opts {
    const char *dir;
    const char *kid;
    const char *aud;
    const char *serviceurl;
    const char *iss;
    const char *alg;
    const char *claims;
    const char *ver;
    long exp_in, nbf_in;
    long count;
    bool emulator;
} mint_opts;

static int
cmd_mint(const mint_opts *o)
{
    char keydir[PATH_CAP], path[PATH_CAP], name[PATH_CAP];
    tool_join(keydir, o->dir, o->emulator ? "emulator-keys" : "keys");
    char *kids[MAX_KEYS];
    char kid[64];
    if (o->kid != NULL) {
        snprintf(kid, sizeof(kid), "%s", o->kid);
    } else {
        int n = list_kids(keydir, kids, MAX_KEYS);
        if (n <= 0)
            tool_die("no key files in %s (start `serve` once, or `rotate`)", keydir);
        snprintf(kid, sizeof(kid), "%s", kids[0]);
        for (int i = 0; i < n; i++)
            free(kids[i]);
    }
    const char *aud = o->aud != NULL ? o->aud : getenv("MicrosoftAppId");
    if (aud == NULL || aud[0] == '\0')
        tool_die("mint: --aud APPID is required (or MicrosoftAppId in the environment)");
    if (!valid_kid(kid))
        tool_die("mint: bad kid '%s'", kid);
    snprintf(name, sizeof(name), "%s.pem", kid);
    bgt_key key;
    if (bgt_key_load(&key, tool_join(path, keydir, name), kid) != 0)
        tool_die("mint: cannot load %s", path);

    const char *ver = o->ver != NULL ? o->ver : "1.0";
    bool v2 = strcmp(ver, "2.0") == 0;
    const char *iss = o->iss != NULL ? o->iss
                      : o->emulator  ? (v2 ? EMU_ISSUER_V2 : EMU_ISSUER_V1)
                                     : BF_ISSUER;
    /* Channel tokens carry serviceurl; the Emulator's AAD tokens do not. "" leaves it out. */
    const char *serviceurl = o->serviceurl != NULL ? o->serviceurl
                             : o->emulator         ? ""
                                                   : "https://smba.trafficmanager.net/teams/";
    bool user_jti = o->claims != NULL && strstr(o->claims, "\"jti\"") != NULL;
    int64_t now = (int64_t)time(NULL);
    uint64_t salt = 0;
    if (getrandom(&salt, sizeof(salt), 0) != sizeof(salt))
        salt = (uint64_t)getpid() << 32 ^ (uint64_t)now;

    int rc = 0;
    for (long i = 0; i < o->count; i++) {
        /* A jti makes every token distinct (RSASSA-PKCS1-v1_5 is deterministic, so two
         * tokens minted in the same second would otherwise be the same bytes). */
        char extra[2048] = "";
        size_t off = 0;
        if (!user_jti)
            off += (size_t)snprintf(extra + off, sizeof(extra) - off,
                                    "\"jti\":\"%016" PRIx64 "-%ld\"", salt, i);
        if (o->emulator)
            off += (size_t)snprintf(extra + off, sizeof(extra) - off,
                                    "%s\"ver\":\"%s\",\"%s\":\"%s\",\"tid\":\"" EMU_TENANT "\"",
                                    off > 0 ? "," : "", ver, v2 ? "azp" : "appid", aud);
        if (o->claims != NULL && o->claims[0] != '\0')
            off += (size_t)snprintf(extra + off, sizeof(extra) - off, "%s%s", off > 0 ? "," : "",
                                    o->claims);
        if (off >= sizeof(extra))
            tool_die("mint: --claims too long");
        bgt_mint m = {.key = &key,
                      .alg = o->alg,
                      .iss = iss[0] != '\0' ? iss : NULL,
                      .aud = aud,
                      .serviceurl = serviceurl[0] != '\0' ? serviceurl : NULL,
                      .exp = now + o->exp_in,
                      .exp_set = 1,
                      .nbf = now + o->nbf_in,
                      .nbf_set = 1,
                      .iat = now,
                      .iat_set = 1,
                      .extra_claims = extra};
        char *tok = bgt_mint_token(&m);
        if (tok == NULL) {
            fprintf(stderr, PROG ": mint: signing failed (alg %s)\n", o->alg ? o->alg : "RS256");
            rc = 1;
            break;
        }
        if (printf("%s\n", tok) < 0)
            rc = 1;
        free(tok);
        if (rc != 0)
            break;
    }
    bgt_key_free(&key);
    if (fflush(stdout) != 0)
        rc = 1;
    return rc;
}

/* ---- rotate ------------------------------------------------------------------------------------
 */

typedef struct rotate_opts {
    const char *dir;
    const char *kid;
    const char *drop;
    const char *endorse; /* comma-separated; "" = empty list */
    bool no_endorsements;
    bool emulator;
    int bits;
} rotate_opts;

static int
cmd_rotate(const rotate_opts *o)
{
    char keydir[PATH_CAP], path[PATH_CAP], name[PATH_CAP];
    tool_join(keydir, o->dir, o->emulator ? "emulator-keys" : "keys");
    if (o->kid == NULL || !valid_kid(o->kid))
        tool_die("rotate: --kid NEWKID is required (no '/', no blanks, not starting with '.')");
    if (tool_mkdir(o->dir) != 0 || tool_mkdir(keydir) != 0)
        return 1;

    const char *list[16] = {NULL};
    char *copy = NULL;
    const char *const *endorse = NULL;
    if (!o->no_endorsements) {
        if (o->endorse == NULL) {
            endorse = default_endorsements;
        } else {
            copy = strdup(o->endorse);
            size_t n = 0;
            char *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
                if (*t != '\0' && n < sizeof(list) / sizeof(list[0]) - 1)
                    list[n++] = t;
            endorse = list;
        }
    }
    int rc = write_key(keydir, o->kid, o->bits, endorse);
    free(copy);
    if (rc != 0)
        return 1;
    fprintf(stderr, PROG ": added %s/%s.pem\n", keydir, o->kid);
    if (o->drop != NULL) {
        if (!valid_kid(o->drop))
            tool_die("rotate: bad --drop kid '%s'", o->drop);
        snprintf(name, sizeof(name), "%s.pem", o->drop);
        if (unlink(tool_join(path, keydir, name)) != 0) {
            fprintf(stderr, PROG ": rotate: remove %s: %s\n", path, strerror(errno));
            return 1;
        }
        snprintf(name, sizeof(name), "%s.endorsements", o->drop);
        unlink(tool_join(path, keydir, name));
        fprintf(stderr, PROG ": dropped %s/%s.pem\n", keydir, o->drop);
    }
    return 0;
}

/* ---- command line -------------------------------------------------------------------------------
 */

static void
usage(FILE *f)
{
    fprintf(f,
            "usage:\n"
            "  " PROG " serve  --dir DIR [--port PORT] [--listen ADDR] [--http1-only]\n"
            "  " PROG " mint   --dir DIR [--kid K] [--aud APPID] [--serviceurl URL] [--iss ISS]\n"
            "                        [--exp-in S] [--nbf-in S] [--alg RS256] [--count N]\n"
            "                        [--claims '\"k\":v,...'] [--emulator [--ver 1.0|2.0]]\n"
            "  " PROG " rotate --dir DIR --kid NEWKID [--drop OLDKID] [--endorse a,b,...]\n"
            "                        [--no-endorsements] [--emulator] [--bits N]\n"
            "See tests/tools/README.md.\n");
}

static long
number(const char *opt, const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        tool_die("%s: bad number '%s'", opt, s);
    return v;
}

enum {
    O_DIR = 1000,
    O_PORT,
    O_LISTEN,
    O_HTTP1,
    O_KID,
    O_AUD,
    O_SURL,
    O_ISS,
    O_EXP,
    O_NBF,
    O_ALG,
    O_COUNT,
    O_CLAIMS,
    O_EMU,
    O_VER,
    O_DROP,
    O_ENDORSE,
    O_NOEND,
    O_BITS,
    O_HELP
};

int
main(int argc, char **argv)
{
    static const struct option opts[] = {{"dir", required_argument, NULL, O_DIR},
                                         {"port", required_argument, NULL, O_PORT},
                                         {"listen", required_argument, NULL, O_LISTEN},
                                         {"http1-only", no_argument, NULL, O_HTTP1},
                                         {"kid", required_argument, NULL, O_KID},
                                         {"aud", required_argument, NULL, O_AUD},
                                         {"serviceurl", required_argument, NULL, O_SURL},
                                         {"iss", required_argument, NULL, O_ISS},
                                         {"exp-in", required_argument, NULL, O_EXP},
                                         {"nbf-in", required_argument, NULL, O_NBF},
                                         {"alg", required_argument, NULL, O_ALG},
                                         {"count", required_argument, NULL, O_COUNT},
                                         {"claims", required_argument, NULL, O_CLAIMS},
                                         {"emulator", no_argument, NULL, O_EMU},
                                         {"ver", required_argument, NULL, O_VER},
                                         {"drop", required_argument, NULL, O_DROP},
                                         {"endorse", required_argument, NULL, O_ENDORSE},
                                         {"no-endorsements", no_argument, NULL, O_NOEND},
                                         {"bits", required_argument, NULL, O_BITS},
                                         {"help", no_argument, NULL, O_HELP},
                                         {NULL, 0, NULL, 0}};
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    serve_opts so = {.listen = "127.0.0.1", .port = 0};
    mint_opts mo = {.exp_in = 3600, .nbf_in = -60, .count = 1};
    rotate_opts ro = {.bits = 2048};
    const char *dir = NULL;
    bool serve = strcmp(cmd, "serve") == 0, mint = strcmp(cmd, "mint") == 0,
         rotate = strcmp(cmd, "rotate") == 0;
    if (!serve && !mint && !rotate) {
        fprintf(stderr, PROG ": unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    optind = 2;
    int c, li = -1;
    while ((c = getopt_long(argc, argv, "", opts, &li)) != -1) {
        /* each option belongs to one or more commands */
        bool ok = true;
        switch (c) {
        case O_DIR:
            dir = optarg;
            break;
        case O_PORT:
            ok = serve;
            so.port = (int)number("--port", optarg, 0, 65535);
            break;
        case O_LISTEN:
            ok = serve;
            so.listen = optarg;
            break;
        case O_HTTP1:
            ok = serve;
            so.http1_only = true;
            break;
        case O_KID:
            ok = mint || rotate;
            mo.kid = ro.kid = optarg;
            break;
        case O_AUD:
            ok = mint;
            mo.aud = optarg;
            break;
        case O_SURL:
            ok = mint;
            mo.serviceurl = optarg;
            break;
        case O_ISS:
            ok = mint;
            mo.iss = optarg;
            break;
        case O_EXP:
            ok = mint;
            mo.exp_in = number("--exp-in", optarg, -100000000L, 100000000L);
            break;
        case O_NBF:
            ok = mint;
            mo.nbf_in = number("--nbf-in", optarg, -100000000L, 100000000L);
            break;
        case O_ALG:
            ok = mint;
            mo.alg = optarg;
            break;
        case O_COUNT:
            ok = mint;
            mo.count = number("--count", optarg, 1, 100000000L);
            break;
        case O_CLAIMS:
            ok = mint;
            mo.claims = optarg;
            break;
        case O_EMU:
            ok = mint || rotate;
            mo.emulator = ro.emulator = true;
            break;
        case O_VER:
            ok = mint;
            mo.ver = optarg;
            if (strcmp(optarg, "1.0") != 0 && strcmp(optarg, "2.0") != 0)
                tool_die("--ver: 1.0 or 2.0");
            break;
        case O_DROP:
            ok = rotate;
            ro.drop = optarg;
            break;
        case O_ENDORSE:
            ok = rotate;
            ro.endorse = optarg;
            break;
        case O_NOEND:
            ok = rotate;
            ro.no_endorsements = true;
            break;
        case O_BITS:
            ok = rotate;
            ro.bits = (int)number("--bits", optarg, 1024, 8192);
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, PROG ": %s: option --%s does not apply\n", cmd, opts[li].name);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (dir == NULL) {
        fprintf(stderr, PROG ": %s: --dir DIR is required\n", cmd);
        return 2;
    }
    so.dir = mo.dir = ro.dir = dir;
    if (serve)
        return cmd_serve(&so);
    if (mint)
        return cmd_mint(&mo);
    return cmd_rotate(&ro);
}
