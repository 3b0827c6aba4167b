// Owner presence leases of tasks that require them.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/presence.ts is its twin.
import type { AuditInput } from '../../core/types.js';
import type { PresenceLease } from '../../core/escalation-types.js';
import { toPresence } from '../escalation-rows.js';

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';

export async function getPresence(db: SqliteDb, taskId: string): Promise<PresenceLease | null> {
  const row = db.guard(() => db.stmt('SELECT * FROM presence_leases WHERE task_id = ?').get(taskId) as Row | undefined);
  return row ? toPresence(row) : null;
}

export async function renewPresence(db: SqliteDb, taskId: string, owner: string, expiresAt: number, now: number, audit: AuditInput): Promise<PresenceLease | null> {
  return db.write(() => {
    const r = db.stmt('UPDATE presence_leases SET expires_at = ?, renewed_at = ? WHERE task_id = ? AND owner = ?').run(expiresAt, now, taskId, owner);
    if (r.changes !== 1) return null;
    appendInTx(db, [audit]);
    return { taskId, owner, expiresAt, renewedAt: now };
  });
}
