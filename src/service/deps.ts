import type { Clock } from '../core/clock.js';
import type { Store } from '../store/store.js';
import type { WritConfig } from './config.js';

/** Where services record security events (a refused credential, a replay, a failed webhook); never blocks a refusal. */
export interface SecurityAudit {
  securityEvent(type: string, actor: string, data: Record<string, unknown>, ids?: { taskId?: string; agentId?: string; decisionId?: string }): Promise<void>;
}

/**
 * What every service of one aggregate is given, explicitly (issue 11 item 3): the store,
 * the clock, the resolved configuration and the audit log's security events.
 */
export interface ServiceDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly config: WritConfig;
  readonly audit: SecurityAudit;
}
