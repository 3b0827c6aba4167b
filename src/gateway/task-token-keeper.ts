import { randomBytes } from 'node:crypto';
import { SignJWT, type CryptoKey } from 'jose';
import { DpopNonces, sendWithDpop, WritClient, type DpopKey } from '@writ/sdk';
import type { Log } from './log.js';

/**
 * The agent's own task token, held by the gateway (issue 15 item 6): a desktop MCP
 * client is configured once with `writ gateway mcp --stdio --agent ID --agent-key FILE`
 * and keeps working, without anyone pasting tokens.
 *
 * - With `task`, the gateway obtains a token for that task (RFC 7523 client assertion at
 *   `/oauth/token`, as `writ token` does) and renews it at 2/3 of its lifetime; a failed
 *   renewal is retried with exponential backoff and jitter while the token still works.
 * - With `follow`, it long-polls `GET /v1/agents/{id}/tasks?status=active` (its own key,
 *   `If-None-Match`) and takes the task an operator assigned (the newest active one),
 *   obtains a token for it, and, when that task ends (completed, revoked, expired), drops
 *   the token and waits for the next.
 * - Either way the same long-poll watches the held task: a task that ends has its token
 *   dropped at once, not at its next renewal.
 *
 * While it holds no valid token, `current()` answers why, and the gateway refuses every
 * call with that typed error: a call is never passed without a decision.
 */

export interface AgentSigningKey {
  key: CryptoKey;
  alg: string;
  kid: string;
}

export interface TaskTokenKeeperOptions {
  /** Writ's base URL */
  url: string;
  agentId: string;
  key: AgentSigningKey;
  /** the one task to hold (else `follow`) */
  task?: string;
  /** follow the tasks assigned to the agent */
  follow?: boolean;
  log: Log;
  timeoutMs?: number;
  /** renew at this fraction of the token's lifetime (default 2/3) */
  renewAt?: number;
  /** retry backoff: first delay and cap (default 500 ms, 30 s), each with up to half again of jitter removed */
  backoff?: { firstMs: number; maxMs: number };
  /** the long-poll's `wait` (default 30 s) */
  waitSeconds?: number;
  /**
   * the agent's DPoP key (RFC 9449): the tokens obtained are bound to it (a proof on each
   * token request, §5; Writ's nonce answered with one retry), for an authorizer that holds it
   */
  dpopKey?: DpopKey;
}

export type KeeperState =
  | { kind: 'ready'; token: string; taskId: string }
  | { kind: 'refused'; code: 'no_active_task' | 'task_token_unavailable' | 'agent_key_refused'; message: string };

/** A token this close to its expiry is not handed out: a call must not start with a token that ends on the way. */
const EXPIRY_MARGIN_MS = 1000;

interface Held {
  taskId: string;
  token: string | null;
  expiresAt: number;
  /** ends this task's renewal loop */
  stop: AbortController;
}

export class TaskTokenKeeper {
  private readonly client: WritClient;
  private issuer: string | null = null;
  private held: Held | null = null;
  private closed = new AbortController();
  private lastProblem: KeeperState & { kind: 'refused' } | null = null;
  private readonly loops: Promise<void>[] = [];
  private readonly listeners = new Set<() => void>();
  private readonly nonces = new DpopNonces();

  constructor(private readonly opts: TaskTokenKeeperOptions) {
    if ((opts.task === undefined) === !opts.follow) throw new TypeError('give exactly one of `task` and `follow`');
    this.client = new WritClient({ url: opts.url, timeoutMs: opts.timeoutMs ?? 10_000 });
  }

  /** The token to use now, or why there is none. */
  current(): KeeperState {
    const h = this.held;
    if (h && h.token !== null && Date.now() < h.expiresAt - EXPIRY_MARGIN_MS) return { kind: 'ready', token: h.token, taskId: h.taskId };
    if (this.lastProblem) return this.lastProblem;
    if (!h) {
      return this.opts.follow
        ? { kind: 'refused', code: 'no_active_task', message: `agent \`${this.opts.agentId}\` has no active task: the gateway waits for an operator to assign one` }
        : { kind: 'refused', code: 'task_token_unavailable', message: `no task token for task \`${this.opts.task}\` yet` };
    }
    if (h.token === null) return { kind: 'refused', code: 'task_token_unavailable', message: `the task token for task \`${h.taskId}\` is being obtained` };
    return { kind: 'refused', code: 'task_token_unavailable', message: `the task token for task \`${h.taskId}\` has expired and could not be renewed yet` };
  }

  /** The token, or undefined (see `current` for why). */
  token(): string | undefined {
    const c = this.current();
    return c.kind === 'ready' ? c.token : undefined;
  }

