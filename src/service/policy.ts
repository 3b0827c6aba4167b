import type { Clock } from '../core/clock.js';
import { NotFoundError, UnavailableError, WritError, PreconditionFailedError } from '../core/errors.js';
import type { AuditEntry, OperatorRecord, TaskRecord, ToolLabelsRecord, PolicyRecord } from '../core/types.js';
import { PolicyEngine, policyVersion, type LoadedPolicySet, type PolicyDiagnostic } from '../policy/engine.js';
import { diffHash, diffPolicyText } from '../policy/policy-diff.js';
import { simulatePolicy, type SimulationReport } from './policy-simulate.js';
import { PolicyShadow } from './policy-shadow.js';
import { checkPolicyComplexity } from '../policy/complexity.js';
import { trialPolicySet } from '../policy/policy-trial.js';
import type { ServiceDeps } from './deps.js';
import { DEFAULT_POLICY, WRIT_SCHEMA } from '../policy/schema.js';
import { ToolLabelRegistry } from './tool-labels.js';
import type { Store } from '../store/store.js';
import type { WritConfig } from './config.js';
import { requireRole } from '../core/roles.js';

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

/**
 * Policy: the active Cedar set (checked, stored, re-read by every instance), its history,
 * simulation and staged rollout (the shadow candidate), and the tool labels policy sees.
 * The evaluation itself is pure (src/policy); this service holds what is stored.
 */
export class PolicyService {
  readonly engine: PolicyEngine;
  readonly toolLabels: ToolLabelRegistry;
  /** the shadow candidate of a staged rollout (./policy-shadow.ts) */
  readonly shadow: PolicyShadow;
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly config: WritConfig;
  private policyCheckedAt = 0;

  constructor(private readonly deps: ServiceDeps & { ownerPresent: (task: TaskRecord, now: number) => Promise<boolean> }) {
    this.store = deps.store;
    this.clock = deps.clock;
    this.config = deps.config;
    this.engine = new PolicyEngine({
      limits: { maxDepth: this.config.policyMaxDepth, maxTokens: this.config.policyMaxTokens },
      workers: this.config.policyWorkers,
      workerTimeoutMs: this.config.policyWorkerTimeoutMs,
    });
    // A Cedar trap replaced the engine's WebAssembly instance (the request that hit it was denied): loud, never silent.
    this.engine.onTrap = (t) => void deps.audit.securityEvent('policy.engine_reset', 'system', { operation: t.operation, error: t.message }).catch(() => undefined);
    this.toolLabels = new ToolLabelRegistry(deps.store, deps.clock);
    this.shadow = new PolicyShadow({
      store: deps.store, clock: deps.clock, engine: this.engine,
      checkNewPolicy: (text) => this.checkNewPolicy(text),
      ownerPresent: deps.ownerPresent,
      putLive: (by, text, options) => this.putPolicy(by, text, options),
      securityEvent: (type, actor, data) => deps.audit.securityEvent(type, actor, data),
    });
  }

  /** The labels policy sees on a tool. */
  labelsFor(tool: string): Promise<string[]> {
    return this.toolLabels.labelsFor(tool);
  }

  async close(): Promise<void> {
    await this.shadow.close();
    await this.engine.close();
  }

  /**
   * Migrates the store, loads keys and the active policy (installing the default on a
   * new store). Every step is safe when instances start together on one empty store:
   * migrations take turns under a lock, and the first key, checkpoint key and policy are
   * each written only while none exists, atomically; the later instances load them.
   */
  /**
   * Loads the active policy, installing the default on a new store (only while no set is
   * active, atomically: instances starting together install it once). After migration.
   */
  async init(): Promise<void> {
    if (!(await this.store.getActivePolicy())) {
      // a new store: the default set, checked like any other, installed only while no set
      // is active (instances starting together install it once; the others load it)
      await this.checkNewPolicy(DEFAULT_POLICY);
      const set = this.engine.prepare(DEFAULT_POLICY);
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
      const set = this.engine.prepare(text);
      this.engine.activate(set);
      return set;
    } catch (err) {
      if (!(err instanceof WritError)) throw err;
      const e = new UnavailableError(`the active policy set (version \`${version}\`) cannot be loaded: ${err.message}`, err, 'policy_unavailable');
      if (this.refusedVersions.size > 100) this.refusedVersions.clear();
      this.refusedVersions.set(version, e);
      await this.deps.audit.securityEvent('policy.refused', 'system', { version, code: err.code, error: err.message.slice(0, 300) }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * The checks a policy set passes before it is stored or loaded: the cheap scan of its
   * text (depth, size, \`like\` patterns), then one trial in a throwaway worker (load, a
   * full decision, a partial evaluation). A set this engine has loaded already passed.
   */
  async checkNewPolicy(text: string): Promise<void> {
    if (this.engine.isLoaded(policyVersion(text))) return;
    checkPolicyComplexity(text, this.engine.limits);
    // the built-in default is ours and tested: no worker for every new store
    if (text === DEFAULT_POLICY) return;
    await trialPolicySet({ text, schema: WRIT_SCHEMA, ...PolicyEngine.trialCalls(), timeoutMs: this.config.policyTrialTimeoutMs });
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
  async currentPolicy(): Promise<LoadedPolicySet> {
    const now = this.clock.now();
    if (now - this.policyCheckedAt >= 1000 || !this.engine.activeOrNull()) {
      this.policyCheckedAt = now;
      const active = await this.store.getActivePolicy();
      if (active && active.version !== this.engine.activeOrNull()?.version) await this.loadStored(active.text);
    }
    const set = this.engine.activeOrNull();
    if (!set) throw new UnavailableError('no policy set is loaded', undefined, 'policy_unavailable');
    return set;
  }

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
    const set = this.engine.prepare(text);
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
    this.engine.activate(set);
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
    const set = this.engine.hold(text);
    try {
      return await simulatePolicy({ store: this.store, engine: this.engine, toolLabels: (t) => this.toolLabels.labelsFor(t) }, set, opts);
    } finally {
      this.engine.letGo(set.version);
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
}
