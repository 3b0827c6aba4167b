// The audit hash chain: appends inside the caller's transaction, reads, the head.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/audit.ts is its twin.
import { computeEntryHash, GENESIS_HASH } from '../../core/audit-hash.js';
import type { AuditEntry, AuditInput } from '../../core/types.js';
import { toAuditEntry } from '../rows.js';
import { type AuditFilter } from '../store.js';

import { PgDb, type Row, type Q, auditWrite } from './db.js';

/** Appends inside the caller's transaction, holding the chain head's row lock until its commit is written (db.ts `tx`: not until it is flushed). */
export async function appendInTx(db: PgDb, c: Q, inputs: AuditInput[]): Promise<AuditEntry[]> {
  if (inputs.length === 0) return [];
  const out = chainEntries(db, await lockAuditHead(db, c), inputs);
  const w = auditWrite(out, 1);
  await c.query(`WITH ${w.ctes} ${w.headUpdate}`, w.params);
  return out;
}

/** The chain head, locked FOR UPDATE until the transaction ends (created at genesis if missing). */
export async function lockAuditHead(db: PgDb, c: Q): Promise<{ seq: number; hash: string }> {
  let head = (await c.query('SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE')).rows[0] as Row | undefined;
  if (!head) {
    await c.query('INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT (id) DO NOTHING', [GENESIS_HASH]);
    head = (await c.query('SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE')).rows[0] as Row;
  }
  return { seq: Number(head.seq), hash: head.hash as string };
}

/** The entries after `head`, each hashed over the one before. */
export function chainEntries(db: PgDb, head: { seq: number; hash: string }, inputs: AuditInput[]): AuditEntry[] {
  let seq = head.seq;
  let prevHash = head.hash;
  const ts = db.clock.now();
  const out: AuditEntry[] = [];
  for (const input of inputs) {
    seq += 1;
    const base = {
      seq,
      ts,
      type: input.type,
      actor: input.actor,
      taskId: input.taskId ?? null,
      agentId: input.agentId ?? null,
      decisionId: input.decisionId ?? null,
      data: input.data,
      prevHash,
    };
    const hash = computeEntryHash(base);
    out.push({ ...base, hash });
    prevHash = hash;
  }
  return out;
}

export async function appendAudit(db: PgDb, entries: AuditInput[]): Promise<AuditEntry[]> {
  if (entries.length === 0) return [];
  return db.tx((c) => appendInTx(db, c, entries));
}

export async function listAudit(db: PgDb, filter: AuditFilter): Promise<AuditEntry[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    where.push(`${sql} $${params.length}`);
  };
  if (filter.taskId !== undefined) add('task_id =', filter.taskId);
  if (filter.agentId !== undefined) add('agent_id =', filter.agentId);
  if (filter.type !== undefined) add('type =', filter.type);
  if (filter.decisionId !== undefined) add('decision_id =', filter.decisionId);
  if (filter.after !== undefined) add('seq >', filter.after);
  const limit = Math.min(Math.max(filter.limit ?? 100, 1), 10_000);
  const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq ASC LIMIT ${limit}`;
  return (await db.rows(sql, params)).map(toAuditEntry);
}

export async function auditHead(db: PgDb): Promise<{ seq: number; hash: string } | null> {
  const r = await db.row('SELECT seq, hash FROM audit_head WHERE id = 1');
  if (!r || Number(r.seq) === 0) return null;
  return { seq: Number(r.seq), hash: r.hash as string };
}
