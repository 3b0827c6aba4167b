import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { exportJWK, generateKeyPair } from 'jose';
import { z } from 'zod';
import { InProcessAuthorizer, type ActionRequest, type ApprovalStatus, type Authorizer, type Decision, type TaskView } from '../src/gateway/authorizer.js';
import { parseGatewayConfig } from '../src/gateway/config.js';
import { silentLog } from '../src/gateway/log.js';
import { McpGateway } from '../src/gateway/mcp-gateway.js';
import { approveCatalogs, emptyPins, writePinFile } from '../src/gateway/pins.js';
import { Redactor } from '../src/gateway/secrets.js';
import { createUpstreams } from '../src/gateway/upstream.js';
import { withActionToken, WritAgentClient, WritApiError } from '@writ/sdk';
import { textOf } from './helpers/gateway-fixtures.js';
import { setup } from './helpers/harness.js';

/** An MCP server whose `deploy` tool runs only with a valid, unused action token in `_meta`. */
async function startGuardedMcpServer(opts: { issuer: string; jwks: unknown }) {
  const ran: { env: string; token: string }[] = [];
  const refused: string[] = [];
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const make = () => {
    const server = new McpServer({ name: 'ops', version: '1.0.0' });
    server.registerTool(
      'deploy',
      { description: 'Deploys a service.', inputSchema: { env: z.string(), service: z.string() } },
      withActionToken({ issuer: opts.issuer, audience: 'mcp:ops', jwks: opts.jwks as never, tool: 'ops.deploy', onRefused: (e) => refused.push(e.code) }, async (args, extra) => {
        ran.push({ env: args.env, token: String(extra._meta?.['writ/action_token']) });
        return { content: [{ type: 'text' as const, text: `deployed ${args.service} to ${args.env}` }] };
      }),
    );
    return server;
  };
  const http = createServer(async (req, res) => {
    const sid = req.headers['mcp-session-id'];
    if (typeof sid === 'string') return void (await sessions.get(sid)?.handleRequest(req, res));
    const t: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (id) => void sessions.set(id, t) });
    await make().connect(t);
    await t.handleRequest(req, res);
  });
  await new Promise<void>((ok) => http.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    ran,
    refused,
    close: async () => {
      http.closeAllConnections();
      await new Promise<void>((ok) => http.close(() => ok()));
    },
  };
}

async function directClient(url: string): Promise<Client> {
  const c = new Client({ name: 'direct', version: '1' });
  await c.connect(new StreamableHTTPClientTransport(new URL(url)));
  return c;
}

