import type { WritConfig } from '../service/config.js';
import { MAX_TASK_TOKEN_TTL_SECONDS } from '../tokens/token-types.js';
import { UsageError } from './args.js';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };
/** the longest operator token lifetime accepted: ten years */
const MAX_OPERATOR_TOKEN_TTL_SECONDS = 3650 * 86_400;

/**
 * `WRIT_OPERATOR_TOKEN_TTL` (README, Configuration): how long an operator token works
 * after it is issued or rotated. Whole seconds, or a number with `s`, `m`, `h` or `d`
 * (`90d`, the default). It cannot be switched off.
 */
export function operatorConfigFromEnv(env: NodeJS.ProcessEnv): Partial<WritConfig> {
  const out: Partial<WritConfig> = { ...taskTokenTtlFromEnv(env.WRIT_TASK_TOKEN_TTL) };
  const v = env.WRIT_OPERATOR_TOKEN_TTL?.trim();
  if (v === undefined || v === '') return out;
  const m = /^(\d{1,10})([smhd]?)$/.exec(v);
  const seconds = m ? Number(m[1]) * UNIT_SECONDS[m[2] || 's']! : NaN;
  if (!(seconds >= 60 && seconds <= MAX_OPERATOR_TOKEN_TTL_SECONDS)) {
    throw new UsageError('WRIT_OPERATOR_TOKEN_TTL must be a duration from 60s to 3650d: seconds, or a number with s, m, h or d (e.g. 90d)');
  }
  return { ...out, operatorTokenTtlSeconds: seconds };
}

/**
 * `WRIT_TASK_TOKEN_TTL`: the longest a task token lives (it never outlives its task),
 * whole seconds from 1 to 900 (default 600). Agents renew before it ends (the SDK's
 * agent client and `writ gateway mcp --agent-key` do).
 */
export function taskTokenTtlFromEnv(value: string | undefined): Partial<WritConfig> {
  const v = value?.trim();
  if (v === undefined || v === '') return {};
  const n = Number(v);
  if (!/^\d+$/.test(v) || !(n >= 1 && n <= MAX_TASK_TOKEN_TTL_SECONDS)) throw new UsageError(`WRIT_TASK_TOKEN_TTL must be a whole number of seconds from 1 to ${MAX_TASK_TOKEN_TTL_SECONDS}`);
  return { taskTokenTtlSeconds: n };
}
