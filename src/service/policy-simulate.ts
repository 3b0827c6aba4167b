import type { AgentRecord, AuditEntry, Reason, TaskRecord } from '../core/types.js';
import { MASKED } from '../audit/mask-arguments.js';
import { decideOnFacts, type PolicyOutcome } from '../policy/decide-offline.js';
import type { LoadedPolicySet, PolicyEngine } from '../policy/engine.js';
import type { Store } from '../store/store.js';
import { lineageOf } from '../tasks/delegation.js';

/** Reasons policy gives (or that depend on what the policy reads): a replay can change them. */
export const POLICY_REASONS = new Set(['policy_forbids', 'no_policy_permits', 'policy_error', 'arguments_too_complex', 'ambiguous_arguments', 'argument_type_mismatch']);

export interface SimulateOptions {
  /** only decisions recorded at or after this time (ms since the epoch) */
  sinceMs: number;
  /** the most decisions to replay (the earliest since `sinceMs` first) */
  limit: number;
  /** examples listed per kind */
  examples: number;
}

interface Example {
  decision_id: string;
  tool: string;
  at: string;
  recorded: { decision: string; reasons: string[] };
  candidate?: { decision: string; reasons: string[]; policies: string[] };
  why?: string;
}

export interface SimulationReport {
  candidate_version: string;
  since: string;
  /** decisions looked at */
  considered: number;
  /** decided before policy (scope, budget, ...): no policy can change them */
  decided_before_policy: number;
  replayed: number;
  unchanged: number;
  changed: number;
  /** the changes counted by tool and by `recorded -> candidate (reason)` */
  changes: { by_tool: Record<string, number>; by_reason: Record<string, number>; examples: Example[] };
  not_replayed: { count: number; by_reason: Record<string, number>; examples: Example[] };
  /** more decisions were recorded since `since` than `limit` */
  truncated: boolean;
}

export interface SimulateDeps {
  store: Store;
  engine: PolicyEngine;
  toolLabels: (tool: string) => Promise<string[]>;
}

/**
 * Replays recorded decisions under a candidate set: for each `decision` audit entry
 * since `sinceMs`, the request is rebuilt from what was recorded (tool, audience,
 * resource, destination, the arguments as audit kept them, the time) and from the
 * agent and task as they are now, and decided with `decideOnFacts`. A request is not
 * replayed when what the candidate would read was not recorded: its arguments (audit
 * kept only their digest, or masked a value the candidate reads), the owner's presence,
 * an approval, or an agent or task since deleted. Each is counted with its reason.
 *
 * Approximations, said in the README: the agent's labels, the tool's labels and the
 * task's usage are today's, not the decision's.
 */
