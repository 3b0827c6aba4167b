import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AuditEntry } from '../core/types.js';
import type { Store } from '../store/store.js';
import { auditArguments, type MaskRule } from '../audit/mask-arguments.js';
import { slackMessage } from './webhook-slack.js';

/** The events sent by default: what a person may have to act on. */
export const DEFAULT_WEBHOOK_EVENTS = ['approval.requested', 'approval.reviewed', 'break_glass.*', 'task.revoked'];

export interface WebhookOptions {
  url: string;
  /** Standard Webhooks secret: `whsec_` and base64 of 24 to 64 random bytes */
  secret: string;
  /** event types; `prefix.*` matches a family */
  events?: string[];
  timeoutMs?: number;
  /** waits before the 2nd, 3rd… attempt (default 1 s, 5 s, 25 s, 2 min) */
  retryDelaysMs?: number[];
  pollMs?: number;
  /**
   * `standard` (default): `{type, timestamp, data}`. `slack`: a Slack-compatible message
   * (src/service/webhook-slack.ts), signed the same way (Slack ignores the headers).
   */
  format?: 'standard' | 'slack';
  /** for `slack`: Writ's public URL (the approve command), an optional review link (`{approval_id}`), the mask rules */
  slack?: { issuer: string; approvalUrl?: string; maskRules?: readonly MaskRule[] };
  /** records a delivery's end in the audit log (`webhook.delivered` / `webhook.failed`) */
  record?: (type: 'webhook.delivered' | 'webhook.failed', data: Record<string, unknown>, entry: AuditEntry) => Promise<void>;
}

/** The key of a `whsec_…` secret; a TypeError when it is not one. */
export function webhookKey(secret: string): Buffer {
  const m = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(secret.trim());
  const key = m ? Buffer.from(m[1]!, 'base64') : Buffer.alloc(0);
  if (key.length < 24 || key.length > 64) throw new TypeError('WRIT_WEBHOOK_SECRET must be `whsec_` and the base64 of 24 to 64 random bytes (`echo whsec_$(openssl rand -base64 32)`)');
  return key;
}

/**
 * The Standard Webhooks signature (standardwebhooks.com, "Signature scheme"): HMAC-SHA256
 * over `{webhook-id}.{webhook-timestamp}.{body}` with the secret's key, base64, as `v1,<sig>`.
 */
export function signWebhook(key: Buffer, id: string, timestampSeconds: number, body: string): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSeconds}.${body}`).digest('base64')}`;
}

/** Checks a `webhook-signature` header (space-separated `v1,<sig>` entries) the way a receiver does. */
export function verifyWebhook(key: Buffer, id: string, timestampSeconds: number, body: string, header: string): boolean {
  const want = Buffer.from(signWebhook(key, id, timestampSeconds, body).slice(3), 'base64');
  return header.split(' ').some((part) => {
    if (!part.startsWith('v1,')) return false;
    const got = Buffer.from(part.slice(3), 'base64');
    return got.length === want.length && timingSafeEqual(got, want);
  });
}

function matches(patterns: string[], type: string): boolean {
  return patterns.some((p) => (p.endsWith('.*') ? type.startsWith(p.slice(0, -1)) : p === type));
}

/**
 * Webhooks from the audit log. It follows the log (from its head at start) and posts each
 * matching entry, signed, retrying with backoff; nothing on the decision path waits for
 * it, so a slow or failing receiver never blocks or changes a decision. The delivery id is
 * the entry's hash: several instances following one database send the same event with the
 * same `webhook-id`, which receivers deduplicate by (as Standard Webhooks asks them to).
 */
export class WebhookNotifier {
  private readonly key: Buffer;
  private readonly events: string[];
  private cursor = 0;
  private timer: NodeJS.Timeout | null = null;
  private polling = false;
  private readonly inflight = new Set<Promise<void>>();
  private stopped = false;
  private readonly stop = new AbortController();

