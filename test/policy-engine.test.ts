import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { contextAttributesRead, PolicyEngine, toolGroupOf } from '../src/policy/engine.js';
import { buildCedarRequest } from '../src/policy/request.js';
import { assertDecidesAsWhole, policyJson, preparseWhole, testAgent, testTask } from './helpers/cedar-whole.js';

const json = policyJson;
const agent = testAgent;
const task = testTask;

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
    // one part per group, one per tool a policy names (20 per group), and `*`
    assert.ok(splitSet.partitions && splitSet.partitions.size === groups.length * 21 + 1, 'the set is partitioned');
    // the same policies, preparsed whole, as the reference
    preparseWhole('reference-whole', text);
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
      if (assertDecidesAsWhole(got, req, 'reference-whole', `request ${i} (${tool})`) === 'allow') allows++;
    }
    assert.ok(allows > 20 && allows < 380, `both outcomes occur (${allows} allows)`);
  });

  // The engine against Cedar on the whole set with every argument tag: the split by
  // tool and group, and the tags left out because no policy reads them, never change
  // an answer. Near variants: a group whose name reads like a tool key, a tool with no
  // dot (its own group), `in` a single Tool, tags that are read but absent, and a
  // policy reading tags by a computed name (then every tag is passed).
  for (const computed of [false, true]) {
    it(`a split set with only the read tags passed decides exactly as the whole set with every tag${computed ? ' (a tag name computed)' : ''}`, () => {
      const lines = [
        '@id("g-pay") permit (principal in Writ::AgentGroup::"team0", action, resource in Writ::ToolGroup::"pay") when { context.num_args.hasTag("amount") && context.num_args.getTag("amount") < 500 };',
        '@id("t-pay-refund") forbid (principal, action, resource == Writ::Tool::"pay.refund") when { context.args.hasTag("reason") && context.args.getTag("reason") == "fraud" };',
        '@id("t-pay-send") permit (principal in Writ::AgentGroup::"team1", action, resource == Writ::Tool::"pay.send") when { context.args.hasTag("to") };',
        '@id("in-tool") permit (principal, action, resource in Writ::Tool::"git.push") when { context.args.hasTag("branch") && context.args.getTag("branch") != "main" };',
        '@id("is-in-tool") forbid (principal in Writ::AgentGroup::"team2", action, resource is Writ::Tool in Writ::Tool::"git.push");',
        '@id("g-tool-colon") permit (principal, action, resource in Writ::ToolGroup::"tool:git") when { context has destination };',
        '@id("t-nodot") permit (principal, action, resource == Writ::Tool::"nodot") when { context.usage.actions_left > 0 };',
        '@id("g-nodot") forbid (principal in Writ::AgentGroup::"team3", action, resource in Writ::ToolGroup::"nodot");',
        '@id("any-read") permit (principal in Writ::AgentGroup::"team4", action, resource) when { context.args.hasTag("ok") };',
        '@id("any-forbid") forbid (principal, action, resource) when { context.num_args.hasTag("amount") && context.num_args.getTag("amount") > 10000 };',
        computed
          ? '@id("computed") forbid (principal, action, resource) when { context.args.hasTag(context.audience) };'
          : '@id("names") forbid (principal, action, resource == Writ::Tool::"git.push") when { resource.name == "git.push" && context.args.hasTag("force") };',
      ];
      const text = lines.join('\n');
      const engine = new PolicyEngine();
      const set = engine.load(text);
      assert.ok(set.partitions, 'the set is split');
      assert.equal(set.stringTagsRead === null, computed);
      const refId = preparseWhole(`reference-read-tags-${computed}`, text);
      let seed = 11;
      const rnd = (k: number) => {
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return (((t ^ (t >>> 14)) >>> 0) / 4294967296 * k) | 0;
      };
      const tools = ['pay.refund', 'pay.send', 'pay.other', 'git.push', 'git.pull', 'tool:git.x', 'nodot', 'other.x'];
      const outcomes = { allow: 0, deny: 0 };
      for (let i = 0; i < 300; i++) {
        const tool = tools[rnd(tools.length)]!;
        const args: Record<string, unknown> = {};
        for (const [k, vals] of [['amount', [5, 900, 20000]], ['reason', ['fraud', 'ok']], ['to', ['x']], ['branch', ['main', 'dev']], ['ok', ['y']], ['force', ['true']], ['a', ['to']], ['other', [1]]] as const) {
          if (rnd(2)) args[k] = vals[rnd(vals.length)];
        }
        const action = { tool, arguments: args, audience: ['a', 'ok', 'other'][rnd(3)]!, ...(rnd(2) ? { destination: 'x' } : {}) };
        const facts = { agent: agent([`team${rnd(5)}`]), task: { ...task, actionsUsed: rnd(120) }, action, argsDigest: 'd', now: 0, withArgs: set.readsArgs };
        const got = engine.evaluate(buildCedarRequest({ ...facts, argReads: { numeric: set.numericTagsRead, strings: set.stringTagsRead } }), set);
        const full = buildCedarRequest(facts);
        outcomes[assertDecidesAsWhole(got, full, refId, `request ${i} (${tool} ${JSON.stringify(args)})`)] += 1;
      }
      assert.ok(outcomes.allow > 20 && outcomes.deny > 20, `both outcomes occur (${JSON.stringify(outcomes)})`);
    });
  }

  it('passes only the argument tags the set reads', () => {
    const engine = new PolicyEngine();
    const set = engine.load('@id("p") permit (principal, action, resource) when { context.args.hasTag("title") && context.num_args.hasTag("n") };');
    const req = buildCedarRequest({
      agent: agent([]), task, action: { tool: 'x.y', arguments: { title: 't', n: 3, body: 'long', m: 4 }, audience: 'a' }, argsDigest: 'd', now: 0, withArgs: true,
      argReads: { numeric: set.numericTagsRead, strings: set.stringTagsRead },
    });
    const tags = (req.entities as { tags?: Record<string, unknown> }[]).slice(2).map((e) => e.tags);
    assert.deepEqual(tags, [{ title: 't' }, { n: 3 }]);
    assert.equal(engine.evaluate(req, set).decision, 'allow');
  });

  it('hands each part of a split set only the context attributes its own policies read', () => {
    const lines = Array.from({ length: 8 }, (_, i) => `@id("g${i}") permit (principal, action, resource in Writ::ToolGroup::"git") when { context.usage.actions_left > ${i} };`);
    lines.push('@id("pay") permit (principal, action, resource == Writ::Tool::"pay.send") when { context has destination && context.time.hour_utc >= 0 };');
    lines.push('@id("all") forbid (principal, action, resource) when { context.delegation.depth > 5 };');
    const engine = new PolicyEngine();
    const set = engine.load(lines.join('\n'));
    const call = (tool: string) => {
      const req = buildCedarRequest({ agent: agent([]), task, action: { tool, arguments: {}, audience: 'a', destination: 'd' }, argsDigest: 'd', now: 0, withArgs: false });
      return { keys: Object.keys(PolicyEngine.statefulCall(req, set).context ?? {}).sort(), decision: engine.evaluate(req, set).decision };
    };
    assert.deepEqual(call('git.pull'), { keys: ['delegation', 'usage'], decision: 'allow' });
    assert.deepEqual(call('pay.send'), { keys: ['delegation', 'destination', 'time'], decision: 'allow' });
    assert.deepEqual(call('other.x'), { keys: ['delegation'], decision: 'deny' });
  });

  // Entity attributes no policy of the part names, and argument entities it cannot reach,
  // are left out of the call (Cedar's cost grows with each): never changing an answer.
  // Near variants: `has` on an attribute (absent when left out, so it must be kept), an
  // attribute named in another part only, the argument entity named by a literal, and a
  // forbid reading an attribute through a record literal.
  it('hands each part only the entity attributes its policies name, and decides exactly as with everything', () => {
    const lines = [
      '@id("lbl") permit (principal, action, resource in Writ::ToolGroup::"lbl") when { principal.labels.contains("team1") };',
      '@id("lbl-has") forbid (principal, action, resource == Writ::Tool::"lbl.x") when { principal has name && principal.name == "a1" && resource.labels.contains("blocked") };',
      '@id("srv") permit (principal, action, resource in Writ::ToolGroup::"srv") when { resource.server == "srv" };',
      '@id("srv-rec") forbid (principal, action, resource == Writ::Tool::"srv.y") when { {"t": resource}.t.name like "*.y" && context.usage.actions_used > 50 };',
      '@id("num-lit") forbid (principal, action, resource == Writ::Tool::"git.pull") when { Writ::NumericArguments::"request".hasTag("amount") };',
      '@id("git") permit (principal in Writ::AgentGroup::"team0", action, resource in Writ::ToolGroup::"git");',
      '@id("other") permit (principal, action, resource in Writ::ToolGroup::"other");',
      '@id("pad1") permit (principal, action, resource in Writ::ToolGroup::"pad") when { context.usage.actions_left > 1 };',
      '@id("time-whole") forbid (principal, action, resource == Writ::Tool::"pad.q") when { context.time.hour_utc >= 0 && context.time == {"epoch_seconds": 0, "hour_utc": 0, "weekday": 4} && context.usage.actions_used > 50 };',
    ];
    const text = lines.join('\n');
    const engine = new PolicyEngine();
    const set = engine.load(text);
    assert.ok(set.partitions, 'the set is split');
    const refId = preparseWhole('reference-attrs', text);
    const entitiesOf = (tool: string, labels: string[]) => {
      const req = buildCedarRequest({ agent: agent(labels), task, action: { tool, arguments: { amount: 5 }, audience: 'a' }, argsDigest: 'd', now: 0, withArgs: true, toolLabels: ['blocked'] });
      return (PolicyEngine.statefulCall(req, set).entities as unknown as { uid: { type: string }; attrs: Record<string, unknown> }[]).map((e) => `${e.uid.type}:${Object.keys(e.attrs).sort().join(',')}`);
    };
    assert.deepEqual(entitiesOf('other.z', ['team0']), ['Writ::Agent:', 'Writ::Tool:']);
    assert.deepEqual(entitiesOf('lbl.x', ['team0']), ['Writ::Agent:labels,name', 'Writ::Tool:labels']);
    // read through a record (either entity could be there): kept on both
    assert.deepEqual(entitiesOf('srv.y', ['team0']), ['Writ::Agent:name', 'Writ::Tool:name,server']);
    assert.deepEqual(entitiesOf('git.pull', ['team0']), ['Writ::Agent:', 'Writ::Tool:', 'Writ::NumericArguments:']);
    // context records: only the fields read by name, whole where a policy compares one
    const contextOf = (tool: string) =>
      PolicyEngine.statefulCall(buildCedarRequest({ agent: agent([]), task, action: { tool, arguments: {}, audience: 'a' }, argsDigest: 'd', now: 0, withArgs: false }), set).context;
    // (a field read only in comparisons with literals passes as its class: 3 as 49 below `> 50`, 97 as 2 above `> 1`)
    assert.deepEqual(contextOf('srv.y'), { usage: { actions_used: 49 } });
    assert.deepEqual(contextOf('pad.q'), { usage: { actions_left: 2, actions_used: 49 }, time: { epoch_seconds: 0, hour_utc: 0, weekday: 4 } });
    // the agent's groups: only those the part names
    const parentsOf = (tool: string) =>
      (PolicyEngine.statefulCall(buildCedarRequest({ agent: agent(['team0', 'team1', 'team2']), task, action: { tool, arguments: {}, audience: 'a' }, argsDigest: 'd', now: 0, withArgs: false }), set)
        .entities as unknown as { parents: { id: string }[] }[])[0]!.parents.map((p) => p.id);
    assert.deepEqual(parentsOf('git.push'), ['team0']);
    assert.deepEqual(parentsOf('lbl.x'), ['team1']);
    assert.deepEqual(parentsOf('other.z'), []);
    // the tool's group likewise: kept where a policy names it
    const toolParentsOf = (tool: string) =>
      (PolicyEngine.statefulCall(buildCedarRequest({ agent: agent([]), task, action: { tool, arguments: {}, audience: 'a' }, argsDigest: 'd', now: 0, withArgs: false }), set)
        .entities as unknown as { parents: { id: string }[] }[])[1]!.parents.map((p) => p.id);
    assert.deepEqual(toolParentsOf('git.push'), ['git']);
    assert.deepEqual(toolParentsOf('none.x'), []);
    let seed = 5;
    const rnd = (k: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % k;
    };
    const tools = ['lbl.x', 'lbl.y', 'srv.y', 'srv.z', 'git.pull', 'git.push', 'other.z', 'pad.q', 'none.x'];
    const outcomes = { allow: 0, deny: 0 };
    for (let i = 0; i < 300; i++) {
      const tool = tools[rnd(tools.length)]!;
      const args: Record<string, unknown> = rnd(2) ? { amount: rnd(9) } : {};
      const facts = {
        agent: { ...agent([`team${rnd(3)}`, `team${rnd(3)}`]), name: rnd(2) ? 'a1' : 'b2' }, task: { ...task, actionsUsed: rnd(100), depth: rnd(4) ? 0 : 1 },
        action: { tool, arguments: args, audience: 'a' }, argsDigest: 'd', now: rnd(2) ? 0 : 1000, withArgs: true, toolLabels: rnd(2) ? ['blocked'] : [],
      };
      const req = buildCedarRequest(facts);
      const got = engine.evaluate(req, set);
      outcomes[assertDecidesAsWhole(got, req, refId, `request ${i} (${tool} ${JSON.stringify(facts.agent)} ${JSON.stringify(facts.toolLabels)})`)] += 1;
    }
    assert.ok(outcomes.allow > 20 && outcomes.deny > 20, `both outcomes occur (${JSON.stringify(outcomes)})`);
  });
});

