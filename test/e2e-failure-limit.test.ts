import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { UsageError } from '../src/cli/args.js';
import { windowLimitFromEnv } from '../src/cli/limits-env.js';
import { trustedProxiesFromEnv } from '../src/cli/serve.js';
import { WindowLimiter } from '../src/core/window-limiter.js';
import { ClientAddresses, limiterKey } from '../src/server/client-address.js';
import { Api, BOOT_TOKEN, makeAgentKeys, makeAssertion, openTestStore, startInstance, type AgentKeys, type Instance, type OpenedStore } from './helpers/harness.js';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

async function badTokenRequest(api: Api, stranger: AgentKeys, url: string, headers: Record<string, string> = {}) {
  const r = await fetch(`${url}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await makeAssertion(stranger, url), task_id: 'task_x' }).toString(),
  });
  await r.text();
  return r.status;
}

describe('failed requests are bounded per client address and per credential, apart', () => {
  let opened: OpenedStore;
  let inst: Instance;
  let admin: Api;
  let agent: AgentKeys;
  let stranger: AgentKeys;
  let taskId: string;
  before(async () => {
    opened = await openTestStore('sqlite');
    inst = await startInstance(opened.store, { http: { failureLimit: { max: 20, windowMs: 60_000 }, credentialFailureLimit: { max: 5, windowMs: 60_000 } } });
    await inst.writ.identity.bootstrapAdmin(BOOT_TOKEN);
    admin = new Api(inst.url, BOOT_TOKEN);
    agent = await makeAgentKeys('spiffe://acme.test/agent/good');
    stranger = await makeAgentKeys('spiffe://acme.test/agent/stranger');
    assert.equal((await admin.call('POST', '/v1/agents', { id: agent.id, jwks: { keys: [agent.publicJwk] } })).status, 201);
    const t = await admin.call('POST', '/v1/tasks', { agent_id: agent.id, intent: 'x', scope: { tools: ['github.*'] }, ttl_seconds: 600, max_actions: 100 });
    taskId = t.body.id;
  });
  after(async () => {
    await inst.close();
    await inst.writ.close().catch(() => undefined);
    await opened.cleanup();
  });

  const taskToken = async () => {
    const r = await admin.form('/oauth/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await makeAssertion(agent, inst.url), task_id: taskId });
    return r;
  };

  it('past the address limit anonymous requests get 429 and one audit entry says so; the refused requests are not each audited', async () => {
    const before = (await opened.store.listAudit({ limit: 10_000 })).length;
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) statuses.push(await badTokenRequest(admin, stranger, inst.url));
    assert.equal(statuses.filter((s) => s === 401).length, 20, 'the first 20 failures are answered');
    assert.equal(statuses.filter((s) => s === 429).length, 40, 'the rest are refused unprocessed');
    const entries = (await opened.store.listAudit({ limit: 10_000 })).slice(before);
    assert.equal(entries.filter((e) => e.type === 'token.refused').length, 20);
    const limited = entries.filter((e) => e.type === 'security.rate_limited');
    assert.equal(limited.length, 1);
    assert.equal(limited[0]!.data.remote_address, '127.0.0.1');
    const anon = await fetch(`${inst.url}/v1/agents`);
    assert.equal(anon.status, 429);
    const retry = Number(anon.headers.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 60, `retry-after ${retry}`);
    assert.equal(((await anon.json()) as any).error.code, 'rate_limited');
    // health checks and published keys are not limited: a load balancer's probe still works
    assert.equal((await fetch(`${inst.url}/healthz`)).status, 200);
    assert.equal((await fetch(`${inst.url}/.well-known/jwks.json`)).status, 200);
  });

  it('valid credentials from the limited address are never refused for the others\' failures', async () => {
    // the operator (the example: the admin's next valid request)
    assert.equal((await admin.call('GET', '/v1/agents')).status, 200);
    // the agent: a good client assertion, its task token, an action, a consume
    const tok = await taskToken();
    assert.equal(tok.status, 200, JSON.stringify(tok.body));
    const agentApi = new Api(inst.url, tok.body.access_token);
    const allowed = await agentApi.call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: 'https://tools.example/github' });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.body.decision, 'allow');
    const consumed = await new Api(inst.url).call('POST', '/v1/actions/consume', { action_token: allowed.body.action_token, audience: 'https://tools.example/github' });
    assert.equal(consumed.status, 200, JSON.stringify(consumed.body));
  });

  it('near variants: credentials that do not verify stay limited by the address', async () => {
    const tok = (await taskToken()).body.access_token as string;
    const [h, p, sig] = tok.split('.');
    const forged = `${h}.${p}.${sig!.slice(0, -4)}AAAA`;
    const variants: [string, Promise<Response>][] = [
      ['unknown operator token', fetch(`${inst.url}/v1/agents`, { headers: { authorization: 'Bearer wop_not_a_real_token_000000000000' } })],
      ['forged task token', fetch(`${inst.url}/v1/authorize`, { method: 'POST', headers: { authorization: `Bearer ${forged}`, 'content-type': 'application/json' }, body: '{}' })],
      ['task token as a lower-case scheme with junk', fetch(`${inst.url}/v1/agents`, { headers: { authorization: 'bearer eyJ.eyJ.x' } })],
      ['action token that does not verify', fetch(`${inst.url}/v1/actions/consume`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ action_token: forged, audience: 'x' }) })],
      ['assertion of an unknown agent', fetch(`${inst.url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await makeAssertion(stranger, inst.url), task_id: taskId }).toString(),
      })],
      ['assertion of a known agent signed by another key', fetch(`${inst.url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await makeAssertion(agent, inst.url, { key: stranger.privateKey }), task_id: taskId }).toString(),
      })],
      ['a subject token from no trusted issuer', fetch(`${inst.url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: forged, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', task_id: taskId }).toString(),
      })],
    ];
    for (const [what, p] of variants) assert.equal((await p).status, 429, what);
  });

  it('a credential\'s own failures limit that credential only: not its address, not other credentials', async () => {
    const auditor = await admin.call('POST', '/v1/operators', { name: 'curious', roles: ['auditor'] });
    const curious = new Api(inst.url, auditor.body.token);
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await curious.call('POST', '/v1/agents', { id: `spiffe://acme.test/agent/x${i}`, jwks: { keys: [agent.publicJwk] } })).status);
    assert.deepEqual(statuses, [403, 403, 403, 403, 403, 429, 429, 429]);
    // now even its allowed requests wait out the window: the limit is on the credential
    const r = await curious.call('GET', '/v1/audit?limit=1');
    assert.equal(r.status, 429);
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    // the admin, from the same address, is not touched
    assert.equal((await admin.call('GET', '/v1/agents')).status, 200);
    const limited = (await opened.store.listAudit({ type: 'security.rate_limited', limit: 100 })).filter((e) => e.data.credential);
    assert.equal(limited.length, 1);
    assert.match(String(limited[0]!.data.credential), /^operator:op_/);
    assert.ok(!JSON.stringify(limited[0]!.data).includes(auditor.body.token), 'the token itself is never written down');
  });

  it('an agent\'s own refusals limit that agent, not the admin or the address', async () => {
    // task_id of another task: invalid_grant with a valid assertion, counted against the agent
    const other = await admin.call('POST', '/v1/tasks', { agent_id: agent.id, intent: 'y', scope: { tools: ['x'] }, ttl_seconds: 60, max_actions: 1 });
    await admin.call('POST', `/v1/tasks/${other.body.id}/revoke`, {});
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await admin.form('/oauth/token', { grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: await makeAssertion(agent, inst.url), task_id: other.body.id });
      statuses.push(r.status);
    }
    assert.deepEqual(statuses, [400, 400, 400, 400, 400, 429, 429]);
    assert.equal((await admin.call('GET', '/v1/agents')).status, 200);
  });
});

