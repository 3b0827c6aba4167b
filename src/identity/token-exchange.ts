import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { epochSeconds } from '../core/clock.js';
import { sha256Hex } from '../core/digest.js';
import { ConflictError, ForbiddenError, NotFoundError, OAuthError, WritError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { IssuerRecord, OperatorRecord, OperatorRole } from '../core/types.js';
import type { ServiceDeps } from '../service/deps.js';
import type { KeyRing } from '../tokens/key-ring.js';
import { TASK_TOKEN_TYP } from '../tokens/token-types.js';
import { checkIssuerInput, matchAgents, OIDC_ALGORITHMS, SVID_ALGORITHMS, trustDomainOf, type IssuerInput } from './issuers.js';
import { isSpiffeId, parseSpiffeId } from './spiffe-id.js';

/** RFC 8693 §2.1 / §3. */
export const TOKEN_EXCHANGE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** Clock skew tolerated on a subject token's `exp`, `nbf` and `iat` (workload clocks drift). */
const SKEW_SECONDS = 30;

export interface TokenExchangeForm {
  grant_type: string;
  subject_token?: string;
  subject_token_type?: string;
  actor_token?: string;
  actor_token_type?: string;
  requested_token_type?: string;
  task_id?: string;
}

export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  issued_token_type: string;
}

/**
 * The trusted issuer cannot be reached (its JWKS URL timed out, refused, or answered
 * something that is not a JWKS): our dependency's fault, not the client's. Fail closed
 * with 503 `temporarily_unavailable` (the RFC 6749 §4.1.2.1 code), never with a token.
 */
export class IssuerUnavailableError extends WritError {
  constructor(message: string, cause?: unknown) {
    super('temporarily_unavailable', message, 503, { expose: true, cause });
  }
}

/** A refusal: audited as `token.refused` with `reason`, answered `invalid_grant`. */
class Refusal extends Error {
  constructor(
    readonly reason: string,
    readonly description: string,
  ) {
    super(description);
  }
}

function hasRole(op: OperatorRecord, ...roles: OperatorRole[]): boolean {
  return op.roles.includes('admin') || roles.some((r) => op.roles.includes(r));
}

