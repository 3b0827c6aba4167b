import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { ConfigError, parseProxyConfig } from '../src/gateway/config.js';
import { DEFAULT_FORWARD_HEADERS, forwardedHeaders, isNeverForwarded } from '../src/gateway/forward-headers.js';
import { MaskSecrets } from '../src/gateway/http-proxy.js';
import { base64Cores, secretForms } from '../src/gateway/secret-forms.js';
import { MIN_SECRET_LENGTH, REDACTED, Redactor } from '../src/gateway/secrets.js';
import { carriesTaskToken } from '../src/gateway/task-token-forms.js';
import { httpActionArguments, InvalidQueryError, parseQuery } from '@writ/sdk';

const refused = (search: string) =>
  assert.throws(() => parseQuery(search), (e: unknown) => e instanceof InvalidQueryError && e.code === 'invalid_query' && e.status === 400, search);

describe('query: one reading for policy and the upstream', () => {
  it('reads plain, repeated, `[]` and `[key]` names the way bracket-aware parsers do', () => {
    assert.deepEqual(parseQuery('?a=1&b=x+y&c=%41'), { query: { a: '1', b: 'x y', c: 'A' }, encoded: '?a=1&b=x%20y&c=A' });
    // a repeated name is an array, in order (policy reading `query.id` then sees no scalar)
    assert.deepEqual(parseQuery('id=1&id=2&id=3').query, { id: ['1', '2', '3'] });
    // `id[]` is `id` to PHP, Rack and qs: policy sees it as `id`, an array, even with one value
    assert.deepEqual(parseQuery('id[]=5').query, { id: ['5'] });
    assert.deepEqual(parseQuery('id%5B%5D=5&id%5b%5d=6').query, { id: ['5', '6'] });
    assert.deepEqual(parseQuery('f[status]=open&f[owner][name]=x').query, { f: { status: 'open', owner: { name: 'x' } } });
    assert.deepEqual(parseQuery('f[s]=1&f[s]=2').query, { f: { s: ['1', '2'] } });
    assert.deepEqual(parseQuery('f[tags][]=a&f[tags][]=b').query, { f: { tags: ['a', 'b'] } });
    // encoded names are decoded once, as every parser does
    assert.deepEqual(parseQuery('%69d=5').query, { id: '5' });
    // inherited property names are ordinary names
    assert.deepEqual(parseQuery('toString=1&toString=2&hasOwnProperty=x').query, { toString: ['1', '2'], hasOwnProperty: 'x' });
    assert.deepEqual(parseQuery('a&b=&&c').query, { a: '', b: '', c: '' });
    assert.deepEqual(parseQuery('').query, {});
    assert.deepEqual(parseQuery('?').query, {});
    // a value may hold a (single) `%` and `=`
    assert.deepEqual(parseQuery('p=100%25&q=a%3Db%3Bc').query, { p: '100%', q: 'a=b;c' });
  });

  it('re-encodes one way, so what the upstream parses is what policy saw', () => {
    for (const search of ['?a=1&a=2', '?id[]=5&f[x]=1', '?q=caf%C3%A9+au+lait', '?x=a%2Bb', "?s=!'()*~", '?p=100%25', '?%69d=1']) {
      const once = parseQuery(search);
      const twice = parseQuery(once.encoded);
      assert.deepEqual(twice.query, once.query, search);
      assert.equal(twice.encoded, once.encoded, search);
      assert.ok(!/[;+!'()*[\]]/.test(once.encoded.slice(1).replace(/=/g, '')), `${search} -> ${once.encoded}`);
    }
    assert.equal(parseQuery('?x=a+b').encoded, '?x=a%20b');
    assert.equal(parseQuery('?x=a%2Bb').encoded, '?x=a%2Bb');
  });

  it('refuses what parsers read differently', () => {
    // `;` as a separator (old CGI, some servlet and Python parsers), raw or as `..;`
    for (const s of ['a=1;id=5', 'a=1;', ';id=5', 'id;=5', 'a=..;/x']) refused(s);
    // bad encoding, double-encoded names, control characters and NUL
    for (const s of ['a=%zz', 'a=%E0%A4%A', '%zz=1', 'id%2561=1', 'id%255B%255D=1', 'i%2564=1', 'a%00=1', 'a=b%00c', 'a%0A=1', '=1', '=']) refused(s);
    // brackets: unbalanced, too deep, `[]` before the end, prototype names
    for (const s of ['a[=1', 'a]=1', 'a[b=1', 'a[b]]=1', '[a]=1', 'a[][b]=1', 'a[b][c][d][e][f][g]=1', '__proto__[x]=1', 'a[__proto__]=1', 'constructor=1', 'a[prototype][x]=1']) refused(s);
    // one name in two shapes: parsers merge, override or fail
    for (const s of ['a=1&a[b]=2', 'a[b]=2&a=1', 'a=1&a[]=2', 'a[]=1&a=2', 'a[]=1&a[b]=2', 'a[b]=1&a[]=2', 'a[b]=1&a[b][c]=2', 'a[b][c]=1&a[b]=2', 'a[b]=1&a[b][]=2']) refused(s);
    assert.doesNotThrow(() => parseQuery(`a[b][c][d][e][f]=1`));
  });

  it('is what the action arguments hold, for the proxy and the tool-server guard alike', () => {
    assert.deepEqual(httpActionArguments({ method: 'get', path: '/x', search: '?ids[]=1&ids[]=2' }), { method: 'GET', path: '/x', query: { ids: ['1', '2'] } });
    assert.throws(() => httpActionArguments({ method: 'GET', path: '/x', search: '?a=1;b=2' }), InvalidQueryError);
    // a non-JSON body is bound by its digest and content type; none without a digest
    assert.deepEqual(httpActionArguments({ method: 'POST', path: '/t', bodySha256: 'ab', contentType: ' text/plain ' }), { method: 'POST', path: '/t', query: {}, body_sha256: 'ab', content_type: 'text/plain' });
    assert.deepEqual(httpActionArguments({ method: 'POST', path: '/t', bodySha256: 'ab' }), { method: 'POST', path: '/t', query: {}, body_sha256: 'ab' });
    assert.deepEqual(httpActionArguments({ method: 'POST', path: '/t', contentType: 'text/plain' }), { method: 'POST', path: '/t', query: {} });
  });
});

describe('forwarded headers', () => {
  const never = [
    'X-HTTP-Method-Override', 'x-http-method', 'X-Method-Override', 'X-Original-URL', 'x-original-uri', 'X-Original-Method', 'X-Rewrite-URL', 'x-rewrite-path',
    'X-Forwarded-For', 'X-Forwarded-Host', 'x-forwarded-proto', 'X-Forwarded-Prefix', 'x-forwarded-port', 'Forwarded', 'Host', 'X-Host', 'X-Real-IP', 'Via',
    'Transfer-Encoding', 'TE', 'Content-Length', 'Trailer', 'Expect', 'Connection', 'Upgrade', 'Keep-Alive', 'Proxy-Authorization', 'Proxy-Connection',
    'Authorization', 'Cookie', 'Writ-Action-Token', 'Accept-Encoding', 'Content-Encoding', 'X-Middleware-Subrequest', 'Max-Forwards', 'True-Client-IP',
  ];

  it('never forwards headers that change the request upstream, and a route cannot list them', () => {
    for (const h of never) assert.ok(isNeverForwarded(h), h);
    for (const h of DEFAULT_FORWARD_HEADERS) assert.ok(!isNeverForwarded(h), h);
    for (const h of ['x-trace', 'accept', 'if-match', 'x-api-version']) assert.ok(!isNeverForwarded(h), h);
    const base = { writ: { url: 'http://127.0.0.1:9' }, routes: [{ name: 'a.b', path: '/a', upstream: 'http://127.0.0.1:9' }] };
    for (const h of never) {
      assert.throws(() => parseProxyConfig({ ...base, routes: [{ ...base.routes[0], forward_headers: ['accept', h] }] }), (e: unknown) => e instanceof ConfigError && /never forwarded/.test((e as Error).message), h);
    }
    assert.deepEqual(parseProxyConfig({ ...base, routes: [{ ...base.routes[0], forward_headers: ['X-Api-Version'] }] }).routes[0]!.forward_headers, ['X-Api-Version']);
    assert.throws(() => parseProxyConfig({ ...base, routes: [{ ...base.routes[0], forward_headers: ['bad header'] }] }), ConfigError);
  });

  it('passes only the allow-listed ones, less those `Connection` names and those the route injects', () => {
    const incoming = {
      accept: 'application/json',
      'x-trace': 't1',
      'x-http-method-override': 'DELETE',
      'x-forwarded-host': 'evil.example',
      'x-original-url': '/admin',
      'user-agent': 'agent',
      'if-match': '"e1"',
      connection: 'close, if-match',
      'content-type': 'text/plain',
    };
    const allowed = new Set([...DEFAULT_FORWARD_HEADERS, 'x-http-method-override', 'x-forwarded-host']);
    assert.deepEqual(forwardedHeaders(incoming, allowed, new Set(['user-agent'])), { accept: 'application/json', 'content-type': 'text/plain' });
    assert.deepEqual(forwardedHeaders(incoming, new Set(['x-trace']), new Set()), { 'x-trace': 't1' });
  });

  it('takes header and request timeouts, defaulting to the service\'s own', () => {
    const base = { writ: { url: 'http://127.0.0.1:9' }, routes: [{ name: 'a.b', path: '/a', upstream: 'http://127.0.0.1:9' }] };
    const d = parseProxyConfig(base);
    assert.equal(d.headers_timeout_ms, 10_000);
    assert.equal(d.request_timeout_ms, 30_000);
    assert.equal(parseProxyConfig({ ...base, headers_timeout_ms: 500, request_timeout_ms: 900 }).request_timeout_ms, 900);
    for (const bad of [{ headers_timeout_ms: 0 }, { request_timeout_ms: 50 }, { headers_timeout_ms: 5000, request_timeout_ms: 1000 }, { request_timeout_ms: '30s' }]) {
      assert.throws(() => parseProxyConfig({ ...base, ...bad }), ConfigError, JSON.stringify(bad));
    }
  });
});

describe('secret masking: the common transforms of each secret', () => {
  const secret = 'sk_live_51Hx"q/é\\Zp+tok=';

  it('lists base64, base64url, percent, JSON and hex forms, longest first, none shorter than the minimum', () => {
    const forms = secretForms(secret, MIN_SECRET_LENGTH);
    const b = Buffer.from(secret);
    for (const f of [
      secret,
      b.toString('base64'),
      b.toString('base64').replace(/=+$/, ''),
      b.toString('base64url'),
      encodeURIComponent(secret),
      encodeURIComponent(secret).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
      new URLSearchParams({ s: secret }).toString().slice(2),
      JSON.stringify(secret).slice(1, -1),
      JSON.stringify(secret).slice(1, -1).replace(/\//g, '\\/'),
      b.toString('hex'),
      b.toString('hex').toUpperCase(),
    ]) {
      assert.ok(forms.includes(f), f);
    }
    assert.ok(forms.includes('sk_live_51Hx\\"q/\\u00e9\\\\Zp+tok='), 'JSON with \\u escapes (Python json.dumps)');
    assert.ok(forms.every((f) => f.length >= MIN_SECRET_LENGTH));
    assert.deepEqual([...forms].sort((x, y) => y.length - x.length), forms);
  });

  it('finds the secret base64-encoded inside longer text, at each of the three alignments, in both alphabets', () => {
    const s = Buffer.from('abcdefghij-secret');
    const cores = base64Cores(s);
    for (const prefix of ['', 'x', 'xy', 'xyz', 'Authorization: Bearer ', 'Bearer  ']) {
      for (const suffix of ['', 'a', 'ab', 'abc', '\r\nHost: h']) {
        const whole = Buffer.concat([Buffer.from(prefix), s, Buffer.from(suffix)]);
        for (const enc of [whole.toString('base64'), whole.toString('base64url')]) {
          assert.ok(cores.some((c) => enc.includes(c)), `${JSON.stringify(prefix)} + secret + ${JSON.stringify(suffix)} -> ${enc}`);
        }
      }
    }
    // and nothing close: another value at the same place is not matched
    const other = Buffer.from('Bearer abcdefghij-secreT').toString('base64');
    assert.ok(!cores.some((c) => other.includes(c) && c.length > 20));
  });

  it('redacts every form in what the MCP gateway returns, also inside serialized JSON strings', () => {
    const r = new Redactor();
    r.add(secret, 'test');
    const b64 = Buffer.from(`user:${secret}`).toString('base64');
    const cases = [
      `plain ${secret} end`,
      `b64 ${Buffer.from(secret).toString('base64')}`,
      `b64url ${Buffer.from(secret).toString('base64url')}`,
      `basic ${b64}`,
      `url https://x.example/?k=${encodeURIComponent(secret)}`,
      `form k=${new URLSearchParams({ s: secret }).toString().slice(2)}`,
      `json {"k":${JSON.stringify(secret)}}`,
      `hex ${Buffer.from(secret).toString('hex')}`,
    ];
    for (const c of cases) {
      assert.ok(r.leaks(c), c);
      const out = r.redact(c);
      assert.ok(out.includes(REDACTED), c);
      assert.ok(!r.leaks(out), `${c} -> ${out}`);
    }
    // a tool result whose text is itself JSON holding the secret (escaped twice when serialized)
    const result = { content: [{ type: 'text', text: JSON.stringify({ token: secret }) }] };
    const red = r.redactDeep(result);
    assert.ok(!JSON.stringify(red).includes('51Hx'), JSON.stringify(red));
    const base64Result = { content: [{ type: 'text', text: `echo: ${Buffer.from(`Bearer ${secret}`).toString('base64')}` }] };
    assert.ok(r.redactDeep(base64Result).content[0]!.text.includes(REDACTED));
    // not serializable: walked, not passed unchecked
    const odd = { n: 1n, s: secret };
    assert.equal(r.redactDeep(odd).s, REDACTED);
  });

  it('masks each form in a streamed body across chunk boundaries, keeping the length', async () => {
    const r = new Redactor();
    r.add(secret, 'test');
    const forms = [Buffer.from(secret).toString('base64'), encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1), Buffer.from(`Bearer ${secret}`).toString('base64url')];
    const text = `head ${forms.join(' mid ')} tail`;
    for (const size of [1, 5, 16, 4096]) {
      const chunks: Buffer[] = [];
      const bytes = Buffer.from(text);
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
      const out: Buffer[] = [];
      for await (const c of Readable.from(chunks).pipe(new MaskSecrets(r.patterns().map((p) => Buffer.from(p))))) out.push(c as Buffer);
      const got = Buffer.concat(out).toString();
      assert.equal(Buffer.concat(out).length, Buffer.byteLength(text), `chunk size ${size}: bytes are masked one for one`);
      assert.ok(!r.leaks(got), `chunk size ${size}: ${got}`);
      assert.ok(got.startsWith('head ') && got.endsWith(' tail'));
    }
  });
});

describe('the task token in what goes to a tool', () => {
  const token = `eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhZ2VudCIsInR4biI6IjEyMyJ9.${randomBytes(64).toString('base64url')}`;
  const dotted = (c: string) => token.replace(/\./g, c);

  it('finds it through the escapes a receiver undoes by itself, and its common transforms', () => {
    const mixedCase = [...token].map((c, i) => `%${c.charCodeAt(0).toString(16)[i % 2 ? 'toUpperCase' : 'toLowerCase']()}`).join('');
    for (const text of [
      token, `x ${token} y`, dotted('%2E'), dotted('%2e'), dotted('%252E'), dotted('%25252e'), mixedCase, `%65${token.slice(1)}`,
      token.replace('eyJ', '\\u0065yJ'), dotted('\\u002E'), dotted('\\u002e'), dotted('%5Cu002E'), `${token}%`, `${token}\\u00`,
      Buffer.from(token).toString('base64'), Buffer.from(`Bearer ${token}`).toString('base64'), Buffer.from(token).toString('base64url'), Buffer.from(token).toString('hex'),
    ]) {
      assert.equal(carriesTaskToken(text, token), true, text.slice(0, 60));
      assert.equal(carriesTaskToken(Buffer.from(text), token), true, `bytes: ${text.slice(0, 60)}`);
    }
  });

  it('finds nothing else: other text, escapes that decode to other bytes, truncated escapes, another token', () => {
    for (const text of ['', 'hello %zz \\u12 %2 \\u00', dotted('%C2%AE'), dotted('\\u00ae'), dotted('%2'), token.slice(0, -1), token.slice(1), `caf%C3%A9 ${token.slice(0, 40)}`, token.toUpperCase()]) {
      assert.equal(carriesTaskToken(text, token), false, text.slice(0, 60));
    }
    assert.equal(carriesTaskToken(token, `${token.slice(0, -4)}AAAA`), false);
    assert.equal(carriesTaskToken('anything', ''), false);
  });
});
