// Trusted workload-identity issuers and the task tokens issued through them.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/issuers.ts is its twin.
import { ConflictError } from '../../core/errors.js';
import type { AuditInput, FederatedTokenRecord, IssuerRecord } from '../../core/types.js';
import { FEDERATED_TOKEN_COLUMNS, federatedTokenParams, ISSUER_COLUMNS, issuerParams, toFederatedToken, toIssuer } from '../issuer-rows.js';

import { PgDb } from './db.js';
import { appendInTx } from './audit.js';

export async function createIssuer(db: PgDb, issuer: IssuerRecord, audit: AuditInput): Promise<void> {
  await db.tx(async (c) => {
    // the partial unique index keeps one active record per issuer, across instances
    const r = await c.query(
      `INSERT INTO trusted_issuers (${ISSUER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
       ON CONFLICT (issuer) WHERE status = 'active' DO NOTHING`,
      issuerParams(issuer),
    );
    if (r.rowCount !== 1) throw new ConflictError(`issuer \`${issuer.issuer}\` is registered already`, 'issuer_exists');
    await appendInTx(db, c, [audit]);
  });
}

export async function getIssuer(db: PgDb, id: string): Promise<IssuerRecord | null> {
  const r = await db.row('SELECT * FROM trusted_issuers WHERE id = $1', [id]);
  return r ? toIssuer(r) : null;
}

export async function findActiveIssuer(db: PgDb, issuer: string): Promise<IssuerRecord | null> {
  const r = await db.row(`SELECT * FROM trusted_issuers WHERE issuer = $1 AND status = 'active'`, [issuer]);
  return r ? toIssuer(r) : null;
}

export async function listIssuers(db: PgDb): Promise<IssuerRecord[]> {
  return (await db.rows('SELECT * FROM trusted_issuers ORDER BY created_at, id')).map(toIssuer);
}

export async function disableIssuer(db: PgDb, 
  id: string,
  now: number,
  options: { revokeIssued: boolean },
  audit: (revoked: { tokens: number; taskIds: string[] }) => AuditInput,
): Promise<{ revokedTokens: number; taskIds: string[] } | null> {
  return db.tx(async (c) => {
    // The row lock taken here waits for every exchange holding the issuer row FOR SHARE
    // (recordFederatedToken); the next statement's snapshot then sees their tokens.
    const r = await c.query(`UPDATE trusted_issuers SET status = 'disabled', disabled_at = $1 WHERE id = $2 AND status = 'active'`, [now, id]);
    if (r.rowCount !== 1) return null;
    let revoked: { jti: string; task_id: string }[] = [];
    if (options.revokeIssued) {
      revoked = (
        await c.query<{ jti: string; task_id: string }>(
          `UPDATE federated_tokens SET revoked_at = $1
           WHERE issuer_id = $2 AND revoked_at IS NULL AND expires_at > $1
             AND task_id IN (SELECT id FROM tasks WHERE status = 'active' AND expires_at > $1)
           RETURNING jti, task_id`,
          [now, id],
        )
      ).rows;
    }
    const taskIds = [...new Set(revoked.map((t) => t.task_id))].sort();
    await appendInTx(db, c, [audit({ tokens: revoked.length, taskIds })]);
    return { revokedTokens: revoked.length, taskIds };
  });
}

export async function recordFederatedToken(db: PgDb, 
  token: FederatedTokenRecord,
  replay: { key: string; expiresAt: number; spentAs?: string[] } | null,
  audit: AuditInput,
): Promise<'recorded' | 'replayed' | 'issuer_inactive'> {
  return db.tx(async (c) => {
    // FOR SHARE: a concurrent removal either committed first (seen as disabled here) or
    // waits for this transaction and then revokes the token it wrote
    const active = await c.query(`SELECT 1 FROM trusted_issuers WHERE id = $1 AND status = 'active' FOR SHARE`, [token.issuerId]);
    if (active.rowCount !== 1) return 'issuer_inactive';
    if (replay) {
      if (replay.spentAs?.length && (await c.query('SELECT 1 FROM once_keys WHERE key = ANY($1::text[])', [replay.spentAs])).rowCount) return 'replayed';
      const r = await c.query('INSERT INTO once_keys (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [replay.key, replay.expiresAt]);
      if (r.rowCount !== 1) return 'replayed';
    }
    await c.query(`INSERT INTO federated_tokens (${FEDERATED_TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)`, federatedTokenParams(token));
    await appendInTx(db, c, [audit]);
    return 'recorded';
  });
}

export async function getFederatedToken(db: PgDb, jti: string): Promise<FederatedTokenRecord | null> {
  const r = await db.row('SELECT * FROM federated_tokens WHERE jti = $1', [jti]);
  return r ? toFederatedToken(r) : null;
}
