import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { DpopNonces, sendWithDpop, WritApiError, WritClient, type ApiCall, type ApiResponse, type DpopKey } from '@writ/sdk';
import { WritError } from '../core/errors.js';
import type { TraceCarrier } from '../core/tracing.js';
import type { Writ } from '../service/writ.js';
import type { TaskPrincipal } from '../tokens/token-types.js';
import type { ToolLabelEntry } from './labels.js';
import { DecisionClient } from './decision-client.js';
import { MAX_OUTCOMES_PER_REQUEST, outcomeSchema, parse, parseAuthorizeBody, visibleToolsSchema, type ApprovalResponse, type AuthorizeRequest, type AuthorizeResponse } from '../wire/index.js';

/**
 * How the gateway and the proxy reach Writ's decision: over HTTP with the agent's task
 * token (`HttpAuthorizer`), or by calling the Writ service object directly when they
 * run in the same process (`InProcessAuthorizer`). Both fail closed: anything but a
 * well-formed decision is an `AuthorizerError`, which the callers turn into a refusal.
 */

/** What the gateway asks Writ to decide: the wire's authorize request (src/wire). */
export type ActionRequest = AuthorizeRequest & { arguments: Record<string, unknown> };

export interface Reason {
  code: string;
  message: string;
}

/** The wire's authorize response; `args_digest` may be missing from an older Writ. */
export type Decision =
  | (Omit<Extract<AuthorizeResponse, { decision: 'allow' }>, 'args_digest'> & { args_digest?: string })
  | Exclude<AuthorizeResponse, { decision: 'allow' }>;

export interface TaskScopeView {
  tools: string[];
  resources: string[];
  destinations: string[];
}

export interface TaskView {
  taskId: string;
  agentId: string;
  /** null when the authorizer cannot read the scope (HTTP mode without an operator token) */
  scope: TaskScopeView | null;
}

export type ApprovalState = ApprovalResponse['status'];

export interface ApprovalStatus {
  status: ApprovalState;
  /** present on the requesting agent's first read after approval */
  action_token?: string;
  /**
   * The decision that read produced: Writ decides again when the approved action is
   * collected (`allow` with the token, or `deny` when the task or policy no longer allows it).
   */
  decision?: 'allow' | 'deny';
  decision_id?: string;
  reasons?: Reason[];
}

export interface Authorizer {
  readonly mode: 'http' | 'in-process';
  /** Authenticates the task token and checks its task is active; answers the task and, where known, its scope. */
  task(taskToken: string): Promise<TaskView>;
  /** `trace`: the W3C `traceparent`/`tracestate` sent with the request (over HTTP: headers); in-process, the active span is the parent */
  authorize(taskToken: string, action: ActionRequest, trace?: TraceCarrier): Promise<Decision>;
  reportOutcome(taskToken: string, decisionId: string, status: 'succeeded' | 'failed', detail?: string): Promise<void>;
  /** Sends the outcomes it holds back to report together (HTTP) now, without waiting out their linger. */
  flushOutcomes?(): void;
  /** Reads an approval; `waitSeconds` > 0 long-polls (Writ caps it at 30). */
  approval(taskToken: string, approvalId: string, waitSeconds: number): Promise<ApprovalStatus>;
  /**
   * Writ's tool labels (what policy sees as `resource.labels`), to check a
   * configuration's labels against at start. Null when they cannot be read (over HTTP
   * without an operator token); absent: not supported.
   */
  toolLabels?(): Promise<ToolLabelEntry[] | null>;
  /**
   * Of `tools`, those the task could be allowed to call (its scope, and policy by
   * partial evaluation): what tools/list shows. Absent: not supported.
   */
  visibleTools?(taskToken: string, tools: string[]): Promise<string[]>;
  /**
   * Writ's issuer (RFC 8414), which the HTTP gateway names as the authorization server in
   * its protected resource metadata (RFC 9728). Absent: not supported.
   */
  issuer?(): Promise<string>;
  /** Calls `listener` with the ids of tasks as they end (in-process only); returns the unsubscribe. */
  onTasksEnded?(listener: (taskIds: string[]) => void): () => void;
  close(): Promise<void>;
}

/**
 * Writ refused the request (`status` 401/403/404...), or could not be reached
 * (`writ_unavailable`). Messages are Writ's own (they never carry tokens) or ours.
 */
