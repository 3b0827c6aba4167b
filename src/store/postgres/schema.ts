import type { PoolClient } from 'pg';
import { GENESIS_HASH } from '../../core/audit-hash.js';

/**
 * PostgreSQL schema migrations. Column names match the SQLite schema so that the
 * row mappers in `rows.ts` serve both. Times are BIGINT epoch milliseconds. JSON
 * columns are TEXT holding the JSON the store wrote: jsonb would reorder keys,
 * normalise numbers and refuse `\u0000`, and the audit chain must read back
 * exactly what was hashed (rows.ts parses text and jsonb alike).
 *
 * Version N is `PG_MIGRATIONS[N - 1]`; `schema_migrations` records what was applied.
 */
export const PG_MIGRATIONS: string[] = [
  `
  CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE
  );
  CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    jwks TEXT NOT NULL,
    labels TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
  );
  CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    owner TEXT NOT NULL,
    intent TEXT NOT NULL,
    scope TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    max_actions INTEGER NOT NULL,
    actions_used INTEGER NOT NULL DEFAULT 0,
    actions_reserved INTEGER NOT NULL DEFAULT 0,
    parent_id TEXT REFERENCES tasks(id),
    root_id TEXT NOT NULL,
    depth INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX tasks_agent ON tasks(agent_id);
  CREATE INDEX tasks_parent ON tasks(parent_id);
  CREATE INDEX tasks_created ON tasks(created_at, id);
  CREATE INDEX tasks_active_expiry ON tasks(expires_at) WHERE status = 'active';
  CREATE TABLE once_keys (
    key TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
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
    token_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    outcome TEXT
  );
  CREATE INDEX decisions_task ON decisions(task_id);
  CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    ts BIGINT NOT NULL,
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
  CREATE INDEX audit_decision ON audit(decision_id);
  -- The chain head: one row, locked FOR UPDATE by every appending transaction, so
  -- appends from every process are serialized. seq 0 means "no entries yet".
  CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
  );
  INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '${GENESIS_HASH}');
  CREATE TABLE policies (
    version TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    created_at BIGINT NOT NULL,
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
    created_at BIGINT NOT NULL,
    rotated_at BIGINT,
    retired_at BIGINT
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
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    disabled_at BIGINT
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
    four_eyes BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    settled_at BIGINT,
    used_at BIGINT,
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
    created_at BIGINT NOT NULL,
    PRIMARY KEY (approval_id, approver)
  );
  CREATE TABLE break_glass (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    task_id TEXT,
    justification TEXT NOT NULL,
    scope TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    confirmed_by TEXT,
    ended_by TEXT,
    created_at BIGINT NOT NULL,
    confirm_deadline BIGINT,
    starts_at BIGINT,
    ends_at BIGINT,
    ended_at BIGINT,
    reviewed_by TEXT,
    reviewed_at BIGINT,
    review_notes TEXT
  );
  CREATE INDEX break_glass_agent ON break_glass(agent_id, status);
  CREATE INDEX break_glass_created ON break_glass(created_at);
  CREATE TABLE presence_leases (
    task_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL
  );
  `,
  `
  CREATE TABLE tool_labels (
    pattern TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
  );
  `,
  `
  CREATE TABLE audit_tree (
    level INTEGER NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
  );
  CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY,
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL
  );
  `,
  // task tokens issued through a trusted issuer: removing the issuer ends them (src/identity/token-exchange.ts)
  `
  CREATE TABLE federated_tokens (
    jti TEXT PRIMARY KEY,
    issuer_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
  );
  CREATE INDEX federated_tokens_issuer ON federated_tokens(issuer_id, expires_at);
  CREATE INDEX federated_tokens_expiry ON federated_tokens(expires_at);
  `,
  `
  CREATE INDEX approvals_open_agent ON approvals(agent_id, expires_at) WHERE status IN ('pending', 'approved');
  CREATE INDEX approvals_open_task ON approvals(task_id, expires_at) WHERE status IN ('pending', 'approved');
  `,
  `
  ALTER TABLE operators ADD COLUMN expires_at BIGINT;
  ALTER TABLE operators ADD COLUMN rotated_at BIGINT;
  -- tokens issued before operator tokens expired get the default 90 days from the upgrade
  UPDATE operators SET expires_at = (floor(extract(epoch FROM now()))::bigint + 7776000) * 1000;
  CREATE TABLE checkpoint_keys (
    kid TEXT PRIMARY KEY,
    public_jwk TEXT NOT NULL,
    private_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL
  );
  `,
  // staged rollout (src/service/policy-shadow.ts): the one shadow candidate, and its decisions beside the live ones
  `
  CREATE TABLE policy_shadow (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version TEXT NOT NULL REFERENCES policies(version),
    set_at BIGINT NOT NULL,
    set_by TEXT NOT NULL
  );
  CREATE TABLE shadow_decisions (
    decision_id TEXT PRIMARY KEY,
    candidate_version TEXT NOT NULL,
    decision TEXT NOT NULL,
    reasons TEXT NOT NULL,
    policies TEXT NOT NULL,
    created_at BIGINT NOT NULL
  );
  CREATE INDEX shadow_decisions_candidate ON shadow_decisions(candidate_version, created_at);
  `,
  // the flush barrier after each commit (db.ts FLUSH_BARRIER): one row per backend, written
  // after a commit that did not wait for its flush, so that it waits for both
  `
  CREATE TABLE commit_barrier (
    pid INTEGER PRIMARY KEY,
    n BIGINT NOT NULL
  );
  `,
  // A batch of decisions that all pass their guards, committed by one call in one message
  // (decisions.ts commitInOneMessage): the guarded tasks, the approvals and the break-glass
  // are locked and checked, then the chain head, whose lock is held only while this runs
  // on the server, not across a round trip to the client. The entries are chained here:
  // the client sends each entry's hashed text around its seq (src/core/audit-hash.ts
  // entryHashParts). 'guard' when any guard fails (nothing written: the client then
  // commits the batch the long way, with its fallbacks), else 'ok'.
  `
  CREATE FUNCTION writ_commit_decisions(
    p_now BIGINT, p_task_ids TEXT[], p_task_takes INT[], p_approval_ids TEXT[], p_approval_decisions TEXT[], p_break_glass_ids TEXT[],
    d_id TEXT[], d_task_id TEXT[], d_agent_id TEXT[], d_tool TEXT[], d_audience TEXT[], d_resource TEXT[], d_destination TEXT[],
    d_args_digest TEXT[], d_decision TEXT[], d_reasons TEXT[], d_policies TEXT[], d_policy_version TEXT[], d_token_jti TEXT[],
    d_token_expires_at BIGINT[], d_created_at BIGINT[], d_outcome TEXT[],
    a_ts BIGINT, a_type TEXT[], a_actor TEXT[], a_task_id TEXT[], a_agent_id TEXT[], a_decision_id TEXT[], a_data TEXT[],
    a_before TEXT[], a_after TEXT[]
  ) RETURNS TEXT LANGUAGE plpgsql AS $fn$
  DECLARE
    n INT;
    h_seq BIGINT;
    h_hash TEXT;
    seqs BIGINT[] := '{}';
    prevs TEXT[] := '{}';
    hashes TEXT[] := '{}';
  BEGIN
    -- the same lock order as every writer: tasks, approvals, break-glass (each in id order), then the head
    PERFORM 1 FROM tasks WHERE id = ANY(p_task_ids) ORDER BY id FOR UPDATE;
    SELECT count(*) INTO n FROM tasks t JOIN unnest(p_task_ids, p_task_takes) AS g(id, take) ON g.id = t.id
      WHERE t.status = 'active' AND t.expires_at > p_now AND t.max_actions - t.actions_used - t.actions_reserved >= g.take;
    IF n <> coalesce(cardinality(p_task_ids), 0) THEN RETURN 'guard'; END IF;
    PERFORM 1 FROM approvals WHERE id = ANY(p_approval_ids) ORDER BY id FOR UPDATE;
    SELECT count(*) INTO n FROM approvals WHERE id = ANY(p_approval_ids) AND status = 'approved' AND expires_at > p_now;
    IF n <> coalesce(cardinality(p_approval_ids), 0) THEN RETURN 'guard'; END IF;
    PERFORM 1 FROM break_glass WHERE id = ANY(p_break_glass_ids) ORDER BY id FOR SHARE;
    SELECT count(*) INTO n FROM break_glass WHERE id = ANY(p_break_glass_ids) AND status = 'active' AND ends_at IS NOT NULL AND ends_at > p_now;
    IF n <> coalesce(cardinality(p_break_glass_ids), 0) THEN RETURN 'guard'; END IF;
    SELECT seq, hash INTO h_seq, h_hash FROM audit_head WHERE id = 1 FOR UPDATE;
    IF NOT FOUND THEN RETURN 'guard'; END IF;
    FOR i IN 1 .. coalesce(cardinality(a_type), 0) LOOP
      prevs := array_append(prevs, h_hash);
      h_seq := h_seq + 1;
      seqs := array_append(seqs, h_seq);
      h_hash := encode(sha256(convert_to(h_hash || chr(10) || a_before[i] || h_seq::text || a_after[i], 'UTF8')), 'hex');
      hashes := array_append(hashes, h_hash);
    END LOOP;
    UPDATE approvals SET status = 'used', used_at = p_now, used_decision_id = u.dec
      FROM unnest(p_approval_ids, p_approval_decisions) AS u(id, dec) WHERE approvals.id = u.id;
    UPDATE tasks SET actions_used = tasks.actions_used + g.take FROM unnest(p_task_ids, p_task_takes) AS g(id, take) WHERE tasks.id = g.id;
    INSERT INTO decisions (id, task_id, agent_id, tool, audience, resource, destination, args_digest, decision, reasons, policies, policy_version, token_jti, token_expires_at, created_at, outcome)
      SELECT * FROM unnest(d_id, d_task_id, d_agent_id, d_tool, d_audience, d_resource, d_destination, d_args_digest, d_decision, d_reasons, d_policies, d_policy_version, d_token_jti, d_token_expires_at, d_created_at, d_outcome);
    INSERT INTO audit (seq, ts, type, actor, task_id, agent_id, decision_id, data, prev_hash, hash)
      SELECT u.seq, a_ts, u.type, u.actor, u.task_id, u.agent_id, u.decision_id, u.data, u.prev_hash, u.hash
      FROM unnest(seqs, a_type, a_actor, a_task_id, a_agent_id, a_decision_id, a_data, prevs, hashes)
        AS u(seq, type, actor, task_id, agent_id, decision_id, data, prev_hash, hash);
    UPDATE audit_head SET seq = h_seq, hash = h_hash WHERE id = 1;
    RETURN 'ok';
  END
  $fn$;
  `,
  // writ_commit_decisions again, with half the statements for the usual batch: each guard
  // is locked and checked by one statement, and none runs for what the batch does not use
  `
  CREATE OR REPLACE FUNCTION writ_commit_decisions(
    p_now BIGINT, p_task_ids TEXT[], p_task_takes INT[], p_approval_ids TEXT[], p_approval_decisions TEXT[], p_break_glass_ids TEXT[],
    d_id TEXT[], d_task_id TEXT[], d_agent_id TEXT[], d_tool TEXT[], d_audience TEXT[], d_resource TEXT[], d_destination TEXT[],
    d_args_digest TEXT[], d_decision TEXT[], d_reasons TEXT[], d_policies TEXT[], d_policy_version TEXT[], d_token_jti TEXT[],
    d_token_expires_at BIGINT[], d_created_at BIGINT[], d_outcome TEXT[],
    a_ts BIGINT, a_type TEXT[], a_actor TEXT[], a_task_id TEXT[], a_agent_id TEXT[], a_decision_id TEXT[], a_data TEXT[],
    a_before TEXT[], a_after TEXT[]
  ) RETURNS TEXT LANGUAGE plpgsql AS $fn$
  DECLARE
    n INT;
    h_seq BIGINT;
    h_hash TEXT;
    seqs BIGINT[] := '{}';
    prevs TEXT[] := '{}';
    hashes TEXT[] := '{}';
  BEGIN
    -- the same lock order as every writer: tasks, approvals, break-glass (each in id order), then
    -- the head; each locked and checked by one statement (a row locked after a wait is read as
    -- its newest version, READ COMMITTED), and none for what the batch does not use
    IF cardinality(p_task_ids) > 0 THEN
      SELECT count(*) INTO n
        FROM (SELECT id, status, expires_at, max_actions, actions_used, actions_reserved FROM tasks WHERE id = ANY(p_task_ids) ORDER BY id FOR UPDATE) t
        JOIN unnest(p_task_ids, p_task_takes) AS g(id, take) ON g.id = t.id
        WHERE t.status = 'active' AND t.expires_at > p_now AND t.max_actions - t.actions_used - t.actions_reserved >= g.take;
      IF n <> cardinality(p_task_ids) THEN RETURN 'guard'; END IF;
    END IF;
    IF cardinality(p_approval_ids) > 0 THEN
      SELECT count(*) INTO n FROM (SELECT id, status, expires_at FROM approvals WHERE id = ANY(p_approval_ids) ORDER BY id FOR UPDATE) a
        WHERE a.status = 'approved' AND a.expires_at > p_now;
      IF n <> cardinality(p_approval_ids) THEN RETURN 'guard'; END IF;
    END IF;
    IF cardinality(p_break_glass_ids) > 0 THEN
      SELECT count(*) INTO n FROM (SELECT id, status, ends_at FROM break_glass WHERE id = ANY(p_break_glass_ids) ORDER BY id FOR SHARE) b
        WHERE b.status = 'active' AND b.ends_at IS NOT NULL AND b.ends_at > p_now;
      IF n <> cardinality(p_break_glass_ids) THEN RETURN 'guard'; END IF;
    END IF;
    SELECT seq, hash INTO h_seq, h_hash FROM audit_head WHERE id = 1 FOR UPDATE;
    IF NOT FOUND THEN RETURN 'guard'; END IF;
    FOR i IN 1 .. coalesce(cardinality(a_type), 0) LOOP
      prevs := array_append(prevs, h_hash);
      h_seq := h_seq + 1;
      seqs := array_append(seqs, h_seq);
      h_hash := encode(sha256(convert_to(h_hash || chr(10) || a_before[i] || h_seq::text || a_after[i], 'UTF8')), 'hex');
      hashes := array_append(hashes, h_hash);
    END LOOP;
    IF cardinality(p_approval_ids) > 0 THEN
      UPDATE approvals SET status = 'used', used_at = p_now, used_decision_id = u.dec
        FROM unnest(p_approval_ids, p_approval_decisions) AS u(id, dec) WHERE approvals.id = u.id;
    END IF;
    IF cardinality(p_task_ids) > 0 THEN
      UPDATE tasks SET actions_used = tasks.actions_used + g.take FROM unnest(p_task_ids, p_task_takes) AS g(id, take) WHERE tasks.id = g.id;
    END IF;
    INSERT INTO decisions (id, task_id, agent_id, tool, audience, resource, destination, args_digest, decision, reasons, policies, policy_version, token_jti, token_expires_at, created_at, outcome)
      SELECT * FROM unnest(d_id, d_task_id, d_agent_id, d_tool, d_audience, d_resource, d_destination, d_args_digest, d_decision, d_reasons, d_policies, d_policy_version, d_token_jti, d_token_expires_at, d_created_at, d_outcome);
    INSERT INTO audit (seq, ts, type, actor, task_id, agent_id, decision_id, data, prev_hash, hash)
      SELECT u.seq, a_ts, u.type, u.actor, u.task_id, u.agent_id, u.decision_id, u.data, u.prev_hash, u.hash
      FROM unnest(seqs, a_type, a_actor, a_task_id, a_agent_id, a_decision_id, a_data, prevs, hashes)
        AS u(seq, type, actor, task_id, agent_id, decision_id, data, prev_hash, hash);
    UPDATE audit_head SET seq = h_seq, hash = h_hash WHERE id = 1;
    RETURN 'ok';
  END
  $fn$;
  `,
];

/** Advisory lock class for migrations (the second key is the schema's hash). */
const MIGRATION_LOCK_CLASS = 0x57726974; // "Writ"

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Applies pending migrations on `client`, which must be inside a transaction: takes a
 * transaction-scoped advisory lock keyed by the schema first, so instances starting
 * at once take turns and the later ones find nothing left to do. Creates `schema`
 * when given and missing. Returns the versions applied.
 */
export async function applyMigrations(client: PoolClient, schema: string | undefined): Promise<number[]> {
  await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [MIGRATION_LOCK_CLASS, schema ?? '']);
  if (schema) {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    await client.query(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
  }
  await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
  const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
  const current = Number(rows[0]?.v ?? 0);
  const applied: number[] = [];
  for (let v = current + 1; v <= PG_MIGRATIONS.length; v++) {
    await client.query(PG_MIGRATIONS[v - 1]!);
    await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [v, Date.now()]);
    applied.push(v);
  }
  return applied;
}
