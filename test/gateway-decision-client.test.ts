import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { DecisionClient } from '../src/gateway/decision-client.js';
import { AuthorizerError, HttpAuthorizer } from '../src/gateway/authorizer.js';
import { runChild } from './helpers/child.js';

/**
 * The gateway's connections for its decisions (src/gateway/decision-client.ts, on undici):
 * framing is undici's; what is asserted here is ours. Every failure (transport, timeout, an
 * answer undici cannot frame, an oversized one) fails that request, which is never sent
 * twice; a header value that could split the request is never written; connections are kept
 * alive and reused one request at a time; and HttpAuthorizer fails closed on all of it.
 * No fixed waits: each step waits on the event it needs.
 */

const TOKEN = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln';

interface Seen {
  /** which connection it came on (1 = the first the server accepted) */
  conn: number;
  head: string;
  headers: Record<string, string>;
  body: string;
}

/** A TCP server reading HTTP/1.1 requests (Content-Length bodies) and answering each with what `answer` writes. */
async function server(answer: (socket: Socket, req: Seen) => void) {
  const requests: Seen[] = [];
  let connections = 0;
  const sockets = new Set<Socket>();
  const srv: Server = createServer((socket) => {
    const conn = ++connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let text = '';
    socket.on('data', (d) => {
      text += d.toString('latin1');
      for (;;) {
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = text.slice(0, end).split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
        const len = Number(headers['content-length'] ?? 0);
        if (text.length < end + 4 + len) return;
        const req = { conn, head: lines[0]!, headers, body: text.slice(end + 4, end + 4 + len) };
        text = text.slice(end + 4 + len);
        requests.push(req);
        answer(socket, req);
      }
    });
  });
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  const port = (srv.address() as AddressInfo).port;
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    requests,
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((ok) => srv.close(() => ok()));
    },
  };
}

