import type {
  AgentRecord,
  AuditEntry,
  AuditInput,
  CheckpointKeyRecord,
  DecisionRecord,
  FederatedTokenRecord,
  IssuerRecord,
  ToolLabelsRecord,
  OperatorRecord,
  PolicyRecord,
  ShadowDecisionRecord,
  ShadowPolicyRecord,
  SigningKeyRecord,
  TaskRecord,
  TaskStatus,
} from '../core/types.js';
import type {
  ApprovalCreateResult,
  ApprovalRecord,
  ApprovalReview,
  ApprovalReviewResult,
  ApprovalRule,
  ApprovalStatus,
  BreakGlassRecord,
  BreakGlassResult,
  OpenApprovalLimits,
  PresenceLease,
} from '../core/escalation-types.js';

/**
 * The storage contract. Every backend implements it and passes the one contract
 * suite in `contract.ts`. Rules every implementation keeps:
 *
 * - Each mutating method writes its audit entries in the same transaction as the
 *   change itself: a change is never visible without its record, nor a record
 *   without its change.
 * - Audit appends are serialized into one gap-free chain, even across processes.
 * - Conditional writes (single use, budget) are atomic, even across processes.
 * - A store fault surfaces as `UnavailableError` (503), never as a silent success.
 */
export interface Store {
  readonly backend: 'sqlite' | 'postgres';

  /** Applies pending schema migrations; idempotent and safe to run concurrently. */
  migrate(): Promise<void>;
  /** Throws UnavailableError when the store cannot be reached. */
  ping(): Promise<void>;
  /** A connection pool's use now (PostgreSQL; SQLite has none): for the metrics. */
  poolStats?(): PoolStats;
  /**
   * Cross-instance notifications (PostgreSQL LISTEN/NOTIFY; SQLite, one process, has none):
   * `handler` gets each payload sent to `channel` by any instance, or null after a
   * reconnection (notifications may have been missed). Resolves to the unsubscribe.
   */
  listen?(channel: string, handler: (payload: string | null) => void): Promise<() => Promise<void>>;
  /** Sends `payload` to every listener of `channel`, in any instance. */
  notify?(channel: string, payload: string): Promise<void>;
  close(): Promise<void>;

  // operators
  createOperator(op: OperatorRecord, audit: AuditInput): Promise<void>;
  findOperatorByTokenHash(tokenHash: string): Promise<OperatorRecord | null>;
  countOperators(): Promise<number>;
  /**
   * Creates `op` only when the store has no operator at all, atomically (instances
   * starting together on an empty store create one admin). False when one exists.
   */
  bootstrapOperator(op: OperatorRecord, audit: AuditInput): Promise<boolean>;
  getOperator(id: string): Promise<OperatorRecord | null>;
  /** Oldest first. */
  listOperators(): Promise<OperatorRecord[]>;
  /**
   * Disables an operator, atomically refusing (`last_admin`) when it is an admin and no
   * other enabled admin with an unexpired token would remain at `now`.
   */
  disableOperator(id: string, now: number, audit: AuditInput): Promise<'disabled' | 'not_found' | 'already_disabled' | 'last_admin'>;
  /**
   * Replaces the token (its hash) and expiry of an enabled operator: the old token stops
   * working in the same transaction. Null when there is no enabled operator `id`.
   */
  rotateOperatorToken(id: string, tokenHash: string, expiresAt: number, now: number, audit: AuditInput): Promise<OperatorRecord | null>;

  // agents
  /** ConflictError(`agent_exists`) when the id is taken. */
  createAgent(agent: AgentRecord, audit: AuditInput): Promise<void>;
  getAgent(id: string): Promise<AgentRecord | null>;
  listAgents(): Promise<AgentRecord[]>;
  /** Disables the agent and revokes every active task it holds, with their descendants. */
  disableAgent(id: string, now: number, audit: AuditInput): Promise<{ revokedTaskIds: string[] } | null>;