  constructor(
    private readonly store: Store,
    private readonly options: WebhookOptions,
  ) {
    if (!/^https?:\/\//.test(options.url)) throw new TypeError('WRIT_WEBHOOK_URL must be an http(s) URL');
    if (options.format === 'slack' && !options.slack) throw new TypeError('the slack webhook format needs the issuer');
    const link = options.slack?.approvalUrl;
    if (link !== undefined && (!/^https?:\/\//.test(link) || !link.includes('{approval_id}'))) {
      throw new TypeError('WRIT_WEBHOOK_APPROVAL_URL must be an http(s) URL holding `{approval_id}`');
    }
    this.key = webhookKey(options.secret);
    this.events = options.events ?? DEFAULT_WEBHOOK_EVENTS;
  }

  async start(): Promise<void> {
    this.cursor = (await this.store.auditHead())?.seq ?? 0;
    this.timer = setInterval(() => void this.poll(), this.options.pollMs ?? 500);
    this.timer.unref();
  }

  /** Reads what was appended since the last look and starts a delivery for each match. */
  async poll(): Promise<void> {
    if (this.polling || this.stopped) return;
    this.polling = true;
    try {
      for (;;) {
        const entries = await this.store.listAudit({ after: this.cursor, limit: 500 });
        for (const e of entries) {
          this.cursor = e.seq;
          if (matches(this.events, e.type)) this.track(this.deliver(e));
        }
        if (entries.length < 500) break;
      }
    } catch {
      // the store is away: the next poll reads from the same cursor
    } finally {
      this.polling = false;
    }
  }

  private track(p: Promise<void>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  private async deliver(e: AuditEntry): Promise<void> {
    const id = `msg_${e.hash.slice(0, 32)}`;
    const body = JSON.stringify(
      this.options.format === 'slack'
        ? slackMessage(e, { ...this.options.slack!, arguments: await this.requestedArguments(e) })
        : {
            type: e.type,
            timestamp: new Date(e.ts).toISOString(),
            data: { seq: e.seq, actor: e.actor, task_id: e.taskId, agent_id: e.agentId, decision_id: e.decisionId, ...e.data },
          },
    );
    const delays = this.options.retryDelaysMs ?? [1000, 5000, 25_000, 120_000];
    let last = '';
    for (let attempt = 0; attempt <= delays.length && !this.stopped; attempt++) {
      if (attempt > 0) await this.sleep(delays[attempt - 1]!);
      if (this.stopped) break;
      const ts = Math.floor(Date.now() / 1000);
      try {
        const res = await fetch(this.options.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': signWebhook(this.key, id, ts, body) },
          body,
          redirect: 'manual',
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 5000),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.status >= 200 && res.status < 300) {
          await this.options.record?.('webhook.delivered', { event: e.type, webhook_id: id, seq: e.seq, attempts: attempt + 1 }, e).catch(() => undefined);
          return;
        }
        last = `status ${res.status}`;
      } catch (err) {
        const x = err as Error & { cause?: { code?: string } };
        last = x.name === 'TimeoutError' ? 'timeout' : (x.cause?.code ?? x.message);
      }
    }
    await this.options.record?.('webhook.failed', { event: e.type, webhook_id: id, seq: e.seq, error: last.slice(0, 200) }, e).catch(() => undefined);
  }

  /**
   * An approval request's arguments for a person to judge: read from its decision's audit
   * entry (the approval entry keeps only their digest) and masked again here, so even with
   * WRIT_AUDIT_ARGS=full a chat message carries no secret-looking value. Undefined when the
   * log keeps only the digest, or the store cannot say (the message then says so).
   */
  private async requestedArguments(e: AuditEntry): Promise<Record<string, unknown> | undefined> {
    if (e.type !== 'approval.requested' || !e.decisionId) return undefined;
    const [decision] = await this.store.listAudit({ decisionId: e.decisionId, type: 'decision', limit: 1 }).catch(() => []);
    const args = decision?.data.arguments;
    if (!args || typeof args !== 'object' || Array.isArray(args)) return undefined;
    return auditArguments(args as Record<string, unknown>, String(e.data.tool ?? ''), 'masked', this.options.slack?.maskRules ?? []);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.stop.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  /** Stops following the log; waits for deliveries in flight (their retries are cut short). */
  async close(): Promise<void> {
    this.stopped = true;
    this.stop.abort();
    if (this.timer) clearInterval(this.timer);
    await Promise.all([...this.inflight]);
  }

  /** Reads the log now and waits for every delivery started (tests). */
  async settle(): Promise<void> {
    await this.poll();
    await Promise.all([...this.inflight]);
  }
}
