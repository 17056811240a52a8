// The official Bot Framework connector client (npm botframework-connector) against botgate's
// relay: `node reply.js RELAY_BASE CONVERSATION_ID ACTIVITY_ID` sends one reply the way a bot
// does (conversations.replyToActivity) with the relay as the client's baseUri — the SDK's
// serviceUrl — and credentials without an app id, so the SDK attaches no token: botgate
// attaches the Connector's. Exit status 0 when the relay answered 2xx with the Connector's
// {"id": ...}. Run by tests/integration/test_relay.c (test_official_sdk_client).
'use strict';
const { ConnectorClient, MicrosoftAppCredentials } = require('botframework-connector');

async function main() {
  const [baseUri, conversationId, activityId] = process.argv.slice(2);
  if (!baseUri || !conversationId || !activityId) {
    console.error('usage: node reply.js RELAY_BASE CONVERSATION_ID ACTIVITY_ID');
    process.exit(2);
  }
  // No app id: MicrosoftAppCredentials signs nothing (the SDK's anonymous mode).
  const credentials = new MicrosoftAppCredentials('', '');
  const client = new ConnectorClient(credentials, { baseUri });
  const reply = {
    type: 'message',
    text: 'reply from the official SDK',
    conversation: { id: conversationId },
    replyToId: activityId,
  };
  const res = await client.conversations.replyToActivity(conversationId, activityId, reply);
  console.log('relay answered', JSON.stringify(res));
  if (!res || !res.id) {
    throw new Error('no id in the answer');
  }
}

main().catch((err) => {
  console.error('reply failed:', err && (err.stack || err.message || err));
  process.exit(1);
});
