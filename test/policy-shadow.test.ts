import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { backends, BOOT_TOKEN, setup, type Api } from './helpers/harness.js';
import { agentFor, auditTypes, makeOperator, secondInstance, setPolicy, type Env } from './helpers/escalations.js';
import { writ } from './helpers/cli.js';
import type { CedarRequest, LoadedPolicySet } from '../src/policy/engine.js';

const LIVE = `@id("allow-within-task-scope")
permit (principal, action == Writ::Action::"call", resource);
`;
const CANDIDATE = `${LIVE}
@id("no-large-payments")
forbid (principal, action, resource in Writ::ToolGroup::"payments")
when { context.num_args.hasTag("amount") && context.num_args.getTag("amount") > 1000 };
`;
const AUD = 'https://tools.example';
const SCOPE = { tools: ['github.*', 'payments.*'], resources: [], destinations: [] };

/** A PUT/POST/DELETE with an `If-Match` (the harness's Api sends none). */
async function send(env: { url: string }, method: string, path: string, body: unknown, opts: { ifMatch?: string; token?: string } = {}) {
  const headers: Record<string, string> = { authorization: `Bearer ${opts.token ?? BOOT_TOKEN}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (opts.ifMatch !== undefined) headers['if-match'] = opts.ifMatch;
  const r = await fetch(env.url + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined, etag: r.headers.get('etag') };
}

/** Polls until `check` holds (shadow decisions are written after the live answer), or fails after `ms`. */
async function eventually<T>(what: string, get: () => Promise<T>, check: (v: T) => boolean, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (check(v)) return v;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(v).slice(0, 2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

for (const { backend, skip } of backends()) {
  describe(`staged rollout: a shadow candidate beside the live set (${backend})`, { skip }, () => {
    let env: Env;
    let agent: Api;
    let dir: string;
    const report = async (q = '') => (await env.admin.call('GET', `/v1/policies/shadow${q}`)).body;
    const act = async (tool: string, args: Record<string, unknown>, a: Api = agent) => {
      const r = await a.call('POST', '/v1/authorize', { tool, arguments: args, audience: AUD });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body;
    };

    before(async () => {
      env = await setup(backend);
      dir = mkdtempSync(join(tmpdir(), 'writ-shadow-'));
      await setPolicy(env, LIVE);
      const task = await env.createTask({ scope: SCOPE, max_actions: 50 });
      agent = await agentFor(env, task.id);
    });
    after(async () => {
      await env?.teardown();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('no candidate: the report is 404 shadow_not_found, and decisions record no shadow', async () => {
      const r = await env.admin.call('GET', '/v1/policies/shadow');
      assert.equal(r.status, 404);
      assert.equal(r.body.error.code, 'shadow_not_found');
      assert.equal((await act('github.create_issue', { title: 'x' })).decision, 'allow');
    });

    it('both decisions are recorded, only the live one is enforced; the report shows where they differ', async () => {
      const live = (await env.admin.call('GET', '/v1/policies')).body;
      const put = await send(env, 'PUT', '/v1/policies?mode=shadow', { policies: CANDIDATE });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.equal(put.body.live_version, live.version);
      assert.equal(put.body.previous, null);
      assert.deepEqual(put.body.policies, ['allow-within-task-scope', 'no-large-payments']);
      assert.match(put.body.diff_sha256, /^[0-9a-f]{64}$/);
      assert.equal(put.etag, `"${put.body.version}"`);
      // the live set is unchanged
      assert.equal((await env.admin.call('GET', '/v1/policies')).body.version, live.version);
      const [entry] = (await auditTypes(env, 'type=policy.shadow_set')).slice(-1);
      assert.equal(entry!.data.version, put.body.version);
      assert.equal(entry!.data.diff_sha256, put.body.diff_sha256);
      assert.equal(entry!.actor, 'operator:' + (await env.admin.call('GET', '/v1/operators')).body.operators[0].id);

      const issue = await act('github.create_issue', { title: 'y' });
      const big = await act('payments.transfer', { amount: 5000, to: 'acme' });
      const small = await act('payments.transfer', { amount: 50, to: 'acme' });
      const outOfScope = await act('slack.post', { text: 'hi' });
      // only the live set is enforced: the large payment is allowed, with a token
      assert.equal(big.decision, 'allow');
      assert.ok(big.action_token);
      assert.equal(issue.decision, 'allow');
      assert.equal(small.decision, 'allow');
      assert.equal(outOfScope.decision, 'deny');

      const r = await eventually('three shadow decisions', () => report(), (b) => b.considered >= 3);
      assert.equal(r.candidate.version, put.body.version);
      assert.equal(r.candidate.policies, CANDIDATE);
      assert.equal(r.live_version, live.version);
      assert.equal(r.considered, 3, 'decided before policy (out of scope): no shadow');
      assert.equal(r.agreed, 2);
      assert.equal(r.differed, 1);
      assert.deepEqual(r.differences.by_tool, { 'payments.transfer': 1 });
      assert.deepEqual(r.differences.by_reason, { 'allow -> deny (policy_forbids)': 1 });
      assert.equal(r.differences.examples[0].decision_id, big.decision_id);
      assert.deepEqual(r.differences.examples[0].live, { decision: 'allow', reasons: [], policy_version: live.version });
      assert.deepEqual(r.differences.examples[0].candidate, { decision: 'deny', reasons: ['policy_forbids'], policies: ['no-large-payments'] });
      assert.equal(r.errors.count, 0);
      assert.equal(r.truncated, false);
      // the live decision record is the one enforced, unchanged
      const decision = (await env.admin.call('GET', `/v1/audit?decision_id=${big.decision_id}&type=decision`)).body.entries[0];
      assert.equal(decision.data.decision, 'allow');
      assert.equal(decision.data.policy_version, live.version);
      // limit and examples
      const cut = await report('?limit=1&examples=0');
      assert.equal(cut.considered, 1);
      assert.equal(cut.truncated, true);
      assert.deepEqual(cut.differences.examples, []);
    });

    it('a failing or slow candidate never fails or holds up the live decision; its error is recorded as such', async () => {
      const engine = env.writ.policy.engine;
      const candidate = env.writ.policy.shadow.candidateVersion;
      assert.ok(candidate);
      const original = engine.evaluateAsync.bind(engine);
      let gate!: () => void;
      const opened = new Promise<void>((resolve) => (gate = resolve));
      let mode: 'throw' | 'hang' = 'throw';
      engine.evaluateAsync = async (request: CedarRequest, set?: LoadedPolicySet) => {
        if (set?.version !== candidate) return original(request, set);
        if (mode === 'throw') throw new Error('the candidate blew up');
        await opened;
        return original(request, set);
      };
      try {
        const before = (await report()).considered;
        const failed = await act('github.create_issue', { title: 'z' });
        assert.equal(failed.decision, 'allow');
        const r = await eventually('the shadow error', () => report(), (b) => b.errors.count >= 1);
        assert.deepEqual(r.errors.by_reason, { shadow_error: 1 });
        assert.equal(r.errors.examples[0].decision_id, failed.decision_id);
        assert.equal(r.errors.examples[0].candidate.decision, 'error');
        assert.equal(r.considered, before + 1);
        // a candidate that does not answer: the live answer comes anyway
        mode = 'hang';
        const started = performance.now();
        const held = await act('payments.transfer', { amount: 7000 });
        const took = performance.now() - started;
        assert.equal(held.decision, 'allow');
        assert.ok(took < 5000, `the live decision took ${took} ms`);
        gate();
        const after = await eventually('the late shadow decision', () => report(), (b) => b.differed >= 2);
        assert.equal(after.differences.by_reason['allow -> deny (policy_forbids)'], 2);
      } finally {
        engine.evaluateAsync = original;
        gate();
      }
    });

    it('If-Match: a stale candidate version is 412 and changes nothing; the current one replaces it', async () => {
      const current = (await report()).candidate.version;
      const next = `${CANDIDATE}\n// revised\n`;
      const stale = await send(env, 'PUT', '/v1/policies?mode=shadow', { policies: next }, { ifMatch: '"0000"' });
      assert.equal(stale.status, 412);
      assert.equal(stale.body.error.code, 'policy_version_mismatch');
      assert.equal((await report()).candidate.version, current);
      const weak = await send(env, 'PUT', '/v1/policies?mode=shadow', { policies: next }, { ifMatch: `W/"${current}"` });
      assert.equal(weak.status, 412);
      const ok = await send(env, 'PUT', '/v1/policies?mode=shadow', { policies: next }, { ifMatch: `"${current}"` });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal(ok.body.previous, current);
      const r = await report();
      assert.equal(r.candidate.version, ok.body.version);
      assert.equal(r.considered, 0, 'the report is about the candidate now set');
      // the replaced candidate is let go by the engine
      assert.equal(env.writ.policy.shadow.candidateVersion, ok.body.version);
      assert.equal(env.writ.policy.engine.isLoaded(current), false);
    });

    it('roles: an auditor reads the report but cannot set, promote or drop; a requester cannot read it', async () => {
      const auditor = await makeOperator(env, `aud-${backend}`, ['auditor']);
      assert.equal((await auditor.call('GET', '/v1/policies/shadow')).status, 200);
      for (const [method, path, body] of [
        ['PUT', '/v1/policies?mode=shadow', { policies: CANDIDATE }],
        ['POST', '/v1/policies/shadow/promote', {}],
        ['DELETE', '/v1/policies/shadow', undefined],
      ] as const) {
        const r = await send(env, method, path, body, { token: auditor.token! });
        assert.equal(r.status, 403, `${method} ${path}`);
        assert.equal(r.body.error.code, 'insufficient_role');
      }
      const requester = await makeOperator(env, `req-${backend}`, ['requester']);
      assert.equal((await requester.call('GET', '/v1/policies/shadow')).status, 403);
      assert.ok(env.writ.policy.shadow.candidateVersion, 'the candidate is still set');
    });

    it('bad input: typed 400s (mode, unknown query or body fields, an invalid candidate), 409 for the live set itself', async () => {
      for (const q of ['?mode=canary', '?mode=', '?mode=shadow&x=1', '?shadow=1']) {
        const r = await send(env, 'PUT', `/v1/policies${q}`, { policies: CANDIDATE });
        assert.equal(r.status, 400, q);
        assert.equal(r.body.error.code, 'invalid_request', q);
      }
      const invalid = await send(env, 'PUT', '/v1/policies?mode=shadow', { policies: 'permit (principal, action, resource) when { context.nope };' });
      assert.equal(invalid.status, 400);
      assert.equal(invalid.body.error.code, 'invalid_policy');
      assert.equal(invalid.body.error.details.diagnostics[0].line, 1);
      for (const body of [{}, { policies: '' }, { policies: CANDIDATE, mode: 'shadow' }, { policies: 7 }]) {
        const r = await send(env, 'PUT', '/v1/policies?mode=shadow', body);
        assert.equal(r.status, 400, JSON.stringify(body));
        assert.equal(r.body.error.code, 'invalid_request');
      }
      const raw = await fetch(`${env.url}/v1/policies?mode=shadow`, { method: 'PUT', headers: { authorization: `Bearer ${BOOT_TOKEN}`, 'content-type': 'application/json' }, body: '{"policies":' });
      assert.equal(raw.status, 400);
      assert.equal(((await raw.json()) as any).error.code, 'invalid_json');
      for (const q of ['?limit=0', '?limit=x', '?examples=101', '?since=1d']) {
        const r = await env.admin.call('GET', `/v1/policies/shadow${q}`);
        assert.equal(r.status, 400, q);
        assert.equal(r.body.error.code, 'invalid_request', q);
      }
      const extra = await send(env, 'POST', '/v1/policies/shadow/promote', { version: 'x', extra: 1 });
      assert.equal(extra.status, 400);
      const badTag = await send(env, 'POST', '/v1/policies/shadow/promote', {}, { ifMatch: '"a", "b"' });
      assert.equal(badTag.status, 400);
      assert.equal(badTag.body.error.code, 'invalid_if_match');
      const liveText = (await env.admin.call('GET', '/v1/policies')).body.policies;
      const same = await send(env, 'PUT', '/v1/policies?mode=shadow', { policies: liveText });
      assert.equal(same.status, 409);
      assert.equal(same.body.error.code, 'shadow_matches_live');
    });

    it('a new live set keeps the candidate; promote needs the live version (412 otherwise) and makes the candidate live, audited', async () => {
      const cand = (await report()).candidate.version;
      // a live change meanwhile: the candidate stays, compared with the new live set
      const live2 = `${LIVE}\n// live 2\n`;
      const put = await send(env, 'PUT', '/v1/policies', { policies: live2 });
      assert.equal(put.status, 200);
      assert.equal((await report()).candidate.version, cand);
      assert.equal((await report()).live_version, put.body.version);

      const stale = await send(env, 'POST', '/v1/policies/shadow/promote', {}, { ifMatch: '"0000"' });
      assert.equal(stale.status, 412);
      assert.equal(stale.body.error.code, 'policy_version_mismatch');
      const otherCandidate = await send(env, 'POST', '/v1/policies/shadow/promote', { version: 'not-the-candidate' }, { ifMatch: `"${put.body.version}"` });
      assert.equal(otherCandidate.status, 412);
      assert.equal((await env.admin.call('GET', '/v1/policies')).body.version, put.body.version, 'nothing changed');
      assert.equal((await report()).candidate.version, cand);

      const promoted = await send(env, 'POST', '/v1/policies/shadow/promote', { version: cand }, { ifMatch: `"${put.body.version}"` });
      assert.equal(promoted.status, 200, JSON.stringify(promoted.body));
      assert.equal(promoted.body.version, cand);
      assert.equal(promoted.body.promoted, cand);
      assert.equal(promoted.body.previous, put.body.version);
      assert.equal(promoted.etag, `"${cand}"`);
      assert.equal((await env.admin.call('GET', '/v1/policies')).body.version, cand);
      assert.equal((await env.admin.call('GET', '/v1/policies/shadow')).body.error.code, 'shadow_not_found');
      const [entry] = (await auditTypes(env, 'type=policy.updated')).slice(-1);
      assert.equal(entry!.data.version, cand);
      assert.equal(entry!.data.promoted_from_shadow, true);
      assert.equal(entry!.data.previous, put.body.version);
      // now enforced: the large payment is denied
      assert.equal((await act('payments.transfer', { amount: 5000 })).decision, 'deny');
      assert.equal(env.writ.policy.shadow.candidateVersion, null);
      assert.equal(env.writ.policy.engine.isLoaded(cand), true, 'the promoted set stays loaded: it is live');
      // nothing left to promote or drop
      assert.equal((await send(env, 'POST', '/v1/policies/shadow/promote', {})).body.error.code, 'shadow_not_found');
      assert.equal((await send(env, 'DELETE', '/v1/policies/shadow', undefined)).status, 404);
    });

    it('drop removes the candidate (If-Match on it), audited; its set is released', async () => {
      await setPolicy(env, LIVE);
      const loaded = env.writ.policy.engine.loadedCount();
      const text = `${CANDIDATE}\n// to drop\n`;
      const put = await send(env, 'PUT', '/v1/policies?mode=shadow', { policies: text });
      assert.equal(put.status, 200);
      assert.equal(env.writ.policy.engine.loadedCount(), loaded + 1);
      const stale = await send(env, 'DELETE', '/v1/policies/shadow', undefined, { ifMatch: '"0000"' });
      assert.equal(stale.status, 412);
      const dropped = await send(env, 'DELETE', '/v1/policies/shadow', undefined, { ifMatch: `"${put.body.version}"` });
      assert.equal(dropped.status, 200);
      assert.deepEqual(dropped.body, { dropped: put.body.version });
      assert.equal((await env.admin.call('GET', '/v1/policies/shadow')).status, 404);
      const [entry] = (await auditTypes(env, 'type=policy.shadow_dropped')).slice(-1);
      assert.equal(entry!.data.version, put.body.version);
      assert.equal(env.writ.policy.shadow.candidateVersion, null);
      assert.equal(env.writ.policy.engine.loadedCount(), loaded, 'the dropped candidate was unloaded');
      const issue = await act('github.create_issue', { title: 'after drop' });
      assert.equal(issue.decision, 'allow');
    });

    it('multi-instance: a candidate set through one instance is evaluated by another, and dropped there too', async () => {
      const b = await secondInstance(env);
      try {
        const put = await send(env, 'PUT', '/v1/policies?mode=shadow', { policies: `${CANDIDATE}\n// multi-instance\n` });
        assert.equal(put.status, 200);
        assert.equal((await report()).considered, 0);
        const task = await env.createTask({ scope: SCOPE, max_actions: 200 });
        const agentB = new (agent.constructor as typeof Api)(b.url, await env.taskToken(task.id));
        // instance B reads the candidate within a second of a request, and loads it in the background
        const r = await eventually(
          'instance B records shadow decisions',
          async () => {
            await act('payments.transfer', { amount: 9000 }, agentB);
            return report();
          },
          (x) => x.differed >= 1,
        );
        assert.equal(r.differences.by_tool['payments.transfer'] >= 1, true);
        assert.equal(b.writ.policy.shadow.candidateVersion, put.body.version);
        const dropped = await send(env, 'DELETE', '/v1/policies/shadow', undefined);
        assert.equal(dropped.status, 200);
        await eventually(
          'instance B lets the candidate go',
          async () => {
            await act('github.create_issue', { title: 'b' }, agentB);
            return b.writ.policy.shadow.candidateVersion;
          },
          (v) => v === null,
        );
      } finally {
        await b.stop();
      }
    });

    it('CLI: policy set --shadow, shadow-report, shadow promote, shadow drop', { skip: backend !== 'sqlite' && 'the CLI is the same on both stores', timeout: 240_000 }, async () => {
      const cli = (args: string[]) => writ(args, { WRIT_URL: env.url, WRIT_TOKEN: BOOT_TOKEN });
      await setPolicy(env, LIVE);
      const f = join(dir, 'candidate.cedar');
      writeFileSync(f, `${CANDIDATE}\n// cli\n`);
      const set = await cli(['policy', 'set', f, '--shadow']);
      assert.equal(set.code, 0, set.stderr);
      assert.equal(set.json.live_version.length > 0, true);
      await act('payments.transfer', { amount: 4000 });
      await eventually('a difference', () => report(), (x) => x.differed >= 1);
      const rep = await cli(['policy', 'shadow-report', '--examples', '1']);
      assert.equal(rep.code, 0, rep.stderr);
      assert.equal(rep.json.candidate.version, set.json.version);
      assert.equal(rep.json.differences.examples.length, 1);
      const rep2 = await cli(['policy', 'shadow', 'report', '--limit', '1']);
      assert.equal(rep2.code, 0, rep2.stderr);
      assert.equal(rep2.json.considered, 1);
      // a stale --if-match on set --shadow: exit non-zero with the error code
      const stale = await cli(['policy', 'set', f, '--shadow', '--if-match', '0000']);
      assert.notEqual(stale.code, 0);
      assert.match(stale.stderr, /policy_version_mismatch/);
      const bad = await cli(['policy', 'shadow', 'launch']);
      assert.equal(bad.code, 2);
      const promoted = await cli(['policy', 'shadow', 'promote']);
      assert.equal(promoted.code, 0, promoted.stderr);
      assert.equal(promoted.json.promoted, set.json.version);
      assert.equal((await env.admin.call('GET', '/v1/policies')).body.version, set.json.version);
      // drop: set another, drop it; then nothing to drop
      writeFileSync(f, `${CANDIDATE}\n// cli 2\n`);
      assert.equal((await cli(['policy', 'set', f, '--shadow'])).code, 0);
      const dropped = await cli(['policy', 'shadow', 'drop']);
      assert.equal(dropped.code, 0, dropped.stderr);
      const none = await cli(['policy', 'shadow', 'drop']);
      assert.notEqual(none.code, 0);
      assert.match(none.stderr, /shadow_not_found/);
      const noReport = await cli(['policy', 'shadow-report']);
      assert.notEqual(noReport.code, 0);
      assert.match(noReport.stderr, /shadow_not_found/);
    });
  });
}