export class AuthorizerError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 0,
  ) {
    super(message);
    this.name = 'AuthorizerError';
  }

  /** the credential itself is bad or its task has ended: the client must get a new one */
  get unauthenticated(): boolean {
    return this.status === 401;
  }
}

const TASK_TYP = 'writ-task+jwt';
const TASK_CACHE_MS = 5000;
/**
 * How long an outcome waits for others of the same task to be reported with it in one
 * `POST /v1/actions/outcomes`: as long as Writ waits for a batch of decisions to write a
 * reported outcome with (50 ms). It spares Writ a request, a token check and an
 * access-log line per call; at a few calls a second each outcome still goes alone.
 */
const OUTCOME_LINGER_MS = 50;

interface OutcomeItem {
  decision_id: string;
  status: 'succeeded' | 'failed';
  detail?: string;
}

interface OutcomeBatch {
  items: OutcomeItem[];
  waiters: { ok: () => void; fail: (err: unknown) => void }[];
  timer: NodeJS.Timeout;
}

function checkDecision(body: any): Decision {
  if (body && typeof body.decision_id === 'string') {
    if (body.decision === 'allow' && typeof body.action_token === 'string') return body as Decision;
    if (body.decision === 'deny') return { decision: 'deny', decision_id: body.decision_id, reasons: Array.isArray(body.reasons) ? body.reasons : [] };
    if (body.decision === 'approval_required' && typeof body.approval_id === 'string') return body as Decision;
  }
  throw new AuthorizerError('bad_decision', 'Writ answered without a well-formed decision');
}

function errorOf(status: number, body: any, what: string): AuthorizerError {
  const e = body?.error;
  if (e && typeof e === 'object' && typeof e.code === 'string') return new AuthorizerError(e.code, typeof e.message === 'string' ? e.message : what, status);
  if (typeof e === 'string') return new AuthorizerError(e, typeof body.error_description === 'string' ? body.error_description : what, status);
  return new AuthorizerError(status >= 500 ? 'writ_unavailable' : `http_${status}`, `${what} answered ${status}`, status);
}

/**
 * The key a task token is bound to (RFC 9449 §6.1 `cnf.jkt`), read without verifying:
 * only to pick how to present the token (`DPoP` with a proof, or `Bearer`); Writ verifies
 * the token, and a forged `cnf` fails its signature there.
 */
export function boundKeyOf(token: string): string | undefined {
  // the same token comes with every call of a task (and again with its outcome): decode it once
  if (token === lastPeeked.token) return lastPeeked.jkt;
  const jkt = peekClaims(token)?.cnf?.jkt;
  const out = typeof jkt === 'string' ? jkt : undefined;
  lastPeeked = { token, jkt: out };
  return out;
}

/** the last token `boundKeyOf` decoded, and what it found (a pure function of the token) */
let lastPeeked: { token: string | null; jkt: string | undefined } = { token: null, jkt: undefined };

/** A bound token whose key the gateway holds no proof for: the request is refused (401). */
function keyNotHeld(): AuthorizerError {
  return new AuthorizerError(
    'invalid_token',
    'the task token is bound to a key (DPoP) this gateway does not hold: give the gateway the agent\'s DPoP key (`writ.dpop_key_file` or `--dpop-key`), or send the token with a proof to a gateway that checks it',
    401,
  );
}

function unreachable(err: unknown): AuthorizerError {
  // the client's `timeout`/`unreachable` carries the socket's error (ECONNREFUSED, ETIMEDOUT…)
  const e = (err instanceof WritApiError && err.cause ? err.cause : err) as NodeJS.ErrnoException;
  return new AuthorizerError('writ_unavailable', `Writ cannot be reached (${e.code ?? e.message})`);
}

/** Decodes a JWT payload without verifying it (to route by task id; Writ verifies). */
export function peekClaims(token: string): { sub?: string; txn?: string; exp?: number; cnf?: { jkt?: unknown } } | null {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const p = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    return p && typeof p === 'object' ? p : null;
  } catch {
    return null;
  }
}

/**
 * Writ over HTTP. The task token authenticates every call. For `tools/list` the gateway
 * needs the task's scope, which only an operator may read (`GET /v1/tasks/{id}`): give it
 * an operator token with role `auditor`; without one, the scope is unknown and listing
 * is not narrowed (every call is still authorized).
 */
