/*
 * botgate's one error vocabulary.
 *
 * Every failure botgate can report has a name here. The same name is the `code` of the
 * JSON error a caller receives, the `reason` label of the metric that counts it, and the
 * word in the log line, so an operator can follow one failure from the client's screen to
 * the log and the dashboard. The table in error.c maps each to its HTTP status and a
 * sentence; bg_strerror() and bg_error_status() read it.
 *
 * Functions that can fail return 0 or a negative bg_err (libuv's convention): never a
 * value and errno at once.
 */
#ifndef BOTGATE_ERROR_H
#define BOTGATE_ERROR_H

typedef enum bg_err {
    BG_OK = 0,
    /* generic */
    BG_ENOMEM = -1, /* out of memory */
    BG_EINVAL = -2, /* invalid argument (a programming error, not a caller's) */
    BG_EIO = -3,    /* a file or socket operation failed */
    /* configuration */
    BG_ECONFIG = -10, /* bad configuration: the message names key and reason */
    /* requests: 4xx */
    BG_ENOTFOUND = -20,       /* 404 no such route */
    BG_EMETHOD = -21,         /* 405 method not allowed on this route */
    BG_EBODY_TOO_LARGE = -22, /* 413 body over policy.body_max_bytes */
    BG_EMEDIA_TYPE = -23,     /* 415 Content-Type is not application/json */
    BG_EJSON = -24,           /* 400 body is not a JSON object */
    BG_EACTIVITY = -25,       /* 400 activity lacks a field or has a wrong type */
    BG_EAUTH_MISSING = -26,   /* 401 no Authorization: Bearer header */
    BG_EAUTH_MALFORMED = -27, /* 401 Authorization header is not "Bearer <token>" */
    BG_EHTTP = -28,           /* 400 the HTTP request itself is malformed (h2o refused it) */
    BG_EFORBIDDEN = -29,      /* 403 source_not_allowed: client outside policy.allow_cidrs */
    /* authentication: 401, one code per rule (policy/auth.c) */
    BG_EAUTH_TOO_LARGE = -60,   /* token_too_large: over 8 KiB, not parsed */
    BG_EAUTH_ALG = -61,         /* bad_algorithm: alg not RS256/RS384/RS512 */
    BG_EAUTH_NO_KID = -62,      /* missing_kid */
    BG_EAUTH_UNKNOWN_KID = -63, /* unknown_kid: after the refresh rule */
    BG_EAUTH_BAD_KEY = -64,     /* bad_key: the JWK lacks n/e or is not RSA */
    BG_EAUTH_SIGNATURE = -65,   /* bad_signature */
    BG_EAUTH_ISSUER = -66,      /* bad_issuer */
    BG_EAUTH_AUDIENCE = -67,    /* bad_audience */
    BG_EAUTH_NO_EXP = -68,      /* missing_expiry */
    BG_EAUTH_EXPIRED = -69,     /* token_expired */
    BG_EAUTH_NOT_YET = -70,     /* token_not_yet_valid: nbf in the future past the skew */
    BG_EAUTH_SERVICEURL = -71,  /* serviceurl_mismatch (claim missing or different) */
    BG_EAUTH_ENDORSEMENT = -72, /* channel_not_endorsed */
    BG_EAUTH_EMULATOR = -73,    /* emulator_not_allowed */
    BG_EAUTH_APPID = -74,       /* bad_app_id: emulator token's appid/azp is not ours */
    BG_EAUTH_SKILL = -75,       /* skill_token_refused */
    /* upstream: 503 */
    BG_EKEYS = -45,            /* 503 keys_unavailable: no signing keys could be had at all */
    BG_EREDIS_DOWN = -40,      /* 503 not connected to Redis */
    BG_EREDIS_TIMEOUT = -41,   /* 503 Redis did not answer within redis.timeout_ms */
    BG_EREDIS_ERROR = -42,     /* 503 Redis answered with an error */
    BG_EREPLICA = -43,         /* 503 fewer replicas than redis.min_replicas_ack confirmed */
    BG_ESHUTDOWN = -44,        /* 503 botgate is shutting down */
    BG_EQUEUE_FULL = -46,      /* 503 the stream holds redis.maxlen entries: not trimmed, refused */
    BG_EBOT_TIMEOUT = -47,     /* policy.sync_fallback_status: the bot missed the sync deadline */
    BG_EBOT_UNAVAILABLE = -48, /* 502 the bot could not be reached for a synchronous call */
    /* stored entries */
    BG_EENTRY = -50, /* a queue entry could not be decoded */
    /* overload (limits.h): shed, 429 with Retry-After (DESIGN.md: "429 shed") */
    BG_ESHED_CONNECTIONS = -80, /* policy.max_connections: the connection is closed unanswered */
    BG_ESHED_WRITES = -81,      /* policy.max_inflight_writes */
    BG_ESHED_BODY = -82,        /* policy.max_inflight_body_bytes */
    /* the relay (relay.c) */
    BG_ERELAY_PATH = -110,         /* 400 bad_relay_path: ids the relay refuses to pass on */
    BG_ERELAY_CONVERSATION = -111, /* 404 unknown_conversation: not in the directory */
    BG_ERELAY_SECRET = -112,       /* 401 bad_relay_secret: relay.secret set, not presented */
    BG_ERELAY_TOKEN = -113,        /* 502 connector_token_unavailable: no AAD token */
    BG_ERELAY_UNREACHABLE = -114,  /* 502 connector_unreachable: no answer from the Connector */
    BG_ERELAY_TIMEOUT = -115,      /* 504 connector_timeout: relay.timeout_ms passed */
    BG_ERELAY_SERVICE_URL = -116,  /* 502 bad_service_url: the stored serviceUrl is unusable */
} bg_err;

/* The machine-readable name: "body_too_large". Never NULL. */
const char *bg_error_code(int err);
/* A sentence for people: "the request body is larger than policy.body_max_bytes". */
const char *bg_strerror(int err);
/* The HTTP status a caller gets for it (500 for errors no caller should see). */
int bg_error_status(int err);

#endif
