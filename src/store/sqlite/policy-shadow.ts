// The shadow candidate policy (staged rollout, src/service/policy-shadow.ts) and its decisions.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/policy-shadow.ts is its twin.
import type { AuditInput, DecisionRecord, PolicyRecord, ShadowDecisionRecord, ShadowPolicyRecord } from '../../core/types.js';
import { shadowMoved, toShadowPolicy, toShadowPair, shadowDecisionParams, SHADOW_PAIRS_SQL } from '../rows.js';

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';

export function shadowMatches(db: SqliteDb, ifShadow: string | undefined): void {
  if (ifShadow === undefined) return;
  const row = db.stmt('SELECT version FROM policy_shadow WHERE id = 1').get() as { version: string } | undefined;
  if (row?.version !== ifShadow) throw shadowMoved(ifShadow, row?.version ?? null);
}

export async function putShadowPolicy(db: SqliteDb, policy: PolicyRecord, audit: AuditInput, options: { ifShadow?: string } = {}): Promise<void> {
  await db.write(() => {
    shadowMatches(db, options.ifShadow);
    db.stmt('INSERT INTO policies (version, text, created_at, created_by) VALUES (?, ?, ?, ?) ON CONFLICT (version) DO NOTHING').run(
      policy.version, policy.text, policy.createdAt, policy.createdBy,
    );
    db.stmt(
      'INSERT INTO policy_shadow (id, version, set_at, set_by) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version, set_at = excluded.set_at, set_by = excluded.set_by',
    ).run(policy.version, policy.createdAt, policy.createdBy);
    appendInTx(db, [audit]);
  });
}

export async function getShadowPolicy(db: SqliteDb): Promise<ShadowPolicyRecord | null> {
  const row = db.guard(
    () => db.stmt('SELECT p.version, p.text, s.set_at, s.set_by FROM policy_shadow s JOIN policies p ON p.version = s.version WHERE s.id = 1').get() as Row | undefined,
  );
  return row ? toShadowPolicy(row) : null;
}

export async function dropShadowPolicy(db: SqliteDb, audit: AuditInput, options: { ifShadow?: string } = {}): Promise<boolean> {
  return db.write(() => {
    shadowMatches(db, options.ifShadow);
    if (db.stmt('DELETE FROM policy_shadow WHERE id = 1').run().changes !== 1) return false;
    appendInTx(db, [audit]);
    return true;
  });
}

export async function recordShadowDecisions(db: SqliteDb, rows: ShadowDecisionRecord[]): Promise<void> {
  if (rows.length === 0) return;
  await db.write(() => {
    const ins = db.stmt('INSERT INTO shadow_decisions (decision_id, candidate_version, decision, reasons, policies, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (decision_id) DO NOTHING');
    for (const r of rows) ins.run(...shadowDecisionParams(r));
  });
}

export async function listShadowDecisions(db: SqliteDb, filter: { candidateVersion: string; since?: number; limit: number }): Promise<Array<{ shadow: ShadowDecisionRecord; live: DecisionRecord }>> {
  const sql = SHADOW_PAIRS_SQL.replace('{1}', '?').replace('{2}', '?').replace('{3}', '?');
  return db.guard(() => (db.stmt(sql).all(filter.candidateVersion, filter.since ?? 0, filter.limit) as Row[]).map(toShadowPair));
}
