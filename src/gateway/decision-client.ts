import { Pool, type Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'undici/types/header.js';

/**
 * The gateway's kept-alive connections to Writ for its decisions (`POST /v1/authorize`,
 * issue 12 item 6: a decision is the only thing on a call's path to Writ), through undici,
 * the HTTP/1.1 client behind Node's `fetch`, on its low-level API: node:http's client costs
 * more CPU per request than the gateway's whole remaining work on a call, and `fetch` more
 * still. undici frames the answers (RFC 9112: Content-Length, chunked, close-delimited;
 * anything else fails the request and drops its connection), refuses a header value with
 * CR, LF, NUL or a character past U+00FF before anything is written (RFC 9110 §5.5), and
 * reuses a connection no longer than the server's `Keep-Alive: timeout` allows (less a
 * margin), so a request does not race the server closing it.
 *
 * Fails closed: a transport error, a timeout, an answer undici cannot frame or one larger
 * than `maxResponseBytes` rejects that request, and nothing is retried (a decision request
 * is not idempotent; undici re-sends nothing once written). `pipelining: 1`: never two
 * requests on one connection at once; concurrent decisions each get a connection of the
 * pool, at most `connections`.
 */

export interface DecisionClientOptions {
  /** Writ's origin (`http:` or `https:`); the request path carries any base path */
  origin: string;
  /** bounds each wait: connecting, the answer's header after the request is written, and each gap in its body */
  timeoutMs: number;
  /** a larger answer body fails the request as its bytes arrive, before it is all read */
  maxResponseBytes: number;
  /** at most this many connections at once (default 64, as the general client's agent) */
  connections?: number;
}

export interface DecisionResponse {
  status: number;
  /** the body parsed as JSON, or undefined when it is empty or not JSON */
  body: unknown;
  /** the answer's header fields (a `DPoP-Nonce`, RFC 9449 §8, is read from here) */
  headers: { get(name: string): string | null };
}

/** The request's header fields beyond the fixed ones; `undefined` values are left out. */
export interface DecisionHeaders {
  /** a DPoP proof (RFC 9449 §4) when `authorization` is `DPoP …` */
  dpop?: string;
  traceparent?: string;
  tracestate?: string;
}

type RawHeaders = Record<string, string | string[] | undefined>;

function headersOf(raw: RawHeaders): DecisionResponse['headers'] {
  return {
    get(name) {
      const v = raw[name.toLowerCase()];
      return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
    },
  };
}

/**
 * One answer, read whole (undici's handler interface: `onResponseStart`, `onResponseData`,
 * `onResponseEnd`, `onResponseError`). Interim 1xx answers (RFC 9110 §15.2) are passed by;
 * the size limit is the client's (`maxResponseSize`), enforced as the bytes arrive.
 */
class AnswerReader implements Dispatcher.DispatchHandler {
  private status = 0;
  private headers: RawHeaders = {};
  private readonly chunks: Buffer[] = [];

  constructor(
    private readonly resolve: (r: DecisionResponse) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  onRequestStart(): void {}

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return;
    this.status = statusCode;
    this.headers = headers;
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    const c = this.chunks;
    const text = c.length === 0 ? '' : c.length === 1 ? c[0]!.toString('utf8') : Buffer.concat(c).toString('utf8');
    let body: unknown;
    if (text !== '') {
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
    }
    this.resolve({ status: this.status, body, headers: headersOf(this.headers) });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.reject(err);
  }
}

export class DecisionClient {
  private readonly pool: Pool;

  constructor(opts: DecisionClientOptions) {
    // TLS for https: undici's defaults, as node:https's agent for the general client:
    // Node's CA store (and NODE_EXTRA_CA_CERTS), the certificate checked for the URL's host
    this.pool = new Pool(opts.origin, {
      connections: opts.connections ?? 64,
      pipelining: 1,
      connect: { timeout: opts.timeoutMs },
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      maxResponseSize: opts.maxResponseBytes,
    });
  }

  /**
   * POSTs `bodyText` (JSON) to `path` with `authorization` (`Bearer …` or `DPoP …`).
   * Rejects with undici's error (its `code`: `UND_ERR_SOCKET`, `UND_ERR_HEADERS_TIMEOUT`,
   * `UND_ERR_RES_EXCEEDED_MAX_SIZE`, `HPE_*` for an answer it cannot parse,
   * `UND_ERR_INVALID_ARG` for a header value it will not send, a socket's `ECONNREFUSED`…).
   *
   * On undici's `dispatch` with a handler of its own rather than `request()`: the answer
   * is small JSON read whole, and `request()` wraps each one in a Readable body stream
   * (and its consumption) for nothing; the framing, limits and errors are the same
   * client's either way.
   */
  post(path: string, authorization: string, bodyText: string, extra?: DecisionHeaders): Promise<DecisionResponse> {
    const headers: Record<string, string> = { accept: 'application/json', 'content-type': 'application/json', authorization };
    if (extra) {
      if (extra.dpop !== undefined) headers.dpop = extra.dpop;
      if (extra.traceparent !== undefined) headers.traceparent = extra.traceparent;
      if (extra.tracestate !== undefined) headers.tracestate = extra.tracestate;
    }
    return new Promise((resolve, reject) => {
      this.pool.dispatch({ method: 'POST', path, headers, body: bodyText }, new AnswerReader(resolve, reject));
    });
  }

  /** Drops the connections; a request in flight fails (`UND_ERR_DESTROYED`). */
  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