  // tasks
  /** With `presence`, the task requires its owner's presence: the lease is written in the same transaction. */
  createTask(task: TaskRecord, audit: AuditInput, options?: { presence?: PresenceLease }): Promise<void>;
  getTask(id: string): Promise<TaskRecord | null>;
  /** The task and its agent in one read: the authorize path needs both. */
  getTaskWithAgent(id: string): Promise<{ task: TaskRecord; agent: AgentRecord } | null>;
  listTasks(filter: { agentId?: string; status?: TaskStatus; parentId?: string; limit?: number }): Promise<TaskRecord[]>;
  /**
   * Ends an active task (and every active descendant) with `status`. Returns the ids
   * ended, the task first; an empty list when the task was not active.
   */
  endTask(id: string, status: 'completed' | 'revoked' | 'expired', now: number, audit: AuditInput): Promise<string[]>;
  /** Marks active tasks past their expiry as expired, one audit entry each. */
  expireTasks(now: number): Promise<string[]>;

  // replay protection
  /**
   * Records a one-time identifier (an assertion `jti`, an action token `jti`).
   * Returns true the first time, false on every later call while it is remembered.
   */
  useOnce(key: string, expiresAt: number, audit: AuditInput | null): Promise<boolean>;
  /** Forgets one-time identifiers, and federated token records, whose expiry is past (they can no longer verify anyway). */
  purgeExpiredOnce(now: number): Promise<number>;

  // decisions
  /**
   * Commits a batch of decisions in one transaction (group commit). For an item
   * with a `guard`, the task's budget is taken atomically; when the task is no
   * longer active or its budget is spent, the item's `fallback` is written instead.
   * Results are in input order.
   */
  commitDecisions(items: DecisionWrite[], now: number): Promise<DecisionCommitResult[]>;
  getDecision(id: string): Promise<DecisionRecord | null>;
  listDecisions(taskId: string): Promise<DecisionRecord[]>;
  /** Sets the outcome once; false when one was already recorded. */
  recordOutcome(decisionId: string, outcome: 'succeeded' | 'failed', audit: AuditInput): Promise<boolean>;
  /**
   * Decisions and outcomes of one group commit (src/audit/decision-committer.ts): an
   * outcome rides with the next decisions instead of costing a durable write of its own.
   * SQLite writes both in one transaction; PostgreSQL commits the decisions, then the
   * outcomes in one more statement. Outcomes: `true` set, `false` one was already
   * recorded, `'failed'` not written (the decisions stand).
   */
  commitWrites(decisions: DecisionWrite[], outcomes: OutcomeWrite[], now: number): Promise<{ decisions: DecisionCommitResult[]; outcomes: (boolean | 'failed')[] }>;

  // audit
  appendAudit(entries: AuditInput[]): Promise<AuditEntry[]>;
  listAudit(filter: AuditFilter): Promise<AuditEntry[]>;
  /** The last entry's seq and hash as recorded by the store's chain head. */
  auditHead(): Promise<{ seq: number; hash: string } | null>;

  // audit Merkle tree (src/audit/merkle-log.ts): complete subtree hashes over the chain
  /** How many leading entries the stored tree covers (leaves at level 0). */
  auditTreeSize(): Promise<number>;
  /**
   * Stores subtree hashes. A node already stored is left as it is: every instance
   * computes the same hash for the same node, so concurrent builders agree.
   */
  putAuditTreeNodes(nodes: AuditTreeNode[]): Promise<void>;
  /** The stored hashes of the given nodes; a missing node is absent from the map (key `level/index`). */
  getAuditTreeNodes(keys: Array<{ level: number; index: number }>): Promise<Map<string, Buffer>>;
  /** Stores a signed checkpoint; a second one of the same size is ignored (the first stands). */
  putAuditCheckpoint(checkpoint: AuditCheckpointRecord): Promise<void>;
  /** Checkpoints of size above `afterSize`, smallest first. */
  listAuditCheckpoints(afterSize: number, limit: number): Promise<AuditCheckpointRecord[]>;
  latestAuditCheckpoint(): Promise<AuditCheckpointRecord | null>;

