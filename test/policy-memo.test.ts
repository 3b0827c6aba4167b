import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classOf, fieldClassesRead, PolicyEngine, tagValuesRead } from '../src/policy/engine.js';
import { buildCedarRequest, type RequestFacts } from '../src/policy/request.js';
import { assertDecidesAsWhole, policyJson, preparseWhole, testAgent, testTask } from './helpers/cedar-whole.js';

// The engine's memo of decisions (src/policy/engine.ts): keyed by the exact text of the call
// Cedar is given, where a value read only through comparisons with literals is passed as
// its class, and an argument tag only tested with `hasTag` as a blank. Every case is checked
// against Cedar on the whole request, unsliced and exact: a class drawn wrongly would allow
// through a forbid.

const json = policyJson;
const agent = testAgent;
const task = testTask;

describe('policy memo: classes of values and what is never classed', () => {
  it('classes a record field only when every read of it is a comparison with an integer literal', () => {
    const classes = fieldClassesRead(json(`
      permit (principal, action, resource) when { context.usage.actions_left > 0 && 5 >= context.time.hour_utc && context.time.hour_utc != 9 };
      permit (principal, action, resource) when { context.usage.actions_used + 1 > 5 };
      permit (principal, action, resource) when { context.usage.max_actions == context.delegation.depth };
      permit (principal, action, resource) when { [1, 2].contains(context.time.weekday) };
      permit (principal, action, resource) when { context.time.epoch_seconds > 9007199254740993 };
      permit (principal, action, resource) when { context.approval.approvers >= -2 };
      permit (principal, action, resource) when { context has task.depth && context.task.depth < 3 };
      forbid (principal, action, resource) when { context.task.depth > 1 && ({"d": context.task.depth}).d == 0 };`));
    const flat = Object.fromEntries([...classes].flatMap(([k, m]) => [...m].map(([f, l]) => [`${k}.${f}`, l])));
    assert.deepEqual(flat, { 'usage.actions_left': [0], 'time.hour_utc': [5, 9], 'approval.approvers': [-2] });
  });

  it('draws the representative from the same interval of the literals', () => {
    assert.equal(classOf(5, [0, 10]), 1);
    assert.equal(classOf(1, [0, 10]), 1);
    assert.equal(classOf(0, [0, 10]), 0);
    assert.equal(classOf(10, [0, 10]), 10);
    assert.equal(classOf(11, [0, 10]), 11);
    assert.equal(classOf(500, [0, 10]), 11);
    assert.equal(classOf(-3, [0, 10]), -1);
    assert.equal(classOf(7, []), 7);
    assert.equal(classOf('7', [0]), '7');
    assert.equal(classOf(2 ** 60, [0]), 2 ** 60);
  });

  it('finds the tag names read with getTag on any entity, and gives up on a computed one', () => {
    assert.deepEqual([...tagValuesRead(json('permit (principal, action, resource) when { context.args.hasTag("a") && context.args.hasTag("b") && context.args.getTag("b") == "x" && Writ::NumericArguments::"request".hasTag("n") && Writ::NumericArguments::"request".getTag("n") > 1 };'))!].sort(), ['b', 'n']);
    assert.equal(tagValuesRead(json('permit (principal, action, resource) when { context.args.hasTag(context.task.intent) && context.args.getTag(context.task.intent) == "x" };')), null);
  });
});

