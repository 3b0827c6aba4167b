import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { computeEntryHash, GENESIS_HASH } from '../../src/core/audit-hash.js';
import type { ManualClock } from '../../src/core/clock.js';
import { ConflictError, type WritError } from '../../src/core/errors.js';
import { newId } from '../../src/core/ids.js';
import type {
  AgentRecord,
  AuditEntry,
  AuditInput,
  CheckpointKeyRecord,
  DecisionRecord,
  FederatedTokenRecord,
  IssuerRecord,
  OperatorRecord,
  PolicyRecord,
  SigningKeyRecord,
  TaskRecord,
} from '../../src/core/types.js';
import type { DecisionWrite, Store } from '../../src/store/store.js';
import { escalationContract } from './contract-escalations.js';
import { auditTreeContract } from './contract-audit-tree.js';
import { policyShadowContract } from './contract-policy-shadow.js';

/**
 * The one conformance suite every Store backend passes. Each `it` makes its own
 * records (fresh ids), so tests only share the audit chain, which the suite checks
 * as a whole at the end. Tests run in order: the first one sees an empty store.
 */

export interface StoreFixture {
  store: Store;
  clock: ManualClock;
  cleanup: () => Promise<void>;
  /** a second handle on the same data (another instance); its cleanup is the fixture's */
  another?: () => Promise<Store>;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

// --- fixtures ------------------------------------------------------------------

export function agentRecord(clock: ManualClock, over: Partial<AgentRecord> = {}): AgentRecord {
  return {
    id: newId('agt'),
    name: 'test agent',
    jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'x-coordinate', kid: 'k1' }] },
    labels: ['ci', 'ünïcødé'],
    status: 'active',
    createdAt: clock.now(),
    createdBy: 'operator:op_1',
    ...over,
  };
}

export function taskRecord(clock: ManualClock, agentId: string, over: Partial<TaskRecord> = {}): TaskRecord {
  const id = over.id ?? newId('tsk');
  return {
    id,
    agentId,
    owner: 'operator:op_1',
    intent: 'triage issues',
    scope: { tools: ['github.*'], resources: ['repo:acme/*'], destinations: [] },
    status: 'active',
    createdAt: clock.now(),
    expiresAt: clock.now() + 10 * DAY,
    endedAt: null,
    maxActions: 10,
    actionsUsed: 0,
    actionsReserved: 0,
    parentId: null,
    rootId: id,
    depth: 0,
    ...over,
  };
}

export function childRecord(clock: ManualClock, parent: TaskRecord, agentId: string, maxActions: number, over: Partial<TaskRecord> = {}): TaskRecord {
  return taskRecord(clock, agentId, {
    maxActions,
    parentId: parent.id,
    rootId: parent.rootId,
    depth: parent.depth + 1,
    expiresAt: parent.expiresAt,
    ...over,
  });
}

export function decisionRecord(clock: ManualClock, task: { id: string; agentId: string }, over: Partial<DecisionRecord> = {}): DecisionRecord {
  return {
    id: newId('dec'),
    taskId: task.id,
    agentId: task.agentId,
    tool: 'github.create_issue',
    audience: 'https://tools.example/github',
    resource: 'repo:acme/api',
    destination: null,
    argsDigest: 'digest',
    decision: 'allow',
    reasons: [{ code: 'policy_allow', message: 'allowed' }],
    policies: ['p1'],
    policyVersion: 'v1',
    tokenJti: newId('jti'),
    tokenExpiresAt: clock.now() + 60_000,
    createdAt: clock.now(),
    outcome: null,
    ...over,
  };
}

export function auditInput(type: string, over: Partial<AuditInput> = {}): AuditInput {
  return { type, actor: 'system', data: {}, ...over };
}

/** A guarded allow with its deny fallback, as the authorize path writes them. */
export interface GuardedWrite extends DecisionWrite {
  /** the fallback decision the store will be handed when the guard fails */
  fallbackDecision: DecisionRecord;
  /** the reasons the fallback was called with */
  fallbackCalls: string[];
}

export function guardedWrite(clock: ManualClock, task: { id: string; agentId: string }): GuardedWrite {
  const primary = decisionRecord(clock, task);
  const fallbackDecision = decisionRecord(clock, task, { decision: 'deny', reasons: [], tokenJti: null, tokenExpiresAt: null });
  const fallbackCalls: string[] = [];
  return {
    decision: primary,
    audit: auditInput('decision.allow', { taskId: task.id, agentId: task.agentId, decisionId: primary.id }),
    guard: { taskId: task.id },
    fallbackDecision,
    fallbackCalls,
    fallback: (reason) => {
      fallbackCalls.push(reason);
      const decision = { ...fallbackDecision, reasons: [{ code: reason, message: `guard failed: ${reason}` }] };
      fallbackDecision.reasons = decision.reasons;
      return {
        decision,
        audit: auditInput('decision.deny', { taskId: task.id, agentId: task.agentId, decisionId: fallbackDecision.id, data: { reason } }),
      };
    },
  };
}

async function addAgent(store: Store, clock: ManualClock, over: Partial<AgentRecord> = {}): Promise<AgentRecord> {
  const a = agentRecord(clock, over);
  await store.createAgent(a, auditInput('agent.created', { agentId: a.id, actor: 'operator:op_1', data: { name: a.name } }));
  return a;
}

async function addTask(store: Store, clock: ManualClock, agentId: string, over: Partial<TaskRecord> = {}): Promise<TaskRecord> {
  const t = taskRecord(clock, agentId, over);
  await store.createTask(t, auditInput('task.created', { taskId: t.id, agentId, data: {} }));
  return t;
}

async function addChild(store: Store, clock: ManualClock, parent: TaskRecord, agentId: string, maxActions: number, over: Partial<TaskRecord> = {}): Promise<TaskRecord> {
  const t = childRecord(clock, parent, agentId, maxActions, over);
  await store.createTask(t, auditInput('task.delegated', { taskId: t.id, agentId, data: { parent: parent.id } }));
  return t;
}

async function getTask(store: Store, id: string): Promise<TaskRecord> {
  const t = await store.getTask(id);
  assert.ok(t, `task ${id} exists`);
  return t;
}

/** Runs `fn` and returns the audit entries it appended (tests run one at a time). */
async function audited<T>(store: Store, fn: () => Promise<T>): Promise<{ result: T; entries: AuditEntry[] }> {
  const before = (await store.auditHead())?.seq ?? 0;
  const result = await fn();
  const entries = await store.listAudit({ after: before, limit: 10_000 });
  return { result, entries };
}

async function readWholeLog(store: Store): Promise<AuditEntry[]> {
  const all: AuditEntry[] = [];
  for (;;) {
    const page = await store.listAudit({ after: all.at(-1)?.seq ?? 0, limit: 1000 });
    all.push(...page);
    if (page.length < 1000) return all;
  }
}

/** Asserts that `entries` is one gap-free, fork-free, correctly hashed chain from genesis. */
export function assertChain(entries: AuditEntry[]): void {
  let prev = GENESIS_HASH;
  entries.forEach((e, i) => {
    assert.equal(e.seq, i + 1, `seq ${i + 1} is present (gap-free)`);
    assert.equal(e.prevHash, prev, `entry ${e.seq} links to its predecessor`);
    const { hash, ...rest } = e;
    assert.equal(hash, computeEntryHash(rest), `entry ${e.seq} hash recomputes`);
    prev = hash;
  });
}

function isConflict(code?: string) {
  return (err: unknown) => {
    assert.ok(err instanceof ConflictError, `expected ConflictError, got ${String(err)}`);
    if (code) assert.equal(err.code, code);
    return true;
  };
}

// --- the suite -----------------------------------------------------------------

