// Decisions: the group commit (budget, approval and break-glass guards) and outcomes.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/decisions.ts is its twin.
import type { AuditEntry, AuditInput, DecisionRecord } from '../../core/types.js';
import { decisionParams, toDecision } from '../rows.js';
import { type DecisionCommitResult, type DecisionWrite, type OutcomeWrite } from '../store.js';

import { PgDb, type Row, DECISION_COLUMNS, DECISION_TYPES, mapPgError } from './db.js';
import { sqlArray, sqlInteger, sqlString, sqlValue } from './sql-literal.js';
import { appendInTx, lockAuditHead, chainEntries } from './audit.js';
import { entryHashParts } from '../../core/audit-hash.js';

/**
 * The group commit of a batch of decisions: in one round trip when every guard holds
 * (`commitInOneMessage`, the usual case), else in two, with a fallback written for each
 * decision whose guard fails (`commitInTwoMessages`).
 */
export async function commitDecisions(db: PgDb, items: DecisionWrite[], now: number): Promise<DecisionCommitResult[]> {
  if (items.length === 0) return [];
  if (await commitInOneMessage(db, items, now)) return items.map(() => ({ written: 'primary' }));
  return commitInTwoMessages(db, items, now);
}

/**
 * The usual batch, every guard of which holds, in one message and one round trip
 * (db.ts `txInOneMessage`): `writ_commit_decisions` (migrations 11 and 12, schema.ts) locks and
 * checks the guarded tasks, approvals and break-glass, then takes the chain head and
 * chains the entries on the server from each entry's hashed text around its seq
 * (src/core/audit-hash.ts `entryHashParts`), so the head's lock is never held across a
 * round trip to this process: instances sharing the one chain wait on each other only
 * for the server's own work. False when a guard fails: nothing was written, and the
 * batch is committed the long way, with its fallbacks.
 */
async function commitInOneMessage(db: PgDb, items: DecisionWrite[], now: number): Promise<boolean> {
  const takes = new Map<string, number>();
  const approvals: { id: string; decisionId: string }[] = [];
  const breakGlass = new Set<string>();
  const audits: AuditInput[] = [];
  for (const item of items) {
    if (item.guard) takes.set(item.guard.taskId, (takes.get(item.guard.taskId) ?? 0) + 1);
    if (item.breakGlass) breakGlass.add(item.breakGlass.id);
    audits.push(item.audit);
    if (item.approval) {
      // one approval used twice: the second falls back, which only the long way writes
      if (approvals.some((a) => a.id === item.approval!.id)) return false;
      approvals.push({ id: item.approval.id, decisionId: item.decision.id });
      audits.push(item.approval.audit);
    }
  }
  const ts = db.clock.now();
  const parts = audits.map((a) => entryHashParts({ ts, type: a.type, actor: a.actor, taskId: a.taskId ?? null, agentId: a.agentId ?? null, decisionId: a.decisionId ?? null, data: a.data }));
  const columns = DECISION_TYPES.map(() => [] as (string | number | null)[]);
  for (const item of items) {
    decisionParams(item.decision).forEach((v, i) => columns[i]!.push(v === null || v === undefined ? null : DECISION_TYPES[i] === 'bigint' ? Number(v) : String(v)));
  }
  const taskIds = [...takes.keys()];
  let args: string[];
  try {
    args = [
      sqlInteger(now),
      sqlArray(taskIds, 'text'),
      sqlArray(taskIds.map((id) => takes.get(id)!), 'int'),
      sqlArray(approvals.map((a) => a.id), 'text'),
      sqlArray(approvals.map((a) => a.decisionId), 'text'),
      sqlArray([...breakGlass], 'text'),
      ...columns.map((col, i) => sqlArray(col, DECISION_TYPES[i] === 'bigint' ? 'bigint' : 'text')),
      sqlInteger(ts),
      sqlArray(audits.map((a) => a.type), 'text'),
      sqlArray(audits.map((a) => a.actor), 'text'),
      sqlArray(audits.map((a) => a.taskId ?? null), 'text'),
      sqlArray(audits.map((a) => a.agentId ?? null), 'text'),
      sqlArray(audits.map((a) => a.decisionId ?? null), 'text'),
      sqlArray(audits.map((a) => JSON.stringify(a.data)), 'text'),
      sqlArray(parts.map((p) => p.before), 'text'),
      sqlArray(parts.map((p) => p.after), 'text'),
    ];
  } catch (err) {
    // a value no literal can carry (NUL): answered as PostgreSQL answers it, nothing sent
    throw mapPgError(err);
  }
  const r = await db.txInOneMessage(`SELECT writ_commit_decisions(${args.join(', ')}) AS outcome`);
  return (r.rows[0] as Row | undefined)?.outcome === 'ok';
}