export class HttpAuthorizer implements Authorizer {
  readonly mode = 'http' as const;
  private readonly client: WritClient;
  private readonly jwks: JWTVerifyGetKey;
  private knownIssuer: string | null = null;
  private readonly tasks = new Map<string, { view: TaskView; until: number }>();

  /** the last `DPoP-Nonce` Writ gave (RFC 9449 §8) */
  private readonly nonces = new DpopNonces();
  /** outcomes waiting to be reported together, by task token */
  private readonly outcomeBatches = new Map<string, OutcomeBatch>();
  /** false once Writ answered `POST /v1/actions/outcomes` with 404 (a Writ without it) */
  private batchOutcomes = true;
  /** the kept-alive connections decisions are asked on (undici); everything else goes through `client` */
  private readonly decisions: DecisionClient;
  /** `/v1/authorize` under Writ's base URL */
  private readonly authorizePath: string;

  /**
   * `dpopKey`: the agent's DPoP key (RFC 9449), which the gateway holds for it: a task
   * token bound to it is sent as `Authorization: DPoP` with a fresh proof for Writ's URL
   * on every call (and once more with Writ's nonce when Writ asks for one). A token bound
   * to another key is refused (401 `invalid_token`) before anything is sent.
   */
  constructor(private readonly opts: { url: string; operatorToken?: string; timeoutMs?: number; dpopKey?: DpopKey }) {
    // node:http with keep-alive: the gateway calls Writ on every tool call, and `fetch`
    // costs more per request than the decision itself
    this.client = new WritClient({ url: opts.url, timeoutMs: opts.timeoutMs ?? 10_000, http: { keepAlive: true, maxSockets: 64 }, maxResponseBytes: 4 << 20 });
    this.jwks = createRemoteJWKSet(new URL(`${this.client.url}/.well-known/jwks.json`), { timeoutDuration: opts.timeoutMs ?? 10_000, cooldownDuration: 30_000 });
    const u = new URL(this.client.url);
    this.authorizePath = `${u.pathname.replace(/\/$/, '')}/v1/authorize`;
    this.decisions = new DecisionClient({ origin: u.origin, timeoutMs: opts.timeoutMs ?? 10_000, maxResponseBytes: 4 << 20 });
  }

  get url(): string {
    return this.client.url;
  }

  private async call(method: string, path: string, token: string | undefined, json: unknown, what: string, timeoutMs?: number, headers?: { prefer?: string } & TraceCarrier): Promise<{ status: number; body: any }> {
    const r = await this.send({ method, path, token, json, timeoutMs, ...(headers ? { headers } : {}) });
    return { status: r.status, body: r.body };
  }

  /** One call to Writ: a bound task token goes as `DPoP` with a proof by the held key, any other token as `Bearer`. */
  private async send(call: ApiCall): Promise<ApiResponse> {
    const jkt = call.token === undefined ? undefined : boundKeyOf(call.token);
    if (jkt !== undefined && this.opts.dpopKey?.jkt !== jkt) throw keyNotHeld();
    const url = jkt === undefined ? '' : `${await this.getIssuer()}${call.path}`;
    try {
      if (jkt === undefined) return await this.client.send(call);
      // htu is Writ's issuer and the path: the URL Writ checks proofs against
      return await sendWithDpop(this.opts.dpopKey!, { method: call.method, url, accessToken: call.token }, (dpop) => this.client.send({ ...call, dpop }), this.nonces);
    } catch (err) {
      throw unreachable(err);
    }
  }

  issuer(): Promise<string> {
    return this.getIssuer();
  }

  private async getIssuer(): Promise<string> {
    if (this.knownIssuer) return this.knownIssuer;
    const r = await this.call('GET', '/.well-known/oauth-authorization-server', undefined, undefined, 'Writ metadata');
    if (r.status !== 200 || typeof r.body?.issuer !== 'string') throw errorOf(r.status, r.body, 'GET /.well-known/oauth-authorization-server');
    this.knownIssuer = r.body.issuer as string;
    return this.knownIssuer;
  }

