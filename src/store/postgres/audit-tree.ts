// The audit Merkle tree's stored subtree hashes and the signed checkpoints over it.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/audit-tree.ts is its twin.
import { toAuditCheckpoint } from '../rows.js';
import { treeNodeKey, type AuditCheckpointRecord, type AuditTreeNode } from '../store.js';

import { PgDb } from './db.js';

export async function auditTreeSize(db: PgDb): Promise<number> {
  const r = await db.row('SELECT max(idx) AS m FROM audit_tree WHERE level = 0');
  return r?.m === null || r?.m === undefined ? 0 : Number(r.m) + 1;
}

export async function putAuditTreeNodes(db: PgDb, nodes: AuditTreeNode[]): Promise<void> {
  if (nodes.length === 0) return;
  // One statement for the batch: unnest keeps it to a single round trip.
  await db.exec(
    'INSERT INTO audit_tree (level, idx, hash) SELECT * FROM unnest($1::int[], $2::bigint[], $3::bytea[]) ON CONFLICT (level, idx) DO NOTHING',
    [nodes.map((n) => n.level), nodes.map((n) => n.index), nodes.map((n) => n.hash)],
  );
}

export async function getAuditTreeNodes(db: PgDb, keys: Array<{ level: number; index: number }>): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  if (keys.length === 0) return out;
  const rows = await db.rows(
    'SELECT t.level, t.idx, t.hash FROM audit_tree t JOIN unnest($1::int[], $2::bigint[]) AS k(level, idx) ON t.level = k.level AND t.idx = k.idx',
    [keys.map((k) => k.level), keys.map((k) => k.index)],
  );
  for (const r of rows) out.set(treeNodeKey(Number(r.level), Number(r.idx)), r.hash as Buffer);
  return out;
}

export async function putAuditCheckpoint(db: PgDb, c: AuditCheckpointRecord): Promise<void> {
  await db.exec('INSERT INTO audit_checkpoints (size, note, created_at) VALUES ($1, $2, $3) ON CONFLICT (size) DO NOTHING', [c.size, c.note, c.createdAt]);
}

export async function listAuditCheckpoints(db: PgDb, afterSize: number, limit: number): Promise<AuditCheckpointRecord[]> {
  const rows = await db.rows('SELECT size, note, created_at FROM audit_checkpoints WHERE size > $1 ORDER BY size ASC LIMIT $2', [
    afterSize,
    Math.min(Math.max(limit, 1), 1000),
  ]);
  return rows.map(toAuditCheckpoint);
}

export async function latestAuditCheckpoint(db: PgDb): Promise<AuditCheckpointRecord | null> {
  const r = await db.row('SELECT size, note, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1');
  return r ? toAuditCheckpoint(r) : null;
}