function requireRole(op: OperatorRecord, ...roles: OperatorRole[]): void {
  if (!hasRole(op, ...roles)) {
    throw new ForbiddenError(`this needs the role ${roles.map((r) => `\`${r}\``).join(' or ')}`, 'insufficient_role');
  }
}

function short(v: unknown, n = 256): string | null {
  return typeof v === 'string' ? v.slice(0, n) : null;
}

/**
 * Federated workload identity: trusted issuers (administration) and the RFC 8693
 * token exchange of an issuer's token (OIDC workload token, Kubernetes service
 * account token, SPIFFE JWT-SVID) for a Writ task token.
 */
export class Federation {
  /** key resolvers per issuer id; remote ones cache, time out and cool down (jose) */
  private readonly keySets = new Map<string, { source: string; get: JWTVerifyGetKey }>();

  constructor(private readonly deps: ServiceDeps & { keys: KeyRing }) {}

  // --- administration ------------------------------------------------------------

  async register(by: OperatorRecord, input: IssuerInput): Promise<IssuerRecord> {
    requireRole(by, 'admin');
    const checked = checkIssuerInput(input);
    const record: IssuerRecord = {
      id: newId('iss'),
      ...checked,
      status: 'active',
      createdAt: this.deps.clock.now(),
      createdBy: by.id,
      disabledAt: null,
    };
    await this.deps.store.createIssuer(record, {
      type: 'issuer.registered',
      actor: `operator:${by.id}`,
      data: {
        issuer_id: record.id,
        issuer: record.issuer,
        kind: record.kind,
        audience: record.audience,
        jwks_uri: record.jwksUri,
        keys: record.jwks?.keys.map((k) => ({ kty: k.kty, kid: k.kid ?? null, alg: k.alg ?? null })) ?? null,
        rules: record.rules.map((r) => ({ claims: r.claims, agent_id: r.agentId })),
      },
    });
    return record;
  }

  async list(by: OperatorRecord): Promise<IssuerRecord[]> {
    requireRole(by, 'admin', 'auditor');
    return this.deps.store.listIssuers();
  }

  async get(by: OperatorRecord, id: string): Promise<IssuerRecord> {
    requireRole(by, 'admin', 'auditor');
    const r = await this.deps.store.getIssuer(id);
    if (!r) throw new NotFoundError(`issuer \`${id}\` does not exist`, 'issuer_not_found');
    return r;
  }

  /**
   * Disables an issuer: its subject tokens are refused at once, on every instance (the
   * record is read per exchange). Unless `keepIssued`, every live task token obtained
   * through it is revoked in the same transaction: an operator removes an issuer because
   * it is compromised or retired, and what it vouched for ends with it. The audit entry
   * records how many tokens were cut off, and of which tasks.
   */
  async disable(by: OperatorRecord, id: string, options: { keepIssued?: boolean } = {}): Promise<{ issuer: IssuerRecord; revokedTokens: number; taskIds: string[] }> {
    requireRole(by, 'admin');
    const r = await this.deps.store.getIssuer(id);
    if (!r) throw new NotFoundError(`issuer \`${id}\` does not exist`, 'issuer_not_found');
    const keepIssued = options.keepIssued === true;
    const done = await this.deps.store.disableIssuer(id, this.deps.clock.now(), { revokeIssued: !keepIssued }, (revoked) => ({
      type: 'issuer.disabled',
      actor: `operator:${by.id}`,
      data: {
        issuer_id: id,
        issuer: r.issuer,
        keep_issued: keepIssued,
        tokens_revoked: revoked.tokens,
        task_ids: revoked.taskIds.slice(0, MAX_AUDITED_TASK_IDS),
        ...(revoked.taskIds.length > MAX_AUDITED_TASK_IDS ? { task_ids_truncated: true, tasks_affected: revoked.taskIds.length } : {}),
      },
    }));
    if (!done) throw new ConflictError(`issuer \`${id}\` is disabled already`, 'issuer_not_active');
    this.keySets.delete(id);
    return { issuer: (await this.deps.store.getIssuer(id))!, revokedTokens: done.revokedTokens, taskIds: done.taskIds };
  }

  // --- token exchange (RFC 8693) -------------------------------------------------

  async exchange(form: TokenExchangeForm): Promise<TokenResponse> {
    if (!form.subject_token) throw new OAuthError('invalid_request', '`subject_token` is required');
    if (form.subject_token_type !== JWT_TOKEN_TYPE) {
      throw new OAuthError('invalid_request', `\`subject_token_type\` must be \`${JWT_TOKEN_TYPE}\``);
    }
    if (form.actor_token !== undefined || form.actor_token_type !== undefined) {
      throw new OAuthError('invalid_request', 'actor tokens are not accepted: delegation goes through `POST /v1/tasks/{id}/delegations`');
    }
    if (form.requested_token_type !== undefined && form.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new OAuthError('invalid_request', `only \`${ACCESS_TOKEN_TYPE}\` can be requested`);
    }
    if (!form.task_id) throw new OAuthError('invalid_request', '`task_id` is required');

    const token = form.subject_token;
    // Every record of this exchange names the task it asked for, so that filtering the
    // audit log by task finds refusals too. Values read from a token before its
    // signature verifies are kept apart, in fields marked `_unverified`.
    const taskId = form.task_id.slice(0, 256);
    const ctx: RefusalContext = { taskId, record: null, claimed: {}, verified: null, agentId: null };
    let header: ReturnType<typeof decodeProtectedHeader>;
    let peeked: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      peeked = decodeJwt(token);
    } catch {
      await this.refused('malformed_subject_token', ctx);
      throw new OAuthError('invalid_grant', 'the subject token is not a JWT');
    }
    const claimedIss = typeof peeked.iss === 'string' ? peeked.iss : undefined;
    const claimedSub = typeof peeked.sub === 'string' ? peeked.sub : undefined;
    ctx.claimed = { issuer: short(claimedIss), subject: short(claimedSub), jti: short(peeked.jti) };

    try {
      ctx.record = await this.selectIssuer(claimedIss, claimedSub);
      if (!ctx.record) throw new Refusal('unknown_issuer', 'the subject token is not from a trusted issuer');
      const verified = await this.verify(ctx.record, token, header);
      ctx.verified = verified;
      const agentIds = matchAgents(ctx.record, verified);
      if (agentIds.length === 0) throw new Refusal('no_matching_rule', 'no rule of the issuer maps the subject token to an agent');
      if (agentIds.length > 1) throw new Refusal('ambiguous_rule', 'rules of the issuer map the subject token to several agents');
      ctx.agentId = agentIds[0]!;
      return await this.issue(ctx.record, verified, ctx.agentId, form.task_id);
    } catch (err) {
      if (err instanceof Refusal) {
        await this.refused(err.reason, ctx);
        throw new OAuthError('invalid_grant', err.description);
      }
      if (err instanceof IssuerUnavailableError) await this.refused('issuer_unavailable', ctx, { detail: err.message });
      throw err;
    }
  }

  /**
   * The issuer and subject of a subject token that verifies, recording nothing (no
   * audit, no `jti` spent); null when it does not verify. For the failure limiter: a
   * request with valid credentials is never refused because of others' failures.
   */
  async verifiedSubject(token: string): Promise<string | null> {
    try {
      const header = decodeProtectedHeader(token);
      const peeked = decodeJwt(token);
      const record = await this.selectIssuer(typeof peeked.iss === 'string' ? peeked.iss : undefined, typeof peeked.sub === 'string' ? peeked.sub : undefined);
      if (!record) return null;
      const verified = await this.verify(record, token, header);
      return `${record.id}:${verified.sub}`;
    } catch {
      return null;
    }
  }

  /** By exact `iss`; a token without `iss` whose `sub` is a SPIFFE ID, by its trust domain. */
  private async selectIssuer(iss: string | undefined, sub: string | undefined): Promise<IssuerRecord | null> {
    if (iss !== undefined) return this.deps.store.findActiveIssuer(iss);
    if (sub !== undefined && isSpiffeId(sub)) {
      const r = await this.deps.store.findActiveIssuer(`spiffe://${parseSpiffeId(sub).trustDomain}`);
      return r && r.kind === 'spiffe' ? r : null;
    }
    return null;
  }

  /** Header rules, then jose: signature with this issuer's keys only, `aud`, `iss`, `exp`, `nbf`; then lifetime. */
  private async verify(record: IssuerRecord, token: string, header: ReturnType<typeof decodeProtectedHeader>): Promise<JWTPayload & { sub: string; exp: number }> {
    const algorithms = record.kind === 'spiffe' ? SVID_ALGORITHMS : OIDC_ALGORITHMS;
    const names = Object.keys(header);
    if (record.kind === 'spiffe') {
      // SPIFFE JWT-SVID §3: alg, kid and typ only
      const extra = names.filter((n) => n !== 'alg' && n !== 'kid' && n !== 'typ');
      if (extra.length > 0) throw new Refusal('header_not_allowed', `a JWT-SVID header has only \`alg\`, \`kid\`, \`typ\`; it has \`${extra[0]!.slice(0, 32)}\``);
    } else {
      // keys are never taken from the token itself
      const banned = names.filter((n) => ['jku', 'x5u', 'jwk', 'x5c', 'crit', 'b64', 'zip'].includes(n));
      if (banned.length > 0) throw new Refusal('header_not_allowed', `the subject token header \`${banned[0]}\` is not accepted`);
    }
    if (typeof header.alg !== 'string' || !algorithms.includes(header.alg)) {
      throw new Refusal('alg_not_accepted', `the subject token algorithm \`${String(header.alg).slice(0, 32)}\` is not accepted`);
    }
    if (header.typ !== undefined && header.typ !== 'JWT' && header.typ !== 'JOSE') {
      throw new Refusal('typ_not_accepted', 'the subject token `typ` must be `JWT` or `JOSE` when present');
    }
    const now = this.deps.clock.now();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keySet(record), {
        algorithms,
        audience: record.audience,
        // a JWT-SVID need not carry `iss`; when it does, it is the one it was selected by
        issuer: record.kind === 'oidc' || decodeJwt(token).iss !== undefined ? record.issuer : undefined,
        requiredClaims: ['exp', 'sub'],
        currentDate: new Date(now),
        clockTolerance: SKEW_SECONDS,
      }));
    } catch (err) {
      if (err instanceof IssuerUnavailableError) throw err;
      throw refusalFrom(err);
    }
    const nowSec = epochSeconds(now);
    const exp = payload.exp!;
    if (typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 2048) throw new Refusal('bad_subject', 'the subject token `sub` is not usable');
    if (payload.iat !== undefined && payload.iat > nowSec + SKEW_SECONDS) throw new Refusal('issued_in_future', 'the subject token is issued in the future');
    const max = this.deps.config.maxSubjectTokenLifetimeSeconds;
    if (exp - (payload.iat ?? nowSec) > max) throw new Refusal('lifetime_too_long', `the subject token lives longer than ${max} seconds`);
    if (payload.jti !== undefined && (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 256)) {
      throw new Refusal('bad_jti', 'the subject token `jti` is not usable');
    }
    if (record.kind === 'spiffe') {
      let td: string;
      try {
        td = parseSpiffeId(payload.sub).trustDomain;
      } catch {
        throw new Refusal('bad_subject', 'the JWT-SVID `sub` is not a SPIFFE ID');
      }
      if (td !== trustDomainOf(record)) throw new Refusal('wrong_trust_domain', 'the JWT-SVID `sub` is not in the issuer\'s trust domain');
    }
    return payload as JWTPayload & { sub: string; exp: number };
  }

  private keySet(record: IssuerRecord): JWTVerifyGetKey {
    const source = record.jwksUri ?? JSON.stringify(record.jwks);
    const cached = this.keySets.get(record.id);
    if (cached && cached.source === source) return cached.get;
    let get: JWTVerifyGetKey;
    if (record.jwks) {
      get = createLocalJWKSet(record.jwks as JSONWebKeySet);
    } else {
      const remote = createRemoteJWKSet(new URL(record.jwksUri!), {
        timeoutDuration: this.deps.config.jwksTimeoutMs,
        cooldownDuration: this.deps.config.jwksCooldownMs,
        cacheMaxAge: this.deps.config.jwksCacheMaxAgeMs,
      });
      get = async (h, t) => {
        try {
          return await remote(h, t);
        } catch (err) {
          throw unavailableFrom(err) ?? err;
        }
      };
    }
    if (this.keySets.size >= 1000) this.keySets.clear();
    this.keySets.set(record.id, { source, get });
    return get;
  }

  private async issue(record: IssuerRecord, claims: JWTPayload & { sub: string; exp: number }, agentId: string, taskId: string): Promise<TokenResponse> {
    const { store, config, clock, keys } = this.deps;
    const agent = await store.getAgent(agentId);
    if (!agent) throw new Refusal('unknown_agent', 'the agent the subject token maps to is not registered');
    if (agent.status !== 'active') throw new Refusal('agent_disabled', `agent \`${agent.id}\` is disabled`);
    const task = await store.getTask(taskId);
    if (!task || task.agentId !== agent.id) throw new Refusal('task_not_for_agent', 'the task does not exist or is not this agent\'s');
    const now = clock.now();
    if (task.status !== 'active' || task.expiresAt <= now) throw new Refusal('task_not_active', `task \`${task.id}\` is not active`);
    const iat = epochSeconds(now);
    // never past the task, nor past the identity proof it was exchanged for
    const exp = Math.min(iat + config.taskTokenTtlSeconds, epochSeconds(task.expiresAt), claims.exp);
    if (exp <= iat) throw new Refusal('task_not_active', `task \`${task.id}\` (or the subject token) is about to expire`);
    const jti = newId('tt');
    // `fed`: the issuer record this token was obtained through; authentication checks
    // the token's record, so that removing the issuer ends it (src/service/tokens.ts)
    const access = keys.signJwt(TASK_TOKEN_TYP, { iss: config.issuer, sub: agent.id, aud: config.issuer, iat, exp, jti, txn: task.id, fed: record.id });
    const subjectJti = typeof claims.jti === 'string' ? claims.jti : null;
    const audit = {
      type: 'token.issued',
      actor: `agent:${agent.id}`,
      agentId: agent.id,
      taskId: task.id,
      data: {
        jti,
        exp,
        grant: 'token-exchange',
        issuer: record.issuer,
        issuer_id: record.id,
        subject: claims.sub.slice(0, 512),
        subject_jti: subjectJti,
      },
    };
    // The subject token's jti is spent, for this task, in the same transaction that
    // records the issue. Per task, not globally: platforms hand a workload the same
    // token for its whole lifetime (a Kubernetes projected token is refreshed in place),
    // and one workload serves many tasks; a replay into the same task is refused.
    const replay =
      subjectJti === null
        ? null
        : {
            key: replayKey(record, claims.sub, task.id, subjectJti),
            expiresAt: (claims.exp + SKEW_SECONDS) * 1000,
            // what releases before this one spent (per issuer record): honoured while remembered
            spentAs: [`subject:${record.id}:${task.id}:${subjectJti}`],
          };
    const outcome = await store.recordFederatedToken(
      { jti, issuerId: record.id, agentId: agent.id, taskId: task.id, issuedAt: now, expiresAt: exp * 1000, revokedAt: null },
      replay,
      audit,
    );
    if (outcome === 'replayed') throw new Refusal('subject_token_replayed', 'the subject token was exchanged before');
    if (outcome === 'issuer_inactive') throw new Refusal('unknown_issuer', 'the subject token is not from a trusted issuer');
    return { access_token: access, token_type: 'Bearer', expires_in: exp - iat, issued_token_type: ACCESS_TOKEN_TYPE };
  }

  /**
   * `token.refused`: always the task the exchange named and the issuer record that was
   * matched (for a JWT-SVID without `iss`, the trust domain's record); the subject and
   * `jti` only once the signature verified; until then what the token claims is kept in
   * `claimed_*_unverified` fields, never where verified values go.
   */
  private async refused(reason: string, ctx: RefusalContext, extra: Record<string, unknown> = {}): Promise<void> {
    const data: Record<string, unknown> = {
      grant: 'token-exchange',
      reason,
      task_id: ctx.taskId,
      issuer: ctx.record?.issuer ?? null,
      issuer_id: ctx.record?.id ?? null,
    };
    if (ctx.verified) {
      data.subject = ctx.verified.sub.slice(0, 512);
      data.subject_jti = typeof ctx.verified.jti === 'string' ? ctx.verified.jti : null;
    } else {
      data.claimed_issuer_unverified = ctx.claimed.issuer ?? null;
      data.claimed_subject_unverified = ctx.claimed.subject ?? null;
      data.claimed_jti_unverified = ctx.claimed.jti ?? null;
    }
    if (ctx.agentId) data.agent_id = ctx.agentId;
    // the actor is the agent only once a verified token mapped to it
    const actor = ctx.agentId ? `agent:${ctx.agentId}` : 'anonymous';
    await this.deps.audit.securityEvent('token.refused', actor, { ...data, ...extra }, { taskId: ctx.taskId, ...(ctx.agentId ? { agentId: ctx.agentId } : {}) });
  }
}

