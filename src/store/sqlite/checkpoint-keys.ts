// The audit checkpoint signing keys (kept apart from the token signing keys).
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/checkpoint-keys.ts is its twin.
import type { CheckpointKeyRecord, AuditInput } from '../../core/types.js';
import { toCheckpointKey } from '../rows.js';

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';

export async function listCheckpointKeys(db: SqliteDb): Promise<CheckpointKeyRecord[]> {
  return db.guard(() => (db.stmt('SELECT * FROM checkpoint_keys ORDER BY created_at, kid').all() as Row[]).map(toCheckpointKey));
}

export async function addFirstCheckpointKey(db: SqliteDb, key: CheckpointKeyRecord, audit: AuditInput): Promise<boolean> {
  return db.write(() => {
    if (db.stmt('SELECT 1 FROM checkpoint_keys LIMIT 1').get()) return false;
    db.stmt('INSERT INTO checkpoint_keys (kid, public_jwk, private_jwk, created_at) VALUES (?, ?, ?, ?)').run(
      key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt,
    );
    appendInTx(db, [audit]);
    return true;
  });
}
