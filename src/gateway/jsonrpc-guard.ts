import { deserializeMessage, STDIO_DEFAULT_MAX_BUFFER_SIZE } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/**
 * What the gateway refuses before any message reaches the MCP server (and so before
 * anything is authorized):
 *
 * - JSON-RPC batches. MCP 2025-06-18 removed batching ("Removed support for JSON-RPC
 *   batching", changelog of 2025-06-18); a batch of `tools/call` requests would be
 *   authorized call by call while the answers collide.
 * - A request whose id is already the id of an open request of the same session.
 *   JSON-RPC 2.0 §4 pairs a response with its request by id: two open requests with one
 *   id would both run (each spending a budget unit) while one answer is lost.
 *
 * Both are answered with JSON-RPC 2.0 §5.1 `-32600 Invalid Request`.
 */
export const INVALID_REQUEST = -32600;
export const PARSE_ERROR = -32700;

export const BATCH_REFUSED = 'JSON-RPC batches are not supported (MCP 2025-06-18 removed batching): send one message per request';

export type RequestId = string | number;

export function duplicateIdMessage(id: RequestId): string {
  return `request id \`${String(id).slice(0, 100)}\` is already used by an open request of this session`;
}

export function errorResponse(id: RequestId | null, code: number, message: string) {
  return { jsonrpc: '2.0' as const, id, error: { code, message } };
}

/** The id of a JSON-RPC request (a message with a method and an id), else undefined. */
export function requestIdOf(msg: unknown): RequestId | undefined {
  if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return undefined;
  const m = msg as { method?: unknown; id?: unknown };
  if (typeof m.method !== 'string') return undefined;
  return typeof m.id === 'string' || typeof m.id === 'number' ? m.id : undefined;
}

/** Most requests one session may have open; past this a new one is refused too. */
const MAX_OPEN = 1000;

/**
 * The ids of one session's open requests: added when a request is let through,
 * removed when the server answers it (or the client cancels it).
 */
export class OpenRequests {
  private readonly open = new Set<string>();

  private static key(id: RequestId): string {
    // JSON-RPC ids 1 and "1" are distinct values
    return `${typeof id}:${id}`;
  }

  /** Records `id` as open; false when it is open already (or too many are). */
  add(id: RequestId): boolean {
    const k = OpenRequests.key(id);
    if (this.open.has(k) || this.open.size >= MAX_OPEN) return false;
    this.open.add(k);
    return true;
  }

  delete(id: RequestId): void {
    this.open.delete(OpenRequests.key(id));
  }

  get size(): number {
    return this.open.size;
  }

  /** Forgets ids as the transport sends their answers (and as the client cancels them). */
  track(transport: Transport): void {
    const send = transport.send.bind(transport);
    transport.send = async (message, options) => {
      const m = message as { id?: unknown; result?: unknown; error?: unknown; method?: unknown };
      if (m.method === undefined && (typeof m.id === 'string' || typeof m.id === 'number')) this.delete(m.id);
      return send(message, options);
    };
  }

  /** Forgets the request a `notifications/cancelled` names (MCP basic/utilities/cancellation). */
  noteCancel(msg: unknown): void {
    const m = msg as { method?: unknown; params?: { requestId?: unknown } } | null;
    const id = m?.params?.requestId;
    if (m?.method === 'notifications/cancelled' && (typeof id === 'string' || typeof id === 'number')) this.delete(id);
  }
}

/**
 * Guards a connected transport (stdio): a request reusing an open request's id is
 * answered with an error and never reaches the server.
 */
export function guardRequestIds(transport: Transport): OpenRequests {
  const open = new OpenRequests();
  open.track(transport);
  const deliver = transport.onmessage;
  transport.onmessage = (message: JSONRPCMessage, extra) => {
    open.noteCancel(message);
    const id = requestIdOf(message);
    if (id !== undefined && !open.add(id)) {
      void transport.send(errorResponse(id, INVALID_REQUEST, duplicateIdMessage(id)) as JSONRPCMessage).catch(() => undefined);
      return;
    }
    deliver?.(message, extra);
  };
  return open;
}

/** the SDK's stdio read buffer limit: a line longer than this closes the connection, as the SDK's own buffer does */
const MAX_LINE_BYTES = STDIO_DEFAULT_MAX_BUFFER_SIZE;

/** Whether the first character of `line` that is not JSON whitespace (RFC 8259 §2) is `[`: a batch. */
function isBatchLine(line: string): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
    return c === 0x5b;
  }
  return false;
}

/**
 * A drop-in for the SDK's stdio `ReadBuffer` of a stdio server (MCP stdio transport: one
 * JSON-RPC message per line): a line holding a batch (a JSON array) is answered on
 * `reply` with `-32600` and dropped; every other line is read as the SDK reads it. It
 * sits inside the transport, so the input is not piped through another stream first.
 */
export class BatchRefusingReadBuffer {
  private buffer: Buffer | undefined;

  constructor(private readonly reply: (line: string) => void) {}

  append(chunk: Buffer): void {
    if ((this.buffer?.length ?? 0) + chunk.length > MAX_LINE_BYTES) {
      this.clear();
      throw new Error(`ReadBuffer exceeded maximum size of ${MAX_LINE_BYTES} bytes`);
    }
    this.buffer = this.buffer ? Buffer.concat([this.buffer, chunk]) : chunk;
  }

  readMessage(): JSONRPCMessage | null {
    for (;;) {
      if (!this.buffer) return null;
      const index = this.buffer.indexOf(10);
      if (index === -1) return null;
      const line = this.buffer.toString('utf8', 0, index).replace(/\r$/, '');
      this.buffer = this.buffer.subarray(index + 1);
      if (!isBatchLine(line)) return deserializeMessage(line);
      this.reply(`${JSON.stringify(errorResponse(null, INVALID_REQUEST, BATCH_REFUSED))}\n`);
    }
  }

  clear(): void {
    this.buffer = undefined;
  }
}
