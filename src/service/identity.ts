import type { Clock } from '../core/clock.js';
import { sha256Hex } from '../core/digest.js';
import { ConflictError, NotFoundError, UnauthorizedError } from '../core/errors.js';
import { newId, newSecret } from '../core/ids.js';
import type { AgentRecord, OperatorRecord, OperatorRole } from '../core/types.js';
import { checkAgentJwks } from '../identity/agent-keys.js';
import type { ServiceDeps } from './deps.js';
import type { Store } from '../store/store.js';
import { checkAgentId } from '../identity/spiffe-id.js';
import { KeyRing } from '../tokens/key-ring.js';
import { checkBootstrapToken } from '../core/token-strength.js';
import type { WritConfig } from './config.js';
import { Federation } from '../identity/token-exchange.js';
import { TaskEndings } from '../tasks/endings.js';
import { requireRole } from '../core/roles.js';

export interface RegisterAgentInput {
  id: string;
  name?: string;
  /** registered public keys; an agent that proves itself only through a trusted issuer has none */
  jwks?: { keys: Record<string, unknown>[] };
  labels?: string[];
}

/**
 * Identity: operators (their tokens, roles and recovery of the first admin), agents
 * (registered keys, disabling) and the trusted issuers of token exchange (federation).
 */
export class IdentityService {
  readonly federation: Federation;
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly config: WritConfig;

  constructor(private readonly deps: ServiceDeps & { endings: TaskEndings; keys: KeyRing }) {
    this.store = deps.store;
    this.clock = deps.clock;
    this.config = deps.config;
    this.federation = new Federation(deps);
  }

  /**
   * On a store with no operator, creates the first admin (atomically: instances starting
   * together create one). With `token` (from WRIT_BOOTSTRAP_TOKEN) that is its token,
   * refused when its estimated strength is under 128 bits, whether or not it is used;
   * otherwise one is generated and returned so the caller can show it once. Returns
   * null when an operator exists already (the token is then ignored).
   */
  async bootstrapAdmin(token?: string): Promise<{ token: string; generated: boolean; expiresAt: number } | null> {
    if (token !== undefined) checkBootstrapToken(token);
    if ((await this.store.countOperators()) > 0) return null;
    const t = token ?? newSecret('wop');
    const now = this.clock.now();
    const op: OperatorRecord = {
      id: newId('op'), name: 'admin', roles: ['admin'], tokenHash: sha256Hex(t), createdAt: now,
      expiresAt: now + this.config.operatorTokenTtlSeconds * 1000, rotatedAt: null, disabled: false,
    };
    const created = await this.store.bootstrapOperator(op, {
      type: 'operator.created', actor: 'system', data: { operator_id: op.id, roles: op.roles, bootstrap: true, expires_at: op.expiresAt },
    });
    return created ? { token: t, generated: token === undefined, expiresAt: op.expiresAt } : null;
  }

  async createOperator(by: OperatorRecord, input: { name: string; roles: OperatorRole[] }): Promise<{ id: string; token: string; expires_at: string }> {
    requireRole(by, 'admin');
    const token = newSecret('wop');
    const now = this.clock.now();
    const op: OperatorRecord = {
      id: newId('op'), name: input.name, roles: input.roles, tokenHash: sha256Hex(token), createdAt: now,
      expiresAt: now + this.config.operatorTokenTtlSeconds * 1000, rotatedAt: null, disabled: false,
    };
    await this.store.createOperator(op, {
      type: 'operator.created', actor: `operator:${by.id}`, data: { operator_id: op.id, name: op.name, roles: op.roles, expires_at: op.expiresAt },
    });
    return { id: op.id, token, expires_at: new Date(op.expiresAt).toISOString() };
  }

  async authenticateOperator(bearer: string | null): Promise<OperatorRecord> {
    if (!bearer) throw new UnauthorizedError('an operator token is required');
    const op = await this.store.findOperatorByTokenHash(sha256Hex(bearer));
    if (!op) throw new UnauthorizedError('the operator token is not valid', 'invalid_token');
    if (op.disabled) throw new UnauthorizedError(`operator \`${op.id}\` is disabled`, 'operator_disabled');
    if (op.expiresAt <= this.clock.now()) throw new UnauthorizedError('the operator token has expired: an admin rotates it', 'token_expired');
    return op;
  }

