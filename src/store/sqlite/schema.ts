/**
 * SQLite schema migrations, applied in order inside one IMMEDIATE transaction each;
 * `user_version` records how far a database has come.
 */
export const SQLITE_MIGRATIONS: string[] = [
  `
  CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    jwks TEXT NOT NULL,
    labels TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
  );
  CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    owner TEXT NOT NULL,
    intent TEXT NOT NULL,
    scope TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER,
    max_actions INTEGER NOT NULL,
    actions_used INTEGER NOT NULL DEFAULT 0,
    actions_reserved INTEGER NOT NULL DEFAULT 0,
    parent_id TEXT REFERENCES tasks(id),
    root_id TEXT NOT NULL,
    depth INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX tasks_agent ON tasks(agent_id);
  CREATE INDEX tasks_parent ON tasks(parent_id);
  CREATE INDEX tasks_active_expiry ON tasks(expires_at) WHERE status = 'active';
  CREATE TABLE once_keys (
    key TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
  );
  CREATE INDEX once_keys_expiry ON once_keys(expires_at);
  CREATE TABLE decisions (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    audience TEXT NOT NULL,
    resource TEXT,
    destination TEXT,
    args_digest TEXT NOT NULL,
    decision TEXT NOT NULL,
    reasons TEXT NOT NULL,
    policies TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    token_jti TEXT,
    token_expires_at INTEGER,
    created_at INTEGER NOT NULL,
    outcome TEXT
  );
  CREATE INDEX decisions_task ON decisions(task_id);
  CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    type TEXT NOT NULL,
    actor TEXT NOT NULL,
    task_id TEXT,
    agent_id TEXT,
    decision_id TEXT,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
  );
  CREATE INDEX audit_task ON audit(task_id);
  CREATE INDEX audit_agent ON audit(agent_id);
  CREATE INDEX audit_type ON audit(type);
  CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
  );
  CREATE TABLE policies (
    version TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
  );
  CREATE TABLE policy_active (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version TEXT NOT NULL REFERENCES policies(version)
  );
  CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    public_jwk TEXT NOT NULL,
    private_jwk TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER,
    retired_at INTEGER
  );
  `,
  // trusted workload-identity issuers (federation: OIDC issuers, SPIFFE trust domains)
  `
  CREATE TABLE trusted_issuers (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    issuer TEXT NOT NULL,
    audience TEXT NOT NULL,
    jwks TEXT,
    jwks_uri TEXT,
    rules TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    disabled_at INTEGER
  );
  CREATE UNIQUE INDEX trusted_issuers_active ON trusted_issuers(issuer) WHERE status = 'active';
  `,
  // approvals bound to one action, break-glass, presence leases (src/approvals, src/breakglass, src/tasks/presence.ts)
  `
  CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    action_digest TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    args_digest TEXT NOT NULL,
    audience TEXT NOT NULL,
    resource TEXT,
    destination TEXT,
    policies TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    quorum INTEGER NOT NULL,
    four_eyes INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    settled_at INTEGER,
    used_at INTEGER,
    used_decision_id TEXT
  );
  CREATE INDEX approvals_status ON approvals(status, created_at);
  CREATE INDEX approvals_task_action ON approvals(task_id, action_digest);
  CREATE INDEX approvals_open_expiry ON approvals(expires_at) WHERE status IN ('pending', 'approved');
  CREATE TABLE approval_reviews (
    approval_id TEXT NOT NULL REFERENCES approvals(id),
    approver TEXT NOT NULL,
    verdict TEXT NOT NULL,
    comment TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (approval_id, approver)
  );
  CREATE TABLE break_glass (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    task_id TEXT,
    justification TEXT NOT NULL,
    scope TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    confirmed_by TEXT,
    ended_by TEXT,
    created_at INTEGER NOT NULL,
    confirm_deadline INTEGER,
    starts_at INTEGER,
    ends_at INTEGER,
    ended_at INTEGER,
    reviewed_by TEXT,
    reviewed_at INTEGER,
    review_notes TEXT
  );
  CREATE INDEX break_glass_agent ON break_glass(agent_id, status);
  CREATE INDEX break_glass_created ON break_glass(created_at);
  CREATE TABLE presence_leases (
    task_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    renewed_at INTEGER NOT NULL
  );
  `,
  `
  CREATE TABLE tool_labels (
    pattern TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL
  );
  `,
  `
  CREATE TABLE audit_tree (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
  ) WITHOUT ROWID;
  CREATE TABLE audit_checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  `,
  // task tokens issued through a trusted issuer: removing the issuer ends them (src/identity/token-exchange.ts)
  `
  CREATE TABLE federated_tokens (
    jti TEXT PRIMARY KEY,
    issuer_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
  );
  CREATE INDEX federated_tokens_issuer ON federated_tokens(issuer_id, expires_at);
  CREATE INDEX federated_tokens_expiry ON federated_tokens(expires_at);
  `,
  `
  CREATE INDEX approvals_open_agent ON approvals(agent_id, expires_at) WHERE status IN ('pending', 'approved');
  CREATE INDEX approvals_open_task ON approvals(task_id, expires_at) WHERE status IN ('pending', 'approved');
  `,
  `
  ALTER TABLE operators ADD COLUMN expires_at INTEGER;
  ALTER TABLE operators ADD COLUMN rotated_at INTEGER;
  -- tokens issued before operator tokens expired get the default 90 days from the upgrade
  UPDATE operators SET expires_at = (CAST(strftime('%s', 'now') AS INTEGER) + 7776000) * 1000;
  CREATE TABLE checkpoint_keys (
    kid TEXT PRIMARY KEY,
    public_jwk TEXT NOT NULL,
    private_jwk TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  `,
  // staged rollout (src/service/policy-shadow.ts): the one shadow candidate, and its decisions beside the live ones
  `
  CREATE TABLE policy_shadow (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version TEXT NOT NULL REFERENCES policies(version),
    set_at INTEGER NOT NULL,
    set_by TEXT NOT NULL
  );
  CREATE TABLE shadow_decisions (
    decision_id TEXT PRIMARY KEY,
    candidate_version TEXT NOT NULL,
    decision TEXT NOT NULL,
    reasons TEXT NOT NULL,
    policies TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX shadow_decisions_candidate ON shadow_decisions(candidate_version, created_at);
  `,
];
