import { decodeProtectedHeader } from 'jose';
import { DpopError, DpopNonces, DpopReplayCache } from '../tokens/dpop.js';
import { epochSeconds, type Clock } from '../core/clock.js';
import { ConflictError, ForbiddenError, InvalidRequestError, OAuthError, UnauthorizedError, WritError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { AgentRecord, OperatorRecord, TaskRecord } from '../core/types.js';
import { CLIENT_ASSERTION_TYPE, peekAssertionSubject, verifyClientAssertion } from '../identity/client-assertion.js';
import type { ServiceDeps } from './deps.js';
import type { Store } from '../store/store.js';
import { TOKEN_EXCHANGE_GRANT_TYPE, type TokenExchangeForm } from '../identity/token-exchange.js';
import { KeyRing } from '../tokens/key-ring.js';
import { ACTION_TOKEN_TYP, MAX_TASK_TOKEN_TTL_SECONDS, TASK_TOKEN_TYP, type ActionTokenClaims } from '../tokens/token-types.js';
import { TokenVerificationError, verifyWritJwt } from '../tokens/verify-token.js';
import type { WritConfig } from './config.js';
import { Federation } from '../identity/token-exchange.js';
import { TaskEndings } from '../tasks/endings.js';
import type { TaskPrincipal } from '../tokens/token-types.js';
import { requireRole } from '../core/roles.js';

/**
 * Tokens: task tokens (RFC 6749 §4.4 with RFC 7523 client assertions, RFC 8693 token
 * exchange through identity's federation, RFC 9449 DPoP binding), their authentication
 * on every request, action tokens (verify, consume once, RFC 7662 introspection), and
 * the signing keys.
 */
export class TokenService {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly config: WritConfig;
  private readonly tokenCache = new Map<string, TaskPrincipal>();
  /** DPoP proof `jti`s seen (RFC 9449 §11.1) and, when configured, server nonces (§8) */
  readonly dpopReplay = new DpopReplayCache();
  private dpopNonceSource: DpopNonces | undefined;

  constructor(private readonly deps: ServiceDeps & { keys: KeyRing; federation: Federation; endings: TaskEndings }) {
    this.store = deps.store;
    this.clock = deps.clock;
    this.config = deps.config;
    deps.endings.onChange(() => this.tokenCache.clear());
  }

  get keys(): KeyRing {
    return this.deps.keys;
  }

  get dpopNonces(): DpopNonces | undefined {
    if (!this.config.dpopNonces) return undefined;
    return (this.dpopNonceSource ??= new DpopNonces());
  }

  get tokenEndpoint(): string {
    return `${this.config.issuer}/oauth/token`;
  }

  async issueTaskToken(form: {
    grant_type: string;
    client_assertion_type?: string;
    client_assertion?: string;
    task_id?: string;
  }, binding: { jkt?: string } = {}): Promise<{ access_token: string; token_type: 'Bearer' | 'DPoP'; expires_in: number; issued_token_type: string }> {
    // RFC 8693: a trusted issuer's workload token (OIDC, SPIFFE JWT-SVID) instead of an assertion
    if (form.grant_type === TOKEN_EXCHANGE_GRANT_TYPE) {
      // not bound there yet: refuse rather than hand out a bearer token the client asked to bind
      if (binding.jkt !== undefined) throw new DpopError('DPoP-bound tokens are not issued by token exchange yet', 400);
      return this.deps.federation.exchange(form as TokenExchangeForm);
    }
    if (form.grant_type !== 'client_credentials') {
      throw new OAuthError('unsupported_grant_type', `grant type \`${form.grant_type}\` is not supported`);
    }
    if (form.client_assertion_type !== CLIENT_ASSERTION_TYPE || !form.client_assertion) {
      throw new OAuthError('invalid_client', `client authentication needs \`client_assertion_type\`=${CLIENT_ASSERTION_TYPE} and a \`client_assertion\``);
    }
    if (!form.task_id) throw new OAuthError('invalid_request', '`task_id` is required');
    const now = this.clock.now();
    let agentId: string;
    try {
      agentId = peekAssertionSubject(form.client_assertion);
    } catch (err) {
      // alg `none`/HS256, iss != sub, not a JWT: refused before any key is looked up, but still recorded
      await this.deps.audit.securityEvent('token.refused', 'anonymous', { reason: 'bad_assertion', detail: (err as Error).message.slice(0, 200) });
      throw err;
    }
    const agent = await this.store.getAgent(agentId);
    if (!agent) {
      await this.deps.audit.securityEvent('token.refused', 'anonymous', { reason: 'unknown_agent', claimed_agent: agentId.slice(0, 256) });
      throw new OAuthError('invalid_client', 'the client assertion does not verify');
    }
    let verified;
    try {
      verified = await verifyClientAssertion(form.client_assertion, agent, { audiences: [this.config.issuer, this.tokenEndpoint], now });
    } catch (err) {
      await this.deps.audit.securityEvent('token.refused', 'anonymous', { reason: 'bad_assertion', claimed_agent: agent.id, detail: (err as Error).message }, { agentId: agent.id });
      throw err;
    }
    if (agent.status !== 'active') {
      await this.deps.audit.securityEvent('token.refused', `agent:${agent.id}`, { reason: 'agent_disabled' }, { agentId: agent.id });
      throw new OAuthError('invalid_client', `agent \`${agent.id}\` is disabled`);
    }
    const task = await this.store.getTask(form.task_id);
    if (!task || task.agentId !== agent.id) {
      await this.deps.audit.securityEvent('token.refused', `agent:${agent.id}`, { reason: 'task_not_for_agent', task_id: form.task_id.slice(0, 256) }, { agentId: agent.id });
      throw new OAuthError('invalid_grant', 'the task does not exist or is not this agent\'s');
    }
    if (task.status !== 'active' || task.expiresAt <= now) {
      await this.deps.audit.securityEvent('token.refused', `agent:${agent.id}`, { reason: 'task_not_active', task_id: task.id }, { agentId: agent.id, taskId: task.id });
      throw new OAuthError('invalid_grant', `task \`${task.id}\` is not active`);
    }
    const iat = epochSeconds(now);
    const exp = Math.min(iat + this.config.taskTokenTtlSeconds, epochSeconds(task.expiresAt));
    if (exp <= iat) throw new OAuthError('invalid_grant', `task \`${task.id}\` is about to expire`);
    const jti = newId('tt');
    const token = this.keys.signJwt(TASK_TOKEN_TYP, {
      iss: this.config.issuer,
      sub: agent.id,
      aud: this.config.issuer,
      iat,
      exp,
      jti,
      txn: task.id,
      // RFC 9449 §6.1: bound to the key that signed the token request's proof
      ...(binding.jkt === undefined ? {} : { cnf: { jkt: binding.jkt } }),
    });
    // The assertion's jti is spent in the same transaction that records the issue.
    const first = await this.store.useOnce(`assertion:${agent.id}:${verified.jti}`, verified.exp * 1000, {
      type: 'token.issued',
      actor: `agent:${agent.id}`,
      agentId: agent.id,
      taskId: task.id,
      data: { jti, exp, assertion_jti: verified.jti, ...(binding.jkt === undefined ? {} : { dpop_jkt: binding.jkt }) },
    });
    if (!first) {
      await this.deps.audit.securityEvent('token.refused', `agent:${agent.id}`, { reason: 'assertion_replayed', assertion_jti: verified.jti }, { agentId: agent.id, taskId: task.id });
      throw new OAuthError('invalid_client', 'the client assertion was used before');
    }
    // RFC 9449 §5.1: `token_type` DPoP for a bound token
    return { access_token: token, token_type: binding.jkt === undefined ? 'Bearer' : 'DPoP', expires_in: exp - iat, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' };
  }

  /**
   * Authenticates a task token: signature, type, issuer, audience, expiry, then the
   * task's current state (read on every request, so revocation takes effect at once).
   */
  async authenticateTask(bearer: string | null, proven: { jkt: string } | null = null): Promise<{ principal: TaskPrincipal; task: TaskRecord; agent: AgentRecord }> {
    if (!bearer) throw new UnauthorizedError('a task token is required');
    const now = this.clock.now();
    const principal = await this.taskPrincipal(bearer);
    // RFC 9449 §7.1: a bound token needs a proof by its key, on every use; every caller
    // that checked no proof passes none, so a bound token fails closed there
    if (principal.jkt !== undefined) {
      if (proven === null) throw new UnauthorizedError('this task token is bound to a key (DPoP): send it as `Authorization: DPoP` with a `DPoP` proof', 'invalid_token');
      if (proven.jkt !== principal.jkt) throw new DpopError('the `DPoP` proof is signed by another key than the one the task token is bound to');
    } else if (proven !== null) {
      throw new UnauthorizedError('this task token is not bound to a key: send it as `Authorization: Bearer`', 'invalid_token');
    }
    // a token obtained through a trusted issuer is read from the store on every request
    // too (in parallel): removing the issuer ends it at the next request, on every instance
    const loaded =
      principal.issuerId === undefined
        ? await this.store.getTaskWithAgent(principal.taskId)
        : (await Promise.all([this.store.getTaskWithAgent(principal.taskId), this.checkFederatedToken(principal)]))[0];
    if (!loaded || loaded.task.agentId !== principal.agentId) throw new UnauthorizedError('the task token is not valid', 'invalid_token');
    if (loaded.agent.status !== 'active') throw new UnauthorizedError(`agent \`${loaded.agent.id}\` is disabled`, 'agent_disabled');
    if (loaded.task.status !== 'active' || loaded.task.expiresAt <= now) {
      throw new UnauthorizedError(`task \`${loaded.task.id}\` is not active`, 'task_not_active');
    }
    return { principal, task: loaded.task, agent: loaded.agent };
  }

  /**
   * A task token with `fed` must have its issuance record, for this task and issuer,
   * not revoked (the issuer was removed without `keep_issued`). No record: refused.
   */
  private async checkFederatedToken(principal: TaskPrincipal): Promise<void> {
    if (principal.issuerId === undefined) return;
    const t = await this.store.getFederatedToken(principal.jti ?? '');
    if (!t || t.issuerId !== principal.issuerId || t.taskId !== principal.taskId || t.agentId !== principal.agentId) {
      throw new UnauthorizedError('the task token is not valid', 'invalid_token');
    }
    if (t.revokedAt !== null) {
      throw new UnauthorizedError(`the trusted issuer \`${t.issuerId}\` this token was obtained through was removed`, 'issuer_removed');
    }
  }

  /**
   * `verifyTaskToken` through the cache `authenticateTask` keeps: a token verified once is
   * not verified again until it expires (or a task ends, which clears the cache). For the
   * calls that come with every action, such as its outcome: the same check as the
   * decision's, without a second signature verification.
   */
  async taskPrincipal(bearer: string): Promise<TaskPrincipal> {
    const hit = this.tokenCache.get(bearer);
    if (hit && hit.tokenExp * 1000 > this.clock.now()) return hit;
    const principal = await this.verifyTaskToken(bearer);
    if (this.tokenCache.size >= 10_000) this.tokenCache.clear();
    this.tokenCache.set(bearer, principal);
    return principal;
  }

  /** Verifies the token alone (no task state): for calls allowed after a task ends. */
  async verifyTaskToken(bearer: string): Promise<TaskPrincipal> {
    try {
      const { payload } = await verifyWritJwt(this.keys, bearer, {
        typ: TASK_TOKEN_TYP,
        issuer: this.config.issuer,
        audience: this.config.issuer,
        currentDate: new Date(this.clock.now()),
      });
      if (typeof payload.txn !== 'string' || typeof payload.sub !== 'string') throw new TokenVerificationError('invalid_token', 'the token lacks `txn`');
      if (payload.fed !== undefined && (typeof payload.fed !== 'string' || typeof payload.jti !== 'string')) {
        throw new TokenVerificationError('invalid_token', 'the token has a bad `fed`');
      }
      const principal: TaskPrincipal = { agentId: payload.sub, taskId: payload.txn, tokenExp: payload.exp! };
      if (typeof payload.jti === 'string') principal.jti = payload.jti;
      if (typeof payload.fed === 'string') principal.issuerId = payload.fed;
      if (payload.cnf !== undefined) {
        const jkt = (payload.cnf as { jkt?: unknown } | null)?.jkt;
        if (typeof jkt !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(jkt)) throw new TokenVerificationError('invalid_token', 'the token has a bad `cnf`');
        principal.jkt = jkt;
      }
      return principal;
    } catch (err) {
      if (err instanceof TokenVerificationError) {
        const code = err.reason === 'expired_token' ? 'token_expired' : 'invalid_token';
        throw new UnauthorizedError(err.reason === 'wrong_type' ? 'the token is not a task token' : err.message, code);
      }
      throw err;
    }
  }

  /**
   * Rotates Writ's signing key. The replaced keys stay in the JWKS for the longest
   * token lifetime plus a minute, so every token already out verifies until it expires.
   */
  async rotateKeys(by: OperatorRecord): Promise<{ kid: string; previous_retire_at: string }> {
    requireRole(by, 'admin');
    const publish = MAX_TASK_TOKEN_TTL_SECONDS + 60;
    const key = await this.keys.rotate(`operator:${by.id}`, publish);
    return { kid: key.kid, previous_retire_at: new Date(key.createdAt + publish * 1000).toISOString() };
  }

  async listKeys(by: OperatorRecord): Promise<{ kid: string; created_at: string; rotated_at: string | null; retired_at: string | null; signing: boolean }[]> {
    requireRole(by, 'admin', 'auditor');
    const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
    return (await this.store.listSigningKeys()).map((k) => ({
      kid: k.kid,
      created_at: new Date(k.createdAt).toISOString(),
      rotated_at: iso(k.rotatedAt),
      retired_at: iso(k.retiredAt),
      signing: k.rotatedAt === null,
    }));
  }

  /** Verifies an action token Writ signed; `audience` (when given) must be its `aud`. */
  async verifyActionToken(token: string, audience?: string): Promise<ActionTokenClaims> {
    try {
      const { payload } = await verifyWritJwt(this.keys, token, {
        typ: ACTION_TOKEN_TYP,
        issuer: this.config.issuer,
        audience,
        currentDate: new Date(this.clock.now()),
      });
      const p = payload as unknown as ActionTokenClaims;
      if (typeof p.txn !== 'string' || typeof p.decision_id !== 'string' || typeof p.aud !== 'string') {
        throw new TokenVerificationError('invalid_token', 'the token lacks action claims');
      }
      return p;
    } catch (err) {
      if (err instanceof TokenVerificationError) {
        const code = err.reason === 'expired_token' ? 'token_expired' : err.reason === 'wrong_audience' ? 'wrong_audience' : 'invalid_token';
        throw new UnauthorizedError(err.reason === 'wrong_type' ? 'the token is not an action token' : err.message, code);
      }
      throw err;
    }
  }

  /**
   * Consumes an action token once (a tool server calls this before acting). The
   * first call answers the claims; every later one 409 `token_already_used`.
   */
  async consume(token: string, audience: string): Promise<{ claims: ActionTokenClaims }> {
    // Without an audience any holder could burn the token at any tool server (item 9, issue 10).
    if (typeof audience !== 'string' || audience.length === 0) throw new InvalidRequestError('`audience` is required: the tool server names itself');
    let claims: ActionTokenClaims;
    try {
      claims = await this.verifyActionToken(token, audience);
    } catch (err) {
      if (err instanceof WritError) await this.deps.audit.securityEvent('action.refused', 'anonymous', { reason: err.code });
      throw err;
    }
    const task = await this.store.getTask(claims.txn);
    if (!task || task.status !== 'active' || task.expiresAt <= this.clock.now()) {
      await this.deps.audit.securityEvent('action.refused', `agent:${claims.sub}`, { reason: 'task_not_active', jti: claims.jti }, { taskId: claims.txn, agentId: claims.sub, decisionId: claims.decision_id });
      throw new ForbiddenError(`task \`${claims.txn}\` is not active`, 'task_not_active');
    }
    const first = await this.store.useOnce(`action:${claims.jti}`, claims.exp * 1000, {
      type: 'action.consumed',
      actor: `audience:${claims.aud}`,
      taskId: claims.txn,
      agentId: claims.sub,
      decisionId: claims.decision_id,
      data: { jti: claims.jti, tool: claims.tool, audience: claims.aud, args_digest: claims.args_digest },
    });
    if (!first) {
      await this.deps.audit.securityEvent('action.replayed', `audience:${claims.aud}`, { jti: claims.jti }, { taskId: claims.txn, agentId: claims.sub, decisionId: claims.decision_id });
      throw new ConflictError('the action token was used before', 'token_already_used');
    }
    return { claims };
  }

  /** RFC 7662 token introspection for task and action tokens. */
  async introspect(by: OperatorRecord, token: string): Promise<Record<string, unknown>> {
    requireRole(by, 'admin', 'auditor', 'approver');
    let typ: unknown;
    try {
      typ = decodeProtectedHeader(token).typ;
    } catch {
      return { active: false };
    }
    try {
      const now = this.clock.now();
      if (typ === TASK_TOKEN_TYP) {
        const p = await this.verifyTaskToken(token);
        await this.checkFederatedToken(p);
        const task = await this.store.getTask(p.taskId);
        const agent = task ? await this.store.getAgent(task.agentId) : null;
        const active = !!task && task.status === 'active' && task.expiresAt > now && agent?.status === 'active';
        return active ? { active: true, token_type: TASK_TOKEN_TYP, sub: p.agentId, txn: p.taskId, exp: p.tokenExp, iss: this.config.issuer, ...(p.jkt === undefined ? {} : { cnf: { jkt: p.jkt } }) } : { active: false };
      }
      if (typ === ACTION_TOKEN_TYP) {
        const c = await this.verifyActionToken(token);
        const task = await this.store.getTask(c.txn);
        const used = (await this.store.listAudit({ decisionId: c.decision_id, type: 'action.consumed', limit: 1 })).length > 0;
        const active = !!task && task.status === 'active' && task.expiresAt > now && !used;
        return active ? { active: true, token_type: ACTION_TOKEN_TYP, ...c } : { active: false };
      }
    } catch (err) {
      if (err instanceof UnauthorizedError) return { active: false };
      throw err;
    }
    return { active: false };
  }
}
