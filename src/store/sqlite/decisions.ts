// Decisions: the group commit (budget, approval and break-glass guards) and outcomes.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/decisions.ts is its twin.
import type { AuditInput, DecisionRecord } from '../../core/types.js';
import { decisionParams, toDecision } from '../rows.js';
import { type DecisionCommitResult, type DecisionWrite, type OutcomeWrite } from '../store.js';

import { SqliteDb, breakGlassActive, type Row } from './db.js';
import { appendInTx } from './audit.js';

export async function commitDecisions(db: SqliteDb, items: DecisionWrite[], now: number): Promise<DecisionCommitResult[]> {
  return db.write(() => decideInTx(db, items, now));
}

/** The decisions' writes; must run inside a write transaction (or a savepoint of one). */
function decideInTx(db: SqliteDb, items: DecisionWrite[], now: number): DecisionCommitResult[] {
  const take = db.stmt(
    `UPDATE tasks SET actions_used = actions_used + 1
     WHERE id = ? AND status = 'active' AND expires_at > ? AND actions_used + actions_reserved < max_actions`,
  );
  const state = db.stmt('SELECT status, expires_at FROM tasks WHERE id = ?');
  const insert = db.stmt(
    `INSERT INTO decisions (id, task_id, agent_id, tool, audience, resource, destination, args_digest, decision, reasons, policies, policy_version, token_jti, token_expires_at, created_at, outcome)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const approvalState = db.stmt('SELECT status, expires_at FROM approvals WHERE id = ?');
  const useApproval = db.stmt(`UPDATE approvals SET status = 'used', used_at = ?, used_decision_id = ? WHERE id = ? AND status = 'approved' AND expires_at > ?`);
  const breakGlassState = db.stmt('SELECT status, ends_at FROM break_glass WHERE id = ?');
  const results: DecisionCommitResult[] = [];
  const audits: AuditInput[] = [];
  for (const item of items) {
    let decision = item.decision;
    let audit = item.audit;
    let result: DecisionCommitResult = { written: 'primary' };
    // An approval is checked before the budget is taken: a used or expired one takes nothing.
    const a = item.approval ? (approvalState.get(item.approval.id) as { status: string; expires_at: number } | undefined) : undefined;
    if (item.approval && !(a && a.status === 'approved' && Number(a.expires_at) > now)) {
      if (!item.fallback) throw new TypeError('a decision write that uses an approval needs a fallback');
      result = { written: 'fallback', reason: 'approval_unavailable' };
      ({ decision, audit } = item.fallback('approval_unavailable'));
    } else if (item.breakGlass && !breakGlassActive(breakGlassState.get(item.breakGlass.id) as { status: string; ends_at: number | null } | undefined, now)) {
      // the write transaction is exclusive: an end or expiry commits wholly before or after this
      if (!item.fallback) throw new TypeError('a decision write under break-glass needs a fallback');
      result = { written: 'fallback', reason: 'break_glass_inactive' };
      ({ decision, audit } = item.fallback('break_glass_inactive'));
    } else if (item.guard) {
      const r = take.run(item.guard.taskId, now);
      if (r.changes !== 1) {
        if (!item.fallback) throw new TypeError('a guarded decision write needs a fallback');
        const s = state.get(item.guard.taskId) as { status: string; expires_at: number } | undefined;
        const reason = !s || s.status !== 'active' || Number(s.expires_at) <= now ? 'task_inactive' : 'budget_exhausted';
        result = { written: 'fallback', reason };
        ({ decision, audit } = item.fallback(reason));
      }
    }
    insert.run(...decisionParams(decision));
    audits.push(audit);
    if (item.approval && result.written === 'primary') {
      useApproval.run(now, decision.id, item.approval.id, now);
      audits.push(item.approval.audit);
    }
    results.push(result);
  }
  appendInTx(db, audits);
  return results;
}

export async function commitWrites(db: SqliteDb, decisions: DecisionWrite[], outcomes: OutcomeWrite[], now: number): Promise<{ decisions: DecisionCommitResult[]; outcomes: (boolean | 'failed')[] }> {
  let written: { ok: DecisionCommitResult[] } | { fault: unknown } = { ok: [] };
  const set = await db.write(() => {
    const update = db.stmt('UPDATE decisions SET outcome = ? WHERE id = ? AND outcome IS NULL');
    const audits: AuditInput[] = [];
    const applied = outcomes.map((o) => {
      if (update.run(o.outcome, o.decisionId).changes !== 1) return false;
      audits.push(o.audit);
      return true;
    });
    appendInTx(db, audits);
    // nested in this transaction (better-sqlite3 makes it a savepoint): one commit, one
    // flush for both; a failed batch of decisions rolls back alone, and is thrown once the
    // outcomes are durable
    if (decisions.length > 0) {
      try {
        written = { ok: db.transact(() => decideInTx(db, decisions, now)) };
      } catch (err) {
        written = { fault: err };
      }
    }
    return applied;
  });
  if ('fault' in written) throw written.fault;
  return { decisions: written.ok, outcomes: set };
}

export async function getDecision(db: SqliteDb, id: string): Promise<DecisionRecord | null> {
  const row = db.guard(() => db.stmt('SELECT * FROM decisions WHERE id = ?').get(id) as Row | undefined);
  return row ? toDecision(row) : null;
}

export async function listDecisions(db: SqliteDb, taskId: string): Promise<DecisionRecord[]> {
  return db.guard(() => (db.stmt('SELECT * FROM decisions WHERE task_id = ? ORDER BY created_at, id').all(taskId) as Row[]).map(toDecision));
}

export async function recordOutcome(db: SqliteDb, decisionId: string, outcome: 'succeeded' | 'failed', audit: AuditInput): Promise<boolean> {
  return db.write(() => {
    const r = db.stmt('UPDATE decisions SET outcome = ? WHERE id = ? AND outcome IS NULL').run(outcome, decisionId);
    if (r.changes !== 1) return false;
    appendInTx(db, [audit]);
    return true;
  });
}
