/**
 * An MCP tool server (streamable HTTP) whose tools run only with a valid, unused action
 * token for exactly that call in `_meta["writ/action_token"]` — what `writ gateway mcp`
 * sends for an upstream configured with `"forward_action_token": true`.
 *
 *   node --import tsx examples/tool-server-mcp.ts --writ http://127.0.0.1:8080 --port 9102 --upstream ops
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { withActionToken } from '@writ/sdk';

const { values } = parseArgs({
  options: {
    writ: { type: 'string', default: 'http://127.0.0.1:8080' },
    port: { type: 'string', default: '9102' },
    upstream: { type: 'string', default: 'ops' },
  },
});
const meta = (await (await fetch(`${values.writ}/.well-known/oauth-authorization-server`)).json()) as { issuer: string };
// must match the gateway's view of this upstream: tool `<upstream>.<tool>`, audience `mcp:<upstream>`
const guard = { issuer: meta.issuer, audience: `mcp:${values.upstream}`, jwks: `${values.writ}/.well-known/jwks.json`, writUrl: values.writ };

function server(): McpServer {
  const s = new McpServer({ name: 'ops', version: '1.0.0' });
  s.registerTool(
    'deploy',
    { description: 'Deploys a service to an environment.', inputSchema: { service: z.string(), env: z.enum(['staging', 'prod']) } },
    withActionToken({ ...guard, tool: `${values.upstream}.deploy` }, async ({ service, env }) => ({
      content: [{ type: 'text' as const, text: `deployed ${service} to ${env}` }],
    })),
  );
  return s;
}

const sessions = new Map<string, StreamableHTTPServerTransport>();
createServer(async (req, res) => {
  const sid = req.headers['mcp-session-id'];
  if (typeof sid === 'string') return void (await sessions.get(sid)?.handleRequest(req, res));
  const t: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (id) => void sessions.set(id, t) });
  await server().connect(t);
  await t.handleRequest(req, res);
}).listen(Number(values.port), '127.0.0.1', () => console.log(`MCP tool server on http://127.0.0.1:${values.port}/mcp`));
