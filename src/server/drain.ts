import type { Server, ServerResponse } from 'node:http';

/**
 * Graceful drain of one HTTP server. After `begin()`: `/readyz` answers 503 (a load
 * balancer takes the instance out), the listener stops accepting, idle keep-alive
 * connections are closed, and every response not yet sent carries `Connection: close`
 * (RFC 9112 §9.6), so its connection ends with it rather than being reset later.
 */
export class Drain {
  private readonly inFlight = new Set<ServerResponse>();
  private started = false;

  get draining(): boolean {
    return this.started;
  }

  /** Called for every request before its handler runs. */
  track(res: ServerResponse): void {
    if (this.started) res.setHeader('connection', 'close');
    this.inFlight.add(res);
    res.once('close', () => this.inFlight.delete(res));
  }

  /** Requests whose response has not finished. */
  get pending(): number {
    return this.inFlight.size;
  }

  /**
   * Starts draining `server`. Resolves `true` once every connection has closed, or `false`
   * at `graceMs`, when whatever is left is cut.
   */
  async begin(server: Server, options: { graceMs: number; delayMs?: number }): Promise<boolean> {
    this.started = true;
    for (const res of this.inFlight) if (!res.headersSent) res.setHeader('connection', 'close');
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), options.graceMs);
    });
    try {
      // an optional pause with /readyz at 503 before the listener closes, so a load
      // balancer's probe sees it before connections are refused
      if (options.delayMs) await Promise.race([new Promise((r) => setTimeout(r, options.delayMs)), graceOver]);
      const closed = new Promise<true>((resolve) => server.close(() => resolve(true)));
      // Node 19+ closes idle keep-alive connections on close(); said here so it does not depend on it
      server.closeIdleConnections();
      const done = await Promise.race([closed, graceOver]);
      if (!done) server.closeAllConnections();
      return done;
    } finally {
      clearTimeout(timer);
    }
  }
}
