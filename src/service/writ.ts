import type { ApprovalService } from '../approvals/service.js';
import type { BreakGlassService } from '../breakglass/service.js';
import type { Clock } from '../core/clock.js';
import type { Store } from '../store/store.js';
import type { PresenceService } from '../tasks/presence.js';
import type { AuditService } from './audit.js';
import type { AuthorizeService } from './authz.js';
import type { WritConfig } from './config.js';
import type { IdentityService } from './identity.js';
import type { WritMetrics } from './metrics.js';
import type { PolicyService } from './policy.js';
import type { TaskService } from './tasks.js';
import type { TokenService } from './tokens.js';

export type { AuthorizeResult } from '../authorize/result.js';
export type { TaskPrincipal } from '../tokens/token-types.js';
export type { CreateTaskInput } from './tasks.js';
export type { RegisterAgentInput } from './identity.js';
export type { PolicyChange } from './policy.js';

/**
 * What the HTTP server, the gateway and the CLI see of a running Writ: one service per
 * aggregate (`writ.<service>.<method>`), over one store, clock and configuration. The
 * wiring that builds it is src/app/writ.ts, which nothing but the CLI imports.
 */
export interface Writ {
  readonly store: Store;
  readonly config: WritConfig;
  readonly clock: Clock;
  readonly metrics: WritMetrics;
  readonly identity: IdentityService;
  readonly tokens: TokenService;
  readonly tasks: TaskService;
  readonly authz: AuthorizeService;
  readonly approvals: ApprovalService;
  readonly breakGlass: BreakGlassService;
  readonly presence: PresenceService;
  readonly policy: PolicyService;
  readonly audit: AuditService;
  ready(): Promise<{ store: boolean; keys: boolean; policy: boolean }>;
}
