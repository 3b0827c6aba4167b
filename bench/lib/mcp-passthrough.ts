/**
 * A plain pass-through MCP proxy: the same SDK stack as Writ's gateway (an MCP server
 * facing the client, an MCP client facing the upstream), forwarding tools/list and
 * tools/call unchanged, with no authorization, no pinning and no redaction. The
 * baseline the gateway's overhead is measured against.
 *
 *   node --import tsx bench/lib/mcp-passthrough.ts (--upstream-url URL | --upstream-cmd '["node", "server.js"]') [--http]
 *
 * Serves stdio by default; `--http` serves streamable HTTP on a loopback port and
 * prints `{"listening": "<url>"}` on stderr.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, CallToolResultSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

export async function connectUpstream(spec: { url?: string; cmd?: string[] }): Promise<Client> {
  const client = new Client({ name: 'passthrough', version: '1.0.0' }, { capabilities: {} });
  if (spec.url) await client.connect(new StreamableHTTPClientTransport(new URL(spec.url)));
  else if (spec.cmd && spec.cmd.length > 0) await client.connect(new StdioClientTransport({ command: spec.cmd[0]!, args: spec.cmd.slice(1), stderr: 'inherit' }));
  else throw new Error('an upstream is required: --upstream-url URL or --upstream-cmd JSON');
  return client;
}

export function passthroughServer(upstream: Client): Server {
  const server = new Server({ name: 'passthrough', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async (req) => upstream.listTools(req.params));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) =>
    upstream.request({ method: 'tools/call', params: req.params }, CallToolResultSchema, { signal: extra.signal }),
  );
  return server;
}

async function main(argv: string[]): Promise<void> {
  const at = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const cmd = at('--upstream-cmd');
  const upstream = await connectUpstream({ url: at('--upstream-url'), cmd: cmd ? (JSON.parse(cmd) as string[]) : undefined });
  if (!argv.includes('--http')) {
    await passthroughServer(upstream).connect(new StdioServerTransport());
    process.stdin.once('end', () => process.exit(0));
    return;
  }
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
    await passthroughServer(upstream).connect(t);
    await t.handleRequest(req, res);
  });
  http.listen(0, '127.0.0.1', () => {
    process.stderr.write(`${JSON.stringify({ listening: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp` })}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main(process.argv.slice(2));
