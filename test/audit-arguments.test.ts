import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { auditArguments, MASKED, parseAuditArgsMode, parseMaskRules } from '../src/audit/mask-arguments.js';
import { digestArguments } from '../src/core/digest.js';
import { backends, setup } from './helpers/harness.js';

describe('audit arguments: masking', () => {
  const args = {
    to: 'acct_1',
    amount: 12,
    api_key: 'sk_live_123',
    nested: { Password: 'hunter2', 'X-Auth-Token': 't', note: 'hi', tokens: 3 },
    list: [{ client_secret: 's' }, { card: { number: '4111', cvv: '123' } }],
  };
  it('masks secret-looking keys at every depth, keeps the rest, never the digest', () => {
    const kept = auditArguments(args, 'payments.send', 'masked', [])!;
    assert.equal(kept.to, 'acct_1');
    assert.equal(kept.amount, 12);
    assert.equal(kept.api_key, MASKED);
    assert.deepEqual(kept.nested, { Password: MASKED, 'X-Auth-Token': MASKED, note: 'hi', tokens: 3 });
    assert.deepEqual((kept.list as any)[0], { client_secret: MASKED });
    assert.deepEqual((kept.list as any)[1].card, { number: '4111', cvv: MASKED });
    // the input is untouched
    assert.equal(args.api_key, 'sk_live_123');
  });
  it('masks configured paths per tool pattern, through arrays with `*`', () => {
    const rules = parseMaskRules('payments.*:list.*.card.number, other.tool:to');
    const kept = auditArguments(args, 'payments.send', 'masked', rules)!;
    assert.deepEqual((kept.list as any)[1].card, { number: MASKED, cvv: MASKED });
    assert.equal(kept.to, 'acct_1');
    assert.equal(auditArguments(args, 'other.tool', 'masked', rules)!.to, MASKED);
  });
  it('full keeps everything, digest keeps nothing; bad settings are refused', () => {
    assert.deepEqual(auditArguments(args, 't', 'full', []), args);
    assert.equal(auditArguments(args, 't', 'digest', []), undefined);
    assert.equal(parseAuditArgsMode(undefined), 'masked');
    assert.throws(() => parseAuditArgsMode('some'), /full, masked or digest/);
    assert.throws(() => parseMaskRules('nocolon'), /tool-pattern:path/);
    assert.throws(() => parseMaskRules('t:a..b'), /empty path segment/);
  });
});

for (const { backend, skip } of backends()) {
  describe(`audit arguments in decision entries (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    before(async () => {
      env = await setup(backend);
    });
    after(async () => env?.teardown());

    it('a decision entry keeps the masked arguments beside the digest of the real ones', async () => {
      const task = await env.createTask({ scope: { tools: ['github.*'] } });
      const token = await env.taskToken(task.id);
      const agentApi = new (env.admin.constructor as any)(env.url, token);
      const args = { title: 'Weekly report', token: 'ghp_secret_value' };
      const r = await agentApi.call('POST', '/v1/authorize', { tool: 'github.create_issue', arguments: args, audience: 'https://tools.example/github' });
      assert.equal(r.status, 200);
      const a = await env.admin.call('GET', `/v1/audit?decision_id=${r.body.decision_id}`);
      const entry = a.body.entries.find((e: any) => e.type === 'decision');
      assert.ok(entry, 'the decision entry');
      assert.deepEqual(entry.data.arguments, { title: 'Weekly report', token: MASKED });
      assert.equal(entry.data.args_digest, digestArguments(args));
      assert.ok(!JSON.stringify(a.body).includes('ghp_secret_value'));
    });
  });
}
