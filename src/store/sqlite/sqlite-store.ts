import type { OutcomeWrite } from '../store.js';
import type { Clock } from '../../core/clock.js';
import type {
  AgentRecord,
  AuditEntry,
  AuditInput,
  CheckpointKeyRecord,
  DecisionRecord,
  FederatedTokenRecord,
  IssuerRecord,
  OperatorRecord,
  PolicyRecord,
  ShadowDecisionRecord,
  ShadowPolicyRecord,
  SigningKeyRecord,
  TaskRecord,
  TaskStatus,
  ToolLabelsRecord,
} from '../../core/types.js';
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
} from '../../core/escalation-types.js';
import type { AuditCheckpointRecord, AuditFilter, AuditTreeNode, DecisionCommitResult, DecisionWrite, Store } from '../store.js';
import { SqliteDb } from './db.js';
import type { SyncFile } from './wal-flush.js';
import { SQLITE_MIGRATIONS } from './schema.js';
import * as agents from './agents.js';
import * as approvals from './approvals.js';
import * as audit from './audit.js';
import * as auditTree from './audit-tree.js';
import * as breakGlass from './break-glass.js';
import * as checkpointKeys from './checkpoint-keys.js';
import * as decisionOps from './decisions.js';
import * as issuers from './issuers.js';
import * as oneTime from './one-time.js';
import * as operators from './operators.js';
import * as policies from './policies.js';
import * as policyShadow from './policy-shadow.js';
import * as presence from './presence.js';
import * as signingKeys from './signing-keys.js';
import * as tasks from './tasks.js';
import * as toolLabels from './tool-labels.js';

export interface SqliteStoreOptions {
  /** a file path, or `:memory:` */
  path: string;
  clock?: Clock;
  /** busy timeout for cross-process locking */
  busyTimeoutMs?: number;
  /** the fsync of the WAL file (default fs.fdatasync); tests inject faults and gates here */
  syncFile?: SyncFile;
}

/**
 * The embedded store: better-sqlite3 in WAL mode with `synchronous=NORMAL`, and no write
 * answered before an fsync of the WAL that covers it (db.ts, wal-flush.ts: a group flush
 * on the threadpool), so an acknowledged write survives power loss while the fsync holds
 * neither the event loop nor the write lock. Writes run in IMMEDIATE transactions,
 * which take SQLite's write lock up front: audit appends and conditional writes
 * are serialized even when several processes open the same file; each process fsyncs
 * after its own commits.
 *
 * The class only composes: each aggregate's statements live in a file of their own
 * (agents.ts, tasks.ts, decisions.ts, …, the same names as under postgres/), as functions
 * over the shared connection plumbing in db.ts.
 */
export class SqliteStore implements Store {
  readonly backend = 'sqlite' as const;
  private readonly db: SqliteDb;

  constructor(options: SqliteStoreOptions) {
    this.db = new SqliteDb(options);
  }

  async migrate(): Promise<void> {
    const db = this.db;
    await db.write(() => {
      const version = db.raw.pragma('user_version', { simple: true }) as number;
      for (let v = version; v < SQLITE_MIGRATIONS.length; v++) {
        db.raw.exec(SQLITE_MIGRATIONS[v]!);
        db.raw.pragma(`user_version = ${v + 1}`);
      }
    });
  }

