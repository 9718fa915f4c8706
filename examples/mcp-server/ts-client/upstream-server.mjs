// An MCP server on the official TypeScript SDK that knows nothing of
// tokens: it sits behind `mcpsts gateway`, which verifies the caller and
// tells it who that is in X-MCPSTS-* headers. Plain http on a loopback
// address (the gateway's rule). It prints "listening PORT" once ready, and
// for each request a line "request authorization=present|absent subject=…".
//
//   node upstream-server.mjs [PORT]
import http from "node:http";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

function newServer() {
  const server = new McpServer({ name: "ts-upstream", version: "1.0.0" });
  server.registerTool("whoami", { description: "who the gateway says is calling", inputSchema: {} }, async (_args, extra) => {
    const h = extra.requestInfo?.headers ?? {};
    return { content: [{ type: "text", text: `subject=${h["x-mcpsts-subject"]} client=${h["x-mcpsts-client-id"]} authorization=${h["authorization"] ? "present" : "absent"}` }] };
  });
  server.registerTool("write_file", { description: "needs files:write", inputSchema: { name: z.string() } }, async ({ name }) => {
    return { content: [{ type: "text", text: `written ${name}` }] };
  });
  return server;
}

const httpServer = http.createServer(async (req, res) => {
  console.log(`request authorization=${req.headers["authorization"] ? "present" : "absent"} subject=${req.headers["x-mcpsts-subject"] ?? ""}`);
  // Stateless: a server and a transport per request.
  const server = newServer();
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.on("close", () => { transport.close(); server.close(); });
  await server.connect(transport);
  await transport.handleRequest(req, res);
});
httpServer.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(`listening ${httpServer.address().port}`);
});