describe('policy memo: decides exactly as Cedar on the whole request', () => {
  const lines = [
    '@id("base") permit (principal, action, resource);',
    '@id("left") forbid (principal, action, resource == Writ::Tool::"a.x") when { context.usage.actions_left <= 2 };',
    '@id("used") forbid (principal, action, resource == Writ::Tool::"a.y") when { 4 < context.usage.actions_used && context.usage.actions_used != 7 };',
    '@id("eq") forbid (principal, action, resource == Writ::Tool::"a.z") when { context.usage.actions_used == 5 };',
    '@id("arith") forbid (principal, action, resource == Writ::Tool::"b.x") when { context.usage.actions_used + context.usage.actions_left > 98 };',
    '@id("hour") forbid (principal, action, resource == Writ::Tool::"b.y") when { context.time.hour_utc >= 12 || context.time.weekday == 0 };',
    '@id("approvers") forbid (principal, action, resource == Writ::Tool::"b.z") when { context.approval.approvers < 2 && context.approval.approvers > -1 };',
    '@id("tag-has") forbid (principal, action, resource == Writ::Tool::"c.x") when { context.args.hasTag("t") };',
    '@id("tag-get") forbid (principal, action, resource == Writ::Tool::"c.y") when { context.args.hasTag("u") && context.args.getTag("u") == "bad" };',
    '@id("num-get") forbid (principal, action, resource == Writ::Tool::"c.z") when { context.num_args.hasTag("n") && context.num_args.getTag("n") > 3 };',
    '@id("num-has") forbid (principal, action, resource == Writ::Tool::"d.x") when { context.num_args.hasTag("m") };',
    '@id("depth") forbid (principal, action, resource in Writ::ToolGroup::"d") when { context.delegation.depth > 0 && context.delegation.chain.contains("a9") };',
  ];
  const text = lines.join('\n');
  const tools = ['a.x', 'a.y', 'a.z', 'b.x', 'b.y', 'b.z', 'c.x', 'c.y', 'c.z', 'd.x', 'e.x'];

  for (const split of [true, false]) {
    it(`random values around every literal, the memo answering repeats (${split ? 'split set' : 'whole set'})`, () => {
      const engine = new PolicyEngine();
      const set = engine.load(split ? text : lines.slice(0, 7).join('\n'));
      assert.equal(!!set.partitions, split);
      const refId = preparseWhole(`reference-memo-${split}`, set.text);
      let seed = 11;
      const rnd = (k: number) => {
        // the high bits: an LCG's low bits cycle (seed % 2 would only alternate)
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return (seed >>> 16) % k;
      };
      const outcomes = { allow: 0, deny: 0 };
      for (let i = 0; i < 600; i++) {
        const tool = tools[rnd(tools.length)]!;
        const args: Record<string, unknown> = {};
        if (rnd(2)) args.t = ['x', 'y', ''][rnd(3)];
        if (rnd(2)) args.u = ['bad', 'good'][rnd(2)];
        if (rnd(2)) args.n = rnd(7);
        if (rnd(2)) args.m = rnd(3) - 1;
        const facts: RequestFacts = {
          agent: agent([]), task: { ...task, actionsUsed: rnd(12), maxActions: 90 + rnd(15), depth: rnd(3) ? 0 : 1 },
          action: { tool, arguments: args, audience: 'a' }, argsDigest: 'd', now: rnd(4) * 3600_000 * 5 + rnd(3) * 86400_000, withArgs: true,
          chain: rnd(2) ? ['a9'] : [], approval: { granted: rnd(2) === 1, approvers: rnd(5) - 1 },
          argReads: { numeric: set.numericTagsRead, strings: set.stringTagsRead },
        };
        const req = buildCedarRequest(facts);
        const got = engine.evaluate(req, set);
        const whole = buildCedarRequest({ ...facts, argReads: undefined });
        const what = `request ${i} (${tool} ${JSON.stringify(args)} ${JSON.stringify(facts.task.actionsUsed)} ${facts.now})`;
        assertDecidesAsWhole(got, whole, refId, what);
        outcomes[got.decision] += 1;
      }
      assert.ok(outcomes.allow > 50 && outcomes.deny > 50, `both outcomes occur (${JSON.stringify(outcomes)})`);
      assert.ok(engine.memoHits > 10, `the memo answered repeats (${engine.memoHits} of ${engine.memoHits + engine.memoMisses})`);
    });
  }

  it('passes a hasTag-only tag as a blank, a getTag one exactly, and everything when a tag name is computed', () => {
    const engine = new PolicyEngine();
    const set = engine.load('@id("p") permit (principal, action, resource) when { context.args.hasTag("t") && context.args.hasTag("u") && context.args.getTag("u") == "x" && context.num_args.hasTag("m") };');
    const tagsOf = (s = set) =>
      (PolicyEngine.statefulCall(buildCedarRequest({ agent: agent([]), task, action: { tool: 'a.b', arguments: { t: 'long text', u: 'x', m: 5 }, audience: 'a' }, argsDigest: 'd', now: 0, withArgs: true }), s)
        .entities as unknown as { tags?: Record<string, unknown> }[]).slice(2).map((e) => e.tags);
    assert.deepEqual(tagsOf(), [{ t: '', u: 'x', m: '' }, { m: 0 }]);
    const dynamic = engine.load('@id("p") permit (principal, action, resource) when { context.args.hasTag("t") && context.args.hasTag(context.task.intent) && context.args.getTag(context.task.intent) == "x" };');
    assert.deepEqual(tagsOf(dynamic)[0], { t: 'long text', u: 'x', m: '5' });
  });
});

