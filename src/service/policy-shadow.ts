import { decideLifting } from '../authorize/decide-lifting.js';
import type { Clock } from '../core/clock.js';
import { ConflictError, ForbiddenError, NotFoundError, PreconditionFailedError, WritError } from '../core/errors.js';
import type { OperatorRecord, OperatorRole, Reason, ShadowDecisionRecord, ShadowPolicyRecord, TaskRecord } from '../core/types.js';
import type { LoadedPolicySet, PolicyDiagnostic, PolicyEngine } from '../policy/engine.js';
import { diffHash, diffPolicyText } from '../policy/policy-diff.js';
import { argumentsProblem, flattenArguments, type RequestFacts } from '../policy/request.js';
import type { Store } from '../store/store.js';
import { POLICY_REASONS } from './policy-simulate.js';

/**
 * Staged rollout (issue 14 item 6): one candidate policy set is evaluated beside the
 * live one on real traffic; both decisions are recorded, only the live one is enforced.
 *
 * - The candidate lives in the store (`policy_shadow`), so every instance evaluates it:
 *   each re-reads it at most once a second while it decides (as the live set is
 *   re-read), and loads it only after the checks a new set passes (complexity scan,
 *   trial run), in the background, never on a request.
 * - `observe` is the one call the authorize path makes. It returns at once and never
 *   throws: the candidate is decided after the live evaluation was started (on the next
 *   turn of the event loop, or on a policy worker), at most `MAX_IN_FLIGHT` at a time,
 *   and its decision is written beside the live record by a batched writer. Nothing the
 *   candidate does can change, fail or hold up the live decision; a candidate that
 *   cannot be evaluated (not loadable, too many in flight, a failing worker) is recorded
 *   as a shadow `error` with the reason.
 * - Shadow decisions are not audit entries (they enforce nothing, and would double the
 *   log); setting, promoting and dropping the candidate are audited.
 * - A new live set keeps the candidate (it is then compared with the new live set); a
 *   promotion ends it in the same transaction that makes it live.
 */

/** evaluations of the candidate running at once; past it, a request's shadow is recorded as an error */
export const MAX_IN_FLIGHT = 64;
/** how much earlier than the candidate's `set_at` the report looks (other instances' clocks) */
const CLOCK_SKEW_MS = 5_000;
/** shadow decisions waiting to be written; past it they are counted and dropped */
const MAX_PENDING = 10_000;

export interface PolicyShadowDeps {
  store: Store;
  clock: Clock;
  engine: PolicyEngine;
  /** the checks a set passes before it is stored or loaded (Writ.checkNewPolicy) */
  checkNewPolicy: (text: string) => Promise<void>;
  /** the owner's presence, when the candidate reads it and the live set does not */
  ownerPresent: (task: TaskRecord, now: number) => Promise<boolean>;
  /** makes a set live (Writ.putPolicy): with `promote`, ending the candidate in the same transaction */
  putLive: (by: OperatorRecord, text: string, options: { ifMatch?: string; promote: string }) => Promise<Record<string, unknown> & { version: string }>;
  securityEvent: (type: string, actor: string, data: Record<string, unknown>) => Promise<void>;
}

interface Candidate {
  record: ShadowPolicyRecord;
  set: LoadedPolicySet;
}

interface ShadowExample {
  decision_id: string;
  tool: string;
  at: string;
  live: { decision: string; reasons: string[]; policy_version: string };
  candidate: { decision: string; reasons: string[]; policies: string[] };
}

export interface ShadowReport {
  candidate: { version: string; set_by: string; set_at: string; policies: string };
  live_version: string | null;
  /** shadow decisions looked at (newest first, at most `limit`) */
  considered: number;
  /** the live decision was settled outside policy after the candidate was asked (budget or task state at commit) */
  decided_outside_policy: number;
  agreed: number;
  differed: number;
  /** counted by tool and by `live -> candidate (reason)`, with examples */
  differences: { by_tool: Record<string, number>; by_reason: Record<string, number>; examples: ShadowExample[] };
  /** the candidate could not be evaluated for these requests (the live decision stood) */
  errors: { count: number; by_reason: Record<string, number>; examples: ShadowExample[] };
  /** more shadow decisions are recorded than `limit` */
  truncated: boolean;
}

export class PolicyShadow {
  private candidate: Candidate | null = null;
  /** a stored candidate this instance could not load: each request's shadow is recorded as an error */
  private refused: { version: string; message: string } | null = null;
  /** bumped on every local change, so a slower refresh does not undo a newer one */
  private generation = 0;
  private checkedAt = -Infinity;
  private refreshing: Promise<void> | null = null;
  private inFlight = 0;
  private pending: ShadowDecisionRecord[] = [];
  private flushing: Promise<void> | null = null;
  private closed = false;
  /** shadow decisions not written (the store failed, or too many waited) */
  lost = 0;

