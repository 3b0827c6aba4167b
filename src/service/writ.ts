import { AgentTasks } from './agent-tasks.js';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { DpopError, DpopNonces, DpopReplayCache } from '../tokens/dpop.js';
import { AuditBatcher } from '../audit/audit-batcher.js';
import { DecisionCommitter } from '../audit/decision-committer.js';
import { WritMetrics } from './metrics.js';
import { checkpointOrigin, signCheckpoint, type EvidenceContext } from '../audit/evidence.js';
import { createNoteSigner, type NoteSigner } from '../audit/signed-note.js';
import { WRIT_VERSION } from '../core/version.js';
import { checkpointClaims, CHECKPOINT_TYP, verifyCheckpoint } from '../audit/checkpoint.js';
import { verifyChain, type ChainReport } from '../audit/verify-chain.js';
import { epochSeconds, systemClock, type Clock } from '../core/clock.js';
import { sha256Hex } from '../core/digest.js';
import {
  ConflictError,
  ForbiddenError,
  InvalidRequestError,
  RateLimitedError,
  NotFoundError,
  OAuthError,
  UnauthorizedError,
  UnavailableError,
  WritError,
  PreconditionFailedError,
} from '../core/errors.js';
import { WindowLimiter } from '../core/window-limiter.js';
import { newId, newSecret } from '../core/ids.js';
import type {
  AgentRecord,
  AuditEntry,
  DecisionRecord,
  OperatorRecord,
  OperatorRole,
  TaskRecord,
  TaskScope,
  ToolLabelsRecord,
  PolicyRecord,
} from '../core/types.js';
import { checkAgentJwks } from '../identity/agent-keys.js';
import { CLIENT_ASSERTION_TYPE, peekAssertionSubject, verifyClientAssertion } from '../identity/client-assertion.js';
import { PolicyEngine, policyVersion, type LoadedPolicySet, type PolicyDiagnostic } from '../policy/engine.js';
import { diffHash, diffPolicyText } from '../policy/policy-diff.js';
import { simulatePolicy, type SimulationReport } from './policy-simulate.js';
import { PolicyShadow } from './policy-shadow.js';
import { checkPolicyComplexity } from '../policy/complexity.js';
import { trialPolicySet } from '../policy/policy-trial.js';
import { buildCedarRequest, type ActionInput } from '../policy/request.js';
import { AuthorizePipeline } from '../authorize/pipeline.js';
import { DecisionCommit } from '../authorize/commit.js';
import type { AuthorizeResult } from '../authorize/result.js';
import type { ServiceDeps } from './deps.js';
import { ApprovalService } from '../approvals/service.js';
import { BreakGlassService } from '../breakglass/service.js';
import { PresenceService } from '../tasks/presence.js';
import { DEFAULT_POLICY, WRIT_SCHEMA } from '../policy/schema.js';
import { ToolLabelRegistry } from '../policy/tool-labels.js';
import { ToolVisibilityCache } from '../policy/tool-visibility.js';
import type { AuditFilter, Store } from '../store/store.js';
import { matchesAny } from '../tasks/scope.js';
import { assertScopeBounds } from '../tasks/scope-limits.js';
import { assertScopeForms } from '../tasks/scope-forms.js';
import { checkAgentId } from '../identity/spiffe-id.js';
import { federation, TOKEN_EXCHANGE_GRANT_TYPE, type TokenExchangeForm } from '../identity/token-exchange.js';
import { KeyRing } from '../tokens/key-ring.js';
import { CheckpointKey } from '../tokens/checkpoint-key.js';
import { checkBootstrapToken } from '../core/token-strength.js';
import { deriveKeyEncryptionKey } from '../tokens/key-sealing.js';
import { ACTION_TOKEN_TYP, MAX_TASK_TOKEN_TTL_SECONDS, TASK_TOKEN_TYP, type ActionTokenClaims } from '../tokens/token-types.js';
import { TokenVerificationError, verifyWritJwt } from '../tokens/verify-token.js';
import { resolveConfig, type WritConfig } from './config.js';

/** One change of the active policy set (`GET /v1/policies`, `history`). */
export interface PolicyChange {
  /** the audit entry that records it */
  seq: number;
  version: string;
  previous: string | null;
  set_by: string;
  set_at: string;
  /** the SHA-256 of the diff, as audited (null for changes audited before it was) */
  diff_sha256: string | null;
  /** unified diff from `previous` to `version` */
  diff: string | null;
}

export interface TaskPrincipal {
  agentId: string;
  taskId: string;
  tokenExp: number;
  /** the token's `jti` */
  jti?: string;
  /** `fed`: the trusted issuer record the token was obtained through (token exchange), else absent */
  issuerId?: string;
  /** `cnf.jkt` (RFC 9449 §6.1): the token is bound to this key; every use needs a proof from it */
  jkt?: string;
}

export type { AuthorizeResult } from '../authorize/result.js';

export interface CreateTaskInput {
  agent_id: string;
  intent: string;
  scope: TaskScope;
  ttl_seconds: number;
  max_actions: number;
  /** the owner renews a presence lease; while it lapses, `context.owner_present` is false */
  require_owner_presence?: boolean;
}

export interface RegisterAgentInput {
  id: string;
  name?: string;
  /** registered public keys; an agent that proves itself only through a trusted issuer has none */
  jwks?: { keys: Record<string, unknown>[] };
  labels?: string[];
}

const ROLE_ORDER: OperatorRole[] = ['admin', 'approver', 'auditor', 'requester'];

/**
 * The Writ service: every operation the HTTP API, the CLI and the gateway expose,
 * over one Store, one policy engine and one key ring. Methods take inputs already
 * parsed at the edge and throw WritError subclasses.
 */
export class Writ {
  readonly config: WritConfig;
  readonly clock: Clock;
  readonly keys: KeyRing;
  /** signs audit checkpoints only; apart from the token keys */
  readonly checkpointKey: CheckpointKey;
  readonly policy: PolicyEngine;
  readonly toolLabels: ToolLabelRegistry;
  private readonly securityAudit: AuditBatcher;
  private readonly committer: DecisionCommitter;
  /** outcomes queued for the next commit: a second report of one is refused at once */
  private readonly outcomesQueued = new Set<string>();
  /** Prometheus metrics of this instance (src/service/metrics.ts) */
  readonly metrics: WritMetrics;
  private readonly tokenCache = new Map<string, TaskPrincipal>();
  /** DPoP proof `jti`s seen (RFC 9449 §11.1) and, when configured, server nonces (§8) */
  readonly dpopReplay = new DpopReplayCache();
  private dpopNonceSource: DpopNonces | undefined;
  get dpopNonces(): DpopNonces | undefined {
    if (!this.config.dpopNonces) return undefined;
    return (this.dpopNonceSource ??= new DpopNonces());
  }
  private policyCheckedAt = 0;
  private sweepTimer: NodeJS.Timeout | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private noteSigner: NoteSigner | null = null;
  /** approvals bound to one action (src/approvals) */
  readonly approvals: ApprovalService;
  /** break-glass (src/breakglass) */
  readonly breakGlass: BreakGlassService;
  /** owner presence leases (src/tasks/presence.ts) */
  readonly presence: PresenceService;
  /** the shadow candidate of a staged rollout (./policy-shadow.ts) */
  readonly shadow: PolicyShadow;
  /** the one authorize pipeline (src/authorize): authorize and the approval read */
  private readonly pipeline: AuthorizePipeline;
  private readonly commit: DecisionCommit;
  /** an agent's own active tasks, long-polled with its key (src/service/agent-tasks.ts) */
  readonly agentTasks: AgentTasks;
  /** `POST /v1/tools/visible`: answers per task and policy version, and requests per task per window */
  private readonly toolVisibility = new ToolVisibilityCache();
  private readonly visibleToolsRate: WindowLimiter;