  // policies
  /**
   * Stores a version (kept if known) and makes it active, with its audit entry, in one
   * transaction. With `ifActive`, only if the active version is still that one
   * (compared inside the transaction): otherwise PreconditionFailedError, nothing written.
   * With `promote`, the shadow candidate must be that version (else PreconditionFailedError,
   * nothing written), and it stops being the candidate in the same transaction.
   */
  putPolicy(policy: PolicyRecord, audit: AuditInput, options?: { ifActive?: string; promote?: string }): Promise<void>;
  getActivePolicy(): Promise<PolicyRecord | null>;
  /** a stored version by its id (every version ever stored is kept), or null */
  getPolicy(version: string): Promise<PolicyRecord | null>;
  /** Installs `policy` as the active one only when no policy is active yet (first start); false otherwise. */
  installFirstPolicy(policy: PolicyRecord, audit: AuditInput): Promise<boolean>;

  // shadow candidate (staged rollout, src/service/policy-shadow.ts)
  /**
   * Stores a version (kept if known) and makes it the one shadow candidate (replacing any),
   * with its audit entry, in one transaction; `policy.createdAt/By` are when and by whom it
   * was set. With `ifShadow`, only if that version is still the candidate (compared inside
   * the transaction): otherwise PreconditionFailedError, nothing written.
   */
  putShadowPolicy(policy: PolicyRecord, audit: AuditInput, options?: { ifShadow?: string }): Promise<void>;
  getShadowPolicy(): Promise<ShadowPolicyRecord | null>;
  /** Removes the candidate with its audit entry; false (nothing written) when there is none; `ifShadow` as above. */
  dropShadowPolicy(audit: AuditInput, options?: { ifShadow?: string }): Promise<boolean>;
  /** Keeps the candidate's decisions; one per decision id (a second is ignored). Not audited: they enforce nothing. */
  recordShadowDecisions(rows: ShadowDecisionRecord[]): Promise<void>;
  /**
   * The candidate's decisions with the live decision records they sit beside (a shadow
   * decision whose live record was never written is left out), newest first; with
   * `since`, only those recorded at or after it (ms).
   */
  listShadowDecisions(filter: { candidateVersion: string; since?: number; limit: number }): Promise<Array<{ shadow: ShadowDecisionRecord; live: DecisionRecord }>>;

  // signing keys
  listSigningKeys(): Promise<SigningKeyRecord[]>;
  addSigningKey(key: SigningKeyRecord, audit: AuditInput): Promise<void>;
  /**
   * Adds `key` only when no key is signing (not rotated) yet, atomically: instances
   * starting together on an empty store create one first key. False when one exists.
   */
  addFirstSigningKey(key: SigningKeyRecord, audit: AuditInput): Promise<boolean>;

  // audit checkpoint keys (kept apart from the token signing keys)
  /** Oldest first. */
  listCheckpointKeys(): Promise<CheckpointKeyRecord[]>;
  /** Adds `key` only when the store has no checkpoint key yet, atomically; false when one exists. */
  addFirstCheckpointKey(key: CheckpointKeyRecord, audit: AuditInput): Promise<boolean>;
  /**
   * Adds `key` and, in the same transaction, marks every other key still signing as
   * rotated at `key.createdAt` and retired at `retireAt` (it stays published until then,
   * so tokens it signed keep verifying).
   */
  rotateSigningKeys(key: SigningKeyRecord, retireAt: number, audit: AuditInput): Promise<void>;