const json = (socket: Socket, body: unknown, extra = '') => {
  const text = JSON.stringify(body);
  socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n${extra}\r\n${text}`);
};

const codeOf = (err: unknown) => (err as { code?: string }).code;

describe('DecisionClient (undici)', () => {
  it('keeps one connection alive across sequential decisions, and sends the request as asked', async () => {
    const s = await server((socket, req) => json(socket, { n: req.body }, 'keep-alive: timeout=30\r\n'));
    // one connection: the pool would open a second for a request sent before undici frees the
    // first (it waits a turn of the event loop after each answer)
    const c = new DecisionClient({ origin: s.origin, timeoutMs: 2000, maxResponseBytes: 1 << 20, connections: 1 });
    try {
      const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
      const first = await c.post('/base/v1/authorize', `Bearer ${TOKEN}`, '{"tool":"x"}', { traceparent: tp, tracestate: undefined });
      assert.equal(first.status, 200);
      assert.deepEqual(first.body, { n: '{"tool":"x"}' });
      assert.equal(first.headers.get('Content-Type'), 'application/json');
      assert.equal(first.headers.get('dpop-nonce'), null);
      for (let i = 0; i < 4; i++) assert.deepEqual((await c.post('/v1/authorize', `Bearer ${TOKEN}`, `{"n":${i}}`)).body, { n: `{"n":${i}}` });
      assert.equal(s.connections(), 1);
      const r = s.requests[0]!;
      assert.equal(r.head, 'POST /base/v1/authorize HTTP/1.1');
      assert.equal(r.headers.host, `127.0.0.1:${s.port}`);
      assert.equal(r.headers.authorization, `Bearer ${TOKEN}`);
      assert.equal(r.headers['content-type'], 'application/json');
      assert.equal(r.headers.accept, 'application/json');
      assert.equal(r.headers.traceparent, tp);
      assert.equal(r.headers.tracestate, undefined);
      assert.equal(r.headers['content-length'], '12');
      assert.equal(r.headers['transfer-encoding'], undefined);
      assert.equal(r.body, '{"tool":"x"}');
    } finally {
      await c.close();
      await s.close();
    }
  });

  it('reads the final answer past interim 1xx ones, whole when its body comes in parts: status, header fields and body are the final answer\'s', async () => {
    const s = await server((socket, req) => {
      if (req.body === '"interim"') {
        // RFC 9110 §15.2: 1xx answers before the final one, with fields of their own (a 100
        // Continue to a request that did not ask for one fails it instead: `interim 100 only` below)
        socket.write('HTTP/1.1 103 Early Hints\r\ndpop-nonce: from-interim\r\nlink: </x>\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n');
        return json(socket, { final: true }, 'dpop-nonce: from-final\r\n');
      }
      // chunked (RFC 9112 §7.1), the JSON split inside a string and across writes
      socket.write('HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
      socket.write('9\r\n{"error":\r\n');
      socket.write('c\r\n{"code":"inv\r\n');
      socket.write('b\r\nalid_token"\r\n2\r\n}}\r\n0\r\n\r\n');
    });
    const c = new DecisionClient({ origin: s.origin, timeoutMs: 2000, maxResponseBytes: 1 << 20, connections: 1 });
    try {
      const a = await c.post('/v1/authorize', `Bearer ${TOKEN}`, '"interim"');
      assert.equal(a.status, 200);
      assert.deepEqual(a.body, { final: true });
      assert.equal(a.headers.get('DPoP-Nonce'), 'from-final');
      assert.equal(a.headers.get('link'), null);
      const b = await c.post('/v1/authorize', `Bearer ${TOKEN}`, '"parts"');
      assert.equal(b.status, 401);
      assert.deepEqual(b.body, { error: { code: 'invalid_token' } });
      assert.equal(b.headers.get('dpop-nonce'), null);
      assert.equal(s.connections(), 1);
    } finally {
      await c.close();
      await s.close();
    }
  });

  it('never puts two requests on one connection at once: concurrent decisions each get their own', async () => {
    const held: { socket: Socket; req: Seen }[] = [];
    // answered only once both have arrived: with pipelining, the second would wait behind the first forever
    const s = await server((socket, req) => {
      held.push({ socket, req });
      if (held.length === 2) for (const h of held.splice(0)) json(h.socket, { conn: h.req.conn });
    });
    const c = new DecisionClient({ origin: s.origin, timeoutMs: 5000, maxResponseBytes: 1 << 20 });
    try {
      const [a, b] = await Promise.all([c.post('/v1/authorize', `Bearer ${TOKEN}`, '{}'), c.post('/v1/authorize', `Bearer ${TOKEN}`, '{}')]);
      assert.deepEqual(new Set([(a.body as { conn: number }).conn, (b.body as { conn: number }).conn]), new Set([1, 2]));
      assert.equal(s.connections(), 2);
    } finally {
      await c.close();
      await s.close();
    }
  });

  it('never writes a token or header value that could split the request: refused before anything is sent', async () => {
    const s = await server((socket) => json(socket, {}));
    const c = new DecisionClient({ origin: s.origin, timeoutMs: 2000, maxResponseBytes: 1 << 20 });
    try {
      for (const bad of ['\r\nx-admin: 1', '\nx-admin: 1', '\rx', '\u0000', '\u2028', '\u0130']) {
        await assert.rejects(c.post('/v1/authorize', `Bearer ${TOKEN}${bad}`, '{}'), (e) => codeOf(e) === 'UND_ERR_INVALID_ARG', JSON.stringify(bad));
        await assert.rejects(c.post('/v1/authorize', `Bearer ${TOKEN}`, '{}', { traceparent: `00-a${bad}` }), (e) => codeOf(e) === 'UND_ERR_INVALID_ARG', JSON.stringify(bad));
        await assert.rejects(c.post('/v1/authorize', `DPoP ${TOKEN}`, '{}', { dpop: `p${bad}`, tracestate: 'a=b' }), (e) => codeOf(e) === 'UND_ERR_INVALID_ARG', JSON.stringify(bad));
      }
      assert.equal(s.requests.length, 0);
      assert.equal(s.connections(), 0);
      assert.equal((await c.post('/v1/authorize', `Bearer ${TOKEN}`, '{}')).status, 200);
      assert.equal(s.requests.length, 1);
    } finally {
      await c.close();
      await s.close();
    }
  });

  it('fails the request, never sends it twice, and drops the connection on a malformed, oversized or doubled answer, a close and a timeout; the next request gets its own answer on a new connection', async () => {
    let mode = '';
    const s = await server((socket) => {
      switch (mode) {
        case 'no status code':
          return void socket.write('HTTP/1.1 abc\r\ncontent-length: 2\r\n\r\n{}');
        case 'not HTTP/1.x':
          return void socket.write('HTTP/2 200\r\ncontent-length: 2\r\n\r\n{}');
        case 'not HTTP':
          return void socket.write('SMTP 200 OK\r\ncontent-length: 2\r\n\r\n{}');
        case 'malformed Content-Length':
          return void socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1e1\r\n\r\n{}');
        case 'conflicting Content-Length':
          return void socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}');
        case 'bad chunk':
          return void socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n');
        case 'header field without a colon':
          return void socket.write('HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 2\r\n\r\n{}');
        case 'interim 100 only':
          return void socket.write('HTTP/1.1 100 Continue\r\n\r\n');
        case 'oversized (Content-Length)':
          return void socket.write(`HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n${'x'.repeat(5000)}`);
        case 'oversized (chunked, never ending)':
          // past the limit, and never finished: failing as the bytes come, not at the end (which never comes)
          return void socket.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n258\r\n${'x'.repeat(600)}\r\n258\r\n${'x'.repeat(600)}\r\n`);
        case 'closed':
          return void socket.destroy();
        case 'closed mid-body':
          socket.write('HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{"decision":');
          return void socket.destroy();
        case 'silent':
          return;
        case 'stalled body':
          return void socket.write('HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{"decision":');
        default:
          json(socket, { ok: true });
      }
    });
    // the generous timeout shows the failures come from the answer, not a timer; the short one times out
    const c = new DecisionClient({ origin: s.origin, timeoutMs: 10_000, maxResponseBytes: 1000, connections: 1 });
    const quick = new DecisionClient({ origin: s.origin, timeoutMs: 300, maxResponseBytes: 1000, connections: 1 });
    try {
      const cases: [string, DecisionClient, RegExp][] = [
        ['no status code', c, /^HTTPParserError /],
        ['not HTTP/1.x', c, /^HTTPParserError /],
        ['not HTTP', c, /^HTTPParserError /],
        ['malformed Content-Length', c, / UND_ERR_RES_CONTENT_LENGTH_MISMATCH$/],
        ['conflicting Content-Length', c, / UND_ERR_RES_CONTENT_LENGTH_MISMATCH$/],
        ['bad chunk', c, /^HTTPParserError /],
        ['header field without a colon', c, /^HTTPParserError /],
        ['interim 100 only', c, / UND_ERR_SOCKET$/],
        ['oversized (Content-Length)', c, / UND_ERR_RES_EXCEEDED_MAX_SIZE$/],
        ['oversized (chunked, never ending)', c, / UND_ERR_RES_EXCEEDED_MAX_SIZE$/],
        ['closed', c, / UND_ERR_SOCKET$/],
        ['closed mid-body', c, / UND_ERR_SOCKET$/],
        ['silent', quick, / UND_ERR_HEADERS_TIMEOUT$/],
        ['stalled body', quick, / UND_ERR_BODY_TIMEOUT$/],
      ];
      // warm both clients up: one connection each
      assert.equal((await c.post('/v1/authorize', `Bearer ${TOKEN}`, '{}')).status, 200);
      assert.equal((await quick.post('/v1/authorize', `Bearer ${TOKEN}`, '{}')).status, 200);
      for (const [m, client, code] of cases) {
        mode = m;
        const sent = s.requests.length;
        const conns = s.connections();
        // undici's error: its name and code (an HTTPParserError carries no code)
        await assert.rejects(client.post('/v1/authorize', `Bearer ${TOKEN}`, '{}'), (e) => code.test(`${(e as Error).name} ${codeOf(e)}`), m);
        assert.equal(s.requests.length, sent + 1, `${m}: sent once, not again`);
        mode = '';
        assert.deepEqual((await client.post('/v1/authorize', `Bearer ${TOKEN}`, '{}')).body, { ok: true }, m);
        assert.equal(s.connections(), conns + 1, `${m}: on a new connection`);
      }
    } finally {
      await c.close();
      await quick.close();
      await s.close();
    }
  });

  it('takes a doubled answer as the first only, and drops the connection: the extra one never answers the next request', async () => {
    let mode = 'double';
    const s = await server((socket) => {
      if (mode === 'double') socket.write('HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{"first":1}HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n{"smuggled":true}');
      else json(socket, { ok: true });
    });
    const c = new DecisionClient({ origin: s.origin, timeoutMs: 2000, maxResponseBytes: 1000, connections: 1 });
    try {
      assert.deepEqual((await c.post('/v1/authorize', `Bearer ${TOKEN}`, '{}')).body, { first: 1 });
      mode = '';
      assert.deepEqual((await c.post('/v1/authorize', `Bearer ${TOKEN}`, '{}')).body, { ok: true });
      assert.equal(s.connections(), 2);
      assert.equal(s.requests.length, 2);
    } finally {
      await c.close();
      await s.close();
    }
  });

  it('does not reuse a connection the server closes (`Connection: close`) or keeps too briefly (`Keep-Alive: timeout=1`)', async () => {
    let extra = '';
    const s = await server((socket) => json(socket, {}, extra));
    const c = new DecisionClient({ origin: s.origin, timeoutMs: 2000, maxResponseBytes: 1000, connections: 1 });
    try {
      for (const [e, reused] of [['keep-alive: timeout=30\r\n', true], ['connection: close\r\n', false], ['keep-alive: timeout=1\r\n', false]] as const) {
        extra = e;
        await c.post('/v1/authorize', `Bearer ${TOKEN}`, '{}');
        const before = s.connections();
        extra = 'keep-alive: timeout=30\r\n';
        await c.post('/v1/authorize', `Bearer ${TOKEN}`, '{}');
        assert.equal(s.connections(), reused ? before : before + 1, e);
      }
    } finally {
      await c.close();
      await s.close();
    }
  });

  it('fails the request in flight when closed, and every one after', async () => {
    let arrived!: () => void;
    const asked = new Promise<void>((ok) => (arrived = ok));
    const s = await server(() => arrived());
    const c = new DecisionClient({ origin: s.origin, timeoutMs: 5000, maxResponseBytes: 1000 });
    try {
      const p = c.post('/v1/authorize', `Bearer ${TOKEN}`, '{}');
      await asked;
      await c.close();
      await assert.rejects(p, (e) => codeOf(e) === 'UND_ERR_DESTROYED');
      await assert.rejects(c.post('/v1/authorize', `Bearer ${TOKEN}`, '{}'), (e) => codeOf(e) === 'UND_ERR_DESTROYED');
      assert.equal(s.requests.length, 1);
    } finally {
      await s.close();
    }
  });
});