  constructor(
    readonly store: Store,
    config: Partial<WritConfig> & { issuer: string },
    clock: Clock = systemClock,
  ) {
    this.config = resolveConfig(config);
    this.clock = clock;
    this.policy = new PolicyEngine({
      limits: { maxDepth: this.config.policyMaxDepth, maxTokens: this.config.policyMaxTokens },
      workers: this.config.policyWorkers,
      workerTimeoutMs: this.config.policyWorkerTimeoutMs,
    });
    // A Cedar trap replaced the engine's WebAssembly instance (the request that hit it was denied): loud, never silent.
    this.policy.onTrap = (t) => void this.securityEvent('policy.engine_reset', 'system', { operation: t.operation, error: t.message }).catch(() => undefined);
    const kek = this.config.keyEncryptionKey ? deriveKeyEncryptionKey(this.config.keyEncryptionKey) : null;
    this.keys = new KeyRing(store, clock, kek);
    this.checkpointKey = new CheckpointKey(store, clock, kek);
    this.toolLabels = new ToolLabelRegistry(store, clock);
    this.securityAudit = new AuditBatcher(store);
    this.metrics = new WritMetrics({
      pendingApprovals: async () => (await store.listApprovals({ status: 'pending', limit: 10_000 })).length,
      activeBreakGlass: async () => (await store.listBreakGlass({ state: 'active', now: clock.now(), limit: 10_000 })).length,
      ...(store.poolStats ? { pool: () => store.poolStats!() } : {}),
    });
    this.committer = new DecisionCommitter(store, clock, 256, (items, results) => {
      this.metrics.batchSize.observe(items.length);
      items.forEach((item, i) => {
        const r = results[i]!;
        // only what was durably written is counted
        if (r.written === 'fallback') this.metrics.recordDecision('deny', r.reason);
        else this.metrics.recordDecision(item.decision.decision, item.decision.reasons[0]?.code);
      });
    });
    const audit = { securityEvent: (type: string, actor: string, data: Record<string, unknown>, ids?: { taskId?: string; agentId?: string; decisionId?: string }) => this.securityEvent(type, actor, data, ids) };
    const deps: ServiceDeps = { store, clock, config: this.config, audit };
    this.breakGlass = new BreakGlassService(deps);
    this.presence = new PresenceService(deps);
    this.shadow = new PolicyShadow({
      store, clock, engine: this.policy,
      checkNewPolicy: (text) => this.checkNewPolicy(text),
      ownerPresent: (task, now) => this.presence.ownerPresent(task, now),
      putLive: (by, text, options) => this.putPolicy(by, text, options),
      securityEvent: (type, actor, data) => this.securityEvent(type, actor, data),
    });
    this.agentTasks = new AgentTasks({
      store, clock, issuer: () => this.config.issuer,
      ...(store.listen && store.notify ? { notifications: { listen: store.listen.bind(store), notify: store.notify.bind(store) } } : {}),
    });
    this.commit = new DecisionCommit({ store, config: this.config, keys: this.keys, committer: this.committer, metrics: this.metrics, securityEvent: audit.securityEvent });
    this.pipeline = new AuthorizePipeline({
      store, clock, config: this.config, securityEvent: audit.securityEvent, engine: this.policy,
      currentPolicy: () => this.currentPolicy(),
      toolLabels: (tool) => this.toolLabels.labelsFor(tool),
      ownerPresent: (task, now) => this.presence.ownerPresent(task, now),
      shadow: this.shadow,
      commit: this.commit,
      metrics: this.metrics,
    });
    this.approvals = new ApprovalService({ ...deps, pipeline: this.pipeline });
    this.visibleToolsRate = new WindowLimiter(this.config.visibleToolsLimit.max, this.config.visibleToolsLimit.windowMs, () => this.clock.now());
  }

  get tokenEndpoint(): string {
    return `${this.config.issuer}/oauth/token`;
  }

  /**
   * Migrates the store, loads keys and the active policy (installing the default on a
   * new store). Every step is safe when instances start together on one empty store:
   * migrations take turns under a lock, and the first key, checkpoint key and policy are
   * each written only while none exists, atomically; the later instances load them.
   */
  async init(): Promise<void> {
    await this.store.migrate();
    await this.keys.init();
    await this.checkpointKey.init();
    if (!(await this.store.getActivePolicy())) {
      // a new store: the default set, checked like any other, installed only while no set
      // is active (instances starting together install it once; the others load it)
      await this.checkNewPolicy(DEFAULT_POLICY);
      const set = this.policy.prepare(DEFAULT_POLICY);
      await this.store.installFirstPolicy(
        { version: set.version, text: DEFAULT_POLICY, createdAt: this.clock.now(), createdBy: 'system' },
        { type: 'policy.updated', actor: 'system', data: { version: set.version, policies: set.policyIds, previous: null, diff_sha256: diffHash(diffPolicyText('', DEFAULT_POLICY)) } },
      );
    }
    const active = await this.store.getActivePolicy();
    if (active) {
      // A stored set that fails the checks (stored before them, or by an older version)
      // is not loaded: the service starts without a policy and every decision fails
      // closed (503 `policy_unavailable`) until an admin stores one that passes.
      await this.loadStored(active.text).catch((err) => {
        if (!(err instanceof WritError)) throw err;
      });
    }
    this.policyCheckedAt = this.clock.now();
    // a candidate that cannot be loaded is recorded as such on each request, never fatal here
    await this.shadow.refresh().catch(() => undefined);
  }

  /** Versions of stored sets refused by the checks, so they are not tried again and again. */
  private readonly refusedVersions = new Map<string, WritError>();

  /**
   * Loads (and activates) a set read from the store: the complexity scan and the trial
   * run first, as for a new set, since another instance (or an older Writ) stored it.
   */
  private loadStored(text: string): Promise<LoadedPolicySet> {
    const version = policyVersion(text);
    // concurrent requests that see a new version share one trial
    let p = this.loadingVersions.get(version);
    if (!p) {
      p = this.loadStoredOnce(text, version).finally(() => this.loadingVersions.delete(version));
      this.loadingVersions.set(version, p);
    }
    return p;
  }

  private readonly loadingVersions = new Map<string, Promise<LoadedPolicySet>>();

