import type { WritConfig } from '../service/config.js';
import { UsageError } from './args.js';

/**
 * `writ serve` settings for approvals, break-glass and presence from the environment
 * (README, Configuration). Unset variables keep the defaults.
 */
export function escalationConfigFromEnv(env: NodeJS.ProcessEnv): Partial<WritConfig> {
  const out: Partial<WritConfig> = {};
  const seconds = (name: string, key: 'approvalPendingTtlSeconds' | 'approvalApprovedTtlSeconds' | 'breakGlassMaxSeconds' | 'presenceMaxTtlSeconds') => {
    const v = env[name];
    if (v === undefined || v === '') return;
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`${name} must be a whole number of seconds >= 1`);
    out[key] = Number(v);
  };
  seconds('WRIT_APPROVAL_PENDING_TTL', 'approvalPendingTtlSeconds');
  seconds('WRIT_APPROVAL_APPROVED_TTL', 'approvalApprovedTtlSeconds');
  seconds('WRIT_BREAK_GLASS_MAX_SECONDS', 'breakGlassMaxSeconds');
  seconds('WRIT_PRESENCE_MAX_TTL', 'presenceMaxTtlSeconds');
  const confirm = env.WRIT_BREAK_GLASS_CONFIRM;
  if (confirm !== undefined && confirm !== '') {
    if (!['1', '0', 'true', 'false'].includes(confirm)) throw new UsageError('WRIT_BREAK_GLASS_CONFIRM is 1 or 0');
    out.breakGlassRequiresConfirmation = confirm === '1' || confirm === 'true';
  }
  const hook = env.WRIT_BREAK_GLASS_WEBHOOK_URL;
  if (hook) {
    if (!/^https?:\/\//.test(hook)) throw new UsageError('WRIT_BREAK_GLASS_WEBHOOK_URL must be an http(s) URL');
    out.breakGlassWebhookUrl = hook;
  }
  return out;
}
