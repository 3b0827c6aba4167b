import { canonicalJson, sha256Hex } from '../core/digest.js';
import type { TraceCarrier } from '../core/tracing.js';
import { AuthorizerError, peekClaims, type ActionRequest, type Authorizer, type Reason } from './authorizer.js';

export type Verdict =
  | { kind: 'allow'; decisionId: string; actionToken: string }
  | { kind: 'deny'; decisionId: string; reasons: Reason[] }
  /** a person must approve; the client may retry the same call (same arguments) once they have */
  | { kind: 'approval_pending'; decisionId: string; approvalId: string; expiresIn: number }
  /** the approval was denied, expired or cancelled */
  | { kind: 'approval_refused'; decisionId: string; approvalId: string; status: string };

interface Pending {
  approvalId: string;
  decisionId: string;
  until: number;
}

const MAX_PENDING = 10_000;

/**
 * One decision per call, shared by the MCP gateway and the HTTP proxy. `allow` and
 * `deny` pass through. `approval_required` waits up to `waitSeconds` (polling the
 * approval with Writ's long-poll) and otherwise answers `approval_pending`; the
 * approval is remembered per (task, exact action), so when the client repeats the
 * same call after a person approved it, the gateway collects the action token that
 * the approval produced instead of asking for a new approval.
 */
export class Decider {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly authorizer: Authorizer,
    private readonly opts: { waitSeconds: number; now?: () => number },
  ) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  private key(taskToken: string, action: ActionRequest): string {
    const txn = peekClaims(taskToken)?.txn ?? sha256Hex(taskToken);
    return sha256Hex(canonicalJson({ txn, ...action }));
  }

  /** `trace`: the W3C trace context the decision request carries to Writ */
  async decide(taskToken: string, action: ActionRequest, trace?: TraceCarrier): Promise<Verdict> {
    // the action's key (a canonical serialization and a hash of its arguments) is needed
    // only to find an approval waited for, or to remember a new one: with none pending,
    // an allowed or denied call never computes it
    let key = this.pending.size > 0 ? this.key(taskToken, action) : null;
    const known = key === null ? undefined : this.pending.get(key);
    if (known && known.until > this.now()) {
      const v = await this.follow(taskToken, key!, known, this.opts.waitSeconds);
      if (v) return v;
    } else if (known) {
      this.pending.delete(key!);
    }
    const d = await this.authorizer.authorize(taskToken, action, trace);
    if (d.decision === 'allow') return { kind: 'allow', decisionId: d.decision_id, actionToken: d.action_token };
    if (d.decision === 'deny') return { kind: 'deny', decisionId: d.decision_id, reasons: d.reasons };
    key ??= this.key(taskToken, action);
    const p: Pending = { approvalId: d.approval_id, decisionId: d.decision_id, until: this.now() + Math.max(1, d.expires_in) * 1000 };
    if (this.pending.size >= MAX_PENDING) this.sweep();
    this.pending.set(key, p);
    if (this.opts.waitSeconds > 0) {
      const v = await this.follow(taskToken, key, p, this.opts.waitSeconds);
      if (v) return v;
    }
    return { kind: 'approval_pending', decisionId: d.decision_id, approvalId: d.approval_id, expiresIn: d.expires_in };
  }

  /** Polls a known approval for up to `waitSeconds`. Null: it is gone; ask Writ again. */
  private async follow(taskToken: string, key: string, p: Pending, waitSeconds: number): Promise<Verdict | null> {
    const deadline = this.now() + waitSeconds * 1000;
    for (;;) {
      const left = Math.max(0, Math.ceil((deadline - this.now()) / 1000));
      const started = this.now();
      let st;
      try {
        st = await this.authorizer.approval(taskToken, p.approvalId, Math.min(30, left));
      } catch (err) {
        if (err instanceof AuthorizerError && (err.status === 404 || err.code === 'approvals_unavailable')) {
          this.pending.delete(key);
          return null;
        }
        throw err;
      }
      if (st.status === 'approved' && st.action_token) {
        this.pending.delete(key);
        const claims = peekClaims(st.action_token) as { decision_id?: unknown } | null;
        const decisionId = st.decision_id ?? (typeof claims?.decision_id === 'string' ? claims.decision_id : p.decisionId);
        return { kind: 'allow', decisionId, actionToken: st.action_token };
      }
      if (st.decision === 'deny' && st.decision_id) {
        // approved, but the task or the policy of this moment no longer allows it
        this.pending.delete(key);
        return { kind: 'deny', decisionId: st.decision_id, reasons: st.reasons ?? [] };
      }
      if (st.status === 'denied' || st.status === 'expired' || st.status === 'cancelled') {
        this.pending.delete(key);
        return { kind: 'approval_refused', decisionId: p.decisionId, approvalId: p.approvalId, status: st.status };
      }
      if (st.status === 'used' || (st.status === 'approved' && !st.action_token)) {
        // its token went to an earlier read: this call needs a decision of its own
        this.pending.delete(key);
        return null;
      }
      if (this.now() >= deadline || left === 0) {
        return { kind: 'approval_pending', decisionId: p.decisionId, approvalId: p.approvalId, expiresIn: Math.max(0, Math.round((p.until - this.now()) / 1000)) };
      }
      // a server that answers a long poll at once must not make this a busy loop
      if (this.now() - started < 250) await new Promise((ok) => setTimeout(ok, 250));
    }
  }

  private sweep(): void {
    const now = this.now();
    for (const [k, p] of this.pending) if (p.until <= now) this.pending.delete(k);
    if (this.pending.size >= MAX_PENDING) this.pending.clear();
  }
}

/** One line a person (or a model) can act on. */
export function describeVerdict(tool: string, v: Exclude<Verdict, { kind: 'allow' }>): string {
  switch (v.kind) {
    case 'deny':
      return `Writ denied \`${tool}\` (decision ${v.decisionId}): ${v.reasons.map((r) => `${r.code}: ${r.message}`).join('; ') || 'no reason given'}`;
    case 'approval_pending':
      return `\`${tool}\` needs a person's approval (approval ${v.approvalId}, decision ${v.decisionId}); repeat the same call with the same arguments once it is approved`;
    case 'approval_refused':
      return `\`${tool}\` was not approved: approval ${v.approvalId} is ${v.status} (decision ${v.decisionId})`;
  }
}
