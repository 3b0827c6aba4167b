import { createHash, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { WritApiError, WritClient } from './api-client.js';

/**
 * A small client for agents: a task token from the agent's private key (an RFC 7523
 * client assertion, `private_key_jwt`), then authorize, wait for an approval, report
 * an outcome, complete the task. Depends on jose and the SDK's API client (`WritClient`).
 */

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export interface ActionInput {
  tool: string;
  arguments: Record<string, unknown>;
  audience: string;
  resource?: string;
  destination?: string;
}

export type AuthorizeResponse =
  | { decision: 'allow'; decision_id: string; action_token: string; expires_in: number; args_digest?: string }
  | { decision: 'deny'; decision_id: string; reasons: { code: string; message: string }[] }
  | { decision: 'approval_required'; decision_id: string; approval_id: string; expires_in: number };

export interface ApprovalResponse {
  status: 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';
  action_token?: string;
  [k: string]: unknown;
}

export interface AgentKeyInput {
  /** a private JWK (Ed25519 `OKP` or P-256 `EC`), as `writ agent keygen` writes it */
  jwk?: JWK;
  /** or an imported private key with its algorithm (`EdDSA` or `ES256`) and key id */
  key?: CryptoKey;
  alg?: 'EdDSA' | 'Ed25519' | 'ES256';
  kid?: string;
}

export interface AgentClientOptions {
  /** Writ's base URL */
  url: string;
  /** the agent id (`iss` and `sub` of the assertion) */
  agentId: string;
  /** the task this client works for */
  taskId: string;
  key: AgentKeyInput;
  /** renew the task token this many seconds before it expires (default 30) */
  refreshSkewSeconds?: number;
  fetch?: typeof fetch;
  timeoutMs?: number;
  /**
   * Bind the task token to a key (DPoP, RFC 9449): the client makes a key pair of its own
   * (Ed25519, in memory, never sent), and every call carries a fresh proof by it, so the
   * task token alone is useless to anyone who copies it. Server nonces
   * (`WRIT_DPOP_NONCES=1`) are not handled yet.
   */
  dpop?: boolean;
}

export class WritAgentClient {
  private dpopKey: Promise<{ key: CryptoKey; jwk: JWK }> | null = null;
  private readonly client: WritClient;
  private signer: Promise<{ key: CryptoKey; alg: string; kid?: string }> | null = null;
  private issuer: string | null = null;
  private token: { value: string; until: number } | null = null;
  private pending: Promise<string> | null = null;

  constructor(readonly opts: AgentClientOptions) {
    this.client = new WritClient({ url: opts.url, fetch: opts.fetch, timeoutMs: opts.timeoutMs });
  }

  private call(method: string, path: string, init: { token?: string; dpop?: string; json?: unknown; form?: Record<string, string>; timeoutMs?: number } = {}): Promise<any> {
    return this.client.request({ method, path, ...init });
  }

  /** A DPoP proof (RFC 9449 §4.2) for one call: method, Writ's URL for the path (no query), and the token's hash. */
  private async proof(method: string, path: string, token?: string): Promise<string> {
    this.dpopKey ??= (async () => {
      const { privateKey, publicKey } = await generateKeyPair('Ed25519');
      return { key: privateKey, jwk: await exportJWK(publicKey) };
    })();
    const [{ key, jwk }, issuer] = await Promise.all([this.dpopKey, this.getIssuer()]);
    const claims: Record<string, unknown> = { jti: randomBytes(16).toString('base64url'), htm: method, htu: `${issuer}${path.split('?')[0]}`, iat: Math.floor(Date.now() / 1000) };
    if (token !== undefined) claims.ath = createHash('sha256').update(token, 'ascii').digest('base64url');
    return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ: 'dpop+jwt', jwk }).sign(key);
  }

  /** The task token for a call, with its proof when the token is DPoP-bound. */
  private async credential(method: string, path: string): Promise<{ token: string; dpop?: string }> {
    const token = await this.taskToken();
    return this.opts.dpop ? { token, dpop: await this.proof(method, path, token) } : { token };
  }

  private loadSigner(): Promise<{ key: CryptoKey; alg: string; kid?: string }> {
    this.signer ??= (async () => {
      const k = this.opts.key;
      if (k.key) return { key: k.key, alg: k.alg ?? 'EdDSA', kid: k.kid };
      const jwk = k.jwk;
      if (!jwk || typeof jwk.d !== 'string') throw new TypeError('the agent key must be a private JWK (with `d`) or an imported key');
      const alg = jwk.kty === 'EC' ? 'ES256' : jwk.kty === 'OKP' && jwk.crv === 'Ed25519' ? (jwk.alg === 'Ed25519' ? 'Ed25519' : 'EdDSA') : null;
      if (!alg) throw new TypeError('the agent key must be Ed25519 (OKP) or P-256 (EC)');
      const pub: JWK = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, ...(jwk.kty === 'EC' ? { y: jwk.y } : {}) };
      const kid = k.kid ?? jwk.kid ?? (await calculateJwkThumbprint(pub, 'sha256'));
      const key = (await importJWK({ ...jwk, alg: undefined, key_ops: undefined, ext: undefined }, alg)) as CryptoKey;
      return { key, alg, kid };
    })();
    return this.signer;
  }

  /** Writ's issuer (the assertion's audience), from its RFC 8414 metadata. */
  async getIssuer(): Promise<string> {
    if (this.issuer) return this.issuer;
    const meta = await this.call('GET', '/.well-known/oauth-authorization-server');
    if (typeof meta?.issuer !== 'string') throw new WritApiError('bad_response', 'the metadata names no issuer', 200);
    this.issuer = meta.issuer as string;
    return this.issuer;
  }

  /** A signed RFC 7523 client assertion (one minute, unique jti). */
  async assertion(): Promise<string> {
    const [s, aud] = await Promise.all([this.loadSigner(), this.getIssuer()]);
    const iat = Math.floor(Date.now() / 1000);
    return new SignJWT({ jti: randomBytes(16).toString('base64url') })
      .setProtectedHeader(s.kid ? { alg: s.alg, kid: s.kid } : { alg: s.alg })
      .setIssuer(this.opts.agentId)
      .setSubject(this.opts.agentId)
      .setAudience(aud)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 60)
      .sign(s.key);
  }

  /** The current task token, fetched (or renewed shortly before it expires) as needed. */
  async taskToken(): Promise<string> {
    const skew = (this.opts.refreshSkewSeconds ?? 30) * 1000;
    if (this.token && this.token.until - skew > Date.now()) return this.token.value;
    this.pending ??= (async () => {
      try {
        const r = await this.call('POST', '/oauth/token', {
          form: { grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await this.assertion(), task_id: this.opts.taskId },
          ...(this.opts.dpop ? { dpop: await this.proof('POST', '/oauth/token') } : {}),
        });
        if (this.opts.dpop && r.token_type !== 'DPoP') throw new WritApiError('bad_response', 'asked for a DPoP-bound task token, got a bearer one', 200);
        this.token = { value: r.access_token as string, until: Date.now() + Number(r.expires_in) * 1000 };
        return this.token.value;
      } finally {
        this.pending = null;
      }
    })();
    return this.pending;
  }

  async authorize(action: ActionInput): Promise<AuthorizeResponse> {
    return this.call('POST', '/v1/authorize', { ...(await this.credential('POST', '/v1/authorize')), json: action });
  }

  /** Reads an approval; `waitSeconds` (at most 30) long-polls. */
  async approval(approvalId: string, waitSeconds = 0): Promise<ApprovalResponse> {
    const w = Math.max(0, Math.min(30, Math.floor(waitSeconds)));
    const path = `/v1/approvals/${encodeURIComponent(approvalId)}${w ? `?wait=${w}` : ''}`;
    return this.call('GET', path, { ...(await this.credential('GET', path)), timeoutMs: (w + 10) * 1000 });
  }

  /**
   * Waits until a person decides (or `timeoutMs` passes). Answers the final status;
   * on approval, the action token (the requesting agent's first read carries it).
   */
  async waitForApproval(approvalId: string, opts: { timeoutMs?: number } = {}): Promise<ApprovalResponse> {
    const until = Date.now() + (opts.timeoutMs ?? 60_000);
    for (;;) {
      const left = Math.ceil((until - Date.now()) / 1000);
      const started = Date.now();
      const r = await this.approval(approvalId, Math.max(0, Math.min(30, left)));
      if (r.status !== 'pending' || left <= 0) return r;
      if (Date.now() - started < 250) await new Promise((ok) => setTimeout(ok, 250));
    }
  }

  /** Authorize; when a person must approve, wait for them (bounded). */
  async authorizeAndWait(action: ActionInput, opts: { timeoutMs?: number } = {}): Promise<AuthorizeResponse | { decision: 'approval_pending' | 'approval_refused'; decision_id: string; approval_id: string; status: string }> {
    const d = await this.authorize(action);
    if (d.decision !== 'approval_required') return d;
    const r = await this.waitForApproval(d.approval_id, opts);
    if (r.status === 'approved' && r.action_token) {
      return { decision: 'allow', decision_id: d.decision_id, action_token: r.action_token, expires_in: 0 };
    }
    return { decision: r.status === 'pending' ? 'approval_pending' : 'approval_refused', decision_id: d.decision_id, approval_id: d.approval_id, status: r.status };
  }

  async reportOutcome(decisionId: string, status: 'succeeded' | 'failed', detail?: string): Promise<void> {
    const path = `/v1/actions/${encodeURIComponent(decisionId)}/outcome`;
    await this.call('POST', path, { ...(await this.credential('POST', path)), json: detail ? { status, detail } : { status } });
  }

  /** Ends the task: every token derived from it stops working. */
  async complete(): Promise<void> {
    const path = `/v1/tasks/${encodeURIComponent(this.opts.taskId)}/complete`;
    await this.call('POST', path, await this.credential('POST', path));
  }
}
