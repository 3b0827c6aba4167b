// Operators: bootstrap, tokens, rotation, disabling (never the last working admin).
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/operators.ts is its twin.
import type { AuditInput, OperatorRecord } from '../../core/types.js';
import { toOperator, workingAdmins } from '../rows.js';

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';

export function insertOperator(db: SqliteDb, op: OperatorRecord): void {
  db.stmt('INSERT INTO operators (id, name, roles, token_hash, created_at, expires_at, rotated_at, disabled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
    op.id, op.name, JSON.stringify(op.roles), op.tokenHash, op.createdAt, op.expiresAt, op.rotatedAt, op.disabled ? 1 : 0,
  );
}

export async function createOperator(db: SqliteDb, op: OperatorRecord, audit: AuditInput): Promise<void> {
  await db.write(() => {
    insertOperator(db, op);
    appendInTx(db, [audit]);
  });
}

export async function bootstrapOperator(db: SqliteDb, op: OperatorRecord, audit: AuditInput): Promise<boolean> {
  // IMMEDIATE: the write lock is held from the count to the insert, across processes too
  return db.write(() => {
    if (db.stmt('SELECT 1 FROM operators LIMIT 1').get()) return false;
    insertOperator(db, op);
    appendInTx(db, [audit]);
    return true;
  });
}

export async function getOperator(db: SqliteDb, id: string): Promise<OperatorRecord | null> {
  const row = db.guard(() => db.stmt('SELECT * FROM operators WHERE id = ?').get(id) as Row | undefined);
  return row ? toOperator(row) : null;
}

export async function listOperators(db: SqliteDb): Promise<OperatorRecord[]> {
  return db.guard(() => (db.stmt('SELECT * FROM operators ORDER BY created_at, id').all() as Row[]).map(toOperator));
}

export async function disableOperator(db: SqliteDb, id: string, now: number, audit: AuditInput): Promise<'disabled' | 'not_found' | 'already_disabled' | 'last_admin'> {
  return db.write(() => {
    const row = db.stmt('SELECT * FROM operators WHERE id = ?').get(id) as Row | undefined;
    if (!row) return 'not_found';
    const op = toOperator(row);
    if (op.disabled) return 'already_disabled';
    if (op.roles.includes('admin')) {
      const all = (db.stmt('SELECT * FROM operators WHERE disabled = 0').all() as Row[]).map(toOperator);
      if (workingAdmins(all, now, id).length === 0) return 'last_admin';
    }
    db.stmt('UPDATE operators SET disabled = 1 WHERE id = ?').run(id);
    appendInTx(db, [audit]);
    return 'disabled';
  });
}

export async function rotateOperatorToken(db: SqliteDb, id: string, tokenHash: string, expiresAt: number, now: number, audit: AuditInput): Promise<OperatorRecord | null> {
  return db.write(() => {
    const r = db.stmt('UPDATE operators SET token_hash = ?, expires_at = ?, rotated_at = ? WHERE id = ? AND disabled = 0').run(tokenHash, expiresAt, now, id);
    if (r.changes === 0) return null;
    appendInTx(db, [audit]);
    return toOperator(db.stmt('SELECT * FROM operators WHERE id = ?').get(id) as Row);
  });
}

export async function findOperatorByTokenHash(db: SqliteDb, tokenHash: string): Promise<OperatorRecord | null> {
  const row = db.guard(() => db.stmt('SELECT * FROM operators WHERE token_hash = ?').get(tokenHash) as Row | undefined);
  return row ? toOperator(row) : null;
}

export async function countOperators(db: SqliteDb): Promise<number> {
  return db.guard(() => Number((db.stmt('SELECT count(*) AS n FROM operators').get() as { n: number }).n));
}