  /** Called whenever the held token or task changes (tests wait on it; the gateway re-lists tools). */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch {
        // a listener's fault is its own
      }
    }
  }

  start(): void {
    if (this.opts.task !== undefined) this.hold(this.opts.task);
    this.loops.push(this.watch());
  }

  async close(): Promise<void> {
    this.closed.abort();
    this.held?.stop.abort();
    await Promise.allSettled(this.loops);
    this.client.close();
  }

  // --- the held task ---------------------------------------------------------------

  private hold(taskId: string): void {
    const stop = new AbortController();
    this.held = { taskId, token: null, expiresAt: 0, stop };
    this.lastProblem = null;
    this.opts.log('task_assigned', { task_id: taskId });
    this.loops.push(this.renewLoop(this.held));
  }

  private drop(reason: string): void {
    const h = this.held;
    if (!h) return;
    h.stop.abort();
    this.held = null;
    // a fixed task that ended stays refused (with why); a followed one waits for the next
    if (!this.opts.follow) this.lastProblem = { kind: 'refused', code: 'task_token_unavailable', message: `task \`${h.taskId}\` has ended (${reason}): its token was dropped` };
    this.opts.log('task_token_dropped', { task_id: h.taskId, reason });
    this.changed();
  }

  /** Obtains the held task's token, renews it at `renewAt` of its life, retries with backoff on failure. */
  private async renewLoop(h: Held): Promise<void> {
    let failures = 0;
    while (!h.stop.signal.aborted && !this.closed.signal.aborted) {
      let delay: number;
      try {
        const { token, expiresIn } = await this.obtain(h.taskId);
        if (h.stop.signal.aborted) return;
        const renewed = h.token !== null;
        h.token = token;
        h.expiresAt = Date.now() + expiresIn * 1000;
        this.lastProblem = null;
        failures = 0;
        this.opts.log(renewed ? 'task_token_renewed' : 'task_token_obtained', { task_id: h.taskId, expires_in: expiresIn });
        this.changed();
        delay = Math.max(500, expiresIn * 1000 * (this.opts.renewAt ?? 2 / 3));
      } catch (err) {
        if (h.stop.signal.aborted) return;
        const e = err as { code?: string; message?: string; status?: number };
        failures += 1;
        // the task is over, or not this agent's: in follow mode, drop it (the watch takes the next)
        if (e.code === 'invalid_grant' && this.opts.follow) {
          this.drop('task_not_active');
          return;
        }
        if (e.code === 'invalid_client') {
          this.lastProblem = { kind: 'refused', code: 'agent_key_refused', message: `Writ refused the agent's key: ${(e.message ?? '').slice(0, 200)}` };
        } else if (e.code === 'invalid_grant') {
          this.lastProblem = { kind: 'refused', code: 'task_token_unavailable', message: `task \`${h.taskId}\` is not active, or not this agent's` };
        }
        delay = this.backoff(failures);
        this.opts.log('task_token_failed', { task_id: h.taskId, error: e.code ?? 'error', retry_in_ms: Math.round(delay) });
        this.changed();
      }
      await sleep(delay, h.stop.signal, this.closed.signal);
    }
  }

  private backoff(failures: number): number {
    const { firstMs, maxMs } = this.opts.backoff ?? { firstMs: 500, maxMs: 30_000 };
    const d = Math.min(maxMs, firstMs * 2 ** Math.min(failures - 1, 20));
    // full jitter on the upper half: instances that failed together do not retry together
    return d / 2 + Math.random() * (d / 2);
  }

  // --- Writ ------------------------------------------------------------------------

  private async getIssuer(): Promise<string> {
    if (this.issuer) return this.issuer;
    const meta = await this.client.request({ method: 'GET', path: '/.well-known/oauth-authorization-server' });
    if (typeof meta?.issuer !== 'string') throw Object.assign(new Error('the metadata names no issuer'), { code: 'bad_response' });
    this.issuer = meta.issuer as string;
    return this.issuer;
  }

  /** An RFC 7523 §2.2 client assertion: one minute, a unique `jti`, for `audience`. */
  private async assertion(audience: string): Promise<string> {
    const iat = Math.floor(Date.now() / 1000);
    return new SignJWT({ jti: randomBytes(16).toString('base64url') })
      .setProtectedHeader({ alg: this.opts.key.alg, kid: this.opts.key.kid })
      .setIssuer(this.opts.agentId)
      .setSubject(this.opts.agentId)
      .setAudience(audience)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 60)
      .sign(this.opts.key.key);
  }

  private async obtain(taskId: string): Promise<{ token: string; expiresIn: number }> {
    const issuer = await this.getIssuer();
    // a new assertion for each attempt: each is single-use (a nonce retry needs another)
    const send = async (dpop?: string) =>
      this.client.send({
        method: 'POST',
        path: '/oauth/token',
        form: {
          grant_type: 'client_credentials',
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: await this.assertion(issuer),
          task_id: taskId,
        },
        dpop,
      });
    const key = this.opts.dpopKey;
    const r = key ? await sendWithDpop(key, { method: 'POST', url: `${issuer}/oauth/token` }, send, this.nonces) : await send();
    const body = r.body as { access_token?: unknown; expires_in?: unknown; token_type?: unknown; error?: unknown; error_description?: unknown } | null;
    if (r.status === 200 && key && body?.token_type !== 'DPoP') {
      throw Object.assign(new Error('asked for a DPoP-bound task token, got a bearer one'), { code: 'bad_response', status: r.status });
    }
    if (r.status !== 200 || typeof body?.access_token !== 'string' || typeof body.expires_in !== 'number') {
      throw Object.assign(new Error(typeof body?.error_description === 'string' ? body.error_description : `the token endpoint answered ${r.status}`), {
        code: typeof body?.error === 'string' ? body.error : r.status >= 500 ? 'writ_unavailable' : `http_${r.status}`,
        status: r.status,
      });
    }
    return { token: body.access_token, expiresIn: body.expires_in };
  }

  /**
   * The long-poll of the agent's active tasks: drops the held task when it leaves the
   * list; in follow mode, takes the newest active task when none is held.
   */
  private async watch(): Promise<void> {
    let etag: string | undefined;
    let failures = 0;
    const wait = this.opts.waitSeconds ?? 30;
    while (!this.closed.signal.aborted) {
      let tasks: { id: string; created_at: string }[];
      try {
        const issuer = await this.getIssuer();
        const path = `/v1/agents/${encodeURIComponent(this.opts.agentId)}/tasks`;
        // fetch, not the SDK client: the answer's `ETag` is read (the next poll's `If-None-Match`)
        const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${await this.assertion(`${issuer}${path}`)}` };
        if (etag !== undefined) headers['if-none-match'] = etag;
        const r = await fetch(`${this.client.url}${path}?status=active&wait=${wait}`, {
          headers,
          redirect: 'manual',
          signal: AbortSignal.any([this.closed.signal, AbortSignal.timeout((wait + 10) * 1000)]),
        });
        if (this.closed.signal.aborted) return;
        if (r.status === 304) {
          await r.body?.cancel();
          continue;
        }
        const body = (await r.json().catch(() => null)) as { tasks?: unknown; error?: { code?: unknown; message?: unknown } } | null;
        if (r.status !== 200 || !Array.isArray(body?.tasks)) {
          const code = typeof body?.error?.code === 'string' ? body.error.code : `http_${r.status}`;
          throw Object.assign(new Error(typeof body?.error?.message === 'string' ? body.error.message : `answered ${r.status}`), { code, status: r.status });
        }
        etag = r.headers.get('etag') ?? undefined;
        tasks = (body.tasks as unknown[]).filter((t): t is { id: string; created_at: string } => !!t && typeof (t as { id?: unknown }).id === 'string');
        failures = 0;
      } catch (err) {
        if (this.closed.signal.aborted) return;
        const e = err as { code?: string; status?: number; name?: string };
        failures += 1;
        etag = undefined;
        // fetch's own failures (refused connection, timeout) carry no code of ours
        if (e.code === undefined) e.code = e.name === 'TimeoutError' ? 'timeout' : 'writ_unavailable';
        if (e.status === 401 || e.status === 403) {
          this.lastProblem = { kind: 'refused', code: 'agent_key_refused', message: `Writ refused the agent's key for its task list (${e.code})` };
          // a key Writ refuses lists nothing: in follow mode, no task is held on its word
          if (this.opts.follow) this.drop('agent_key_refused');
        }
        const delay = this.backoff(failures);
        this.opts.log('agent_tasks_unavailable', { error: e.code ?? 'error', retry_in_ms: Math.round(delay) });
        await sleep(delay, this.closed.signal);
        continue;
      }
      const held = this.held;
      if (held && !tasks.some((t) => t.id === held.taskId)) this.drop('task_ended');
      if (this.opts.follow && !this.held && tasks.length > 0) {
        const newest = tasks.reduce((a, b) => (b.created_at > a.created_at ? b : a));
        this.hold(newest.id);
      }
    }
  }
}

/** Resolves after `ms`, or at once when any signal aborts. */
function sleep(ms: number, ...signals: AbortSignal[]): Promise<void> {
  return new Promise((resolve) => {
    if (signals.some((s) => s.aborted)) return resolve();
    const done = () => {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    for (const s of signals) s.addEventListener('abort', done, { once: true });
  });
}
