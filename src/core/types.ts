/**
 * Domain records. These are the shapes the Store keeps and the services pass around;
 * they are backend-neutral (times are epoch milliseconds, JSON-able values only).
 */

export type OperatorRole = 'admin' | 'approver' | 'auditor' | 'requester';

export interface OperatorRecord {
  id: string;
  name: string;
  roles: OperatorRole[];
  /** hex SHA-256 of the bearer token; the token itself is never stored */
  tokenHash: string;
  createdAt: number;
  /** the token stops working at this time (WRIT_OPERATOR_TOKEN_TTL after it was issued) */
  expiresAt: number;
  /** when the token was last replaced; null when it never was */
  rotatedAt: number | null;
  disabled: boolean;
}

export interface Jwk {
  kty: string;
  kid?: string;
  alg?: string;
  use?: string;
  crv?: string;
  x?: string;
  y?: string;
  [k: string]: unknown;
}

export type AgentStatus = 'active' | 'disabled';

export interface AgentRecord {
  id: string;
  name: string;
  jwks: { keys: Jwk[] };
  labels: string[];
  status: AgentStatus;
  createdAt: number;
  createdBy: string;
}

export interface TaskScope {
  /** tool name patterns; `*` matches any run of characters, e.g. `github.*` */
  tools: string[];
  /** resource patterns; empty means the task may name no resource */
  resources: string[];
  /** destination patterns; empty means the task may name no destination */
  destinations: string[];
}

export type TaskStatus = 'active' | 'completed' | 'revoked' | 'expired';

export interface TaskRecord {
  id: string;
  agentId: string;
  /** the operator who asked for the task */
  owner: string;
  intent: string;
  scope: TaskScope;
  status: TaskStatus;
  createdAt: number;
  expiresAt: number;
  endedAt: number | null;
  maxActions: number;
  actionsUsed: number;
  /** budget reserved for delegated sub-tasks */
  actionsReserved: number;
  parentId: string | null;
  rootId: string;
  depth: number;
}

export type DecisionEffect = 'allow' | 'deny' | 'approval_required';

export interface Reason {
  code: string;
  message: string;
}

export interface DecisionRecord {
  id: string;
  taskId: string;
  agentId: string;
  tool: string;
  audience: string;
  resource: string | null;
  destination: string | null;
  argsDigest: string;
  decision: DecisionEffect;
  reasons: Reason[];
  /** ids of the policies that determined the decision */
  policies: string[];
  policyVersion: string;
  /** jti of the action token issued for an allow */
  tokenJti: string | null;
  tokenExpiresAt: number | null;
  createdAt: number;
  outcome: 'succeeded' | 'failed' | null;
}

export interface AuditInput {
  type: string;
  /** who caused it: `operator:<id>`, `agent:<id>`, `system`, or `anonymous` */
  actor: string;
  taskId?: string | null;
  agentId?: string | null;
  decisionId?: string | null;
  data: Record<string, unknown>;
}

export interface AuditEntry {
  seq: number;
  ts: number;
  type: string;
  actor: string;
  taskId: string | null;
  agentId: string | null;
  decisionId: string | null;
  data: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export interface PolicyRecord {
  version: string;
  text: string;
  createdAt: number;
  createdBy: string;
}

/**
 * The candidate set evaluated beside the live one on real traffic (staged rollout,
 * src/service/policy-shadow.ts): at most one at a time; its text is a stored version.
 */
export interface ShadowPolicyRecord {
  version: string;
  text: string;
  setAt: number;
  setBy: string;
}

/**
 * What the shadow candidate decided for one request, kept beside the live decision
 * record (same `decisionId`). `error`: the candidate could not be evaluated (the reason
 * says why); it never changed the live decision.
 */
export interface ShadowDecisionRecord {
  decisionId: string;
  candidateVersion: string;
  decision: 'allow' | 'deny' | 'approval_required' | 'error';
  reasons: Reason[];
  policies: string[];
  createdAt: number;
}

export interface SigningKeyRecord {
  kid: string;
  /** public JWK (OKP/Ed25519) */
  publicJwk: Jwk;
  /** private JWK; kept in the store so that every instance signs with the same keys */
  privateJwk: Jwk;
  createdAt: number;
  /** keys past this time are no longer used to sign, but stay in the JWKS until retiredAt */
  rotatedAt: number | null;
  retiredAt: number | null;
}

/**
 * A key that signs audit checkpoints, and nothing else. Kept apart from the token
 * signing keys (its own table, its own published key set), so that a leaked
 * token-signing key cannot forge a checkpoint.
 */
export interface CheckpointKeyRecord {
  kid: string;
  /** public JWK (OKP/Ed25519) */
  publicJwk: Jwk;
  /** private JWK, sealed like the signing keys when a key-encryption key is set */
  privateJwk: Jwk;
  createdAt: number;
}

/** A claim value a federation rule compares exactly (string, number or boolean). */
export type ClaimValue = string | number | boolean;

/** Maps a trusted issuer's token to a registered agent when every listed claim is equal. */
export interface IssuerRule {
  /**
   * claim -> exact value; `sub` is always present. A name is a literal top-level claim
   * name, or, when it starts with `/`, an RFC 6901 JSON Pointer into nested claims
   * (src/identity/issuers.ts `claimPath`).
   */
  claims: Record<string, ClaimValue>;
  agentId: string;
}

/**
 * A trusted workload-identity issuer: an OIDC issuer (Kubernetes, CI, cloud) or a
 * SPIFFE trust domain whose JWT-SVIDs are accepted in a token exchange.
 */
export interface IssuerRecord {
  id: string;
  kind: 'oidc' | 'spiffe';
  /** the exact `iss` (oidc), or `spiffe://<trust domain>` (spiffe) */
  issuer: string;
  /** the `aud` a subject token must carry */
  audience: string;
  /** inline public keys, or null when fetched from `jwksUri` */
  jwks: { keys: Jwk[] } | null;
  jwksUri: string | null;
  rules: IssuerRule[];
  status: 'active' | 'disabled';
  createdAt: number;
  createdBy: string;
  disabledAt: number | null;
}

/**
 * A task token issued through a trusted issuer (RFC 8693 exchange). Kept until the
 * token expires so that removing the issuer can end it on every instance: the task
 * token carries `fed` (the issuer record id) and is checked against this record.
 */
export interface FederatedTokenRecord {
  /** the task token's `jti` */
  jti: string;
  issuerId: string;
  agentId: string;
  taskId: string;
  issuedAt: number;
  /** the task token's `exp`, in epoch milliseconds */
  expiresAt: number;
  /** set when the issuer was removed (without `keep_issued`) while the token was live */
  revokedAt: number | null;
}

/** Operator-set labels for the tools matching `pattern` (`*` wildcards); what policy sees as `resource.labels`. */
export interface ToolLabelsRecord {
  pattern: string;
  labels: string[];
  updatedAt: number;
  updatedBy: string;
}
