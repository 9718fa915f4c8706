// A DPoP client that no one on mcpsts wrote: oauth4webapi (panva's OAuth
// 2 / OpenID Connect library, RFC 9449 included) gets a DPoP-bound token
// from mcpsts by token exchange, answering its use_dpop_nonce challenge the
// library's way, and calls the example files server with it (a proof with
// ath on each request), speaking MCP's Streamable HTTP by hand.
//
// usage: node dpop-client.mjs MCP_URL BROKER_ISSUER SUBJECT_TOKEN_FILE CLIENT_ID
// It prints one JSON line: the token type, cnf.jkt, and read_file's text.
import { readFileSync } from 'node:fs';
import * as oauth from 'oauth4webapi';

const [mcpURL, broker, subjectFile, clientId] = process.argv.slice(2);
if (!clientId) {
  console.error('usage: node dpop-client.mjs MCP_URL BROKER_ISSUER SUBJECT_TOKEN_FILE CLIENT_ID');
  process.exit(2);
}

const issuer = new URL(broker);
const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2' }));
const client = { client_id: clientId };
const keys = await oauth.generateKeyPair('ES256');
const DPoP = oauth.DPoP(client, keys);

async function tokenRequest() {
  const params = new URLSearchParams({
    subject_token: readFileSync(subjectFile, 'utf8').trim(),
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    resource: mcpURL,
    scope: 'files:read',
  });
  const response = await oauth.genericTokenEndpointRequest(as, client, oauth.None(), 'urn:ietf:params:oauth:grant-type:token-exchange', params, { DPoP });
  return oauth.processGenericTokenEndpointResponse(as, client, response);
}

let nonceRetries = 0;
let token;
try {
  token = await tokenRequest();
} catch (err) {
  if (!oauth.isDPoPNonceError(err)) throw err;
  nonceRetries++; // the library kept the nonce: the retry carries it
  token = await tokenRequest();
}

let session;
async function rpc(body) {
  const headers = new Headers({ 'content-type': 'application/json', accept: 'application/json, text/event-stream' });
  if (session) headers.set('mcp-session-id', session);
  const response = await oauth.protectedResourceRequest(token.access_token, 'POST', new URL(mcpURL), headers, JSON.stringify(body), { DPoP });
  if (!response.ok && response.status !== 202) {
    throw new Error(`${body.method}: ${response.status} ${response.headers.get('www-authenticate')}`);
  }
  session = response.headers.get('mcp-session-id') ?? session;
  const text = await response.text();
  if (!body.id) return undefined;
  const data = response.headers.get('content-type')?.includes('text/event-stream')
    ? text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).join('')
    : text;
  return JSON.parse(data);
}

await rpc({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'oauth4webapi-dpop', version: '1' } } });
await rpc({ jsonrpc: '2.0', method: 'notifications/initialized' });
const read = await rpc({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'read_file', arguments: { name: 'readme.txt' } } });
const claims = JSON.parse(Buffer.from(token.access_token.split('.')[1], 'base64url'));
console.log(JSON.stringify({ token_type: token.token_type, jkt: claims.cnf?.jkt, nonce_retries: nonceRetries, read_file: read.result.content[0].text }));
