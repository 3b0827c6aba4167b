// Policy versions and the active one (promotion of the shadow candidate included).
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/policies.ts is its twin.
import type { AuditInput, PolicyRecord } from '../../core/types.js';
import { toPolicy, policyMoved, shadowMoved } from '../rows.js';

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';

export async function putPolicy(db: SqliteDb, policy: PolicyRecord, audit: AuditInput, options: { ifActive?: string; promote?: string } = {}): Promise<void> {
  await db.write(() => {
    if (options.ifActive !== undefined) {
      const row = db.stmt('SELECT version FROM policy_active WHERE id = 1').get() as { version: string } | undefined;
      if (row?.version !== options.ifActive) throw policyMoved(options.ifActive, row?.version ?? null);
    }
    if (options.promote !== undefined) {
      const row = db.stmt('SELECT version FROM policy_shadow WHERE id = 1').get() as { version: string } | undefined;
      if (row?.version !== options.promote) throw shadowMoved(options.promote, row?.version ?? null);
      db.stmt('DELETE FROM policy_shadow WHERE id = 1').run();
    }
    db.stmt('INSERT INTO policies (version, text, created_at, created_by) VALUES (?, ?, ?, ?) ON CONFLICT (version) DO NOTHING').run(
      policy.version, policy.text, policy.createdAt, policy.createdBy,
    );
    db.stmt('INSERT INTO policy_active (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version').run(policy.version);
    appendInTx(db, [audit]);
  });
}

export async function getPolicy(db: SqliteDb, version: string): Promise<PolicyRecord | null> {
  const row = db.guard(() => db.stmt('SELECT * FROM policies WHERE version = ?').get(version) as Row | undefined);
  return row ? toPolicy(row) : null;
}

export async function installFirstPolicy(db: SqliteDb, policy: PolicyRecord, audit: AuditInput): Promise<boolean> {
  return db.write(() => {
    if (db.stmt('SELECT 1 FROM policy_active WHERE id = 1').get()) return false;
    db.stmt('INSERT INTO policies (version, text, created_at, created_by) VALUES (?, ?, ?, ?) ON CONFLICT (version) DO NOTHING').run(
      policy.version, policy.text, policy.createdAt, policy.createdBy,
    );
    db.stmt('INSERT INTO policy_active (id, version) VALUES (1, ?)').run(policy.version);
    appendInTx(db, [audit]);
    return true;
  });
}

export async function getActivePolicy(db: SqliteDb): Promise<PolicyRecord | null> {
  const row = db.guard(
    () => db.stmt('SELECT p.* FROM policy_active a JOIN policies p ON p.version = a.version WHERE a.id = 1').get() as Row | undefined,
  );
  return row ? toPolicy(row) : null;
}