describe('HttpAuthorizer on its decisions connections: fails closed', () => {
  const action = { tool: 'u.t', arguments: { x: 1 }, audience: 'mcp:u' };

  it('a decision, a refusal, a malformed decision, an unreadable, oversized or missing answer: allow only for the first, each sent once', async () => {
    let answer: (socket: Socket) => void = (socket) => json(socket, { decision: 'allow', decision_id: 'dec_1', action_token: 'tok' });
    const s = await server((socket) => answer(socket));
    const a = new HttpAuthorizer({ url: `${s.origin}/base/`, timeoutMs: 500 });
    try {
      for (let i = 0; i < 4; i++) assert.equal((await a.authorize(TOKEN, action, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })).decision, 'allow');
      // kept alive: the pool opens a second connection for a request sent before undici frees the first (a turn of the event loop after each answer), then reuses both
      assert.ok(s.connections() <= 2, String(s.connections()));
      assert.equal(s.requests[0]!.head, 'POST /base/v1/authorize HTTP/1.1');
      assert.equal(s.requests[0]!.headers.authorization, `Bearer ${TOKEN}`);
      assert.equal(s.requests[0]!.headers.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
      assert.deepEqual(JSON.parse(s.requests[0]!.body), action);
      const refusedWith = async (code: string, what: string) => {
        const sent = s.requests.length;
        await assert.rejects(a.authorize(TOKEN, action), (err: unknown) => err instanceof AuthorizerError && err.code === code, what);
        assert.equal(s.requests.length, sent + 1, `${what}: sent once`);
      };
      answer = (socket) => socket.write('HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 46\r\n\r\n{"error":{"code":"forbidden","message":"no."}}');
      await refusedWith('forbidden', 'a refusal');
      answer = (socket) => json(socket, { decision: 'allow', decision_id: 'dec_2' });
      await refusedWith('bad_decision', 'an allow without its token');
      answer = (socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nnot json!');
      await refusedWith('bad_decision', 'not JSON');
      answer = (socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1e1\r\n\r\n{"decision":"allow","decision_id":"d","action_token":"t"}');
      await refusedWith('writ_unavailable', 'an unreadable answer');
      answer = (socket) => json(socket, { decision: 'allow', decision_id: 'd', action_token: 't'.repeat(5 << 20) });
      await refusedWith('writ_unavailable', 'an answer over 4 MiB');
      answer = (socket) => socket.destroy();
      await refusedWith('writ_unavailable', 'the connection closed');
      answer = () => undefined;
      await refusedWith('writ_unavailable', 'no answer in time');
      await assert.rejects(a.authorize(`${TOKEN}\r\nx-admin: 1`, action), (err: unknown) => err instanceof AuthorizerError && err.code === 'writ_unavailable');
      await assert.rejects(a.authorize(TOKEN, action, { traceparent: 'a\nb: c' }), (err: unknown) => err instanceof AuthorizerError && err.code === 'writ_unavailable');
      assert.equal(s.requests.filter((r) => r.headers['x-admin'] !== undefined || r.headers.b !== undefined).length, 0);
    } finally {
      await a.close();
      await s.close();
    }
  });

  const hasOpenssl = spawnSync('openssl', ['version'], { encoding: 'utf8' }).status === 0;
  it('https: through undici with the general client\'s trust (Node\'s CA store): an untrusted certificate fails closed before any request; a trusted one answers', { skip: hasOpenssl ? false : 'openssl not found: no certificate to test with' }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'writ-decision-tls-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const cert = join(dir, 'writ.crt');
    const key = join(dir, 'writ.key');
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    let asked = 0;
    const srv = createHttpsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
      asked += 1;
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ decision: 'allow', decision_id: 'dec_tls', action_token: 'tok' }));
      });
    });
    await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
    const url = `https://localhost:${(srv.address() as AddressInfo).port}`;
    try {
      const a = new HttpAuthorizer({ url, timeoutMs: 2000 });
      try {
        await assert.rejects(a.authorize(TOKEN, action), (err: unknown) => err instanceof AuthorizerError && err.code === 'writ_unavailable' && /SELF_SIGNED|CERT/.test(err.message));
      } finally {
        await a.close();
      }
      assert.equal(asked, 0);
      // trusted as node:https would trust it: NODE_EXTRA_CA_CERTS, read once at start (a child)
      const compiled = import.meta.url.endsWith('.js');
      const authorizer = fileURLToPath(new URL(`../src/gateway/authorizer.${compiled ? 'js' : 'ts'}`, import.meta.url));
      const script = `const { HttpAuthorizer } = await import(${JSON.stringify(authorizer)});
        const a = new HttpAuthorizer({ url: ${JSON.stringify(url)}, timeoutMs: 5000 });
        const d = await a.authorize(${JSON.stringify(TOKEN)}, ${JSON.stringify(action)});
        await a.close();
        console.log(JSON.stringify(d));`;
      const r = await runChild(process.execPath, [...(compiled ? [] : ['--import', 'tsx']), '--input-type=module', '-e', script], { env: { ...process.env, NODE_EXTRA_CA_CERTS: cert }, timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).decision_id, 'dec_tls');
      assert.equal(asked, 1);
    } finally {
      await new Promise<void>((ok) => srv.close(() => ok()));
    }
  });
});