interface RefusalContext {
  taskId: string;
  record: IssuerRecord | null;
  claimed: { issuer?: string | null; subject?: string | null; jti?: string | null };
  verified: (JWTPayload & { sub: string }) | null;
  agentId: string | null;
}

/** An `issuer.disabled` entry lists at most this many task ids (and says when there were more). */
const MAX_AUDITED_TASK_IDS = 1000;

/**
 * Where a subject token's `jti` is remembered as spent: the issuer's identity (not its
 * record id, which changes when the issuer is removed and added again), the subject,
 * the task and the `jti`. A `jti` is unique per issuer only (RFC 7519 §4.1.7), and two
 * subjects of one issuer are two keys. Hashed over an unambiguous JSON encoding, so no
 * choice of separators in a URL, subject or `jti` can make two tuples collide.
 */
export function replayKey(record: Pick<IssuerRecord, 'kind' | 'issuer'>, subject: string, taskId: string, jti: string): string {
  return `subject:${sha256Hex(JSON.stringify([issuerIdentity(record), subject, taskId, jti]))}`;
}

/**
 * The identity of an issuer for replay memory. A SPIFFE trust domain is already
 * canonical (lowercase, no path). An OIDC issuer is matched by its exact `iss`, but two
 * registrations that name the same issuer in another spelling (`https://IdP.example`,
 * `https://idp.example/`, `https://idp.example:443`) must not forget what the other
 * spent: scheme and host are lowercased and a default port dropped (WHATWG URL
 * parsing), and a trailing `/` of the path is ignored. Merging spellings can only make
 * the memory stricter, never looser.
 */
