import pg from 'pg';
import { UnavailableError } from '../../core/errors.js';
import { asError, mapPgError, type PgDb } from './db.js';
import { quoteIdent } from './schema.js';

/**
 * A notification handler. `payload` is the NOTIFY payload; `null` means the listener
 * connection was lost and is back, so notifications may have been missed in between
 * (a cache should drop everything).
 */
export type NotificationHandler = (payload: string | null) => void;

/** LISTEN / NOTIFY on one dedicated connection per store, reconnecting on its own. */
export class PgNotifications {
  private readonly channels = new Map<string, Set<NotificationHandler>>();
  private listener: pg.Client | null = null;
  private listenerConnecting: Promise<pg.Client> | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectAttempt = 0;

  constructor(private readonly db: PgDb) {}

  /** Drops every subscription and the listener connection (the store is closing). */
  async close(): Promise<void> {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.channels.clear();
    const pending = this.listenerConnecting;
    const l = this.listener;
    this.listener = null;
    await l?.end().catch(() => undefined);
    await pending?.then((c) => c.end()).catch(() => undefined);
  }

  /** Channels are namespaced by the schema, so deployments sharing a database stay apart. */
  private channelName(channel: string): string {
    const name = this.db.schema ? `${this.db.schema}.${channel}` : channel;
    if (channel.length === 0 || Buffer.byteLength(name) > 63) throw new TypeError('channel name must be 1 to 63 bytes (with the schema prefix)');
    return name;
  }

  /**
   * Subscribes `handler` to `channel` on a dedicated connection, which reconnects on
   * its own after a fault (handlers are then called with `null`: notifications sent in
   * between are lost). Rejects with UnavailableError when PostgreSQL cannot be reached.
   * Resolves to a function that unsubscribes.
   */
  async listen(channel: string, handler: NotificationHandler): Promise<() => Promise<void>> {
    const name = this.channelName(channel);
    if (this.db.closed) throw new UnavailableError('the store is closed');
    let set = this.channels.get(name);
    const isNew = !set;
    if (!set) {
      set = new Set();
      this.channels.set(name, set);
    }
    set.add(handler);
    try {
      const client = await this.connectListener();
      if (isNew) await client.query(`LISTEN ${quoteIdent(name)}`);
    } catch (err) {
      set.delete(handler);
      if (set.size === 0 && this.channels.get(name) === set) this.channels.delete(name);
      throw mapPgError(err);
    }
    return async () => {
      set.delete(handler);
      if (set.size > 0 || this.channels.get(name) !== set) return;
      this.channels.delete(name);
      await this.listener?.query(`UNLISTEN ${quoteIdent(name)}`).catch(() => undefined);
    };
  }

  /** Sends `payload` (at most ~8000 bytes) to every listener of `channel`, in any instance. */
  async notify(channel: string, payload: string): Promise<void> {
    await this.db.exec('SELECT pg_notify($1, $2)', [this.channelName(channel), payload]);
  }

  private connectListener(): Promise<pg.Client> {
    if (this.listener) return Promise.resolve(this.listener);
    if (this.listenerConnecting) return this.listenerConnecting;
    const attempt = (async () => {
      const client = new pg.Client(this.db.connectionConfig('writ-listen'));
      let lost = false;
      const onLost = (err?: Error) => {
        if (lost) return;
        lost = true;
        if (err) this.db.background(err);
        if (this.listener === client) this.listener = null;
        client.end().catch(() => undefined);
        this.scheduleReconnect();
      };
      client.on('error', (err) => onLost(err));
      client.on('end', () => onLost());
      client.on('notification', (msg) => {
        for (const h of this.channels.get(msg.channel) ?? []) {
          try {
            h(msg.payload ?? '');
          } catch (err) {
            this.db.background(asError(err));
          }
        }
      });
      try {
        await client.connect();
        for (const name of this.channels.keys()) await client.query(`LISTEN ${quoteIdent(name)}`);
      } catch (err) {
        lost = true; // not ours to reconnect: the caller decides
        client.removeAllListeners('end');
        client.on('error', () => undefined);
        await client.end().catch(() => undefined);
        throw err;
      }
      if (this.db.closed) {
        await client.end().catch(() => undefined);
        throw new UnavailableError('the store is closed');
      }
      this.listener = client;
      return client;
    })();
    this.listenerConnecting = attempt;
    const clear = () => {
      if (this.listenerConnecting === attempt) this.listenerConnecting = null;
    };
    attempt.then(clear, clear);
    return attempt;
  }

  private scheduleReconnect(): void {
    if (this.db.closed || this.reconnectTimer || this.channels.size === 0) return;
    const delay = Math.min(5000, 100 * 2 ** Math.min(this.reconnectAttempt, 6)) * (0.5 + Math.random());
    this.reconnectAttempt += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.db.closed || this.channels.size === 0) return;
      this.connectListener().then(
        () => {
          this.reconnectAttempt = 0;
          for (const set of this.channels.values()) {
            for (const h of set) {
              try {
                h(null);
              } catch (err) {
                this.db.background(asError(err));
              }
            }
          }
        },
        (err) => {
          this.db.background(asError(err));
          this.scheduleReconnect();
        },
      );
    }, delay);
    this.reconnectTimer.unref();
  }
}
