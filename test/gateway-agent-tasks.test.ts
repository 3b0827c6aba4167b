import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportJWK } from 'jose';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { ChildStdioTransport, spawnChild, type Child } from './helpers/child.js';
import { CLI, eventually, ROOT, runWrit, STDIO_FIXTURE, textOf } from './helpers/gateway-fixtures.js';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { withDefaultUser } from '../src/store/postgres/postgres-store.js';
import type { Store } from '../src/store/store.js';
import { Api, BOOT_TOKEN, makeAgentKeys, makeAssertion, setup, startInstance, type AgentKeys, type Instance } from './helpers/harness.js';
import { startServe, type Spawned } from './helpers/serve-process.js';
import { taskTokenTtlFromEnv } from '../src/cli/operator-env.js';
import { UsageError } from '../src/cli/args.js';

/**
 * Agents that keep working (issue 15 item 6): `GET /v1/agents/{id}/tasks` (the agent's own
 * active tasks, with its key, long-polled), and `writ gateway mcp --stdio` holding the
 * agent's key: a token for one task, or for each task an operator assigns, renewed before
 * it ends, dropped when the task ends; calls refused while there is none.
 */

const tasksPath = (id: string) => `/v1/agents/${encodeURIComponent(id)}/tasks`;

async function listTasks(url: string, agentId: string, bearer: string | null, opts: { query?: string; ifNoneMatch?: string } = {}) {
  const headers: Record<string, string> = {};
  if (bearer !== null) headers.authorization = `Bearer ${bearer}`;
  if (opts.ifNoneMatch !== undefined) headers['if-none-match'] = opts.ifNoneMatch;
  const r = await fetch(`${url}${tasksPath(agentId)}${opts.query ?? '?status=active'}`, { headers });
  const text = await r.text();
  return { status: r.status, etag: r.headers.get('etag'), body: text ? JSON.parse(text) : null };
}

