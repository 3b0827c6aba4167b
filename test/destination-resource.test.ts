import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { destinationPatternProblem, destinationProblem } from '../src/core/destination.js';
import { resourceProblem } from '../src/core/resource.js';
import { scopeFormProblem } from '../src/core/scope-forms.js';
import { ConfigError, parseGatewayConfig, parseProxyConfig, upstreamDestination } from '../src/gateway/config.js';
import { destinationPatternIncludes } from '../src/tasks/scope-subset.js';
import { checkScope, matchDestination } from '../src/core/scope.js';

describe('destination grammar (issue 10 item 4)', () => {
  const valid = [
    'api.github.com',
    'api.github.com:443',
    'github.com',
    'localhost',
    'localhost:8080',
    'xn--bcher-kva.de',
    'xn--bcher-kva.de:443',
    'my_service',
    '10.0.0.1',
    '10.0.0.1:5432',
    '[::1]',
    '[::1]:8443',
    '[2001:db8::1]',
    'stdio:local',
    'mcp:github',
    'db:staging',
    'queue:orders.eu-1',
    'a',
    'db.staging.internal:5432',
  ];
  for (const d of valid) it(`accepts ${d}`, () => assert.equal(destinationProblem(d), null));

  const invalid = [
    // the examples: separators a URL parser reads as the end of the host
    'evil.example#.github.com',
    'evil.example/.github.com',
    'evil.example?.github.com',
    'evil.example\\.github.com',
    // userinfo
    'github.com@evil.example',
    'user:pass@evil.example',
    'api.github.com@evil.example:443',
    // uppercase, trailing dot, empty labels
    'API.github.com',
    'api.GitHub.com',
    'api.github.com.',
    'api.github.com.:443',
    'api..github.com',
    '.github.com',
    '-api.github.com',
    'api-.github.com',
    // IDN: U-labels and invalid punycode
    'bücher.de',
    'BÜCHER.de',
    'xn--zz.de',
    'xn--a.com',
    // percent-encoding, whitespace, controls
    'evil%2eexample',
    'evil.example%2f.github.com',
    'api.github.com ',
    ' api.github.com',
    'api.github .com',
    'api.github.com\t',
    'api.github.com\n',
    // URLs and paths
    'https://api.github.com',
    'api.github.com/repos',
    '//api.github.com',
    // ports
    'api.github.com:',
    'api.github.com:0',
    'api.github.com:65536',
    'api.github.com:0443',
    'api.github.com:443:443',
    'api.github.com:-1',
    // IPv4 spelled other ways (WHATWG parsers read them as 127.0.0.1)
    '127.1',
    '0x7f.0.0.1',
    '0177.0.0.1',
    '256.1.1.1',
    // IPv6 not as the URL standard writes it
    '::1',
    '[::1',
    '[0:0:0:0:0:0:0:1]',
    '[::1]x',
    '[::1]:',
    // kind:name with forbidden characters or case
    'stdio:Local',
    'STDIO:local',
    'stdio:local/../x',
    'stdio:loc#al',
    'stdio:lo?cal',
    'stdio:lo\\cal',
    'stdio:me@local',
    'stdio:lo%63al',
    'stdio:lo cal',
    'evil.example:x.github.com',
    ':local',
    'stdio:',
    '',
  ];
  for (const d of invalid) it(`refuses ${JSON.stringify(d)}`, () => assert.notEqual(destinationProblem(d), null));

  it('patterns: `*` fills labels, ports and names; anything else is refused', () => {
    for (const p of ['*', '**', '*.github.com', 'api.github.com:*', '*.github.com:*', 'stdio:*', '*:local', 'api-*.github.com', '10.0.0.*']) {
      assert.equal(destinationPatternProblem(p), null, p);
    }
    for (const p of ['*.GitHub.com', '*.github.com.', 'evil#*.github.com', '*.github.com/x', '*@github.com', 'https://*.github.com', '*.github.com\\', 'stdio:*/x']) {
      assert.notEqual(destinationPatternProblem(p), null, p);
    }
  });

  it('matching: `*` never crosses `:`; `*` alone matches all', () => {
    assert.equal(matchDestination('*.github.com', 'api.github.com'), true);
    assert.equal(matchDestination('*.github.com', 'evil:x.github.com'), false);
    assert.equal(matchDestination('*.github.com', 'api.github.com:443'), false);
    assert.equal(matchDestination('*.github.com:*', 'api.github.com:443'), true);
    assert.equal(matchDestination('*', 'stdio:local'), true);
    assert.equal(matchDestination('*', 'api.github.com:443'), true);
    assert.equal(matchDestination('stdio:*', 'stdio:local'), true);
    assert.equal(matchDestination('stdio:*', 'mcp:local'), false);
    assert.equal(matchDestination('[::1]:*', '[::1]:8443'), true);
    const scope = { tools: ['*'], resources: [], destinations: ['*.github.com'] };
    assert.equal(checkScope(scope, { tool: 'x', destination: 'evil:x.github.com' })?.code, 'destination_out_of_scope');
    assert.equal(checkScope(scope, { tool: 'x', destination: 'api.github.com' }), null);
  });

  it('delegation inclusion follows the same rule', () => {
    assert.equal(destinationPatternIncludes('*', '*.github.com'), true);
    assert.equal(destinationPatternIncludes('*.github.com', '*'), false);
    assert.equal(destinationPatternIncludes('*.github.com', 'api.github.com'), true);
    assert.equal(destinationPatternIncludes('*.github.com', '*:x.github.com'), false);
    assert.equal(destinationPatternIncludes('*.github.com', 'api.github.com:*'), false);
    assert.equal(destinationPatternIncludes('*.github.com:*', 'api.github.com:443'), true);
    assert.equal(destinationPatternIncludes('stdio:*', 'stdio:local'), true);
    assert.equal(destinationPatternIncludes('*:local', 'stdio:local'), true);
    assert.equal(destinationPatternIncludes('*com', '*:com'), false);
  });
});