export function issuerIdentity(record: Pick<IssuerRecord, 'kind' | 'issuer'>): string {
  if (record.kind === 'spiffe') return record.issuer;
  try {
    const u = new URL(record.issuer);
    return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}${u.search}`;
  } catch {
    return record.issuer;
  }
}

/** Faults of the issuer's JWKS endpoint: it timed out, could not be reached, or did not answer a JWKS. */
function unavailableFrom(err: unknown): IssuerUnavailableError | null {
  if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) return null;
  if (err instanceof joseErrors.JWKSTimeout) return new IssuerUnavailableError('the trusted issuer\'s JWKS did not answer in time', err);
  if (err instanceof joseErrors.JWKSInvalid) return new IssuerUnavailableError('the trusted issuer\'s JWKS URL did not answer a JWKS', err);
  if (err instanceof TypeError) return new IssuerUnavailableError('the trusted issuer\'s JWKS URL cannot be reached', err);
  if (err instanceof joseErrors.JOSEError && /JSON Web Key Set HTTP response/.test(err.message)) {
    return new IssuerUnavailableError('the trusted issuer\'s JWKS URL did not answer a JWKS', err);
  }
  return null;
}

function refusalFrom(err: unknown): Refusal {
  if (err instanceof joseErrors.JWTExpired) return new Refusal('subject_token_expired', 'the subject token has expired');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return new Refusal('wrong_audience', 'the subject token is not for this audience');
    if (err.claim === 'iss') return new Refusal('wrong_issuer', 'the subject token `iss` does not match the issuer');
    if (err.claim === 'nbf') return new Refusal('not_yet_valid', 'the subject token is not valid yet');
    return new Refusal('bad_claims', `the subject token's \`${err.claim}\` claim is missing or invalid`);
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return new Refusal('alg_not_accepted', 'the subject token algorithm is not accepted');
  if (err instanceof joseErrors.JWKSNoMatchingKey) return new Refusal('no_matching_key', 'no key of the trusted issuer matches the subject token');
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return new Refusal('bad_signature', 'the subject token signature does not verify with the issuer\'s keys');
  return new Refusal('does_not_verify', 'the subject token does not verify');
}
