import { newId } from '../../src/core/ids.js';
import type { DecisionRecord, TaskRecord } from '../../src/core/types.js';
import type { DecisionWrite, Store } from '../../src/store/store.js';
import { openSpec, type StoreSpec } from './backend.js';

/**
 * Commit scaling without HTTP or Cedar: decision batches written by one store instance,
 * then by two on the same data at once, each with one batch in flight (as its group
 * commit has), every decision guarded on one of `tasks` shared by both (as in
 * http_two_instances). What two instances' commits cost each other (the audit chain
 * head's and the tasks' row locks, the flush) shows here without the CPU the rest of
 * a decision needs, which on a 2-core machine bounds the HTTP figure first.
 * Phases alternate one, two, one, two, … to spread drift over both.
 */
export async function storeCommitScaling(
  spec: StoreSpec,
  options: { phaseMs: number; rounds: number; batch: number; tasks: number },
): Promise<{ one_instance_commits_per_s: number; two_instances_commits_per_s: number; two_vs_one: number; batch: number }> {
  const a = await openSpec(spec);
  const b = await openSpec(spec);
  try {
    const now = Date.now();
    const agentId = `spiffe://bench.test/agent/commits-${newId('x')}`;
    await a.createAgent({ id: agentId, name: 'commit bench', jwks: { keys: [] }, labels: [], status: 'active', createdAt: now, createdBy: 'bench' }, { type: 'agent.created', actor: 'bench', data: {} });
    const tasks: TaskRecord[] = [];
    for (let i = 0; i < options.tasks; i++) {
      const id = newId('tsk');
      const t: TaskRecord = {
        id,
        agentId,
        owner: 'bench',
        intent: 'commit bench',
        scope: { tools: ['*'], resources: [], destinations: [] },
        status: 'active',
        createdAt: now,
        expiresAt: now + 3_600_000,
        endedAt: null,
        maxActions: 100_000_000,
        actionsUsed: 0,
        actionsReserved: 0,
        parentId: null,
        rootId: id,
        depth: 0,
      };
      await a.createTask(t, { type: 'task.created', actor: 'bench', taskId: id, data: {} });
      tasks.push(t);
    }
    let k = 0;
    const batch = (): DecisionWrite[] =>
      Array.from({ length: options.batch }, () => {
        const task = tasks[k++ % tasks.length]!;
        const d: DecisionRecord = {
          id: newId('dec'),
          taskId: task.id,
          agentId,
          tool: 'bench.tool',
          audience: 'https://tools.bench',
          resource: null,
          destination: null,
          argsDigest: 'digest',
          decision: 'allow',
          reasons: [],
          policies: ['p'],
          policyVersion: 'v',
          tokenJti: newId('jti'),
          tokenExpiresAt: Date.now() + 60_000,
          createdAt: Date.now(),
          outcome: null,
        };
        const audit = { type: 'decision.allow', actor: `agent:${agentId}`, taskId: task.id, agentId, decisionId: d.id, data: { tool: d.tool } };
        return { decision: d, audit, guard: { taskId: task.id }, fallback: () => ({ decision: { ...d, decision: 'deny' as const }, audit }) };
      });
    const loop = async (s: Store, ms: number) => {
      let n = 0;
      const end = performance.now() + ms;
      while (performance.now() < end) {
        await s.commitDecisions(batch(), Date.now());
        n += 1;
      }
      return n;
    };
    let one = 0;
    let two = 0;
    await loop(a, Math.min(200, options.phaseMs)); // warm-up: pools filled, statements planned
    for (let r = 0; r < options.rounds; r++) {
      one += await loop(a, options.phaseMs);
      const [x, y] = await Promise.all([loop(a, options.phaseMs), loop(b, options.phaseMs)]);
      two += x + y;
    }
    const seconds = (options.rounds * options.phaseMs) / 1000;
    const perS = (n: number) => Math.round((n / seconds) * 10) / 10;
    return {
      one_instance_commits_per_s: perS(one),
      two_instances_commits_per_s: perS(two),
      two_vs_one: one > 0 ? Math.round((two / one) * 100) / 100 : 0,
      batch: options.batch,
    };
  } finally {
    await a.close();
    await b.close();
  }
}
