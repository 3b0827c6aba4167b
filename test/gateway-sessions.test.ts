import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InProcessAuthorizer } from '../src/gateway/authorizer.js';
import { parseGatewayConfig } from '../src/gateway/config.js';
import { McpGateway } from '../src/gateway/mcp-gateway.js';
import { serveMcpHttp, type RunningHttp } from '../src/gateway/mcp-serve.js';
import { silentLog } from '../src/gateway/log.js';
import { approveCatalogs, emptyPins, writePinFile } from '../src/gateway/pins.js';
import { spawnChild } from './helpers/child.js';
import { CLI, ROOT, runWrit, STDIO_FIXTURE } from './helpers/gateway-fixtures.js';
import { setup } from './helpers/harness.js';

/**
 * The streamable HTTP gateway as a shared resource: JSON-RPC batches and reused request
 * ids are refused before anything is authorized, sessions are capped per task and per
 * agent (the least recently used idle one makes room), and a session whose task is
 * refused is closed at once.
 */

interface Reply {
  status: number;
  body: any;
  sid: string | null;
}

async function rpc(url: string, token: string, sid: string | null, body: unknown): Promise<Reply> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${token}`,
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-06-18',
  };
  if (sid) headers['mcp-session-id'] = sid;
  const res = await fetch(url, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, sid: res.headers.get('mcp-session-id') };
}

async function openSession(url: string, token: string): Promise<string> {
  const init = await rpc(url, token, null, {
    jsonrpc: '2.0',
    id: 0,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'test', version: '1' } },
  });
  assert.equal(init.status, 200, JSON.stringify(init.body));
  assert.ok(init.sid);
  const note = await rpc(url, token, init.sid, { jsonrpc: '2.0', method: 'notifications/initialized' });
  assert.equal(note.status, 202);
  return init.sid!;
}

const call = (id: unknown, name: string, args: Record<string, unknown>) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });

describe('MCP gateway sessions and JSON-RPC guards', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let dir: string;
  let gateway: McpGateway;
  let running: RunningHttp;
  const scope = { tools: ['local.*'], resources: [], destinations: ['stdio:local'] };

  before(async () => {
    env = await setup('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'writ-gw-sessions-'));
    const configPath = join(dir, 'gateway.json');
    const raw = {
      writ: { url: env.url },
      pins_file: 'pins.json',
      upstreams: [{ name: 'local', transport: 'stdio', command: process.execPath, args: [STDIO_FIXTURE], cwd: ROOT, destination: 'stdio:local' }],
    };
    writeFileSync(configPath, JSON.stringify(raw));
    const config = parseGatewayConfig(raw, configPath);
    gateway = new McpGateway({ config, authorizer: new InProcessAuthorizer(env.writ), log: silentLog });
    await gateway.start();
    const catalogs = new Map([...gateway.upstreams].map(([n, u]) => [n, [...u.cached().values()].map((t) => t.tool)]));
    writePinFile(config.pins_file, approveCatalogs(emptyPins(), catalogs).pins);
    gateway.pins.reload();
    running = await serveMcpHttp(gateway, { maxSessions: 6, maxSessionsPerTask: 2, maxSessionsPerAgent: 3, sessionCheckSeconds: 3600 });
  });

  after(async () => {
    await running?.close();
    await gateway?.close();
    await env?.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  const decisionsOf = async (taskId: string) => (await env.admin.call('GET', `/v1/tasks/${taskId}`)).body.decisions as { tool: string; decision: string }[];

  it('refuses a batch with a JSON-RPC error before anything is authorized (same ids, one element, leading space)', async () => {
    const task = await env.createTask({ scope, max_actions: 10 });
    const token = await env.taskToken(task.id);
    const sid = await openSession(running.url, token);
    for (const body of [
      JSON.stringify([call(1, 'local.echo', { text: 'a' }), call(1, 'local.echo', { text: 'b' }), call(1, 'local.echo', { text: 'c' })]),
      JSON.stringify([call(2, 'local.echo', { text: 'a' })]),
      `  \n[${JSON.stringify(call(3, 'local.echo', { text: 'a' }))}]`,
    ]) {
      const r = await rpc(running.url, token, sid, body);
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, -32600);
      assert.match(r.body.error.message, /batch/);
    }
    // a batch that would open a session is refused as well
    const opening = await rpc(running.url, token, null, [{ jsonrpc: '2.0', id: 0, method: 'initialize', params: {} }]);
    assert.equal(opening.status, 400);
    assert.equal(opening.body.error.code, -32600);
    assert.deepEqual(await decisionsOf(task.id), []);
    // the session still works
    const ok = await rpc(running.url, token, sid, call(4, 'local.echo', { text: 'one' }));
    assert.equal(ok.body.result.content[0].text, 'one');
    assert.equal((await decisionsOf(task.id)).length, 1);
  });

  it('refuses a request whose id is that of an open request of the session; the id is free again once answered', async () => {
    const task = await env.createTask({ scope, max_actions: 10 });
    const token = await env.taskToken(task.id);
    const sid = await openSession(running.url, token);
    const slow = rpc(running.url, token, sid, call(7, 'local.slow', { ms: 1500 }));
    // wait until the slow call is decided (so it is open), then reuse its id
    for (let i = 0; i < 600 && (await decisionsOf(task.id)).length === 0; i++) await new Promise((ok) => setTimeout(ok, 100));
    const dup = await rpc(running.url, token, sid, call(7, 'local.echo', { text: 'dup' }));
    assert.equal(dup.status, 400);
    assert.equal(dup.body.error.code, -32600);
    assert.equal(dup.body.id, 7);
    // "7" is another id than 7 (JSON-RPC ids keep their type)
    const other = await rpc(running.url, token, sid, call('7', 'local.echo', { text: 'string id' }));
    assert.equal(other.body.result.content[0].text, 'string id');
    const first = await slow;
    assert.equal(first.body.id, 7);
    assert.equal(first.body.result.content[0].text, 'slept 1500');
    const again = await rpc(running.url, token, sid, call(7, 'local.echo', { text: 'again' }));
    assert.equal(again.body.result.content[0].text, 'again');
    // one decision per call that ran: the refused duplicate spent nothing
    assert.deepEqual((await decisionsOf(task.id)).map((d) => d.tool).sort(), ['local.echo', 'local.echo', 'local.slow']);
  });

  it('caps sessions per task: a newcomer replaces the least recently used idle one, and is refused when all are busy', async () => {
    const task = await env.createTask({ scope, max_actions: 10 });
    const token = await env.taskToken(task.id);
    const a = await openSession(running.url, token);
    const b = await openSession(running.url, token);
    // b was used last: a is the least recently used
    assert.equal((await rpc(running.url, token, b, call(1, 'local.echo', { text: 'b' }))).status, 200);
    const c = await openSession(running.url, token);
    const onA = await rpc(running.url, token, a, call(2, 'local.echo', { text: 'a' }));
    assert.equal(onA.status, 404);
    assert.equal((await rpc(running.url, token, b, call(3, 'local.echo', { text: 'b' }))).status, 200);
    assert.equal((await rpc(running.url, token, c, call(4, 'local.echo', { text: 'c' }))).status, 200);

    // both sessions busy: nothing to reclaim, the newcomer is refused
    const busy = [rpc(running.url, token, b, call(5, 'local.slow', { ms: 2000 })), rpc(running.url, token, c, call(6, 'local.slow', { ms: 2000 }))];
    for (let i = 0; i < 600 && (await decisionsOf(task.id)).filter((d) => d.tool === 'local.slow').length < 2; i++) await new Promise((ok) => setTimeout(ok, 100));
    const refused = await rpc(running.url, token, null, { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'too_many_sessions');
    await Promise.all(busy);
    // once idle, a newcomer gets a place again
    await openSession(running.url, token);
  });

  it('caps sessions per agent over its tasks', async () => {
    // this agent's earlier sessions count too: close them by revoking their tasks first
    for (const t of (await env.admin.call('GET', '/v1/tasks?status=active')).body.tasks) {
      await env.admin.call('POST', `/v1/tasks/${t.id}/revoke`, {});
    }
    await running.checkSessions();
    assert.equal(running.sessions(), 0);
    const tasks = await Promise.all([1, 2].map(() => env.createTask({ scope, max_actions: 10 })));
    const tokens = await Promise.all(tasks.map((t) => env.taskToken(t.id)));
    const s1 = await openSession(running.url, tokens[0]!);
    await openSession(running.url, tokens[0]!);
    await openSession(running.url, tokens[1]!);
    assert.equal(running.sessions(), 3);
    // the agent's fourth session (its limit is 3) replaces its least recently used one
    await openSession(running.url, tokens[1]!);
    assert.equal(running.sessions(), 3);
    assert.equal((await rpc(running.url, tokens[0]!, s1, call(1, 'local.echo', { text: 'x' }))).status, 404);
  });

  it('closes the sessions of a revoked task at once: on its next request, and by the session check', async () => {
    const t1 = await env.createTask({ scope, max_actions: 10 });
    const t2 = await env.createTask({ scope, max_actions: 10 });
    const [k1, k2] = await Promise.all([env.taskToken(t1.id), env.taskToken(t2.id)]);
    const s1 = await openSession(running.url, k1);
    const s2 = await openSession(running.url, k2);
    const before = running.sessions();
    assert.equal((await env.admin.call('POST', `/v1/tasks/${t1.id}/revoke`, {})).status, 200);
    const refused = await rpc(running.url, k1, s1, call(1, 'local.echo', { text: 'x' }));
    assert.equal(refused.status, 401);
    assert.equal(running.sessions(), before - 1);
    assert.equal((await rpc(running.url, k1, s1, call(2, 'local.echo', { text: 'x' }))).status, 401);

    // no request comes: in-process, the revocation itself closes it
    assert.equal((await env.admin.call('POST', `/v1/tasks/${t2.id}/revoke`, {})).status, 200);
    assert.equal(running.sessions(), before - 2);
    assert.equal((await rpc(running.url, k2, s2, call(3, 'local.echo', { text: 'x' }))).status, 401);

    // a task ended elsewhere (another instance, straight in the store): the periodic check closes its session
    const t3 = await env.createTask({ scope, max_actions: 10 });
    const k3 = await env.taskToken(t3.id);
    const s3 = await openSession(running.url, k3);
    assert.equal((await env.store.endTask(t3.id, 'revoked', Date.now(), { type: 'task.revoked', actor: 'system', taskId: t3.id, data: {} })).length, 1);
    assert.equal(running.sessions(), before - 1);
    const closed = await running.checkSessions();
    assert.deepEqual(closed, [s3]);
    assert.equal(running.sessions(), before - 2);
  });
});

describe('MCP gateway over stdio: batches and reused ids are refused before anything is authorized', () => {
  it('answers a batch line and a reused open id with -32600; the calls around them run', async (t) => {
    const env = await setup('sqlite');
    const dir = mkdtempSync(join(tmpdir(), 'writ-gw-stdio-guard-'));
    t.after(async () => {
      await env.teardown();
      rmSync(dir, { recursive: true, force: true });
    });
    const configPath = join(dir, 'gateway.json');
    writeFileSync(configPath, JSON.stringify({
      writ: { url: env.url },
      pins_file: 'pins.json',
      upstreams: [{ name: 'local', transport: 'stdio', command: process.execPath, args: [STDIO_FIXTURE], cwd: ROOT, destination: 'stdio:local' }],
    }));
    const approved = await runWrit(['gateway', 'tools', 'approve', '--config', configPath]);
    assert.equal(approved.code, 0, approved.stderr);
    const task = await env.createTask({ scope: { tools: ['local.*'], resources: [], destinations: ['stdio:local'] }, max_actions: 10 });
    const token = await env.taskToken(task.id);
    const gw = spawnChild(process.execPath, [CLI, 'gateway', 'mcp', '--stdio', '--config', configPath], {
      cwd: ROOT,
      env: { ...process.env, WRIT_TASK_TOKEN: token },
      stdin: 'pipe',
      owner: t,
    });
    const send = (m: unknown) => gw.proc.stdin!.write(`${typeof m === 'string' ? m : JSON.stringify(m)}\n`);
    const reply = async (pred: (m: any) => boolean) =>
      JSON.parse(await gw.waitForLine((l) => {
        try {
          return pred(JSON.parse(l));
        } catch {
          return false;
        }
      }, { stream: 'stdout', timeoutMs: 120_000 }));
    send({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    await reply((m) => m.id === 0 && m.result);
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });

    send(JSON.stringify([call(1, 'local.echo', { text: 'a' }), call(1, 'local.echo', { text: 'b' })]));
    const batch = await reply((m) => m.id === null && m.error);
    assert.equal(batch.error.code, -32600);
    assert.match(batch.error.message, /batch/);

    send(call(5, 'local.slow', { ms: 1500 }));
    // reuse id 5 once the slow call is decided (it is open then)
    for (let i = 0; i < 600 && (await decisionsOfTask(env, task.id)).length === 0; i++) await new Promise((ok) => setTimeout(ok, 100));
    send(call(5, 'local.echo', { text: 'dup' }));
    const dup = await reply((m) => m.id === 5 && m.error);
    assert.equal(dup.error.code, -32600);
    const slow = await reply((m) => m.id === 5 && m.result);
    assert.equal(slow.result.content[0].text, 'slept 1500');
    send(call(6, 'local.echo', { text: 'after' }));
    assert.equal((await reply((m) => m.id === 6 && m.result)).result.content[0].text, 'after');
    assert.deepEqual((await decisionsOfTask(env, task.id)).map((d) => d.tool).sort(), ['local.echo', 'local.slow']);
    gw.proc.stdin!.end();
    await gw.stop();
  });
});

async function decisionsOfTask(env: Awaited<ReturnType<typeof setup>>, taskId: string): Promise<{ tool: string }[]> {
  return (await env.admin.call('GET', `/v1/tasks/${taskId}`)).body.decisions;
}