export async function simulatePolicy(deps: SimulateDeps, set: LoadedPolicySet, opts: SimulateOptions): Promise<SimulationReport> {
  const report: SimulationReport = {
    candidate_version: set.version,
    since: new Date(opts.sinceMs).toISOString(),
    considered: 0,
    decided_before_policy: 0,
    replayed: 0,
    unchanged: 0,
    changed: 0,
    changes: { by_tool: {}, by_reason: {}, examples: [] },
    not_replayed: { count: 0, by_reason: {}, examples: [] },
    truncated: false,
  };
  const agents = new Map<string, AgentRecord | null>();
  const tasks = new Map<string, TaskRecord | null>();
  const labels = new Map<string, string[]>();
  const bump = (o: Record<string, number>, k: string) => (o[k] = (o[k] ?? 0) + 1);

  const skip = (e: AuditEntry, code: string, why: string) => {
    report.not_replayed.count += 1;
    bump(report.not_replayed.by_reason, code);
    if (report.not_replayed.examples.length < opts.examples) report.not_replayed.examples.push({ ...exampleOf(e), why });
  };

  for (let after = await seqBefore(deps.store, opts.sinceMs - CLOCK_SKEW_MS), done = false; !done; ) {
    const page = await deps.store.listAudit({ type: 'decision', after, limit: 1000 });
    if (page.length < 1000) done = true;
    if (page.length > 0) after = page[page.length - 1]!.seq;
    for (const e of page) {
      if (e.ts < opts.sinceMs) continue;
      if (report.considered >= opts.limit) {
        report.truncated = true;
        done = true;
        break;
      }
      report.considered += 1;
      const d = e.data as Record<string, unknown>;
      const recorded = String(d.decision);
      const reasons = Array.isArray(d.reasons) ? (d.reasons as Reason[]).map((r) => r?.code).filter((c): c is string => typeof c === 'string') : [];
      if (recorded === 'deny' && !reasons.some((c) => POLICY_REASONS.has(c))) {
        report.decided_before_policy += 1;
        continue;
      }
      if (recorded === 'approval_required' || d.approval_id !== undefined) {
        skip(e, 'approval', 'the decision went through an approval: a person\'s answer cannot be replayed');
        continue;
      }
      if (recorded !== 'allow' && recorded !== 'deny') {
        skip(e, 'unknown_decision', `the recorded decision \`${recorded}\` is not one this replay knows`);
        continue;
      }
      const args = d.arguments;
      if (set.readsArgs && (args === undefined || args === null || typeof args !== 'object' || Array.isArray(args))) {
        skip(e, 'arguments_not_recorded', 'the candidate reads arguments, and audit kept only their digest (WRIT_AUDIT_ARGS=digest)');
        continue;
      }
      const argsObject = (args ?? {}) as Record<string, unknown>;
      if (set.readsArgs) {
        const masked = maskedReadPath(argsObject, set);
        if (masked) {
          skip(e, 'arguments_masked', `the candidate reads \`${masked}\`, which audit masked`);
          continue;
        }
      }
      if (set.mentionsPresence) {
        skip(e, 'presence_not_recorded', 'the candidate reads `context.owner_present`, which decisions do not record');
        continue;
      }
      const agentId = e.agentId ?? '';
      const taskId = e.taskId ?? '';
      if (!agents.has(agentId)) agents.set(agentId, await deps.store.getAgent(agentId));
      if (!tasks.has(taskId)) tasks.set(taskId, await deps.store.getTask(taskId));
      const agent = agents.get(agentId);
      const task = tasks.get(taskId);
      if (!agent || !task) {
        skip(e, 'gone', `the ${agent ? 'task' : 'agent'} is no longer stored`);
        continue;
      }
      const tool = String(d.tool);
      if (!labels.has(tool)) labels.set(tool, await deps.toolLabels(tool));
      const lineage = await lineageOf(deps.store, task);
      let outcome: PolicyOutcome;
      try {
        outcome = decideOnFacts(deps.engine, set, {
          agent, task, root: lineage.root, chain: lineage.chain, now: e.ts, toolLabels: labels.get(tool),
          argsDigest: String(d.args_digest ?? ''),
          breakGlass: reasons.includes('break_glass'),
          action: {
            tool, arguments: argsObject, audience: String(d.audience ?? ''),
            ...(typeof d.resource === 'string' ? { resource: d.resource } : {}),
            ...(typeof d.destination === 'string' ? { destination: d.destination } : {}),
          },
        });
      } catch (err) {
        skip(e, 'replay_failed', `the replay failed: ${String((err as Error)?.message ?? err).slice(0, 200)}`);
        continue;
      }
      report.replayed += 1;
      if (outcome.decision === recorded) {
        report.unchanged += 1;
        continue;
      }
      report.changed += 1;
      bump(report.changes.by_tool, tool);
      bump(report.changes.by_reason, `${recorded} -> ${outcome.decision}${outcome.reasons[0] ? ` (${outcome.reasons[0].code})` : ''}`);
      if (report.changes.examples.length < opts.examples) {
        report.changes.examples.push({ ...exampleOf(e), candidate: { decision: outcome.decision, reasons: outcome.reasons.map((r) => r.code), policies: outcome.policies } });
      }
    }
  }
  return report;
}

function exampleOf(e: AuditEntry): Example {
  const d = e.data as Record<string, unknown>;
  const reasons = Array.isArray(d.reasons) ? (d.reasons as Reason[]).map((r) => r?.code).filter((c): c is string => typeof c === 'string') : [];
  return { decision_id: e.decisionId ?? '', tool: String(d.tool), at: new Date(e.ts).toISOString(), recorded: { decision: String(d.decision), reasons } };
}

/** The first path the set reads whose recorded value was masked (or any masked path, when the set's reads are computed). */
function maskedReadPath(args: Record<string, unknown>, set: LoadedPolicySet): string | null {
  const reads = new Set<string>();
  let any = false;
  for (const r of [set.stringTagsRead, set.numericTagsRead]) {
    if (r === null) any = true;
    else if (r) for (const n of r) reads.add(n);
  }
  let found: string | null = null;
  const walk = (v: unknown, path: string, depth: number): void => {
    if (found || depth > 64) return;
    if (v !== null && typeof v === 'object') {
      for (const [k, x] of Array.isArray(v) ? v.map((x, i) => [String(i), x] as const) : Object.entries(v)) walk(x, path ? `${path}.${k}` : k, depth + 1);
      return;
    }
    // a masked value read by name, or under a name the set reads (a masked object is one leaf)
    if (v === MASKED && (any || reads.has(path) || [...reads].some((r) => r.startsWith(`${path}.`)))) found = path;
  };
  walk(args, '', 0);
  return found;
}

/** Entry times come from each instance's clock: the search starts this much earlier. */
const CLOCK_SKEW_MS = 5 * 60_000;

/**
 * A sequence number below every entry written at or after `ms`: a binary search over
 * the log (entries are appended in time order, up to clock skew), so a replay of the
 * last hour reads the last hour, not the whole log. About log2(size) single-row reads.
 */
export async function seqBefore(store: Store, ms: number): Promise<number> {
  const head = await store.auditHead();
  let lo = 0;
  let hi = head?.seq ?? 0;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const [e] = await store.listAudit({ after: mid, limit: 1 });
    if (!e || e.ts >= ms) hi = mid;
    else lo = e.seq;
  }
  return lo;
}