/**
 * The batch in one transaction of two round trips (db.ts `txInTwoMessages`), each
 * decision written as its guards allow (a fallback where one fails): the first message
 * locks every guarded task, the approvals to use, the break-glass an allow relies on
 * and the audit chain head, in that order (every appender takes the head after the rows
 * it guards on, so batches never deadlock); the budgets, approvals and chain hashes are
 * then worked out here, and the second message writes them all in one statement,
 * followed by COMMIT and the flush barrier. The locks are held for one round trip and
 * this function's own work.
 */
async function commitInTwoMessages(db: PgDb, items: DecisionWrite[], now: number): Promise<DecisionCommitResult[]> {
  const taskIds = [...new Set(items.flatMap((i) => (i.guard ? [i.guard.taskId] : [])))].sort();
  const approvalIds = [...new Set(items.flatMap((i) => (i.approval ? [i.approval.id] : [])))].sort();
  const breakGlassIds = [...new Set(items.flatMap((i) => (i.breakGlass ? [i.breakGlass.id] : [])))].sort();
  const locks: string[] = [];
  const at = (sql: string) => locks.push(sql) - 1;
  // Every guarded task once, in id order (no deadlock between batches): the budget is taken in memory.
  const tasksAt = taskIds.length === 0 ? -1 : at(
    `SELECT id, status, expires_at, max_actions, actions_used, actions_reserved FROM tasks WHERE id = ANY(${sqlArray(taskIds, 'text')}) ORDER BY id FOR UPDATE`,
  );
  // Approvals to use: locked after the tasks, in id order; a used or expired one is not returned.
  const approvalsAt = approvalIds.length === 0 ? -1 : at(
    `SELECT id FROM approvals WHERE id = ANY(${sqlArray(approvalIds, 'text')}) AND status = 'approved' AND expires_at > ${sqlInteger(now)} ORDER BY id FOR UPDATE`,
  );
  // Break-glass an allow relies on: read under a share lock (after tasks and approvals,
  // in id order), so an end or expiry either commits first and is seen here, or waits
  // for this commit: no allow under it is recorded after its end.
  const breakGlassAt = breakGlassIds.length === 0 ? -1 : at(
    `SELECT id, status, ends_at FROM break_glass WHERE id = ANY(${sqlArray(breakGlassIds, 'text')}) ORDER BY id FOR SHARE`,
  );
  // The chain head last, as every appender takes it: the entries' hashes chain from it.
  const headAt = at('SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE');

  return db.txInTwoMessages(locks.join('; '), async (c, locked) => {
    const left = new Map<string, number>();
    if (tasksAt >= 0) {
      for (const r of locked[tasksAt]!.rows as Row[]) {
        const active = r.status === 'active' && Number(r.expires_at) > now;
        left.set(r.id as string, active ? Math.max(0, Number(r.max_actions) - Number(r.actions_used) - Number(r.actions_reserved)) : -1);
      }
    }
    const usable = new Set<string>();
    if (approvalsAt >= 0) for (const r of locked[approvalsAt]!.rows as Row[]) usable.add(r.id as string);
    const activeBreakGlass = new Set<string>();
    if (breakGlassAt >= 0) {
      for (const r of locked[breakGlassAt]!.rows as Row[]) if (r.status === 'active' && r.ends_at !== null && Number(r.ends_at) > now) activeBreakGlass.add(r.id as string);
    }
    const used: { id: string; decisionId: string }[] = [];
    const taken = new Map<string, number>();
    const results: DecisionCommitResult[] = [];
    const decisions: DecisionRecord[] = [];
    const audits: AuditInput[] = [];
    for (const item of items) {
      let decision = item.decision;
      let audit = item.audit;
      let result: DecisionCommitResult = { written: 'primary' };
      if (item.approval && !usable.has(item.approval.id)) {
        if (!item.fallback) throw new TypeError('a decision write that uses an approval needs a fallback');
        result = { written: 'fallback', reason: 'approval_unavailable' };
        ({ decision, audit } = item.fallback('approval_unavailable'));
      } else if (item.breakGlass && !activeBreakGlass.has(item.breakGlass.id)) {
        if (!item.fallback) throw new TypeError('a decision write under break-glass needs a fallback');
        result = { written: 'fallback', reason: 'break_glass_inactive' };
        ({ decision, audit } = item.fallback('break_glass_inactive'));
      } else if (item.guard) {
        const id = item.guard.taskId;
        const n = left.get(id) ?? -1;
        if (n > 0) {
          left.set(id, n - 1);
          taken.set(id, (taken.get(id) ?? 0) + 1);
        } else {
          if (!item.fallback) throw new TypeError('a guarded decision write needs a fallback');
          const reason = n < 0 ? 'task_inactive' : 'budget_exhausted';
          result = { written: 'fallback', reason };
          ({ decision, audit } = item.fallback(reason));
        }
      }
      decisions.push(decision);
      audits.push(audit);
      if (item.approval && result.written === 'primary') {
        usable.delete(item.approval.id);
        used.push({ id: item.approval.id, decisionId: decision.id });
        audits.push(item.approval.audit);
      }
      results.push(result);
    }
    const headRow = locked[headAt]!.rows[0] as Row | undefined;
    // no head row (a store whose migration did not write it): created and locked the slow way
    const head = headRow ? { seq: Number(headRow.seq), hash: headRow.hash as string } : await lockAuditHead(db, c);
    const out = chainEntries(db, head, audits);
    // Every write of the batch in one statement: the approvals used, the budget taken,
    // the decisions, the audit entries and the chain head.
    const ctes: string[] = [];
    if (used.length > 0) {
      ctes.push(
        `used AS (UPDATE approvals SET status = 'used', used_at = ${sqlInteger(now)}, used_decision_id = d.dec FROM unnest(${sqlArray(used.map((u) => u.id), 'text')}, ${sqlArray(used.map((u) => u.decisionId), 'text')}) AS d(id, dec) WHERE approvals.id = d.id)`,
      );
    }
    if (taken.size > 0) {
      const ids = [...taken.keys()];
      ctes.push(
        `taken AS (UPDATE tasks SET actions_used = tasks.actions_used + d.n FROM unnest(${sqlArray(ids, 'text')}, ${sqlArray(ids.map((k) => taken.get(k)!), 'int')}) AS d(id, n) WHERE tasks.id = d.id)`,
      );
    }
    ctes.push(`dec AS (INSERT INTO decisions (${DECISION_COLUMNS}) VALUES ${decisions.map(decisionValues).join(', ')})`);
    ctes.push(`ins AS (INSERT INTO audit (seq, ts, type, actor, task_id, agent_id, decision_id, data, prev_hash, hash) VALUES ${out.map(auditValues).join(', ')})`);
    const last = out[out.length - 1]!;
    return {
      writes: `WITH ${ctes.join(',\n')}\nUPDATE audit_head SET seq = ${sqlInteger(last.seq)}, hash = ${sqlString(last.hash)} WHERE id = 1`,
      value: results,
    };
  });
}

