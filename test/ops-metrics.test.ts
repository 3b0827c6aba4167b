import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { labelValue } from '../src/service/metrics.js';
import { Api, backends, setup } from './helpers/harness.js';
import { spawnChild } from './helpers/child.js';
import { REPO } from './helpers/serve-process.js';

const METRICS_TOKEN = 'wmt_Qm4Zr8Lx1Vb7Nc2Kd9Ws6Tf3Yh0Jg5Pe_Ua';

/** The value of one sample line (`name{labels} value`), or undefined. */
function sample(text: string, line: string): number | undefined {
  const hit = text.split('\n').find((l) => l.startsWith(`${line} `));
  return hit === undefined ? undefined : Number(hit.slice(line.length + 1));
}

for (const { backend, skip } of backends()) {
  describe(`Prometheus /metrics (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    before(async () => {
      env = await setup(backend, { http: { metricsToken: METRICS_TOKEN, log: () => undefined } });
    });
    after(async () => env?.teardown());

    const scrape = async (token: string | null, path = '/metrics') => {
      const r = await fetch(`${env.url}${path}`, token === null ? {} : { headers: { authorization: `Bearer ${token}` } });
      return { status: r.status, text: await r.text(), type: r.headers.get('content-type') };
    };
    const operator = async (roles: string[]) => {
      const r = await env.admin.call('POST', '/v1/operators', { name: `op-${roles.join('-')}`, roles });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body.token as string;
    };

    it('is never open: admin, auditor or the metrics token read it; nobody else does', async () => {
      assert.equal((await scrape(null)).status, 401, 'no credential');
      assert.equal((await scrape(env.admin.token!)).status, 200, 'admin');
      assert.equal((await scrape(await operator(['auditor']))).status, 200, 'auditor');
      assert.equal((await scrape(await operator(['requester']))).status, 403, 'a requester');
      assert.equal((await scrape(await operator(['approver']))).status, 403, 'an approver');
      const ok = await scrape(METRICS_TOKEN);
      assert.equal(ok.status, 200, 'the metrics token');
      assert.match(ok.type!, /^text\/plain; version=0\.0\.4/);
      // near variants of the metrics token
      for (const bad of [`${METRICS_TOKEN}x`, METRICS_TOKEN.slice(0, -1), METRICS_TOKEN.toUpperCase(), `${METRICS_TOKEN} ${METRICS_TOKEN}`]) {
        assert.equal((await scrape(bad)).status, 401, bad);
      }
      assert.equal((await scrape(null, `/metrics?token=${METRICS_TOKEN}`)).status, 401, 'not in the query');
      const task = await env.createTask();
      assert.equal((await scrape(await env.taskToken(task.id))).status, 401, 'an agent task token');
    });

    it('counts decisions by result and reason, times the stages, and labels carry no ids or arguments', async () => {
      const task = await env.createTask();
      const token = await env.taskToken(task.id);
      const agentApi = new Api(env.url, token);
      const secret = 'arg_value_zx81_do_not_leak';
      const allow = await agentApi.call('POST', '/v1/authorize', { tool: 'github.create_issue', arguments: { title: secret }, audience: 'https://api.github.com' });
      assert.equal(allow.body.decision, 'allow', JSON.stringify(allow.body));
      assert.equal(allow.headers.get('x-writ-decision-id'), allow.body.decision_id);
      const deny = await agentApi.call('POST', '/v1/authorize', { tool: 'shell.exec', arguments: { cmd: secret }, audience: 'local' });
      assert.equal(deny.body.decision, 'deny');
      const denyCode = deny.body.reasons[0].code as string;
      await env.admin.call('GET', `/v1/tasks/${task.id}`);
      await env.admin.call('GET', `/nowhere/${secret}`);
      const other = await env.createTask();
      assert.equal((await env.admin.call('POST', `/v1/tasks/${other.id}/revoke`, { reason: secret })).status, 200);

      const { text } = await scrape(METRICS_TOKEN);
      assert.ok(sample(text, 'writ_decisions_total{result="allow",reason="none"}')! >= 1, text);
      assert.ok(sample(text, `writ_decisions_total{result="deny",reason="${denyCode}"}`)! >= 1, text);
      for (const stage of ['authenticate', 'cedar', 'commit', 'total']) {
        assert.ok(sample(text, `writ_decision_stage_duration_seconds_count{stage="${stage}"}`)! >= 1, stage);
      }
      assert.ok(sample(text, 'writ_group_commit_batch_size_count')! >= 2);
      assert.ok(sample(text, 'writ_revocations_total')! >= 1);
      assert.equal(sample(text, 'writ_approvals_pending'), 0);
      assert.equal(sample(text, 'writ_break_glass_active'), 0);
      assert.equal(sample(text, 'writ_store_errors_total'), 0);
      assert.ok(sample(text, 'writ_http_requests_total{method="GET",route="/v1/tasks/{id}",status="200"}')! >= 1, 'the route template, not the path');
      assert.ok(sample(text, 'writ_http_requests_total{method="GET",route="unmatched",status="404"}')! >= 1);

      // nothing that identifies a principal, a task, a decision or an argument
      for (const leak of [task.id, other.id, env.agent.id, allow.body.decision_id, deny.body.decision_id, secret, token, env.admin.token!, METRICS_TOKEN, 'github.create_issue', 'api.github.com']) {
        assert.ok(!text.includes(leak), `the exposition holds \`${leak}\``);
      }
      // every label value in the exposition is from a small vocabulary
      for (const m of text.matchAll(/(\w+)="([^"]*)"/g)) {
        const [, name, value] = m;
        if (name === 'route') assert.match(value!, /^(\/[a-z0-9._{}/-]*|unmatched)$/, value);
        else if (name === 'le') assert.match(value!, /^([0-9.e+-]+|\+Inf)$/);
        else assert.match(value!, /^[A-Za-z0-9_]{1,64}$/, `${name}=${value}`);
      }
    });

    it('an unknown method or a reason code that is not a plain word becomes `other`', async () => {
      await fetch(`${env.url}/healthz`, { method: 'PROPFIND' });
      const { text } = await scrape(METRICS_TOKEN);
      assert.match(text, /writ_http_requests_total\{method="other",route="unmatched",status="405"\}|writ_http_requests_total\{method="other",route="\/healthz",status="405"\}/);
      assert.equal(labelValue('policy_deny'), 'policy_deny');
      for (const bad of ['task_01HX/../x', 'Deny', '', 'a'.repeat(65), 'code with space', 'x"}y', undefined]) assert.equal(labelValue(bad), 'other', String(bad));
    });
  });
}

