import type {
  AgentRecord,
  AuditEntry,
  AuditInput,
  DecisionRecord,
  IssuerRecord,
  OperatorRecord,
  PolicyRecord,
  SigningKeyRecord,
  TaskRecord,
  TaskStatus,
} from '../core/types.js';

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
  close(): Promise<void>;

  // operators
  createOperator(op: OperatorRecord, audit: AuditInput): Promise<void>;
  findOperatorByTokenHash(tokenHash: string): Promise<OperatorRecord | null>;
  countOperators(): Promise<number>;

  // agents
  /** ConflictError(`agent_exists`) when the id is taken. */
  createAgent(agent: AgentRecord, audit: AuditInput): Promise<void>;
  getAgent(id: string): Promise<AgentRecord | null>;
  listAgents(): Promise<AgentRecord[]>;
  /** Disables the agent and revokes every active task it holds, with their descendants. */
  disableAgent(id: string, now: number, audit: AuditInput): Promise<{ revokedTaskIds: string[] } | null>;

  // tasks
  createTask(task: TaskRecord, audit: AuditInput): Promise<void>;
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
  /** Forgets one-time identifiers whose expiry is past (they can no longer verify anyway). */
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

  // audit
  appendAudit(entries: AuditInput[]): Promise<AuditEntry[]>;
  listAudit(filter: AuditFilter): Promise<AuditEntry[]>;
  /** The last entry's seq and hash as recorded by the store's chain head. */
  auditHead(): Promise<{ seq: number; hash: string } | null>;

  // policies
  putPolicy(policy: PolicyRecord, audit: AuditInput): Promise<void>;
  getActivePolicy(): Promise<PolicyRecord | null>;

  // signing keys
  listSigningKeys(): Promise<SigningKeyRecord[]>;
  addSigningKey(key: SigningKeyRecord, audit: AuditInput): Promise<void>;

  // trusted workload-identity issuers (federation)
  /** ConflictError(`issuer_exists`) when an active issuer has the same `issuer`. */
  createIssuer(issuer: IssuerRecord, audit: AuditInput): Promise<void>;
  getIssuer(id: string): Promise<IssuerRecord | null>;
  /** The active issuer whose `issuer` is exactly this string. */
  findActiveIssuer(issuer: string): Promise<IssuerRecord | null>;
  listIssuers(): Promise<IssuerRecord[]>;
  /** Disables an active issuer; false when it does not exist or is disabled already. */
  disableIssuer(id: string, now: number, audit: AuditInput): Promise<boolean>;
}

export interface DecisionWrite {
  decision: DecisionRecord;
  audit: AuditInput;
  /** take one unit of the task's budget; requires the task to be active and unexpired */
  guard?: { taskId: string };
  /** called inside the transaction when the guard fails; what it returns is written instead */
  fallback?: (reason: 'budget_exhausted' | 'task_inactive') => { decision: DecisionRecord; audit: AuditInput };
}

export type DecisionCommitResult = { written: 'primary' } | { written: 'fallback'; reason: 'budget_exhausted' | 'task_inactive' };

export interface AuditFilter {
  taskId?: string;
  agentId?: string;
  type?: string;
  decisionId?: string;
  /** entries with seq > after */
  after?: number;
  limit?: number;
}