  constructor(private readonly deps: PolicyShadowDeps) {}

  /** The loaded candidate's version, if any (tests, readiness). */
  get candidateVersion(): string | null {
    return this.candidate?.set.version ?? null;
  }

  // --- the authorize path ---------------------------------------------------------

  /**
   * Evaluates the candidate on this request's facts and records its decision beside the
   * live one (`decisionId`). Returns at once and never throws (see the file comment).
   */
  observe(input: { decisionId: string; facts: RequestFacts; now: number }): void {
    try {
      this.refreshSoon();
      const c = this.candidate;
      if (this.refused && !c) {
        this.queue(errorRow(this.refused.version, input, 'shadow_unavailable', `the candidate cannot be loaded: ${this.refused.message}`));
        return;
      }
      if (!c || this.closed) return;
      if (this.inFlight >= MAX_IN_FLIGHT) {
        this.queue(errorRow(c.set.version, input, 'shadow_overloaded', `more than ${MAX_IN_FLIGHT} candidate evaluations were running`));
        return;
      }
      this.inFlight += 1;
      // after the live evaluation was started (it is called in this same turn)
      setImmediate(() => {
        this.decide(c.set, input)
          .catch((err: unknown) => errorRow(c.set.version, input, 'shadow_error', `the candidate's evaluation failed: ${String((err as Error)?.message ?? err).slice(0, 300)}`))
          .then((row) => {
            // a candidate replaced or dropped meanwhile: its answer is not kept
            if (this.candidate?.set.version === c.set.version) this.queue(row);
          })
          .finally(() => {
            this.inFlight -= 1;
          });
      });
    } catch {
      // the shadow never fails the live decision
    }
  }

  /** What the candidate decides for these facts, as the authorize path decides under the live set. */
  private async decide(set: LoadedPolicySet, input: { decisionId: string; facts: RequestFacts; now: number }): Promise<ShadowDecisionRecord> {
    const { engine } = this.deps;
    const live = input.facts;
    const row = (decision: ShadowDecisionRecord['decision'], reasons: Reason[], policies: string[]): ShadowDecisionRecord => ({
      decisionId: input.decisionId, candidateVersion: set.version, decision, reasons, policies, createdAt: input.now,
    });
    // the facts as the candidate reads them (the live set may read other arguments, or none)
    const facts: RequestFacts = { ...live, withArgs: set.readsArgs, argReads: { numeric: set.numericTagsRead, strings: set.stringTagsRead } };
    delete facts.flatArgs;
    if (set.readsArgs) {
      facts.flatArgs = live.flatArgs ?? flattenArguments(live.action.arguments);
      const problem = argumentsProblem(facts.flatArgs, { numeric: set.numericTagsRead, strings: set.stringTagsRead }, live.action.arguments);
      if (problem) return row('deny', [problem], []);
    }
    if (set.mentionsPresence && facts.ownerPresent === undefined) facts.ownerPresent = await this.deps.ownerPresent(live.task, live.now);
    // the same decide step as the live set's (src/authorize/decide-lifting.ts), on the candidate's facts
    const v = await decideLifting(engine, set, { request: facts, problem: null, breakGlass: null }, this.deps.store);
    if (v.decision === 'approval_required') return row('approval_required', [], v.policies);
    return row(v.decision, v.reasons ?? [], v.policies);
  }

  private queue(row: ShadowDecisionRecord): void {
    if (this.pending.length >= MAX_PENDING) {
      this.lost += 1;
      return;
    }
    this.pending.push(row);
    this.flushing ??= this.flush().finally(() => {
      this.flushing = null;
    });
  }

