// Operator-set tool labels.
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/tool-labels.ts is its twin.
import type { AuditInput, ToolLabelsRecord } from '../../core/types.js';
import { toToolLabels } from '../rows.js';

import { PgDb } from './db.js';
import { appendInTx } from './audit.js';

export async function putToolLabels(db: PgDb, record: ToolLabelsRecord, audit: AuditInput): Promise<void> {
  await db.tx(async (c) => {
    if (record.labels.length === 0) await c.query('DELETE FROM tool_labels WHERE pattern = $1', [record.pattern]);
    else {
      await c.query(
        `INSERT INTO tool_labels (pattern, labels, updated_at, updated_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (pattern) DO UPDATE SET labels = excluded.labels, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
        [record.pattern, JSON.stringify(record.labels), record.updatedAt, record.updatedBy],
      );
    }
    await appendInTx(db, c, [audit]);
  });
}

export async function listToolLabels(db: PgDb): Promise<ToolLabelsRecord[]> {
  return (await db.rows('SELECT * FROM tool_labels ORDER BY pattern')).map(toToolLabels);
}
