import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { parseResponse, WritConnection } from '../src/gateway/writ-connection.js';

/**
 * The gateway's own connection for decisions (src/gateway/writ-connection.ts): an answer
 * is taken only as HTTP/1.1 frames it, anything else fails that request and drops the
 * connection, and nothing unsafe goes into a header (the caller then sends the request
 * through its general client, which refuses it).
 */

const TOKEN = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln';

describe('parseResponse: HTTP/1.1 framing', () => {
  const r = (s: string) => parseResponse(Buffer.from(s, 'latin1'));

  it('reads a Content-Length body, and waits for what is missing', () => {
    const full = 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 11\r\nkeep-alive: timeout=5\r\n\r\n{"a":"bcd"}';
    const p = r(full)!;
    assert.equal(p.status, 200);
    assert.equal(p.body.toString(), '{"a":"bcd"}');
    assert.equal(p.rest, 0);
    assert.equal(p.close, false);
    assert.equal(p.keepAliveMs, 5000);
    for (let i = 0; i < full.length; i++) assert.equal(r(full.slice(0, i)), null, `prefix ${i}`);
    assert.equal(r(`${full}HTTP/1.1`)!.rest, 8);
  });

  it('reads a chunked body (Transfer-Encoding wins over Content-Length)', () => {
    const full = 'HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n4;x=y\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n';
    const p = r(full)!;
    assert.equal(p.status, 403);
    assert.equal(p.body.toString(), '{"a":1}');
    for (let i = 0; i < full.length; i++) assert.equal(r(full.slice(0, i)), null, `prefix ${i}`);
  });

  it('marks Connection: close and HTTP/1.0 answers', () => {
    assert.equal(r('HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n')!.close, true);
    assert.equal(r('HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n')!.close, true);
    assert.equal(r('HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n')!.close, false);
  });

  it('refuses what it cannot frame: no length, another coding, conflicting or malformed lengths, bad chunks, trailers, interim answers, a huge header', () => {
    for (const bad of [
      'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{}',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}',
      'HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: 1e1\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: 0x1\r\n\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-trailer: 1\r\n\r\n',
      'HTTP/1.1 100 Continue\r\n\r\n',
      'HTTP/2 200\r\ncontent-length: 0\r\n\r\n',
      'SMTP 200 OK\r\ncontent-length: 0\r\n\r\n',
      'HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 0\r\n\r\n',
    ]) {
      assert.throws(() => r(bad), Error, JSON.stringify(bad));
    }
    assert.throws(() => parseResponse(Buffer.alloc(70 * 1024, 0x61)), /too large/);
  });
});

