import type { WritConfig } from '../service/config.js';
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
  const v = env.WRIT_OPERATOR_TOKEN_TTL?.trim();
  if (v === undefined || v === '') return {};
  const m = /^(\d{1,10})([smhd]?)$/.exec(v);
  const seconds = m ? Number(m[1]) * UNIT_SECONDS[m[2] || 's']! : NaN;
  if (!(seconds >= 60 && seconds <= MAX_OPERATOR_TOKEN_TTL_SECONDS)) {
    throw new UsageError('WRIT_OPERATOR_TOKEN_TTL must be a duration from 60s to 3650d: seconds, or a number with s, m, h or d (e.g. 90d)');
  }
  return { operatorTokenTtlSeconds: seconds };
}
