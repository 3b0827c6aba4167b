// The audit Merkle tree's stored subtree hashes and the signed checkpoints over it.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/audit-tree.ts is its twin.
import { toAuditCheckpoint } from '../rows.js';
import { treeNodeKey, type AuditCheckpointRecord, type AuditTreeNode } from '../store.js';

import { SqliteDb, type Row } from './db.js';

export async function auditTreeSize(db: SqliteDb): Promise<number> {
  const row = db.guard(() => db.stmt('SELECT max(idx) AS m FROM audit_tree WHERE level = 0').get() as { m: number | null });
  return row.m === null ? 0 : Number(row.m) + 1;
}

export async function putAuditTreeNodes(db: SqliteDb, nodes: AuditTreeNode[]): Promise<void> {
  if (nodes.length === 0) return;
  await db.write(() => {
    const insert = db.stmt('INSERT INTO audit_tree (level, idx, hash) VALUES (?, ?, ?) ON CONFLICT (level, idx) DO NOTHING');
    for (const n of nodes) insert.run(n.level, n.index, n.hash);
  });
}

export async function getAuditTreeNodes(db: SqliteDb, keys: Array<{ level: number; index: number }>): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const get = db.stmt('SELECT hash FROM audit_tree WHERE level = ? AND idx = ?');
  db.guard(() => {
    for (const k of keys) {
      const row = get.get(k.level, k.index) as { hash: Buffer } | undefined;
      if (row) out.set(treeNodeKey(k.level, k.index), Buffer.from(row.hash));
    }
  });
  return out;
}

export async function putAuditCheckpoint(db: SqliteDb, c: AuditCheckpointRecord): Promise<void> {
  await db.write(() => {
    db.stmt('INSERT INTO audit_checkpoints (size, note, created_at) VALUES (?, ?, ?) ON CONFLICT (size) DO NOTHING').run(c.size, c.note, c.createdAt);
  });
}

export async function listAuditCheckpoints(db: SqliteDb, afterSize: number, limit: number): Promise<AuditCheckpointRecord[]> {
  const rows = db.guard(
    () => db.stmt('SELECT size, note, created_at FROM audit_checkpoints WHERE size > ? ORDER BY size ASC LIMIT ?').all(afterSize, Math.min(Math.max(limit, 1), 1000)) as Row[],
  );
  return rows.map(toAuditCheckpoint);
}

export async function latestAuditCheckpoint(db: SqliteDb): Promise<AuditCheckpointRecord | null> {
  const r = db.guard(() => db.stmt('SELECT size, note, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1').get() as Row | undefined);
  return r ? toAuditCheckpoint(r) : null;
}