  async task(taskToken: string): Promise<TaskView> {
    const now = Date.now();
    const hit = this.tasks.get(taskToken);
    if (hit && hit.until > now) return hit.view;
    const issuer = await this.getIssuer();
    let sub: string;
    let txn: string;
    try {
      const { payload } = await jwtVerify(taskToken, this.jwks, { algorithms: ['EdDSA'], typ: TASK_TYP, issuer, audience: issuer });
      if (typeof payload.sub !== 'string' || typeof payload.txn !== 'string') throw new AuthorizerError('invalid_token', 'the task token lacks `sub` or `txn`', 401);
      // a token bound to a key the gateway holds no proof for would fail at every call
      const jkt = (payload.cnf as { jkt?: unknown } | undefined)?.jkt;
      if (jkt !== undefined && jkt !== this.opts.dpopKey?.jkt) throw keyNotHeld();
      sub = payload.sub;
      txn = payload.txn;
    } catch (err) {
      if (err instanceof AuthorizerError) throw err;
      if (err instanceof joseErrors.JWTExpired) throw new AuthorizerError('token_expired', 'the task token has expired', 401);
      if (err instanceof joseErrors.JOSEError && (err.code === 'ERR_JWKS_TIMEOUT' || err.code === 'ERR_JOSE_GENERIC')) throw unreachable(err);
      throw new AuthorizerError('invalid_token', 'the task token does not verify', 401);
    }
    let scope: TaskScopeView | null = null;
    if (this.opts.operatorToken) scope = await this.readScope(sub, txn);
    else await this.checkActive(taskToken, sub, txn);
    const view: TaskView = { taskId: txn, agentId: sub, scope };
    if (this.tasks.size > 10_000) this.tasks.clear();
    this.tasks.set(taskToken, { view, until: now + TASK_CACHE_MS });
    return view;
  }

  /** Whether the token's task is active, asked with the token itself (`GET /v1/tasks/current`). */
  private async checkActive(taskToken: string, agentId: string, taskId: string): Promise<void> {
    const r = await this.call('GET', '/v1/tasks/current', taskToken, undefined, 'current task');
    if (r.status !== 200) throw errorOf(r.status, r.body, 'GET /v1/tasks/current');
    if (r.body?.task_id !== taskId || r.body?.agent_id !== agentId) throw new AuthorizerError('invalid_token', 'the task token does not match its task', 401);
  }

  /**
   * The task's scope, read with the operator token: from the agent's active tasks
   * (small, and without the task's decision history), else from the task itself.
   */
  private async readScope(agentId: string, taskId: string): Promise<TaskScopeView> {
    const q = `/v1/tasks?agent_id=${encodeURIComponent(agentId)}&status=active&limit=1000`;
    const list = await this.call('GET', q, this.opts.operatorToken, undefined, 'tasks');
    if (list.status !== 200) throw errorOf(list.status, list.body, 'GET /v1/tasks');
    const tasks = Array.isArray(list.body?.tasks) ? (list.body.tasks as any[]) : [];
    let t = tasks.find((x) => x?.id === taskId);
    if (!t && tasks.length >= 1000) {
      const r = await this.call('GET', `/v1/tasks/${encodeURIComponent(taskId)}`, this.opts.operatorToken, undefined, 'task');
      if (r.status === 200 && r.body?.status === 'active') t = r.body;
    }
    if (!t || t.status !== 'active') throw new AuthorizerError('task_not_active', `task \`${taskId}\` is not active`, 401);
    if (t.agent_id !== agentId) throw new AuthorizerError('invalid_token', 'the task token does not match its task', 401);
    const s = t.scope ?? {};
    return { tools: s.tools ?? [], resources: s.resources ?? [], destinations: s.destinations ?? [] };
  }

  async authorize(taskToken: string, action: ActionRequest, trace?: TraceCarrier): Promise<Decision> {
    // on the decisions' own connections (src/gateway/decision-client.ts); a bound token as
    // `DPoP` with a proof by the held key, once more with Writ's nonce when Writ asks for one
    const jkt = boundKeyOf(taskToken);
    if (jkt !== undefined && this.opts.dpopKey?.jkt !== jkt) throw keyNotHeld();
    const url = jkt === undefined ? '' : `${await this.getIssuer()}/v1/authorize`;
    const bodyText = JSON.stringify(action);
    const extra = trace?.traceparent ? { traceparent: trace.traceparent, tracestate: trace.tracestate } : undefined;
    let r;
    try {
      if (jkt === undefined) r = await this.decisions.post(this.authorizePath, `Bearer ${taskToken}`, bodyText, extra);
      else r = await sendWithDpop(this.opts.dpopKey!, { method: 'POST', url, accessToken: taskToken }, (dpop) => this.decisions.post(this.authorizePath, `DPoP ${taskToken}`, bodyText, { ...extra, dpop }), this.nonces);
    } catch (err) {
      // any failure on the way, before or after the request was written, fails this call: never re-sent
      throw unreachable(err);
    }
    if (r.status !== 200) throw errorOf(r.status, r.body, 'POST /v1/authorize');
    return checkDecision(r.body);
  }

