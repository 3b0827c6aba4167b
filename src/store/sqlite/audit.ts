// The audit hash chain: appends inside the caller's transaction, reads, the head.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/audit.ts is its twin.
import { computeEntryHash, GENESIS_HASH } from '../../core/audit-hash.js';
import type { AuditEntry, AuditInput } from '../../core/types.js';
import { toAuditEntry } from '../rows.js';
import { type AuditFilter } from '../store.js';

import { SqliteDb, type Row } from './db.js';

/** Must run inside a write transaction. */
export function appendInTx(db: SqliteDb, inputs: AuditInput[]): AuditEntry[] {
  if (inputs.length === 0) return [];
  const head = db.stmt('SELECT seq, hash FROM audit_head WHERE id = 1').get() as { seq: number; hash: string } | undefined;
  let seq = head?.seq ?? 0;
  let prevHash = head?.hash ?? GENESIS_HASH;
  const ts = db.clock.now();
  const insert = db.stmt(
    'INSERT INTO audit (seq, ts, type, actor, task_id, agent_id, decision_id, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
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
    insert.run(seq, ts, base.type, base.actor, base.taskId, base.agentId, base.decisionId, JSON.stringify(base.data), prevHash, hash);
    out.push({ ...base, hash });
    prevHash = hash;
  }
  db.stmt('INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash').run(seq, prevHash);
  return out;
}

export async function appendAudit(db: SqliteDb, entries: AuditInput[]): Promise<AuditEntry[]> {
  return db.write(() => appendInTx(db, entries));
}

export async function listAudit(db: SqliteDb, filter: AuditFilter): Promise<AuditEntry[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.taskId !== undefined) (where.push('task_id = ?'), params.push(filter.taskId));
  if (filter.agentId !== undefined) (where.push('agent_id = ?'), params.push(filter.agentId));
  if (filter.type !== undefined) (where.push('type = ?'), params.push(filter.type));
  if (filter.decisionId !== undefined) (where.push('decision_id = ?'), params.push(filter.decisionId));
  if (filter.after !== undefined) (where.push('seq > ?'), params.push(filter.after));
  const limit = Math.min(Math.max(filter.limit ?? 100, 1), 10_000);
  const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq ASC LIMIT ${limit}`;
  return db.guard(() => (db.raw.prepare(sql).all(...params) as Row[]).map(toAuditEntry));
}

export async function auditHead(db: SqliteDb): Promise<{ seq: number; hash: string } | null> {
  const row = db.guard(() => db.stmt('SELECT seq, hash FROM audit_head WHERE id = 1').get() as { seq: number; hash: string } | undefined);
  return row ? { seq: Number(row.seq), hash: row.hash } : null;
}