describe('GET /v1/agents/{id}/tasks', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let other: AgentKeys;
  const assertion = (a: AgentKeys, forAgent = a.id, over: Parameters<typeof makeAssertion>[2] = {}) => makeAssertion(a, `${env.url}${tasksPath(forAgent)}`, over);

  before(async () => {
    env = await setup('sqlite', { http: { log: () => undefined } });
    other = await makeAgentKeys('spiffe://acme.test/agent/other');
    const reg = await env.admin.call('POST', '/v1/agents', { id: other.id, name: 'other', jwks: { keys: [other.publicJwk] } });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
  });
  after(async () => env?.teardown());

  it('lists the agent\'s own active tasks only, with an ETag; no owner or usage', async () => {
    const a = await env.createTask();
    const b = await env.createTask();
    const done = await env.createTask();
    assert.equal((await env.admin.call('POST', `/v1/tasks/${done.id}/revoke`, { reason: 'x' })).status, 200);
    await env.admin.call('POST', '/v1/tasks', { agent_id: other.id, intent: 'not yours', scope: { tools: ['x.*'], resources: [], destinations: [] }, ttl_seconds: 600, max_actions: 1 });
    const r = await listTasks(env.url, env.agent.id, await assertion(env.agent));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const ids = r.body.tasks.map((t: any) => t.id);
    assert.ok(ids.includes(a.id) && ids.includes(b.id));
    assert.ok(!ids.includes(done.id), 'a revoked task is not listed');
    assert.equal(r.body.tasks.every((t: any) => t.status === 'active' && t.intent === 'file the weekly billing report'), true, 'another agent\'s task is not listed');
    assert.deepEqual(Object.keys(r.body.tasks[0]).sort(), ['created_at', 'expires_at', 'id', 'intent', 'parent_id', 'status']);
    assert.match(r.etag!, /^"[A-Za-z0-9_-]+"$/);
  });

  it('refuses anything but a fresh assertion by the agent\'s own key for this URL', async () => {
    const stranger = await makeAgentKeys(env.agent.id);
    const cases: [string, string | null, number, string][] = [
      ['no credential', null, 401, 'invalid_token'],
      ['an assertion for the token endpoint', await makeAssertion(env.agent, env.url), 401, 'invalid_token'],
      ['signed by another key', await makeAssertion(env.agent, `${env.url}${tasksPath(env.agent.id)}`, { key: stranger.privateKey }), 401, 'invalid_token'],
      ['expired', await assertion(env.agent, env.agent.id, { iat: Math.floor(Date.now() / 1000) - 400, exp: Math.floor(Date.now() / 1000) - 100 }), 401, 'invalid_token'],
      ['iss is not sub', await assertion(env.agent, env.agent.id, { sub: other.id }), 401, 'invalid_token'],
      ['an unknown agent', await makeAssertion(await makeAgentKeys('spiffe://acme.test/agent/nobody'), `${env.url}${tasksPath('spiffe://acme.test/agent/nobody')}`), 401, 'invalid_token'],
      ['a task token', await env.taskToken((await env.createTask()).id), 401, 'invalid_token'],
      ['the admin token', BOOT_TOKEN, 401, 'invalid_token'],
    ];
    for (const [what, bearer, status, code] of cases) {
      const r = await listTasks(env.url, env.agent.id, bearer);
      assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, code, what);
    }
    // replay: the same assertion twice
    const once = await assertion(env.agent);
    assert.equal((await listTasks(env.url, env.agent.id, once)).status, 200);
    const again = await listTasks(env.url, env.agent.id, once);
    assert.equal(again.status, 401);
    assert.match(again.body.error.message, /used before/);
    // another agent's list, with that agent's own valid assertion for the path: 403
    const foreign = await listTasks(env.url, env.agent.id, await assertion(other, env.agent.id));
    assert.equal(foreign.status, 403, JSON.stringify(foreign.body));
    // nor the other way round
    assert.equal((await listTasks(env.url, other.id, await assertion(env.agent, other.id))).status, 403);
    // a listing assertion cannot be spent at the token endpoint
    const task = await env.createTask();
    const spent = await env.admin.form('/oauth/token', {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await assertion(env.agent),
      task_id: task.id,
    });
    assert.equal(spent.status, 401);
    assert.equal(spent.body.error, 'invalid_client');
  });

  it('refuses a disabled agent, and bad query shapes and If-None-Match values', async () => {
    const gone = await makeAgentKeys('spiffe://acme.test/agent/gone');
    await env.admin.call('POST', '/v1/agents', { id: gone.id, name: 'gone', jwks: { keys: [gone.publicJwk] } });
    await env.admin.call('POST', `/v1/agents/${encodeURIComponent(gone.id)}/disable`);
    const d = await listTasks(env.url, gone.id, await makeAssertion(gone, `${env.url}${tasksPath(gone.id)}`));
    assert.equal(d.status, 401);
    assert.equal(d.body.error.code, 'agent_disabled');
    for (const query of ['?status=revoked', '?status=', '?wait=31', '?wait=-1', '?wait=x', '?limit=5', '?status=active&status=active&x=1']) {
      const r = await listTasks(env.url, env.agent.id, await assertion(env.agent), { query });
      assert.equal(r.status, 400, `${query}: ${JSON.stringify(r.body)}`);
    }
    for (const tag of ['*', 'W/"abc"', '"a", "b"', 'abc', '"a b"']) {
      const r = await listTasks(env.url, env.agent.id, await assertion(env.agent), { ifNoneMatch: tag });
      assert.equal(r.status, 400, tag);
    }
  });

  it('long-polls: answers when the set changes (a task assigned), 304 when it does not', async () => {
    const first = await listTasks(env.url, env.agent.id, await assertion(env.agent));
    const unchanged = await listTasks(env.url, env.agent.id, await assertion(env.agent), { query: '?status=active&wait=1', ifNoneMatch: first.etag! });
    assert.equal(unchanged.status, 304);
    assert.equal(unchanged.etag, first.etag);
    // a waiting poll gets the task created while it waits
    const waiting = listTasks(env.url, env.agent.id, await assertion(env.agent), { query: '?status=active&wait=30', ifNoneMatch: first.etag! });
    const created = await env.createTask({ intent: 'a new assignment' });
    const changed = await waiting;
    assert.equal(changed.status, 200);
    assert.ok(changed.body.tasks.some((t: any) => t.id === created.id));
    assert.notEqual(changed.etag, first.etag);
    // and one that ends
    const waiting2 = listTasks(env.url, env.agent.id, await assertion(env.agent), { query: '?status=active&wait=30', ifNoneMatch: changed.etag! });
    await env.admin.call('POST', `/v1/tasks/${created.id}/revoke`, { reason: 'done' });
    const ended = await waiting2;
    assert.equal(ended.status, 200);
    assert.ok(!ended.body.tasks.some((t: any) => t.id === created.id));
  });
});

/** The gateway's JSON log lines on stderr. */
function events(child: Child): Record<string, any>[] {
  return child
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
}

