import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { HttpAuthorizer, InProcessAuthorizer, type Authorizer } from '../src/gateway/authorizer.js';
import { parseGatewayConfig } from '../src/gateway/config.js';
import { silentLog } from '../src/gateway/log.js';
import { McpGateway } from '../src/gateway/mcp-gateway.js';
import { approveCatalogs, emptyPins, writePinFile } from '../src/gateway/pins.js';
import { Redactor } from '../src/gateway/secrets.js';
import { createUpstreams } from '../src/gateway/upstream.js';
import { DEFAULT_POLICY } from '../src/policy/schema.js';
import { eventually, textOf } from './helpers/gateway-fixtures.js';
import { setup } from './helpers/harness.js';

const POLICY = `${DEFAULT_POLICY.replace(
  'permit (principal, action == Writ::Action::"call", resource);',
  'permit (principal, action == Writ::Action::"call", resource) unless { resource == Writ::Tool::"pay.transfer" };',
)}
@id("payments-need-approval")
permit (principal, action == Writ::Action::"call", resource == Writ::Tool::"pay.transfer")
when { context.approval.granted };
`;

/**
 * Approvals through the gateway, against Writ's real approvals: a call that needs a
 * person's yes answers the approval id; once approved, the same call goes through
 * (retried, or while the gateway waits); a denied approval is reported as such.
 */
describe('gateway approvals (real Writ)', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let dir: string;
  let upstream: HttpServer;
  let upstreamUrl: string;
  const transfers: number[] = [];

  before(async () => {
    env = await setup('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'writ-gw-apr-'));
    upstream = createServer(async (req, res) => {
      const server = new McpServer({ name: 'pay', version: '1' });
      server.registerTool('transfer', { description: 'Moves money.', inputSchema: { amount: z.number() } }, async ({ amount }) => {
        transfers.push(amount);
        return { content: [{ type: 'text' as const, text: `moved ${amount}` }] };
      });
      server.registerTool('balance', { description: 'Reads the balance.', inputSchema: {} }, async () => ({ content: [{ type: 'text' as const, text: '100' }] }));
      const t = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      await server.connect(t);
      await t.handleRequest(req, res);
    });
    await new Promise<void>((ok) => upstream.listen(0, '127.0.0.1', ok));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp`;
    const put = await env.admin.call('PUT', '/v1/policies', { policies: POLICY });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  });
  after(async () => {
    upstream?.closeAllConnections();
    await new Promise<void>((ok) => (upstream ? upstream.close(() => ok()) : ok()));
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function gateway(authorizer: Authorizer, wait: number): Promise<McpGateway> {
    const config = parseGatewayConfig(
      { writ: { url: env.url }, pins_file: join(dir, 'pins.json'), approval_wait_seconds: wait, upstreams: [{ name: 'pay', transport: 'http', url: upstreamUrl, destination: null }] },
      join(dir, 'gateway.json'),
    );
    const ups = createUpstreams(config, { redactor: new Redactor(), log: silentLog });
    await ups.get('pay')!.refresh();
    writePinFile(config.pins_file, approveCatalogs(emptyPins(), new Map([['pay', [...ups.get('pay')!.cached().values()].map((t) => t.tool)]])).pins);
    await ups.get('pay')!.close();
    const gw = new McpGateway({ config, authorizer, log: silentLog });
    await gw.start();
    return gw;
  }

  const review = (id: string, verdict: 'approve' | 'deny') => env.admin.call('POST', `/v1/approvals/${id}/${verdict}`, { comment: 'test' });

  for (const mode of ['http', 'in-process'] as const) {
    it(`answers the approval id, and runs the same call once a person approved it (${mode})`, async () => {
      const gw = await gateway(mode === 'http' ? new HttpAuthorizer({ url: env.url }) : new InProcessAuthorizer(env.writ), 0);
      try {
        const task = await env.createTask({ scope: { tools: ['pay.*'], resources: [], destinations: [] } });
        const token = await env.taskToken(task.id);
        assert.equal(textOf(await gw.callTool(token, 'pay.balance', {})), '100', 'other tools need no approval');
        const n = transfers.length;
        const first = await gw.callTool(token, 'pay.transfer', { amount: 250 });
        assert.equal(first.isError, true);
        const meta = (first._meta as any)['writ/decision'];
        assert.equal(meta.decision, 'approval_required');
        assert.match(meta.approval_id, /^apr_/);
        assert.ok(textOf(first).includes(meta.approval_id));
        // still pending: the retry answers the same approval
        const again = await gw.callTool(token, 'pay.transfer', { amount: 250 });
        assert.equal((again._meta as any)['writ/decision'].approval_id, meta.approval_id);
        assert.equal(transfers.length, n);

        assert.equal((await review(meta.approval_id, 'approve')).status, 200);
        const ok = await gw.callTool(token, 'pay.transfer', { amount: 250 });
        assert.equal(textOf(ok), 'moved 250');
        assert.deepEqual(transfers.slice(n), [250]);
        const decisionId = (ok._meta as any)['writ/decision'].decision_id;
        await gw.flush();
        // the outcome is written with the next batch (respond-async), so wait for it to land
        const d = await eventually(async () => (await env.admin.call('GET', `/v1/tasks/${task.id}`)).body.decisions.find((x: any) => x.id === decisionId && x.outcome));
        assert.equal(d.decision, 'allow');
        assert.equal(d.outcome, 'succeeded');
        const apr = await env.admin.call('GET', `/v1/approvals/${meta.approval_id}`);
        assert.equal(apr.body.status, 'used');

        // a denied approval is reported as refused; the call never runs
        const other = await gw.callTool(token, 'pay.transfer', { amount: 9 });
        const oid = (other._meta as any)['writ/decision'].approval_id;
        assert.equal((await review(oid, 'deny')).status, 200);
        const refused = await gw.callTool(token, 'pay.transfer', { amount: 9 });
        assert.equal((refused._meta as any)['writ/decision'].decision, 'approval_refused');
        assert.match(textOf(refused), /denied/);
        assert.deepEqual(transfers.slice(n), [250]);
      } finally {
        await gw.close();
      }
    });
  }

  it('waits (bounded) for the approval when configured, and the call goes through when it arrives', async () => {
    const gw = await gateway(new HttpAuthorizer({ url: env.url }), 10);
    try {
      const task = await env.createTask({ scope: { tools: ['pay.*'], resources: [], destinations: [] } });
      const token = await env.taskToken(task.id);
      const call = gw.callTool(token, 'pay.transfer', { amount: 77 });
      const pending = await eventually(async () => {
        const r = await env.admin.call('GET', `/v1/approvals?status=pending&task_id=${task.id}`);
        return r.body.approvals?.[0];
      });
      assert.equal((await review(pending.id, 'approve')).status, 200);
      const r = await call;
      assert.equal(textOf(r), 'moved 77');
    } finally {
      await gw.close();
    }
  });
});