  private async loadStoredOnce(text: string, version: string): Promise<LoadedPolicySet> {
    const refused = this.refusedVersions.get(version);
    if (refused) throw refused;
    try {
      await this.checkNewPolicy(text);
      const set = this.policy.prepare(text);
      this.policy.activate(set);
      return set;
    } catch (err) {
      if (!(err instanceof WritError)) throw err;
      const e = new UnavailableError(`the active policy set (version \`${version}\`) cannot be loaded: ${err.message}`, err, 'policy_unavailable');
      if (this.refusedVersions.size > 100) this.refusedVersions.clear();
      this.refusedVersions.set(version, e);
      await this.securityEvent('policy.refused', 'system', { version, code: err.code, error: err.message.slice(0, 300) }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * The checks a policy set passes before it is stored or loaded: the cheap scan of its
   * text (depth, size, \`like\` patterns), then one trial in a throwaway worker (load, a
   * full decision, a partial evaluation). A set this engine has loaded already passed.
   */
  private async checkNewPolicy(text: string): Promise<void> {
    if (this.policy.isLoaded(policyVersion(text))) return;
    checkPolicyComplexity(text, this.policy.limits);
    // the built-in default is ours and tested: no worker for every new store
    if (text === DEFAULT_POLICY) return;
    await trialPolicySet({ text, schema: WRIT_SCHEMA, ...PolicyEngine.trialCalls(), timeoutMs: this.config.policyTrialTimeoutMs });
  }

  startBackgroundWork(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = setInterval(() => {
      const now = this.clock.now();
      this.store.expireTasks(now).then((ids) => this.announceEnded(ids), () => undefined);
      this.store.purgeExpiredOnce(now - 60_000).catch(() => undefined);
      // a rotation through another instance: sign with the new key within seconds
      this.keys.refresh(true).catch(() => undefined);
      this.approvals.sweep(now).catch(() => undefined);
      this.breakGlass.sweep(now).catch(() => undefined);
    }, this.config.expirySweepMs);
    this.sweepTimer.unref();
    // C2SP checkpoints of the Merkle tree at least every interval while entries arrive
    // (and on demand); several instances may sign the same size, the first one stands.
    this.checkpointTimer = setInterval(() => {
      this.checkpointIfDue().catch(() => undefined);
    }, this.config.checkpointIntervalMs);
    this.checkpointTimer.unref();
  }

  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    this.sweepTimer = null;
    // pending group commits reach the store before it closes (graceful shutdown)
    await Promise.all([this.committer.drain(), this.securityAudit.drain(), this.shadow.close(), this.agentTasks.close()]);
    await this.policy.close();
    this.checkpointTimer = null;
    await this.store.close();
  }

  // --- operators -----------------------------------------------------------------

  /**
   * On a store with no operator, creates the first admin (atomically: instances starting
   * together create one). With `token` (from WRIT_BOOTSTRAP_TOKEN) that is its token,
   * refused when its estimated strength is under 128 bits, whether or not it is used;
   * otherwise one is generated and returned so the caller can show it once. Returns
   * null when an operator exists already (the token is then ignored).
   */
  async bootstrapAdmin(token?: string): Promise<{ token: string; generated: boolean; expiresAt: number } | null> {
    if (token !== undefined) checkBootstrapToken(token);
    if ((await this.store.countOperators()) > 0) return null;
    const t = token ?? newSecret('wop');
    const now = this.clock.now();
    const op: OperatorRecord = {
      id: newId('op'), name: 'admin', roles: ['admin'], tokenHash: sha256Hex(t), createdAt: now,
      expiresAt: now + this.config.operatorTokenTtlSeconds * 1000, rotatedAt: null, disabled: false,
    };
    const created = await this.store.bootstrapOperator(op, {
      type: 'operator.created', actor: 'system', data: { operator_id: op.id, roles: op.roles, bootstrap: true, expires_at: op.expiresAt },
    });
    return created ? { token: t, generated: token === undefined, expiresAt: op.expiresAt } : null;
  }

  async createOperator(by: OperatorRecord, input: { name: string; roles: OperatorRole[] }): Promise<{ id: string; token: string; expires_at: string }> {
    requireRole(by, 'admin');
    const token = newSecret('wop');
    const now = this.clock.now();
    const op: OperatorRecord = {
      id: newId('op'), name: input.name, roles: input.roles, tokenHash: sha256Hex(token), createdAt: now,
      expiresAt: now + this.config.operatorTokenTtlSeconds * 1000, rotatedAt: null, disabled: false,
    };
    await this.store.createOperator(op, {
      type: 'operator.created', actor: `operator:${by.id}`, data: { operator_id: op.id, name: op.name, roles: op.roles, expires_at: op.expiresAt },
    });
    return { id: op.id, token, expires_at: new Date(op.expiresAt).toISOString() };
  }

  async authenticateOperator(bearer: string | null): Promise<OperatorRecord> {
    if (!bearer) throw new UnauthorizedError('an operator token is required');
    const op = await this.store.findOperatorByTokenHash(sha256Hex(bearer));
    if (!op) throw new UnauthorizedError('the operator token is not valid', 'invalid_token');
    if (op.disabled) throw new UnauthorizedError(`operator \`${op.id}\` is disabled`, 'operator_disabled');
    if (op.expiresAt <= this.clock.now()) throw new UnauthorizedError('the operator token has expired: an admin rotates it', 'token_expired');
    return op;
  }

  /** Every operator (never a token or its hash), with its token's expiry; admins and auditors. */
  async listOperators(by: OperatorRecord): Promise<OperatorRecord[]> {
    requireRole(by, 'admin', 'auditor');
    return this.store.listOperators();
  }

  /**
   * Disables an operator: its token stops working at once. Refused (409 `last_admin`)
   * when no other enabled admin with an unexpired token would remain.
   */
  async disableOperator(by: OperatorRecord, id: string): Promise<OperatorRecord> {
    requireRole(by, 'admin');
    const now = this.clock.now();
    const r = await this.store.disableOperator(id, now, { type: 'operator.disabled', actor: `operator:${by.id}`, data: { operator_id: id } });
    if (r === 'not_found') throw new NotFoundError(`operator \`${id}\` does not exist`, 'operator_not_found');
    if (r === 'already_disabled') throw new ConflictError(`operator \`${id}\` is disabled already`, 'operator_disabled');
    if (r === 'last_admin') throw new ConflictError(`operator \`${id}\` is the last enabled admin: create or rotate another admin first`, 'last_admin');
    return (await this.store.getOperator(id))!;
  }

  /**
   * Gives an enabled operator a new token (shown once) with a fresh expiry; the old
   * token stops working in the same transaction. Admins only: an operator cannot extend
   * its own token's life, so a stolen token still ends at its expiry.
   */
  async rotateOperatorToken(by: OperatorRecord, id: string): Promise<{ id: string; token: string; expires_at: string }> {
    requireRole(by, 'admin');
    const token = newSecret('wop');
    const now = this.clock.now();
    const expiresAt = now + this.config.operatorTokenTtlSeconds * 1000;
    const op = await this.store.rotateOperatorToken(id, sha256Hex(token), expiresAt, now, {
      type: 'operator.token_rotated', actor: `operator:${by.id}`, data: { operator_id: id, expires_at: expiresAt },
    });
    if (!op) {
      const exists = await this.store.getOperator(id);
      if (!exists) throw new NotFoundError(`operator \`${id}\` does not exist`, 'operator_not_found');
      throw new ConflictError(`operator \`${id}\` is disabled`, 'operator_disabled');
    }
    return { id, token, expires_at: new Date(expiresAt).toISOString() };
  }

  // --- agents --------------------------------------------------------------------

  async registerAgent(by: OperatorRecord, input: RegisterAgentInput): Promise<AgentRecord> {
    requireRole(by, 'admin');
    checkAgentId(input.id);
    const jwks = input.jwks ? checkAgentJwks(input.jwks as { keys: never[] }) : { keys: [] };
    const agent: AgentRecord = {
      id: input.id,
      name: input.name ?? input.id,
      jwks,
      labels: input.labels ?? [],
      status: 'active',
      createdAt: this.clock.now(),
      createdBy: by.id,
    };
    await this.store.createAgent(agent, {
      type: 'agent.registered',
      actor: `operator:${by.id}`,
      agentId: agent.id,
      data: { name: agent.name, labels: agent.labels, keys: jwks.keys.map((k) => ({ kty: k.kty, crv: k.crv, kid: k.kid ?? null })) },
    });
    return agent;
  }

  async getAgent(by: OperatorRecord, id: string): Promise<AgentRecord> {
    requireRole(by, 'admin', 'auditor', 'approver', 'requester');
    const a = await this.store.getAgent(id);
    if (!a) throw new NotFoundError(`agent \`${id}\` does not exist`, 'agent_not_found');
    return a;
  }

  async listAgents(by: OperatorRecord): Promise<AgentRecord[]> {
    requireRole(by, 'admin', 'auditor', 'approver', 'requester');
    return this.store.listAgents();
  }

  async disableAgent(by: OperatorRecord, id: string): Promise<{ revoked_task_ids: string[] }> {
    requireRole(by, 'admin');
    const r = await this.store.disableAgent(id, this.clock.now(), { type: 'agent.disabled', actor: `operator:${by.id}`, agentId: id, data: {} });
    if (!r) throw new NotFoundError(`agent \`${id}\` does not exist`, 'agent_not_found');
    this.tokenCache.clear();
    this.announceEnded(r.revokedTaskIds);
    return { revoked_task_ids: r.revokedTaskIds };
  }

  // --- tasks ---------------------------------------------------------------------

  async createTask(by: OperatorRecord, input: CreateTaskInput): Promise<TaskRecord> {
    requireRole(by, 'admin', 'requester');
    assertScopeBounds(input.scope);
    assertScopeForms(input.scope);
    if (input.ttl_seconds > this.config.maxTaskTtlSeconds) {
      throw new InvalidRequestError(`\`ttl_seconds\` is at most ${this.config.maxTaskTtlSeconds}`);
    }
    if (input.max_actions > this.config.maxTaskActions) throw new InvalidRequestError(`\`max_actions\` is at most ${this.config.maxTaskActions}`);
    const agent = await this.store.getAgent(input.agent_id);
    if (!agent) throw new NotFoundError(`agent \`${input.agent_id}\` does not exist`, 'agent_not_found');
    if (agent.status !== 'active') throw new ConflictError(`agent \`${input.agent_id}\` is disabled`, 'agent_disabled');
    const now = this.clock.now();
    const id = newId('task');
    const task: TaskRecord = {
      id,
      agentId: agent.id,
      owner: by.id,
      intent: input.intent,
      scope: input.scope,
      status: 'active',
      createdAt: now,
      expiresAt: now + input.ttl_seconds * 1000,
      endedAt: null,
      maxActions: input.max_actions,
      actionsUsed: 0,
      actionsReserved: 0,
      parentId: null,
      rootId: id,
      depth: 0,
    };
    await this.store.createTask(task, {
      type: 'task.created',
      actor: `operator:${by.id}`,
      taskId: id,
      agentId: agent.id,
      data: {
        intent: task.intent,
        scope: task.scope,
        expires_at: task.expiresAt,
        max_actions: task.maxActions,
        owner: by.id,
        ...(input.require_owner_presence ? { require_owner_presence: true } : {}),
      },
    }, input.require_owner_presence ? { presence: this.presence.initialLease(id, by.id, now) } : {});
    // an agent's gateway long-polling for its tasks gets this one at once
    this.agentTasks.changed();
    return task;
  }

  async getTaskDetail(by: OperatorRecord, id: string): Promise<{ task: TaskRecord; decisions: DecisionRecord[]; delegations: TaskRecord[] }> {
    requireRole(by, 'admin', 'auditor', 'approver', 'requester');
    const task = await this.store.getTask(id);
    if (!task) throw new NotFoundError(`task \`${id}\` does not exist`, 'task_not_found');
    if (!hasRole(by, 'admin', 'auditor', 'approver') && task.owner !== by.id) throw new NotFoundError(`task \`${id}\` does not exist`, 'task_not_found');
    const [decisions, delegations] = await Promise.all([this.store.listDecisions(id), this.store.listTasks({ parentId: id, limit: 1000 })]);
    return { task: this.effective(task), decisions, delegations: delegations.map((t) => this.effective(t)) };
  }

  async listTasks(by: OperatorRecord, filter: { agentId?: string; status?: TaskRecord['status']; limit?: number }): Promise<TaskRecord[]> {
    requireRole(by, 'admin', 'auditor', 'approver', 'requester');
    const tasks = await this.store.listTasks(filter);
    const visible = hasRole(by, 'admin', 'auditor', 'approver') ? tasks : tasks.filter((t) => t.owner === by.id);
    return visible.map((t) => this.effective(t));
  }

  /** A task past its expiry reads as expired even before the sweeper marks it. */
  private effective(task: TaskRecord): TaskRecord {
    return task.status === 'active' && task.expiresAt <= this.clock.now() ? { ...task, status: 'expired' } : task;
  }

  /** Completes a task: the agent holding it (task token) or an operator. */
  async completeTask(actor: { operator: OperatorRecord } | { task: TaskPrincipal }, id: string): Promise<{ id: string; status: 'completed'; ended: string[] }> {
    let who: string;
    if ('operator' in actor) {
      requireRole(actor.operator, 'admin', 'requester');
      const t = await this.store.getTask(id);
      if (!t || (!hasRole(actor.operator, 'admin') && t.owner !== actor.operator.id)) throw new NotFoundError(`task \`${id}\` does not exist`, 'task_not_found');
      who = `operator:${actor.operator.id}`;
    } else {
      if (actor.task.taskId !== id) throw new ForbiddenError('the task token is for another task', 'wrong_task');
      who = `agent:${actor.task.agentId}`;
    }
    return { id, status: 'completed', ended: await this.endTask(id, 'completed', who) };
  }

  async revokeTask(by: OperatorRecord, id: string, reason?: string): Promise<{ id: string; status: 'revoked'; ended: string[] }> {
    requireRole(by, 'admin', 'requester');
    const t = await this.store.getTask(id);
    if (!t || (!hasRole(by, 'admin') && t.owner !== by.id)) throw new NotFoundError(`task \`${id}\` does not exist`, 'task_not_found');
    const ended = await this.endTask(id, 'revoked', `operator:${by.id}`, reason);
    if (ended.length > 0) this.metrics.revocations.inc();
    return { id, status: 'revoked', ended };
  }

  private async endTask(id: string, status: 'completed' | 'revoked', actor: string, reason?: string): Promise<string[]> {
    const task = await this.store.getTask(id);
    if (!task) throw new NotFoundError(`task \`${id}\` does not exist`, 'task_not_found');
    const ended = await this.store.endTask(id, status, this.clock.now(), {
      type: `task.${status}`,
      actor,
      taskId: id,
      agentId: task.agentId,
      data: reason ? { reason } : {},
    });
    if (ended.length === 0) throw new ConflictError(`task \`${id}\` is not active`, 'task_not_active');
    this.tokenCache.clear();
    this.announceEnded(ended);
    return ended;
  }

  private readonly endedListeners = new Set<(taskIds: string[]) => void>();

  /**
   * Listens for tasks this instance ends (completed, revoked, agent disabled, expired by
   * its sweep): an embedded gateway closes their sessions at once. Tasks ended through
   * another instance are not announced here (the gateway's periodic check finds them).
   */
  onTasksEnded(listener: (taskIds: string[]) => void): () => void {
    this.endedListeners.add(listener);
    return () => this.endedListeners.delete(listener);
  }

  private announceEnded(taskIds: string[]): void {
    if (taskIds.length === 0) return;
    this.agentTasks.changed();
    for (const l of this.endedListeners) {
      try {
        l(taskIds);
      } catch {
        // a listener's fault never fails the end
      }
    }
  }

  // --- task tokens (RFC 6749 §4.4 + RFC 7523 §2.2) -------------------------------

  async issueTaskToken(form: {
    grant_type: string;
    client_assertion_type?: string;
    client_assertion?: string;
    task_id?: string;
  }, binding: { jkt?: string } = {}): Promise<{ access_token: string; token_type: 'Bearer' | 'DPoP'; expires_in: number; issued_token_type: string }> {
    // RFC 8693: a trusted issuer's workload token (OIDC, SPIFFE JWT-SVID) instead of an assertion
    if (form.grant_type === TOKEN_EXCHANGE_GRANT_TYPE) {
      // not bound there yet: refuse rather than hand out a bearer token the client asked to bind
      if (binding.jkt !== undefined) throw new DpopError('DPoP-bound tokens are not issued by token exchange yet', 400);
      return federation(this).exchange(form as TokenExchangeForm);
    }
    if (form.grant_type !== 'client_credentials') {
      throw new OAuthError('unsupported_grant_type', `grant type \`${form.grant_type}\` is not supported`);
    }
    if (form.client_assertion_type !== CLIENT_ASSERTION_TYPE || !form.client_assertion) {
      throw new OAuthError('invalid_client', `client authentication needs \`client_assertion_type\`=${CLIENT_ASSERTION_TYPE} and a \`client_assertion\``);
    }
    if (!form.task_id) throw new OAuthError('invalid_request', '`task_id` is required');
    const now = this.clock.now();
    let agentId: string;
    try {
      agentId = peekAssertionSubject(form.client_assertion);
    } catch (err) {
      // alg `none`/HS256, iss != sub, not a JWT: refused before any key is looked up, but still recorded
      await this.securityEvent('token.refused', 'anonymous', { reason: 'bad_assertion', detail: (err as Error).message.slice(0, 200) });
      throw err;
    }
    const agent = await this.store.getAgent(agentId);
    if (!agent) {
      await this.securityEvent('token.refused', 'anonymous', { reason: 'unknown_agent', claimed_agent: agentId.slice(0, 256) });
      throw new OAuthError('invalid_client', 'the client assertion does not verify');
    }
    let verified;
    try {
      verified = await verifyClientAssertion(form.client_assertion, agent, { audiences: [this.config.issuer, this.tokenEndpoint], now });
    } catch (err) {
      await this.securityEvent('token.refused', 'anonymous', { reason: 'bad_assertion', claimed_agent: agent.id, detail: (err as Error).message }, { agentId: agent.id });
      throw err;
    }
    if (agent.status !== 'active') {
      await this.securityEvent('token.refused', `agent:${agent.id}`, { reason: 'agent_disabled' }, { agentId: agent.id });
      throw new OAuthError('invalid_client', `agent \`${agent.id}\` is disabled`);
    }
    const task = await this.store.getTask(form.task_id);
    if (!task || task.agentId !== agent.id) {
      await this.securityEvent('token.refused', `agent:${agent.id}`, { reason: 'task_not_for_agent', task_id: form.task_id.slice(0, 256) }, { agentId: agent.id });
      throw new OAuthError('invalid_grant', 'the task does not exist or is not this agent\'s');
    }
    if (task.status !== 'active' || task.expiresAt <= now) {
      await this.securityEvent('token.refused', `agent:${agent.id}`, { reason: 'task_not_active', task_id: task.id }, { agentId: agent.id, taskId: task.id });
      throw new OAuthError('invalid_grant', `task \`${task.id}\` is not active`);
    }
    const iat = epochSeconds(now);
    const exp = Math.min(iat + this.config.taskTokenTtlSeconds, epochSeconds(task.expiresAt));
    if (exp <= iat) throw new OAuthError('invalid_grant', `task \`${task.id}\` is about to expire`);
    const jti = newId('tt');
    const token = this.keys.signJwt(TASK_TOKEN_TYP, {
      iss: this.config.issuer,
      sub: agent.id,
      aud: this.config.issuer,
      iat,
      exp,
      jti,
      txn: task.id,
      // RFC 9449 §6.1: bound to the key that signed the token request's proof
      ...(binding.jkt === undefined ? {} : { cnf: { jkt: binding.jkt } }),
    });
    // The assertion's jti is spent in the same transaction that records the issue.
    const first = await this.store.useOnce(`assertion:${agent.id}:${verified.jti}`, verified.exp * 1000, {
      type: 'token.issued',
      actor: `agent:${agent.id}`,
      agentId: agent.id,
      taskId: task.id,
      data: { jti, exp, assertion_jti: verified.jti, ...(binding.jkt === undefined ? {} : { dpop_jkt: binding.jkt }) },
    });
    if (!first) {
      await this.securityEvent('token.refused', `agent:${agent.id}`, { reason: 'assertion_replayed', assertion_jti: verified.jti }, { agentId: agent.id, taskId: task.id });
      throw new OAuthError('invalid_client', 'the client assertion was used before');
    }
    // RFC 9449 §5.1: `token_type` DPoP for a bound token
    return { access_token: token, token_type: binding.jkt === undefined ? 'Bearer' : 'DPoP', expires_in: exp - iat, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' };
  }

  /**
   * Authenticates a task token: signature, type, issuer, audience, expiry, then the
   * task's current state (read on every request, so revocation takes effect at once).
   */
  async authenticateTask(bearer: string | null, proven: { jkt: string } | null = null): Promise<{ principal: TaskPrincipal; task: TaskRecord; agent: AgentRecord }> {
    if (!bearer) throw new UnauthorizedError('a task token is required');
    const now = this.clock.now();
    let principal = this.tokenCache.get(bearer);
    if (!principal || principal.tokenExp * 1000 <= now) {
      principal = await this.verifyTaskToken(bearer);
      if (this.tokenCache.size >= 10_000) this.tokenCache.clear();
      this.tokenCache.set(bearer, principal);
    }
    // RFC 9449 §7.1: a bound token needs a proof by its key, on every use; every caller
    // that checked no proof passes none, so a bound token fails closed there
    if (principal.jkt !== undefined) {
      if (proven === null) throw new UnauthorizedError('this task token is bound to a key (DPoP): send it as `Authorization: DPoP` with a `DPoP` proof', 'invalid_token');
      if (proven.jkt !== principal.jkt) throw new DpopError('the `DPoP` proof is signed by another key than the one the task token is bound to');
    } else if (proven !== null) {
      throw new UnauthorizedError('this task token is not bound to a key: send it as `Authorization: Bearer`', 'invalid_token');
    }
    // a token obtained through a trusted issuer is read from the store on every request
    // too (in parallel): removing the issuer ends it at the next request, on every instance
    const loaded =
      principal.issuerId === undefined
        ? await this.store.getTaskWithAgent(principal.taskId)
        : (await Promise.all([this.store.getTaskWithAgent(principal.taskId), this.checkFederatedToken(principal)]))[0];
    if (!loaded || loaded.task.agentId !== principal.agentId) throw new UnauthorizedError('the task token is not valid', 'invalid_token');
    if (loaded.agent.status !== 'active') throw new UnauthorizedError(`agent \`${loaded.agent.id}\` is disabled`, 'agent_disabled');
    if (loaded.task.status !== 'active' || loaded.task.expiresAt <= now) {
      throw new UnauthorizedError(`task \`${loaded.task.id}\` is not active`, 'task_not_active');
    }
    return { principal, task: loaded.task, agent: loaded.agent };
  }

  /**
   * A task token with `fed` must have its issuance record, for this task and issuer,
   * not revoked (the issuer was removed without `keep_issued`). No record: refused.
   */
  private async checkFederatedToken(principal: TaskPrincipal): Promise<void> {
    if (principal.issuerId === undefined) return;
    const t = await this.store.getFederatedToken(principal.jti ?? '');
    if (!t || t.issuerId !== principal.issuerId || t.taskId !== principal.taskId || t.agentId !== principal.agentId) {
      throw new UnauthorizedError('the task token is not valid', 'invalid_token');
    }
    if (t.revokedAt !== null) {
      throw new UnauthorizedError(`the trusted issuer \`${t.issuerId}\` this token was obtained through was removed`, 'issuer_removed');
    }
  }

  /** Verifies the token alone (no task state): for calls allowed after a task ends. */
  async verifyTaskToken(bearer: string): Promise<TaskPrincipal> {
    try {
      const { payload } = await verifyWritJwt(this.keys, bearer, {
        typ: TASK_TOKEN_TYP,
        issuer: this.config.issuer,
        audience: this.config.issuer,
        currentDate: new Date(this.clock.now()),
      });
      if (typeof payload.txn !== 'string' || typeof payload.sub !== 'string') throw new TokenVerificationError('invalid_token', 'the token lacks `txn`');
      if (payload.fed !== undefined && (typeof payload.fed !== 'string' || typeof payload.jti !== 'string')) {
        throw new TokenVerificationError('invalid_token', 'the token has a bad `fed`');
      }
      const principal: TaskPrincipal = { agentId: payload.sub, taskId: payload.txn, tokenExp: payload.exp! };
      if (typeof payload.jti === 'string') principal.jti = payload.jti;
      if (typeof payload.fed === 'string') principal.issuerId = payload.fed;
      if (payload.cnf !== undefined) {
        const jkt = (payload.cnf as { jkt?: unknown } | null)?.jkt;
        if (typeof jkt !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(jkt)) throw new TokenVerificationError('invalid_token', 'the token has a bad `cnf`');
        principal.jkt = jkt;
      }
      return principal;
    } catch (err) {
      if (err instanceof TokenVerificationError) {
        const code = err.reason === 'expired_token' ? 'token_expired' : 'invalid_token';
        throw new UnauthorizedError(err.reason === 'wrong_type' ? 'the token is not a task token' : err.message, code);
      }
      throw err;
    }
  }

  // --- authorize -----------------------------------------------------------------

  /**
   * Rotates Writ's signing key. The replaced keys stay in the JWKS for the longest
   * token lifetime plus a minute, so every token already out verifies until it expires.
   */
  async rotateKeys(by: OperatorRecord): Promise<{ kid: string; previous_retire_at: string }> {
    requireRole(by, 'admin');
    const publish = MAX_TASK_TOKEN_TTL_SECONDS + 60;
    const key = await this.keys.rotate(`operator:${by.id}`, publish);
    return { kid: key.kid, previous_retire_at: new Date(key.createdAt + publish * 1000).toISOString() };
  }

  async listKeys(by: OperatorRecord): Promise<{ kid: string; created_at: string; rotated_at: string | null; retired_at: string | null; signing: boolean }[]> {
    requireRole(by, 'admin', 'auditor');
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    return (await this.store.listSigningKeys()).map((k) => ({
      kid: k.kid,
      created_at: new Date(k.createdAt).toISOString(),
      rotated_at: iso(k.rotatedAt),
      retired_at: iso(k.retiredAt),
      signing: k.rotatedAt === null,
    }));
  }

  /**
   * Of `tools`, those this task could be allowed to call: inside its scope, and not
   * denied by policy whatever the call's details (partial evaluation). For listing
   * (an MCP gateway's tools/list); every call is still decided on its own.
   */
  async visibleTools(ctx: { task: TaskRecord; agent: AgentRecord }, tools: string[]): Promise<string[]> {
    const max = this.config.visibleToolsMax;
    if (tools.length > max) {
      throw new InvalidRequestError(`\`tools\` lists ${tools.length} tools; at most ${max} per request (ask in batches)`, undefined, 'too_many_tools');
    }
    const limited = this.visibleToolsRate.check(ctx.task.id);
    if (limited.blocked) {
      throw new RateLimitedError(`task \`${ctx.task.id}\` asked for visible tools ${limited.count} times in ${this.visibleToolsRate.windowMs} ms; retry later`, {
        retryAfterSeconds: limited.retryAfterMs / 1000,
      });
    }
    this.visibleToolsRate.record(ctx.task.id);
    const set = await this.currentPolicy();
    const now = this.clock.now();
    const out: string[] = [];
    // Each partial evaluation runs on the event loop: give it back every few ms, so one
    // long list does not hold up every other request.
    let sliceStart = performance.now();
    for (const tool of tools) {
      if (!matchesAny(ctx.task.scope.tools, tool)) continue;
      const toolLabels = await this.toolLabels.labelsFor(tool);
      let visible = this.toolVisibility.get(ctx.task.id, set.version, tool, toolLabels);
      if (visible === undefined) {
        const request = buildCedarRequest({
          agent: ctx.agent, task: ctx.task, action: { tool, arguments: {}, audience: '' }, argsDigest: '', now, withArgs: false, toolLabels,
        });
        visible = this.policy.couldAllow(request, set) !== 'deny';
        this.toolVisibility.set(ctx.task.id, set.version, tool, toolLabels, visible);
        if (performance.now() - sliceStart >= 5) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          sliceStart = performance.now();
        }
      }
      if (visible) out.push(tool);
    }
    return out;
  }

  /** Sets the labels policy sees on the tools matching `pattern`; no labels removes the entry. */
  async putToolLabels(by: OperatorRecord, pattern: string, labels: string[]): Promise<ToolLabelsRecord> {
    requireRole(by, 'admin');
    const record: ToolLabelsRecord = { pattern, labels: [...new Set(labels)].sort(), updatedAt: this.clock.now(), updatedBy: by.id };
    await this.store.putToolLabels(record, { type: 'tool.labels_set', actor: `operator:${by.id}`, data: { pattern, labels: record.labels } });
    this.toolLabels.invalidate();
    return record;
  }

  async listToolLabels(by: OperatorRecord): Promise<ToolLabelsRecord[]> {
    requireRole(by, 'admin', 'auditor', 'approver', 'requester');
    return this.store.listToolLabels();
  }

  /** Re-reads the active policy at most once a second, so a PUT on one instance reaches all. */
  private async currentPolicy(): Promise<LoadedPolicySet> {
    const now = this.clock.now();
    if (now - this.policyCheckedAt >= 1000 || !this.policy.activeOrNull()) {
      this.policyCheckedAt = now;
      const active = await this.store.getActivePolicy();
      if (active && active.version !== this.policy.activeOrNull()?.version) await this.loadStored(active.text);
    }
    const set = this.policy.activeOrNull();
    if (!set) throw new UnavailableError('no policy set is loaded', undefined, 'policy_unavailable');
    return set;
  }

  /**
   * Decides one action: the authorize pipeline (src/authorize/pipeline.ts: bounds,
   * facts, a pure decide step, commit).
   */
  authorize(ctx: { task: TaskRecord; agent: AgentRecord }, action: ActionInput): Promise<AuthorizeResult> {
    return this.pipeline.authorize(ctx, action);
  }

  // --- action tokens -------------------------------------------------------------

  /** Verifies an action token Writ signed; `audience` (when given) must be its `aud`. */
  async verifyActionToken(token: string, audience?: string): Promise<ActionTokenClaims> {
    try {
      const { payload } = await verifyWritJwt(this.keys, token, {
        typ: ACTION_TOKEN_TYP,
        issuer: this.config.issuer,
        audience,
        currentDate: new Date(this.clock.now()),
      });
      const p = payload as unknown as ActionTokenClaims;
      if (typeof p.txn !== 'string' || typeof p.decision_id !== 'string' || typeof p.aud !== 'string') {
        throw new TokenVerificationError('invalid_token', 'the token lacks action claims');
      }
      return p;
    } catch (err) {
      if (err instanceof TokenVerificationError) {
        const code = err.reason === 'expired_token' ? 'token_expired' : err.reason === 'wrong_audience' ? 'wrong_audience' : 'invalid_token';
        throw new UnauthorizedError(err.reason === 'wrong_type' ? 'the token is not an action token' : err.message, code);
      }
      throw err;
    }
  }

  /**
   * Consumes an action token once (a tool server calls this before acting). The
   * first call answers the claims; every later one 409 `token_already_used`.
   */
  async consume(token: string, audience: string): Promise<{ claims: ActionTokenClaims }> {
    // Without an audience any holder could burn the token at any tool server (item 9, issue 10).
    if (typeof audience !== 'string' || audience.length === 0) throw new InvalidRequestError('`audience` is required: the tool server names itself');
    let claims: ActionTokenClaims;
    try {
      claims = await this.verifyActionToken(token, audience);
    } catch (err) {
      if (err instanceof WritError) await this.securityEvent('action.refused', 'anonymous', { reason: err.code });
      throw err;
    }
    const task = await this.store.getTask(claims.txn);
    if (!task || task.status !== 'active' || task.expiresAt <= this.clock.now()) {
      await this.securityEvent('action.refused', `agent:${claims.sub}`, { reason: 'task_not_active', jti: claims.jti }, { taskId: claims.txn, agentId: claims.sub, decisionId: claims.decision_id });
      throw new ForbiddenError(`task \`${claims.txn}\` is not active`, 'task_not_active');
    }
    const first = await this.store.useOnce(`action:${claims.jti}`, claims.exp * 1000, {
      type: 'action.consumed',
      actor: `audience:${claims.aud}`,
      taskId: claims.txn,
      agentId: claims.sub,
      decisionId: claims.decision_id,
      data: { jti: claims.jti, tool: claims.tool, audience: claims.aud, args_digest: claims.args_digest },
    });
    if (!first) {
      await this.securityEvent('action.replayed', `audience:${claims.aud}`, { jti: claims.jti }, { taskId: claims.txn, agentId: claims.sub, decisionId: claims.decision_id });
      throw new ConflictError('the action token was used before', 'token_already_used');
    }
    return { claims };
  }

  /**
   * Records an allowed action's outcome. It is written with the next batch of decisions
   * (no durable write of its own: src/audit/decision-committer.ts). `wait: false` answers
   * once it is checked and queued, not written: for a caller that never waits on it (the
   * MCP gateway reports every call's outcome off the call's path).
   */
  async reportOutcome(
    principal: TaskPrincipal,
    decisionId: string,
    input: { status: 'succeeded' | 'failed'; detail?: string },
    options: { wait?: boolean } = {},
  ): Promise<{ decision_id: string; status: string }> {
    const d = await this.store.getDecision(decisionId);
    if (!d || d.taskId !== principal.taskId) throw new NotFoundError(`decision \`${decisionId}\` does not exist`, 'decision_not_found');
    if (d.decision !== 'allow') throw new ConflictError('only an allowed action has an outcome', 'not_allowed_decision');
    if (d.outcome !== null || this.outcomesQueued.has(decisionId)) throw new ConflictError('the outcome was reported before', 'outcome_already_reported');
    this.outcomesQueued.add(decisionId);
    const written = this.committer
      .submitOutcome({
        decisionId,
        outcome: input.status,
        audit: { type: 'action.outcome', actor: `agent:${principal.agentId}`, taskId: d.taskId, agentId: d.agentId, decisionId, data: { status: input.status, detail: input.detail ?? null } },
      })
      .finally(() => this.outcomesQueued.delete(decisionId));
    if (options.wait === false) {
      void written.catch(() => undefined);
      return { decision_id: decisionId, status: input.status };
    }
    const ok = await written;
    if (ok === 'failed') throw new UnavailableError('the outcome could not be written; report it again');
    if (!ok) throw new ConflictError('the outcome was reported before', 'outcome_already_reported');
    return { decision_id: decisionId, status: input.status };
  }

  /** RFC 7662 token introspection for task and action tokens. */
  async introspect(by: OperatorRecord, token: string): Promise<Record<string, unknown>> {
    requireRole(by, 'admin', 'auditor', 'approver');
    let typ: unknown;
    try {
      typ = decodeProtectedHeader(token).typ;
    } catch {
      return { active: false };
    }
    try {
      const now = this.clock.now();
      if (typ === TASK_TOKEN_TYP) {
        const p = await this.verifyTaskToken(token);
        await this.checkFederatedToken(p);
        const task = await this.store.getTask(p.taskId);
        const agent = task ? await this.store.getAgent(task.agentId) : null;
        const active = !!task && task.status === 'active' && task.expiresAt > now && agent?.status === 'active';
        return active ? { active: true, token_type: TASK_TOKEN_TYP, sub: p.agentId, txn: p.taskId, exp: p.tokenExp, iss: this.config.issuer, ...(p.jkt === undefined ? {} : { cnf: { jkt: p.jkt } }) } : { active: false };
      }
      if (typ === ACTION_TOKEN_TYP) {
        const c = await this.verifyActionToken(token);
        const task = await this.store.getTask(c.txn);
        const used = (await this.store.listAudit({ decisionId: c.decision_id, type: 'action.consumed', limit: 1 })).length > 0;
        const active = !!task && task.status === 'active' && task.expiresAt > now && !used;
        return active ? { active: true, token_type: ACTION_TOKEN_TYP, ...c } : { active: false };
      }
    } catch (err) {
      if (err instanceof UnauthorizedError) return { active: false };
      throw err;
    }
    return { active: false };
  }

  // --- policy ---------------------------------------------------------------------

  /**
   * Stores `text` and makes it the active set. With `ifMatch` (the `If-Match` of the PUT,
   * RFC 9110 §13.1.1) only if that version is still the active one, compared inside the
   * store's transaction: two operators editing the same version cannot overwrite each
   * other (412 `policy_version_mismatch`). The audit entry records the diff's SHA-256.
   */
  async putPolicy(
    actor: OperatorRecord | 'system',
    text: string,
    options: { ifMatch?: string; promote?: string } = {},
  ): Promise<{ version: string; policies: string[]; warnings: PolicyDiagnostic[]; previous: string | null; diff_sha256: string }> {
    if (actor !== 'system') requireRole(actor, 'admin');
    // checked before any of it reaches this process's Cedar instance (src/policy/complexity.ts, policy-trial.ts)
    await this.checkNewPolicy(text);
    const set = this.policy.prepare(text);
    const previous = options.ifMatch !== undefined ? await this.store.getPolicy(options.ifMatch) : await this.store.getActivePolicy();
    if (options.ifMatch !== undefined && !previous) {
      throw new PreconditionFailedError(`no policy version \`${options.ifMatch.slice(0, 80)}\` was ever stored`, 'policy_version_mismatch');
    }
    const diff = diffPolicyText(previous?.text ?? '', text);
    const diffSha256 = diffHash(diff);
    await this.store.putPolicy(
      { version: set.version, text, createdAt: this.clock.now(), createdBy: actor === 'system' ? 'system' : actor.id },
      {
        type: 'policy.updated',
        actor: actor === 'system' ? 'system' : `operator:${actor.id}`,
        data: {
          version: set.version, policies: set.policyIds, previous: previous?.version ?? null, diff_sha256: diffSha256,
          // made live from the shadow candidate (./policy-shadow.ts), which ends in the same transaction
          ...(options.promote !== undefined ? { promoted_from_shadow: true } : {}),
        },
      },
      { ...(options.ifMatch !== undefined ? { ifActive: options.ifMatch } : {}), ...(options.promote !== undefined ? { promote: options.promote } : {}) },
    );
    // active only once stored: a failed store leaves the previous set in force
    this.policy.activate(set);
    this.refusedVersions.delete(set.version);
    this.policyCheckedAt = this.clock.now();
    return { version: set.version, policies: set.policyIds, warnings: set.warnings, previous: previous?.version ?? null, diff_sha256: diffSha256 };
  }

  async getPolicy(by: OperatorRecord): Promise<{ version: string; policies: string; ids: string[] }> {
    requireRole(by, 'admin', 'auditor', 'approver', 'requester');
    const set = await this.currentPolicy();
    return { version: set.version, policies: set.text, ids: set.policyIds };
  }

  /**
   * Replays recorded decisions under a candidate set without storing or activating it
   * (./policy-simulate.ts). The candidate passes the checks a new set passes first.
   */
  async simulatePolicy(by: OperatorRecord, text: string, opts: { sinceMs: number; limit: number; examples: number }): Promise<SimulationReport> {
    requireRole(by, 'admin', 'auditor');
    await this.checkNewPolicy(text);
    // held for the replay only: a candidate nobody loaded otherwise is released after it
    const set = this.policy.hold(text);
    try {
      return await simulatePolicy({ store: this.store, engine: this.policy, toolLabels: (t) => this.toolLabels.labelsFor(t) }, set, opts);
    } finally {
      this.policy.letGo(set.version);
    }
  }

  /** One stored version's text (every version ever set is kept), for diff and rollback. */
  async getPolicyVersion(by: OperatorRecord, version: string): Promise<PolicyRecord> {
    requireRole(by, 'admin', 'auditor', 'approver', 'requester');
    const p = await this.store.getPolicy(version);
    if (!p) throw new NotFoundError(`no policy version \`${version.slice(0, 80)}\``, 'policy_version_not_found');
    return p;
  }

  /**
   * The policy changes, newest first: who set which version when, its previous version,
   * the diff between them and its SHA-256 (as audited). Read from the audit log, whose
   * `policy.updated` entries are the record of every change (rollbacks included).
   */
  async listPolicyHistory(by: OperatorRecord, limit: number): Promise<PolicyChange[]> {
    requireRole(by, 'admin', 'auditor');
    const entries: AuditEntry[] = [];
    for (let after = 0; ; ) {
      const page = await this.store.listAudit({ type: 'policy.updated', after, limit: 1000 });
      entries.push(...page);
      if (page.length < 1000) break;
      after = page[page.length - 1]!.seq;
    }
    const texts = new Map<string, string | null>();
    const textOf = async (v: string | null): Promise<string | null> => {
      if (v === null) return null;
      if (!texts.has(v)) texts.set(v, (await this.store.getPolicy(v))?.text ?? null);
      return texts.get(v)!;
    };
    const out: PolicyChange[] = [];
    for (const e of entries.reverse().slice(0, limit)) {
      const version = typeof e.data.version === 'string' ? e.data.version : null;
      if (!version) continue;
      const previous = typeof e.data.previous === 'string' ? e.data.previous : null;
      const [before, after] = [await textOf(previous), await textOf(version)];
      const diff = after === null ? null : diffPolicyText(before ?? '', after);
      out.push({
        seq: e.seq, version, previous, set_by: e.actor, set_at: new Date(e.ts).toISOString(),
        diff_sha256: typeof e.data.diff_sha256 === 'string' ? e.data.diff_sha256 : null, diff,
      });
    }
    return out;
  }

  // --- audit ------------------------------------------------------------------------

  async listAudit(by: OperatorRecord, filter: AuditFilter): Promise<AuditEntry[]> {
    requireRole(by, 'admin', 'auditor');
    return this.store.listAudit(filter);
  }

  /**
   * Verifies the chain; with `checkpoints` (JWS strings from `checkpointAudit`, kept
   * outside the database), also that the chain still agrees with each of them.
   */
  async verifyAudit(by: OperatorRecord, checkpoints: string[] = []): Promise<ChainReport> {
    requireRole(by, 'admin', 'auditor');
    const pins = [];
    for (const [i, token] of checkpoints.entries()) {
      try {
        // the checkpoint keys only, never a token key: a leaked token key cannot forge one
        const keys = { keys: (await this.store.listCheckpointKeys()).map((k) => k.publicJwk) };
        pins.push(await verifyCheckpoint(token, keys as never, this.config.issuer));
      } catch {
        throw new InvalidRequestError(`checkpoint ${i} does not verify with this issuer's checkpoint key`, undefined, 'invalid_checkpoint');
      }
    }
    return verifyChain(this.store, 1000, { checkpoints: pins });
  }

  /** Signs the chain's current head; the checkpoint is audited, and meant to be kept elsewhere. */
  async checkpointAudit(by: OperatorRecord): Promise<{ seq: number; hash: string; checkpoint: string; tree: { size: number; note: string } | null }> {
    requireRole(by, 'admin', 'auditor');
    const head = await this.store.auditHead();
    if (!head) throw new ConflictError('the audit log is empty', 'audit_empty');
    const checkpoint = this.checkpointKey.sign(CHECKPOINT_TYP, checkpointClaims(this.config.issuer, head, this.clock.now()));
    await this.store.appendAudit([{ type: 'audit.checkpoint', actor: `operator:${by.id}`, data: { seq: head.seq, hash: head.hash } }]);
    // and, on demand, a C2SP checkpoint of the Merkle tree covering the log so far
    const tree = await signCheckpoint(this.evidenceContext());
    return { seq: head.seq, hash: head.hash, checkpoint, tree: tree ? { size: tree.size, note: tree.note } : null };
  }

  // --- audit evidence (Merkle checkpoints, proofs, export, trace) -------------------------

  /** The package version, for exports. */
  get version(): string {
    return WRIT_VERSION;
  }

  requireAuditor(by: OperatorRecord): void {
    requireRole(by, 'admin', 'auditor');
  }

  evidenceContext(): EvidenceContext {
    // The C2SP note signer uses the checkpoint key (never a token key); its name is the
    // log's origin, which follows the issuer (set late when the port is chosen at start).
    const origin = checkpointOrigin(this.config.issuer);
    if (!this.noteSigner || this.noteSigner.name !== origin) {
      try {
        this.noteSigner = createNoteSigner(origin, this.checkpointKey.signingKey());
      } catch {
        throw new UnavailableError('the audit checkpoint key is not loaded');
      }
    }
    return { store: this.store, signer: this.noteSigner, origin, now: () => this.clock.now() };
  }

  /**
   * What a trace is about: a decision id, an action token (its `decision_id` claim: the
   * token is only a handle here, the story comes from the log), or a task id.
   */
  async traceSubject(id: string): Promise<{ kind: 'decision' | 'task'; id: string }> {
    if (/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(id)) {
      let claims: Record<string, unknown>;
      try {
        claims = decodeJwt(id);
      } catch {
        throw new InvalidRequestError('the token cannot be decoded', undefined, 'invalid_token');
      }
      if (typeof claims.decision_id !== 'string') throw new InvalidRequestError('the token is not an action token (no `decision_id`)', undefined, 'invalid_token');
      return { kind: 'decision', id: claims.decision_id };
    }
    if (id.startsWith('dec_')) return { kind: 'decision', id };
    return { kind: 'task', id };
  }

  /** Signs a checkpoint when entries arrived since the last one (called every minute while running). */
  private async checkpointIfDue(): Promise<void> {
    const head = await this.store.auditHead();
    const latest = await this.store.latestAuditCheckpoint();
    if (head && (!latest || latest.size < head.seq)) await signCheckpoint(this.evidenceContext());
  }

  /** Records a security event (a refused credential, a replay); never blocks the refusal. */
  async securityEvent(type: string, actor: string, data: Record<string, unknown>, ids: { taskId?: string; agentId?: string; decisionId?: string } = {}): Promise<void> {
    await this.securityAudit.append({ type, actor, data, ...ids });
  }

  async ready(): Promise<{ store: boolean; keys: boolean; policy: boolean }> {
    let store = true;
    try {
      await this.store.ping();
    } catch {
      store = false;
    }
    return { store, keys: this.keys.ready(), policy: this.policy.activeOrNull() !== null };
  }
}

function hasRole(op: OperatorRecord, ...roles: OperatorRole[]): boolean {
  return op.roles.includes('admin') || roles.some((r) => op.roles.includes(r));
}

function requireRole(op: OperatorRecord, ...roles: OperatorRole[]): void {
  if (!hasRole(op, ...roles)) {
    throw new ForbiddenError(`this needs the role ${roles.map((r) => `\`${r}\``).join(' or ')}`, 'insufficient_role');
  }
}

export { ROLE_ORDER };
