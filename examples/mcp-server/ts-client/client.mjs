// An MCP client on the official TypeScript SDK. It reaches the example
// files server the way the MCP authorization spec says: its first request
// gets 401 with the protected resource metadata URL; the SDK reads the
// metadata, then mcpsts's authorization server metadata, and asks the token
// endpoint for a token with the client-credentials grant, authenticating
// with private_key_jwt whose assertion is a federated workload JWT (here a
// Kubernetes service-account token): no client secret exists anywhere.
//
// usage: node client.mjs MCP_URL BROKER_ISSUER ASSERTION_FILE CLIENT_ID
// It prints one JSON line: the tools listed and the text of read_file.
import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StaticPrivateKeyJwtProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const [url, broker, assertionFile, clientId] = process.argv.slice(2);
if (!clientId) {
  console.error('usage: node client.mjs MCP_URL BROKER_ISSUER ASSERTION_FILE CLIENT_ID');
  process.exit(2);
}

const authProvider = new StaticPrivateKeyJwtProvider({
  clientId,
  jwtBearerAssertion: readFileSync(assertionFile, 'utf8').trim(),
  expectedIssuer: broker,
});
const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider });
const client = new Client({ name: 'mcpsts-ts-example', version: '1.0.0' });

try {
  await client.connect(transport);
  const { tools } = await client.listTools();
  const res = await client.callTool({ name: 'read_file', arguments: { name: 'readme.txt' } });
  const scope = authProvider.tokens()?.scope ?? '';
  console.log(JSON.stringify({
    tools: tools.map((t) => t.name).sort(),
    read_file: res.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n'),
    is_error: res.isError === true,
    token_scope: scope,
  }));
  await client.close();
} catch (err) {
  console.error('mcp client failed:', err?.message ?? err);
  process.exit(1);
}
