import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PayloadTooLargeError } from '../src/core/errors.js';
import { readBody } from '../src/server/http-io.js';

/**
 * `readBody` (src/server/http-io.ts) takes a body that is all there when asked from the
 * stream's buffer at once, and otherwise listens for it. Both ways must answer the same
 * bytes, the same 413 past the limit, and a body read twice must answer the same value.
 */
describe('readBody: a body already here and a body still arriving', () => {
  let server: Server;
  let port: number;
  const seen: { complete: boolean; body: string | null; again: boolean; error: string | null }[] = [];
  /** called when the handler has asked for the body (a gated sender sends the rest only then) */
  let asked: (() => void) | null = null;
  before(async () => {
    server = createServer((req: IncomingMessage, res) => setImmediate(() => {
      // asked a moment after the headers, as a route asks after authenticating
      const complete = req.complete;
      asked?.();
      const limit = Number(req.headers['x-limit'] ?? 65536);
      readBody(req, limit).then(
        async (b) => {
          const again = (await readBody(req, limit)) === b;
          seen.push({ complete, body: b.toString('utf8'), again, error: null });
          res.end('ok');
        },
        (err: unknown) => {
          seen.push({ complete, body: null, again: false, error: err instanceof PayloadTooLargeError ? 'too_large' : String(err) });
          res.statusCode = 413;
          res.end('no');
          req.resume();
        },
      );
    }));
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((ok) => {
    server.closeAllConnections();
    server.close(() => ok());
  }));

  /**
   * Sends `parts` (chunked unless a length is given). `gated`: only the first part before
   * the handler asks for the body, the rest after it asked (an event, not a pause: the
   * body is then surely still arriving when asked, however slow the machine).
   */
  const send = (parts: string[], headers: Record<string, string> = {}, gated = false) =>
    new Promise<number>((resolve, reject) => {
      const handlerAsked = new Promise<void>((ok) => (asked = ok));
      const req = request({ port, method: 'POST', path: '/', headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      void (async () => {
        for (const [i, p] of parts.entries()) {
          req.write(p);
          if (gated && i === 0) await handlerAsked;
        }
        req.end();
      })();
    });

  it('a body sent at once is read from the buffer, the same bytes, twice the same value', async () => {
    seen.length = 0;
    const text = JSON.stringify({ a: 'ünïcødé', n: 1 });
    assert.equal(await send([text], { 'content-length': String(Buffer.byteLength(text)) }), 200);
    assert.deepEqual(seen, [{ complete: true, body: text, again: true, error: null }]);
  });

  it('an empty body reads as empty, with or without content-length', async () => {
    seen.length = 0;
    assert.equal(await send([], { 'content-length': '0' }), 200);
    assert.equal(seen[0]!.body, '');
  });

  it('a body still arriving when asked is listened for, and read whole', async () => {
    seen.length = 0;
    assert.equal(await send(['{"a":', '"b"', '}'], {}, true), 200);
    assert.equal(seen[0]!.complete, false);
    assert.equal(seen[0]!.body, '{"a":"b"}');
    assert.equal(seen[0]!.again, true);
  });

  it('past the limit: 413 whether the body was all here or still arriving', async () => {
    seen.length = 0;
    // chunked (no declared length), all at once: over the limit in the buffer
    assert.equal(await send(['x'.repeat(200)], { 'x-limit': '100' }), 413);
    // chunked, arriving in parts
    assert.equal(await send(['x'.repeat(60), 'x'.repeat(60)], { 'x-limit': '100' }, true), 413);
    // exactly at the limit is fine
    assert.equal(await send(['x'.repeat(100)], { 'x-limit': '100' }), 200);
    assert.deepEqual(seen.map((s) => s.error ?? s.body?.length), ['too_large', 'too_large', 100]);
  });
});
