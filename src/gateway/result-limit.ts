import { JSONRPCMessageSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/**
 * The size limit on what one call to an upstream may answer (`max_result_bytes`).
 *
 * The gateway holds one connection per upstream, shared by every agent's calls. The MCP
 * SDK's own guard on a stdio connection (a 10 MiB read buffer) closes the whole
 * connection when one answer is larger, failing every other call in flight, some after
 * the upstream has already acted on them. Here an answer over the limit is dropped on
 * its own: its bytes are skipped up to the end of its line (stdio) or its HTTP response,
 * and the call it answers gets a JSON-RPC error marked `result_too_large` instead; the
 * connection and every other call carry on.
 */

/** JSON-RPC 2.0 §5.1 implementation-defined server error; `data.writ` says which. */
export const RESULT_TOO_LARGE_CODE = -32000;
export const RESULT_TOO_LARGE = 'result_too_large';

export class ResultTooLargeError extends Error {
  constructor(
    readonly upstream: string,
    readonly maxBytes: number,
  ) {
    super(`upstream \`${upstream}\` answered more than ${maxBytes} bytes (max_result_bytes); the result was dropped`);
    this.name = 'ResultTooLargeError';
  }
}

export function isResultTooLarge(err: unknown): boolean {
  const data = (err as { data?: { writ?: unknown } } | null)?.data;
  return !!data && data.writ === RESULT_TOO_LARGE;
}

function tooLargeResponse(id: string | number, maxBytes: number, bytes: number): JSONRPCMessage {
  return {
    jsonrpc: '2.0',
    id,
    error: { code: RESULT_TOO_LARGE_CODE, message: `the result is larger than ${maxBytes} bytes`, data: { writ: RESULT_TOO_LARGE, max_bytes: maxBytes, bytes } },
  } as JSONRPCMessage;
}

const ID_AT_END = /"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")\s*\}\s*$/;
const ID_AT_START = /^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")/;

/**
 * The id of a JSON-RPC response from the first and last bytes of its line: the top-level
 * `id` is the last member (the MCP SDKs write `{"result":…,"jsonrpc":"2.0","id":N}`) or
 * the first (after `jsonrpc`). Null when neither shows it: the call then times out.
 */
export function responseIdOf(head: string, tail: string): string | number | null {
  const m = ID_AT_END.exec(tail) ?? ID_AT_START.exec(head);
  if (!m) return null;
  try {
    const v = JSON.parse(m[1]!) as unknown;
    return typeof v === 'number' || typeof v === 'string' ? v : null;
  } catch {
    return null;
  }
}

const KEEP = 512;

/**
 * A drop-in for the SDK's stdio `ReadBuffer` (one JSON-RPC message per line) that never
 * holds more than `maxBytes` of one line: a longer line is skipped to its end and
 * replaced by an error answer to the request it answered.
 */
export class LimitedReadBuffer {
  private parts: Buffer[] = [];
  private size = 0;
  private skipping = false;
  private head = '';
  private tail: Buffer = Buffer.alloc(0);
  private skipped = 0;
  private readonly ready: (string | JSONRPCMessage)[] = [];

  constructor(
    private readonly maxBytes: number,
    private readonly onDropped?: (info: { id: string | number | null; bytes: number }) => void,
  ) {}

  append(chunk: Buffer): void {
    let start = 0;
    while (start <= chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl < 0 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (this.skipping) {
        this.skipped += piece.length;
        this.tail = Buffer.concat([this.tail, piece]).subarray(-KEEP);
      } else if (this.size + piece.length > this.maxBytes) {
        const all = Buffer.concat([...this.parts, piece.subarray(0, KEEP)]);
        this.head = all.subarray(0, KEEP).toString('utf8');
        this.tail = piece.subarray(-KEEP);
        this.skipped = this.size + piece.length;
        this.skipping = true;
        this.parts = [];
        this.size = 0;
      } else if (piece.length > 0) {
        this.parts.push(piece);
        this.size += piece.length;
      }
      if (nl < 0) break;
      if (this.skipping) {
        const id = responseIdOf(this.head, this.tail.toString('utf8'));
        this.onDropped?.({ id, bytes: this.skipped });
        if (id !== null) this.ready.push(tooLargeResponse(id, this.maxBytes, this.skipped));
        this.skipping = false;
        this.head = '';
        this.tail = Buffer.alloc(0);
        this.skipped = 0;
      } else {
        this.ready.push(Buffer.concat(this.parts).toString('utf8'));
        this.parts = [];
        this.size = 0;
      }
      start = nl + 1;
    }
  }

  readMessage(): JSONRPCMessage | null {
    for (;;) {
      const next = this.ready.shift();
      if (next === undefined) return null;
      if (typeof next !== 'string') return next;
      const line = next.replace(/\r$/, '');
      if (line.trim() === '') continue;
      return JSONRPCMessageSchema.parse(JSON.parse(line));
    }
  }

  clear(): void {
    this.parts = [];
    this.size = 0;
    this.skipping = false;
    this.ready.length = 0;
  }
}

/**
 * A `fetch` for the streamable HTTP client transport that reads the answer to a POST
 * (one request per POST: the answer to one call) whole, up to `maxBytes`; a longer one is
 * cancelled and replaced by an error answer to that request. GET streams (server
 * notifications) pass through unchanged.
 */
export function limitedFetch(maxBytes: number, onDropped?: (info: { id: string | number | null; bytes: number }) => void, base: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const res = await base(input, init);
    if ((init?.method ?? 'GET').toUpperCase() !== 'POST' || !res.body || res.status === 204 || res.status === 205 || res.status === 304) return res;
    const length = res.headers.get('content-length');
    const declared = Number(length);
    // An answer whose length is declared within the limit, not chunked and not compressed,
    // passes as it is (no second copy of the body): HTTP/1.1 delimits such a body by its
    // Content-Length (RFC 9112 §6.3), so the client reads no more than that. A chunked
    // one is delimited by its chunks (Transfer-Encoding overrides Content-Length, same
    // section) and a compressed one could inflate past it: those are counted as they come.
    const encoding = res.headers.get('content-encoding');
    const passes =
      length !== null &&
      /^\d+$/.test(length) &&
      declared <= maxBytes &&
      res.headers.get('transfer-encoding') === null &&
      (encoding === null || encoding.trim().toLowerCase() === 'identity');
    if (passes) return res;
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    let over = declared > maxBytes;
    while (!over) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) over = true;
      else chunks.push(value);
    }
    if (over) {
      await reader.cancel().catch(() => undefined);
      // the request this answers, read only now: one JSON-RPC request per POST
      let id: string | number | null = null;
      try {
        const sent = JSON.parse(typeof init?.body === 'string' ? init.body : '') as { id?: unknown };
        if (typeof sent.id === 'number' || typeof sent.id === 'string') id = sent.id;
      } catch {
        // not one JSON-RPC request: no answer to replace
      }
      onDropped?.({ id, bytes: Math.max(size, declared || 0) });
      if (id === null) throw new Error(`the answer is larger than ${maxBytes} bytes`);
      const body = JSON.stringify(tooLargeResponse(id, maxBytes, Math.max(size, declared || 0)));
      return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
    }
    const headers = new Headers(res.headers);
    headers.delete('content-length');
    headers.delete('content-encoding');
    return new Response(Buffer.concat(chunks), { status: res.status, statusText: res.statusText, headers });
  };
}
