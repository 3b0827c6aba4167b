import { connect, type Socket } from 'node:net';

/**
 * One kept-alive HTTP/1.1 connection to Writ (plain `http:` only), on which the gateway
 * asks for its decisions (issue 12 item 6: a decision is the only thing on a call's path
 * to Writ). node:http's client costs more CPU per request than the gateway's whole
 * remaining work on a call (a ClientRequest, the agent's socket bookkeeping, a parser and
 * an IncomingMessage stream per request, the request written a tick later): here a
 * request is one socket write of a header block built from a fixed prefix, and an answer
 * is read from the bytes as they come.
 *
 * One request at a time: `post` answers null when the connection is busy, still
 * connecting or unusable, and the caller sends that request through its general client.
 * Anything unexpected fails the request it belongs to and drops the connection (never a
 * retry: a decision request is not idempotent); the next request opens a new one.
 *
 * The answer is read as RFC 9112 frames it: a status line, header fields, then a body
 * delimited by Content-Length (§6.3) or chunked (§7.1); an answer framed any other way,
 * or larger than `maxResponseBytes`, fails. Before a request goes out on a connection
 * idle for longer than the server said it keeps one (`Keep-Alive: timeout`, RFC 2068
 * §19.7.1.1, as node:http's agent reads it; else 4 s), the connection is replaced, so a
 * request never races the server closing it.
 */

export interface WritConnectionOptions {
  host: string;
  port: number;
  /** the `Host` header: the authority of Writ's URL */
  authority: string;
  timeoutMs: number;
  maxResponseBytes: number;
}

export interface LeanResponse {
  status: number;
  /** the body parsed as JSON, or undefined when it is empty or not JSON */
  body: unknown;
}

/** What a request failed with: a transport error (the socket's code) or a malformed answer. */
export class ConnectionError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'ConnectionError';
  }
}

/** RFC 9110 §5.5 field-value characters without CR, LF and NUL: what a header value may be here */
const SAFE_VALUE = /^[\x20-\x7e\t]*$/;
/** RFC 6750 §2.1 b64token characters (a task token is a JWS: base64url and dots) */
const TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const DEFAULT_IDLE_MS = 4000;
const CRLF2 = Buffer.from('\r\n\r\n');

interface InFlight {
  ok: (r: LeanResponse) => void;
  fail: (err: Error) => void;
}

export class WritConnection {
  private socket: Socket | null = null;
  private connecting = false;
  private inFlight: InFlight | null = null;
  /** bytes of the answer read so far */
  private parts: Buffer[] = [];
  private size = 0;
  private lastUsed = 0;
  private idleMs = DEFAULT_IDLE_MS;
  private closed = false;
  private readonly timer: NodeJS.Timeout;
  /** the last token checked against TOKEN (the same token comes with every call of a task) */
  private checkedToken: string | null = null;

  constructor(private readonly opts: WritConnectionOptions) {
    // one timer for the connection, re-armed (`refresh`) as each request goes out instead
    // of one created per request; when it fires with nothing in flight, it does nothing
    this.timer = setTimeout(() => this.timedOut(), opts.timeoutMs);
    this.timer.unref();
  }

  /**
   * POSTs `bodyText` (JSON) to `path` with the bearer `token` and optional extra headers.
   * Null: not sent (busy, connecting, closed, or a value that cannot go in a header here);
   * send it another way. Rejects with ConnectionError once sent and not answered.
   */
  post(path: string, token: string, bodyText: string, headers?: Record<string, string | undefined>): Promise<LeanResponse> | null {
    if (this.closed || this.inFlight || this.connecting) return null;
    if (token !== this.checkedToken) {
      if (!TOKEN.test(token)) return null;
      this.checkedToken = token;
    }
    let extra = '';
    if (headers) {
      for (const [k, v] of Object.entries(headers)) {
        if (v === undefined) continue;
        if (!SAFE_VALUE.test(v)) return null;
        extra += `${k}: ${v}\r\n`;
      }
    }
    const now = Date.now();
    if (this.socket && now - this.lastUsed > this.idleMs) this.drop();
    if (!this.socket) {
      this.open();
      return null;
    }
    const socket = this.socket;
    const p = new Promise<LeanResponse>((ok, fail) => (this.inFlight = { ok, fail }));
    this.parts = [];
    this.size = 0;
    this.timer.refresh();
    socket.write(
      `POST ${path} HTTP/1.1\r\nhost: ${this.opts.authority}\r\naccept: application/json\r\ncontent-type: application/json\r\nauthorization: Bearer ${token}\r\n${extra}content-length: ${Buffer.byteLength(bodyText)}\r\n\r\n${bodyText}`,
    );
    return p;
  }

