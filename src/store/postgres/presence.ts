// Owner presence leases of tasks that require them.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/presence.ts is its twin.
import type { AuditInput } from '../../core/types.js';
import type { PresenceLease } from '../../core/escalation-types.js';
import { toPresence } from '../escalation-rows.js';

import { PgDb } from './db.js';
import { appendInTx } from './audit.js';

export async function getPresence(db: PgDb, taskId: string): Promise<PresenceLease | null> {
  const r = await db.row('SELECT * FROM presence_leases WHERE task_id = $1', [taskId]);
  return r ? toPresence(r) : null;
}

export async function renewPresence(db: PgDb, taskId: string, owner: string, expiresAt: number, now: number, audit: AuditInput): Promise<PresenceLease | null> {
  return db.tx(async (c) => {
    const r = await c.query('UPDATE presence_leases SET expires_at = $1, renewed_at = $2 WHERE task_id = $3 AND owner = $4', [expiresAt, now, taskId, owner]);
    if (r.rowCount !== 1) return null;
    await appendInTx(db, c, [audit]);
    return { taskId, owner, expiresAt, renewedAt: now };
  });
}
