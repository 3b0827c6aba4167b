import { decodeJwt } from 'jose';
import { AuditBatcher } from '../audit/audit-batcher.js';
import { checkpointOrigin, signCheckpoint, type EvidenceContext } from '../audit/evidence.js';
import { createNoteSigner, type NoteSigner } from '../audit/signed-note.js';
import { WRIT_VERSION } from '../core/version.js';
import { checkpointClaims, CHECKPOINT_TYP, verifyCheckpoint } from '../audit/checkpoint.js';
import { verifyChain, type ChainReport } from '../audit/verify-chain.js';
import type { Clock } from '../core/clock.js';
import { ConflictError, InvalidRequestError, UnavailableError } from '../core/errors.js';
import type { AuditEntry, OperatorRecord } from '../core/types.js';
import type { ServiceDeps } from './deps.js';
import type { AuditFilter, Store } from '../store/store.js';
import { CheckpointKey } from '../tokens/checkpoint-key.js';
import type { WritConfig } from './config.js';
import { requireRole } from '../core/roles.js';

/**
 * Audit: the hash-chained log (list, verify, checkpoints), its evidence (Merkle
 * checkpoints, proofs, export, trace) and the security events every service records.
 */
export class AuditService {
  /** signs audit checkpoints only; apart from the token keys */
  readonly checkpointKey: CheckpointKey;
  private readonly securityAudit: AuditBatcher;
  private noteSigner: NoteSigner | null = null;
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly config: WritConfig;

  constructor(deps: Omit<ServiceDeps, 'audit'> & { kek: Buffer | null }) {
    this.store = deps.store;
    this.clock = deps.clock;
    this.config = deps.config;
    this.checkpointKey = new CheckpointKey(deps.store, deps.clock, deps.kek);
    this.securityAudit = new AuditBatcher(deps.store);
  }

  /** Writes the security events queued so far (shutdown). */
  drain(): Promise<void> {
    return this.securityAudit.drain();
  }

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
  async checkpointIfDue(): Promise<void> {
    const head = await this.store.auditHead();
    const latest = await this.store.latestAuditCheckpoint();
    if (head && (!latest || latest.size < head.seq)) await signCheckpoint(this.evidenceContext());
  }

  /** Records a security event (a refused credential, a replay); never blocks the refusal. */
  async securityEvent(type: string, actor: string, data: Record<string, unknown>, ids: { taskId?: string; agentId?: string; decisionId?: string } = {}): Promise<void> {
    await this.securityAudit.append({ type, actor, data, ...ids });
  }
}
