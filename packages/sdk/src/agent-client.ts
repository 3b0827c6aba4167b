import { randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { bodyOf, WritApiError, WritClient } from './api-client.js';
import { DpopKey, DpopNonces, sendWithDpop } from './dpop.js';

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
   * Bind the task token to a key (DPoP, RFC 9449): every call carries a fresh proof by
   * it, so the task token alone is useless to anyone who copies it. `true`: the client
   * makes a key pair of its own (Ed25519, in memory, never sent); or pass a `DpopKey`
   * (e.g. `DpopKey.fromJwk`, to share it with a gateway that calls Writ for this agent).
   * A server nonce challenge (`DPoP-Nonce`, §8/§9) is answered with one retry.
   */
  dpop?: boolean | DpopKey;
}

export class WritAgentClient {
  private dpopKey: Promise<DpopKey> | null = null;
  private readonly nonces = new DpopNonces();
  private readonly client: WritClient;
  private signer: Promise<{ key: CryptoKey; alg: string; kid?: string }> | null = null;
  private issuer: string | null = null;
  private token: { value: string; until: number } | null = null;
  private pending: Promise<string> | null = null;

  constructor(readonly opts: AgentClientOptions) {
    this.client = new WritClient({ url: opts.url, fetch: opts.fetch, timeoutMs: opts.timeoutMs });
  }

  private call(method: string, path: string, init: { token?: string; json?: unknown; form?: Record<string, string>; timeoutMs?: number } = {}): Promise<any> {
    return this.client.request({ method, path, ...init });
  }

  /** The DPoP key (RFC 9449), when the client binds its tokens; null otherwise. */
  dpop(): Promise<DpopKey> | null {
    const d = this.opts.dpop;
    if (!d) return null;
    this.dpopKey ??= d instanceof DpopKey ? Promise.resolve(d) : DpopKey.generate();
    return this.dpopKey;
  }

  /**
   * One call under DPoP: a fresh proof for Writ's URL of the path (its issuer, as the
   * server checks `htu` against it), bound to `token` when given (`ath`); one retry on a
   * nonce challenge.
   */
  private async callDpop(key: DpopKey, method: string, path: string, init: { token?: string; json?: unknown; form?: Record<string, string>; timeoutMs?: number }): Promise<any> {
    const url = `${await this.getIssuer()}${path}`;
    const r = await sendWithDpop(key, { method, url, accessToken: init.token }, (dpop) => this.client.send({ method, path, ...init, dpop }), this.nonces);
    return bodyOf(r, { method, path });
  }

  /** A call with the task token: as `Authorization: DPoP` with a proof when the token is bound, else as a bearer token. */
  private async callAsAgent(method: string, path: string, init: { json?: unknown; timeoutMs?: number } = {}): Promise<any> {
    const token = await this.taskToken();
    const key = this.dpop();
    return key ? this.callDpop(await key, method, path, { ...init, token }) : this.call(method, path, { ...init, token });
  }

  /**
   * A `fetch` that sends the task token with every request, for the MCP gateway or the
   * HTTP proxy (for example as the MCP SDK's `StreamableHTTPClientTransport` `fetch`):
   * `Authorization: Bearer`, or `Authorization: DPoP` with a fresh proof for that very
   * request's method and URL when the token is bound (the gateway checks it against its
   * own URL), retrying once on a nonce challenge.
   */
  authorizedFetch(fetchImpl: typeof fetch = this.opts.fetch ?? fetch): typeof fetch {
    return async (input: string | URL | Request, init: RequestInit = {}) => {
      if (input instanceof Request) throw new TypeError('authorizedFetch takes a URL and an init, not a Request');
      const url = String(input);
      const method = (init.method ?? 'GET').toUpperCase();
      const token = await this.taskToken();
      const send = (dpop?: string) => {
        const headers = new Headers(init.headers);
        headers.set('authorization', `${dpop === undefined ? 'Bearer' : 'DPoP'} ${token}`);
        if (dpop !== undefined) headers.set('dpop', dpop);
        return fetchImpl(url, { ...init, method, headers });
      };
      const key = this.dpop();
      if (!key) return send();
      return sendWithDpop(
        await key,
        { method, url, accessToken: token },
        async (dpop) => {
          const r = await send(dpop);
          // a nonce challenge is sent again: free the first answer's connection
          if (r.headers.get('dpop-nonce') && (r.status === 400 || r.status === 401)) return new Response(await r.arrayBuffer(), { status: r.status, statusText: r.statusText, headers: r.headers });
          return r;
        },
        this.nonces,
      );
    };
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
        const form = { grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await this.assertion(), task_id: this.opts.taskId };
        const key = this.dpop();
        // RFC 9449 §5: a proof on the token request binds the token to the key; a retry on
        // a nonce challenge needs a new assertion too (each is single-use)
        const r = key
          ? await this.tokenWithDpop(await key, form)
          : await this.call('POST', '/oauth/token', { form });
        if (key && r.token_type !== 'DPoP') throw new WritApiError('bad_response', 'asked for a DPoP-bound task token, got a bearer one', 200);
        this.token = { value: r.access_token as string, until: Date.now() + Number(r.expires_in) * 1000 };
        return this.token.value;
      } finally {
        this.pending = null;
      }
    })();
    return this.pending;
  }

  private async tokenWithDpop(key: DpopKey, form: Record<string, string>): Promise<any> {
    const url = `${await this.getIssuer()}/oauth/token`;
    let first = true;
    const r = await sendWithDpop(
      key,
      { method: 'POST', url },
      async (dpop) => {
        const body = first ? form : { ...form, client_assertion: await this.assertion() };
        first = false;
        return this.client.send({ method: 'POST', path: '/oauth/token', form: body, dpop });
      },
      this.nonces,
    );
    return bodyOf(r, { method: 'POST', path: '/oauth/token' });
  }

  async authorize(action: ActionInput): Promise<AuthorizeResponse> {
    return this.callAsAgent('POST', '/v1/authorize', { json: action });
  }

  /** Reads an approval; `waitSeconds` (at most 30) long-polls. */
  async approval(approvalId: string, waitSeconds = 0): Promise<ApprovalResponse> {
    const w = Math.max(0, Math.min(30, Math.floor(waitSeconds)));
    const path = `/v1/approvals/${encodeURIComponent(approvalId)}${w ? `?wait=${w}` : ''}`;
    return this.callAsAgent('GET', path, { timeoutMs: (w + 10) * 1000 });
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
    await this.callAsAgent('POST', path, { json: detail ? { status, detail } : { status } });
  }

  /** Ends the task: every token derived from it stops working. */
  async complete(): Promise<void> {
    const path = `/v1/tasks/${encodeURIComponent(this.opts.taskId)}/complete`;
    await this.callAsAgent('POST', path);
  }
}
