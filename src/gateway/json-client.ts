import http from 'node:http';
import https from 'node:https';

/**
 * A small JSON-over-HTTP client on node:http with keep-alive: the gateway calls Writ
 * on every tool call, and `fetch` costs more per request than the decision itself.
 * Never follows redirects (a bearer token must not travel anywhere else).
 */
export class JsonClient {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly mod: typeof http | typeof https;

  constructor(
    baseUrl: string,
    private readonly timeoutMs = 10_000,
  ) {
    this.base = new URL(baseUrl.replace(/\/+$/, '') + '/');
    const https_ = this.base.protocol === 'https:';
    this.mod = https_ ? https : http;
    this.agent = https_ ? new https.Agent({ keepAlive: true, maxSockets: 64 }) : new http.Agent({ keepAlive: true, maxSockets: 64 });
  }

  get url(): string {
    return this.base.href.replace(/\/$/, '');
  }

  request(method: string, path: string, opts: { token?: string; json?: unknown; timeoutMs?: number } = {}): Promise<{ status: number; body: any }> {
    const url = new URL(path.replace(/^\//, ''), this.base);
    const headers: Record<string, string> = { accept: 'application/json' };
    let payload: Buffer | undefined;
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (opts.json !== undefined) {
      payload = Buffer.from(JSON.stringify(opts.json));
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const timeout = opts.timeoutMs ?? this.timeoutMs;
    return new Promise((resolve, reject) => {
      const req = this.mod.request(url, { method, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > 4 << 20) {
            req.destroy(new Error('response too large'));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = undefined;
          try {
            body = text === '' ? undefined : JSON.parse(text);
          } catch {
            body = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
      });
      const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no answer within ${timeout} ms`), { code: 'ETIMEDOUT' })), timeout);
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