  private async flush(): Promise<void> {
    // one write per turn of the event loop gathers the rows of every request decided in it
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, 500);
      try {
        await this.deps.store.recordShadowDecisions(batch);
      } catch {
        this.lost += batch.length;
      }
    }
  }

  // --- the candidate, across instances ----------------------------------------------

  private refreshSoon(): void {
    const now = this.deps.clock.now();
    if (this.refreshing || now - this.checkedAt < 1000) return;
    this.checkedAt = now;
    this.refreshing = this.refresh()
      .catch(() => undefined)
      .finally(() => {
        this.refreshing = null;
      });
  }

  /** Reads the stored candidate and loads it when it is new here (at start, and from `observe`). */
  async refresh(): Promise<void> {
    const gen = this.generation;
    const rec = await this.deps.store.getShadowPolicy();
    if (gen !== this.generation) return;
    if (!rec) {
      if (this.candidate || this.refused) this.install(null);
      return;
    }
    if (rec.version === this.candidate?.set.version) {
      this.candidate.record = rec;
      return;
    }
    if (rec.version === this.refused?.version) return;
    let set: LoadedPolicySet;
    try {
      await this.deps.checkNewPolicy(rec.text);
      set = this.deps.engine.hold(rec.text);
    } catch (err) {
      if (!(err instanceof WritError)) throw err;
      if (gen !== this.generation) return;
      this.install(null);
      this.refused = { version: rec.version, message: err.message.slice(0, 300) };
      await this.deps.securityEvent('policy.shadow_refused', 'system', { version: rec.version, code: err.code, error: err.message.slice(0, 300) }).catch(() => undefined);
      return;
    }
    if (gen !== this.generation) {
      this.deps.engine.letGo(set.version);
      return;
    }
    this.install({ record: rec, set });
  }

  /** Replaces the local candidate; the one replaced is let go (unloaded unless in use otherwise). */
  private install(next: Candidate | null): void {
    const prev = this.candidate;
    this.candidate = next;
    this.refused = null;
    this.generation += 1;
    if (prev) this.deps.engine.letGo(prev.set.version);
  }

  // --- operator operations -------------------------------------------------------------

  /**
   * `PUT /v1/policies?mode=shadow`: checks `text` as a new live set is checked, stores it
   * as the candidate (replacing any; with `ifMatch`, only while that version is the
   * candidate), audited (`policy.shadow_set`) with the SHA-256 of its diff from the live set.
   */
  async put(
    by: OperatorRecord,
    text: string,
    options: { ifMatch?: string } = {},
  ): Promise<{ version: string; policies: string[]; warnings: PolicyDiagnostic[]; live_version: string | null; previous: string | null; diff_sha256: string }> {
    requireRole(by, 'admin');
    await this.deps.checkNewPolicy(text);
    const set = this.deps.engine.hold(text);
    const now = this.deps.clock.now();
    let out;
    try {
      const [live, previous] = await Promise.all([this.deps.store.getActivePolicy(), this.deps.store.getShadowPolicy()]);
      if (live?.version === set.version) throw new ConflictError(`version \`${set.version}\` is the live set already: there is nothing to compare`, 'shadow_matches_live');
      const diffSha256 = diffHash(diffPolicyText(live?.text ?? '', text));
      await this.deps.store.putShadowPolicy(
        { version: set.version, text, createdAt: now, createdBy: by.id },
        {
          type: 'policy.shadow_set',
          actor: `operator:${by.id}`,
          data: { version: set.version, policies: set.policyIds, live: live?.version ?? null, previous: previous?.version ?? null, diff_sha256: diffSha256 },
        },
        options.ifMatch !== undefined ? { ifShadow: options.ifMatch } : {},
      );
      out = { version: set.version, policies: set.policyIds, warnings: set.warnings, live_version: live?.version ?? null, previous: previous?.version ?? null, diff_sha256: diffSha256 };
    } catch (err) {
      this.deps.engine.letGo(set.version);
      throw err;
    }
    this.install({ record: { version: set.version, text, setAt: now, setBy: by.id }, set });
    return out;
  }

  /** `GET /v1/policies/shadow`: the candidate and where its decisions differ from the live ones. */
  async report(by: OperatorRecord, opts: { limit: number; examples: number }): Promise<ShadowReport> {
    requireRole(by, 'admin', 'auditor');
    const rec = await this.requireCandidate();
    const [rows, live] = await Promise.all([
      // since it was set this time (the same version may have been a candidate before); a
      // few seconds earlier for the clocks of other instances
      this.deps.store.listShadowDecisions({ candidateVersion: rec.version, since: rec.setAt - CLOCK_SKEW_MS, limit: opts.limit + 1 }),
      this.deps.store.getActivePolicy(),
    ]);
    const report: ShadowReport = {
      candidate: { version: rec.version, set_by: rec.setBy, set_at: new Date(rec.setAt).toISOString(), policies: rec.text },
      live_version: live?.version ?? null,
      considered: 0,
      decided_outside_policy: 0,
      agreed: 0,
      differed: 0,
      differences: { by_tool: {}, by_reason: {}, examples: [] },
      errors: { count: 0, by_reason: {}, examples: [] },
      truncated: rows.length > opts.limit,
    };
    const bump = (o: Record<string, number>, k: string) => (o[k] = (o[k] ?? 0) + 1);
    for (const { shadow, live: d } of rows.slice(0, opts.limit)) {
      report.considered += 1;
      const example = (): ShadowExample => ({
        decision_id: d.id,
        tool: d.tool,
        at: new Date(d.createdAt).toISOString(),
        live: { decision: d.decision, reasons: d.reasons.map((r) => r.code), policy_version: d.policyVersion },
        candidate: { decision: shadow.decision, reasons: shadow.reasons.map((r) => r.code), policies: shadow.policies },
      });
      if (shadow.decision === 'error') {
        report.errors.count += 1;
        bump(report.errors.by_reason, shadow.reasons[0]?.code ?? 'shadow_error');
        if (report.errors.examples.length < opts.examples) report.errors.examples.push(example());
        continue;
      }
      // a deny the live path gave for no policy reason (the budget taken, the task ended at commit)
      if (d.decision === 'deny' && !d.reasons.some((r) => POLICY_REASONS.has(r.code))) {
        report.decided_outside_policy += 1;
        continue;
      }
      if (shadow.decision === d.decision) {
        report.agreed += 1;
        continue;
      }
      report.differed += 1;
      bump(report.differences.by_tool, d.tool);
      bump(report.differences.by_reason, `${d.decision} -> ${shadow.decision}${shadow.reasons[0] ? ` (${shadow.reasons[0].code})` : ''}`);
      if (report.differences.examples.length < opts.examples) report.differences.examples.push(example());
    }
    return report;
  }

  /**
   * `POST /v1/policies/shadow/promote`: the candidate becomes live, an ordinary audited
   * policy change (with `ifMatch` on the live version), ending the candidate in the same
   * transaction. With `version`, only while that version is the candidate.
   */
  async promote(by: OperatorRecord, options: { ifMatch?: string; version?: string }): Promise<Record<string, unknown> & { version: string; promoted: string }> {
    requireRole(by, 'admin');
    const rec = await this.requireCandidate();
    if (options.version !== undefined && options.version !== rec.version) {
      throw new PreconditionFailedError(`the shadow candidate is \`${rec.version}\`, not \`${options.version.slice(0, 80)}\`: read it again and retry`, 'policy_version_mismatch');
    }
    const r = await this.deps.putLive(by, rec.text, { ...(options.ifMatch !== undefined ? { ifMatch: options.ifMatch } : {}), promote: rec.version });
    if (this.candidate?.set.version === rec.version) this.install(null);
    return { ...r, promoted: rec.version };
  }

  /** `DELETE /v1/policies/shadow`: removes the candidate (with `ifMatch`, only while it is that version), audited. */
  async drop(by: OperatorRecord, options: { ifMatch?: string } = {}): Promise<{ dropped: string }> {
    requireRole(by, 'admin');
    const rec = await this.requireCandidate();
    if (options.ifMatch !== undefined && options.ifMatch !== rec.version) {
      throw new PreconditionFailedError(`the shadow candidate is \`${rec.version}\`, not \`${options.ifMatch.slice(0, 80)}\`: read it again and retry`, 'policy_version_mismatch');
    }
    // conditional on the version read, so the audit entry names the candidate removed
    const ok = await this.deps.store.dropShadowPolicy({ type: 'policy.shadow_dropped', actor: `operator:${by.id}`, data: { version: rec.version } }, { ifShadow: rec.version });
    if (!ok) throw new NotFoundError('no shadow candidate is set', 'shadow_not_found');
    if (this.candidate?.set.version === rec.version) this.install(null);
    return { dropped: rec.version };
  }

  private async requireCandidate(): Promise<ShadowPolicyRecord> {
    const rec = await this.deps.store.getShadowPolicy();
    if (!rec) throw new NotFoundError('no shadow candidate is set (`PUT /v1/policies?mode=shadow` sets one)', 'shadow_not_found');
    return rec;
  }

  /** Waits (a bounded time) for running candidate evaluations and pending writes; lets the candidate go. */
  async close(): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + 2000;
    while ((this.inFlight > 0 || this.flushing || this.pending.length > 0) && Date.now() < deadline) {
      if (this.flushing) await this.flushing;
      else await new Promise((resolve) => setTimeout(resolve, 5));
    }
    if (this.candidate) this.install(null);
  }
}

function errorRow(version: string, input: { decisionId: string; now: number }, code: string, message: string): ShadowDecisionRecord {
  return { decisionId: input.decisionId, candidateVersion: version, decision: 'error', reasons: [{ code, message }], policies: [], createdAt: input.now };
}

function requireRole(op: OperatorRecord, ...roles: OperatorRole[]): void {
  if (op.roles.includes('admin') || roles.some((r) => op.roles.includes(r))) return;
  throw new ForbiddenError(`this needs the role ${roles.map((r) => `\`${r}\``).join(' or ')}`, 'insufficient_role');
}
