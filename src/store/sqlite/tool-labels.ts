// Operator-set tool labels.
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/tool-labels.ts is its twin.
import type { AuditInput, ToolLabelsRecord } from '../../core/types.js';
import { toToolLabels } from '../rows.js';

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';

export async function putToolLabels(db: SqliteDb, record: ToolLabelsRecord, audit: AuditInput): Promise<void> {
  await db.write(() => {
    if (record.labels.length === 0) db.stmt('DELETE FROM tool_labels WHERE pattern = ?').run(record.pattern);
    else {
      db.stmt(
        `INSERT INTO tool_labels (pattern, labels, updated_at, updated_by) VALUES (?, ?, ?, ?)
         ON CONFLICT (pattern) DO UPDATE SET labels = excluded.labels, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
      ).run(record.pattern, JSON.stringify(record.labels), record.updatedAt, record.updatedBy);
    }
    appendInTx(db, [audit]);
  });
}

export async function listToolLabels(db: SqliteDb): Promise<ToolLabelsRecord[]> {
  return db.guard(() => (db.stmt('SELECT * FROM tool_labels ORDER BY pattern').all() as Row[]).map(toToolLabels));
}