describe('writ serve: the metrics listener is only there when asked for', () => {
  it('WRIT_METRICS_PORT serves /metrics unauthenticated on its own port; the API port still refuses; a short WRIT_METRICS_TOKEN is refused', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'writ-metrics-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const env: NodeJS.ProcessEnv = { ...process.env, WRIT_DATABASE_URL: '', WRIT_METRICS_PORT: '0' };
    const c = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', join(dir, 'a')], { cwd: REPO, env, owner: t });
    const mline = await c.waitForLine(/writ metrics on http:\/\//, { stream: 'stdout' });
    const line = await c.waitForLine(/writ listening on http:\/\//, { stream: 'stdout' });
    const metricsUrl = /writ metrics on (http:\/\/\S+)/.exec(mline)![1]!;
    const apiUrl = /writ listening on (http:\/\/\S+)/.exec(line)![1]!;
    assert.match(metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'loopback unless WRIT_METRICS_HOST says otherwise');
    const open = await fetch(metricsUrl);
    assert.equal(open.status, 200);
    assert.match(await open.text(), /# TYPE writ_decisions_total counter/);
    assert.equal((await fetch(metricsUrl.replace('/metrics', '/v1/agents'))).status, 404, 'nothing else on that port');
    assert.equal((await fetch(`${apiUrl}/metrics`)).status, 401, 'the API port still wants a credential');
    await c.stop();

    const short = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', join(dir, 'b')], {
      cwd: REPO, env: { ...process.env, WRIT_DATABASE_URL: '', WRIT_METRICS_TOKEN: 'short' }, owner: t,
    });
    assert.notEqual((await short.exited).code, 0);
    assert.match(short.stderr(), /WRIT_METRICS_TOKEN must be at least 32 characters/);
  });
});