  /** Every operator (never a token or its hash), with its token's expiry; admins and auditors. */
  async listOperators(by: OperatorRecord): Promise<OperatorRecord[]> {
    requireRole(by, 'admin', 'auditor');
    return this.store.listOperators();
  }

  /**
   * Disables an operator: its token stops working at once. Refused (409 `last_admin`)
   * when no other enabled admin with an unexpired token would remain.
   */
  async disableOperator(by: OperatorRecord, id: string): Promise<OperatorRecord> {
    requireRole(by, 'admin');
    const now = this.clock.now();
    const r = await this.store.disableOperator(id, now, { type: 'operator.disabled', actor: `operator:${by.id}`, data: { operator_id: id } });
    if (r === 'not_found') throw new NotFoundError(`operator \`${id}\` does not exist`, 'operator_not_found');
    if (r === 'already_disabled') throw new ConflictError(`operator \`${id}\` is disabled already`, 'operator_disabled');
    if (r === 'last_admin') throw new ConflictError(`operator \`${id}\` is the last enabled admin: create or rotate another admin first`, 'last_admin');
    return (await this.store.getOperator(id))!;
  }

  /**
   * Gives an enabled operator a new token (shown once) with a fresh expiry; the old
   * token stops working in the same transaction. Admins only: an operator cannot extend
   * its own token's life, so a stolen token still ends at its expiry.
   */
  async rotateOperatorToken(by: OperatorRecord, id: string): Promise<{ id: string; token: string; expires_at: string }> {
    requireRole(by, 'admin');
    const token = newSecret('wop');
    const now = this.clock.now();
    const expiresAt = now + this.config.operatorTokenTtlSeconds * 1000;
    const op = await this.store.rotateOperatorToken(id, sha256Hex(token), expiresAt, now, {
      type: 'operator.token_rotated', actor: `operator:${by.id}`, data: { operator_id: id, expires_at: expiresAt },
    });
    if (!op) {
      const exists = await this.store.getOperator(id);
      if (!exists) throw new NotFoundError(`operator \`${id}\` does not exist`, 'operator_not_found');
      throw new ConflictError(`operator \`${id}\` is disabled`, 'operator_disabled');
    }
    return { id, token, expires_at: new Date(expiresAt).toISOString() };
  }

  async registerAgent(by: OperatorRecord, input: RegisterAgentInput): Promise<AgentRecord> {
    requireRole(by, 'admin');
    checkAgentId(input.id);
    const jwks = input.jwks ? checkAgentJwks(input.jwks as { keys: never[] }) : { keys: [] };
    const agent: AgentRecord = {
      id: input.id,
      name: input.name ?? input.id,
      jwks,
      labels: input.labels ?? [],
      status: 'active',
      createdAt: this.clock.now(),
      createdBy: by.id,
    };
    await this.store.createAgent(agent, {
      type: 'agent.registered',
      actor: `operator:${by.id}`,
      agentId: agent.id,
      data: { name: agent.name, labels: agent.labels, keys: jwks.keys.map((k) => ({ kty: k.kty, crv: k.crv, kid: k.kid ?? null })) },
    });
    return agent;
  }

  async getAgent(by: OperatorRecord, id: string): Promise<AgentRecord> {
    requireRole(by, 'admin', 'auditor', 'approver', 'requester');
    const a = await this.store.getAgent(id);
    if (!a) throw new NotFoundError(`agent \`${id}\` does not exist`, 'agent_not_found');
    return a;
  }

  async listAgents(by: OperatorRecord): Promise<AgentRecord[]> {
    requireRole(by, 'admin', 'auditor', 'approver', 'requester');
    return this.store.listAgents();
  }

  async disableAgent(by: OperatorRecord, id: string): Promise<{ revoked_task_ids: string[] }> {
    requireRole(by, 'admin');
    const r = await this.store.disableAgent(id, this.clock.now(), { type: 'agent.disabled', actor: `operator:${by.id}`, agentId: id, data: {} });
    if (!r) throw new NotFoundError(`agent \`${id}\` does not exist`, 'agent_not_found');
    this.deps.endings.changed(r.revokedTaskIds);
    return { revoked_task_ids: r.revokedTaskIds };
  }
}
