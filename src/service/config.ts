import type { AuditArgsMode, MaskRule } from '../audit/mask-arguments.js';
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
  /** the deepest delegated sub-task (a root task has depth 0) */
  maxDelegationDepth: number;
  /** federation: how long a trusted issuer's JWKS URL may take to answer before the exchange fails closed (503) */
  jwksTimeoutMs: number;
  /** federation: the least time between two JWKS refetches caused by an unknown `kid` */
  jwksCooldownMs: number;
  /** federation: how long a fetched JWKS is used before it is fetched again */
  jwksCacheMaxAgeMs: number;
  /** federation: the longest subject token accepted (`exp` - `iat`, or `exp` - now without `iat`) */
  maxSubjectTokenLifetimeSeconds: number;
  /** approvals: how long a pending approval waits for its reviews */
  approvalPendingTtlSeconds: number;
  /** approvals: how long an approved approval waits for the agent to read (use) it */
  approvalApprovedTtlSeconds: number;
  /** break-glass: the longest one may last, and the most time chained ones may add up to */
  breakGlassMaxSeconds: number;
  /** break-glass: a second admin must confirm before it takes effect */
  breakGlassRequiresConfirmation: boolean;
  /** break-glass: how long a start waits for its confirmation */
  breakGlassConfirmWindowSeconds: number;
  /** break-glass: called (POST JSON) at start and end; failures are audited and never block */
  breakGlassWebhookUrl: string | null;
  /** break-glass: how long the webhook may take */
  breakGlassWebhookTimeoutMs: number;
  /** presence: the longest lease one renewal gives */
  presenceMaxTtlSeconds: number;
  /** presence: the lease a task that requires presence starts with (its owner just created it) */
  presenceInitialTtlSeconds: number;
  /** policy: the largest estimated expression depth of one policy (src/policy/complexity.ts) */
  policyMaxDepth: number;
  /** policy: the most tokens one policy may have */
  policyMaxTokens: number;
  /** policy: how long the trial run of a new policy set in a worker may take before the set is refused */
  policyTrialTimeoutMs: number;
  /** approvals: the most open (pending or approved, unused) approvals one task may have; past it, 429 `approval_limit` */
  approvalOpenMaxPerTask: number;
  /** approvals: the most open approvals one agent may have over all its tasks */
  approvalOpenMaxPerAgent: number;
  /** authorize: denied or approval-requiring answers one task may get per window; past it, 429 `rate_limited` with Retry-After */
  taskRefusalLimit: { max: number; windowMs: number };
  /** `POST /v1/tools/visible`: the most tools one request may list (each costs a partial evaluation); past it, 400 `too_many_tools` */
  visibleToolsMax: number;
  /** `POST /v1/tools/visible`: requests one task may make per window; past it, 429 `rate_limited` with Retry-After */
  visibleToolsLimit: { max: number; windowMs: number };
  /** how long an operator token works after it is issued or rotated (WRIT_OPERATOR_TOKEN_TTL; default 90 days) */
  operatorTokenTtlSeconds: number;
  /** seals private signing keys at rest (WRIT_KEY_ENCRYPTION_KEY, at least 32 characters); unset: stored as plain JWK */
  keyEncryptionKey?: string;
  /** audit: what decision entries keep of the arguments (WRIT_AUDIT_ARGS: full, masked, digest) */
  auditArgs: AuditArgsMode;
  /** audit: paths masked per tool in `masked` mode (WRIT_AUDIT_MASK) */
  auditMaskRules: MaskRule[];
  /**
   * authorize: worker threads that run Cedar (WRIT_POLICY_WORKERS; 0, the default, runs it
   * on the main thread). A worker that fails or does not answer in `policyWorkerTimeoutMs`
   * fails the decision with 503 `policy_unavailable` and is replaced.
   */
  policyWorkers: number;
  /** (WRIT_POLICY_WORKER_TIMEOUT_MS, default 2000) */
  policyWorkerTimeoutMs: number;
  /** audit: how often a C2SP checkpoint of the Merkle tree is signed while entries arrive */
  checkpointIntervalMs: number;
  /** DPoP (RFC 9449 §8): every proof must carry a server nonce (WRIT_DPOP_NONCES=1; default off) */
  dpopNonces?: boolean;
}