describe('resource form (issue 10 item 4)', () => {
  const valid = ['repo:acme/api', 'repo:acme/api/issues/12', 'db:staging/reports', 'acct:ops', 'repo:acme/api.v2', 'file:a/.hidden', 'file:a/...', 'repo:acme/%41pi', 'x', 'repo:acme/a;b'];
  for (const r of valid) it(`accepts ${r}`, () => assert.equal(resourceProblem(r), null));
  const invalid = [
    'repo:acme/../other/secrets',
    'repo:acme/./api',
    'repo:acme/..',
    'repo:acme/.',
    'repo:../x',
    'repo:..',
    '../etc/passwd',
    'repo:acme/..;/other',
    'repo:acme/.;x/api',
    'repo:acme/%2e%2e/other',
    'repo:acme/%2E%2E/other',
    'repo:acme/.%2e/other',
    'repo:acme%2f..%2fother',
    'repo:acme/%252e%252e/other',
    'repo:acme\\..\\other',
    'repo:acme\\api',
    'repo:acme/%5c',
    'repo:acme/%00',
    'repo:acme/a b',
    'repo:acme/\u00e9',
    'repo:acme/\uff0e\uff0e/other',
    '',
  ];
  for (const r of invalid) it(`refuses ${JSON.stringify(r)}`, () => assert.notEqual(resourceProblem(r), null));

  // `?` and `#` end a URL's path as `;` ends a servlet segment: a URL-shaped resource
  // `https://files.example/acme/..?x` matches `https://files.example/acme/*` and resolves
  // (WHATWG URL, RFC 3986 §5.2.4) to `https://files.example/?x`
  const delimited = [
    'https://files.example/acme/..?x',
    'https://files.example/acme/..#x',
    'https://files.example/acme/..?',
    'https://files.example/acme/..#',
    'https://files.example/acme/.?x',
    'https://files.example/acme/.#x',
    'https://files.example/acme/..%3fx',
    'https://files.example/acme/..%3Fx',
    'https://files.example/acme/..%23x',
    'https://files.example/acme/.%2e?x',
    'repo:acme/..?/other',
    'repo:acme/..#/other',
    'repo:..?x',
    '..?x',
  ];
  for (const r of delimited) it(`refuses the dot segment ended by a query or fragment ${JSON.stringify(r)}`, () => assert.notEqual(resourceProblem(r), null));
  it('the `..` segments it refuses are those a URL parser resolves out of the prefix', () => {
    for (const r of delimited.filter((x) => x.startsWith('https:') && x.includes('/..') && !/%(3f|23|2e)/i.test(x))) {
      assert.notEqual(new URL(r).pathname.startsWith('/acme/'), true, `${r} resolves inside /acme/`);
    }
  });
  it('refuses such a resource pattern in a task or delegation scope', () => {
    const p = scopeFormProblem({ tools: ['*'], resources: ['https://files.example/acme/..?*'] });
    assert.equal(p?.code, 'invalid_resource');
  });
  for (const r of ['https://files.example/acme/a?x', 'https://files.example/acme/..a?x', 'https://files.example/acme/a..#x', 'repo:acme/a%3fb', 'repo:acme/...?x', 'https://files.example/acme/x?y=..']) {
    it(`still accepts ${JSON.stringify(r)}`, () => assert.equal(resourceProblem(r), null));
  }
});

describe('gateway configuration: destinations and resource templates in canonical form (issue 10 item 4)', () => {
  const gw = (destination: unknown) =>
    parseGatewayConfig({ writ: { url: 'http://127.0.0.1:9' }, upstreams: [{ name: 'gh', transport: 'http', url: 'http://127.0.0.1:9/mcp', destination }] });
  const px = (over: Record<string, unknown>) =>
    parseProxyConfig({ writ: { url: 'http://127.0.0.1:9' }, routes: [{ name: 'gh.api', path: '/gh/:owner/:repo', upstream: 'http://127.0.0.1:9', ...over }] });
  it('refuses non-canonical destinations, accepts canonical ones and null', () => {
    for (const d of ['API.github.com', 'evil.example#.github.com', 'api.github.com.', 'https://api.github.com', 'stdio:Local']) {
      assert.throws(() => gw(d), ConfigError, d);
      assert.throws(() => px({ destination: d }), ConfigError, d);
    }
    for (const d of ['api.github.com', 'stdio:local', '127.0.0.1:9', null]) {
      gw(d);
      px({ destination: d });
    }
  });
  it('refuses resource templates with dot segments once filled; accepts `{param}` templates', () => {
    for (const r of ['repo:{owner}/../{repo}', 'repo:{owner}/%2e%2e/x', 'repo:{owner}\\{repo}']) assert.throws(() => px({ resource: r }), ConfigError, r);
    px({ resource: 'repo:{owner}/{repo}' });
  });
  it('the default destination of an HTTP upstream (the URL host, as WHATWG writes it) is canonical', () => {
    for (const url of ['http://API.GitHub.com/mcp', 'http://bücher.de:8080/mcp', 'http://[0:0:0:0:0:0:0:1]:9/mcp', 'http://127.1:9/mcp']) {
      const c = parseGatewayConfig({ writ: { url: 'http://127.0.0.1:9' }, upstreams: [{ name: 'gh', transport: 'http', url }] });
      const d = upstreamDestination(c.upstreams[0]!);
      assert.equal(destinationProblem(d!), null, `${url} -> ${d}`);
    }
  });
});