describe('SDK: agent client and tool-server guards', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let dir: string;

  before(async () => {
    env = await setup('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'writ-sdk-'));
  });
  after(async () => {
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('an agent gets a task token from its private JWK, authorizes, reports the outcome and completes the task', async () => {
    const { privateKey, publicKey } = await generateKeyPair('Ed25519', { extractable: true });
    const jwk = { ...(await exportJWK(privateKey)), kid: 'sdk-1' };
    const agentId = 'spiffe://acme.test/agent/sdk';
    const reg = await env.admin.call('POST', '/v1/agents', { id: agentId, jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'sdk-1' }] } });
    assert.equal(reg.status, 201);
    const task = (await env.admin.call('POST', '/v1/tasks', { agent_id: agentId, intent: 'sdk', scope: { tools: ['ops.*'] }, ttl_seconds: 300, max_actions: 5 })).body;
    const agent = new WritAgentClient({ url: env.url, agentId, taskId: task.id, key: { jwk } });
    const t1 = await agent.taskToken();
    assert.equal(await agent.taskToken(), t1, 'the token is reused until shortly before it expires');
    const allow = await agent.authorize({ tool: 'ops.deploy', arguments: { env: 'prod' }, audience: 'mcp:ops' });
    assert.equal(allow.decision, 'allow');
    const deny = await agent.authorize({ tool: 'db.drop', arguments: {}, audience: 'mcp:db' });
    assert.equal(deny.decision, 'deny');
    assert.equal(deny.decision === 'deny' && deny.reasons[0]!.code, 'tool_out_of_scope');
    assert.equal((await agent.authorizeAndWait({ tool: 'ops.status', arguments: {}, audience: 'mcp:ops' })).decision, 'allow');
    await agent.reportOutcome(allow.decision_id, 'succeeded', 'ok');
    await assert.rejects(agent.reportOutcome(allow.decision_id, 'failed'), (e: WritApiError) => e.code === 'outcome_already_reported');
    await agent.complete();
    await assert.rejects(agent.authorize({ tool: 'ops.deploy', arguments: {}, audience: 'mcp:ops' }), (e: WritApiError) => e.status === 401 && e.code === 'task_not_active');
  });

  it('an MCP tool server checks the forwarded action token against the call and burns it', async () => {
    const jwks = await (await fetch(`${env.url}/.well-known/jwks.json`)).json();
    const ops = await startGuardedMcpServer({ issuer: env.url, jwks });
    const config = parseGatewayConfig(
      { writ: { url: env.url }, pins_file: join(dir, 'pins.json'), upstreams: [{ name: 'ops', transport: 'http', url: ops.url, destination: null, forward_action_token: true }] },
      join(dir, 'gateway.json'),
    );
    // the operator's approval, through the library rather than the CLI
    const redactor = new Redactor();
    const ups = createUpstreams(config, { redactor, log: silentLog });
    await ups.get('ops')!.refresh();
    writePinFile(config.pins_file, approveCatalogs(emptyPins(), new Map([['ops', [...ups.get('ops')!.cached().values()].map((t) => t.tool)]])).pins);
    await ups.get('ops')!.close();

    const gateway = new McpGateway({ config, authorizer: new InProcessAuthorizer(env.writ), log: silentLog });
    await gateway.start();
    const server = gateway.createServer(() => token);
    const [{ InMemoryTransport }] = await Promise.all([import('@modelcontextprotocol/sdk/inMemory.js')]);
    const [a, b] = InMemoryTransport.createLinkedPair();
    await server.connect(a);
    const client = new Client({ name: 'agent', version: '1' });
    await client.connect(b);
    const task = await env.createTask({ scope: { tools: ['ops.*'], resources: [], destinations: [] } });
    const token = await env.taskToken(task.id);
    try {
      const r = await client.callTool({ name: 'ops.deploy', arguments: { env: 'staging', service: 'api' } });
      assert.equal(textOf(r), 'deployed api to staging');
      assert.equal(ops.ran.length, 1);
      const forwarded = ops.ran[0]!.token;
      assert.notEqual(forwarded, token, 'the upstream gets the action token, never the task token');

      // straight to the tool server: no token, a replayed token, a token for other arguments
      const direct = await directClient(ops.url);
      const none = await direct.callTool({ name: 'deploy', arguments: { env: 'prod', service: 'api' } });
      assert.equal(none.isError, true);
      const replay = await direct.callTool({ name: 'deploy', arguments: { env: 'staging', service: 'api' }, _meta: { 'writ/action_token': forwarded } });
      assert.equal(replay.isError, true);
      const fresh = await env.writ.authz.authorize(await env.writ.tokens.authenticateTask(token), { tool: 'ops.deploy', arguments: { env: 'staging', service: 'api' }, audience: 'mcp:ops' });
      assert.equal(fresh.decision, 'allow');
      const swapped = await direct.callTool({ name: 'deploy', arguments: { env: 'prod', service: 'api' }, _meta: { 'writ/action_token': fresh.decision === 'allow' ? fresh.action_token : '' } });
      assert.equal(swapped.isError, true);
      assert.deepEqual(ops.refused, ['action_token_required', 'token_already_used', 'arguments_mismatch']);
      assert.equal(ops.ran.length, 1, 'the handler never ran for a refused call');
      await direct.close();
    } finally {
      await client.close();
      await gateway.close();
      await ops.close();
    }
  });
});

/** An authorizer that needs an approval for everything, driven by the test. */
class ApprovalStub implements Authorizer {
  readonly mode = 'http' as const;
  authorizeCalls = 0;
  reads: number[] = [];
  state: ApprovalStatus = { status: 'pending' };
  outcomes: string[] = [];
  async task(): Promise<TaskView> {
    return { taskId: 'task_1', agentId: 'agent', scope: null };
  }
  async authorize(_t: string, _a: ActionRequest): Promise<Decision> {
    this.authorizeCalls += 1;
    return { decision: 'approval_required', decision_id: `dec_${this.authorizeCalls}`, approval_id: `apr_${this.authorizeCalls}`, expires_in: 300 };
  }
  async approval(_t: string, _id: string, wait: number): Promise<ApprovalStatus> {
    this.reads.push(wait);
    const s = this.state;
    if (s.status === 'approved') this.state = { status: 'used' };
    return s;
  }
  async reportOutcome(_t: string, id: string, status: string): Promise<void> {
    this.outcomes.push(`${id}:${status}`);
  }
  async close(): Promise<void> {}
}

