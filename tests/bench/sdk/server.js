'use strict';
// "The SDK way" for botgate's benchmark (tests/bench/run.sh, target `sdk`): what a team
// writes with the official Bot Framework SDK when it wants to acknowledge an activity at
// once and answer it later. One Node.js process (one event loop, as botgate), HTTPS with
// the benchmark's certificate, and per POST /api/messages:
//   1. the body parsed as JSON (the activity);
//   2. JwtTokenValidation.authenticateRequest(activity, Authorization, credentials, '') from
//      npm botframework-connector: the SDK's own check of the Connector's token (signature
//      against the keys from the OpenID metadata, issuer, audience = app id, expiry,
//      endorsement of the channel id, serviceUrl claim = the activity's serviceUrl);
//   3. XADD of the body to a Redis stream with ioredis, waiting for Redis's answer;
//   4. 202, empty body.
// A failed check answers 401, a body that is not JSON 400, a Redis error 503.
//
// The SDK's metadata URL is a module-level knob: ChannelValidation.OpenIdMetadataEndpoint
// (else AuthenticationConstants.ToBotFromChannelOpenIdMetadataUrl, login.botframework.com);
// here it points at tests/tools/fake_connector, whose CA the process trusts through
// NODE_EXTRA_CA_CERTS (node-fetch, which the SDK uses, goes through node's https).
//
// Environment (all required but BENCH_STREAM):
//   SDK_PORT, SDK_CERT, SDK_KEY        HTTPS listener on 127.0.0.1, certificate and key (PEM)
//   SDK_REDIS_SOCK                     redis-server's unix socket
//   SDK_APP_ID                         the bot's app id (the tokens' audience)
//   SDK_OPENID_METADATA_URL            the Connector's OpenID metadata (the fake one's)
//   BENCH_STREAM                       stream key (default botgate:activities)
// GET /healthz answers 200 once Redis is connected.

const fs = require('fs');
const https = require('https');
const Redis = require('ioredis');
const {
  ChannelValidation,
  JwtTokenValidation,
  SimpleCredentialProvider,
  AuthenticationError,
} = require('botframework-connector');

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`sdk server: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

const port = Number(need('SDK_PORT'));
const appId = need('SDK_APP_ID');
const stream = process.env.BENCH_STREAM || 'botgate:activities';
ChannelValidation.OpenIdMetadataEndpoint = need('SDK_OPENID_METADATA_URL');
// No password: it is used only to call the Connector back, never to check its token.
const credentials = new SimpleCredentialProvider(appId, '');

const redis = new Redis({ path: need('SDK_REDIS_SOCK'), lazyConnect: false });
let redisReady = false;
redis.on('ready', () => {
  redisReady = true;
});
redis.on('error', (err) => console.error(`sdk server: redis: ${err.message}`));

const JWT_ERRORS = new Set(['JsonWebTokenError', 'TokenExpiredError', 'NotBeforeError']);

function answer(res, status, text) {
  const body = text ? JSON.stringify({ error: text }) : '';
  res.writeHead(status, { 'Content-Length': Buffer.byteLength(body), 'Content-Type': 'application/json' });
  res.end(body);
}

async function onActivity(req, res, raw) {
  let activity;
  try {
    activity = JSON.parse(raw);
  } catch (e) {
    return answer(res, 400, 'body is not JSON');
  }
  try {
    await JwtTokenValidation.authenticateRequest(activity, req.headers.authorization || '', credentials, '');
  } catch (e) {
    // The SDK throws an AuthenticationError with a status (401 for a bad token, 500 when
    // it cannot fetch the keys) or, for a bad signature, jsonwebtoken's own error, which
    // it lets through: both kinds of a bad token are 401, a failure to check one 503.
    const bad = AuthenticationError.isStatusCodeError(e) ? e.statusCode < 500 : JWT_ERRORS.has(e.name);
    return answer(res, bad ? 401 : 503, bad ? 'unauthorized' : 'cannot check the token');
  }
  try {
    await redis.xadd(stream, '*', 'activity', raw);
  } catch (e) {
    return answer(res, 503, 'not stored');
  }
  answer(res, 202, '');
}

const server = https.createServer(
  { cert: fs.readFileSync(need('SDK_CERT')), key: fs.readFileSync(need('SDK_KEY')) },
  (req, res) => {
    if (req.method === 'GET' && req.url === '/healthz') {
      return answer(res, redisReady ? 200 : 503, redisReady ? '' : 'redis not connected');
    }
    if (req.method !== 'POST' || req.url !== '/api/messages') return answer(res, 404, 'not found');
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      onActivity(req, res, Buffer.concat(chunks).toString('utf8')).catch(() => answer(res, 500, 'internal'));
    });
  },
);
// Keep-alive as botgate's (h2o's 10 s), so that wrk's connections stay open.
server.keepAliveTimeout = 10000;
server.listen(port, '127.0.0.1', () => console.log(`sdk server: https://127.0.0.1:${port}/api/messages`));

function stop() {
  server.close();
  redis.disconnect();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