export function runStoreContract(name: string, open: () => Promise<StoreFixture>): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    let clock: ManualClock;
    let cleanup: (() => Promise<void>) | undefined;
    let another: (() => Promise<Store>) | undefined;

    before(async () => {
      const f = await open();
      store = f.store;
      clock = f.clock;
      cleanup = f.cleanup;
      another = f.another;
    });

    after(async () => {
      await cleanup?.();
    });

    it('migrate is idempotent and the store starts empty', async () => {
      await store.migrate();
      await store.migrate();
      await store.ping();
      assert.equal(await store.auditHead(), null);
      assert.deepEqual(await store.listAudit({}), []);
      assert.equal(await store.countOperators(), 0);
      assert.deepEqual(await store.listAgents(), []);
      assert.equal(await store.getActivePolicy(), null);
      assert.deepEqual(await store.listSigningKeys(), []);
    });

    it('operators: create, find by token hash, count, duplicate', async () => {
      const op: OperatorRecord = {
        id: newId('op'), name: 'admin', roles: ['admin', 'auditor'], tokenHash: 'h'.repeat(64), createdAt: clock.now(), expiresAt: clock.now() + 3_600_000, rotatedAt: null, disabled: false,
      };
      const { entries } = await audited(store, () => store.createOperator(op, auditInput('operator.created', { actor: 'system', data: { id: op.id } })));
      assert.deepEqual(entries.map((e) => e.type), ['operator.created']);
      assert.deepEqual(await store.findOperatorByTokenHash(op.tokenHash), op);
      assert.equal(await store.findOperatorByTokenHash('nope'), null);
      assert.equal(await store.countOperators(), 1);
      const op2: OperatorRecord = { ...op, id: newId('op'), tokenHash: 'g'.repeat(64), roles: ['requester'], disabled: true };
      await store.createOperator(op2, auditInput('operator.created'));
      assert.deepEqual(await store.findOperatorByTokenHash(op2.tokenHash), op2);
      assert.equal(await store.countOperators(), 2);
      // the same token hash twice is a conflict, and nothing is written
      const { entries: none } = await audited(store, () =>
        assert.rejects(store.createOperator({ ...op, id: newId('op') }, auditInput('operator.created')), isConflict()),
      );
      assert.deepEqual(none, []);
      assert.equal(await store.countOperators(), 2);
    });

    it('operators: list, get, rotate (the old hash stops matching), disable; each change audited', async () => {
      const mk = (roles: OperatorRecord['roles'], over: Partial<OperatorRecord> = {}): OperatorRecord => ({
        id: newId('op'), name: 'o', roles, tokenHash: newId('h'), createdAt: clock.now(), expiresAt: clock.now() + HOUR, rotatedAt: null, disabled: false, ...over,
      });
      const before = await store.listOperators();
      const a = mk(['approver'], { createdAt: clock.now() + 1 });
      await store.createOperator(a, auditInput('operator.created'));
      assert.deepEqual(await store.getOperator(a.id), a);
      assert.equal(await store.getOperator('op_missing'), null);
      // oldest first
      assert.deepEqual(await store.listOperators(), [...before, a]);
      // rotate: new hash and expiry, stamped, audited; the old hash finds nothing
      const { result: rotated, entries } = await audited(store, () =>
        store.rotateOperatorToken(a.id, `new-hash-${a.id}`, clock.now() + 2 * HOUR, clock.now() + 5, auditInput('operator.token_rotated', { data: { id: a.id } })),
      );
      assert.deepEqual(rotated, { ...a, tokenHash: `new-hash-${a.id}`, expiresAt: clock.now() + 2 * HOUR, rotatedAt: clock.now() + 5 });
      assert.deepEqual(entries.map((e) => e.type), ['operator.token_rotated']);
      assert.equal(await store.findOperatorByTokenHash(a.tokenHash), null);
      assert.deepEqual(await store.findOperatorByTokenHash(`new-hash-${a.id}`), rotated);
      assert.equal(await store.rotateOperatorToken('op_missing', 'x', 1, 1, auditInput('operator.token_rotated')), null);
      // disable: once; the second time and an unknown id write nothing
      const { result: d1, entries: e1 } = await audited(store, () => store.disableOperator(a.id, clock.now(), auditInput('operator.disabled')));
      assert.equal(d1, 'disabled');
      assert.deepEqual(e1.map((e) => e.type), ['operator.disabled']);
      assert.equal((await store.getOperator(a.id))!.disabled, true);
      const { result: d2, entries: e2 } = await audited(store, () => store.disableOperator(a.id, clock.now(), auditInput('operator.disabled')));
      assert.equal(d2, 'already_disabled');
      assert.deepEqual(e2, []);
      assert.equal(await store.disableOperator('op_missing', clock.now(), auditInput('operator.disabled')), 'not_found');
      // a disabled operator's token is not rotated back to life
      const { result: r2, entries: e3 } = await audited(store, () => store.rotateOperatorToken(a.id, `again-${a.id}`, clock.now() + HOUR, clock.now(), auditInput('operator.token_rotated')));
      assert.equal(r2, null);
      assert.deepEqual(e3, []);
    });

    it('operators: the last enabled, unexpired admin cannot be disabled; expired or disabled admins do not count', async () => {
      // disable every admin the earlier tests left, keeping one of ours working
      const keep = { id: newId('op'), name: 'keep', roles: ['admin'] as OperatorRecord['roles'], tokenHash: newId('h'), createdAt: clock.now(), expiresAt: clock.now() + HOUR, rotatedAt: null, disabled: false };
      await store.createOperator(keep, auditInput('operator.created'));
      for (const o of await store.listOperators()) {
        if (o.id !== keep.id && !o.disabled) assert.equal(await store.disableOperator(o.id, clock.now(), auditInput('operator.disabled')), 'disabled');
      }
      const expired = { ...keep, id: newId('op'), tokenHash: newId('h'), expiresAt: clock.now() - 1 };
      await store.createOperator(expired, auditInput('operator.created'));
      const { result, entries } = await audited(store, () => store.disableOperator(keep.id, clock.now(), auditInput('operator.disabled')));
      assert.equal(result, 'last_admin', 'an expired admin is no admin');
      assert.deepEqual(entries, []);
      assert.equal((await store.getOperator(keep.id))!.disabled, false);
      // a non-admin can always be disabled; an expired admin too (it is not the last working one)
      assert.equal(await store.disableOperator(expired.id, clock.now(), auditInput('operator.disabled')), 'disabled');
      // two admins disabling each other at once: exactly one wins
      const other = { ...keep, id: newId('op'), tokenHash: newId('h') };
      await store.createOperator(other, auditInput('operator.created'));
      const both = await Promise.all([
        store.disableOperator(keep.id, clock.now(), auditInput('operator.disabled')),
        store.disableOperator(other.id, clock.now(), auditInput('operator.disabled')),
      ]);
      assert.deepEqual([...both].sort(), ['disabled', 'last_admin']);
      assert.equal((await store.listOperators()).filter((o) => !o.disabled && o.roles.includes('admin') && o.expiresAt > clock.now()).length, 1);
    });

    it('first start: the bootstrap admin, first policy, first signing key and checkpoint key are each written once when raced', async () => {
      const fresh = await open();
      try {
        const s = fresh.store;
        const now = clock.now();
        const ops = Array.from({ length: 6 }, (_, i): OperatorRecord => ({
          id: newId('op'), name: 'admin', roles: ['admin'], tokenHash: `boot-${i}`, createdAt: now, expiresAt: now + HOUR, rotatedAt: null, disabled: false,
        }));
        const created = await Promise.all(ops.map((op) => s.bootstrapOperator(op, auditInput('operator.created'))));
        assert.equal(created.filter(Boolean).length, 1);
        assert.equal(await s.countOperators(), 1);
        // the same token on every instance (WRIT_BOOTSTRAP_TOKEN): no conflict, one admin
        assert.equal(await s.bootstrapOperator({ ...ops[0]!, id: newId('op'), tokenHash: 'boot-0' }, auditInput('operator.created')), false);

        const policies = await Promise.all(
          [1, 2, 3, 4].map((i) => s.installFirstPolicy({ version: `p${i}`, text: `// ${i}`, createdAt: now, createdBy: 'system' }, auditInput('policy.updated'))),
        );
        assert.equal(policies.filter(Boolean).length, 1);
        const active = await s.getActivePolicy();
        assert.equal(active!.version, `p${policies.indexOf(true) + 1}`);
        // installFirstPolicy never replaces a policy, even one put later
        await s.putPolicy({ version: 'later', text: '// later', createdAt: now, createdBy: 'op' }, auditInput('policy.updated'));
        assert.equal(await s.installFirstPolicy({ version: 'p9', text: '// 9', createdAt: now, createdBy: 'system' }, auditInput('policy.updated')), false);
        assert.equal((await s.getActivePolicy())!.version, 'later');

        const key = (kid: string): SigningKeyRecord => ({
          kid, publicJwk: { kty: 'OKP', crv: 'Ed25519', x: kid }, privateJwk: { kty: 'OKP', crv: 'Ed25519', x: kid, d: kid }, createdAt: now, rotatedAt: null, retiredAt: null,
        });
        const keys = await Promise.all(['a', 'b', 'c', 'd'].map((k) => s.addFirstSigningKey(key(k), auditInput('key.created'))));
        assert.equal(keys.filter(Boolean).length, 1);
        assert.equal((await s.listSigningKeys()).length, 1);
        // once rotated away, a key still signs: no second "first" key
        await s.rotateSigningKeys(key('e'), now + HOUR, auditInput('key.rotated'));
        assert.equal(await s.addFirstSigningKey(key('f'), auditInput('key.created')), false);

        const ckp = (kid: string): CheckpointKeyRecord => ({ kid, publicJwk: { kty: 'OKP', crv: 'Ed25519', x: kid }, privateJwk: { kty: 'OKP', crv: 'Ed25519', x: kid, d: kid }, createdAt: now });
        assert.deepEqual(await s.listCheckpointKeys(), []);
        const cks = await Promise.all(['w', 'x', 'y', 'z'].map((k) => s.addFirstCheckpointKey(ckp(k), auditInput('audit.checkpoint_key_created'))));
        assert.equal(cks.filter(Boolean).length, 1);
        const listed = await s.listCheckpointKeys();
        assert.deepEqual(listed, [ckp(['w', 'x', 'y', 'z'][cks.indexOf(true)]!)]);
        // checkpoint keys and token keys are apart: neither list holds the other's
        assert.equal((await s.listSigningKeys()).some((k) => k.kid === listed[0]!.kid), false);

        // one audit entry per write that happened, and the chain holds
        const log = await readWholeLog(s);
        assertChain(log);
        assert.deepEqual(log.map((e) => e.type), ['operator.created', 'policy.updated', 'policy.updated', 'key.created', 'key.rotated', 'audit.checkpoint_key_created']);
      } finally {
        await fresh.cleanup();
      }
    });

    it('agents: create, get, list, duplicate -> agent_exists without a record', async () => {
      const a = agentRecord(clock);
      const { entries } = await audited(store, () => store.createAgent(a, auditInput('agent.created', { agentId: a.id, data: { name: a.name } })));
      assert.equal(entries.length, 1);
      assert.equal(entries[0]!.type, 'agent.created');
      assert.equal(entries[0]!.agentId, a.id);
      assert.deepEqual(await store.getAgent(a.id), a);
      assert.equal(await store.getAgent('agt_missing'), null);
      const b = await addAgent(store, clock, { labels: [] });
      const listed = await store.listAgents();
      assert.ok(listed.some((x) => x.id === a.id));
      assert.deepEqual(listed.find((x) => x.id === b.id), b);

      const headBefore = await store.auditHead();
      await assert.rejects(store.createAgent({ ...a, name: 'other' }, auditInput('agent.created')), isConflict('agent_exists'));
      assert.deepEqual(await store.auditHead(), headBefore, 'a failed write leaves no audit entry');
      assert.equal((await store.getAgent(a.id))!.name, 'test agent');
    });

    it('tasks: create, get, getTaskWithAgent, list filters', async () => {
      const a = await addAgent(store, clock);
      const b = await addAgent(store, clock);
      const t1 = taskRecord(clock, a.id);
      const { entries } = await audited(store, () => store.createTask(t1, auditInput('task.created', { taskId: t1.id, agentId: a.id, data: { max: 10 } })));
      assert.deepEqual(entries.map((e) => [e.type, e.taskId, e.agentId]), [['task.created', t1.id, a.id]]);
      assert.deepEqual(await store.getTask(t1.id), t1);
      assert.equal(await store.getTask('tsk_missing'), null);
      assert.deepEqual(await store.getTaskWithAgent(t1.id), { task: t1, agent: a });
      assert.equal(await store.getTaskWithAgent('tsk_missing'), null);

      clock.advance(1);
      const t2 = await addTask(store, clock, a.id);
      clock.advance(1);
      const t3 = await addTask(store, clock, b.id);
      clock.advance(1);
      const c1 = await addChild(store, clock, t2, b.id, 2);
      await store.endTask(t3.id, 'completed', clock.now(), auditInput('task.completed', { taskId: t3.id }));

      assert.deepEqual((await store.listTasks({ agentId: a.id })).map((t) => t.id), [t1.id, t2.id]);
      assert.deepEqual((await store.listTasks({ agentId: b.id })).map((t) => t.id), [t3.id, c1.id]);
      assert.deepEqual((await store.listTasks({ agentId: b.id, status: 'active' })).map((t) => t.id), [c1.id]);
      assert.deepEqual((await store.listTasks({ agentId: b.id, status: 'completed' })).map((t) => t.id), [t3.id]);
      assert.deepEqual((await store.listTasks({ parentId: t2.id })).map((t) => t.id), [c1.id]);
      assert.deepEqual((await store.listTasks({ agentId: a.id, limit: 1 })).map((t) => t.id), [t1.id]);
      const all = await store.listTasks({});
      for (const id of [t1.id, t2.id, t3.id, c1.id]) assert.ok(all.some((t) => t.id === id));
      assert.ok((await store.listTasks({ status: 'revoked' })).every((t) => t.status === 'revoked'));

      // a task for an unknown agent, or a duplicate id, is refused
      await assert.rejects(store.createTask(taskRecord(clock, 'agt_missing'), auditInput('task.created')), isConflict());
      await assert.rejects(store.createTask(t1, auditInput('task.created')), isConflict());
    });

    it('getTaskWithAgent reads the task state and the agent on every call; its JSON values are frozen, never shared stale', async () => {
      const a = await addAgent(store, clock);
      const t = await addTask(store, clock, a.id, { maxActions: 10 });
      const first = await store.getTaskWithAgent(t.id);
      assert.deepEqual(first, { task: t, agent: a });
      // the parsed JSON columns may be shared between reads: frozen, so no reader changes the next one's
      assert.throws(() => (first!.task.scope.tools as string[]).push('*'), TypeError);
      assert.throws(() => { (first!.agent.jwks as { keys: unknown[] }).keys = []; }, TypeError);
      assert.throws(() => (first!.agent.labels as string[]).push('admin'), TypeError);
      assert.deepEqual((await store.getTaskWithAgent(t.id))!.task.scope, t.scope);

      // a task of another agent with other keys and labels reads its own, not the first one's
      const b = await addAgent(store, clock, { labels: ['other'], jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'b'.repeat(43), kid: 'kb' }] } });
      const tb = await addTask(store, clock, b.id, { scope: { tools: ['slack.*'], resources: [], destinations: ['slack.com'] } });
      assert.deepEqual(await store.getTaskWithAgent(tb.id), { task: tb, agent: b });
      assert.deepEqual(await store.getTaskWithAgent(t.id), { task: t, agent: a });

      // state written after a read is seen by the next read, on this handle and on another one
      const second = another ? await another() : store;
      await second.endTask(t.id, 'revoked', clock.now(), auditInput('task.revoked', { taskId: t.id }));
      assert.equal((await store.getTaskWithAgent(t.id))!.task.status, 'revoked');
      assert.ok(await store.disableAgent(b.id, clock.now(), auditInput('agent.disabled', { agentId: b.id })));
      const after = await store.getTaskWithAgent(tb.id);
      assert.equal(after!.agent.status, 'disabled');
      assert.equal(after!.task.status, 'revoked');
    });

    it('delegation reserves the child budget from the parent and returns what is unused', async () => {
      const a = await addAgent(store, clock);
      const parent = await addTask(store, clock, a.id, { maxActions: 10 });
      const child = await addChild(store, clock, parent, a.id, 4);
      assert.equal((await getTask(store, parent.id)).actionsReserved, 4);
      assert.deepEqual(await store.getTask(child.id), child);

      // more than what is left is refused, and the parent is unchanged
      await assert.rejects(addChild(store, clock, parent, a.id, 7), isConflict('parent_budget_exhausted'));
      assert.equal((await getTask(store, parent.id)).actionsReserved, 4);
      const child2 = await addChild(store, clock, parent, a.id, 6);
      assert.equal((await getTask(store, parent.id)).actionsReserved, 10);

      // the parent itself has no budget left: its reserve covers everything
      const r0 = await store.commitDecisions([guardedWrite(clock, parent)], clock.now());
      assert.deepEqual(r0, [{ written: 'fallback', reason: 'budget_exhausted' }]);

      // the child uses 3 of its 4
      const r = await store.commitDecisions([1, 2, 3].map(() => guardedWrite(clock, child)), clock.now());
      assert.deepEqual(r, [{ written: 'primary' }, { written: 'primary' }, { written: 'primary' }]);
      assert.equal((await getTask(store, child.id)).actionsUsed, 3);

      const { result: ended, entries } = await audited(store, () =>
        store.endTask(child.id, 'completed', clock.now(), auditInput('task.completed', { taskId: child.id, agentId: a.id })),
      );
      assert.deepEqual(ended, [child.id]);
      assert.deepEqual(entries.map((e) => e.type), ['task.completed']);
      const p = await getTask(store, parent.id);
      assert.equal(p.actionsReserved, 6, 'the child reserve is released');
      assert.equal(p.actionsUsed, 3, 'what the child used stays spent');
      const c = await getTask(store, child.id);
      assert.equal(c.status, 'completed');
      assert.equal(c.endedAt, clock.now());

      // the returned unit is usable by the parent again, exactly one
      const r2 = await store.commitDecisions([guardedWrite(clock, parent), guardedWrite(clock, parent)], clock.now());
      assert.deepEqual(r2, [{ written: 'primary' }, { written: 'fallback', reason: 'budget_exhausted' }]);

      // a child of an ended task is refused
      await store.endTask(child2.id, 'revoked', clock.now(), auditInput('task.revoked'));
      await store.endTask(parent.id, 'completed', clock.now(), auditInput('task.completed'));
      await assert.rejects(addChild(store, clock, parent, a.id, 1), isConflict('parent_budget_exhausted'));
    });

    it('endTask cascades to every active descendant, the task first', async () => {
      const a = await addAgent(store, clock);
      const b = await addAgent(store, clock);
      const root = await addTask(store, clock, a.id, { maxActions: 20 });
      const child = await addChild(store, clock, root, b.id, 8);
      const sibling = await addChild(store, clock, root, a.id, 2);
      const grandchild = await addChild(store, clock, child, a.id, 5);
      const doneGrandchild = await addChild(store, clock, child, b.id, 1);
      await store.endTask(doneGrandchild.id, 'completed', clock.now(), auditInput('task.completed'));
      // the grandchild does some work before the cascade
      await store.commitDecisions([guardedWrite(clock, grandchild), guardedWrite(clock, grandchild)], clock.now());
      await store.commitDecisions([guardedWrite(clock, child)], clock.now());

      clock.advance(1000);
      const { result: ended, entries } = await audited(store, () =>
        store.endTask(child.id, 'completed', clock.now(), auditInput('task.completed', { taskId: child.id, agentId: b.id, actor: 'agent:' + b.id })),
      );
      assert.deepEqual(ended, [child.id, grandchild.id]);
      assert.deepEqual(entries.map((e) => [e.type, e.taskId]), [['task.completed', child.id], ['task.revoked', grandchild.id]]);
      assert.equal(entries[1]!.agentId, a.id);
      assert.equal(entries[1]!.data.reason, 'ancestor_ended');

      const c = await getTask(store, child.id);
      const g = await getTask(store, grandchild.id);
      assert.equal(c.status, 'completed');
      assert.equal(g.status, 'revoked');
      assert.equal(g.endedAt, clock.now());
      assert.equal((await getTask(store, doneGrandchild.id)).status, 'completed', 'an ended descendant keeps its status');
      assert.equal((await getTask(store, sibling.id)).status, 'active', 'a sibling is untouched');

      // the root: the child reserve (8) is released; the child's own use (1) and its
      // descendants' use (2 by the grandchild) stay spent
      const r = await getTask(store, root.id);
      assert.equal(r.actionsReserved, 2);
      assert.equal(r.actionsUsed, 3);

      // ending an ended task, or an unknown one, does nothing and writes nothing
      const { result: again, entries: none } = await audited(store, () => store.endTask(child.id, 'revoked', clock.now(), auditInput('task.revoked')));
      assert.deepEqual(again, []);
      assert.deepEqual(none, []);
      assert.deepEqual(await store.endTask('tsk_missing', 'revoked', clock.now(), auditInput('task.revoked')), []);

      // revoking the root takes the remaining sibling with it
      const ended2 = await store.endTask(root.id, 'revoked', clock.now(), auditInput('task.revoked', { taskId: root.id }));
      assert.deepEqual(ended2, [root.id, sibling.id]);
      assert.equal((await getTask(store, root.id)).status, 'revoked');
      assert.equal((await getTask(store, sibling.id)).status, 'revoked');
    });

    it('expireTasks ends active tasks past expiry, one audit entry each', async () => {
      const a = await addAgent(store, clock);
      const t0 = clock.now();
      const due = await addTask(store, clock, a.id, { expiresAt: t0 + 1000 });
      const dueChild = await addChild(store, clock, due, a.id, 2, { expiresAt: t0 + 1000 });
      const later = await addTask(store, clock, a.id, { expiresAt: t0 + 5000 });
      const doneDue = await addTask(store, clock, a.id, { expiresAt: t0 + 1000 });
      await store.endTask(doneDue.id, 'completed', t0, auditInput('task.completed'));

      assert.deepEqual(await store.expireTasks(t0 + 999), []);
      const { result: ended, entries } = await audited(store, () => store.expireTasks(t0 + 1000));
      assert.ok(ended.includes(due.id));
      assert.ok(ended.includes(dueChild.id));
      assert.ok(ended.indexOf(due.id) < ended.indexOf(dueChild.id));
      assert.ok(!ended.includes(later.id));
      assert.ok(!ended.includes(doneDue.id));
      const mine = entries.filter((e) => e.taskId === due.id || e.taskId === dueChild.id);
      assert.deepEqual(mine.map((e) => [e.type, e.taskId]), [['task.expired', due.id], ['task.revoked', dueChild.id]]);
      assert.equal(mine[0]!.actor, 'system');
      assert.equal(entries.length, ended.length, 'one entry per ended task');

      const d = await getTask(store, due.id);
      assert.equal(d.status, 'expired');
      assert.equal(d.endedAt, t0 + 1000);
      assert.equal((await getTask(store, dueChild.id)).status, 'revoked');
      assert.equal((await getTask(store, later.id)).status, 'active');
      assert.equal((await getTask(store, doneDue.id)).status, 'completed');
      assert.ok(!(await store.expireTasks(t0 + 1000)).includes(due.id));
    });

    it('disableAgent disables the agent and revokes its tasks with their descendants', async () => {
      const a = await addAgent(store, clock);
      const other = await addAgent(store, clock);
      const t1 = await addTask(store, clock, a.id);
      const t2 = await addTask(store, clock, a.id);
      const delegated = await addChild(store, clock, t1, other.id, 3);
      const done = await addTask(store, clock, a.id);
      await store.endTask(done.id, 'completed', clock.now(), auditInput('task.completed'));
      const foreign = await addTask(store, clock, other.id);

      const { result, entries } = await audited(store, () =>
        store.disableAgent(a.id, clock.now(), auditInput('agent.disabled', { agentId: a.id, actor: 'operator:op_1' })),
      );
      assert.ok(result);
      assert.deepEqual([...result.revokedTaskIds].sort(), [t1.id, t2.id, delegated.id].sort());
      assert.equal(entries[0]!.type, 'agent.disabled');
      assert.deepEqual(entries.slice(1).map((e) => e.type), ['task.revoked', 'task.revoked', 'task.revoked']);
      assert.deepEqual(entries.slice(1).map((e) => e.taskId).sort(), [t1.id, t2.id, delegated.id].sort());
      assert.equal((await store.getAgent(a.id))!.status, 'disabled');
      for (const id of [t1.id, t2.id, delegated.id]) assert.equal((await getTask(store, id)).status, 'revoked');
      assert.equal((await getTask(store, done.id)).status, 'completed');
      assert.equal((await getTask(store, foreign.id)).status, 'active');
      assert.equal((await store.getAgent(other.id))!.status, 'active');
      assert.equal(await store.disableAgent('agt_missing', clock.now(), auditInput('agent.disabled')), null);
    });

    it('useOnce: first true, then false; audit only for the first', async () => {
      const key = newId('jti');
      const exp = clock.now() + 60_000;
      const { result: first, entries } = await audited(store, () => store.useOnce(key, exp, auditInput('token.used', { data: { jti: key } })));
      assert.equal(first, true);
      assert.deepEqual(entries.map((e) => e.type), ['token.used']);
      const { result: second, entries: none } = await audited(store, () => store.useOnce(key, exp, auditInput('token.used')));
      assert.equal(second, false);
      assert.deepEqual(none, []);
      // without an audit input nothing is appended
      const { result: third, entries: none2 } = await audited(store, () => store.useOnce(newId('jti'), exp, null));
      assert.equal(third, true);
      assert.deepEqual(none2, []);
    });

    it('useOnce: 50 concurrent calls on one key, exactly one true', async () => {
      const key = newId('jti');
      const { result, entries } = await audited(store, () =>
        Promise.all(Array.from({ length: 50 }, () => store.useOnce(key, clock.now() + 60_000, auditInput('token.used', { data: { jti: key } })))),
      );
      assert.equal(result.filter(Boolean).length, 1);
      assert.equal(entries.length, 1);
    });

    it('purgeExpiredOnce forgets only expired identifiers', async () => {
      const now = clock.now();
      const old1 = newId('jti');
      const old2 = newId('jti');
      const edge = newId('jti');
      const live = newId('jti');
      await store.useOnce(old1, now - 10, null);
      await store.useOnce(old2, now - 1, null);
      await store.useOnce(edge, now, null);
      await store.useOnce(live, now + 60_000, null);
      const purged = await store.purgeExpiredOnce(now);
      assert.ok(purged >= 2, `purged ${purged}`);
      assert.equal(await store.purgeExpiredOnce(now), 0);
      assert.equal(await store.useOnce(old1, now + 60_000, null), true, 'a purged key is forgotten');
      assert.equal(await store.useOnce(edge, now + 60_000, null), false, 'expires_at == now is still remembered');
      assert.equal(await store.useOnce(live, now + 60_000, null), false);
    });

    it('commitDecisions writes a batch in order, with audit entries, in one go', async () => {
      const a = await addAgent(store, clock);
      const t = await addTask(store, clock, a.id, { maxActions: 3 });
      const d1 = decisionRecord(clock, t, { decision: 'deny', tokenJti: null, tokenExpiresAt: null, resource: null, destination: 'api.example' });
      const items: DecisionWrite[] = [
        { decision: d1, audit: auditInput('decision.deny', { taskId: t.id, agentId: a.id, decisionId: d1.id, data: { tool: d1.tool } }) },
        ...Array.from({ length: 5 }, () => guardedWrite(clock, t)),
      ];
      const { result, entries } = await audited(store, () => store.commitDecisions(items, clock.now()));
      assert.deepEqual(result, [
        { written: 'primary' },
        { written: 'primary' },
        { written: 'primary' },
        { written: 'primary' },
        { written: 'fallback', reason: 'budget_exhausted' },
        { written: 'fallback', reason: 'budget_exhausted' },
      ]);
      assert.deepEqual(entries.map((e) => e.type), ['decision.deny', 'decision.allow', 'decision.allow', 'decision.allow', 'decision.deny', 'decision.deny']);
      assert.deepEqual(
        entries.map((e) => e.decisionId),
        [d1.id, items[1]!.decision.id, items[2]!.decision.id, items[3]!.decision.id, (items[4] as GuardedWrite).fallbackDecision.id, (items[5] as GuardedWrite).fallbackDecision.id],
      );
      assert.equal((await getTask(store, t.id)).actionsUsed, 3);
      assert.deepEqual(await store.getDecision(d1.id), d1);
      assert.deepEqual(await store.getDecision(items[1]!.decision.id), items[1]!.decision);
      assert.equal(await store.getDecision(items[4]!.decision.id), null, 'the primary of a fallen-back item is not written');
      assert.deepEqual(await store.getDecision((items[4] as GuardedWrite).fallbackDecision.id), (items[4] as GuardedWrite).fallbackDecision);
      assert.deepEqual((items[4] as GuardedWrite).fallbackCalls, ['budget_exhausted']);
      assert.deepEqual((items[1] as GuardedWrite).fallbackCalls, []);
      assert.equal(await store.getDecision('dec_missing'), null);
      const listed = await store.listDecisions(t.id);
      assert.equal(listed.length, 6);
      assert.deepEqual(new Set(listed.map((d) => d.id)), new Set([d1.id, ...items.slice(1, 4).map((i) => i.decision.id), ...items.slice(4).map((i) => (i as GuardedWrite).fallbackDecision.id)]));
      assert.deepEqual(await store.listDecisions('tsk_missing'), []);
      assert.deepEqual(await store.commitDecisions([], clock.now()), []);
    });

    it('commitDecisions: a large batch commits whole', async () => {
      const a = await addAgent(store, clock);
      const t = await addTask(store, clock, a.id, { maxActions: 60 });
      const items = Array.from({ length: 100 }, () => guardedWrite(clock, t));
      const { result, entries } = await audited(store, () => store.commitDecisions(items, clock.now()));
      assert.equal(result.filter((r) => r.written === 'primary').length, 60);
      assert.ok(result.slice(0, 60).every((r) => r.written === 'primary'));
      assert.equal(entries.length, 100);
      assert.equal((await store.listDecisions(t.id)).length, 100);
      assert.equal((await getTask(store, t.id)).actionsUsed, 60);
    });

    it('commitDecisions: task_inactive for a revoked or expired task, budget_exhausted otherwise', async () => {
      const a = await addAgent(store, clock);
      const revoked = await addTask(store, clock, a.id);
      await store.endTask(revoked.id, 'revoked', clock.now(), auditInput('task.revoked'));
      const expiring = await addTask(store, clock, a.id, { expiresAt: clock.now() + 1000 });
      const spent = await addTask(store, clock, a.id, { maxActions: 1 });
      await store.commitDecisions([guardedWrite(clock, spent)], clock.now());

      const ws = [guardedWrite(clock, revoked), guardedWrite(clock, expiring), guardedWrite(clock, spent), guardedWrite(clock, { id: 'tsk_missing', agentId: a.id })];
      const { result: r, entries } = await audited(store, () => store.commitDecisions(ws, clock.now() + 1000));
      assert.deepEqual(ws.map((w) => w.fallbackCalls.at(-1)), ['task_inactive', 'task_inactive', 'budget_exhausted', 'task_inactive']);
      assert.deepEqual(entries.map((e) => e.data.reason), ['task_inactive', 'task_inactive', 'budget_exhausted', 'task_inactive']);
      assert.deepEqual((await store.getDecision(ws[2]!.fallbackDecision.id))!.reasons.map((x) => x.code), ['budget_exhausted']);
      assert.deepEqual(r, [
        { written: 'fallback', reason: 'task_inactive' },
        { written: 'fallback', reason: 'task_inactive' },
        { written: 'fallback', reason: 'budget_exhausted' },
        { written: 'fallback', reason: 'task_inactive' },
      ]);
      // just before expiry the same task still takes budget
      assert.deepEqual(await store.commitDecisions([guardedWrite(clock, expiring)], clock.now() + 999), [{ written: 'primary' }]);
      assert.equal((await getTask(store, revoked.id)).actionsUsed, 0);
    });

    it('commitDecisions: text with quotes, backslashes, SQL and non-ASCII is stored verbatim', async () => {
      // PostgreSQL writes a batch as literals in one message (src/store/postgres/sql-literal.ts)
      const a = await addAgent(store, clock);
      const t = await addTask(store, clock, a.id);
      const nasty = ["it's", 'back\\slash \\\' \\\\', "'); DROP TABLE decisions; --", '$1 $$ E\'\\x41\'', 'ünï 🔐 \u2028 "q"', '\n\t\r'];
      const ws = nasty.map((s) => {
        const w = guardedWrite(clock, t);
        w.decision = { ...w.decision, tool: `tool.${s}`, resource: s, destination: s, reasons: [{ code: 'policy_allow', message: s }] };
        w.audit = { ...w.audit, actor: `agent:${s}`, data: { text: s, [s]: [s] } };
        return w;
      });
      const { entries } = await audited(store, () => store.commitDecisions(ws, clock.now()));
      for (const [i, s] of nasty.entries()) {
        const d = (await store.getDecision(ws[i]!.decision.id))!;
        assert.deepEqual([d.tool, d.resource, d.destination, d.reasons[0]!.message], [`tool.${s}`, s, s, s]);
        assert.deepEqual([entries[i]!.actor, entries[i]!.data], [`agent:${s}`, { text: s, [s]: [s] }]);
      }
      assertChain(await readWholeLog(store));
    });

    it('commitDecisions: a guard without a fallback fails the whole batch, writing nothing', async () => {
      const a = await addAgent(store, clock);
      const t = await addTask(store, clock, a.id, { maxActions: 1 });
      const ok = guardedWrite(clock, t);
      const bad = { ...guardedWrite(clock, t), fallback: undefined };
      const head = await store.auditHead();
      await assert.rejects(store.commitDecisions([ok, bad], clock.now()));
      assert.deepEqual(await store.auditHead(), head);
      assert.equal(await store.getDecision(ok.decision.id), null);
      assert.equal((await getTask(store, t.id)).actionsUsed, 0);
    });

    it('commitDecisions: 30 concurrent commits on a task with max 5 -> exactly 5 primary', async () => {
      const a = await addAgent(store, clock);
      const t = await addTask(store, clock, a.id, { maxActions: 5 });
      const results = await Promise.all(Array.from({ length: 30 }, () => store.commitDecisions([guardedWrite(clock, t)], clock.now())));
      const flat = results.flat();
      assert.equal(flat.filter((r) => r.written === 'primary').length, 5);
      assert.ok(flat.filter((r) => r.written === 'fallback').every((r) => r.written === 'fallback' && r.reason === 'budget_exhausted'));
      const task = await getTask(store, t.id);
      assert.equal(task.actionsUsed, 5);
      const decisions = await store.listDecisions(t.id);
      assert.equal(decisions.length, 30);
      assert.equal(decisions.filter((d) => d.decision === 'allow').length, 5);
      assert.equal((await store.listAudit({ taskId: t.id, type: 'decision.allow' })).length, 5);
      assert.equal((await store.listAudit({ taskId: t.id, type: 'decision.deny' })).length, 25);
    });

    it('recordOutcome sets the outcome once', async () => {
      const a = await addAgent(store, clock);
      const t = await addTask(store, clock, a.id);
      const w = guardedWrite(clock, t);
      await store.commitDecisions([w], clock.now());
      const { result, entries } = await audited(store, () =>
        store.recordOutcome(w.decision.id, 'succeeded', auditInput('action.outcome', { decisionId: w.decision.id, taskId: t.id, data: { status: 'succeeded' } })),
      );
      assert.equal(result, true);
      assert.deepEqual(entries.map((e) => [e.type, e.decisionId]), [['action.outcome', w.decision.id]]);
      assert.equal((await store.getDecision(w.decision.id))!.outcome, 'succeeded');
      const { result: again, entries: none } = await audited(store, () => store.recordOutcome(w.decision.id, 'failed', auditInput('action.outcome')));
      assert.equal(again, false);
      assert.deepEqual(none, []);
      assert.equal((await store.getDecision(w.decision.id))!.outcome, 'succeeded');
      assert.equal(await store.recordOutcome('dec_missing', 'failed', auditInput('action.outcome')), false);
      const concurrent = await Promise.all(
        ['succeeded', 'failed', 'failed', 'succeeded'].map(async (o) => {
          const w2 = guardedWrite(clock, t);
          await store.commitDecisions([w2], clock.now());
          return Promise.all([1, 2, 3, 4, 5].map(() => store.recordOutcome(w2.decision.id, o as 'succeeded' | 'failed', auditInput('action.outcome'))));
        }),
      );
      for (const rs of concurrent) assert.equal(rs.filter(Boolean).length, 1);
    });

    it('commitWrites: outcomes ride with a batch of decisions; an outcome set before is left alone; a failed batch of decisions does not lose the outcomes', async () => {
      const a = await addAgent(store, clock);
      const t = await addTask(store, clock, a.id);
      const w1 = guardedWrite(clock, t);
      const w2 = guardedWrite(clock, t);
      await store.commitDecisions([w1, w2], clock.now());
      await store.recordOutcome(w2.decision.id, 'failed', auditInput('action.outcome'));
      const w3 = guardedWrite(clock, t);
      const outcome = (id: string, o: 'succeeded' | 'failed') => ({ decisionId: id, outcome: o, audit: auditInput('action.outcome', { decisionId: id, taskId: t.id, data: { status: o } }) });
      const { result, entries } = await audited(store, () =>
        store.commitWrites([w3], [outcome(w1.decision.id, 'succeeded'), outcome(w2.decision.id, 'succeeded'), outcome('dec_missing', 'failed')], clock.now()),
      );
      assert.deepEqual(result, { decisions: [{ written: 'primary' }], outcomes: [true, false, false] });
      // one outcome entry (w2's was set before, dec_missing does not exist) and w3's decision
      assert.deepEqual(entries.map((e) => [e.type, e.decisionId]).sort(), [['action.outcome', w1.decision.id], [w3.audit.type, w3.decision.id]].sort());
      assert.equal((await store.getDecision(w1.decision.id))!.outcome, 'succeeded');
      assert.equal((await store.getDecision(w2.decision.id))!.outcome, 'failed');
      assert.ok(await store.getDecision(w3.decision.id));
      // outcomes alone
      const w4 = guardedWrite(clock, t);
      await store.commitDecisions([w4], clock.now());
      assert.deepEqual(await store.commitWrites([], [outcome(w4.decision.id, 'failed')], clock.now()), { decisions: [], outcomes: [true] });
      // a batch of decisions that fails (a guard without a fallback) fails its callers; the outcomes are written
      const w5 = guardedWrite(clock, t);
      await store.commitDecisions([w5], clock.now());
      const bad = { ...guardedWrite(clock, t), guard: { taskId: 'tsk_missing' }, fallback: undefined };
      await assert.rejects(store.commitWrites([bad], [outcome(w5.decision.id, 'succeeded')], clock.now()));
      assert.equal((await store.getDecision(w5.decision.id))!.outcome, 'succeeded');
      assert.equal(await store.getDecision(bad.decision.id), null);
    });

    it('appendAudit: gap-free seq, linked hashes, the store clock, auditHead', async () => {
      clock.set(clock.now() + 12_345);
      const head0 = await store.auditHead();
      assert.ok(head0, 'earlier tests wrote entries');
      assert.deepEqual(await store.appendAudit([]), []);
      assert.deepEqual(await store.auditHead(), head0);

      const data = { nested: { b: [1, 2.5, 'x'], a: null }, text: 'zürich ✓ \u0000 "q" \\', big: 2 ** 53 - 1, neg: -7, t: true };
      const out = await store.appendAudit([
        auditInput('test.one', { actor: 'operator:op_1', taskId: 'tsk_x', agentId: 'agt_x', decisionId: 'dec_x', data }),
        auditInput('test.two'),
        auditInput('test.three', { data: { n: 3 } }),
      ]);
      assert.deepEqual(out.map((e) => e.seq), [head0.seq + 1, head0.seq + 2, head0.seq + 3]);
      assert.equal(out[0]!.prevHash, head0.hash);
      assert.equal(out[1]!.prevHash, out[0]!.hash);
      assert.equal(out[2]!.prevHash, out[1]!.hash);
      for (const e of out) {
        const { hash, ...rest } = e;
        assert.equal(hash, computeEntryHash(rest));
        assert.equal(e.ts, clock.now());
      }
      assert.deepEqual(await store.auditHead(), { seq: out[2]!.seq, hash: out[2]!.hash });
      // what is read back is what was written, byte for byte in its hash
      const read = await store.listAudit({ after: head0.seq });
      assert.deepEqual(read, out);
      assert.deepEqual(read[0]!.data, data);
      assert.equal(read[1]!.taskId, null);
      assert.equal(read[1]!.agentId, null);
      assert.equal(read[1]!.decisionId, null);
    });

    it('appendAudit: many concurrent appends form one gap-free, fork-free chain', async () => {
      const before = (await store.auditHead())!.seq;
      const batches = await Promise.all(
        Array.from({ length: 40 }, (_, i) => store.appendAudit(Array.from({ length: 1 + (i % 3) }, (_, j) => auditInput('test.concurrent', { data: { i, j } })))),
      );
      const seqs = batches.flat().map((e) => e.seq).sort((x, y) => x - y);
      const total = batches.reduce((n, b) => n + b.length, 0);
      assert.deepEqual(seqs, Array.from({ length: total }, (_, k) => before + k + 1));
      for (const b of batches) for (let k = 1; k < b.length; k++) assert.equal(b[k]!.seq, b[k - 1]!.seq + 1, 'a batch is contiguous');
      assertChain(await readWholeLog(store));
    });

    it('listAudit filters: taskId, agentId, type, decisionId, after, limit', async () => {
      const tag = newId('x');
      const written = await store.appendAudit([
        auditInput(`f.${tag}.a`, { taskId: `t_${tag}`, agentId: `a_${tag}` }),
        auditInput(`f.${tag}.b`, { taskId: `t_${tag}`, decisionId: `d_${tag}` }),
        auditInput(`f.${tag}.a`, { agentId: `a_${tag}`, decisionId: `d_${tag}` }),
        auditInput(`f.${tag}.a`, { taskId: `t_${tag}`, agentId: `a_${tag}`, decisionId: `d_${tag}` }),
      ]);
      const seqs = (es: AuditEntry[]) => es.map((e) => e.seq);
      const [e1, e2, e3, e4] = written.map((e) => e.seq) as [number, number, number, number];
      assert.deepEqual(seqs(await store.listAudit({ taskId: `t_${tag}` })), [e1, e2, e4]);
      assert.deepEqual(seqs(await store.listAudit({ agentId: `a_${tag}` })), [e1, e3, e4]);
      assert.deepEqual(seqs(await store.listAudit({ type: `f.${tag}.a` })), [e1, e3, e4]);
      assert.deepEqual(seqs(await store.listAudit({ decisionId: `d_${tag}` })), [e2, e3, e4]);
      assert.deepEqual(seqs(await store.listAudit({ taskId: `t_${tag}`, agentId: `a_${tag}`, decisionId: `d_${tag}`, type: `f.${tag}.a` })), [e4]);
      assert.deepEqual(seqs(await store.listAudit({ taskId: `t_${tag}`, after: e1 })), [e2, e4]);
      assert.deepEqual(seqs(await store.listAudit({ taskId: `t_${tag}`, limit: 2 })), [e1, e2]);
      assert.deepEqual(seqs(await store.listAudit({ after: e2, limit: 1 })), [e3]);
      assert.deepEqual(seqs(await store.listAudit({ after: e4 })), []);
      assert.deepEqual(await store.listAudit({ taskId: 'nothing' }), []);
      assert.equal((await store.listAudit({})).length, Math.min(100, e4), 'the default limit is 100');
      assert.equal((await store.listAudit({ limit: 0 })).length, 1, 'a limit below 1 is 1');
      assert.deepEqual(seqs(await store.listAudit({ limit: 3 })), [1, 2, 3]);
    });

    it('policies: put, activate, switch versions, re-put an old version', async () => {
      assert.equal(await store.getActivePolicy(), null);
      const v1: PolicyRecord = { version: 'v1', text: 'permit (principal, action, resource);', createdAt: clock.now(), createdBy: 'operator:op_1' };
      const v2: PolicyRecord = { version: 'v2', text: 'forbid (principal, action, resource);', createdAt: clock.now() + 1, createdBy: 'operator:op_2' };
      const { entries } = await audited(store, () => store.putPolicy(v1, auditInput('policy.updated', { data: { version: 'v1' } })));
      assert.deepEqual(entries.map((e) => e.type), ['policy.updated']);
      assert.deepEqual(await store.getActivePolicy(), v1);
      await store.putPolicy(v2, auditInput('policy.updated', { data: { version: 'v2' } }));
      assert.deepEqual(await store.getActivePolicy(), v2);
      // putting v1 again makes it active again; the stored version is immutable
      const { entries: e2 } = await audited(store, () => store.putPolicy({ ...v1, text: 'changed', createdAt: clock.now() + 5 }, auditInput('policy.updated', { data: { version: 'v1' } })));
      assert.equal(e2.length, 1);
      assert.deepEqual(await store.getActivePolicy(), v1);
      // every version stays readable by its id
      assert.deepEqual(await store.getPolicy('v2'), v2);
      assert.equal(await store.getPolicy('v3'), null);

      // conditional: only while the named version is active, else 412 and nothing written
      const v3: PolicyRecord = { version: 'v3', text: '// v3', createdAt: clock.now() + 9, createdBy: 'operator:op_3' };
      const { entries: e3 } = await audited(store, () =>
        assert.rejects(store.putPolicy(v3, auditInput('policy.updated'), { ifActive: 'v2' }), (e: WritError) => e.status === 412 && e.code === 'policy_version_mismatch'),
      );
      assert.equal(e3.length, 0);
      assert.equal(await store.getPolicy('v3'), null, 'a refused version is not stored either');
      assert.deepEqual(await store.getActivePolicy(), v1);
      await store.putPolicy(v3, auditInput('policy.updated'), { ifActive: 'v1' });
      assert.deepEqual(await store.getActivePolicy(), v3);
      // two changes made from the same version at once: one wins
      const results = await Promise.allSettled([
        store.putPolicy(v1, auditInput('policy.updated'), { ifActive: 'v3' }),
        store.putPolicy(v2, auditInput('policy.updated'), { ifActive: 'v3' }),
      ]);
      assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    });

    it('signing keys: add and list in creation order', async () => {
      const mk = (kid: string, createdAt: number, over: Partial<SigningKeyRecord> = {}): SigningKeyRecord => ({
        kid,
        publicJwk: { kty: 'OKP', crv: 'Ed25519', x: `x-${kid}`, kid },
        privateJwk: { kty: 'OKP', crv: 'Ed25519', x: `x-${kid}`, d: `d-${kid}`, kid },
        createdAt,
        rotatedAt: null,
        retiredAt: null,
        ...over,
      });
      const k2 = mk('k2', clock.now() + 10);
      const k1 = mk('k1', clock.now(), { rotatedAt: clock.now() + 5, retiredAt: clock.now() + 100 });
      const { entries } = await audited(store, () => store.addSigningKey(k2, auditInput('key.created', { data: { kid: 'k2' } })));
      assert.deepEqual(entries.map((e) => e.type), ['key.created']);
      await store.addSigningKey(k1, auditInput('key.created', { data: { kid: 'k1' } }));
      assert.deepEqual(await store.listSigningKeys(), [k1, k2]);
      const head = await store.auditHead();
      await assert.rejects(store.addSigningKey(k1, auditInput('key.created')), isConflict());
      assert.deepEqual(await store.auditHead(), head);
    });

    it('tool labels: set, replace, list in pattern order, remove with an empty list; each change audited', async () => {
      const base = (await store.listToolLabels()).length;
      const a = { pattern: `pay-${newId('t')}.*`, labels: ['sensitive', 'writes'], updatedAt: clock.now(), updatedBy: 'op_1' };
      const { entries } = await audited(store, () => store.putToolLabels(a, auditInput('tool.labels_set', { data: { pattern: a.pattern } })));
      assert.deepEqual(entries.map((e) => e.type), ['tool.labels_set']);
      const b = { pattern: `aaa-${newId('t')}`, labels: ['external'], updatedAt: clock.now(), updatedBy: 'op_2' };
      await store.putToolLabels(b, auditInput('tool.labels_set'));
      let listed = (await store.listToolLabels()).filter((e) => e.pattern === a.pattern || e.pattern === b.pattern);
      assert.deepEqual(listed, [b, a].sort((x, y) => (x.pattern < y.pattern ? -1 : 1)));
      const a2 = { ...a, labels: ['sensitive'], updatedAt: clock.now() + 10, updatedBy: 'op_2' };
      await store.putToolLabels(a2, auditInput('tool.labels_set'));
      listed = (await store.listToolLabels()).filter((e) => e.pattern === a.pattern);
      assert.deepEqual(listed, [a2]);
      const { entries: removed } = await audited(store, () => store.putToolLabels({ ...a, labels: [] }, auditInput('tool.labels_set')));
      assert.equal(removed.length, 1);
      assert.equal((await store.listToolLabels()).some((e) => e.pattern === a.pattern), false);
      assert.equal((await store.listToolLabels()).length, base + 1);
    });

    it('signing keys: rotation retires every signing key at once and adds the new one, audited', async () => {
      const mk = (kid: string, createdAt: number): SigningKeyRecord => ({
        kid,
        publicJwk: { kty: 'OKP', crv: 'Ed25519', x: `x-${kid}`, kid },
        privateJwk: { kty: 'OKP', crv: 'Ed25519', x: `x-${kid}`, d: `d-${kid}`, kid },
        createdAt,
        rotatedAt: null,
        retiredAt: null,
      });
      const before = await store.listSigningKeys();
      const r1 = mk(`r1-${newId('k')}`, clock.now() + 1000);
      await store.addSigningKey(r1, auditInput('key.created'));
      const r2 = mk(`r2-${newId('k')}`, clock.now() + 2000);
      const { entries } = await audited(store, () => store.rotateSigningKeys(r2, clock.now() + 9000, auditInput('key.rotated')));
      assert.deepEqual(entries.map((e) => e.type), ['key.rotated']);
      const after = await store.listSigningKeys();
      assert.deepEqual(after.find((k) => k.kid === r2.kid), r2);
      assert.deepEqual(after.find((k) => k.kid === r1.kid), { ...r1, rotatedAt: r2.createdAt, retiredAt: clock.now() + 9000 });
      for (const k of before.filter((b) => b.rotatedAt === null)) {
        assert.equal(after.find((a) => a.kid === k.kid)!.rotatedAt, r2.createdAt, 'every key that was signing is rotated');
      }
      assert.equal(after.filter((k) => k.rotatedAt === null).length, 1, 'one signing key');
    });

    it('trusted issuers: create, find the active one by issuer, one active per issuer, disable', async () => {
      const mk = (over: Partial<IssuerRecord> = {}): IssuerRecord => ({
        id: newId('iss'),
        kind: 'oidc',
        issuer: `https://issuer-${newId('x')}.test`,
        audience: 'writ',
        jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', kid: 'k1' }] },
        jwksUri: null,
        rules: [{ claims: { sub: 'system:serviceaccount:ns:sa', 'kubernetes.io/namespace': 'ns', n: 1, b: true }, agentId: 'spiffe://acme.test/a' }],
        status: 'active',
        createdAt: clock.now(),
        createdBy: 'operator:op_1',
        disabledAt: null,
        ...over,
      });
      const a = mk();
      const { entries } = await audited(store, () => store.createIssuer(a, auditInput('issuer.registered', { data: { id: a.id } })));
      assert.deepEqual(entries.map((e) => e.type), ['issuer.registered']);
      assert.deepEqual(await store.getIssuer(a.id), a);
      assert.deepEqual(await store.findActiveIssuer(a.issuer), a);
      assert.equal(await store.findActiveIssuer(`${a.issuer}/`), null, 'exact match only');
      const head = await store.auditHead();
      await assert.rejects(store.createIssuer(mk({ issuer: a.issuer }), auditInput('issuer.registered')), isConflict('issuer_exists'));
      assert.deepEqual(await store.auditHead(), head, 'nothing written on conflict');
      const b = mk({ kind: 'spiffe', issuer: `spiffe://${newId('td').toLowerCase().replace(/[^a-z0-9]/g, '')}.test`, jwks: null, jwksUri: 'https://jwks.test/keys', createdAt: clock.now() + 1 });
      await store.createIssuer(b, auditInput('issuer.registered'));
      const listed = await store.listIssuers();
      assert.deepEqual(listed.filter((i) => i.id === a.id || i.id === b.id), [a, b]);
      const disabledAudit = () => auditInput('issuer.disabled');
      const { result, entries: e2 } = await audited(store, () => store.disableIssuer(a.id, clock.now() + 5, { revokeIssued: true }, disabledAudit));
      assert.deepEqual(result, { revokedTokens: 0, taskIds: [] });
      assert.deepEqual(e2.map((e) => e.type), ['issuer.disabled']);
      assert.deepEqual(await store.getIssuer(a.id), { ...a, status: 'disabled', disabledAt: clock.now() + 5 });
      assert.equal(await store.findActiveIssuer(a.issuer), null);
      const { result: again, entries: none } = await audited(store, () => store.disableIssuer(a.id, clock.now(), { revokeIssued: true }, disabledAudit));
      assert.equal(again, null, 'once');
      assert.deepEqual(none, [], 'nothing written the second time');
      assert.equal(await store.disableIssuer('iss_missing', clock.now(), { revokeIssued: false }, disabledAudit), null);
      // the issuer string is free again once disabled
      const a2 = mk({ issuer: a.issuer });
      await store.createIssuer(a2, auditInput('issuer.registered'));
      assert.deepEqual(await store.findActiveIssuer(a.issuer), a2);
    });

    const issuerRecord = (over: Partial<IssuerRecord> = {}): IssuerRecord => ({
      id: newId('iss'),
      kind: 'oidc',
      issuer: `https://issuer-${newId('x')}.test`,
      audience: 'writ',
      jwks: null,
      jwksUri: 'https://jwks.test/keys',
      rules: [{ claims: { sub: 's', 'https://example.com/claims/role': 'admin', '/kubernetes.io/namespace': 'ns', 'a.b': 1 }, agentId: 'spiffe://acme.test/a' }],
      status: 'active',
      createdAt: clock.now(),
      createdBy: 'operator:op_1',
      disabledAt: null,
      ...over,
    });
    const fedToken = (issuerId: string, task: TaskRecord, over: Partial<FederatedTokenRecord> = {}): FederatedTokenRecord => ({
      jti: newId('tt'),
      issuerId,
      agentId: task.agentId,
      taskId: task.id,
      issuedAt: clock.now(),
      expiresAt: clock.now() + 600_000,
      revokedAt: null,
      ...over,
    });

    it('trusted issuers: URL-named and pointer claim names round-trip exactly', async () => {
      const i = issuerRecord();
      await store.createIssuer(i, auditInput('issuer.registered'));
      assert.deepEqual(await store.getIssuer(i.id), i);
    });

    it('federated tokens: recorded with the replay key and audit in one go; a replay or an inactive issuer writes nothing', async () => {
      const a = await addAgent(store, clock);
      const t = await addTask(store, clock, a.id);
      const iss = issuerRecord();
      await store.createIssuer(iss, auditInput('issuer.registered'));
      const key = `subject:${newId('k')}`;
      const tok = fedToken(iss.id, t);
      const { result, entries } = await audited(store, () =>
        store.recordFederatedToken(tok, { key, expiresAt: clock.now() + 60_000 }, auditInput('token.issued', { taskId: t.id, agentId: a.id, data: { jti: tok.jti } })),
      );
      assert.equal(result, 'recorded');
      assert.deepEqual(entries.map((e) => e.type), ['token.issued']);
      assert.deepEqual(await store.getFederatedToken(tok.jti), tok);
      assert.equal(await store.getFederatedToken('tt_missing'), null);
      // the same replay key again: nothing written, not even the token
      const tok2 = fedToken(iss.id, t);
      const replayed = await audited(store, () => store.recordFederatedToken(tok2, { key, expiresAt: clock.now() + 60_000 }, auditInput('token.issued')));
      assert.equal(replayed.result, 'replayed');
      assert.deepEqual(replayed.entries, []);
      assert.equal(await store.getFederatedToken(tok2.jti), null);
      // the key is the one useOnce spends: the two share one memory
      assert.equal(await store.useOnce(key, clock.now() + 60_000, null), false);
      // a key an older release spent for the same token counts as spent; nothing written
      const legacy = `subject:${newId('legacy')}`;
      await store.useOnce(legacy, clock.now() + 60_000, null);
      const fresh = `subject:${newId('k')}`;
      const tokL = fedToken(iss.id, t);
      assert.equal(await store.recordFederatedToken(tokL, { key: fresh, expiresAt: clock.now() + 60_000, spentAs: [`subject:${newId('none')}`, legacy] }, auditInput('token.issued')), 'replayed');
      assert.equal(await store.getFederatedToken(tokL.jti), null);
      assert.equal(await store.useOnce(fresh, clock.now() + 60_000, null), true, 'the new key was not spent');
      assert.equal(await store.recordFederatedToken(fedToken(iss.id, t), { key: `subject:${newId('k')}`, expiresAt: clock.now() + 60_000, spentAs: [`subject:${newId('none')}`] }, auditInput('token.issued')), 'recorded');
      // without a replay key (a subject token without `jti`)
      assert.equal(await store.recordFederatedToken(fedToken(iss.id, t), null, auditInput('token.issued')), 'recorded');
      // an issuer that is disabled, or does not exist: nothing written, the key not spent
      await store.disableIssuer(iss.id, clock.now(), { revokeIssued: false }, () => auditInput('issuer.disabled'));
      const key3 = `subject:${newId('k')}`;
      const tok3 = fedToken(iss.id, t);
      const late = await audited(store, () => store.recordFederatedToken(tok3, { key: key3, expiresAt: clock.now() + 60_000 }, auditInput('token.issued')));
      assert.equal(late.result, 'issuer_inactive');
      assert.deepEqual(late.entries, []);
      assert.equal(await store.getFederatedToken(tok3.jti), null);
      assert.equal(await store.useOnce(key3, clock.now() + 60_000, null), true, 'the key was not spent');
      assert.equal(await store.recordFederatedToken(fedToken('iss_missing', t), null, auditInput('token.issued')), 'issuer_inactive');
    });

    it('disableIssuer revokes the live tokens it issued (of active tasks), counts them, and keeps them with keep-issued', async () => {
      const a = await addAgent(store, clock);
      const t1 = await addTask(store, clock, a.id);
      const t2 = await addTask(store, clock, a.id);
      const ended = await addTask(store, clock, a.id);
      const lapsed = await addTask(store, clock, a.id, { expiresAt: clock.now() + 1_000 });
      const iss = issuerRecord();
      const other = issuerRecord();
      await store.createIssuer(iss, auditInput('issuer.registered'));
      await store.createIssuer(other, auditInput('issuer.registered'));
      const live = [fedToken(iss.id, t1), fedToken(iss.id, t1), fedToken(iss.id, t2)];
      const expired = fedToken(iss.id, t2, { expiresAt: clock.now() + 500 });
      const ofEnded = fedToken(iss.id, ended);
      const ofLapsed = fedToken(iss.id, lapsed);
      const ofOther = fedToken(other.id, t1);
      for (const tok of [...live, expired, ofEnded, ofLapsed, ofOther]) {
        assert.equal(await store.recordFederatedToken(tok, null, auditInput('token.issued')), 'recorded');
      }
      await store.endTask(ended.id, 'completed', clock.now(), auditInput('task.completed'));
      clock.advance(1_000); // `expired` and `lapsed` are past
      const at = clock.now();
      const { result, entries } = await audited(store, () =>
        store.disableIssuer(iss.id, at, { revokeIssued: true }, (r) => auditInput('issuer.disabled', { data: { tokens_revoked: r.tokens, task_ids: r.taskIds } })),
      );
      assert.deepEqual(result, { revokedTokens: 3, taskIds: [t1.id, t2.id].sort() });
      assert.deepEqual(entries.map((e) => [e.type, e.data]), [['issuer.disabled', { tokens_revoked: 3, task_ids: [t1.id, t2.id].sort() }]]);
      for (const tok of live) assert.equal((await store.getFederatedToken(tok.jti))!.revokedAt, at);
      for (const tok of [expired, ofEnded, ofLapsed, ofOther]) assert.equal((await store.getFederatedToken(tok.jti))!.revokedAt, null, 'not counted, not touched');

      // keep-issued: disabled, nothing revoked, the count says so
      const kept = fedToken(other.id, t2);
      await store.recordFederatedToken(kept, null, auditInput('token.issued'));
      const k = await audited(store, () => store.disableIssuer(other.id, clock.now(), { revokeIssued: false }, (r) => auditInput('issuer.disabled', { data: { tokens_revoked: r.tokens } })));
      assert.deepEqual(k.result, { revokedTokens: 0, taskIds: [] });
      assert.deepEqual(k.entries.map((e) => e.data), [{ tokens_revoked: 0 }]);
      assert.equal((await store.getFederatedToken(kept.jti))!.revokedAt, null);
      assert.equal((await store.getIssuer(other.id))!.status, 'disabled');

      // purged once expired, like one-time identifiers
      clock.advance(700_000);
      assert.ok((await store.purgeExpiredOnce(clock.now())) >= 5);
      assert.equal(await store.getFederatedToken(live[0]!.jti), null);
      assert.equal(await store.purgeExpiredOnce(clock.now()), 0);
    });

    it('disableIssuer racing exchanges (on another handle when the backend has one): every recorded token is revoked', async () => {
      const second = another ? await another() : store;
      const a = await addAgent(store, clock);
      const t = await addTask(store, clock, a.id);
      const iss = issuerRecord();
      await store.createIssuer(iss, auditInput('issuer.registered'));
      const tokens = Array.from({ length: 40 }, () => fedToken(iss.id, t));
      const [outcomes, disabled] = await Promise.all([
        Promise.all(tokens.map((tok, i) => (i % 2 ? second : store).recordFederatedToken(tok, { key: `subject:${tok.jti}`, expiresAt: clock.now() + 60_000 }, auditInput('token.issued')))),
        (async () => {
          await new Promise((ok) => setImmediate(ok));
          return second.disableIssuer(iss.id, clock.now(), { revokeIssued: true }, (r) => auditInput('issuer.disabled', { data: { tokens_revoked: r.tokens } }));
        })(),
      ]);
      assert.ok(disabled);
      const recorded = tokens.filter((_, i) => outcomes[i] === 'recorded');
      assert.equal(outcomes.filter((o) => o !== 'recorded' && o !== 'issuer_inactive').length, 0);
      assert.equal(disabled.revokedTokens, recorded.length, 'the count is what was cut off');
      for (const tok of recorded) assert.notEqual((await store.getFederatedToken(tok.jti))!.revokedAt, null, 'nothing recorded survives the removal');
      for (const tok of tokens.filter((_, i) => outcomes[i] !== 'recorded')) assert.equal(await store.getFederatedToken(tok.jti), null);
    });

    // approvals, break-glass, presence leases
    escalationContract(() => ({ store, clock }));
    auditTreeContract(() => ({ store, clock }));
    policyShadowContract(() => ({ store, clock }));

    it('the whole audit log is one verifiable chain, and auditHead is its last entry', async () => {
      const all = await readWholeLog(store);
      assert.ok(all.length > 100);
      assertChain(all);
      const last = all.at(-1)!;
      assert.deepEqual(await store.auditHead(), { seq: last.seq, hash: last.hash });
    });
  });
}