  /**
   * Gathers the outcome with the others of the same task token reported within
   * `OUTCOME_LINGER_MS` (at most 256), sent as one `POST /v1/actions/outcomes`; resolves
   * once Writ has checked and queued it. Against a Writ without that route (404), each
   * outcome goes alone, as before.
   */
  reportOutcome(taskToken: string, decisionId: string, status: 'succeeded' | 'failed', detail?: string): Promise<void> {
    const item: OutcomeItem = { decision_id: decisionId, status };
    if (detail) item.detail = detail.slice(0, 4096);
    if (!this.batchOutcomes) return this.reportOne(taskToken, item);
    return new Promise<void>((ok, fail) => {
      let b = this.outcomeBatches.get(taskToken);
      if (!b) {
        // not unref'd: a gateway about to end stays up (the linger at most) to send them
        b = { items: [], waiters: [], timer: setTimeout(() => void this.sendOutcomes(taskToken), OUTCOME_LINGER_MS) };
        this.outcomeBatches.set(taskToken, b);
      }
      b.items.push(item);
      b.waiters.push({ ok, fail });
      if (b.items.length >= MAX_OUTCOMES_PER_REQUEST) void this.sendOutcomes(taskToken);
    });
  }

  flushOutcomes(): void {
    for (const token of [...this.outcomeBatches.keys()]) void this.sendOutcomes(token);
  }

  private async sendOutcomes(taskToken: string): Promise<void> {
    const b = this.outcomeBatches.get(taskToken);
    if (!b) return;
    this.outcomeBatches.delete(taskToken);
    clearTimeout(b.timer);
    let r;
    try {
      r = await this.call('POST', '/v1/actions/outcomes', taskToken, { outcomes: b.items }, 'outcomes');
    } catch (err) {
      for (const w of b.waiters) w.fail(err);
      return;
    }
    if (r.status === 404 && r.body?.error?.code === 'not_found') {
      // a Writ without the route: one request per outcome from now on
      this.batchOutcomes = false;
      b.items.forEach((item, i) => void this.reportOne(taskToken, item).then(b.waiters[i]!.ok, b.waiters[i]!.fail));
      return;
    }
    const answers = r.body?.outcomes;
    if (r.status !== 202 || !Array.isArray(answers) || answers.length !== b.items.length) {
      const err = r.status === 202 ? new AuthorizerError('bad_response', 'Writ did not answer each outcome') : errorOf(r.status, r.body, 'POST /v1/actions/outcomes');
      for (const w of b.waiters) w.fail(err);
      return;
    }
    answers.forEach((a: any, i: number) => {
      const e = a?.error;
      if (e && typeof e === 'object') b.waiters[i]!.fail(new AuthorizerError(typeof e.code === 'string' ? e.code : 'outcome_refused', typeof e.message === 'string' ? e.message : 'the outcome was refused'));
      else b.waiters[i]!.ok();
    });
  }

  /** One outcome, alone (`POST /v1/actions/{id}/outcome`, answered once queued). */
  private async reportOne(taskToken: string, item: OutcomeItem): Promise<void> {
    const body: Record<string, unknown> = { status: item.status };
    if (item.detail) body.detail = item.detail;
    // answered once queued (202): the kept-alive connection is free for the next call at once
    const r = await this.call('POST', `/v1/actions/${encodeURIComponent(item.decision_id)}/outcome`, taskToken, body, 'outcome', undefined, { prefer: 'respond-async' });
    if (r.status !== 200 && r.status !== 202) throw errorOf(r.status, r.body, 'POST /v1/actions/{id}/outcome');
  }

  async approval(taskToken: string, approvalId: string, waitSeconds: number): Promise<ApprovalStatus> {
    const wait = Math.max(0, Math.min(30, Math.floor(waitSeconds)));
    const r = await this.send({ method: 'GET', path: `/v1/approvals/${encodeURIComponent(approvalId)}${wait > 0 ? `?wait=${wait}` : ''}`, token: taskToken, timeoutMs: (wait + 10) * 1000 });
    if (r.status === 404 && r.body?.error?.code === 'not_found') throw new AuthorizerError('approvals_unavailable', 'this Writ does not serve approvals', 404);
    if (r.status !== 200) throw errorOf(r.status, r.body, 'GET /v1/approvals/{id}');
    return approvalStatusOf(r.body);
  }

