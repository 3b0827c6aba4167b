// One-time identifiers (replay protection) and their purge.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/one-time.ts is its twin.
import type { AuditInput } from '../../core/types.js';

import { SqliteDb } from './db.js';
import { appendInTx } from './audit.js';

export async function useOnce(db: SqliteDb, key: string, expiresAt: number, audit: AuditInput | null): Promise<boolean> {
  return db.write(() => {
    const r = db.stmt('INSERT INTO once_keys (key, expires_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING').run(key, expiresAt);
    if (r.changes !== 1) return false;
    if (audit) appendInTx(db, [audit]);
    return true;
  });
}

export async function purgeExpiredOnce(db: SqliteDb, now: number): Promise<number> {
  return db.write(
    () => db.stmt('DELETE FROM once_keys WHERE expires_at < ?').run(now).changes + db.stmt('DELETE FROM federated_tokens WHERE expires_at < ?').run(now).changes,
  );
}