/** Resolves once the gateway logged `n` events matching `pred`. */
function waitEvent(child: Child, pred: (e: Record<string, any>) => boolean, n = 1): Promise<Record<string, any>> {
  return eventually(async () => {
    const hits = events(child).filter(pred);
    return hits.length >= n ? hits[n - 1] : undefined;
  }, 60_000);
}

/** The MCP error's `data.code` of a refused call (the call must be refused). */
async function refusedCode(client: Client, args: { name: string; arguments: Record<string, unknown> }): Promise<string> {
  try {
    await client.callTool(args);
  } catch (err) {
    assert.ok(err instanceof McpError, String(err));
    return (err.data as { code: string }).code;
  }
  assert.fail('the call was not refused');
}

describe('writ gateway mcp --stdio with the agent\'s key (a real writ serve)', () => {
  let dir: string;
  let serve: Spawned & { url: string };
  let admin: Api;
  let agent: AgentKeys;
  let other: AgentKeys;
  let agentJwk: string;
  let configPath: string;
  let upstreamLog: string;
  const started: Child[] = [];

  const scope = { tools: ['local.echo'], resources: [], destinations: ['stdio:local'] };
  const createTask = async (agentId: string, intent: string) => {
    const r = await admin.call('POST', '/v1/tasks', { agent_id: agentId, intent, scope, ttl_seconds: 600, max_actions: 50 });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id as string;
  };

  /** A gateway as a desktop MCP client starts it: `writ gateway mcp --stdio`, with the agent key in WRIT_AGENT_KEY. */
  const startGateway = async (args: string[], key: string) => {
    const base: Record<string, string> = {};
    for (const k of ['HOME', 'PATH']) if (process.env[k] !== undefined) base[k] = process.env[k]!;
    const child = spawnChild(process.execPath, [CLI, 'gateway', 'mcp', '--stdio', '--config', configPath, '--agent', agent.id, ...args], {
      cwd: ROOT,
      env: { ...base, WRIT_AGENT_KEY: key },
      stdin: 'pipe',
    });
    started.push(child);
    const client = new Client({ name: 'desktop', version: '1.0.0' });
    await client.connect(new ChildStdioTransport(child));
    return { child, client };
  };
  const upstreamCalls = () => {
    try {
      return readFileSync(upstreamLog, 'utf8').split('\n').filter(Boolean).length;
    } catch {
      return 0;
    }
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'writ-agent-gw-'));
    // a short task token lifetime: renewals happen within the test
    serve = await startServe(['--data-dir', join(dir, 'store')], { ...process.env, WRIT_BOOTSTRAP_TOKEN: BOOT_TOKEN, WRIT_TASK_TOKEN_TTL: '3', WRIT_LOG_LEVEL: 'warn' });
    admin = new Api(serve.url, BOOT_TOKEN);
    agent = await makeAgentKeys('spiffe://acme.test/agent/desktop');
    other = await makeAgentKeys('spiffe://acme.test/agent/someone-else');
    for (const a of [agent, other]) {
      const r = await admin.call('POST', '/v1/agents', { id: a.id, name: a.id.split('/').pop(), jwks: { keys: [a.publicJwk] } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    agentJwk = JSON.stringify({ ...(await exportJWK(agent.privateKey)), kid: 'k1', alg: 'EdDSA' });
    upstreamLog = join(dir, 'upstream.jsonl');
    configPath = join(dir, 'gateway.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        writ: { url: serve.url },
        pins_file: 'pins.json',
        upstreams: [{ name: 'local', transport: 'stdio', command: process.execPath, args: [STDIO_FIXTURE], cwd: ROOT, env: { FIXTURE_LOG: upstreamLog }, destination: 'stdio:local' }],
      }),
    );
    const approved = await runWrit(['gateway', 'tools', 'approve', '--config', configPath, '--tool', 'local.echo']);
    assert.equal(approved.code, 0, approved.stderr);
  });

  after(async () => {
    for (const c of started) await c.stop();
    await serve?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('configured once, keeps working across two tasks: refuses before and between them, renews a short-lived token, drops a revoked task\'s token', async () => {
    const { child, client } = await startGateway(['--follow-agent-tasks'], agentJwk);
    await waitEvent(child, (e) => e.event === 'serving_stdio');
    // no task yet: refused with a typed error, nothing reaches the tool
    assert.equal(await refusedCode(client, { name: 'local.echo', arguments: { text: 'too early' } }), 'no_active_task');
    assert.equal(upstreamCalls(), 0);

    // an operator assigns a task: the gateway takes it and works
    const t1 = await createTask(agent.id, 'first task');
    await waitEvent(child, (e) => e.event === 'task_token_obtained' && e.task_id === t1);
    assert.equal(textOf(await client.callTool({ name: 'local.echo', arguments: { text: 'one' } })), 'one');

    // the token lives 3 s and is renewed at 2/3 of that: after two renewals the first token has expired, and calls still work
    await waitEvent(child, (e) => e.event === 'task_token_renewed' && e.task_id === t1, 2);
    assert.equal(textOf(await client.callTool({ name: 'local.echo', arguments: { text: 'still' } })), 'still');

    // the operator revokes it: the token is dropped and calls are refused, not passed
    assert.equal((await admin.call('POST', `/v1/tasks/${t1}/revoke`, { reason: 'done for today' })).status, 200);
    await waitEvent(child, (e) => e.event === 'task_token_dropped' && e.task_id === t1);
    const before = upstreamCalls();
    assert.equal(await refusedCode(client, { name: 'local.echo', arguments: { text: 'between' } }), 'no_active_task');
    assert.equal(upstreamCalls(), before, 'nothing reached the tool');

    // another agent's task is not taken; the next task of this agent is
    const foreign = await createTask(other.id, 'not for the desktop agent');
    const t2 = await createTask(agent.id, 'second task');
    await waitEvent(child, (e) => e.event === 'task_token_obtained' && e.task_id === t2);
    assert.equal(textOf(await client.callTool({ name: 'local.echo', arguments: { text: 'two' } })), 'two');
    assert.ok(!events(child).some((e) => e.task_id === foreign), 'the other agent\'s task never appears');
    assert.ok(!child.stderr().includes('eyJ'), 'no token in the gateway\'s log');

    // Writ recorded each call under its own task
    const decisions = async (t: string) => (await admin.call('GET', `/v1/tasks/${t}`)).body.decisions.map((d: any) => d.decision);
    assert.deepEqual(await decisions(t1), ['allow', 'allow']);
    assert.deepEqual(await decisions(t2), ['allow']);
    await client.close();
  });

  it('holds one task with --task: works, and once the task ends refuses with why', async () => {
    const t = await createTask(agent.id, 'one fixed task');
    const { child, client } = await startGateway(['--task', t], agentJwk);
    await waitEvent(child, (e) => e.event === 'task_token_obtained' && e.task_id === t);
    assert.equal(textOf(await client.callTool({ name: 'local.echo', arguments: { text: 'fixed' } })), 'fixed');
    assert.equal((await admin.call('POST', `/v1/tasks/${t}/revoke`, { reason: 'over' })).status, 200);
    await waitEvent(child, (e) => e.event === 'task_token_dropped' && e.task_id === t);
    assert.equal(await refusedCode(client, { name: 'local.echo', arguments: { text: 'after' } }), 'task_token_unavailable');
    await client.close();
  });

  it('a wrong agent key gets nothing: calls are refused with agent_key_refused', async () => {
    const t = await createTask(agent.id, 'a task the wrong key cannot get');
    const impostor = await makeAgentKeys(agent.id);
    const wrongJwk = JSON.stringify({ ...(await exportJWK(impostor.privateKey)), kid: 'k1', alg: 'EdDSA' });
    const { child, client } = await startGateway(['--task', t], wrongJwk);
    await waitEvent(child, (e) => e.event === 'task_token_failed' && e.error === 'invalid_client');
    assert.equal(await refusedCode(client, { name: 'local.echo', arguments: { text: 'impostor' } }), 'agent_key_refused');
    assert.deepEqual((await admin.call('GET', `/v1/tasks/${t}`)).body.decisions, []);
    await client.close();
  });

  it('refuses a bad configuration at start: a key that is not a JWK, options that do not go together', async () => {
    for (const [args, env, pattern] of [
      [['--follow-agent-tasks'], { WRIT_AGENT_KEY: 'not json' }, /WRIT_AGENT_KEY is not JSON/],
      [['--follow-agent-tasks'], { WRIT_AGENT_KEY: JSON.stringify(agent.publicJwk) }, /holds no private key/],
      [['--follow-agent-tasks', '--task', 'task_x'], { WRIT_AGENT_KEY: agentJwk }, /one of `--task ID` and `--follow-agent-tasks`/],
      [['--follow-agent-tasks'], {}, /needs the agent's private key/],
    ] as [string[], Record<string, string>, RegExp][]) {
      const r = await runWrit(['gateway', 'mcp', '--stdio', '--config', configPath, '--agent', agent.id, ...args], { WRIT_AGENT_KEY: '', ...env });
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, pattern);
      assert.ok(!r.stderr.includes(JSON.parse(agentJwk).d), 'the private key is never printed');
    }
    const noStdio = await runWrit(['gateway', 'mcp', '--config', configPath, '--agent', agent.id, '--follow-agent-tasks'], { WRIT_AGENT_KEY: agentJwk });
    assert.notEqual(noStdio.code, 0);
    assert.match(noStdio.stderr, /go with `--stdio`/);
  });
});

