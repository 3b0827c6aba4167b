/**
 * The upstream MCP server of the gateway benchmark: one `echo` tool. Stdio by default;
 * `--http` serves streamable HTTP on a loopback port and prints
 * `{"listening": "<url>"}` on stderr.
 *
 *   node --import tsx bench/lib/mcp-echo-server.ts [--http]
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

function makeServer(): Server {
  const server = new Server({ name: 'bench-echo', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: [{ name: 'echo', description: 'Echoes the text back.', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } }],
  }));
  server.setRequestHandler(CallToolRequestSchema, async (req) => ({
    content: [{ type: 'text', text: String((req.params.arguments as { text?: unknown } | undefined)?.text ?? '') }],
  }));
  return server;
}

if (process.argv.includes('--http')) {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const http = createServer(async (req, res) => {
    const sid = req.headers['mcp-session-id'];
    if (typeof sid === 'string') {
      const t = sessions.get(sid);
      if (!t) return void res.writeHead(404).end();
      return void (await t.handleRequest(req, res));
    }
    const t: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: true,
      onsessioninitialized: (id) => void sessions.set(id, t),
    });
    t.onclose = () => void (t.sessionId && sessions.delete(t.sessionId));
    await makeServer().connect(t);
    await t.handleRequest(req, res);
  });
  http.listen(0, '127.0.0.1', () => {
    process.stderr.write(`${JSON.stringify({ listening: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp` })}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
} else {
  await makeServer().connect(new StdioServerTransport());
}
