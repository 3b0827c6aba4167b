import type { WritConfig } from '../service/config.js';
import { UsageError } from './args.js';

/**
 * `writ serve` settings for delegation and federated identity from the environment
 * (README, Configuration). Unset variables keep the defaults.
 */
export function federationConfigFromEnv(env: NodeJS.ProcessEnv): Partial<WritConfig> {
  const out: Partial<WritConfig> = {};
  const whole = (name: string, key: 'maxDelegationDepth' | 'jwksTimeoutMs' | 'jwksCooldownMs' | 'jwksCacheMaxAgeMs' | 'maxSubjectTokenLifetimeSeconds', min: number) => {
    const v = env[name];
    if (v === undefined || v === '') return;
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) throw new UsageError(`${name} must be a whole number >= ${min}`);
    out[key] = Number(v);
  };
  whole('WRIT_MAX_DELEGATION_DEPTH', 'maxDelegationDepth', 0);
  whole('WRIT_JWKS_TIMEOUT_MS', 'jwksTimeoutMs', 1);
  whole('WRIT_JWKS_COOLDOWN_MS', 'jwksCooldownMs', 0);
  whole('WRIT_JWKS_CACHE_MAX_AGE_MS', 'jwksCacheMaxAgeMs', 0);
  whole('WRIT_MAX_SUBJECT_TOKEN_LIFETIME', 'maxSubjectTokenLifetimeSeconds', 1);
  return out;
}
