// Trusted workload-identity issuers and the task tokens issued through them.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/issuers.ts is its twin.
import { ConflictError } from '../../core/errors.js';
import type { AuditInput, FederatedTokenRecord, IssuerRecord } from '../../core/types.js';
import { FEDERATED_TOKEN_COLUMNS, federatedTokenParams, ISSUER_COLUMNS, issuerParams, toFederatedToken, toIssuer } from '../issuer-rows.js';

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';

export async function createIssuer(db: SqliteDb, issuer: IssuerRecord, audit: AuditInput): Promise<void> {
  await db.write(() => {
    if (issuer.status === 'active' && db.stmt(`SELECT 1 FROM trusted_issuers WHERE issuer = ? AND status = 'active'`).get(issuer.issuer)) {
      throw new ConflictError(`issuer \`${issuer.issuer}\` is registered already`, 'issuer_exists');
    }
    db.stmt(`INSERT INTO trusted_issuers (${ISSUER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(...issuerParams(issuer));
    appendInTx(db, [audit]);
  });
}

export async function getIssuer(db: SqliteDb, id: string): Promise<IssuerRecord | null> {
  const row = db.guard(() => db.stmt('SELECT * FROM trusted_issuers WHERE id = ?').get(id) as Row | undefined);
  return row ? toIssuer(row) : null;
}

export async function findActiveIssuer(db: SqliteDb, issuer: string): Promise<IssuerRecord | null> {
  const row = db.guard(() => db.stmt(`SELECT * FROM trusted_issuers WHERE issuer = ? AND status = 'active'`).get(issuer) as Row | undefined);
  return row ? toIssuer(row) : null;
}

export async function listIssuers(db: SqliteDb): Promise<IssuerRecord[]> {
  return db.guard(() => (db.stmt('SELECT * FROM trusted_issuers ORDER BY created_at, id').all() as Row[]).map(toIssuer));
}

export async function disableIssuer(db: SqliteDb, 
  id: string,
  now: number,
  options: { revokeIssued: boolean },
  audit: (revoked: { tokens: number; taskIds: string[] }) => AuditInput,
): Promise<{ revokedTokens: number; taskIds: string[] } | null> {
  return db.write(() => {
    const r = db.stmt(`UPDATE trusted_issuers SET status = 'disabled', disabled_at = ? WHERE id = ? AND status = 'active'`).run(now, id);
    if (r.changes !== 1) return null;
    let revoked: { jti: string; task_id: string }[] = [];
    if (options.revokeIssued) {
      revoked = db.stmt(
        `UPDATE federated_tokens SET revoked_at = ?
         WHERE issuer_id = ? AND revoked_at IS NULL AND expires_at > ?
           AND task_id IN (SELECT id FROM tasks WHERE status = 'active' AND expires_at > ?)
         RETURNING jti, task_id`,
      ).all(now, id, now, now) as { jti: string; task_id: string }[];
    }
    const taskIds = [...new Set(revoked.map((t) => t.task_id))].sort();
    appendInTx(db, [audit({ tokens: revoked.length, taskIds })]);
    return { revokedTokens: revoked.length, taskIds };
  });
}

export async function recordFederatedToken(db: SqliteDb, 
  token: FederatedTokenRecord,
  replay: { key: string; expiresAt: number; spentAs?: string[] } | null,
  audit: AuditInput,
): Promise<'recorded' | 'replayed' | 'issuer_inactive'> {
  return db.write(() => {
    // IMMEDIATE: a removal is either fully before (seen here) or fully after (revokes this row)
    if (!db.stmt(`SELECT 1 FROM trusted_issuers WHERE id = ? AND status = 'active'`).get(token.issuerId)) return 'issuer_inactive';
    if (replay) {
      for (const k of replay.spentAs ?? []) if (db.stmt('SELECT 1 FROM once_keys WHERE key = ?').get(k)) return 'replayed';
      const r = db.stmt('INSERT INTO once_keys (key, expires_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING').run(replay.key, replay.expiresAt);
      if (r.changes !== 1) return 'replayed';
    }
    db.stmt(`INSERT INTO federated_tokens (${FEDERATED_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`).run(...federatedTokenParams(token));
    appendInTx(db, [audit]);
    return 'recorded';
  });
}

export async function getFederatedToken(db: SqliteDb, jti: string): Promise<FederatedTokenRecord | null> {
  const row = db.guard(() => db.stmt('SELECT * FROM federated_tokens WHERE jti = ?').get(jti) as Row | undefined);
  return row ? toFederatedToken(row) : null;
}
