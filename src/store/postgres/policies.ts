// Policy versions and the active one (promotion of the shadow candidate included).
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/policies.ts is its twin.
import type { AuditInput, PolicyRecord } from '../../core/types.js';
import { toPolicy, policyMoved, shadowMoved } from '../rows.js';

import { PgDb, POLICY_LOCK_CLASS } from './db.js';
import { appendInTx } from './audit.js';

export async function putPolicy(db: PgDb, policy: PolicyRecord, audit: AuditInput, options: { ifActive?: string; promote?: string } = {}): Promise<void> {
  await db.tx(async (c) => {
    // serialised with every other policy change, so the compare and the set are one step
    if (options.ifActive !== undefined || options.promote !== undefined) await db.lockStep(c, POLICY_LOCK_CLASS);
    if (options.ifActive !== undefined) {
      const r = await c.query('SELECT version FROM policy_active WHERE id = 1');
      const active = (r.rows[0]?.version as string | undefined) ?? null;
      if (active !== options.ifActive) throw policyMoved(options.ifActive, active);
    }
    if (options.promote !== undefined) {
      const r = await c.query('DELETE FROM policy_shadow WHERE id = 1 RETURNING version');
      const candidate = (r.rows[0]?.version as string | undefined) ?? null;
      // a throw rolls the delete back
      if (candidate !== options.promote) throw shadowMoved(options.promote, candidate);
    }
    await c.query('INSERT INTO policies (version, text, created_at, created_by) VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING', [
      policy.version, policy.text, policy.createdAt, policy.createdBy,
    ]);
    await c.query('INSERT INTO policy_active (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version', [policy.version]);
    await appendInTx(db, c, [audit]);
  });
}

export async function getPolicy(db: PgDb, version: string): Promise<PolicyRecord | null> {
  const r = await db.row('SELECT * FROM policies WHERE version = $1', [version]);
  return r ? toPolicy(r) : null;
}

export async function installFirstPolicy(db: PgDb, policy: PolicyRecord, audit: AuditInput): Promise<boolean> {
  return db.tx(async (c) => {
    await db.lockStep(c, POLICY_LOCK_CLASS);
    if ((await c.query('SELECT 1 FROM policy_active WHERE id = 1')).rowCount) return false;
    await c.query('INSERT INTO policies (version, text, created_at, created_by) VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING', [
      policy.version, policy.text, policy.createdAt, policy.createdBy,
    ]);
    await c.query('INSERT INTO policy_active (id, version) VALUES (1, $1)', [policy.version]);
    await appendInTx(db, c, [audit]);
    return true;
  });
}

export async function getActivePolicy(db: PgDb): Promise<PolicyRecord | null> {
  const r = await db.row('SELECT p.* FROM policy_active a JOIN policies p ON p.version = a.version WHERE a.id = 1');
  return r ? toPolicy(r) : null;
}
