import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { HttpAuthorizer } from '../src/gateway/authorizer.js';
import { setup } from './helpers/harness.js';

/**
 * `POST /v1/actions/outcomes`: several outcomes of one task in one request, each checked
 * as `POST /v1/actions/{id}/outcome` checks one (issue 12 item 6: the MCP gateway reports
 * the outcomes it gathered over a few milliseconds together).
 */
describe('outcomes reported together', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  before(async () => {
    env = await setup('sqlite');
  });
  after(async () => env?.teardown());

  const SCOPE = { scope: { tools: ['github.*'], resources: [], destinations: ['api.github.com'] } };
  const allowOne = async (api: any, n: number) => {
    const r = await api.call('POST', '/v1/authorize', { tool: 'github.create_issue', arguments: { n }, audience: 'a', destination: 'api.github.com' });
    assert.equal(r.body.decision, 'allow', JSON.stringify(r.body));
    return r.body.decision_id as string;
  };
  const outcomesOf = async (taskId: string) => {
    for (let i = 0; ; i++) {
      const entries = (await env.admin.call('GET', `/v1/audit?type=action.outcome&task_id=${taskId}&limit=100`)).body.entries as any[];
      if (entries.length > 0 || i >= 200) return entries;
      await new Promise((ok) => setTimeout(ok, 25));
    }
  };

  it('queues each outcome of the token\'s task and answers a refused one in its place', async () => {
    const task = await env.createTask(SCOPE);
    const token = await env.taskToken(task.id);
    const api = new (env.admin.constructor as any)(env.url, token);
    const [a, b] = [await allowOne(api, 1), await allowOne(api, 2)];
    const deny = await api.call('POST', '/v1/authorize', { tool: 'slack.post', arguments: {}, audience: 'a' });
    assert.equal(deny.body.decision, 'deny');
    const other = await env.createTask(SCOPE);
    const otherDecision = await allowOne(new (env.admin.constructor as any)(env.url, await env.taskToken(other.id)), 3);

    const r = await api.call('POST', '/v1/actions/outcomes', {
      outcomes: [
        { decision_id: a, status: 'succeeded', detail: 'done' },
        { decision_id: b, status: 'failed' },
        { decision_id: a, status: 'failed' },
        { decision_id: deny.body.decision_id, status: 'succeeded' },
        { decision_id: otherDecision, status: 'succeeded' },
        { decision_id: 'dec_unknown', status: 'succeeded' },
      ],
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.deepEqual(r.body.outcomes.map((o: any) => o.error?.code ?? o.status), ['succeeded', 'failed', 'outcome_already_reported', 'not_allowed_decision', 'decision_not_found', 'decision_not_found']);
    assert.deepEqual(r.body.outcomes.map((o: any) => o.decision_id), [a, b, a, deny.body.decision_id, otherDecision, 'dec_unknown']);
    // written with the next batch of decisions: a's and b's, and nothing for the other task's
    await allowOne(api, 4);
    let entries = await outcomesOf(task.id);
    for (let i = 0; entries.length < 2 && i < 200; i++) entries = await outcomesOf(task.id);
    assert.deepEqual(entries.map((e) => [e.decision_id, e.data.status]).sort(), [[a, 'succeeded'], [b, 'failed']].sort());
    assert.equal((await env.admin.call('GET', `/v1/audit?type=action.outcome&task_id=${other.id}&limit=100`)).body.entries.length, 0);
    // the single route sees them as reported
    assert.equal((await api.call('POST', `/v1/actions/${b}/outcome`, { status: 'succeeded' })).status, 409);
  });

  it('refuses what the single route refuses: no token, a forged one, a malformed body, more than 256', async () => {
    const task = await env.createTask(SCOPE);
    const token = await env.taskToken(task.id);
    const api = new (env.admin.constructor as any)(env.url, token);
    const id = await allowOne(api, 1);
    const post = (authorization: string | null, body: unknown) =>
      fetch(`${env.url}/v1/actions/outcomes`, { method: 'POST', headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) }, body: JSON.stringify(body) });
    const one = { outcomes: [{ decision_id: id, status: 'succeeded' }] };
    assert.equal((await post(null, one)).status, 401);
    const [head, claims] = token.split('.');
    assert.equal((await post(`Bearer ${head}.${claims}.${Buffer.alloc(64, 3).toString('base64url')}`, one)).status, 401);
    // the operator's token is not a task token
    assert.equal((await env.admin.call('POST', '/v1/actions/outcomes', one)).status, 401);
    for (const bad of [{}, { outcomes: [] }, { outcomes: [{ decision_id: id, status: 'maybe' }] }, { outcomes: [{ decision_id: id, status: 'failed', extra: 1 }] }, { outcomes: Array.from({ length: 257 }, () => ({ decision_id: id, status: 'failed' })) }]) {
      const r = await post(`Bearer ${token}`, bad);
      assert.equal(r.status, 400, JSON.stringify(bad).slice(0, 80));
      assert.equal(((await r.json()) as any).error.code, 'invalid_request');
    }
    // nothing above was recorded: the outcome can still be reported
    assert.equal((await post(`Bearer ${token}`, one)).status, 202);
  });

  it('the HTTP authorizer gathers a task\'s outcomes into one request, and reports one by one to a Writ without the route', async () => {
    const task = await env.createTask(SCOPE);
    const token = await env.taskToken(task.id);
    const api = new (env.admin.constructor as any)(env.url, token);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await allowOne(api, i));
    // count what reaches Writ through a forwarding front
    const seen: string[] = [];
    const front = (refuseBatch: boolean) =>
      createServer(async (req, res) => {
        seen.push(`${req.method} ${req.url}`);
        if (refuseBatch && req.url === '/v1/actions/outcomes') {
          res.writeHead(404, { 'content-type': 'application/json' });
          return void res.end(JSON.stringify({ error: { code: 'not_found', message: 'no route' } }));
        }
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        const headers: Record<string, string> = {};
        for (const k of ['authorization', 'content-type', 'prefer']) if (typeof req.headers[k] === 'string') headers[k] = req.headers[k] as string;
        const r = await fetch(`${env.url}${req.url}`, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined });
        res.writeHead(r.status, { 'content-type': 'application/json' });
        res.end(await r.text());
      });
    for (const refuseBatch of [false, true]) {
      seen.length = 0;
      const server = front(refuseBatch);
      await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
      const authorizer = new HttpAuthorizer({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
      try {
        const batch: string[] = refuseBatch ? ids.slice(3) : ids.slice(0, 3);
        const reports = batch.map((id) => authorizer.reportOutcome(token, id, 'succeeded').then(() => 'ok', (e) => e.code));
        // an outcome reported twice is refused in its place, the others are queued
        const again = authorizer.reportOutcome(token, batch[0]!, 'failed').then(() => 'ok', (e) => e.code);
        authorizer.flushOutcomes();
        assert.deepEqual(await Promise.all([...reports, again]), [...batch.map(() => 'ok'), 'outcome_already_reported']);
        if (!refuseBatch) assert.deepEqual(seen, ['POST /v1/actions/outcomes']);
        else assert.deepEqual(seen, ['POST /v1/actions/outcomes', ...[...batch, batch[0]].map((id) => `POST /v1/actions/${id}/outcome`)]);
      } finally {
        await authorizer.close();
        server.closeAllConnections();
        await new Promise<void>((ok) => server.close(() => ok()));
      }
    }
  });
});
