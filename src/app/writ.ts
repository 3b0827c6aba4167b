import { DecisionCommitter } from '../audit/decision-committer.js';
import { DecisionCommit } from '../authorize/commit.js';
import { AuthorizePipeline } from '../authorize/pipeline.js';
import { ApprovalService } from '../approvals/service.js';
import { BreakGlassService } from '../breakglass/service.js';
import { systemClock, type Clock } from '../core/clock.js';
import { AuditService } from '../service/audit.js';
import { AuthorizeService } from '../service/authz.js';
import { resolveConfig, type WritConfig } from '../service/config.js';
import type { SecurityAudit, ServiceDeps } from '../service/deps.js';
import { IdentityService } from '../service/identity.js';
import { WritMetrics } from '../service/metrics.js';
import { PolicyService } from '../service/policy.js';
import { TaskService } from '../service/tasks.js';
import { TokenService } from '../service/tokens.js';
import type { Writ as WritServices } from '../service/writ.js';
import type { Store } from '../store/store.js';
import { TaskEndings } from '../tasks/endings.js';
import { PresenceService } from '../tasks/presence.js';
import { KeyRing } from '../tokens/key-ring.js';
import { deriveKeyEncryptionKey } from '../tokens/key-sealing.js';

/**
 * The wiring (issue 11 item 3): one service per aggregate, each given its dependencies
 * `{store, clock, config, audit}` and the few services it calls, explicitly. Nothing but
 * the CLI (and tests, benchmarks) imports this; the server and the gateway are typed
 * against the services (src/service/writ.ts). Background work and shutdown live here.
 */
export class Writ implements WritServices {
  readonly config: WritConfig;
  readonly clock: Clock;
  /** Prometheus metrics of this instance (src/service/metrics.ts) */
  readonly metrics: WritMetrics;
  readonly audit: AuditService;
  readonly identity: IdentityService;
  readonly tokens: TokenService;
  readonly tasks: TaskService;
  readonly policy: PolicyService;
  /** authorize, outcomes and visible tools (src/authorize: the one pipeline) */
  readonly authz: AuthorizeService;
  /** approvals bound to one action (src/approvals) */
  readonly approvals: ApprovalService;
  /** break-glass (src/breakglass) */
  readonly breakGlass: BreakGlassService;
  /** owner presence leases (src/tasks/presence.ts) */
  readonly presence: PresenceService;
  private readonly keys: KeyRing;
  private readonly committer: DecisionCommitter;
  private readonly endings = new TaskEndings();
  private sweepTimer: NodeJS.Timeout | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly store: Store,
    config: Partial<WritConfig> & { issuer: string },
    clock: Clock = systemClock,
  ) {
    this.config = resolveConfig(config);
    this.clock = clock;
    const kek = this.config.keyEncryptionKey ? deriveKeyEncryptionKey(this.config.keyEncryptionKey) : null;
    this.keys = new KeyRing(store, clock, kek);
    this.audit = new AuditService({ store, clock, config: this.config, kek });
    const audit: SecurityAudit = this.audit;
    const deps: ServiceDeps = { store, clock, config: this.config, audit };
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
    this.identity = new IdentityService({ ...deps, endings: this.endings, keys: this.keys });
    this.tokens = new TokenService({ ...deps, keys: this.keys, federation: this.identity.federation, endings: this.endings });
    this.presence = new PresenceService(deps);
    this.breakGlass = new BreakGlassService(deps);
    this.tasks = new TaskService({ ...deps, endings: this.endings, presence: this.presence, metrics: this.metrics });
    this.policy = new PolicyService({ ...deps, ownerPresent: (task, now) => this.presence.ownerPresent(task, now) });
    const pipeline = new AuthorizePipeline({
      store, clock, config: this.config, securityEvent: (...a) => audit.securityEvent(...a), engine: this.policy.engine,
      currentPolicy: () => this.policy.currentPolicy(),
      toolLabels: (tool) => this.policy.labelsFor(tool),
      ownerPresent: (task, now) => this.presence.ownerPresent(task, now),
      shadow: this.policy.shadow,
      commit: new DecisionCommit({ store, config: this.config, keys: this.keys, committer: this.committer, metrics: this.metrics, securityEvent: (...a) => audit.securityEvent(...a) }),
      metrics: this.metrics,
    });
    this.authz = new AuthorizeService({ ...deps, pipeline, committer: this.committer, policy: this.policy });
    this.approvals = new ApprovalService({ ...deps, pipeline });
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
    await this.audit.checkpointKey.init();
    await this.policy.init();
  }

  startBackgroundWork(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = setInterval(() => {
      const now = this.clock.now();
      this.store.expireTasks(now).then((ids) => this.endings.announce(ids), () => undefined);
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
      this.audit.checkpointIfDue().catch(() => undefined);
    }, this.config.checkpointIntervalMs);
    this.checkpointTimer.unref();
  }

  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    this.sweepTimer = null;
    // pending group commits reach the store before it closes (graceful shutdown)
    await Promise.all([this.committer.drain(), this.audit.drain(), this.policy.shadow.close(), this.tasks.close()]);
    await this.policy.engine.close();
    this.checkpointTimer = null;
    await this.store.close();
  }

  async ready(): Promise<{ store: boolean; keys: boolean; policy: boolean }> {
    let store = true;
    try {
      await this.store.ping();
    } catch {
      store = false;
    }
    return { store, keys: this.keys.ready(), policy: this.policy.engine.activeOrNull() !== null };
  }
}
