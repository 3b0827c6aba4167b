// Agents: registration, lookup, disabling (which revokes the tasks they hold).
// Part of the PostgreSQL store (the Store interface: src/store/store.ts); sqlite/agents.ts is its twin.
import { ConflictError } from '../../core/errors.js';
import type { AgentRecord, AuditInput } from '../../core/types.js';
import { toAgent } from '../rows.js';

import { PgDb } from './db.js';
import { appendInTx } from './audit.js';
import { endInTx } from './tasks.js';

export async function createAgent(db: PgDb, agent: AgentRecord, audit: AuditInput): Promise<void> {
  await db.tx(async (c) => {
    const r = await c.query(
      'INSERT INTO agents (id, name, jwks, labels, status, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING',
      [agent.id, agent.name, JSON.stringify(agent.jwks), JSON.stringify(agent.labels), agent.status, agent.createdAt, agent.createdBy],
    );
    if (r.rowCount !== 1) throw new ConflictError(`agent \`${agent.id}\` already exists`, 'agent_exists');
    await appendInTx(db, c, [audit]);
  });
}

export async function getAgent(db: PgDb, id: string): Promise<AgentRecord | null> {
  const r = await db.row('SELECT * FROM agents WHERE id = $1', [id]);
  return r ? toAgent(r) : null;
}

export async function listAgents(db: PgDb): Promise<AgentRecord[]> {
  return (await db.rows('SELECT * FROM agents ORDER BY created_at, id')).map((r) => toAgent(r));
}

export async function disableAgent(db: PgDb, id: string, now: number, audit: AuditInput): Promise<{ revokedTaskIds: string[] } | null> {
  return db.tx(async (c) => {
    const r = await c.query(`UPDATE agents SET status = 'disabled' WHERE id = $1`, [id]);
    if (r.rowCount !== 1) return null;
    const audits: AuditInput[] = [audit];
    const held = (await c.query(`SELECT id FROM tasks WHERE agent_id = $1 AND status = 'active' ORDER BY created_at, id`, [id])).rows as { id: string }[];
    const revoked: string[] = [];
    for (const t of held) {
      const ended = await endInTx(db, c, t.id, 'revoked', now, {
        type: 'task.revoked',
        actor: audit.actor,
        taskId: t.id,
        agentId: id,
        data: { reason: 'agent_disabled' },
      });
      revoked.push(...ended.ids);
      audits.push(...ended.audits);
    }
    await appendInTx(db, c, audits);
    return { revokedTaskIds: revoked };
  });
}
