import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { prettyLine } from '../src/cli/logger.js';
import { Api, makeAgentKeys, makeAssertion } from './helpers/harness.js';
import { spawnChild } from './helpers/child.js';
import { REPO } from './helpers/serve-process.js';

const TOKEN = 'wop_Lx1Vb7Nc2Kd9Ws6Tf3Yh0Jg5Pe_Ua-Io8RnEvQm4Zr8';

describe('structured logs (issue 15 item 3)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-logs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ ...process.env, WRIT_DATABASE_URL: '', WRIT_BOOTSTRAP_TOKEN: TOKEN, ...extra });

  it('one JSON access line per request: method, route template, status, latency, decision id; never a token', async (t) => {
    const c = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', join(dir, 'json')], { cwd: REPO, env: env(), owner: t });
    const line = await c.waitForLine(/writ listening on http:\/\//, { stream: 'stdout' });
    const url = /writ listening on (http:\/\/\S+)/.exec(line)![1]!;
    const admin = new Api(url, TOKEN);
    const agent = await makeAgentKeys('spiffe://acme.test/agent/logs');
    assert.equal((await admin.call('POST', '/v1/agents', { id: agent.id, jwks: { keys: [agent.publicJwk] } })).status, 201);
    const task = (await admin.call('POST', '/v1/tasks', { agent_id: agent.id, intent: 'logs', scope: { tools: ['*'] }, ttl_seconds: 600, max_actions: 10 })).body;
    const assertion = await makeAssertion(agent, url);
    const tok = await admin.form('/oauth/token', {
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
      task_id: task.id,
    });
    const taskToken = tok.body.access_token as string;
    const az = await new Api(url, taskToken).call('POST', '/v1/authorize', { tool: 'db.read', arguments: { q: 'arg-secret-77' }, audience: 'aud' });
    assert.equal(az.body.decision, 'allow');
    assert.equal((await admin.call('GET', `/v1/tasks/${task.id}`)).status, 200);
    // a bad bearer that looks like a JWT, and one that does not, and one in the query
    const fakeJwt = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA';
    const opaque = 'wop_notreal_Ze9Xq2Lp7Vb4Nc1Kd8Ws5Tf0Yh3Jg6Pe';
    assert.equal((await new Api(url, fakeJwt).call('GET', '/v1/agents')).status, 401);
    assert.equal((await new Api(url, opaque).call('GET', '/v1/agents')).status, 401);
    await fetch(`${url}/v1/agents?access_token=${opaque}`);
    // the last request's line: an event, not a sleep
    // all three refusals logged (a line is written when its response finishes)
    await c.waitForLine(() => c.stdout().split('"route":"/v1/agents","status":401').length - 1 >= 3, { stream: 'stdout' });
    await c.waitForLine((l) => l.includes('"route":"/v1/tasks/{id}"'), { stream: 'stdout' });

    const lines = c.stdout().split('\n').filter((l) => l.startsWith('{'));
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const access = records.filter((r) => r.msg === 'request');
    assert.ok(access.length >= 8, c.stdout());
    for (const r of access) {
      assert.equal(r.level, 'info');
      assert.equal(typeof r.time, 'number');
      assert.equal(typeof r.latency_ms, 'number');
      assert.equal(typeof r.status, 'number');
      assert.match(String(r.method), /^(GET|POST)$/);
    }
    const authorize = access.find((r) => r.route === '/v1/authorize')!;
    assert.deepEqual([authorize.method, authorize.status, authorize.decision_id], ['POST', 200, az.body.decision_id]);
    const taskLine = access.find((r) => r.route === '/v1/tasks/{id}')!;
    assert.equal(taskLine.status, 200);

    const all = c.stdout() + c.stderr();
    for (const secret of [TOKEN, taskToken, fakeJwt, opaque, assertion, 'arg-secret-77', task.id]) {
      assert.ok(!all.includes(secret), `the logs hold \`${secret.slice(0, 12)}…\``);
    }
    await c.stop();
  });

  it('WRIT_LOG_LEVEL=warn drops access lines; a bad level is refused; --log-format pretty is for people', async (t) => {
    const quiet = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', join(dir, 'quiet')], { cwd: REPO, env: env({ WRIT_LOG_LEVEL: 'warn' }), owner: t });
    const url = /writ listening on (http:\/\/\S+)/.exec(await quiet.waitForLine(/writ listening on http:\/\//, { stream: 'stdout' }))![1]!;
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    await quiet.stop();
    assert.doesNotMatch(quiet.stdout(), /"msg":"request"/);

    for (const [args, extra, pattern] of [
      [[], { WRIT_LOG_LEVEL: 'loud' }, /WRIT_LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent/],
      [['--log-format', 'xml'], {}, /`--log-format` must be `json` or `pretty`/],
    ] as const) {
      const bad = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', join(dir, 'bad'), ...args], { cwd: REPO, env: env(extra), owner: t });
      assert.notEqual((await bad.exited).code, 0);
      assert.match(bad.stderr(), pattern);
    }

    const pretty = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--log-format', 'pretty', '--data-dir', join(dir, 'pretty')], { cwd: REPO, env: env(), owner: t });
    const purl = /writ listening on (http:\/\/\S+)/.exec(await pretty.waitForLine(/writ listening on http:\/\//, { stream: 'stdout' }))![1]!;
    await fetch(`${purl}/healthz`);
    const l = await pretty.waitForLine(/ INFO +request /, { stream: 'stdout' });
    assert.match(l, /^\d\d:\d\d:\d\d\.\d{3} INFO  request method=GET route=\/healthz status=200 latency_ms=[\d.]+$/);
    await pretty.stop();
    assert.equal(prettyLine('not json\n'), 'not json\n');
  });
});