describe('WRIT_TASK_TOKEN_TTL', () => {
  it('takes whole seconds from 1 to 900; unset keeps the default', () => {
    assert.deepEqual(taskTokenTtlFromEnv(undefined), {});
    assert.deepEqual(taskTokenTtlFromEnv(''), {});
    assert.deepEqual(taskTokenTtlFromEnv('3'), { taskTokenTtlSeconds: 3 });
    assert.deepEqual(taskTokenTtlFromEnv('900'), { taskTokenTtlSeconds: 900 });
    for (const bad of ['0', '901', '-5', '1.5', '10s', 'x', ' 1 0']) assert.throws(() => taskTokenTtlFromEnv(bad), UsageError, bad);
  });
});

describe('the long-poll across instances on PostgreSQL (LISTEN/NOTIFY)', { skip: process.env.WRIT_SKIP_POSTGRES ? `PostgreSQL suites skipped: ${process.env.WRIT_SKIP_POSTGRES}` : false }, () => {
  const url = process.env.WRIT_TEST_DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';
  const schema = `writ_at_${randomBytes(6).toString('hex')}`;
  const ISSUER = 'http://writ.test';
  const stores: Store[] = [];
  let a: Instance;
  let b: Instance;
  let agent: AgentKeys;

  before(async () => {
    const { PostgresStore } = await import('../src/store/postgres/postgres-store.js');
    const open = () => {
      const s = new PostgresStore({ connectionString: url, schema });
      stores.push(s);
      return s;
    };
    a = await startInstance(open(), { issuer: ISSUER });
    await a.writ.identity.bootstrapAdmin(BOOT_TOKEN);
    b = await startInstance(open(), { issuer: ISSUER });
    agent = await makeAgentKeys('spiffe://acme.test/agent/multi');
    assert.equal((await new Api(a.url, BOOT_TOKEN).call('POST', '/v1/agents', { id: agent.id, jwks: { keys: [agent.publicJwk] } })).status, 201);
  });
  after(async () => {
    for (const i of [a, b]) await i?.close();
    for (const i of [a, b]) await i?.writ.close().catch(() => undefined);
    for (const s of stores) await s.close().catch(() => undefined);
    const c = new pg.Client({ connectionString: withDefaultUser(url, process.env.PGUSER) });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await c.end();
  });

  it('a task created through one instance wakes a long-poll waiting on another by a notification (not its next store read)', async () => {
    const listAtB = async (opts: { query?: string; ifNoneMatch?: string } = {}) => listTasks(b.url, agent.id, await makeAssertion(agent, `${ISSUER}${tasksPath(agent.id)}`), opts);
    const first = await listAtB();
    assert.equal(first.status, 200, JSON.stringify(first.body));
    // one short poll subscribes B to the notifications; then B re-reads the store only once a minute
    assert.equal((await listAtB({ query: '?status=active&wait=1', ifNoneMatch: first.etag! })).status, 304);
    b.writ.tasks.agentTasks.pollListeningMs = 60_000;
    const waiting = listAtB({ query: '?status=active&wait=30', ifNoneMatch: first.etag! });
    await eventually(async () => b.writ.tasks.agentTasks.waiting > 0);
    const notifiedBefore = b.writ.tasks.agentTasks.notified;
    const created = await new Api(a.url, BOOT_TOKEN).call('POST', '/v1/tasks', { agent_id: agent.id, intent: 'through A', scope: { tools: ['x.*'], resources: [], destinations: [] }, ttl_seconds: 600, max_actions: 1 });
    assert.equal(created.status, 201);
    // A's change reaches B as a notification, and the waiting poll answers with the new task
    await eventually(async () => b.writ.tasks.agentTasks.notified > notifiedBefore);
    const r = await waiting;
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.tasks.map((t: any) => t.id), [created.body.id]);
  });
});