describe('approvals through the gateway (against the approvals contract, with a stub Writ)', () => {
  let dir: string;
  let docs: ReturnType<typeof createServer>;
  let docsUrl: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'writ-apr-'));
    // a plain upstream: one `ping` tool
    docs = createServer(async (req, res) => {
      const server = new McpServer({ name: 'plain', version: '1' });
      server.registerTool('ping', { description: 'Ping.', inputSchema: { n: z.number() } }, async (args) => ({ content: [{ type: 'text' as const, text: `pong ${args.n}` }] }));
      const t = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      await server.connect(t);
      await t.handleRequest(req, res);
    });
    await new Promise<void>((ok) => docs.listen(0, '127.0.0.1', ok));
    docsUrl = `http://127.0.0.1:${(docs.address() as AddressInfo).port}/mcp`;
  });
  after(async () => {
    docs?.closeAllConnections();
    await new Promise<void>((ok) => (docs ? docs.close(() => ok()) : ok()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function gatewayWith(stub: ApprovalStub, wait: number) {
    const config = parseGatewayConfig({ writ: { url: 'http://127.0.0.1:9' }, pins_file: join(dir, `pins-${wait}.json`), approval_wait_seconds: wait, upstreams: [{ name: 'plain', transport: 'http', url: docsUrl }] }, join(dir, 'g.json'));
    const ups = createUpstreams(config, { redactor: new Redactor(), log: silentLog });
    await ups.get('plain')!.refresh();
    writePinFile(config.pins_file, approveCatalogs(emptyPins(), new Map([['plain', [...ups.get('plain')!.cached().values()].map((t) => t.tool)]])).pins);
    await ups.get('plain')!.close();
    const gw = new McpGateway({ config, authorizer: stub, log: silentLog });
    await gw.start();
    return gw;
  }

  it('answers approval_required with the approval id, then lets the client retry the same call once approved', async () => {
    const stub = new ApprovalStub();
    const gw = await gatewayWith(stub, 0);
    try {
      const first = await gw.callTool('tok', 'plain.ping', { n: 1 });
      assert.equal(first.isError, true);
      const meta = (first._meta as any)['writ/decision'];
      assert.deepEqual([meta.decision, meta.approval_id, meta.decision_id], ['approval_required', 'apr_1', 'dec_1']);
      assert.match(textOf(first), /apr_1/);
      // a retry while pending polls the same approval instead of asking again
      const again = await gw.callTool('tok', 'plain.ping', { n: 1 });
      assert.equal((again._meta as any)['writ/decision'].approval_id, 'apr_1');
      assert.equal(stub.authorizeCalls, 1);
      // other arguments are another action: a new approval
      await gw.callTool('tok', 'plain.ping', { n: 2 });
      assert.equal(stub.authorizeCalls, 2);
      // approved: the retry collects the action token and the call goes through
      stub.state = { status: 'approved', action_token: `x.${Buffer.from(JSON.stringify({ decision_id: 'dec_1' })).toString('base64url')}.y` };
      const ok = await gw.callTool('tok', 'plain.ping', { n: 1 });
      assert.equal(textOf(ok), 'pong 1');
      assert.equal((ok._meta as any)['writ/decision'].decision_id, 'dec_1');
      await gw.flush();
      assert.deepEqual(stub.outcomes, ['dec_1:succeeded']);
    } finally {
      await gw.close();
    }
  });

  it('waits a bounded time for the approval when configured, and reports a refused approval', async () => {
    const stub = new ApprovalStub();
    const gw = await gatewayWith(stub, 1);
    try {
      const t0 = Date.now();
      const pending = await gw.callTool('tok', 'plain.ping', { n: 3 });
      assert.equal((pending._meta as any)['writ/decision'].decision, 'approval_required');
      assert.ok(Date.now() - t0 >= 900, 'it waited about a second');
      assert.ok(stub.reads.length >= 1 && stub.reads[0]! >= 1, 'it long-polled');
      stub.state = { status: 'denied' };
      const refused = await gw.callTool('tok', 'plain.ping', { n: 3 });
      assert.equal((refused._meta as any)['writ/decision'].decision, 'approval_refused');
      assert.match(textOf(refused), /denied/);
    } finally {
      await gw.close();
    }
  });
});
