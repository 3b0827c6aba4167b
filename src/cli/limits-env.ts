import { availableParallelism } from 'node:os';
import type { WritConfig } from '../service/config.js';
import { UsageError } from './args.js';

/**
 * `MAX/SECONDS` (e.g. `1000/10`): at most MAX counted events per window of SECONDS.
 * Used by `WRIT_FAILURE_LIMIT` (failed requests per client address without a valid
 * credential), `WRIT_CREDENTIAL_FAILURE_LIMIT` (per valid credential) and
 * `WRIT_TASK_REFUSAL_LIMIT` (denied or approval-requiring answers per task). None can
 * be switched off.
 */
export function windowLimitFromEnv(name: string, value: string | undefined): { max: number; windowMs: number } | undefined {
  if (!value) return undefined;
  const m = /^(\d+)\/(\d+)$/.exec(value.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new UsageError(`${name} must be MAX/SECONDS, e.g. 1000/10`);
  return { max: Number(m[1]), windowMs: Number(m[2]) * 1000 };
}

/**
 * `WRIT_POLICY_WORKERS=auto` (the default of `writ serve`): one Cedar worker thread when the
 * machine has a second core, none on one. On two cores that about doubles decisions/s
 * under load (issue 12: Cedar on the second core) for a hop of tens of microseconds at one
 * request in flight.
 */
export function autoPolicyWorkers(): number {
  return availableParallelism() >= 2 ? 1 : 0;
}

/** The request limits of `writ serve` (README, Configuration; docs/security.md, Limits). Unset keeps the defaults. */
export function limitsConfigFromEnv(env: NodeJS.ProcessEnv): Partial<WritConfig> {
  const out: Partial<WritConfig> = {};
  const count = (name: string, key: 'approvalOpenMaxPerTask' | 'approvalOpenMaxPerAgent' | 'visibleToolsMax') => {
    const v = env[name];
    if (v === undefined || v === '') return;
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`${name} must be a whole number >= 1`);
    out[key] = Number(v);
  };
  count('WRIT_APPROVAL_OPEN_MAX_PER_TASK', 'approvalOpenMaxPerTask');
  count('WRIT_APPROVAL_OPEN_MAX_PER_AGENT', 'approvalOpenMaxPerAgent');
  count('WRIT_VISIBLE_TOOLS_MAX', 'visibleToolsMax');
  const nonces = env.WRIT_DPOP_NONCES;
  if (nonces !== undefined && nonces !== '') {
    if (nonces !== '0' && nonces !== '1') throw new UsageError('WRIT_DPOP_NONCES must be 0 or 1');
    out.dpopNonces = nonces === '1';
  }
  if (out.visibleToolsMax !== undefined && out.visibleToolsMax > 10_000) throw new UsageError('WRIT_VISIBLE_TOOLS_MAX is at most 10000');
  const workers = env.WRIT_POLICY_WORKERS;
  if (workers === 'auto') out.policyWorkers = autoPolicyWorkers();
  else if (workers !== undefined && workers !== '') {
    if (!/^\d+$/.test(workers) || Number(workers) > 64) throw new UsageError('WRIT_POLICY_WORKERS must be `auto` or a whole number from 0 to 64');
    out.policyWorkers = Number(workers);
  }
  const workerTimeout = env.WRIT_POLICY_WORKER_TIMEOUT_MS;
  if (workerTimeout !== undefined && workerTimeout !== '') {
    if (!/^\d+$/.test(workerTimeout) || Number(workerTimeout) < 1) throw new UsageError('WRIT_POLICY_WORKER_TIMEOUT_MS must be a whole number >= 1');
    out.policyWorkerTimeoutMs = Number(workerTimeout);
  }
  const refusals = windowLimitFromEnv('WRIT_TASK_REFUSAL_LIMIT', env.WRIT_TASK_REFUSAL_LIMIT);
  if (refusals) out.taskRefusalLimit = refusals;
  const visible = windowLimitFromEnv('WRIT_VISIBLE_TOOLS_LIMIT', env.WRIT_VISIBLE_TOOLS_LIMIT);
  if (visible) out.visibleToolsLimit = visible;
  return out;
}
