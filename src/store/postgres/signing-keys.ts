// Token signing keys: first key, additions, rotation.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/signing-keys.ts is its twin.
import type { AuditInput, SigningKeyRecord } from '../../core/types.js';
import { toSigningKey } from '../rows.js';

import { PgDb, SIGNING_KEY_LOCK_CLASS } from './db.js';
import { appendInTx } from './audit.js';

export async function listSigningKeys(db: PgDb): Promise<SigningKeyRecord[]> {
  return (await db.rows('SELECT * FROM signing_keys ORDER BY created_at, kid')).map(toSigningKey);
}

export async function rotateSigningKeys(db: PgDb, key: SigningKeyRecord, retireAt: number, audit: AuditInput): Promise<void> {
  await db.tx(async (c) => {
    await c.query('UPDATE signing_keys SET rotated_at = $1, retired_at = $2 WHERE rotated_at IS NULL', [key.createdAt, retireAt]);
    await c.query('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)', [
      key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
    ]);
    await appendInTx(db, c, [audit]);
  });
}

export async function addSigningKey(db: PgDb, key: SigningKeyRecord, audit: AuditInput): Promise<void> {
  await db.tx(async (c) => {
    await c.query('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)', [
      key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
    ]);
    await appendInTx(db, c, [audit]);
  });
}

export async function addFirstSigningKey(db: PgDb, key: SigningKeyRecord, audit: AuditInput): Promise<boolean> {
  return db.tx(async (c) => {
    await db.lockStep(c, SIGNING_KEY_LOCK_CLASS);
    if ((await c.query('SELECT 1 FROM signing_keys WHERE rotated_at IS NULL LIMIT 1')).rowCount) return false;
    await c.query('INSERT INTO signing_keys (kid, public_jwk, private_jwk, created_at, rotated_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)', [
      key.kid, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), key.createdAt, key.rotatedAt, key.retiredAt,
    ]);
    await appendInTx(db, c, [audit]);
    return true;
  });
}
