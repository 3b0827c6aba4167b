import type { AgentRecord, OperatorRecord, TaskRecord } from '../../src/core/types.js';
import { Writ } from '../../src/app/writ.js';
import type { StoreSpec } from './backend.js';
import { openSpec } from './backend.js';
import { BENCH_ISSUER, clientAssertion, CLIENT_ASSERTION_TYPE, makeAgentKey, type BenchAgentKey } from './identity.js';

export const BOOT_TOKEN = 'wop_KTph0Gemb08hP9PS6xHVS17XyeRclgY_07Uz53LooJM';

/** Actions one task is allowed to take before the benchmark moves to the next. */
export const ACTIONS_PER_TASK = 90_000;
export const TASK_MAX_ACTIONS = 100_000;

export interface InProcess {
  writ: Writ;
  admin: OperatorRecord;
  close: () => Promise<void>;
}

/** A Writ instance in this process on `spec`, with `policies` as the active set. */
export async function startInProcess(spec: StoreSpec, policies: string): Promise<InProcess> {
  const store = await openSpec(spec);
  const writ = new Writ(store, { issuer: BENCH_ISSUER, maxTaskActions: TASK_MAX_ACTIONS });
  await writ.init();
  await writ.identity.bootstrapAdmin(BOOT_TOKEN);
  const admin = await writ.identity.authenticateOperator(BOOT_TOKEN);
  await writ.policy.putPolicy('system', policies);
  return { writ, admin, close: () => writ.close() };
}

export interface BenchAgent {
  id: string;
  key: BenchAgentKey;
}

export async function registerAgent(ip: InProcess, a: { id: string; name: string; labels: string[] }, key: BenchAgentKey = makeAgentKey()): Promise<BenchAgent> {
  await ip.writ.identity.registerAgent(ip.admin, { id: a.id, name: a.name, labels: a.labels, jwks: { keys: [key.publicJwk] } });
  return { id: a.id, key };
}

export type AuthCtx = { task: TaskRecord; agent: AgentRecord };

/**
 * Enough tasks for `totalActions` allowed actions (each task takes at most
 * ACTIONS_PER_TASK), loaded as the context `authorize` takes.
 */
export async function makeTasks(
  ip: InProcess,
  agentId: string,
  scope: { tools: string[]; resources: string[]; destinations: string[] },
  totalActions: number,
): Promise<AuthCtx[]> {
  const n = Math.max(1, Math.ceil(totalActions / ACTIONS_PER_TASK));
  const out: AuthCtx[] = [];
  for (let i = 0; i < n; i++) {
    const t = await ip.writ.tasks.createTask(ip.admin, { agent_id: agentId, intent: 'benchmark: file the weekly billing report', scope, ttl_seconds: 3600, max_actions: TASK_MAX_ACTIONS });
    const loaded = await ip.writ.store.getTaskWithAgent(t.id);
    if (!loaded) throw new Error('the task just created cannot be read');
    out.push(loaded);
  }
  return out;
}

/** A task token through the real grant (client assertion). */
export async function issueTaskToken(ip: InProcess, agent: BenchAgent, taskId: string): Promise<string> {
  const r = await ip.writ.tokens.issueTaskToken({
    grant_type: 'client_credentials',
    client_assertion_type: CLIENT_ASSERTION_TYPE,
    client_assertion: await clientAssertion(agent.id, agent.key),
    task_id: taskId,
  });
  return r.access_token;
}