describe('the client address behind a trusted proxy', () => {
  let opened: OpenedStore;
  let inst: Instance;
  let stranger: AgentKeys;
  before(async () => {
    opened = await openTestStore('sqlite');
    inst = await startInstance(opened.store, { http: { failureLimit: { max: 3, windowMs: 60_000 }, trustedProxies: ['127.0.0.0/8', '::1'] } });
    await inst.writ.identity.bootstrapAdmin(BOOT_TOKEN);
    stranger = await makeAgentKeys('spiffe://acme.test/agent/stranger');
  });
  after(async () => {
    await inst.close();
    await inst.writ.close().catch(() => undefined);
    await opened.cleanup();
  });

  it('an IPv6 client that changes its address within its /64 is one client', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push(await badTokenRequest(new Api(inst.url), stranger, inst.url, { 'x-forwarded-for': `2001:db8:77:1::${(i + 1).toString(16)}` }));
    assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    assert.equal(await badTokenRequest(new Api(inst.url), stranger, inst.url, { 'x-forwarded-for': '2001:db8:77:2::1' }), 401, 'the next /64 is not limited');
  });

  it('limits each forwarded client on its own; the rightmost untrusted hop is the client, so spoofed left entries change nothing', async () => {
    const a = { 'x-forwarded-for': '203.0.113.5' };
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push(await badTokenRequest(new Api(inst.url), stranger, inst.url, a));
    assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    // another client behind the same proxy is not limited
    assert.equal(await badTokenRequest(new Api(inst.url), stranger, inst.url, { 'x-forwarded-for': '203.0.113.6' }), 401);
    // the limited client cannot escape by prepending addresses of its own choosing
    assert.equal(await badTokenRequest(new Api(inst.url), stranger, inst.url, { 'x-forwarded-for': '198.51.100.1, 203.0.113.5' }), 429);
    // ... nor by naming a trusted proxy after itself (trusted hops are skipped)
    assert.equal(await badTokenRequest(new Api(inst.url), stranger, inst.url, { 'x-forwarded-for': '203.0.113.5, 127.0.0.2' }), 429);
    const limited = (await opened.store.listAudit({ type: 'security.rate_limited', limit: 10 })).map((e) => e.data.remote_address);
    assert.ok(limited.includes('203.0.113.5'), `${limited}`);
    assert.ok(!limited.includes('203.0.113.6'));
  });
});