  // tool labels (operator-set; policy sees them as the tool's labels)
  /** Sets the labels of a tool pattern; an empty list removes the entry. */
  putToolLabels(record: ToolLabelsRecord, audit: AuditInput): Promise<void>;
  listToolLabels(): Promise<ToolLabelsRecord[]>;

  // trusted workload-identity issuers (federation)
  /** ConflictError(`issuer_exists`) when an active issuer has the same `issuer`. */
  createIssuer(issuer: IssuerRecord, audit: AuditInput): Promise<void>;
  getIssuer(id: string): Promise<IssuerRecord | null>;
  /** The active issuer whose `issuer` is exactly this string. */
  findActiveIssuer(issuer: string): Promise<IssuerRecord | null>;
  listIssuers(): Promise<IssuerRecord[]>;
  /**
   * Disables an active issuer; null when it does not exist or is disabled already. With
   * `revokeIssued`, in the same transaction, revokes every federated task token it
   * issued that is still live (unexpired, of an active unexpired task) and returns how
   * many; `audit` is given that count (and the tasks concerned) to record it.
   */
  disableIssuer(
    id: string,
    now: number,
    options: { revokeIssued: boolean },
    audit: (revoked: { tokens: number; taskIds: string[] }) => AuditInput,
  ): Promise<{ revokedTokens: number; taskIds: string[] } | null>;
  /**
   * Records a task token issued through `token.issuerId`, with `audit`, in one
   * transaction, only while that issuer is active (a removal that commits first wins:
   * 'issuer_inactive', nothing written). With `replay`, the key is spent in the same
   * transaction; 'replayed' (nothing written) when it was spent already, or when one of
   * `spentAs` (keys an older release used for the same token) is remembered.
   */
  recordFederatedToken(
    token: FederatedTokenRecord,
    replay: { key: string; expiresAt: number; spentAs?: string[] } | null,
    audit: AuditInput,
  ): Promise<'recorded' | 'replayed' | 'issuer_inactive'>;
  getFederatedToken(jti: string): Promise<FederatedTokenRecord | null>;

  // approvals (src/approvals): every change writes its audit entries in the same transaction
  /**
   * Writes the `approval_required` decision, the approval and `audit` (decision,
   * approval.requested) in one transaction. With `limits`, first counts the open
   * (`pending` or `approved`, unexpired) approvals of the task and of the agent, and
   * writes nothing when either cap is reached; the count and the write are atomic
   * (serialized per agent), across processes and instances too.
   */
  createApproval(approval: ApprovalRecord, decision: DecisionRecord, audit: AuditInput[], limits?: OpenApprovalLimits): Promise<ApprovalCreateResult>;
  getApproval(id: string): Promise<ApprovalRecord | null>;
  /** A `pending` or `approved` approval of this task for this exact action that has not expired. */
  findOpenApproval(taskId: string, actionDigest: string, now: number): Promise<ApprovalRecord | null>;
  /** Newest first. */
  listApprovals(filter: { status?: ApprovalStatus; taskId?: string; limit?: number }): Promise<ApprovalRecord[]>;
  /**
   * Records one review of a pending, unexpired approval, atomically: one review per
   * approver; a deny settles it `denied`; the `quorum`-th distinct approve settles it
   * `approved` (expiring `approvedTtlMs` after `review.at`). `audit` is given the
   * approval as it is after the review.
   */
  reviewApproval(id: string, review: ApprovalReview, options: { approvedTtlMs: number; rule?: ApprovalRule }, audit: (after: ApprovalRecord) => AuditInput[]): Promise<ApprovalReviewResult>;
  /** Marks pending and approved approvals past their expiry `expired` (all, or those of `ids`), one `approval.expired` entry each. */
  expireApprovals(now: number, ids?: string[]): Promise<ApprovalRecord[]>;