  /** Opens the connection in the background; requests go elsewhere until it is up. */
  private open(): void {
    this.connecting = true;
    this.idleMs = DEFAULT_IDLE_MS;
    const socket = connect({ host: this.opts.host, port: this.opts.port, noDelay: true });
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.socket === socket) this.socket = null;
      this.connecting = false;
      this.settle(new ConnectionError('Writ closed the connection', 'ECONNRESET'));
    });
    socket.once('connect', () => {
      this.connecting = false;
      if (this.closed) return void socket.destroy();
      this.socket = socket;
      this.lastUsed = Date.now();
    });
  }

  private drop(): void {
    const s = this.socket;
    this.socket = null;
    s?.destroy();
  }

  private settle(err: Error | null, r?: LeanResponse): void {
    const f = this.inFlight;
    if (!f) return;
    this.inFlight = null;
    this.parts = [];
    this.size = 0;
    if (err) f.fail(err);
    else f.ok(r!);
  }

  private fail(socket: Socket, message: string, code: string): void {
    if (this.socket === socket) this.socket = null;
    socket.destroy();
    this.settle(new ConnectionError(message, code));
  }

  private timedOut(): void {
    if (!this.inFlight || !this.socket) return;
    this.fail(this.socket, `no answer within ${this.opts.timeoutMs} ms`, 'ETIMEDOUT');
  }

  private onData(socket: Socket, chunk: Buffer): void {
    if (socket !== this.socket || !this.inFlight) {
      // nothing was asked on it: whatever this is, the connection is not to be trusted
      if (socket === this.socket) this.socket = null;
      socket.destroy();
      return;
    }
    this.size += chunk.length;
    if (this.size > this.opts.maxResponseBytes) return this.fail(socket, 'response too large', 'ERESPONSETOOLARGE');
    this.parts.push(chunk);
    const buf = this.parts.length === 1 ? chunk : Buffer.concat(this.parts);
    if (this.parts.length > 1) this.parts = [buf];
    let parsed;
    try {
      parsed = parseResponse(buf);
    } catch (err) {
      return this.fail(socket, (err as Error).message, 'EBADRESPONSE');
    }
    if (!parsed) return;
    if (parsed.rest > 0) return this.fail(socket, 'Writ answered more than one response', 'EBADRESPONSE');
    if (parsed.close) {
      this.socket = null;
      socket.end();
    } else {
      this.lastUsed = Date.now();
      if (parsed.keepAliveMs !== null) this.idleMs = Math.max(0, parsed.keepAliveMs - 1000);
    }
    let body: unknown;
    if (parsed.body.length > 0) {
      try {
        body = JSON.parse(parsed.body.toString('utf8'));
      } catch {
        body = undefined;
      }
    }
    this.settle(null, { status: parsed.status, body });
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.drop();
    this.settle(new ConnectionError('the gateway is closing', 'ECONNABORTED'));
  }
}

interface Parsed {
  status: number;
  body: Buffer;
  close: boolean;
  /** the server's `Keep-Alive: timeout`, in ms; null when it gave none */
  keepAliveMs: number | null;
  /** bytes past the end of this response */
  rest: number;
}

/** One HTTP/1.1 response from the start of `buf`: null while incomplete; throws on a malformed one. */
export function parseResponse(buf: Buffer): Parsed | null {
  const end = buf.indexOf(CRLF2);
  if (end < 0) {
    if (buf.length > 64 * 1024) throw new Error('the response header is too large');
    return null;
  }
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0]!);
  if (!m) throw new Error('not an HTTP/1.1 response');
  const status = Number(m[1]);
  let length: number | null = null;
  let chunked = false;
  let close = lines[0]!.startsWith('HTTP/1.0');
  let keepAliveMs: number | null = null;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error('a malformed header field');
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length') {
      if (!/^\d{1,15}$/.test(value) || (length !== null && length !== Number(value))) throw new Error('a malformed Content-Length');
      length = Number(value);
    } else if (name === 'transfer-encoding') {
      // only `chunked` alone is read; any other coding cannot be framed here (RFC 9112 §6.3)
      if (value.toLowerCase() !== 'chunked' || chunked) throw new Error(`an unsupported Transfer-Encoding \`${value.slice(0, 40)}\``);
      chunked = true;
    } else if (name === 'connection') {
      const tokens = value.toLowerCase().split(',').map((t) => t.trim());
      if (tokens.includes('close')) close = true;
      else if (tokens.includes('keep-alive')) close = false;
    } else if (name === 'keep-alive') {
      const t = /(?:^|,)\s*timeout=(\d+)/i.exec(value);
      if (t) keepAliveMs = Number(t[1]) * 1000;
    }
  }
  const start = end + 4;
  // a response to a POST without a body (RFC 9112 §6.3 item 1)
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
    if (status < 200) throw new Error('an interim response');
    return { status, body: Buffer.alloc(0), close, keepAliveMs, rest: buf.length - start };
  }
  if (chunked) {
    // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 item 3)
    const out: Buffer[] = [];
    let at = start;
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', at);
      if (lineEnd < 0) return null;
      const sizeText = buf.toString('latin1', at, lineEnd).split(';')[0]!.trim();
      if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new Error('a malformed chunk size');
      const size = parseInt(sizeText, 16);
      if (size === 0) {
        // no trailer fields expected: the last chunk is followed by an empty line
        if (buf.length < lineEnd + 4) return null;
        if (buf[lineEnd + 2] !== 13 || buf[lineEnd + 3] !== 10) throw new Error('trailer fields are not read here');
        return { status, body: Buffer.concat(out), close, keepAliveMs, rest: buf.length - (lineEnd + 4) };
      }
      if (buf.length < lineEnd + 2 + size + 2) return null;
      out.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
      if (buf[lineEnd + 2 + size] !== 13 || buf[lineEnd + 3 + size] !== 10) throw new Error('a malformed chunk');
      at = lineEnd + 4 + size;
    }
  }
  if (length === null) throw new Error('a response without Content-Length');
  if (buf.length < start + length) return null;
  return { status, body: buf.subarray(start, start + length), close, keepAliveMs, rest: buf.length - start - length };
}