  async ping(): Promise<void> {
    // not ready once a write could not be made durable (every later write is refused)
    this.db.checkDurable();
    this.db.guard(() => this.db.stmt('SELECT 1').get());
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  // audit chain (audit.ts)
  appendAudit(entries: AuditInput[]): Promise<AuditEntry[]> {
    return audit.appendAudit(this.db, entries);
  }
  listAudit(filter: AuditFilter): Promise<AuditEntry[]> {
    return audit.listAudit(this.db, filter);
  }
  auditHead(): Promise<{ seq: number; hash: string } | null> {
    return audit.auditHead(this.db);
  }

  // audit Merkle tree (audit-tree.ts)
  auditTreeSize(): Promise<number> {
    return auditTree.auditTreeSize(this.db);
  }
  putAuditTreeNodes(nodes: AuditTreeNode[]): Promise<void> {
    return auditTree.putAuditTreeNodes(this.db, nodes);
  }
  getAuditTreeNodes(keys: Array<{ level: number; index: number }>): Promise<Map<string, Buffer>> {
    return auditTree.getAuditTreeNodes(this.db, keys);
  }
  putAuditCheckpoint(c: AuditCheckpointRecord): Promise<void> {
    return auditTree.putAuditCheckpoint(this.db, c);
  }
  listAuditCheckpoints(afterSize: number, limit: number): Promise<AuditCheckpointRecord[]> {
    return auditTree.listAuditCheckpoints(this.db, afterSize, limit);
  }
  latestAuditCheckpoint(): Promise<AuditCheckpointRecord | null> {
    return auditTree.latestAuditCheckpoint(this.db);
  }

  // operators (operators.ts)
  createOperator(op: OperatorRecord, audit: AuditInput): Promise<void> {
    return operators.createOperator(this.db, op, audit);
  }
  bootstrapOperator(op: OperatorRecord, audit: AuditInput): Promise<boolean> {
    return operators.bootstrapOperator(this.db, op, audit);
  }
  getOperator(id: string): Promise<OperatorRecord | null> {
    return operators.getOperator(this.db, id);
  }
  listOperators(): Promise<OperatorRecord[]> {
    return operators.listOperators(this.db);
  }
  disableOperator(id: string, now: number, audit: AuditInput): Promise<'disabled' | 'not_found' | 'already_disabled' | 'last_admin'> {
    return operators.disableOperator(this.db, id, now, audit);
  }
  rotateOperatorToken(id: string, tokenHash: string, expiresAt: number, now: number, audit: AuditInput): Promise<OperatorRecord | null> {
    return operators.rotateOperatorToken(this.db, id, tokenHash, expiresAt, now, audit);
  }
  findOperatorByTokenHash(tokenHash: string): Promise<OperatorRecord | null> {
    return operators.findOperatorByTokenHash(this.db, tokenHash);
  }
  countOperators(): Promise<number> {
    return operators.countOperators(this.db);
  }

  // agents (agents.ts)
  createAgent(agent: AgentRecord, audit: AuditInput): Promise<void> {
    return agents.createAgent(this.db, agent, audit);
  }
  getAgent(id: string): Promise<AgentRecord | null> {
    return agents.getAgent(this.db, id);
  }
  listAgents(): Promise<AgentRecord[]> {
    return agents.listAgents(this.db);
  }
  disableAgent(id: string, now: number, audit: AuditInput): Promise<{ revokedTaskIds: string[] } | null> {
    return agents.disableAgent(this.db, id, now, audit);
  }

  // tasks (tasks.ts)
  createTask(task: TaskRecord, audit: AuditInput, options: { presence?: PresenceLease } = {}): Promise<void> {
    return tasks.createTask(this.db, task, audit, options);
  }
  getTask(id: string): Promise<TaskRecord | null> {
    return tasks.getTask(this.db, id);
  }
  getTaskWithAgent(id: string): Promise<{ task: TaskRecord; agent: AgentRecord } | null> {
    return tasks.getTaskWithAgent(this.db, id);
  }
  listTasks(filter: { agentId?: string; status?: TaskStatus; parentId?: string; limit?: number }): Promise<TaskRecord[]> {
    return tasks.listTasks(this.db, filter);
  }
  endTask(id: string, status: 'completed' | 'revoked' | 'expired', now: number, audit: AuditInput): Promise<string[]> {
    return tasks.endTask(this.db, id, status, now, audit);
  }
  expireTasks(now: number): Promise<string[]> {
    return tasks.expireTasks(this.db, now);
  }

  // one-time identifiers (one-time.ts)
  useOnce(key: string, expiresAt: number, audit: AuditInput | null): Promise<boolean> {
    return oneTime.useOnce(this.db, key, expiresAt, audit);
  }
  purgeExpiredOnce(now: number): Promise<number> {
    return oneTime.purgeExpiredOnce(this.db, now);
  }

  // decisions (decisions.ts)
  commitDecisions(items: DecisionWrite[], now: number): Promise<DecisionCommitResult[]> {
    return decisionOps.commitDecisions(this.db, items, now);
  }
  commitWrites(decisions: DecisionWrite[], outcomes: OutcomeWrite[], now: number): Promise<{ decisions: DecisionCommitResult[]; outcomes: (boolean | 'failed')[] }> {
    return decisionOps.commitWrites(this.db, decisions, outcomes, now);
  }
  getDecision(id: string): Promise<DecisionRecord | null> {
    return decisionOps.getDecision(this.db, id);
  }
  listDecisions(taskId: string): Promise<DecisionRecord[]> {
    return decisionOps.listDecisions(this.db, taskId);
  }
  recordOutcome(decisionId: string, outcome: 'succeeded' | 'failed', audit: AuditInput): Promise<boolean> {
    return decisionOps.recordOutcome(this.db, decisionId, outcome, audit);
  }

  // policies (policies.ts)
  putPolicy(policy: PolicyRecord, audit: AuditInput, options: { ifActive?: string; promote?: string } = {}): Promise<void> {
    return policies.putPolicy(this.db, policy, audit, options);
  }
  getPolicy(version: string): Promise<PolicyRecord | null> {
    return policies.getPolicy(this.db, version);
  }
  installFirstPolicy(policy: PolicyRecord, audit: AuditInput): Promise<boolean> {
    return policies.installFirstPolicy(this.db, policy, audit);
  }
  getActivePolicy(): Promise<PolicyRecord | null> {
    return policies.getActivePolicy(this.db);
  }

  // shadow candidate (src/service/policy-shadow.ts) (policy-shadow.ts)
  putShadowPolicy(policy: PolicyRecord, audit: AuditInput, options: { ifShadow?: string } = {}): Promise<void> {
    return policyShadow.putShadowPolicy(this.db, policy, audit, options);
  }
  getShadowPolicy(): Promise<ShadowPolicyRecord | null> {
    return policyShadow.getShadowPolicy(this.db);
  }
  dropShadowPolicy(audit: AuditInput, options: { ifShadow?: string } = {}): Promise<boolean> {
    return policyShadow.dropShadowPolicy(this.db, audit, options);
  }
  recordShadowDecisions(rows: ShadowDecisionRecord[]): Promise<void> {
    return policyShadow.recordShadowDecisions(this.db, rows);
  }
  listShadowDecisions(filter: { candidateVersion: string; since?: number; limit: number }): Promise<Array<{ shadow: ShadowDecisionRecord; live: DecisionRecord }>> {
    return policyShadow.listShadowDecisions(this.db, filter);
  }

  // signing keys (signing-keys.ts)
  listSigningKeys(): Promise<SigningKeyRecord[]> {
    return signingKeys.listSigningKeys(this.db);
  }
  rotateSigningKeys(key: SigningKeyRecord, retireAt: number, audit: AuditInput): Promise<void> {
    return signingKeys.rotateSigningKeys(this.db, key, retireAt, audit);
  }
  addSigningKey(key: SigningKeyRecord, audit: AuditInput): Promise<void> {
    return signingKeys.addSigningKey(this.db, key, audit);
  }
  addFirstSigningKey(key: SigningKeyRecord, audit: AuditInput): Promise<boolean> {
    return signingKeys.addFirstSigningKey(this.db, key, audit);
  }

  // checkpoint keys (checkpoint-keys.ts)
  listCheckpointKeys(): Promise<CheckpointKeyRecord[]> {
    return checkpointKeys.listCheckpointKeys(this.db);
  }
  addFirstCheckpointKey(key: CheckpointKeyRecord, audit: AuditInput): Promise<boolean> {
    return checkpointKeys.addFirstCheckpointKey(this.db, key, audit);
  }

  // tool labels (tool-labels.ts)
  putToolLabels(record: ToolLabelsRecord, audit: AuditInput): Promise<void> {
    return toolLabels.putToolLabels(this.db, record, audit);
  }
  listToolLabels(): Promise<ToolLabelsRecord[]> {
    return toolLabels.listToolLabels(this.db);
  }

  // trusted issuers (federation) (issuers.ts)
  createIssuer(issuer: IssuerRecord, audit: AuditInput): Promise<void> {
    return issuers.createIssuer(this.db, issuer, audit);
  }
  getIssuer(id: string): Promise<IssuerRecord | null> {
    return issuers.getIssuer(this.db, id);
  }
  findActiveIssuer(issuer: string): Promise<IssuerRecord | null> {
    return issuers.findActiveIssuer(this.db, issuer);
  }
  listIssuers(): Promise<IssuerRecord[]> {
    return issuers.listIssuers(this.db);
  }
  disableIssuer(
    id: string,
    now: number,
    options: { revokeIssued: boolean },
    audit: (revoked: { tokens: number; taskIds: string[] }) => AuditInput,
  ): Promise<{ revokedTokens: number; taskIds: string[] } | null> {
    return issuers.disableIssuer(this.db, id, now, options, audit);
  }
  recordFederatedToken(
    token: FederatedTokenRecord,
    replay: { key: string; expiresAt: number; spentAs?: string[] } | null,
    audit: AuditInput,
  ): Promise<'recorded' | 'replayed' | 'issuer_inactive'> {
    return issuers.recordFederatedToken(this.db, token, replay, audit);
  }
  getFederatedToken(jti: string): Promise<FederatedTokenRecord | null> {
    return issuers.getFederatedToken(this.db, jti);
  }

  // approvals (approvals.ts)
  createApproval(approval: ApprovalRecord, decision: DecisionRecord, audit: AuditInput[], limits?: OpenApprovalLimits): Promise<ApprovalCreateResult> {
    return approvals.createApproval(this.db, approval, decision, audit, limits);
  }
  getApproval(id: string): Promise<ApprovalRecord | null> {
    return approvals.getApproval(this.db, id);
  }
  findOpenApproval(taskId: string, actionDigest: string, now: number): Promise<ApprovalRecord | null> {
    return approvals.findOpenApproval(this.db, taskId, actionDigest, now);
  }
  listApprovals(filter: { status?: ApprovalStatus; taskId?: string; limit?: number }): Promise<ApprovalRecord[]> {
    return approvals.listApprovals(this.db, filter);
  }
  reviewApproval(
    id: string,
    review: ApprovalReview,
    options: { approvedTtlMs: number; rule?: ApprovalRule },
    audit: (after: ApprovalRecord) => AuditInput[],
  ): Promise<ApprovalReviewResult> {
    return approvals.reviewApproval(this.db, id, review, options, audit);
  }
  expireApprovals(now: number, ids?: string[]): Promise<ApprovalRecord[]> {
    return approvals.expireApprovals(this.db, now, ids);
  }

  // break-glass (break-glass.ts)
  createBreakGlass(record: BreakGlassRecord, options: { capMs: number; now: number }, audit: AuditInput): Promise<BreakGlassResult> {
    return breakGlass.createBreakGlass(this.db, record, options, audit);
  }
  confirmBreakGlass(id: string, by: string, options: { capMs: number; now: number }, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
    return breakGlass.confirmBreakGlass(this.db, id, by, options, audit);
  }
  endBreakGlass(id: string, by: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
    return breakGlass.endBreakGlass(this.db, id, by, now, audit);
  }
  reviewBreakGlass(id: string, by: string, notes: string, now: number, audit: (r: BreakGlassRecord) => AuditInput): Promise<BreakGlassResult> {
    return breakGlass.reviewBreakGlass(this.db, id, by, notes, now, audit);
  }
  getBreakGlass(id: string): Promise<BreakGlassRecord | null> {
    return breakGlass.getBreakGlass(this.db, id);
  }
  listBreakGlass(filter: { state?: 'active' | 'pending' | 'ended' | 'unreviewed'; agentId?: string; now: number; limit?: number }): Promise<BreakGlassRecord[]> {
    return breakGlass.listBreakGlass(this.db, filter);
  }
  findActiveBreakGlass(agentId: string, taskId: string, now: number): Promise<BreakGlassRecord[]> {
    return breakGlass.findActiveBreakGlass(this.db, agentId, taskId, now);
  }
  expireBreakGlass(now: number): Promise<BreakGlassRecord[]> {
    return breakGlass.expireBreakGlass(this.db, now);
  }

  // presence leases (presence.ts)
  getPresence(taskId: string): Promise<PresenceLease | null> {
    return presence.getPresence(this.db, taskId);
  }
  renewPresence(taskId: string, owner: string, expiresAt: number, now: number, audit: AuditInput): Promise<PresenceLease | null> {
    return presence.renewPresence(this.db, taskId, owner, expiresAt, now, audit);
  }
}
