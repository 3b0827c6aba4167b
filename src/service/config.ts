import { MAX_ACTION_TOKEN_TTL_SECONDS, MAX_TASK_TOKEN_TTL_SECONDS } from '../tokens/token-types.js';

export interface WritConfig {
  /** the `iss` of every token Writ signs, and the base URL of its endpoints */
  issuer: string;
  /** lifetime of task tokens (capped at 900 s and at the task's own end) */
  taskTokenTtlSeconds: number;
  /** lifetime of action tokens (capped at 60 s) */
  actionTokenTtlSeconds: number;
  /** the longest task an operator may create */
  maxTaskTtlSeconds: number;
  /** the largest action budget of one task */
  maxTaskActions: number;
  /** how often active tasks past their expiry are marked expired (they are refused at once either way) */
  expirySweepMs: number;
}

export const DEFAULT_CONFIG: Omit<WritConfig, 'issuer'> = {
  taskTokenTtlSeconds: 600,
  actionTokenTtlSeconds: 30,
  maxTaskTtlSeconds: 24 * 3600,
  maxTaskActions: 100_000,
  expirySweepMs: 5000,
};

export function resolveConfig(partial: Partial<WritConfig> & { issuer: string }): WritConfig {
  const c = { ...DEFAULT_CONFIG, ...partial };
  if (!(c.taskTokenTtlSeconds > 0 && c.taskTokenTtlSeconds <= MAX_TASK_TOKEN_TTL_SECONDS)) {
    throw new TypeError(`taskTokenTtlSeconds must be in 1..${MAX_TASK_TOKEN_TTL_SECONDS}`);
  }
  if (!(c.actionTokenTtlSeconds > 0 && c.actionTokenTtlSeconds <= MAX_ACTION_TOKEN_TTL_SECONDS)) {
    throw new TypeError(`actionTokenTtlSeconds must be in 1..${MAX_ACTION_TOKEN_TTL_SECONDS}`);
  }
  c.issuer = c.issuer.replace(/\/+$/, '');
  return c;
}
