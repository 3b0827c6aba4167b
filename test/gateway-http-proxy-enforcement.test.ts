import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';
import { digestArguments } from '../src/core/digest.js';
import { HttpAuthorizer } from '../src/gateway/authorizer.js';
import { parseProxyConfig } from '../src/gateway/config.js';
import { HttpProxy } from '../src/gateway/http-proxy.js';
import { silentLog } from '../src/gateway/log.js';
import { DEFAULT_POLICY } from '../src/policy/schema.js';
import { createHttpActionGuard } from '@writ/sdk';
import { eventually } from './helpers/gateway-fixtures.js';
import { setup } from './helpers/harness.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A raw request (fetch would normalize the path, add headers and pick its own framing). */
function raw(url: string, opts: { method?: string; path: string; headers?: Record<string, string>; body?: Buffer | string; chunks?: Buffer[] }): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.chunks) {
      for (const c of opts.chunks) req.write(c);
      req.end();
    } else req.end(opts.body);
  });
}

/** Writes `text` on a raw socket and resolves with everything read until the server closes it (or rejects after `timeoutMs`). */
function rawSocket(url: string, parts: string[], until?: RegExp, timeoutMs = 60_000): Promise<{ text: string; ms: number }> {
  const u = new URL(url);
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname);
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the proxy kept the connection open ${timeoutMs} ms; read: ${text}`));
    }, timeoutMs);
    s.on('data', (c) => {
      text += c;
      if (until?.test(text)) s.destroy();
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text, ms: Date.now() - t0 });
    });
    s.on('connect', () => {
      for (const p of parts) s.write(p);
    });
  });
}

/** Sends the head of a request with a declared body that never comes; resolves with the first response (status line and body). */
function headOnly(url: string, path: string, headers: Record<string, string>, partial = '{"amou', timeoutMs = 60_000): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname);
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms: ${text}`));
    }, timeoutMs);
    s.on('error', () => undefined);
    s.on('data', (c) => {
      text += c;
      const end = text.indexOf('\r\n\r\n');
      const m = /content-length: (\d+)/i.exec(text);
      if (end >= 0 && m && text.length >= end + 4 + Number(m[1])) {
        clearTimeout(timer);
        s.destroy();
        resolve({ status: Number(text.slice(9, 12)), body: text.slice(end + 4) });
      }
    });
    s.on('connect', () => {
      const lines = [`POST ${path} HTTP/1.1`, `host: ${u.host}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
      s.write(`${lines.join('\r\n')}\r\n\r\n${partial}`);
    });
  });
}

/** Sends a request head with `Expect: 100-continue`; sends `body` only after `100 Continue`. Resolves with all that was read. */
function expectContinue(url: string, path: string, headers: Record<string, string>, body: string, timeoutMs = 60_000): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname);
    let text = '';
    let sent = false;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no final answer within ${timeoutMs} ms: ${text}`));
    }, timeoutMs);
    s.on('error', () => undefined);
    s.on('data', (c) => {
      text += c;
      if (!sent && text.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
        sent = true;
        s.write(body);
      }
      const final = text.replace(/^HTTP\/1\.1 100 Continue\r\n\r\n/, '');
      const end = final.indexOf('\r\n\r\n');
      const m = /content-length: (\d+)/i.exec(final);
      if (end >= 0 && ((m && final.length >= end + 4 + Number(m[1])) || (/transfer-encoding: chunked/i.test(final) && final.endsWith('\r\n0\r\n\r\n')))) {
        clearTimeout(timer);
        s.destroy();
        resolve(text);
      }
    });
    s.on('connect', () => {
      const lines = [`POST ${path} HTTP/1.1`, `host: ${u.host}`, 'expect: 100-continue', `content-length: ${Buffer.byteLength(body)}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
      s.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
  });
}

describe('HTTP proxy: what is judged is what the upstream gets', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let upstream: http.Server;
  let upstreamUrl: string;
  const seen: Seen[] = [];
  let proxy: HttpProxy;
  let running: Awaited<ReturnType<HttpProxy['listen']>>;
  let proxyUrl: string;
  let taskId: string;
  let token: string;
  const secret = `sk-${randomBytes(16).toString('hex')}`;
  let guard: ReturnType<typeof createHttpActionGuard>;
  const guarded: { ok: boolean; code?: string }[] = [];

  before(async () => {
    env = await setup('sqlite');
    upstream = http.createServer(async (req, res) => {
      if (req.url!.startsWith('/g/')) {
        const ok = await guard(req, res);
        guarded.push({ ok: !!ok });
        if (!ok) return;
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: ok.body.toString() });
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ guarded: true }));
        return;
      }
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() });
      const auth = String(req.headers.authorization);
      const u = new URL(req.url!, 'http://x');
      if (u.pathname.startsWith('/enc/')) {
        // compresses whatever the proxy asked for: an upstream that ignores Accept-Encoding
        const coding = decodeURIComponent(u.pathname.slice(5));
        const text = Buffer.from(JSON.stringify({ echo: auth, b64: Buffer.from(auth).toString('base64') }));
        const body = coding === 'gzip' ? zlib.gzipSync(text) : coding === 'br' ? zlib.brotliCompressSync(text) : coding === 'deflate' ? zlib.deflateSync(text) : coding === 'gzip-br' ? zlib.brotliCompressSync(zlib.gzipSync(text)) : text;
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': coding === 'gzip-br' ? 'gzip, br' : coding, 'content-length': body.length }).end(body);
        return;
      }
      if (u.pathname.startsWith('/te/')) {
        // a transfer coding besides chunked (RFC 9112 §7): Node's client removes only the chunking
        const [te, ce] = decodeURIComponent(u.pathname.slice(4)).split('|') as [string, string | undefined];
        let body = Buffer.from(JSON.stringify({ echo: auth }));
        const coded = (c: string) => (c === 'gzip' ? zlib.gzipSync(body) : c === 'deflate' ? zlib.deflateSync(body) : body);
        for (const c of (ce ?? '').split(',').map((x) => x.trim()).filter(Boolean)) body = coded(c);
        for (const c of te.split(',').map((x) => x.trim().toLowerCase()).filter((x) => x !== 'chunked')) body = coded(c);
        const head = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: ${te}\r\n${ce ? `content-encoding: ${ce}\r\n` : ''}connection: close\r\n\r\n`;
        res.socket!.write(head);
        if (/chunked$/i.test(te)) res.socket!.end(Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]));
        else res.socket!.end(body);
        return;
      }
      if (u.pathname === '/forms') {
        // the credential in the forms an upstream (or an agent steering one) might echo it in
        const basic = Buffer.from(`user:${secret}`).toString('base64');
        res.writeHead(200, { 'content-type': 'text/plain', 'x-b64': Buffer.from(secret).toString('base64') });
        res.end([
          `plain ${auth}`,
          `b64 ${Buffer.from(auth).toString('base64')}`,
          `b64url ${Buffer.from(auth).toString('base64url')}`,
          `basic ${basic}`,
          `shifted ${Buffer.from(`x${secret}y`).toString('base64')} ${Buffer.from(`xy${secret}`).toString('base64')}`,
          `pct ${encodeURIComponent(auth)}`,
          `json ${JSON.stringify(JSON.stringify({ a: auth }))}`,
          `hex ${Buffer.from(secret).toString('hex')}`,
        ].join('\n'));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true }));
    });
    await new Promise<void>((ok) => upstream.listen(0, '127.0.0.1', ok));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const jwks = await (await fetch(`${env.url}/.well-known/jwks.json`)).json();
    guard = createHttpActionGuard({ issuer: env.url, audience: upstreamUrl, jwks: jwks as never, tool: 'h.guarded' });

    const auth = { authorization: { env: 'ENFORCE_SECRET', prefix: 'Bearer ' } };
    const config = parseProxyConfig(
      {
        writ: { url: env.url },
        max_body_bytes: 4096,
        headers_timeout_ms: 1000,
        request_timeout_ms: 3000,
        routes: [
          { name: 'h.guarded', methods: ['POST'], path: '/g/*', upstream: upstreamUrl, headers: auth, body: 'any', forward_action_token: true },
          { name: 'h.fwd', methods: ['GET'], path: '/fwd', upstream: upstreamUrl, headers: auth, forward_headers: ['X-Trace', 'accept'] },
          { name: 'h.json', methods: ['POST'], path: '/json', upstream: upstreamUrl, headers: auth },
          { name: 'h.any', methods: ['GET', 'POST', 'HEAD'], path: '/*', upstream: upstreamUrl, headers: auth, body: 'any' },
        ],
      },
      '/tmp/proxy-enforcement.json',
    );
    proxy = new HttpProxy({ config, authorizer: new HttpAuthorizer({ url: env.url }), log: silentLog, env: { ENFORCE_SECRET: secret } });
    running = await proxy.listen();
    proxyUrl = running.url;
    const task = await env.createTask({ scope: { tools: ['h.*'], resources: [], destinations: ['127.0.0.1:*'] }, max_actions: 500 });
    taskId = task.id;
    token = await env.taskToken(task.id);
  });

  after(async () => {
    await running?.close();
    upstream?.closeAllConnections();
    await new Promise<void>((ok) => (upstream ? upstream.close(() => ok()) : ok()));
    await env?.teardown();
  });

  const bearer = () => ({ authorization: `Bearer ${token}` });
  const decision = async (id: string) =>
    eventually(async () => (await env.admin.call('GET', `/v1/tasks/${taskId}`)).body.decisions.find((d: any) => d.id === id), 60_000);
  const setPolicy = async (extra: string) => {
    const put = await env.admin.call('PUT', '/v1/policies', { policies: `${DEFAULT_POLICY}\n${extra}\n` });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  };

  it('refuses path segments with `;` in every spelling, before policy or the upstream', async () => {
    const n = seen.length;
    for (const path of [
      '/api/public/..;/admin/users', '/api/public/.;/admin', '/api/public/%2e%2e;/admin', '/api/public/%2e%2e%3b/admin', '/api/public/..%3B/admin',
      '/api/public/..%3b/admin', '/api/admin;jsessionid=x/users', '/api/%3badmin', '/api/public/..%253b/admin', '/api/public/..%5c;/admin', '/api/public/..\\;/admin',
    ]) {
      const r = await raw(proxyUrl, { path, headers: bearer() });
      assert.equal(r.status, 400, `${path}: ${r.body}`);
      assert.equal(JSON.parse(r.body).error.code, 'invalid_path', path);
    }
    assert.equal(seen.length, n, 'nothing reached the upstream');
  });

  it('forwards agent headers only from the route\'s allow-list, never those that change the request', async () => {
    const tricks = {
      'x-http-method-override': 'DELETE', 'x-http-method': 'DELETE', 'x-method-override': 'DELETE', 'x-original-url': '/admin', 'x-rewrite-url': '/admin',
      'x-forwarded-for': '10.0.0.1', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', 'x-forwarded-prefix': '/admin', forwarded: 'for=10.0.0.1;host=evil.example',
      'x-host': 'evil.example', 'x-real-ip': '10.0.0.1', 'x-middleware-subrequest': 'middleware', via: '1.1 evil', te: 'trailers', 'proxy-authorization': 'Basic eA==',
      cookie: 'sid=1', 'accept-encoding': 'gzip, br', 'x-trace': 't1', accept: 'application/json', 'user-agent': 'agent/1', 'if-none-match': '"e1"',
    };
    const r = await raw(proxyUrl, { path: '/plain?x=1', headers: { ...bearer(), ...tricks } });
    assert.equal(r.status, 200, r.body);
    const got = seen.at(-1)!.headers;
    for (const h of Object.keys(tricks).filter((h) => !['accept', 'user-agent', 'if-none-match', 'accept-encoding'].includes(h))) assert.equal(got[h], undefined, h);
    assert.equal(got.host, new URL(upstreamUrl).host);
    assert.equal(got['accept-encoding'], 'identity', 'the proxy asks for an uncompressed answer');
    assert.equal(got.accept, 'application/json');
    assert.equal(got['if-none-match'], '"e1"');
    assert.equal(got.authorization, `Bearer ${secret}`);

    // a route's own list replaces the default: x-trace and accept pass, user-agent does not
    const f = await raw(proxyUrl, { path: '/fwd', headers: { ...bearer(), ...tricks } });
    assert.equal(f.status, 200, f.body);
    const fh = seen.at(-1)!.headers;
    assert.equal(fh['x-trace'], 't1');
    assert.equal(fh.accept, 'application/json');
    assert.equal(fh['user-agent'], undefined);
    assert.equal(fh['x-http-method-override'], undefined);
    assert.equal(fh['x-forwarded-host'], undefined);
  });

  it('shows policy the query as the upstream reads it, refuses what parsers read differently, and forwards it re-encoded', async () => {
    await setPolicy('@id("no-admin-role")\nforbid (principal, action, resource == Writ::Tool::"h.any") when { context.args.hasTag("query.role") && context.args.getTag("query.role") == "admin" };');
    const denied = await raw(proxyUrl, { path: '/q?role=admin', headers: bearer() });
    assert.equal(denied.status, 403, denied.body);
    for (const path of ['/q?role=%61dmin', '/q?r%6Fle=admin', '/q?role=adm%69n&x=1']) {
      const r = await raw(proxyUrl, { path, headers: bearer() });
      assert.equal(r.status, 403, `${path}: ${r.body}`);
    }
    // a key policy reads, in a shape parsers read as a list or map: shown as such, and refused
    const n0 = seen.length;
    for (const path of ['/q?role[]=admin', '/q?role=user&role=admin', '/q?role=admin&role=user', '/q?role[x]=admin', '/q?role%5B%5D=admin', '/q?r%6Fle[]=admin', '/q?role[]=user']) {
      const r = await raw(proxyUrl, { path, headers: bearer() });
      assert.equal(r.status, 403, `${path}: ${r.body}`);
      assert.equal(JSON.parse(r.body).reasons[0].code, 'argument_type_mismatch', path);
    }
    assert.equal(seen.length, n0, 'none reached the upstream');
    // `role[]=user` is `role` (an array) to PHP, Rack and qs: policy sees it as `query.role`, an array
    await setPolicy('@id("no-admin-other")\nforbid (principal, action, resource == Writ::Tool::"h.any") when { context.args.hasTag("query.other") && context.args.getTag("query.other") == "admin" };');
    const ok = await raw(proxyUrl, { path: '/q?role[]=user&f[s]=1&x=a+b&x=c', headers: bearer() });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(seen.at(-1)!.url, '/q?role%5B%5D=user&f%5Bs%5D=1&x=a%20b&x=c');
    const d = await decision(ok.headers['writ-decision-id'] as string);
    assert.equal(d.args_digest, digestArguments({ method: 'GET', path: '/q', query: { role: ['user'], f: { s: '1' }, x: ['a b', 'c'] } }));
    // repeated names policy does not read pass as before
    const rep = await raw(proxyUrl, { path: '/q?tag=a&tag=b', headers: bearer() });
    assert.equal(rep.status, 200, rep.body);
    assert.equal(seen.at(-1)!.url, '/q?tag=a&tag=b');

    const n = seen.length;
    for (const path of ['/q?x=1;role=admin', '/q?role=user;role=admin', '/q?role%255B%255D=admin', '/q?role=user&role[x]=admin', '/q?role[]=a&role=admin', '/q?role=%zz', '/q?__proto__[role]=admin', '/q?a%00=1']) {
      const r = await raw(proxyUrl, { path, headers: bearer() });
      assert.equal(r.status, 400, `${path}: ${r.body}`);
      assert.equal(JSON.parse(r.body).error.code, 'invalid_query', path);
    }
    assert.equal(seen.length, n, 'nothing refused reached the upstream');
    await setPolicy('');
  });

  it('masks the credential in compressed answers and in its common encodings', async () => {
    for (const coding of ['gzip', 'br', 'deflate', 'gzip-br']) {
      const r = await raw(proxyUrl, { path: `/enc/${coding}`, headers: { ...bearer(), 'accept-encoding': 'gzip, br, deflate' } });
      assert.equal(r.status, 200, coding);
      assert.equal(r.headers['content-encoding'], undefined, `${coding}: decoded to be masked`);
      assert.ok(!r.body.includes(secret) && !r.body.includes(Buffer.from(`Bearer ${secret}`).toString('base64').slice(4, 30)), `${coding}: ${r.body}`);
      assert.deepEqual(Object.keys(JSON.parse(r.body)), ['echo', 'b64'], coding);
    }
    // codings it cannot decode, names of Object.prototype's properties among them (a crash of the proxy, once)
    for (const coding of ['zstd', 'constructor', '__proto__', 'toString', 'gzip, hasOwnProperty']) {
      const bad = await raw(proxyUrl, { path: `/enc/${encodeURIComponent(coding)}`, headers: bearer() });
      assert.equal(bad.status, 502, `${coding}: ${bad.body}`);
      assert.equal(JSON.parse(bad.body).error.code, 'upstream_unsupported_encoding', coding);
    }

    const forms = await raw(proxyUrl, { path: '/forms', headers: bearer() });
    assert.equal(forms.status, 200);
    const lines = forms.body.split('\n');
    assert.equal(lines.length, 8);
    for (const line of lines) {
      const value = line.slice(line.indexOf(' ') + 1);
      assert.ok(!value.includes(secret.slice(3, 20)), line);
      assert.ok(/\*{8,}/.test(value), `masked: ${line}`);
    }
    for (const enc of ['base64', 'base64url', 'hex'] as const) assert.ok(!forms.body.includes(Buffer.from(secret).toString(enc).slice(2, 24)), enc);
    assert.ok(!String(forms.headers['x-b64']).includes(Buffer.from(secret).toString('base64').slice(0, 20)), 'response headers too');
  });

  it('masks the credential in answers in a transfer coding besides chunked, and refuses one it cannot decode', async () => {
    for (const coding of ['gzip, chunked', 'deflate, chunked', 'gzip', 'gzip, deflate, chunked', 'chunked|gzip', 'gzip, chunked|deflate', 'GZIP, Chunked']) {
      const r = await raw(proxyUrl, { path: `/te/${encodeURIComponent(coding)}`, headers: bearer() });
      assert.equal(r.status, 200, `${coding}: ${r.body}`);
      assert.equal(r.headers['content-encoding'], undefined, `${coding}: decoded to be masked`);
      assert.ok(!r.body.includes(secret), `${coding}: ${r.body}`);
      assert.deepEqual(JSON.parse(r.body), { echo: `Bearer ${secret}`.replace(/./g, '*') }, coding);
    }
    for (const coding of ['x-custom, chunked', 'compress, chunked', 'gzip, x-custom, chunked']) {
      const r = await raw(proxyUrl, { path: `/te/${encodeURIComponent(coding)}`, headers: bearer() });
      assert.equal(r.status, 502, `${coding}: ${r.body}`);
      assert.equal(JSON.parse(r.body).error.code, 'upstream_unsupported_encoding', coding);
    }
  });

  it('refuses the task token in a forwarded header, an escaped or encoded body, or an encoded URL, before policy or the upstream', async () => {
    const n = seen.length;
    const b64 = Buffer.from(token).toString('base64');
    const pct = (s: string, c: string) => s.replace(/\./g, c);
    const expectRefused = async (what: string, r: { status: number; body: string }) => {
      assert.equal(r.status, 400, `${what}: ${r.body}`);
      assert.equal(JSON.parse(r.body).error.code, 'task_token_in_request', what);
    };
    // headers the route forwards (the default list, and a route's own)
    for (const [name, value] of [['user-agent', token], ['x-request-id', `id-${token}`], ['accept', `text/${pct(token, '%2E')}`], ['if-none-match', `"${b64}"`]] as const) {
      await expectRefused(name, await raw(proxyUrl, { path: '/plain', headers: { ...bearer(), [name]: value } }));
    }
    await expectRefused('x-trace', await raw(proxyUrl, { path: '/fwd', headers: { ...bearer(), 'x-trace': token } }));
    // JSON escapes the upstream's parser undoes
    const escaped = [JSON.stringify({ t: token }).replace('eyJ', '\\u0065yJ'), `{"t": "${pct(token, '\\u002E')}"}`, `{"t": "${pct(token, '\\u002e')}"}`];
    for (const body of escaped) await expectRefused(body, await raw(proxyUrl, { method: 'POST', path: '/json', headers: { ...bearer(), 'content-type': 'application/json' }, body }));
    // form and text bodies: percent-encoding (either case, twice), base64, hex
    for (const body of [`t=${pct(token, '%2E')}`, `t=${pct(token, '%2e')}`, `t=${pct(token, '%252E')}`, `t=%65${token.slice(1)}`, `t=${b64}`, `x${Buffer.from(`Bearer ${token}`).toString('base64')}`, Buffer.from(token).toString('hex')]) {
      await expectRefused(body.slice(0, 40), await raw(proxyUrl, { method: 'POST', path: '/t', headers: { ...bearer(), 'content-type': 'application/x-www-form-urlencoded' }, body }));
    }
    // the URL: base64url, hex, percent-encoded in the path or the query
    for (const path of [`/q?t=${Buffer.from(token).toString('base64url')}`, `/q/${Buffer.from(token).toString('hex')}`, `/q/${pct(token, '%2E')}`, `/q?t=${pct(token, '%252E')}`]) {
      await expectRefused(path.slice(0, 40), await raw(proxyUrl, { path, headers: bearer() }));
    }
    assert.equal(seen.length, n, 'nothing reached the upstream');
    // a header the route does not forward may say anything: it never reaches the upstream
    const other = await raw(proxyUrl, { path: '/plain', headers: { ...bearer(), 'x-not-forwarded': token } });
    assert.equal(other.status, 200, other.body);
    assert.ok(!JSON.stringify(seen.at(-1)).includes(token));
  });

  it('refuses a JSON body with a name twice in one object: parsers keep the first or the last (RFC 8259 §4)', async () => {
    await setPolicy('@id("cap-body")\nforbid (principal, action, resource == Writ::Tool::"h.json") when { context.num_args.hasTag("body.amount") && context.num_args.getTag("body.amount") > 100 };');
    const n = seen.length;
    for (const body of [
      '{"amount": 99999, "amount": 5}',
      '{"to": "bob", "amount": 99999, "to": "x", "amount": 5}',
      '{"amount": 99999, "\\u0061mount": 5}',
      '{"amount": 99999, "am\\u006Funt": 5}',
      '{"x": {"amount": 1}, "amount": 99999, "y": [{"k": 1}, {"k": 2}], "amount": 5}',
      '{"p": {"amount": 99999, "amount": 5}}',
      '[{"amount": 99999, "amount": 5}]',
      '{"a\\"b": 1, "a\\u0022b": 2}',
    ]) {
      const r = await raw(proxyUrl, { method: 'POST', path: '/json', headers: { ...bearer(), 'content-type': 'application/json' }, body });
      assert.equal(r.status, 400, `${body}: ${r.body}`);
      assert.equal(JSON.parse(r.body).error.code, 'invalid_json', body);
    }
    assert.equal(seen.length, n, 'nothing reached the upstream');
    // the same name in different objects, in arrays, and names that only look alike, pass
    for (const body of ['{"amount": 5, "p": {"amount": 6}, "l": [{"amount": 7}, {"amount": 8}]}', '{"amount": 5, "Amount": 6, "amount ": 7, "a": "amount", "b": "\\"amount\\": 1"}', '{}', '{"l": [[], {}]}', '{"": 1, "\\\\": 2}']) {
      const r = await raw(proxyUrl, { method: 'POST', path: '/json', headers: { ...bearer(), 'content-type': 'application/json' }, body });
      assert.equal(r.status, 200, `${body}: ${r.body}`);
      assert.equal(seen.at(-1)!.body, body);
    }
    await setPolicy('');
  });

  it('refuses a `_method` parameter, which makes Rails, Laravel and Express\'s method-override act on another method than the one judged', async () => {
    const n = seen.length;
    const refused = async (what: string, r: { status: number; body: string }) => {
      assert.equal(r.status, 400, `${what}: ${r.body}`);
      assert.equal(JSON.parse(r.body).error.code, 'method_override', what);
    };
    for (const path of ['/t?_method=DELETE', '/t?%5Fmethod=delete', '/t?_METHOD=put', '/t?.method=DELETE', '/t?x=1&_method=PATCH', '/t?_method[]=DELETE', '/t?_method']) {
      await refused(path, await raw(proxyUrl, { method: 'POST', path, headers: bearer() }));
    }
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const multipart = { 'content-type': 'multipart/form-data; boundary=b0' };
    const part = (name: string) => `--b0\r\nContent-Disposition: form-data; ${name}\r\n\r\nDELETE\r\n--b0--\r\n`;
    for (const [headers, body] of [
      [form, '_method=DELETE'], [form, 'a=1&%5Fmethod=delete'], [form, '_method=put&x=2'], [form, 'x=1&.method=DELETE'], [form, '+method=DELETE'],
      [{ 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }, '_method=DELETE'],
      // Rack reads a POST without a content type as a form
      [{}, '_method=DELETE'],
      [multipart, part('name="_method"')], [multipart, part('name=_method')], [multipart, part('NAME="_Method"')],
    ] as const) {
      await refused(`${JSON.stringify(headers)} ${body.slice(0, 60)}`, await raw(proxyUrl, { method: 'POST', path: '/t', headers: { ...bearer(), ...headers }, body }));
    }
    // Laravel reads a JSON body's `_method` too
    for (const body of ['{"_method": "DELETE"}', '{"_METHOD": "put", "x": 1}']) {
      await refused(body, await raw(proxyUrl, { method: 'POST', path: '/json', headers: { ...bearer(), 'content-type': 'application/json' }, body }));
    }
    assert.equal(seen.length, n, 'nothing reached the upstream');
    // look-alikes pass: other names, `_method` inside values, nested JSON, a text body
    for (const [path, headers, body] of [
      ['/t?method=DELETE&x_method=1&a=_method', form, 'method=DELETE&my_method=x&v=_method%3DDELETE'],
      ['/t', { 'content-type': 'text/plain' }, '_method=DELETE'],
      ['/t', multipart, part('name="method"')],
      ['/json', { 'content-type': 'application/json' }, '{"p": {"_method": "DELETE"}, "v": "_method"}'],
    ] as const) {
      const r = await raw(proxyUrl, { method: 'POST', path, headers: { ...bearer(), ...headers }, body });
      assert.equal(r.status, 200, `${path} ${body}: ${r.body}`);
    }
  });

  it('binds every body: JSON as parsed, any other by digest and content type', async () => {
    const form = 'amount=99999&to=mallory';
    const r = await raw(proxyUrl, { method: 'POST', path: '/t', headers: { ...bearer(), 'content-type': 'application/x-www-form-urlencoded' }, body: form });
    assert.equal(r.status, 200, r.body);
    assert.equal(seen.at(-1)!.body, form);
    const d = await decision(r.headers['writ-decision-id'] as string);
    const sha = createHash('sha256').update(form).digest('hex');
    assert.equal(d.args_digest, digestArguments({ method: 'POST', path: '/t', query: {}, body_sha256: sha, content_type: 'application/x-www-form-urlencoded' }));
    // policy can read them
    await setPolicy(`@id("no-forms")\nforbid (principal, action, resource == Writ::Tool::"h.any") when { context.args.hasTag("content_type") && context.args.getTag("content_type") like "application/x-www-form-urlencoded*" };`);
    const no = await raw(proxyUrl, { method: 'POST', path: '/t', headers: { ...bearer(), 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' }, body: form });
    assert.equal(no.status, 403, no.body);
    await setPolicy('');
    // a compressed request body: refused (policy judges the bytes it reads)
    const gz = await raw(proxyUrl, { method: 'POST', path: '/t', headers: { ...bearer(), 'content-type': 'text/plain', 'content-encoding': 'gzip' }, body: zlib.gzipSync('x') });
    assert.equal(gz.status, 415, gz.body);
    // the task token in a non-JSON body is refused too
    const tt = await raw(proxyUrl, { method: 'POST', path: '/t', headers: { ...bearer(), 'content-type': 'text/plain' }, body: `t=${token}` });
    assert.equal(tt.status, 400);
    assert.equal(JSON.parse(tt.body).error.code, 'task_token_in_request');
  });

  it('the guard behind the proxy accepts each body the proxy bound', async () => {
    guarded.length = 0;
    const cases: { headers: Record<string, string>; body?: string; chunks?: Buffer[] }[] = [
      { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'amount=5&to=bob' },
      { headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'hello' },
      { headers: { 'content-type': 'application/octet-stream' }, chunks: [randomBytes(700), randomBytes(900)] },
      { headers: { 'content-type': 'application/json' }, body: '{"job": 1}' },
      { headers: {}, body: '' },
      { headers: { 'content-length': '0', 'content-type': 'text/plain' } },
    ];
    for (const c of cases) {
      const r = await raw(proxyUrl, { method: 'POST', path: '/g/transfer?mode=x', headers: { ...bearer(), ...c.headers }, body: c.body, chunks: c.chunks });
      assert.equal(r.status, 200, `${JSON.stringify(c.headers)}: ${r.body}`);
    }
    // a path the proxy decodes and re-encodes reads the same at the guard
    const enc = await raw(proxyUrl, { method: 'POST', path: '/g/caf%c3%a9/x%20y?q=a+b', headers: bearer() });
    assert.equal(enc.status, 200, enc.body);
    assert.equal(seen.at(-1)!.url, '/g/caf%C3%A9/x%20y?q=a%20b');
    assert.deepEqual(guarded.map((g) => g.ok), [...cases.map(() => true), true]);
  });

  it('frames bodies itself: Transfer-Encoding games are refused, never passed on', async () => {
    const n = seen.length;
    const head = (te: string, extra = '') => `POST /t HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-type: text/plain\r\ntransfer-encoding: ${te}\r\n${extra}\r\n`;
    // a transfer coding besides chunked: 501 from the proxy
    for (const te of ['gzip, chunked', 'chunked, identity', 'identity', 'x-custom, chunked']) {
      const r = await rawSocket(proxyUrl, [`${head(te)}5\r\nhello\r\n0\r\n\r\n`], /\r\n\r\n[^]*\}/);
      assert.match(r.text, /^HTTP\/1\.1 (501|400) /, `${te}: ${r.text}`);
    }
    // chunked with a Content-Length, or chunked twice: refused by Node's parser (400), never forwarded
    for (const [te, extra] of [['chunked', 'content-length: 3\r\n'], ['chunked, chunked', '']]) {
      const r = await rawSocket(proxyUrl, [`${head(te!, extra)}5\r\nhello\r\n0\r\n\r\n`]);
      assert.match(r.text, /^HTTP\/1\.1 400 /, `${te} ${extra}: ${r.text}`);
    }
    assert.equal(seen.length, n, 'none reached the upstream');
    // plain chunked passes, and goes upstream with a length
    const ok = await raw(proxyUrl, { method: 'POST', path: '/t', headers: { ...bearer(), 'content-type': 'text/plain', 'transfer-encoding': 'chunked' }, chunks: [Buffer.from('he'), Buffer.from('llo')] });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(seen.at(-1)!.headers['transfer-encoding'], undefined);
    assert.equal(seen.at(-1)!.headers['content-length'], '5');
  });

  it('authenticates the task token, task state included, before reading a body', async () => {
    // a bad token with a declared body that never comes: answered at once, not after the request timeout
    const t0 = Date.now();
    const bad = await headOnly(proxyUrl, '/json', { authorization: 'Bearer not-a-token', 'content-type': 'application/json', 'content-length': '1000' });
    assert.equal(bad.status, 401, bad.body);
    assert.ok(Date.now() - t0 < 2500, `answered in ${Date.now() - t0} ms, before the 3 s request timeout`);
    // a token whose task was revoked (never used before, so nothing is cached)
    const task = await env.createTask({ scope: { tools: ['h.*'], resources: [], destinations: ['127.0.0.1:*'] } });
    const revokedToken = await env.taskToken(task.id);
    const rv = await env.admin.call('POST', `/v1/tasks/${task.id}/revoke`, { reason: 'test' });
    assert.equal(rv.status, 200, JSON.stringify(rv.body));
    // what the proxy asks Writ: the token's own task, if active
    const cur = await env.admin.call('GET', '/v1/tasks/current', undefined, { token });
    assert.equal(cur.status, 200, JSON.stringify(cur.body));
    assert.equal(cur.body.task_id, taskId);
    assert.equal(cur.body.status, 'active');
    const ended = await env.admin.call('GET', '/v1/tasks/current', undefined, { token: revokedToken });
    assert.equal(ended.status, 401);
    assert.equal(ended.body.error.code, 'task_not_active');
    // none, a bad one, and an operator's (undefined: the admin token) are not task tokens
    for (const t of [null, 'not-a-token', undefined]) {
      const r = await env.admin.call('GET', '/v1/tasks/current', undefined, { token: t });
      assert.equal(r.status, 401, `${t}: ${JSON.stringify(r.body)}`);
    }
    for (const path of ['/json', '/t']) {
      const r = await headOnly(proxyUrl, path, { authorization: `Bearer ${revokedToken}`, 'content-type': path === '/json' ? 'application/json' : 'text/plain', 'content-length': '1000' });
      assert.equal(r.status, 401, r.body);
      assert.equal(JSON.parse(r.body).error.code, 'task_not_active', path);
    }
    const chunked = await headOnly(proxyUrl, '/t', { authorization: `Bearer ${revokedToken}`, 'content-type': 'text/plain', 'transfer-encoding': 'chunked' }, '5\r\nhello\r\n');
    assert.equal(chunked.status, 401, chunked.body);
    // `Expect: 100-continue`: no `100 Continue` (so no body) for a bad or ended token; a valid one gets it
    for (const t of ['not-a-token', revokedToken]) {
      const refusedText = await expectContinue(proxyUrl, '/t', { authorization: `Bearer ${t}`, 'content-type': 'text/plain' }, 'hello');
      assert.match(refusedText, /^HTTP\/1\.1 401 /, refusedText);
    }
    const okText = await expectContinue(proxyUrl, '/t', { ...bearer(), 'content-type': 'text/plain' }, 'hello');
    assert.match(okText, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, okText);
    assert.equal(seen.at(-1)!.body, 'hello');
  });

  it('times out slow headers and slow bodies (408), and a valid request still passes', async () => {
    // headers that never end: closed after headers_timeout_ms (1 s), well before the 60 s the test waits
    const slowHeaders = await rawSocket(proxyUrl, [`GET /plain HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\n`]);
    assert.match(slowHeaders.text, /^HTTP\/1\.1 408/, slowHeaders.text);
    // a body that never ends: closed after request_timeout_ms (3 s)
    const slowBody = await rawSocket(proxyUrl, [`POST /t HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-type: text/plain\r\ncontent-length: 100\r\n\r\nabc`]);
    assert.ok(slowBody.text === '' || /^HTTP\/1\.1 408/.test(slowBody.text), slowBody.text);
    assert.ok(slowBody.ms >= 2500, `closed after ${slowBody.ms} ms`);
    const n = seen.length;
    assert.equal(seen.length, n);
    const ok = await raw(proxyUrl, { method: 'POST', path: '/t', headers: { ...bearer(), 'content-type': 'text/plain' }, body: 'fine' });
    assert.equal(ok.status, 200, ok.body);
  });
});