export const DEFAULT_CONFIG: Omit<WritConfig, 'issuer'> = {
  taskTokenTtlSeconds: 600,
  actionTokenTtlSeconds: 30,
  maxTaskTtlSeconds: 24 * 3600,
  maxTaskActions: 100_000,
  expirySweepMs: 5000,
  maxDelegationDepth: 3,
  jwksTimeoutMs: 2000,
  jwksCooldownMs: 30_000,
  jwksCacheMaxAgeMs: 600_000,
  maxSubjectTokenLifetimeSeconds: 24 * 3600,
  approvalPendingTtlSeconds: 15 * 60,
  approvalApprovedTtlSeconds: 5 * 60,
  breakGlassMaxSeconds: 3600,
  breakGlassRequiresConfirmation: false,
  breakGlassConfirmWindowSeconds: 15 * 60,
  breakGlassWebhookUrl: null,
  breakGlassWebhookTimeoutMs: 2000,
  presenceMaxTtlSeconds: 300,
  presenceInitialTtlSeconds: 300,
  auditArgs: 'masked',
  auditMaskRules: [],
  policyMaxDepth: 32,
  policyMaxTokens: 10_000,
  policyTrialTimeoutMs: 20_000,
  approvalOpenMaxPerTask: 50,
  approvalOpenMaxPerAgent: 200,
  taskRefusalLimit: { max: 20, windowMs: 1000 },
  visibleToolsMax: 256,
  visibleToolsLimit: { max: 30, windowMs: 10_000 },
  operatorTokenTtlSeconds: 90 * 24 * 3600,
  policyWorkers: 0,
  policyWorkerTimeoutMs: 2000,
  checkpointIntervalMs: 60_000,
};

export function resolveConfig(partial: Partial<WritConfig> & { issuer: string }): WritConfig {
  const c = { ...DEFAULT_CONFIG, ...partial };
  if (!(c.taskTokenTtlSeconds > 0 && c.taskTokenTtlSeconds <= MAX_TASK_TOKEN_TTL_SECONDS)) {
    throw new TypeError(`taskTokenTtlSeconds must be in 1..${MAX_TASK_TOKEN_TTL_SECONDS}`);
  }
  if (!(c.actionTokenTtlSeconds > 0 && c.actionTokenTtlSeconds <= MAX_ACTION_TOKEN_TTL_SECONDS)) {
    throw new TypeError(`actionTokenTtlSeconds must be in 1..${MAX_ACTION_TOKEN_TTL_SECONDS}`);
  }
  if (!(Number.isInteger(c.maxDelegationDepth) && c.maxDelegationDepth >= 0)) throw new TypeError('maxDelegationDepth must be a whole number >= 0');
  if (!(Number.isInteger(c.jwksTimeoutMs) && c.jwksTimeoutMs > 0)) throw new TypeError('jwksTimeoutMs must be a whole number > 0');
  for (const k of ['approvalOpenMaxPerTask', 'approvalOpenMaxPerAgent'] as const) {
    if (!(Number.isInteger(c[k]) && c[k] > 0)) throw new TypeError(`${k} must be a whole number > 0`);
  }
  for (const k of ['taskRefusalLimit', 'visibleToolsLimit'] as const) {
    if (!(Number.isInteger(c[k].max) && c[k].max > 0 && c[k].windowMs > 0)) throw new TypeError(`${k} needs a whole max > 0 and windowMs > 0`);
  }
  if (!(Number.isInteger(c.operatorTokenTtlSeconds) && c.operatorTokenTtlSeconds > 0)) throw new TypeError('operatorTokenTtlSeconds must be a whole number > 0');
  if (!(Number.isInteger(c.visibleToolsMax) && c.visibleToolsMax > 0 && c.visibleToolsMax <= 10_000)) throw new TypeError('visibleToolsMax must be a whole number in 1..10000');
  if (!(Number.isInteger(c.policyWorkers) && c.policyWorkers >= 0 && c.policyWorkers <= 64)) throw new TypeError('policyWorkers must be a whole number in 0..64');
  if (!(Number.isInteger(c.policyWorkerTimeoutMs) && c.policyWorkerTimeoutMs > 0)) throw new TypeError('policyWorkerTimeoutMs must be a whole number > 0');
  for (const k of ['approvalPendingTtlSeconds', 'approvalApprovedTtlSeconds', 'breakGlassMaxSeconds', 'breakGlassConfirmWindowSeconds', 'presenceMaxTtlSeconds', 'presenceInitialTtlSeconds'] as const) {
    if (!(Number.isInteger(c[k]) && c[k] > 0)) throw new TypeError(`${k} must be a whole number > 0`);
  }
  for (const k of ['policyMaxDepth', 'policyMaxTokens', 'policyTrialTimeoutMs'] as const) {
    if (!(Number.isInteger(c[k]) && c[k] > 0)) throw new TypeError(`${k} must be a whole number > 0`);
  }
  if (c.breakGlassWebhookUrl !== null && !/^https?:\/\//.test(c.breakGlassWebhookUrl)) throw new TypeError('breakGlassWebhookUrl must be an http(s) URL');
  c.issuer = c.issuer.replace(/\/+$/, '');
  return c;
}