describe('policy memo: what it keeps and forgets', () => {
  const POLICY = '@id("p") permit (principal, action, resource) when { context.usage.actions_left > 10 };\n@id("f") forbid (principal, action, resource) when { context.usage.actions_used * 4611686018427387904 > 0 };';
  const req = (actionsUsed: number) => buildCedarRequest({ agent: agent([]), task: { ...task, actionsUsed, maxActions: 1000 }, action: { tool: 'a.b', arguments: {}, audience: 'a' }, argsDigest: 'd', now: 0, withArgs: false });

  it('answers a repeat from the memo, a copy each time; an answer with errors is evaluated again every time', () => {
    const engine = new PolicyEngine();
    engine.load('@id("p") permit (principal, action, resource) when { context.usage.actions_left > 10 };');
    const first = engine.evaluate(req(3));
    assert.equal(first.decision, 'allow');
    assert.equal(engine.memoMisses, 1);
    // another value of the same class (actions_left 997 and 995, both above 10): the same text
    const second = engine.evaluate(req(5));
    assert.deepEqual(second, first);
    assert.equal(engine.memoHits, 1);
    second.policies.push('changed');
    assert.deepEqual(engine.evaluate(req(3)).policies, ['p']);
    // across the literal: another class, decided by Cedar
    assert.equal(engine.evaluate(req(995)).decision, 'deny');
    assert.equal(engine.memoMisses, 2);

    const overflow = new PolicyEngine();
    overflow.load(POLICY);
    for (let i = 0; i < 2; i++) {
      const e = overflow.evaluate(req(3));
      assert.equal(e.decision, 'deny');
      assert.ok(e.errors.length > 0, 'the overflow is an error (fail closed)');
    }
    assert.equal(overflow.memoHits, 0, 'an errored answer is never remembered');
  });

  it('with memo off asks Cedar every time and keeps nothing (the benchmarks\' raw limit)', () => {
    const engine = new PolicyEngine();
    engine.load('@id("p") permit (principal, action, resource) when { context.usage.actions_left > 10 };');
    for (let i = 0; i < 3; i++) assert.equal(engine.evaluate(req(3), undefined, { memo: false }).decision, 'allow');
    assert.equal(engine.memoHits + engine.memoMisses, 0, 'the memo is neither read nor counted');
    // nothing was kept: the first remembered call is a miss
    engine.evaluate(req(3));
    assert.equal(engine.memoMisses, 1);
    assert.equal(engine.evaluate(req(995), undefined, { memo: false }).decision, 'deny');
  });

  it('is bounded: an answer in use stays, one not used since thousands of others is dropped', () => {
    const engine = new PolicyEngine();
    // read exactly (compared with another field): every counter value is its own call
    engine.load('@id("p") permit (principal, action, resource) when { context.usage.actions_used != context.usage.max_actions };');
    const exact = (n: number) => buildCedarRequest({ agent: agent([]), task: { ...task, actionsUsed: n, maxActions: 100_000 }, action: { tool: 'a.b', arguments: {}, audience: 'a' }, argsDigest: 'd', now: 0, withArgs: false });
    engine.evaluate(exact(0));
    engine.evaluate(exact(1));
    let hotHits = 0;
    for (let i = 2; i < 6000; i++) {
      engine.evaluate(exact(i));
      if (i % 500 === 0) {
        const before = engine.memoHits;
        assert.equal(engine.evaluate(exact(0)).decision, 'allow');
        hotHits += engine.memoHits - before;
      }
    }
    assert.equal(hotHits, 11, 'the answer in use is answered from the memo every time');
    const misses = engine.memoMisses;
    assert.equal(engine.evaluate(exact(1)).decision, 'allow');
    assert.equal(engine.memoMisses, misses + 1, 'the one not used since was dropped');
  });

  it('forgets every answer when a set is let go (its ids are preparsed empty)', () => {
    const engine = new PolicyEngine();
    engine.load('@id("other") permit (principal, action, resource);');
    const text = '@id("p") permit (principal, action, resource) when { context.usage.actions_left > 10 };';
    const held = engine.hold(text);
    assert.equal(engine.evaluate(req(3), held).decision, 'allow');
    assert.equal(engine.evaluate(req(3), held).decision, 'allow');
    assert.equal(engine.memoHits, 1);
    engine.letGo(held.version);
    // the let-go set object, evaluated anyway: Cedar (an emptied set) denies, and that is not kept
    assert.equal(engine.evaluate(req(3), held).decision, 'deny');
    assert.equal(engine.memoHits, 1);
    const again = engine.hold(text);
    assert.equal(engine.evaluate(req(3), again).decision, 'allow');
    assert.equal(engine.memoHits, 1, 'decided by Cedar again, not from before the unload');
  });
});