/** One decision's row as a VALUES tuple of literals, typed by its column. */
function decisionValues(d: DecisionRecord): string {
  const values = decisionParams(d).map((v, i) => {
    if (v === null || v === undefined) return 'NULL';
    return DECISION_TYPES[i] === 'bigint' ? sqlInteger(Number(v)) : sqlString(String(v));
  });
  return `(${values.join(', ')})`;
}

/** One audit entry's row as a VALUES tuple of literals. */
function auditValues(e: AuditEntry): string {
  return `(${[
    sqlInteger(e.seq), sqlInteger(e.ts), sqlString(e.type), sqlString(e.actor), sqlValue(e.taskId), sqlValue(e.agentId), sqlValue(e.decisionId),
    sqlString(JSON.stringify(e.data)), sqlString(e.prevHash), sqlString(e.hash),
  ].join(', ')})`;
}

export async function commitWrites(db: PgDb, decisions: DecisionWrite[], outcomes: OutcomeWrite[], now: number): Promise<{ decisions: DecisionCommitResult[]; outcomes: (boolean | 'failed')[] }> {
  // both in flight at once; the caller hears of either only once both have settled
  const [written, set] = await Promise.allSettled([
    commitDecisions(db, decisions, now),
    outcomes.length === 0
      ? Promise.resolve([] as (boolean | 'failed')[])
      : db.tx(async (c) => {
          // every outcome in one statement; those already set are left alone
          const { rows } = await c.query(
            `UPDATE decisions SET outcome = d.o FROM unnest($1::text[], $2::text[]) AS d(id, o) WHERE decisions.id = d.id AND decisions.outcome IS NULL RETURNING decisions.id`,
            [outcomes.map((o) => o.decisionId), outcomes.map((o) => o.outcome)],
          );
          const done = new Set((rows as Row[]).map((r) => r.id as string));
          await appendInTx(db, c, outcomes.filter((o) => done.has(o.decisionId)).map((o) => o.audit));
          return outcomes.map((o) => done.has(o.decisionId));
        }).catch((): (boolean | 'failed')[] => outcomes.map(() => 'failed' as const)),
  ]);
  if (written.status === 'rejected') throw written.reason;
  return { decisions: written.value, outcomes: set.status === 'fulfilled' ? set.value : outcomes.map(() => 'failed' as const) };
}

export async function getDecision(db: PgDb, id: string): Promise<DecisionRecord | null> {
  const r = await db.row('SELECT * FROM decisions WHERE id = $1', [id]);
  return r ? toDecision(r) : null;
}

export async function listDecisions(db: PgDb, taskId: string): Promise<DecisionRecord[]> {
  return (await db.rows('SELECT * FROM decisions WHERE task_id = $1 ORDER BY created_at, id', [taskId])).map(toDecision);
}

export async function recordOutcome(db: PgDb, decisionId: string, outcome: 'succeeded' | 'failed', audit: AuditInput): Promise<boolean> {
  return db.tx(async (c) => {
    const r = await c.query('UPDATE decisions SET outcome = $1 WHERE id = $2 AND outcome IS NULL', [outcome, decisionId]);
    if (r.rowCount !== 1) return false;
    await appendInTx(db, c, [audit]);
    return true;
  });
}
