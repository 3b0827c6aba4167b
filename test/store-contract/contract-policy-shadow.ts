import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { ManualClock } from '../../src/core/clock.js';
import type { WritError } from '../../src/core/errors.js';
import { newId } from '../../src/core/ids.js';
import type { AuditEntry, AuditInput, DecisionRecord, PolicyRecord, ShadowDecisionRecord } from '../../src/core/types.js';
import type { Store } from '../../src/store/store.js';

/**
 * The part of the store contract (test/store-contract/contract.ts) for the shadow candidate of a
 * staged rollout (src/service/policy-shadow.ts) and the decisions it records beside the
 * live ones. Registered inside `runStoreContract`; the store holds what earlier contract
 * tests wrote (an active policy among it), which these tests leave alone.
 */
export function policyShadowContract(get: () => { store: Store; clock: ManualClock }): void {
  const audit = (type: string, data: Record<string, unknown> = {}): AuditInput => ({ type, actor: 'operator:op_1', data });
  const audited = async <T>(store: Store, fn: () => Promise<T>): Promise<{ result: T; entries: AuditEntry[] }> => {
    const before = (await store.auditHead())?.seq ?? 0;
    const result = await fn();
    return { result, entries: await store.listAudit({ after: before, limit: 10_000 }) };
  };
  const is412 = (e: WritError) => e.status === 412 && e.code === 'policy_version_mismatch';

  it('shadow candidate: set, replace, conditional on the candidate, drop; each change audited, refusals write nothing', async () => {
    const { store, clock } = get();
    const now = clock.now();
    const c1: PolicyRecord = { version: 'shadow-c1', text: '// candidate 1', createdAt: now, createdBy: 'op_1' };
    const c2: PolicyRecord = { version: 'shadow-c2', text: '// candidate 2', createdAt: now + 1, createdBy: 'op_2' };
    const activeBefore = await store.getActivePolicy();
    assert.equal(await store.getShadowPolicy(), null);
    // nothing to drop: false, nothing written
    const none = await audited(store, () => store.dropShadowPolicy(audit('policy.shadow_dropped')));
    assert.equal(none.result, false);
    assert.equal(none.entries.length, 0);

    const set1 = await audited(store, () => store.putShadowPolicy(c1, audit('policy.shadow_set', { version: c1.version })));
    assert.deepEqual(set1.entries.map((e) => e.type), ['policy.shadow_set']);
    assert.deepEqual(await store.getShadowPolicy(), { version: c1.version, text: c1.text, setAt: now, setBy: 'op_1' });
    // the candidate is a stored version, and the live set is untouched
    assert.deepEqual(await store.getPolicy(c1.version), c1);
    assert.deepEqual(await store.getActivePolicy(), activeBefore);

    // conditional on the candidate: a stale one is refused (412), nothing written
    const stale = await audited(store, () => assert.rejects(store.putShadowPolicy(c2, audit('policy.shadow_set'), { ifShadow: 'shadow-other' }), is412));
    assert.equal(stale.entries.length, 0);
    assert.equal(await store.getPolicy(c2.version), null, 'a refused candidate is not stored either');
    await store.putShadowPolicy(c2, audit('policy.shadow_set'), { ifShadow: c1.version });
    assert.equal((await store.getShadowPolicy())!.version, c2.version);

    // two replacements made from the same candidate at once: one wins
    const c3: PolicyRecord = { ...c1, version: 'shadow-c3', text: '// 3' };
    const c4: PolicyRecord = { ...c1, version: 'shadow-c4', text: '// 4' };
    const raced = await Promise.allSettled([
      store.putShadowPolicy(c3, audit('policy.shadow_set'), { ifShadow: c2.version }),
      store.putShadowPolicy(c4, audit('policy.shadow_set'), { ifShadow: c2.version }),
    ]);
    assert.deepEqual(raced.map((r) => r.status).sort(), ['fulfilled', 'rejected']);

    const current = (await store.getShadowPolicy())!.version;
    await assert.rejects(store.dropShadowPolicy(audit('policy.shadow_dropped'), { ifShadow: c2.version }), is412);
    const dropped = await audited(store, () => store.dropShadowPolicy(audit('policy.shadow_dropped'), { ifShadow: current }));
    assert.equal(dropped.result, true);
    assert.deepEqual(dropped.entries.map((e) => e.type), ['policy.shadow_dropped']);
    assert.equal(await store.getShadowPolicy(), null);
    assert.deepEqual(await store.getActivePolicy(), activeBefore);
  });

  it('shadow candidate: promotion makes it live and ends it in one step, only while it is the candidate (and the live version matches)', async () => {
    const { store, clock } = get();
    const now = clock.now();
    const live = (await store.getActivePolicy())!;
    const cand: PolicyRecord = { version: 'shadow-promote', text: '// promote me', createdAt: now, createdBy: 'op_1' };
    await store.putShadowPolicy(cand, audit('policy.shadow_set'));
    // the live version moved: 412, the candidate stays
    await assert.rejects(store.putPolicy(cand, audit('policy.updated'), { ifActive: 'not-live', promote: cand.version }), is412);
    assert.equal((await store.getShadowPolicy())!.version, cand.version);
    // another candidate named: 412, nothing written (the live set and the candidate stay)
    const wrong = await audited(store, () => assert.rejects(store.putPolicy(cand, audit('policy.updated'), { ifActive: live.version, promote: 'shadow-other' }), is412));
    assert.equal(wrong.entries.length, 0);
    assert.equal((await store.getActivePolicy())!.version, live.version);
    assert.equal((await store.getShadowPolicy())!.version, cand.version);

    const promoted = await audited(store, () => store.putPolicy(cand, audit('policy.updated'), { ifActive: live.version, promote: cand.version }));
    assert.deepEqual(promoted.entries.map((e) => e.type), ['policy.updated']);
    assert.equal((await store.getActivePolicy())!.version, cand.version);
    assert.equal(await store.getShadowPolicy(), null);
    // a plain live change keeps a candidate
    await store.putShadowPolicy({ ...cand, version: 'shadow-kept', text: '// kept' }, audit('policy.shadow_set'));
    await store.putPolicy(live, audit('policy.updated'));
    assert.equal((await store.getShadowPolicy())!.version, 'shadow-kept');
    await store.dropShadowPolicy(audit('policy.shadow_dropped'));
  });

  it('shadow decisions: kept beside the live record, one per decision, listed newest first with it; orphans left out', async () => {
    const { store, clock } = get();
    const t0 = clock.now();
    const decision = (i: number, over: Partial<DecisionRecord> = {}): DecisionRecord => ({
      id: newId('dec'), taskId: 'task_shadow', agentId: 'spiffe://acme.test/agent/shadow', tool: `tool.${i % 2}`, audience: 'mcp:x',
      resource: null, destination: null, argsDigest: 'd', decision: 'allow', reasons: [], policies: ['p'], policyVersion: 'live-v',
      tokenJti: null, tokenExpiresAt: null, createdAt: t0 + i, outcome: null, ...over,
    });
    const live = [decision(0), decision(1, { decision: 'deny', reasons: [{ code: 'no_policy_permits', message: 'x' }], policies: [] }), decision(2)];
    await store.commitDecisions(live.map((d) => ({ decision: d, audit: { type: 'decision', actor: 'system', decisionId: d.id, data: {} } })), t0);
    const shadow = (d: DecisionRecord, over: Partial<ShadowDecisionRecord> = {}): ShadowDecisionRecord => ({
      decisionId: d.id, candidateVersion: 'cand-v', decision: 'deny', reasons: [{ code: 'policy_forbids', message: 'denied by policy `f`' }], policies: ['f'], createdAt: d.createdAt, ...over,
    });
    const before = (await store.auditHead())?.seq ?? 0;
    await store.recordShadowDecisions([shadow(live[0]!), shadow(live[1]!, { decision: 'error', reasons: [{ code: 'shadow_error', message: 'x' }], policies: [] })]);
    // a second record for the same decision is ignored; a shadow row without a live record is not listed
    await store.recordShadowDecisions([shadow(live[0]!, { decision: 'allow' }), shadow(live[2]!, { candidateVersion: 'other-v' }), shadow(decision(9))]);
    await store.recordShadowDecisions([]);
    assert.equal(((await store.auditHead())?.seq ?? 0), before, 'shadow decisions are not audit entries');

    const got = await store.listShadowDecisions({ candidateVersion: 'cand-v', limit: 10 });
    assert.deepEqual(got.map((p) => p.live.id), [live[1]!.id, live[0]!.id]);
    assert.deepEqual(got[1], { shadow: shadow(live[0]!), live: live[0] });
    assert.equal(got[0]!.shadow.decision, 'error');
    assert.equal(got[0]!.live.decision, 'deny');
    assert.deepEqual((await store.listShadowDecisions({ candidateVersion: 'cand-v', limit: 1 })).map((p) => p.live.id), [live[1]!.id]);
    assert.deepEqual((await store.listShadowDecisions({ candidateVersion: 'other-v', limit: 10 })).map((p) => p.live.id), [live[2]!.id]);
    assert.deepEqual(await store.listShadowDecisions({ candidateVersion: 'nobody', limit: 10 }), []);
    // since: only those recorded at or after it
    assert.deepEqual((await store.listShadowDecisions({ candidateVersion: 'cand-v', since: t0 + 1, limit: 10 })).map((p) => p.live.id), [live[1]!.id]);
    assert.deepEqual(await store.listShadowDecisions({ candidateVersion: 'cand-v', since: t0 + 2, limit: 10 }), []);
  });
}
