// One-time identifiers (replay protection) and their purge.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/one-time.ts is its twin.
import type { AuditInput } from '../../core/types.js';

import { PgDb } from './db.js';
import { appendInTx } from './audit.js';

export async function useOnce(db: PgDb, key: string, expiresAt: number, audit: AuditInput | null): Promise<boolean> {
  const insert = 'INSERT INTO once_keys (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING';
  if (!audit) return (await db.exec(insert, [key, expiresAt])).rowCount === 1;
  return db.tx(async (c) => {
    const r = await c.query(insert, [key, expiresAt]);
    if (r.rowCount !== 1) return false;
    await appendInTx(db, c, [audit]);
    return true;
  });
}

export async function purgeExpiredOnce(db: PgDb, now: number): Promise<number> {
  const once = (await db.exec('DELETE FROM once_keys WHERE expires_at < $1', [now])).rowCount ?? 0;
  return once + ((await db.exec('DELETE FROM federated_tokens WHERE expires_at < $1', [now])).rowCount ?? 0);
}
