import { DpopNonceError } from '../tokens/dpop.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidRequestError, PayloadTooLargeError, RateLimitedError, UnsupportedMediaTypeError, WritError } from '../core/errors.js';

export const MAX_BODY_BYTES = 64 * 1024;

const bodies = new WeakMap<IncomingMessage, Promise<Buffer>>();

/**
 * Reads the whole body up to the limit; 413 past it (the rest is not read). A body is
 * read once per request: a second read (the failure limiter looks at the credential in
 * a body before or after the route does) answers the same bytes, or the same error.
 */
export function readBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<Buffer> {
  let body = bodies.get(req);
  if (!body) {
    body = readBodyOnce(req, limit);
    bodies.set(req, body);
  }
  return body;
}

/**
 * Read with the stream's events rather than its async iterator (`for await`), which
 * costs a promise per chunk and one more for the end: about 9 us of CPU per request.
 * The same outcomes: past the limit, 413 (the rest of the body is dropped, the connection
 * kept); a stream error or a close before the end, an error.
 */
function readBodyOnce(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) return Promise.reject(new PayloadTooLargeError(`request body is larger than ${limit} bytes`));
  // Already all here (a small body comes in the headers' packet: node:http pushed every
  // chunk and the end before the handler ran): taken from the stream's buffer at once,
  // no listeners, no waiting for `end`.
  if (req.complete && req.readableFlowing !== true && !req.readableEnded && !req.destroyed) {
    const body = (req.read() as Buffer | null) ?? Buffer.alloc(0);
    if (body.length > limit) return Promise.reject(new PayloadTooLargeError(`request body is larger than ${limit} bytes`));
    return Promise.resolve(body);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // the rest flows to no listener: dropped, so the connection can still carry the 413
        done();
        reject(new PayloadTooLargeError(`request body is larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      done();
      reject(err);
    };
    const onClose = () => {
      done();
      reject(Object.assign(new Error('the request closed before its body ended'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** A JSON body (RFC 8259); an empty body reads as `{}` where `emptyOk`. */
export async function readJson(req: IncomingMessage, emptyOk = false): Promise<unknown> {
  const len = req.headers['content-length'];
  const hasBody = (len !== undefined && len !== '0') || req.headers['transfer-encoding'] !== undefined;
  if (!hasBody && emptyOk) return {};
  if (mediaType(req) !== 'application/json') throw new UnsupportedMediaTypeError('the body must be `application/json`');
  const body = await readBody(req);
  if (body.length === 0 && emptyOk) return {};
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new InvalidRequestError('the body is not valid JSON', undefined, 'invalid_json');
  }
}

/** A form body (`application/x-www-form-urlencoded`, RFC 6749 §4.4.2); repeated keys are refused. */
export async function readForm(req: IncomingMessage): Promise<Record<string, string>> {
  if (mediaType(req) !== 'application/x-www-form-urlencoded') {
    throw new UnsupportedMediaTypeError('the body must be `application/x-www-form-urlencoded`');
  }
  const body = await readBody(req);
  const params = new URLSearchParams(body.toString('utf8'));
  const out: Record<string, string> = {};
  for (const [k, v] of params) {
    if (k in out) throw new InvalidRequestError(`parameter \`${k}\` is repeated`);
    out[k] = v;
  }
  return out;
}

export function bearer(req: IncomingMessage): string | null {
  const h = req.headers.authorization;
  if (!h) return null;
  const m = /^Bearer +([\x21-\x7e]+)\s*$/i.exec(h);
  return m ? m[1]! : null;
}

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};

const JWT_LIKE = /eyJ[\w-]*\.[\w-]*\.?[\w-]*/g;

/** Error messages may echo client input (a path, a field name); a token in it is never sent back. */
export function redactTokens(text: string): string {
  return text.replace(JWT_LIKE, '[redacted]');
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...SECURITY_HEADERS, ...headers });
  res.end(text);
}

/**
 * Maps an error to its response. WritErrors show their code and (for client faults)
 * their message; anything else is a 500 with no detail: never a stack trace, never a
 * token. OAuth endpoints use the RFC 6749 §5.2 shape.
 */
export function sendError(res: ServerResponse, err: unknown, oauth = false, log: (e: unknown) => void = () => undefined): void {
  let e: WritError;
  if (err instanceof WritError) e = err;
  else {
    log(err);
    e = new WritError('internal_error', 'internal error', 500, { expose: false });
  }
  if (e.status >= 500 && !(err instanceof WritError && err.expose)) log(err);
  const message = redactTokens(e.expose ? e.message : e.status === 503 ? 'the service is unavailable' : 'internal error');
  const headers: Record<string, string> = {};
  if (e.status === 401) headers['www-authenticate'] = oauth ? 'Basic realm="writ"' : `Bearer realm="writ", error="${e.code === 'token_expired' ? 'invalid_token' : 'invalid_token'}"`;
  // RFC 9449 §7.1 and §8: a proof problem is answered in the DPoP scheme, with a fresh nonce when one is needed
  if (e instanceof DpopNonceError) headers['dpop-nonce'] = e.nonce;
  if (e.status === 401 && (e.code === 'invalid_dpop_proof' || e.code === 'use_dpop_nonce')) headers['www-authenticate'] = `DPoP error="${e.code}", algs="EdDSA ES256"`;
  if (e.status === 503) headers['retry-after'] = '1';
  if (e.status === 429) headers['retry-after'] = String(e instanceof RateLimitedError ? e.retryAfterSeconds : 10);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (oauth) {
    sendJson(res, e.status, { error: e.code, error_description: message }, headers);
    return;
  }
  const body: Record<string, unknown> = { code: e.code, message };
  if (e.expose && e.details !== undefined) body.details = JSON.parse(redactTokens(JSON.stringify(e.details)));
  sendJson(res, e.status, { error: body }, headers);
}
