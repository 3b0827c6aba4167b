// The audit checkpoint signing keys (kept apart from the token signing keys).
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/checkpoint-keys.ts is its twin.
import type { CheckpointKeyRecord, AuditInput } from '../../core/types.js';
import { toCheckpointKey } from '../rows.js';

import { PgDb, CHECKPOINT_KEY_LOCK_CLASS } from './db.js';
import { appendInTx } from './audit.js';

export async function listCheckpointKeys(db: PgDb): Promise<CheckpointKeyRecord[]> {
  return (await db.rows('SELECT * FROM checkpoint_keys ORDER BY created_at, kid')).map(toCheckpointKey);
}

export async function addFirstCheckpointKey(db: PgDb, key: CheckpointKeyRecord, audit: AuditInput): Promise<boolean> {
  return db.tx(async (c) => {
    await db.lockStep(c, CHECKPOINT_KEY_LOCK_CLASS);
    if ((await c.query('SELECT 1 FROM checkpoint_keys LIMIT 1')).rowCount) return false;
    await c.query('INSERT INTO checkpoint_keys (kid, public_jwk, private_jwk, created_at) VALUES ($1, $2, $3, $4)', [
      key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt,
    ]);
    await appendInTx(db, c, [audit]);
    return true;
  });
}