  // break-glass (src/breakglass)
  /**
   * Writes a new break-glass (`pending` or `active`) unless one of the same agent is
   * pending or active, or an `active` one would go past the cap with those that ran
   * less than `capMs` before it (no chaining around the cap).
   */
  createBreakGlass(record: BreakGlassRecord, options: { capMs: number; now: number }, audit: AuditInput): Promise<BreakGlassResult>;
  /** pending -> active by another admin, before its deadline and within the cap. */
  confirmBreakGlass(id: string, by: string, options: { capMs: number; now: number }, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult>;
  /** active -> ended (or pending -> cancelled) now. */
  endBreakGlass(id: string, by: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult>;
  /** Records the review of a break-glass that is over; once. */
  reviewBreakGlass(id: string, by: string, notes: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult>;
  getBreakGlass(id: string): Promise<BreakGlassRecord | null>;
  /** Newest first; `state` as of `now`. */
  listBreakGlass(filter: { state?: 'active' | 'pending' | 'ended' | 'unreviewed'; agentId?: string; now: number; limit?: number }): Promise<BreakGlassRecord[]>;
  /** The active break-glass records of this agent that cover the task (agent-wide or this task). */
  findActiveBreakGlass(agentId: string, taskId: string, now: number): Promise<BreakGlassRecord[]>;
  /** active past its end -> expired; pending past its deadline -> cancelled; one audit entry each. */
  expireBreakGlass(now: number): Promise<BreakGlassRecord[]>;

  // presence leases (src/tasks/presence.ts)
  getPresence(taskId: string): Promise<PresenceLease | null>;
  /** Renews the lease of a task that requires presence, by its owner only; null when there is no such lease. */
  renewPresence(taskId: string, owner: string, expiresAt: number, now: number, audit: AuditInput): Promise<PresenceLease | null>;
}

/** An allowed action's outcome, set once (`decisions.outcome`), with its audit entry. */
export interface OutcomeWrite {
  decisionId: string;
  outcome: 'succeeded' | 'failed';
  audit: AuditInput;
}

export interface DecisionWrite {
  decision: DecisionRecord;
  audit: AuditInput;
  /** take one unit of the task's budget; requires the task to be active and unexpired */
  guard?: { taskId: string };
  /** called inside the transaction when the guard fails; what it returns is written instead */
  fallback?: (reason: GuardFailure) => { decision: DecisionRecord; audit: AuditInput };
  /**
   * use an approval: `approved` -> `used` (recording this decision), atomically with the
   * decision, its budget unit and `audit`; when the approval is no longer approved and
   * unexpired (used, expired, never approved), the `fallback` is written instead
   */
  approval?: { id: string; audit: AuditInput };
  /**
   * the break-glass an allow relies on: it must still be `active` and not past its end
   * when the decision commits (read under a lock in the same transaction, as the task
   * state is), else the `fallback` is written instead; checked before the budget is
   * taken. So no allow under a break-glass commits after its end or expiry committed.
   */
  breakGlass?: { id: string };
}

export type GuardFailure = 'budget_exhausted' | 'task_inactive' | 'approval_unavailable' | 'break_glass_inactive';

export type DecisionCommitResult = { written: 'primary' } | { written: 'fallback'; reason: GuardFailure };

export interface PoolStats {
  /** connections open, idle or checked out */
  total: number;
  idle: number;
  /** requests queued for a connection (all `max` are checked out) */
  waiting: number;
  max: number;
}

export interface AuditFilter {
  taskId?: string;
  agentId?: string;
  type?: string;
  decisionId?: string;
  /** entries with seq > after */
  after?: number;
  limit?: number;
}

export interface AuditTreeNode {
  level: number;
  index: number;
  hash: Buffer;
}

export interface AuditCheckpointRecord {
  /** tree size the checkpoint commits to */
  size: number;
  /** the C2SP signed note, as served */
  note: string;
  createdAt: number;
}

/** Map key of a tree node in `getAuditTreeNodes` results (src/core/tree-node-key.ts). */
export { treeNodeKey } from '../core/tree-node-key.js';
