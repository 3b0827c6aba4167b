import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { checkPolicyText, contextAttributesRead, PolicyEngine, toolGroupOf } from '../src/policy/engine.js';
import { buildCedarRequest } from '../src/policy/request.js';
import type { AgentRecord, TaskRecord } from '../src/core/types.js';

const json = (text: string) => Object.values(checkPolicyText(text).json);

const agent = (labels: string[]): AgentRecord => ({ id: 'a1', name: 'a1', jwks: { keys: [] }, labels, status: 'active', createdAt: 0, createdBy: 'op' });
const task: TaskRecord = {
  id: 't1', agentId: 'a1', owner: 'op', intent: 'x', scope: { tools: ['*'], resources: [], destinations: [] }, status: 'active',
  createdAt: 0, expiresAt: 1e15, endedAt: null, maxActions: 100, actionsUsed: 3, actionsReserved: 0, parentId: null, rootId: 't1', depth: 0,
};

describe('policy engine: reading only what policies need', () => {
  it('finds the context attributes policies read, and gives up on whole-context uses', () => {
    assert.deepEqual(
      [...contextAttributesRead(json('permit (principal, action, resource) when { context.usage.actions_left > 1 && context has destination && context.destination == "x" };'))!].sort(),
      ['destination', 'usage'],
    );
    assert.deepEqual([...contextAttributesRead(json('permit (principal, action, resource);'))!], []);
    // parsed without schema validation: a policy handing `context` around as a value
    const whole = cedar.policyToJson('permit (principal, action, resource) when { {"c": context}.c.usage.actions_left > 0 };');
    assert.equal(whole.type, 'success');
    assert.equal(contextAttributesRead([(whole as { json: cedar.PolicyJson }).json]), null);
  });

  it('confines policies to a tool group only through their resource constraint', () => {
    const [a, b, c, d, e] = json(`
      permit (principal, action, resource in Writ::ToolGroup::"pay");
      permit (principal, action, resource == Writ::Tool::"git.push");
      permit (principal, action, resource is Writ::Tool in Writ::ToolGroup::"db");
      permit (principal, action, resource) when { resource.server == "pay" };
      permit (principal, action, resource is Writ::Tool);`);
    assert.deepEqual([a, b, c, d, e].map((p) => toolGroupOf(p!)), ['pay', 'git', 'db', '*', '*']);
  });

  it('a context attribute a policy reads but was left out would deny, never allow', () => {
    const engine = new PolicyEngine();
    const set = engine.load('@id("p") permit (principal, action, resource) when { context.usage.actions_left > 0 };');
    const req = buildCedarRequest({ agent: agent([]), task, action: { tool: 'x.y', arguments: {}, audience: 'a' }, argsDigest: 'd', now: 0, withArgs: false });
    assert.equal(engine.evaluate(req, set).decision, 'allow');
    delete req.context.usage;
    const e = engine.evaluate(req, set);
    assert.equal(e.decision, 'deny');
  });

  it('a large set split by tool group decides exactly as the whole set', () => {
    const groups = ['pay', 'git', 'db', 'mail', 'fs', 'web'];
    const lines: string[] = [];
    let n = 0;
    for (const g of groups) {
      for (let i = 0; i < 20; i++) {
        lines.push(`@id("p${n++}") ${i % 5 === 0 ? 'forbid' : 'permit'} (principal in Writ::AgentGroup::"team${i % 5}", action, resource in Writ::ToolGroup::"${g}") when { context.usage.actions_used < ${20 + i * 3} };`);
        lines.push(`@id("p${n++}") permit (principal, action, resource == Writ::Tool::"${g}.op${i}") when { context has destination };`);
      }
    }
    for (let i = 0; i < 8; i++) lines.push(`@id("c${i}") forbid (principal in Writ::AgentGroup::"team${i}", action, resource) when { resource.name like "*.op${i}" };`);
    const text = lines.join('\n');
    const split = new PolicyEngine();
    const splitSet = split.load(text);
    assert.ok(splitSet.partitions && splitSet.partitions.size === groups.length + 1, 'the set is partitioned');
    // the same policies, preparsed whole, as the reference
    const parts = checkPolicyText(text).parts;
    assert.equal(cedar.preparsePolicySet('reference-whole', { staticPolicies: parts }).type, 'success');
    // mulberry32: a seeded generator, so a failure can be replayed
    let seed = 7;
    const rnd = (k: number) => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return (((t ^ (t >>> 14)) >>> 0) / 4294967296 * k) | 0;
    };
    let allows = 0;
    for (let i = 0; i < 400; i++) {
      const tool = `${[...groups, 'other'][rnd(7)]}.op${rnd(22)}`;
      const t = { ...task, actionsUsed: rnd(70) };
      const req = buildCedarRequest({
        agent: agent([`team${rnd(8)}`]), task: t,
        action: { tool, arguments: {}, audience: 'a', ...(rnd(2) ? { destination: 'x' } : {}) },
        argsDigest: 'd', now: 0, withArgs: false,
      });
      const got = split.evaluate(req, splitSet);
      const ref = cedar.statefulIsAuthorized({
        principal: req.principal, action: { type: 'Writ::Action', id: 'call' }, resource: req.resource,
        context: req.context as never, entities: req.entities as never, preparsedPolicySetId: 'reference-whole', validateRequest: false,
      });
      assert.equal(ref.type, 'success');
      if (ref.type !== 'success') continue;
      assert.equal(got.decision, ref.response.decision, `request ${i} (${tool})`);
      assert.deepEqual([...got.policies].sort(), [...ref.response.diagnostics.reason].sort(), `request ${i} (${tool})`);
      if (got.decision === 'allow') allows++;
    }
    assert.ok(allows > 20 && allows < 380, `both outcomes occur (${allows} allows)`);
  });
});
