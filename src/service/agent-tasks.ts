import { createHash } from 'node:crypto';
import { ForbiddenError, OAuthError, UnauthorizedError, WritError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { AgentRecord, TaskRecord } from '../core/types.js';
import { peekAssertionSubject, verifyClientAssertion } from '../identity/client-assertion.js';
import type { Store } from '../store/store.js';

/** the longest `?wait=` of a long-poll (as approvals) */
export const MAX_TASKS_WAIT_SECONDS = 30;
/**
 * How often a long-poll re-reads the store: without cross-instance notifications, tasks
 * created or ended through another instance are seen within this; with them (PostgreSQL
 * LISTEN/NOTIFY), a backstop for a notification lost to a reconnection.
 */
const POLL_MS = 500;
const POLL_LISTENING_MS = 5000;
/** the LISTEN/NOTIFY channel: some task was created or ended (every waiter re-reads its own list) */
const CHANNEL = 'writ_agent_tasks';
/** the most active tasks one answer lists */
const MAX_LISTED = 100;

export interface AgentTasksKit {
  store: Store;
  clock: Clock;
  /** Writ's issuer now (it may be settled after construction, when the port is known) */
  issuer: () => string;
  /** the store's cross-instance notifications, when it has them (PostgreSQL) */
  notifications?: { listen(channel: string, handler: (payload: string | null) => void): Promise<() => Promise<void>>; notify(channel: string, payload: string): Promise<void> };
}

export interface AgentTasksAnswer {
  tasks: TaskRecord[];
  /** an entity-tag of the listed set (ids and expiry), for `If-None-Match` */
  etag: string;
  /** the set is still the one `If-None-Match` named (the long-poll ran out): 304 */
  notModified: boolean;
}

/**
 * `GET /v1/agents/{id}/tasks?status=active` (issue 15 item 6): an agent, before it holds
 * any task token, asks which of its tasks are active, so a gateway configured once with
 * the agent's key follows the tasks operators assign to it.
 *
 * The agent authenticates with its own key: `Authorization: Bearer` an RFC 7523 client
 * assertion (`iss` = `sub` = the agent) whose `aud` is this route's URL under Writ's
 * issuer (so an assertion made for listing cannot be spent at the token endpoint, and one
 * made for the token endpoint cannot list), single-use like every assertion. It sees its
 * own tasks only; another agent's path is 403.
 *
 * Long-poll: with `wait` (seconds, at most 30) the answer waits until the set of active
 * tasks differs from the one `If-None-Match` names (RFC 9110 §13.1.2), or without it
 * until there is one; else, at the end of the wait, 304 (or an empty list). It wakes on
 * task changes made through this instance at once, and on those made through another
 * by the store's notifications (PostgreSQL LISTEN/NOTIFY); without them (or while they
 * are down) it re-reads the store every 500 ms.
 */
export class AgentTasks {
  private readonly waiters = new Set<() => void>();
  /** the LISTEN subscription, made by the first long-poll; null until then or after it failed */
  private subscription: Promise<(() => Promise<void>) | null> | null = null;
  private listening = false;
  /** the store re-read interval while notifications work (tests set it long to see that they wake the poll) */
  pollListeningMs = POLL_LISTENING_MS;

  constructor(private readonly kit: AgentTasksKit) {}

  /** Wakes every long-poll: a task was created or ended on this instance (and tells the others). */
  changed(): void {
    this.wake();
    // best effort: a lost notification costs the other instances one poll interval
    void this.kit.notifications?.notify(CHANNEL, '').catch(() => undefined);
  }

  /** long-polls waiting now (tests wait for one before they change a task) */
  get waiting(): number {
    return this.waiters.size;
  }

  /** notifications received from the store (tests: another instance's change arrived) */
  notified = 0;

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private listen(): void {
    const n = this.kit.notifications;
    if (!n || this.subscription) return;
    this.subscription = n.listen(CHANNEL, () => {
      this.notified += 1;
      this.wake();
    }).then(
      (unlisten) => {
        this.listening = true;
        return unlisten;
      },
      () => {
        // no LISTEN now: polls re-read every 500 ms; the next long-poll tries again
        this.subscription = null;
        return null;
      },
    );
  }

  async close(): Promise<void> {
    this.wake();
    const unlisten = await this.subscription;
    this.subscription = null;
    this.listening = false;
    await unlisten?.().catch(() => undefined);
  }

  /** The route's URL under the issuer: the audience the agent's assertion must name. */
  audienceFor(agentId: string): string {
    return `${this.kit.issuer()}/v1/agents/${encodeURIComponent(agentId)}/tasks`;
  }

  /** Verifies the bearer assertion for `agentId`'s list; answers the agent. */
  async authenticate(assertion: string | null, agentId: string): Promise<AgentRecord> {
    if (!assertion) throw new UnauthorizedError('send a client assertion signed by the agent\'s key as `Authorization: Bearer`', 'invalid_token');
    const now = this.kit.clock.now();
    let claimed: string;
    try {
      claimed = peekAssertionSubject(assertion);
    } catch (err) {
      throw new UnauthorizedError(`the client assertion is refused: ${(err as Error).message}`, 'invalid_token');
    }
    const agent = await this.kit.store.getAgent(claimed);
    if (!agent) throw new UnauthorizedError('the client assertion does not verify', 'invalid_token');
    let verified;
    try {
      verified = await verifyClientAssertion(assertion, agent, { audiences: [this.audienceFor(agentId)], now });
    } catch (err) {
      if (err instanceof OAuthError) throw new UnauthorizedError(err.message, 'invalid_token');
      throw err;
    }
    if (agent.status !== 'active') throw new UnauthorizedError(`agent \`${agent.id}\` is disabled`, 'agent_disabled');
    // the agent's own list only (checked after the signature: a stranger learns nothing)
    if (agent.id !== agentId) throw new ForbiddenError('an agent lists its own tasks only', 'forbidden');
    // single-use, as at the token endpoint; a list is no event for the audit log
    const first = await this.kit.store.useOnce(`assertion:${agent.id}:${verified.jti}`, verified.exp * 1000, null);
    if (!first) throw new UnauthorizedError('the client assertion was used before', 'invalid_token');
    return agent;
  }

  /** The agent's active tasks, oldest first, after waiting as described above. */
  async list(agentId: string, opts: { waitSeconds?: number; ifNoneMatch?: string; signal?: AbortSignal } = {}): Promise<AgentTasksAnswer> {
    const deadline = Date.now() + Math.min(Math.max(opts.waitSeconds ?? 0, 0), MAX_TASKS_WAIT_SECONDS) * 1000;
    if (deadline > Date.now()) this.listen();
    for (;;) {
      const now = this.kit.clock.now();
      const tasks = (await this.kit.store.listTasks({ agentId, status: 'active', limit: 1000 }))
        .filter((t) => t.expiresAt > now)
        .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
        .slice(0, MAX_LISTED);
      const etag = etagOf(tasks);
      const satisfied = opts.ifNoneMatch !== undefined ? etag !== opts.ifNoneMatch : tasks.length > 0;
      const left = deadline - Date.now();
      if (satisfied || left <= 0 || opts.signal?.aborted) return { tasks, etag, notModified: opts.ifNoneMatch === etag };
      await this.waitForChange(Math.min(this.listening ? this.pollListeningMs : POLL_MS, left), opts.signal);
    }
  }

  private waitForChange(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

/** A strong entity-tag (RFC 9110 §8.8.3) over the ids and expiries of the listed tasks. */
function etagOf(tasks: TaskRecord[]): string {
  const h = createHash('sha256');
  for (const t of tasks) h.update(`${t.id}\n${t.expiresAt}\n`);
  return `"${h.digest('base64url').slice(0, 22)}"`;
}

/** `If-None-Match` as one entity-tag (a list or `*` waits for nothing in particular). */
export function ifNoneMatchOf(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const v = (Array.isArray(header) ? header.join(',') : header).trim();
  if (!/^"[A-Za-z0-9_-]{1,64}"$/.test(v)) throw new WritError('invalid_request', '`If-None-Match` takes one entity-tag from an earlier answer\'s `ETag`', 400);
  return v;
}
