import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { ConfigError, parseGatewayConfig, parseProxyConfig, upstreamAudience, upstreamDestination } from '../src/gateway/config.js';
import { canonicalPath, encodePath, HttpProxy, MaskSecrets } from '../src/gateway/http-proxy.js';
import { configuredToolLabels, labelsNotInWrit } from '../src/gateway/labels.js';
import { silentLog } from '../src/gateway/log.js';
import { McpGateway } from '../src/gateway/mcp-gateway.js';
import type { Authorizer } from '../src/gateway/authorizer.js';
import { approveCatalogs, emptyPins, PinStore, toolDigest, writePinFile } from '../src/gateway/pins.js';
import { MIN_SECRET_LENGTH, Redactor, resolveValue, SecretResolutionError } from '../src/gateway/secrets.js';
import { taskTokenSource } from '../src/gateway/mcp-serve.js';
import { httpActionArguments, isJsonContentType } from '@writ/sdk';

describe('gateway units', () => {
  it('pins hash {name, description, inputSchema} canonically and ignore everything else', () => {
    const a = { name: 'echo', description: 'Echo.', inputSchema: { type: 'object', properties: { b: {}, a: {} } } };
    const reordered = { inputSchema: { properties: { a: {}, b: {} }, type: 'object' }, description: 'Echo.', name: 'echo', annotations: { readOnlyHint: true }, title: 'x' };
    assert.equal(toolDigest(a), toolDigest(reordered));
    assert.notEqual(toolDigest(a), toolDigest({ ...a, description: 'Echo!' }));
    assert.notEqual(toolDigest(a), toolDigest({ ...a, inputSchema: { type: 'object' } }));

    const dir = mkdtempSync(join(tmpdir(), 'writ-pins-'));
    try {
      const path = join(dir, 'pins.json');
      const store = new PinStore(path);
      assert.equal(store.status('u', a), 'unpinned');
      const { pins, report } = approveCatalogs(emptyPins(), new Map([['u', [a, { name: 'other', inputSchema: {} }]]]));
      assert.deepEqual(report.map((r) => r.status), ['added', 'added']);
      writePinFile(path, pins);
      assert.equal(store.reload(), true);
      assert.equal(store.status('u', a), 'pinned');
      assert.equal(store.status('u', { ...a, description: 'rug' }), 'changed');
      // approving a subset keeps the rest; a full approval drops what is gone
      const partial = approveCatalogs(pins, new Map([['u', [{ ...a, description: 'v2' }]]]), { only: new Set(['u.echo']) });
      assert.deepEqual(partial.report.map((r) => [r.tool, r.status]), [['echo', 'changed']]);
      assert.ok(partial.pins.upstreams.u!.other);
      const full = approveCatalogs(pins, new Map([['u', [a]]]));
      assert.deepEqual(full.report.map((r) => [r.tool, r.status]), [['echo', 'unchanged'], ['other', 'removed']]);
      // a corrupt pin file pins nothing (fail closed)
      writeFileSync(path, '{"version": 2}');
      store.reload();
      assert.equal(store.status('u', a), 'unpinned');
      assert.ok(store.error);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('resolves secret references without ever putting a value in an error, and redacts them', () => {
    const redactor = new Redactor();
    const dir = mkdtempSync(join(tmpdir(), 'writ-sec-'));
    try {
      writeFileSync(join(dir, 'key'), 'file-secret-value\n');
      const ctx = { baseDir: dir, redactor, what: 'h', env: { TOKEN: 'env-secret-value' } };
      assert.equal(resolveValue({ env: 'TOKEN', prefix: 'Bearer ' }, ctx), 'Bearer env-secret-value');
      assert.equal(resolveValue({ file: 'key' }, ctx), 'file-secret-value');
      assert.equal(resolveValue('literal', ctx), 'literal');
      assert.throws(() => resolveValue({ env: 'MISSING' }, ctx), (e: Error) => e instanceof SecretResolutionError && /MISSING/.test(e.message));
      assert.throws(() => resolveValue({ file: 'nope' }, ctx), SecretResolutionError);
      assert.equal(redactor.redact('a env-secret-value b file-secret-value'), 'a [redacted] b [redacted]');
      assert.equal(redactor.redact('literal'), 'literal');
      const deep = redactor.redactDeep({ list: [{ t: 'x env-secret-value' }], ['file-secret-value']: 1 });
      assert.deepEqual(deep, { list: [{ t: 'x [redacted]' }], '[redacted]': 1 });
      const untouched = { a: 'clean' };
      assert.equal(redactor.redactDeep(untouched), untouched, 'no copy when nothing leaks');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start with a secret shorter than 8 characters (it cannot be redacted reliably)', () => {
    assert.equal(MIN_SECRET_LENGTH, 8);
    const short = 'k3y-s7x';
    const ctx = { baseDir: '/', redactor: new Redactor(), what: 'upstream `x` header `authorization`', env: { SHORT: short, OK: 'k3y-s7x8' } };
    const refused = (e: unknown) =>
      e instanceof SecretResolutionError && e instanceof ConfigError && /shorter than 8 characters/.test(e.message) && /header `authorization`/.test(e.message) && !e.message.includes(short);
    assert.throws(() => resolveValue({ env: 'SHORT' }, ctx), refused);
    assert.throws(() => resolveValue({ env: 'SHORT', prefix: 'Bearer ' }, ctx), refused, 'a prefix does not make the secret itself longer');
    assert.throws(() => new Redactor().add('abc', 'x'), SecretResolutionError);
    assert.equal(resolveValue({ env: 'OK' }, ctx), 'k3y-s7x8');
    assert.equal(ctx.redactor.redact('a k3y-s7x8 b'), 'a [redacted] b');

    // both the gateway and the proxy refuse to start
    const stub = {} as Authorizer;
    const env = { SHORT: short };
    const gw = parseGatewayConfig({ writ: { url: 'http://127.0.0.1:9' }, upstreams: [{ name: 'gh', transport: 'http', url: 'http://127.0.0.1:9/mcp', headers: { authorization: { env: 'SHORT' } } }] });
    assert.throws(() => new McpGateway({ config: gw, authorizer: stub, log: silentLog, env }), refused);
    const px = parseProxyConfig({ writ: { url: 'http://127.0.0.1:9' }, routes: [{ name: 'gh.api', path: '/gh/*', upstream: 'http://127.0.0.1:9', headers: { authorization: { env: 'SHORT', prefix: 'token ' } } }] });
    assert.throws(() => new HttpProxy({ config: px, authorizer: stub, log: silentLog, env }), refused);
  });

  it('reads no process environment: a reference resolves only in the environment passed in (issue 11 item 6)', () => {
    const name = 'WRIT_TEST_GATEWAY_ONLY_IN_PROCESS_ENV';
    process.env[name] = 'a-long-enough-process-secret';
    try {
      const unset = (e: unknown) => e instanceof SecretResolutionError && e.message.includes(`\`${name}\` is not set`) && !e.message.includes('a-long-enough');
      const stub = {} as Authorizer;
      const gw = parseGatewayConfig({ writ: { url: 'http://127.0.0.1:9' }, upstreams: [{ name: 'gh', transport: 'http', url: 'http://127.0.0.1:9/mcp', headers: { authorization: { env: name } } }] });
      assert.throws(() => new McpGateway({ config: gw, authorizer: stub, log: silentLog }), unset);
      assert.throws(() => new McpGateway({ config: gw, authorizer: stub, log: silentLog, env: {} }), unset);
      const px = parseProxyConfig({ writ: { url: 'http://127.0.0.1:9' }, routes: [{ name: 'gh.api', path: '/gh/*', upstream: 'http://127.0.0.1:9', headers: { authorization: { env: name } } }] });
      assert.throws(() => new HttpProxy({ config: px, authorizer: stub, log: silentLog }), unset);
      assert.equal(taskTokenSource({ envName: name, env: {} })(), undefined);
      // passed in, the same reference resolves
      const passed = new McpGateway({ config: gw, authorizer: stub, log: silentLog, env: { [name]: 'another-long-secret' } });
      assert.equal(passed.redactor.redact('x another-long-secret'), 'x [redacted]');
    } finally {
      delete process.env[name];
    }
  });

  it('canonicalizes proxy paths once: decoded for routing and policy, re-encoded one way for the upstream', () => {
    assert.deepEqual(canonicalPath('/api/%61dmin'), { segments: ['api', 'admin'], path: '/api/admin' });
    assert.equal(canonicalPath('/a/caf%C3%A9/x%20y').path, '/a/café/x y');
    for (const bad of ['/api/..', '/api/.', '/api/%2e%2e', '/api/.%2E/x', '/api/%2e', '/api/a%2Fb', '/api/a%2fb', '/api/a%5Cb', '/api/a\\b', '/api/%00', '/api/a%0Ab', '/api/%252e', '/api/%2561dmin', '/api/%E0%A4%A', '/api/%E0%A4', '/api/%FF', '/api/%zz', '//evil/x', 'api',
      // path parameters: servlet containers read `/api/public/..;/admin` as `/api/admin`
      '/api/public/..;/admin', '/api/public/.;/admin', '/api/..;', '/api/%2e%2e;/admin', '/api/%2e%2e%3b/admin', '/api/..%3B/admin', '/api/..%3b/admin',
      '/api/admin;jsessionid=1', '/api/a;b', '/api/;/x', '/api/%3b', '/api/%253b/x', '/api/..%253B/x', '/api/..%5C/x', '/api/..\\;/x']) {
      assert.throws(() => canonicalPath(bad), (e: any) => e.status === 400 && e.code === 'invalid_path', bad);
    }
    // one decoded path, one encoding, whatever the agent sent
    for (const raw of ['/v2/x:y@z', '/v2/x%3Ay%40z', '/v2/%78%3a%79@z']) assert.equal(encodePath(canonicalPath(raw).path), '/v2/x:y@z', raw);
    assert.equal(encodePath('/a/café/x y/50%/a?b#c'), '/a/caf%C3%A9/x%20y/50%25/a%3Fb%23c');
    assert.equal(encodePath(canonicalPath('/a/%7E~-_.!*()$&+,=').path), '/a/~~-_.!*()$&+,=');
  });

  it('finds the configured tool labels that Writ does not hold', () => {
    const config = parseGatewayConfig({
      writ: { url: 'http://127.0.0.1:9' },
      upstreams: [
        { name: 'gh', transport: 'http', url: 'http://127.0.0.1:9/mcp', tools: { delete_repo: { labels: ['writes', 'sensitive'] }, get_issue: { labels: [] }, create_issue: { labels: ['writes'] } } },
        { name: 'pay', transport: 'http', url: 'http://127.0.0.1:9/mcp', tools: { transfer: { labels: ['sensitive', 'external'] } } },
      ],
    });
    const wanted = configuredToolLabels(config);
    assert.deepEqual([...wanted.keys()].sort(), ['gh.create_issue', 'gh.delete_repo', 'pay.transfer']);
    assert.deepEqual(labelsNotInWrit(wanted, []), [
      { tool: 'gh.create_issue', missing: ['writes'] },
      { tool: 'gh.delete_repo', missing: ['sensitive', 'writes'] },
      { tool: 'pay.transfer', missing: ['external', 'sensitive'] },
    ]);
    // a tool's labels in Writ are the union over the patterns it matches
    const writ = [
      { pattern: 'gh.*', labels: ['writes'] },
      { pattern: 'gh.delete_*', labels: ['sensitive'] },
      { pattern: 'pay.transfer', labels: ['sensitive'] },
      { pattern: 'pay.transfer_all', labels: ['external'] },
    ];
    assert.deepEqual(labelsNotInWrit(wanted, writ), [{ tool: 'pay.transfer', missing: ['external'] }]);
    assert.deepEqual(labelsNotInWrit(wanted, [...writ, { pattern: 'pay.*', labels: ['external', 'extra'] }]), []);
  });

  it('masks secrets in a streamed body, across chunk boundaries, keeping the length', async () => {
    const secret = Buffer.from('s3cr3t-token-value');
    const text = `head ${secret} middle ${secret}${secret} tail`;
    for (const size of [1, 3, 7, 18, 1000]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < text.length; i += size) chunks.push(Buffer.from(text.slice(i, i + size)));
      const out: Buffer[] = [];
      for await (const c of Readable.from(chunks).pipe(new MaskSecrets([secret]))) out.push(c as Buffer);
      const got = Buffer.concat(out).toString();
      assert.equal(got.length, text.length);
      assert.ok(!got.includes('s3cr3t'), `chunk size ${size}`);
      assert.equal(got, text.split(secret.toString()).join('*'.repeat(secret.length)));
    }
  });

  it('reads the stdio task token from a file, again when it changes, or from the environment', () => {
    const dir = mkdtempSync(join(tmpdir(), 'writ-tok-'));
    try {
      const file = join(dir, 'token');
      const fromFile = taskTokenSource({ file, envName: 'X', env: { X: 'env-token-not-read' } });
      assert.equal(fromFile(), undefined);
      writeFileSync(file, 'first-token\n');
      assert.equal(fromFile(), 'first-token');
      writeFileSync(file, 'second-token-longer\n');
      assert.equal(fromFile(), 'second-token-longer');
      assert.equal(taskTokenSource({ envName: 'T', env: { T: ' env-token ' } })(), 'env-token');
      assert.equal(taskTokenSource({ envName: 'T', env: {} })(), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('validates configurations', () => {
    const base = { writ: { url: 'http://127.0.0.1:8080' }, upstreams: [{ name: 'gh', transport: 'http', url: 'https://mcp.example:8443/mcp' }] };
    const c = parseGatewayConfig(base, '/etc/writ/gateway.json');
    assert.equal(c.pins_file, '/etc/writ/gateway.pins.json');
    assert.equal(upstreamAudience(c.upstreams[0]!), 'mcp:gh');
    assert.equal(upstreamDestination(c.upstreams[0]!), 'mcp.example:8443');
    assert.throws(() => parseGatewayConfig({ ...base, upstreams: [...base.upstreams, ...base.upstreams] }), /configured twice/);
    assert.throws(() => parseGatewayConfig({ ...base, upstreams: [{ ...base.upstreams[0], name: 'a.b' }] }), ConfigError);
    assert.throws(() => parseGatewayConfig({ ...base, extra: 1 }), ConfigError);
    assert.equal(c.catalog_max_age_ms, 5000);
    assert.equal(parseGatewayConfig({ ...base, catalog_max_age_ms: 0 }).catalog_max_age_ms, 0);
    assert.throws(() => parseGatewayConfig({ ...base, catalog_max_age_ms: 600_000 }), ConfigError);
    assert.throws(() => parseGatewayConfig({ ...base, catalog_max_age_seconds: 60 }), /replaced by `catalog_max_age_ms`/);
    assert.throws(() => parseGatewayConfig({ ...base, upstreams: [{ ...base.upstreams[0], headers: { 'x-key': { env: '' } } }] }), ConfigError);
    const route = { name: 'gh.issues', path: '/gh/*', upstream: 'https://api.github.com' };
    assert.equal(parseProxyConfig({ writ: base.writ, routes: [route] }).routes[0]!.body, 'json');
    assert.throws(() => parseProxyConfig({ writ: base.writ, routes: [{ ...route, path: '/a/*/b' }] }), /last path segment/);
    assert.throws(() => parseProxyConfig({ writ: base.writ, routes: [{ ...route, name: 'bad name' }] }), ConfigError);
  });

  it('builds HTTP action arguments the same way on both sides', () => {
    assert.deepEqual(httpActionArguments({ method: 'post', path: '/v1/x', search: '?a=1&b=2&a=3', body: { k: 1 } }), {
      method: 'POST',
      path: '/v1/x',
      query: { a: ['1', '3'], b: '2' },
      body: { k: 1 },
    });
    assert.deepEqual(httpActionArguments({ method: 'GET', path: '/' }), { method: 'GET', path: '/', query: {} });
    assert.ok(isJsonContentType('application/json; charset=utf-8'));
    assert.ok(isJsonContentType('application/merge-patch+json'));
    assert.ok(!isJsonContentType('text/json-ish'));
    assert.ok(!isJsonContentType('application/jsonx'));
  });
});
