// Agents: registration, lookup, disabling (which revokes the tasks they hold).
// Part of the SQLite store (the Store interface: src/store/store.ts); postgres/agents.ts is its twin.
import { ConflictError } from '../../core/errors.js';
import type { AgentRecord, AuditInput } from '../../core/types.js';
import { toAgent } from '../rows.js';

import { SqliteDb, type Row } from './db.js';
import { appendInTx } from './audit.js';
import { endInTx } from './tasks.js';

export async function createAgent(db: SqliteDb, agent: AgentRecord, audit: AuditInput): Promise<void> {
  await db.write(() => {
    const exists = db.stmt('SELECT 1 FROM agents WHERE id = ?').get(agent.id);
    if (exists) throw new ConflictError(`agent \`${agent.id}\` already exists`, 'agent_exists');
    db.stmt('INSERT INTO agents (id, name, jwks, labels, status, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
      agent.id, agent.name, JSON.stringify(agent.jwks), JSON.stringify(agent.labels), agent.status, agent.createdAt, agent.createdBy,
    );
    appendInTx(db, [audit]);
  });
}

export async function getAgent(db: SqliteDb, id: string): Promise<AgentRecord | null> {
  const row = db.guard(() => db.stmt('SELECT * FROM agents WHERE id = ?').get(id) as Row | undefined);
  return row ? toAgent(row) : null;
}

export async function listAgents(db: SqliteDb): Promise<AgentRecord[]> {
  return db.guard(() => (db.stmt('SELECT * FROM agents ORDER BY created_at, id').all() as Row[]).map((r) => toAgent(r)));
}

export async function disableAgent(db: SqliteDb, id: string, now: number, audit: AuditInput): Promise<{ revokedTaskIds: string[] } | null> {
  return db.write(() => {
    const row = db.stmt('SELECT status FROM agents WHERE id = ?').get(id) as { status: string } | undefined;
    if (!row) return null;
    db.stmt(`UPDATE agents SET status = 'disabled' WHERE id = ?`).run(id);
    appendInTx(db, [audit]);
    const held = db.stmt(`SELECT id FROM tasks WHERE agent_id = ? AND status = 'active' ORDER BY created_at`).all(id) as { id: string }[];
    const revoked: string[] = [];
    for (const t of held) {
      revoked.push(...endInTx(db, t.id, 'revoked', now, { type: 'task.revoked', actor: audit.actor, taskId: t.id, agentId: id, data: { reason: 'agent_disabled' } }));
    }
    return { revokedTaskIds: revoked };
  });
}
