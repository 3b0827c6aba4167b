// Token signing keys: first key, additions, rotation.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/signing-keys.ts is its twin.
import type { AuditInput, SigningKeyRecord } from '../../core/types.js';
import { toSigningKey } from '../rows.js';

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';

export async function listSigningKeys(db: SqliteDb): Promise<SigningKeyRecord[]> {
  return db.guard(() => (db.stmt('SELECT * FROM signing_keys ORDER BY created_at, kid').all() as Row[]).map(toSigningKey));
}

export async function rotateSigningKeys(db: SqliteDb, key: SigningKeyRecord, retireAt: number, audit: AuditInput): Promise<void> {
  await db.write(() => {
    db.stmt('UPDATE signing_keys SET rotated_at = ?, retired_at = ? WHERE rotated_at IS NULL').run(key.createdAt, retireAt);
    db.stmt('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)').run(
      key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
    );
    appendInTx(db, [audit]);
  });
}

export async function addSigningKey(db: SqliteDb, key: SigningKeyRecord, audit: AuditInput): Promise<void> {
  await db.write(() => {
    db.stmt('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)').run(
      key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
    );
    appendInTx(db, [audit]);
  });
}

export async function addFirstSigningKey(db: SqliteDb, key: SigningKeyRecord, audit: AuditInput): Promise<boolean> {
  return db.write(() => {
    if (db.stmt('SELECT 1 FROM signing_keys WHERE rotated_at IS NULL LIMIT 1').get()) return false;
    db.stmt('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)').run(
      key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
    );
    appendInTx(db, [audit]);
    return true;
  });
}