describe('without a trusted proxy, X-Forwarded-For is ignored', () => {
  let opened: OpenedStore;
  let inst: Instance;
  before(async () => {
    opened = await openTestStore('sqlite');
    inst = await startInstance(opened.store, { http: { failureLimit: { max: 3, windowMs: 60_000 } } });
    await inst.writ.identity.bootstrapAdmin(BOOT_TOKEN);
  });
  after(async () => {
    await inst.close();
    await inst.writ.close().catch(() => undefined);
    await opened.cleanup();
  });

  it('a client rotating X-Forwarded-For values is still one address', async () => {
    const stranger = await makeAgentKeys('spiffe://acme.test/agent/stranger');
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push(await badTokenRequest(new Api(inst.url), stranger, inst.url, { 'x-forwarded-for': `203.0.113.${i}`, forwarded: `for=203.0.113.${i}` }));
    assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
  });
});

describe('client addresses, limits and their settings (units)', () => {
  const req = (remote: string, xff?: string | string[]) => ({ socket: { remoteAddress: remote }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }) as unknown as IncomingMessage;

  it('reads X-Forwarded-For only from trusted peers, right to left', () => {
    const c = new ClientAddresses(['10.0.0.0/8', 'fd00::/8', '192.0.2.7']);
    assert.equal(c.of(req('203.0.113.9', '1.2.3.4')), '203.0.113.9', 'an untrusted peer\'s header is ignored');
    assert.equal(c.of(req('10.1.2.3', '1.2.3.4')), '1.2.3.4');
    assert.equal(c.of(req('::ffff:10.1.2.3', '1.2.3.4')), '1.2.3.4', 'an IPv4-mapped peer is the IPv4 address');
    assert.equal(c.of(req('fd00::1', '1.2.3.4, 10.9.9.9')), '1.2.3.4', 'trusted hops are skipped');
    assert.equal(c.of(req('192.0.2.7', ['5.6.7.8', '1.2.3.4'])), '1.2.3.4', 'several header lines read as one list');
    assert.equal(c.of(req('10.1.2.3', '10.2.2.2')), '10.1.2.3', 'only trusted hops: the proxy itself');
    assert.equal(c.of(req('10.1.2.3')), '10.1.2.3', 'no header: the proxy itself');
    assert.equal(c.of(req('10.1.2.3', '1.2.3.4, not-an-ip')), 'invalid:not-an-ip');
    assert.equal(c.of(req('192.0.2.8', '1.2.3.4')), '192.0.2.8', 'a neighbour of a trusted address is not trusted');
    assert.equal(new ClientAddresses().of(req('10.1.2.3', '1.2.3.4')), '10.1.2.3', 'nothing trusted by default');
    for (const bad of ['10.0.0.0/33', 'fd00::/129', 'example.com', '10.0.0.0/8/8', '10.0.0.0/x', '']) {
      assert.throws(() => new ClientAddresses([bad]), TypeError, bad);
    }
  });

  it('counts IPv4 clients per address and IPv6 clients per /64, whatever the spelling', () => {
    assert.equal(limiterKey('203.0.113.5'), '203.0.113.5');
    assert.equal(limiterKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(limiterKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64', 'another host of the same /64, spelt long');
    assert.equal(limiterKey('2001:DB8:1:2::'), '2001:db8:1:2::/64');
    assert.notEqual(limiterKey('2001:db8:1:3::1'), limiterKey('2001:db8:1:2::1'), 'the next /64 is another client');
    assert.equal(limiterKey('::1'), '0:0:0:0::/64');
    assert.equal(limiterKey('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64', 'an embedded IPv4 tail');
    assert.equal(limiterKey('invalid:x'), 'invalid:x');
  });

  it('WRIT_FAILURE_LIMIT and WRIT_CREDENTIAL_FAILURE_LIMIT keep the MAX/SECONDS form; WRIT_TRUSTED_PROXIES is a list', () => {
    assert.deepEqual(windowLimitFromEnv('WRIT_FAILURE_LIMIT', '1000/10'), { max: 1000, windowMs: 10_000 });
    assert.deepEqual(windowLimitFromEnv('WRIT_FAILURE_LIMIT', ' 5/60 '), { max: 5, windowMs: 60_000 });
    assert.equal(windowLimitFromEnv('WRIT_FAILURE_LIMIT', undefined), undefined);
    for (const bad of ['1000', '0/10', '10/0', '10/10/10', '-1/10', '1e3/10', 'ten/10', '10 / 10']) {
      assert.throws(() => windowLimitFromEnv('WRIT_CREDENTIAL_FAILURE_LIMIT', bad), UsageError, bad);
    }
    assert.deepEqual(trustedProxiesFromEnv('10.0.0.0/8, ::1'), ['10.0.0.0/8', '::1']);
    assert.deepEqual(trustedProxiesFromEnv(''), []);
    assert.throws(() => trustedProxiesFromEnv('10.0.0.0/8,proxy.internal'), UsageError);
  });

  it('a window limiter counts per key and tells when the window ends', () => {
    let now = 0;
    const l = new WindowLimiter(2, 1000, () => now);
    assert.equal(l.mayBlock(), false);
    l.record('a');
    assert.equal(l.check('a').blocked, false);
    l.record('a');
    assert.deepEqual(l.check('a'), { blocked: true, report: true, count: 2, retryAfterMs: 1000 });
    assert.equal(l.check('a').report, false, 'reported once per window');
    assert.equal(l.check('b').blocked, false, 'another key is not touched');
    assert.equal(l.mayBlock(), true);
    now = 400;
    assert.equal(l.check('a').retryAfterMs, 600);
    now = 1000;
    assert.equal(l.check('a').blocked, false, 'a new window');
    assert.equal(l.mayBlock(), false);
    const small = new WindowLimiter(1, 1000, () => now, 3);
    for (const k of ['a', 'b', 'c', 'd', 'e']) small.record(k);
    assert.equal(small.check('e').blocked, true, 'the newest key is kept when the map is full');
  });
});

describe('limit settings from the environment', () => {
  it('WRIT_APPROVAL_OPEN_MAX_*, WRIT_TASK_REFUSAL_LIMIT, WRIT_VISIBLE_TOOLS_*: parsed strictly; unset keeps the defaults', async () => {
    const { limitsConfigFromEnv } = await import('../src/cli/limits-env.js');
    assert.deepEqual(limitsConfigFromEnv({}), {});
    assert.deepEqual(
      limitsConfigFromEnv({
        WRIT_APPROVAL_OPEN_MAX_PER_TASK: '10',
        WRIT_APPROVAL_OPEN_MAX_PER_AGENT: '40',
        WRIT_TASK_REFUSAL_LIMIT: '50/2',
        WRIT_VISIBLE_TOOLS_MAX: '512',
        WRIT_VISIBLE_TOOLS_LIMIT: '5/1',
      }),
      { approvalOpenMaxPerTask: 10, approvalOpenMaxPerAgent: 40, taskRefusalLimit: { max: 50, windowMs: 2000 }, visibleToolsMax: 512, visibleToolsLimit: { max: 5, windowMs: 1000 } },
    );
    for (const [name, bad] of [
      ['WRIT_APPROVAL_OPEN_MAX_PER_TASK', '0'],
      ['WRIT_APPROVAL_OPEN_MAX_PER_TASK', '-5'],
      ['WRIT_APPROVAL_OPEN_MAX_PER_AGENT', '1.5'],
      ['WRIT_APPROVAL_OPEN_MAX_PER_AGENT', 'lots'],
      ['WRIT_TASK_REFUSAL_LIMIT', '20'],
      ['WRIT_TASK_REFUSAL_LIMIT', '0/1'],
      ['WRIT_VISIBLE_TOOLS_MAX', '10001'],
      ['WRIT_VISIBLE_TOOLS_LIMIT', '30/0'],
    ] as const) {
      assert.throws(() => limitsConfigFromEnv({ [name]: bad }), UsageError, `${name}=${bad}`);
    }
  });
});