describe('SDK HTTP guard: the action token binds the whole request', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let server: http.Server;
  let url: string;
  let token: string;
  const handled: string[] = [];

  before(async () => {
    env = await setup('sqlite');
    const jwks = await (await fetch(`${env.url}/.well-known/jwks.json`)).json();
    const audience = 'https://pay.example';
    const guard = createHttpActionGuard({ issuer: env.url, audience, jwks: jwks as never, tool: 'pay.transfer' });
    server = http.createServer(async (req, res) => {
      const ok = await guard(req, res);
      if (!ok) return;
      handled.push(ok.body.toString());
      res.writeHead(200).end('done');
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const task = await env.createTask({ scope: { tools: ['pay.*'], resources: [], destinations: [] }, max_actions: 100 });
    token = await env.taskToken(task.id);
  });

  after(async () => {
    server?.closeAllConnections();
    await new Promise<void>((ok) => (server ? server.close(() => ok()) : ok()));
    await env?.teardown();
  });

  /** An action token for POST /transfer with these arguments besides method, path and query. */
  const authorize = async (extra: Record<string, unknown> = {}) => {
    const r = await env.admin.call('POST', '/v1/authorize', { tool: 'pay.transfer', arguments: { method: 'POST', path: '/transfer', query: {}, ...extra }, audience: 'https://pay.example' }, { token });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.decision, 'allow', JSON.stringify(r.body));
    return r.body.action_token as string;
  };
  const send = (actionToken: string, opts: { headers?: Record<string, string>; body?: string; chunks?: Buffer[] }) =>
    raw(url, { method: 'POST', path: '/transfer', headers: { 'writ-action-token': actionToken, ...opts.headers }, body: opts.body, chunks: opts.chunks });
  const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

  it('refuses a body on a request authorized without one: form, text, bytes, JSON, chunked', async () => {
    const n = handled.length;
    const bodies: { headers: Record<string, string>; body?: string; chunks?: Buffer[] }[] = [
      { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'amount=99999&to=mallory' },
      { headers: { 'content-type': 'text/plain' }, body: 'amount=99999' },
      { headers: { 'content-type': 'application/octet-stream' }, body: 'x' },
      { headers: {}, body: 'amount=99999' },
      { headers: { 'content-type': 'application/json' }, body: '{"amount":99999}' },
      { headers: { 'content-type': 'application/x-www-form-urlencoded' }, chunks: [Buffer.from('amount=9'), Buffer.from('9999')] },
    ];
    for (const b of bodies) {
      const r = await send(await authorize(), b);
      assert.equal(r.status, 403, `${JSON.stringify(b)}: ${r.body}`);
      assert.equal(JSON.parse(r.body).error.code, 'arguments_mismatch');
    }
    assert.equal(handled.length, n, 'the handler never ran');
  });

  it('accepts no body, an empty body and an empty chunked body alike when authorized without one', async () => {
    const empties: { headers?: Record<string, string>; body?: string; chunks?: Buffer[] }[] = [{}, { headers: { 'content-length': '0' } }, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' }, { chunks: [], headers: { 'transfer-encoding': 'chunked' } }];
    for (const b of empties) {
      const r = await send(await authorize(), b);
      assert.equal(r.status, 200, `${JSON.stringify(b)}: ${r.body}`);
    }
  });

  it('binds a non-JSON body by its digest and its content type, exactly', async () => {
    const form = 'amount=5&to=bob';
    const ct = 'application/x-www-form-urlencoded';
    const ok = await send(await authorize({ body_sha256: sha(form), content_type: ct }), { headers: { 'content-type': ct }, body: form });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(handled.at(-1), form);
    const chunkedOk = await send(await authorize({ body_sha256: sha(form), content_type: ct }), { headers: { 'content-type': ct }, chunks: [Buffer.from('amount=5'), Buffer.from('&to=bob')] });
    assert.equal(chunkedOk.status, 200, chunkedOk.body);
    const variants: { headers: Record<string, string>; body: string }[] = [
      { headers: { 'content-type': ct }, body: 'amount=5&to=mallory' }, // other bytes
      { headers: { 'content-type': ct }, body: `${form}&to=mallory` }, // more bytes
      { headers: { 'content-type': 'text/plain' }, body: form }, // other type, same bytes
      { headers: { 'content-type': `${ct}; charset=utf-16` }, body: form }, // other parameters
      { headers: {}, body: form }, // no type
      { headers: { 'content-type': 'application/json' }, body: form }, // claims JSON (and is not)
    ];
    for (const v of variants) {
      const r = await send(await authorize({ body_sha256: sha(form), content_type: ct }), v);
      assert.ok(r.status === 403 || r.status === 400, `${JSON.stringify(v)}: ${r.status} ${r.body}`);
    }
    // a JSON body is bound as parsed; the same text sent as text/plain is another request
    const json = '{"amount":5}';
    assert.equal((await send(await authorize({ body: { amount: 5 } }), { headers: { 'content-type': 'application/json' }, body: json })).status, 200);
    const asText = await send(await authorize({ body: { amount: 5 } }), { headers: { 'content-type': 'text/plain' }, body: json });
    assert.equal(asText.status, 403);
    // an authorization for a body: sending none is refused as well
    const none = await send(await authorize({ body_sha256: sha(form), content_type: ct }), { headers: { 'content-type': ct } });
    assert.equal(none.status, 403);
  });

  it('refuses a missing, bad or foreign token before reading the body', async () => {
    const n = handled.length;
    const other = await env.admin.call('POST', '/v1/authorize', { tool: 'pay.refund', arguments: { method: 'POST', path: '/transfer', query: {} }, audience: 'https://pay.example' }, { token });
    assert.equal(other.body.decision, 'allow', JSON.stringify(other.body));
    const cases: [Record<string, string>, number, string][] = [
      [{}, 401, 'action_token_required'],
      [{ 'writ-action-token': 'not-a-token' }, 401, 'invalid_token'],
      [{ 'writ-action-token': other.body.action_token }, 403, 'wrong_tool'],
    ];
    for (const [headers, status, code] of cases) {
      // the body never comes: the answer must not wait for it
      const r = await headOnly(url, '/transfer', { ...headers, 'content-type': 'text/plain', 'content-length': '100000' });
      assert.equal(r.status, status, r.body);
      assert.equal(JSON.parse(r.body).error.code, code);
    }
    assert.equal(handled.length, n);
  });

  it('reads the path and query the way the proxy does, and refuses ones parsers read differently', async () => {
    const r = await raw(url, { method: 'POST', path: '/transfer?a=1;b=2', headers: { 'writ-action-token': await authorize() } });
    assert.equal(r.status, 400);
    assert.equal(JSON.parse(r.body).error.code, 'invalid_query');
    for (const path of ['/transfer;x=1', '/x/..;/transfer', '/x/%2e%2e/transfer', '/transfer%3b', '/x%2Ftransfer']) {
      const p = await raw(url, { method: 'POST', path, headers: { 'writ-action-token': await authorize() } });
      assert.equal(p.status, 400, path);
      assert.equal(JSON.parse(p.body).error.code, 'invalid_path', path);
    }
    // one decoded path whatever the encoding: the token for `/transfer` fits `/%74ransfer`
    const dec = await raw(url, { method: 'POST', path: '/%74ransfer', headers: { 'writ-action-token': await authorize() } });
    assert.equal(dec.status, 200, dec.body);
    const q = await raw(url, { method: 'POST', path: '/transfer?ids[]=1&ids[]=2', headers: { 'writ-action-token': await authorize({ query: { ids: ['1', '2'] } }) } });
    assert.equal(q.status, 200, q.body);
    const qOther = await raw(url, { method: 'POST', path: '/transfer?ids=1&ids=2&ids=3', headers: { 'writ-action-token': await authorize({ query: { ids: ['1', '2'] } }) } });
    assert.equal(qOther.status, 403, qOther.body);
  });
});
