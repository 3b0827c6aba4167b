// Operators: bootstrap, tokens, rotation, disabling (never the last working admin).
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/operators.ts is its twin.
import type { AuditInput, OperatorRecord } from '../../core/types.js';
import { toOperator, workingAdmins } from '../rows.js';

import { PgDb, type Row, type Q, OPERATORS_LOCK_CLASS } from './db.js';
import { appendInTx } from './audit.js';

export async function insertOperator(db: PgDb, c: Q, op: OperatorRecord): Promise<void> {
  await c.query('INSERT INTO operators (id, name, roles, token_hash, created_at, expires_at, rotated_at, disabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
    op.id, op.name, JSON.stringify(op.roles), op.tokenHash, op.createdAt, op.expiresAt, op.rotatedAt, op.disabled,
  ]);
}

export async function createOperator(db: PgDb, op: OperatorRecord, audit: AuditInput): Promise<void> {
  await db.tx(async (c) => {
    await insertOperator(db, c, op);
    await appendInTx(db, c, [audit]);
  });
}

export async function bootstrapOperator(db: PgDb, op: OperatorRecord, audit: AuditInput): Promise<boolean> {
  return db.tx(async (c) => {
    await db.lockStep(c, OPERATORS_LOCK_CLASS);
    if ((await c.query('SELECT 1 FROM operators LIMIT 1')).rowCount) return false;
    await insertOperator(db, c, op);
    await appendInTx(db, c, [audit]);
    return true;
  });
}

export async function getOperator(db: PgDb, id: string): Promise<OperatorRecord | null> {
  const r = await db.row('SELECT * FROM operators WHERE id = $1', [id]);
  return r ? toOperator(r) : null;
}

export async function listOperators(db: PgDb): Promise<OperatorRecord[]> {
  return (await db.rows('SELECT * FROM operators ORDER BY created_at, id')).map(toOperator);
}

export async function disableOperator(db: PgDb, id: string, now: number, audit: AuditInput): Promise<'disabled' | 'not_found' | 'already_disabled' | 'last_admin'> {
  return db.tx(async (c) => {
    // one lock for every disable: two admins disabling each other at once cannot both win
    await db.lockStep(c, OPERATORS_LOCK_CLASS);
    const row = (await c.query('SELECT * FROM operators WHERE id = $1', [id])).rows[0] as Row | undefined;
    if (!row) return 'not_found';
    const op = toOperator(row);
    if (op.disabled) return 'already_disabled';
    if (op.roles.includes('admin')) {
      const all = (await c.query('SELECT * FROM operators WHERE disabled = FALSE')).rows.map((r) => toOperator(r as Row));
      if (workingAdmins(all, now, id).length === 0) return 'last_admin';
    }
    await c.query('UPDATE operators SET disabled = TRUE WHERE id = $1', [id]);
    await appendInTx(db, c, [audit]);
    return 'disabled';
  });
}

export async function rotateOperatorToken(db: PgDb, id: string, tokenHash: string, expiresAt: number, now: number, audit: AuditInput): Promise<OperatorRecord | null> {
  return db.tx(async (c) => {
    const r = await c.query('UPDATE operators SET token_hash = $1, expires_at = $2, rotated_at = $3 WHERE id = $4 AND disabled = FALSE RETURNING *', [
      tokenHash, expiresAt, now, id,
    ]);
    if (!r.rows[0]) return null;
    await appendInTx(db, c, [audit]);
    return toOperator(r.rows[0] as Row);
  });
}

export async function findOperatorByTokenHash(db: PgDb, tokenHash: string): Promise<OperatorRecord | null> {
  const r = await db.row('SELECT * FROM operators WHERE token_hash = $1', [tokenHash]);
  return r ? toOperator(r) : null;
}

export async function countOperators(db: PgDb): Promise<number> {
  return Number((await db.row('SELECT count(*)::int AS n FROM operators'))!.n);
}