// Near variants of the reads the slicing must see (src/policy/engine.ts `PartReads`): a
// `has` over a path (`context has usage.actions_used`, `principal has name`), a field read
// through a method (`.contains`), bracket access, and a record passed to `==` inside a
// `forbid`. Each is a forbid, so a field or attribute wrongly left out would allow.
describe('policy engine: slicing sees every shape of a read', () => {
  it('decides as Cedar on the whole request for has-paths, methods, brackets and whole records in forbids', () => {
    const lines = [
      '@id("base") permit (principal, action, resource);',
      '@id("has-path") forbid (principal, action, resource == Writ::Tool::"a.x") when { context has usage.actions_used && context.usage.actions_used > 50 };',
      '@id("has-path-alone") forbid (principal, action, resource == Writ::Tool::"a.z") when { context has usage.actions_used };',
      '@id("principal-has") forbid (principal, action, resource == Writ::Tool::"a.y") when { principal has name && principal["name"] == "b2" };',
      '@id("method") forbid (principal, action, resource in Writ::ToolGroup::"b") when { context.delegation.chain.contains("a9") };',
      '@id("bracket") forbid (principal, action, resource == Writ::Tool::"c.x") when { context["usage"]["actions_left"] < 40 };',
      '@id("whole") forbid (principal, action, resource == Writ::Tool::"c.y") when { context.delegation == {"depth": 1, "chain": ["a9"]} };',
      '@id("any-entity") forbid (principal, action, resource == Writ::Tool::"d.x") when { (if context.usage.actions_used > 10 then principal else principal).labels.contains("hot") };',
      '@id("pad1") permit (principal, action, resource in Writ::ToolGroup::"pad1");',
      '@id("pad2") permit (principal, action, resource in Writ::ToolGroup::"pad2");',
    ];
    const text = lines.join('\n');
    const engine = new PolicyEngine();
    const set = engine.load(text);
    assert.ok(set.partitions, 'the set is split');
    const refId = preparseWhole('reference-read-shapes', text);
    const tools = ['a.x', 'a.y', 'a.z', 'b.z', 'c.x', 'c.y', 'd.x', 'pad1.q'];
    const outcomes = { allow: 0, deny: 0 };
    for (let i = 0; i < tools.length * 16; i++) {
      const tool = tools[i % tools.length]!;
      const v = Math.floor(i / tools.length);
      const facts = {
        agent: { ...agent(v & 1 ? ['hot'] : []), name: v & 2 ? 'b2' : 'a1' },
        task: { ...task, actionsUsed: v & 4 ? 70 : 3 },
        action: { tool, arguments: {}, audience: 'a' }, argsDigest: 'd', now: 0, withArgs: false,
        chain: v & 8 ? ['a9'] : [], toolLabels: v & 1 ? [] : ['hot'],
      };
      const req = buildCedarRequest({ ...facts, task: { ...facts.task, depth: v & 8 ? 1 : 0 } } as never);
      const got = engine.evaluate(req, set);
      outcomes[assertDecidesAsWhole(got, req, refId, `${tool} variant ${v}`)] += 1;
    }
    assert.ok(outcomes.allow > 10 && outcomes.deny > 10, `both outcomes occur (${JSON.stringify(outcomes)})`);
  });
});