  /** `GET /v1/tool-labels` with the operator token; null without one. */
  async visibleTools(taskToken: string, tools: string[]): Promise<string[]> {
    if (tools.length === 0) return [];
    const r = await this.call('POST', '/v1/tools/visible', taskToken, { tools }, 'visible tools');
    if (r.status !== 200) throw errorOf(r.status, r.body, 'POST /v1/tools/visible');
    const out = r.body?.tools;
    if (!Array.isArray(out) || !out.every((t: unknown) => typeof t === 'string')) throw new AuthorizerError('writ_bad_answer', 'Writ answered no tool list', 502);
    return out;
  }

  async toolLabels(): Promise<ToolLabelEntry[] | null> {
    if (!this.opts.operatorToken) return null;
    const r = await this.call('GET', '/v1/tool-labels', this.opts.operatorToken, undefined, 'tool labels');
    if (r.status !== 200) throw errorOf(r.status, r.body, 'GET /v1/tool-labels');
    return toolLabelEntries(r.body?.tool_labels);
  }

  async close(): Promise<void> {
    // what is still gathered goes now; its callers have stopped waiting (the gateway flushed first)
    this.flushOutcomes();
    this.client.close();
    await this.decisions.close();
  }
}

function approvalStatusOf(body: any): ApprovalStatus {
  const status = body?.status;
  if (typeof status !== 'string') throw new AuthorizerError('bad_response', 'Writ answered an approval without a status');
  const out: ApprovalStatus = { status: status as ApprovalState };
  if (typeof body.action_token === 'string') out.action_token = body.action_token;
  if (body.decision === 'allow' || body.decision === 'deny') out.decision = body.decision;
  if (typeof body.decision_id === 'string') out.decision_id = body.decision_id;
  if (Array.isArray(body.reasons)) out.reasons = body.reasons;
  return out;
}

function toolLabelEntries(list: unknown): ToolLabelEntry[] {
  if (!Array.isArray(list)) throw new AuthorizerError('bad_response', 'Writ answered tool labels without a list');
  return list
    .filter((e): e is { pattern: string; labels: unknown[] } => !!e && typeof e.pattern === 'string' && Array.isArray(e.labels))
    .map((e) => ({ pattern: e.pattern, labels: e.labels.filter((l): l is string => typeof l === 'string') }));
}

function fromWrit(err: unknown): never {
  if (err instanceof AuthorizerError) throw err;
  if (err instanceof WritError) throw new AuthorizerError(err.code, err.expose ? err.message : 'Writ failed', err.status);
  throw new AuthorizerError('writ_unavailable', 'Writ failed to decide');
}

/** How many unreported allows an `InProcessAuthorizer` keeps (a gateway reports each call's outcome within a turn or two). */
const OWN_ALLOWS_MAX = 4096;

/** Writ in the same process: no HTTP, no serialization, no second process to wake. */
export class InProcessAuthorizer implements Authorizer {
  readonly mode = 'in-process' as const;

  /**
   * A DPoP-bound task token (RFC 9449) is taken only with proof of its key: `dpopKey`,
   * the agent's key the gateway holds, or `dpopProvenAtEdge`, set by a gateway whose
   * edge checks the client's proof against its own URL before any call comes here
   * (the HTTP gateway, src/gateway/dpop-edge.ts). Without either it fails closed.
   */
  constructor(
    private readonly writ: Writ,
    private readonly opts: { dpopKey?: DpopKey; dpopProvenAtEdge?: boolean } = {},
  ) {}

  /** The proof of possession to present with `taskToken` (null for an unbound token). */
  private proven(taskToken: string): { jkt: string } | null {
    const jkt = boundKeyOf(taskToken);
    if (jkt === undefined) return null;
    if (this.opts.dpopProvenAtEdge || this.opts.dpopKey?.jkt === jkt) return { jkt };
    throw keyNotHeld();
  }

  private authenticate(taskToken: string) {
    return this.writ.tokens.authenticateTask(taskToken, this.proven(taskToken));
  }

  onTasksEnded(listener: (taskIds: string[]) => void): () => void {
    return this.writ.tasks.onTasksEnded(listener);
  }

  async issuer(): Promise<string> {
    return this.writ.config.issuer;
  }

