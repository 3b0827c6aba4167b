// The shadow candidate policy (staged rollout, src/service/policy-shadow.ts) and its decisions.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/policy-shadow.ts is its twin.
import type { PoolClient } from 'pg';
import type { AuditInput, DecisionRecord, PolicyRecord, ShadowDecisionRecord, ShadowPolicyRecord } from '../../core/types.js';
import { shadowMoved, toShadowPolicy, toShadowPair, shadowDecisionParams, SHADOW_PAIRS_SQL } from '../rows.js';

import { PgDb, POLICY_LOCK_CLASS } from './db.js';
import { appendInTx } from './audit.js';

export async function shadowMatches(db: PgDb, c: PoolClient, ifShadow: string | undefined): Promise<void> {
  // serialised with every other policy change, so the compare and the change are one step
  await db.lockStep(c, POLICY_LOCK_CLASS);
  if (ifShadow === undefined) return;
  const r = await c.query('SELECT version FROM policy_shadow WHERE id = 1');
  const current = (r.rows[0]?.version as string | undefined) ?? null;
  if (current !== ifShadow) throw shadowMoved(ifShadow, current);
}

export async function putShadowPolicy(db: PgDb, policy: PolicyRecord, audit: AuditInput, options: { ifShadow?: string } = {}): Promise<void> {
  await db.tx(async (c) => {
    await shadowMatches(db, c, options.ifShadow);
    await c.query('INSERT INTO policies (version, text, created_at, created_by) VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING', [
      policy.version, policy.text, policy.createdAt, policy.createdBy,
    ]);
    await c.query(
      'INSERT INTO policy_shadow (id, version, set_at, set_by) VALUES (1, $1, $2, $3) ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, set_at = EXCLUDED.set_at, set_by = EXCLUDED.set_by',
      [policy.version, policy.createdAt, policy.createdBy],
    );
    await appendInTx(db, c, [audit]);
  });
}

export async function getShadowPolicy(db: PgDb): Promise<ShadowPolicyRecord | null> {
  const r = await db.row('SELECT p.version, p.text, s.set_at, s.set_by FROM policy_shadow s JOIN policies p ON p.version = s.version WHERE s.id = 1');
  return r ? toShadowPolicy(r) : null;
}

export async function dropShadowPolicy(db: PgDb, audit: AuditInput, options: { ifShadow?: string } = {}): Promise<boolean> {
  return db.tx(async (c) => {
    await shadowMatches(db, c, options.ifShadow);
    if ((await c.query('DELETE FROM policy_shadow WHERE id = 1')).rowCount !== 1) return false;
    await appendInTx(db, c, [audit]);
    return true;
  });
}

export async function recordShadowDecisions(db: PgDb, rows: ShadowDecisionRecord[]): Promise<void> {
  if (rows.length === 0) return;
  const params: unknown[] = [];
  const values = rows.map((r, i) => {
    params.push(...shadowDecisionParams(r));
    const b = i * 6;
    return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6})`;
  });
  await db.rows(
    `INSERT INTO shadow_decisions (decision_id, candidate_version, decision, reasons, policies, created_at) VALUES ${values.join(', ')} ON CONFLICT (decision_id) DO NOTHING`,
    params,
  );
}

export async function listShadowDecisions(db: PgDb, filter: { candidateVersion: string; since?: number; limit: number }): Promise<Array<{ shadow: ShadowDecisionRecord; live: DecisionRecord }>> {
  const sql = SHADOW_PAIRS_SQL.replace('{1}', '$1').replace('{2}', '$2').replace('{3}', '$3');
  return (await db.rows(sql, [filter.candidateVersion, filter.since ?? 0, filter.limit])).map(toShadowPair);
}