/** A TCP server answering each request with what `answer` writes. */
async function server(answer: (socket: Socket, request: string) => void): Promise<{ port: number; requests: string[]; connections: () => number; close: () => Promise<void> }> {
  const requests: string[] = [];
  let connections = 0;
  const sockets = new Set<Socket>();
  const srv: Server = createServer((socket) => {
    connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let text = '';
    socket.on('data', (d) => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
      if (text.length < end + 4 + len) return;
      const req = text.slice(0, end + 4 + len);
      text = text.slice(end + 4 + len);
      requests.push(req);
      answer(socket, req);
    });
  });
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  return {
    port: (srv.address() as AddressInfo).port,
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

/** The first post opens the connection (null: sent elsewhere); posts once it is up. */
async function ready(c: WritConnection): Promise<void> {
  assert.equal(c.post('/v1/authorize', TOKEN, '{}'), null);
  await new Promise((ok) => setTimeout(ok, 50));
}

describe('WritConnection', () => {
  it('sends one request at a time on one kept-alive connection, with the exact headers', async () => {
    const s = await server((socket) => json(socket, { decision: 'allow' }));
    const c = new WritConnection({ host: '127.0.0.1', port: s.port, authority: `127.0.0.1:${s.port}`, timeoutMs: 2000, maxResponseBytes: 1 << 20 });
    try {
      await ready(c);
      const first = c.post('/base/v1/authorize', TOKEN, '{"tool":"x"}', { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: undefined });
      assert.ok(first);
      // busy: the caller sends the next one another way
      assert.equal(c.post('/v1/authorize', TOKEN, '{}'), null);
      assert.deepEqual(await first, { status: 200, body: { decision: 'allow' } });
      for (let i = 0; i < 3; i++) assert.equal((await c.post('/v1/authorize', TOKEN, `{"n":${i}}`))!.status, 200);
      assert.equal(s.connections(), 1);
      assert.equal(
        s.requests[0],
        `POST /base/v1/authorize HTTP/1.1\r\nhost: 127.0.0.1:${s.port}\r\naccept: application/json\r\ncontent-type: application/json\r\nauthorization: Bearer ${TOKEN}\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ncontent-length: 12\r\n\r\n{"tool":"x"}`,
      );
    } finally {
      c.close();
      await s.close();
    }
  });

  it('never puts a token or header value that could split the request into a header (null: the caller refuses it)', async () => {
    const s = await server((socket) => json(socket, {}));
    const c = new WritConnection({ host: '127.0.0.1', port: s.port, authority: 'x', timeoutMs: 2000, maxResponseBytes: 1 << 20 });
    try {
      await ready(c);
      for (const t of [`${TOKEN}\r\nx-admin: 1`, `${TOKEN}\n`, `${TOKEN} x`, `${TOKEN}\u0000`, '', `${TOKEN}é`]) assert.equal(c.post('/v1/authorize', t, '{}'), null, JSON.stringify(t));
      assert.equal(c.post('/v1/authorize', TOKEN, '{}', { traceparent: 'a\r\nb: c' }), null);
      assert.equal(c.post('/v1/authorize', TOKEN, '{}', { tracestate: 'a\nb' }), null);
      assert.equal(s.requests.length, 0);
      assert.equal((await c.post('/v1/authorize', TOKEN, '{}'))!.status, 200);
    } finally {
      c.close();
      await s.close();
    }
  });

  it('fails the request and drops the connection on a malformed, oversized, doubled or unasked answer, a close and a timeout; the next request opens a new one', async () => {
    let mode = '';
    const s = await server((socket) => {
      if (mode === 'malformed') socket.write('HTTP/1.1 200 OK\r\n\r\n{}');
      else if (mode === 'large') socket.write(`HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n${'x'.repeat(5000)}`);
      else if (mode === 'double') socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}');
      else if (mode === 'close') socket.destroy();
      else if (mode === 'silent') return;
      else json(socket, { ok: true });
    });
    const c = new WritConnection({ host: '127.0.0.1', port: s.port, authority: 'x', timeoutMs: 300, maxResponseBytes: 1000 });
    try {
      await ready(c);
      for (const [m, code] of [
        ['malformed', 'EBADRESPONSE'],
        ['large', 'ERESPONSETOOLARGE'],
        ['double', 'EBADRESPONSE'],
        ['close', 'ECONNRESET'],
        ['silent', 'ETIMEDOUT'],
      ] as const) {
        mode = m;
        await assert.rejects(c.post('/v1/authorize', TOKEN, '{}')!, (err: { code?: string }) => err.code === code, m);
        mode = '';
        // dropped: the next post opens a new connection
        assert.equal(c.post('/v1/authorize', TOKEN, '{}'), null, m);
        await new Promise((ok) => setTimeout(ok, 50));
        assert.deepEqual(await c.post('/v1/authorize', TOKEN, '{}'), { status: 200, body: { ok: true } }, m);
      }
      assert.equal(s.connections(), 6);
    } finally {
      c.close();
      await s.close();
    }
  });

  it('replaces a connection idle past the server\'s Keep-Alive timeout before sending, and one the server said it closes', async () => {
    let extra = 'keep-alive: timeout=1\r\n';
    const s = await server((socket) => json(socket, {}, extra));
    const c = new WritConnection({ host: '127.0.0.1', port: s.port, authority: 'x', timeoutMs: 2000, maxResponseBytes: 1000 });
    try {
      await ready(c);
      // timeout=1 s: idle past 0 s (one second of margin) means a new connection
      assert.ok(await c.post('/v1/authorize', TOKEN, '{}'));
      await new Promise((ok) => setTimeout(ok, 20));
      assert.equal(c.post('/v1/authorize', TOKEN, '{}'), null);
      extra = 'connection: close\r\n';
      await new Promise((ok) => setTimeout(ok, 50));
      assert.equal(s.connections(), 2);
      assert.ok(await c.post('/v1/authorize', TOKEN, '{}'));
      assert.equal(c.post('/v1/authorize', TOKEN, '{}'), null);
      await new Promise((ok) => setTimeout(ok, 50));
      assert.equal(s.connections(), 3);
    } finally {
      c.close();
      await s.close();
    }
  });

  it('answers null once closed, and fails the request in flight', async () => {
    const s = await server(() => undefined);
    const c = new WritConnection({ host: '127.0.0.1', port: s.port, authority: 'x', timeoutMs: 2000, maxResponseBytes: 1000 });
    try {
      await ready(c);
      const p = c.post('/v1/authorize', TOKEN, '{}')!;
      c.close();
      await assert.rejects(p, (err: { code?: string }) => err.code === 'ECONNABORTED');
      assert.equal(c.post('/v1/authorize', TOKEN, '{}'), null);
    } finally {
      await s.close();
    }
  });
});

describe('HttpAuthorizer on its decisions connection: fails closed as on the general client', () => {
  it('a decision, a refusal, a malformed decision and an unreadable answer: allow only for the first', async () => {
    const { HttpAuthorizer, AuthorizerError } = await import('../src/gateway/authorizer.js');
    let answer: (socket: Socket) => void = (socket) => json(socket, { decision: 'allow', decision_id: 'dec_1', action_token: 'tok' });
    const s = await server((socket) => answer(socket));
    const a = new HttpAuthorizer({ url: `http://127.0.0.1:${s.port}/`, timeoutMs: 500 });
    const action = { tool: 'u.t', arguments: { x: 1 }, audience: 'mcp:u' };
    try {
      // the first goes through the general client while the connection opens; the rest on it
      for (let i = 0; i < 3; i++) {
        assert.equal((await a.authorize(TOKEN, action)).decision, 'allow');
        await new Promise((ok) => setTimeout(ok, 20));
      }
      assert.equal(s.connections(), 2);
      assert.ok(s.requests.slice(1).every((r) => r.startsWith('POST /v1/authorize HTTP/1.1\r\nhost:')));
      const refusedWith = async (code: string) =>
        assert.rejects(a.authorize(TOKEN, action), (err: unknown) => err instanceof AuthorizerError && err.code === code, code);
      answer = (socket) => socket.write('HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 46\r\n\r\n{"error":{"code":"forbidden","message":"no."}}');
      await refusedWith('forbidden');
      answer = (socket) => json(socket, { decision: 'allow', decision_id: 'dec_2' });
      await refusedWith('bad_decision');
      answer = (socket) => socket.write('HTTP/1.1 200 OK\r\n\r\n{"decision":"allow","decision_id":"d","action_token":"t"}');
      await refusedWith('writ_unavailable');
    } finally {
      await a.close();
      await s.close();
    }
  });
});