  async task(taskToken: string): Promise<TaskView> {
    try {
      const { task, agent } = await this.authenticate(taskToken);
      return { taskId: task.id, agentId: agent.id, scope: { tools: task.scope.tools, resources: task.scope.resources ?? [], destinations: task.scope.destinations ?? [] } };
    } catch (err) {
      return fromWrit(err);
    }
  }

  /**
   * The allows answered here whose outcome is not reported yet, by decision id, with the
   * token they were asked with and what it proved (its task, agent, binding, expiry): an
   * outcome reported with that same token needs neither the token checked again nor the
   * decision read back (Writ's `reportOwnOutcome`). At most `OWN_ALLOWS_MAX`, the oldest
   * dropped first; an outcome not found here takes the full check.
   */
  private readonly ownAllows = new Map<string, { token: string; principal: TaskPrincipal; agentId: string }>();

  async authorize(taskToken: string, action: ActionRequest): Promise<Decision> {
    try {
      const ctx = await this.authenticate(taskToken);
      // parsed as the HTTP edge parses it (the plain check, else the schema: src/wire/authorize-body.ts):
      // the same 400s in both modes, nothing unchecked reaches Writ
      const decision = checkDecision(await this.writ.authz.authorize(ctx, parseAuthorizeBody(action)));
      if (decision.decision === 'allow') {
        if (this.ownAllows.size >= OWN_ALLOWS_MAX) this.ownAllows.delete(this.ownAllows.keys().next().value!);
        this.ownAllows.set(decision.decision_id, { token: taskToken, principal: ctx.principal, agentId: ctx.agent.id });
      }
      return decision;
    } catch (err) {
      if (err instanceof AuthorizerError) throw err;
      return fromWrit(err);
    }
  }

  /**
   * Resolves once the outcome is written: with the next decision's commit, or at
   * `flushOutcomes` (the gateway's flush and close wait for it); never on the call's path.
   */
  async reportOutcome(taskToken: string, decisionId: string, status: 'succeeded' | 'failed', detail?: string): Promise<void> {
    try {
      const input = parse(outcomeSchema, { status, detail: detail?.slice(0, 4096) });
      const own = this.ownAllows.get(decisionId);
      if (own) this.ownAllows.delete(decisionId);
      // the allow this authorizer was answered for this very token (so for its task, with
      // its binding proven) while the token is unexpired: what the outcome route checks
      if (own && own.token === taskToken && own.principal.tokenExp * 1000 > this.writ.clock.now()) {
        await this.writ.authz.reportOwnOutcome(own.principal, { decisionId, taskId: own.principal.taskId, agentId: own.agentId }, input);
        return;
      }
      const proven = this.proven(taskToken);
      // verified through Writ's token cache
      const principal = await this.writ.tokens.taskPrincipal(taskToken);
      // the outcome route's rule (src/server/task-auth.ts): bound and proven, or neither
      if ((principal.jkt ?? null) !== (proven?.jkt ?? null)) throw new AuthorizerError('invalid_token', 'the task token\'s binding does not match its proof', 401);
      await this.writ.authz.reportOutcome(principal, decisionId, input);
    } catch (err) {
      return fromWrit(err);
    }
  }

  /** Writes the outcomes waiting for the next decision's commit now (the gateway's flush). */
  flushOutcomes(): void {
    void this.writ.authz.flushOutcomes();
  }

  async approval(taskToken: string, approvalId: string, waitSeconds: number): Promise<ApprovalStatus> {
    try {
      const ctx = await this.authenticate(taskToken);
      return approvalStatusOf(await this.writ.approvals.readAsAgent(ctx, approvalId, Math.max(0, Math.min(30, Math.floor(waitSeconds)))));
    } catch (err) {
      if (err instanceof AuthorizerError) throw err;
      return fromWrit(err);
    }
  }

  async visibleTools(taskToken: string, tools: string[]): Promise<string[]> {
    try {
      const ctx = await this.authenticate(taskToken);
      return await this.writ.authz.visibleTools(ctx, parse(visibleToolsSchema, { tools }).tools);
    } catch (err) {
      return fromWrit(err);
    }
  }

  async toolLabels(): Promise<ToolLabelEntry[]> {
    try {
      return toolLabelEntries(await this.writ.store.listToolLabels());
    } catch (err) {
      if (err instanceof AuthorizerError) throw err;
      return fromWrit(err);
    }
  }

  async close(): Promise<void> {}
}
