/**
 * WritClient, the one client for Writ's HTTP API (agent client, CLI, gateway, bench), on both
 * transports: redirects never followed (the bearer token stays home), a timeout on every call,
 * error answers mapped to a coded WritApiError, answers over the size cap refused.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WritApiError, WritClient, type WritClientOptions } from '@writ/sdk';

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

async function listen(handler: Handler): Promise<{ server: Server; url: string; hits: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[] }> {
  const hits: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      hits.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, body, res);
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

function close(s: Server): Promise<void> {
  s.closeAllConnections();
  return new Promise((ok) => s.close(() => ok()));
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

const isApiError = (code: string, status?: number) => (e: unknown) => {
  assert.ok(e instanceof WritApiError, `a WritApiError, not ${String(e)}`);
  assert.equal(e.code, code);
  if (status !== undefined) assert.equal(e.status, status);
  return true;
};

for (const [name, extra] of [
  ['fetch', {}],
  ['node:http keep-alive', { http: { keepAlive: true, maxSockets: 4 } }],
] as [string, Partial<WritClientOptions>][]) {
  describe(`WritClient over ${name}`, () => {
    let writ: Awaited<ReturnType<typeof listen>>;
    let elsewhere: Awaited<ReturnType<typeof listen>>;
    let client: WritClient;

    before(async () => {
      elsewhere = await listen((_req, _body, res) => json(res, 200, { stolen: true }));
      writ = await listen((req, body, res) => {
        const u = new URL(req.url ?? '/', 'http://x');
        const redirect = /^\/redirect\/(\d+)$/.exec(u.pathname);
        if (redirect) return void (res.writeHead(Number(redirect[1]), { location: `${elsewhere.url}/v1/tasks` }), res.end());
        if (u.pathname === '/echo') return json(res, 200, { query: Object.fromEntries(u.searchParams), body, type: req.headers['content-type'] ?? null, auth: req.headers.authorization ?? null });
        if (u.pathname === '/coded') return json(res, 422, { error: { code: 'policy_invalid', message: 'bad policy `x`', details: { diagnostics: [{ message: 'm' }] } } });
        if (u.pathname === '/oauth') return json(res, 400, { error: 'invalid_grant', error_description: 'the assertion expired' });
        if (u.pathname === '/html') return void (res.writeHead(502, { 'content-type': 'text/html' }), res.end('<h1>bad gateway</h1>'));
        if (u.pathname === '/not-json') return void (res.writeHead(200, { 'content-type': 'text/plain' }), res.end('ok'));
        if (u.pathname === '/big') return json(res, 200, { pad: 'x'.repeat(10_000) });
        if (u.pathname === '/slow') return; // never answers
        json(res, 404, { error: { code: 'not_found', message: 'no such thing' } });
      });
      client = new WritClient({ url: `${writ.url}//`, timeoutMs: 5_000, ...extra });
    });
    after(async () => {
      client?.close();
      await close(writ.server);
      await close(elsewhere.server);
    });

    it('sends the bearer token, a JSON or form body and the query (undefined values left out)', async () => {
      const a = await client.request({ method: 'POST', path: '/echo', token: 't0k', json: { a: 1 }, query: { limit: 5, cursor: undefined, q: 'a b' } });
      assert.deepEqual(a, { query: { limit: '5', q: 'a b' }, body: '{"a":1}', type: 'application/json', auth: 'Bearer t0k' });
      const f = await client.request({ method: 'POST', path: '/echo', form: { grant_type: 'client_credentials', x: 'a&b' } });
      assert.deepEqual(f, { query: {}, body: 'grant_type=client_credentials&x=a%26b', type: 'application/x-www-form-urlencoded', auth: null });
      const t = await client.send({ method: 'POST', path: '/echo', jsonText: '{"pre":true}' });
      assert.equal(t.status, 200);
      assert.equal(t.body.body, '{"pre":true}');
      assert.equal(client.url, writ.url, 'trailing slashes are dropped');
    });

    for (const status of [301, 302, 303, 307, 308]) {
      it(`never follows a ${status} redirect: the token does not travel elsewhere`, async () => {
        const before = elsewhere.hits.length;
        await assert.rejects(client.request({ method: 'POST', path: `/redirect/${status}`, token: 'secret', json: {} }), isApiError('unexpected_redirect', status));
        const raw = await client.send({ method: 'GET', path: `/redirect/${status}`, token: 'secret' });
        assert.equal(raw.status, status, 'send answers the redirect as it is');
        assert.equal(elsewhere.hits.length, before, 'nothing reached the redirect target');
      });
    }

    it('maps error answers: {error: {code, message, details}}, the OAuth form, and anything else', async () => {
      await assert.rejects(client.request({ method: 'PUT', path: '/coded' }), (e: unknown) => {
        isApiError('policy_invalid', 422)(e);
        assert.equal((e as WritApiError).message, 'bad policy `x`');
        assert.deepEqual((e as WritApiError).details, { diagnostics: [{ message: 'm' }] });
        return true;
      });
      await assert.rejects(client.request({ method: 'POST', path: '/oauth' }), (e: unknown) => isApiError('invalid_grant', 400)(e) && (e as Error).message === 'the assertion expired');
      await assert.rejects(client.request({ method: 'GET', path: '/html' }), isApiError('http_502', 502));
      await assert.rejects(client.request({ method: 'GET', path: '/not-json' }), isApiError('bad_response', 200));
      await assert.rejects(client.request({ method: 'GET', path: '/nowhere' }), isApiError('not_found', 404));
      const raw = await client.send({ method: 'GET', path: '/html' });
      assert.equal(raw.status, 502);
      assert.equal(raw.text, '<h1>bad gateway</h1>');
      assert.equal(raw.body, undefined, 'a body that is not JSON parses to undefined');
    });

    it('times out a call that gets no answer (per call, and by default)', async () => {
      const t0 = Date.now();
      await assert.rejects(client.request({ method: 'GET', path: '/slow', timeoutMs: 300 }), isApiError('timeout', 0));
      assert.ok(Date.now() - t0 < 4_000, 'the call timeout applies, not the client default');
      const short = new WritClient({ url: writ.url, timeoutMs: 300, ...extra });
      try {
        await assert.rejects(short.send({ method: 'GET', path: '/slow' }), isApiError('timeout', 0));
      } finally {
        short.close();
      }
    });

    it('refuses an answer over maxResponseBytes, and reports a refused connection as unreachable', async () => {
      const capped = new WritClient({ url: writ.url, maxResponseBytes: 1_000, ...extra });
      try {
        await assert.rejects(capped.request({ method: 'GET', path: '/big' }), isApiError('unreachable', 0));
        assert.equal((await capped.send({ method: 'GET', path: '/echo' })).status, 200, 'a small answer still passes');
      } finally {
        capped.close();
      }
      const gone = await listen(() => {});
      const goneUrl = gone.url;
      await close(gone.server);
      const dead = new WritClient({ url: goneUrl, ...extra });
      try {
        await assert.rejects(dead.request({ method: 'GET', path: '/v1/tasks' }), (e: unknown) => isApiError('unreachable', 0)(e) && /ECONNREFUSED/.test((e as Error).message));
      } finally {
        dead.close();
      }
    });
  });
}

describe('WritClient: bad configuration', () => {
  it('refuses a base URL that is not a URL when constructed', () => {
    assert.throws(() => new WritClient({ url: 'not a url' }), TypeError);
  });
});
