import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from '../src/core/digest.js';
import { diffPolicyText } from '../src/policy/policy-diff.js';
import { DEFAULT_POLICY } from '../src/policy/schema.js';
import { parseIfMatch } from '../src/server/http-server.js';
import { backends, BOOT_TOKEN, setup } from './helpers/harness.js';
import { writ } from './helpers/cli.js';

const V2 = `${DEFAULT_POLICY}\n@id("no-deletes")\nforbid (principal, action, resource) when { resource.name like "*.delete" };\n`;
const V3 = `${DEFAULT_POLICY}\n@id("no-drops")\nforbid (principal, action, resource) when { resource.name like "*.drop" };\n`;

describe('policy diff', () => {
  it('unified hunks, equal texts give nothing', () => {
    assert.equal(diffPolicyText('a\nb\n', 'a\nb\n'), '');
    assert.equal(diffPolicyText('a\nb\nc\n', 'a\nB\nc\n'), '@@ -1,4 +1,4 @@\n a\n-b\n+B\n c\n \n');
    const d = diffPolicyText(DEFAULT_POLICY, V2);
    assert.ok(d.split('\n').filter((l) => l.startsWith('+')).length === 3 && !/^-/m.test(d), d);
  });
});

describe('If-Match parsing (RFC 9110 §13.1.1)', () => {
  it('a strong tag, a bare version, `*`; a weak tag never matches; a list or junk is refused', () => {
    assert.equal(parseIfMatch('"abc"'), 'abc');
    assert.equal(parseIfMatch('abc'), 'abc');
    assert.equal(parseIfMatch(undefined), undefined);
    assert.equal(parseIfMatch(' * '), undefined);
    // a weak tag cannot equal a version: the store answers 412
    assert.equal(parseIfMatch('W/"abc"'), 'W/abc');
    for (const bad of ['"a", "b"', '"a",', '""', 'a b', '"a', `"${'x'.repeat(200)}"`]) {
      assert.throws(() => parseIfMatch(bad), (e: { code: string; status: number }) => e.code === 'invalid_if_match' && e.status === 400, bad);
    }
  });
});

for (const { backend, skip } of backends()) {
  describe(`policy history, If-Match and rollback (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    let dir: string;
    before(async () => {
      env = await setup(backend);
      dir = mkdtempSync(join(tmpdir(), 'writ-polhist-'));
    });
    after(async () => {
      await env?.teardown();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const put = (text: string, ifMatch?: string) =>
      fetch(`${env.url}/v1/policies`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${BOOT_TOKEN}`, 'content-type': 'application/json', ...(ifMatch !== undefined ? { 'if-match': ifMatch } : {}) },
        body: JSON.stringify({ policies: text }),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as any, etag: r.headers.get('etag') }));
    const auditCount = async () => (await env.admin.call('GET', '/v1/audit?type=policy.updated&limit=1000')).body.entries.length;

    it('GET lists the versions with who, when, hash and diff; ETag is the version', async () => {
      const g = await env.admin.call('GET', '/v1/policies');
      assert.equal(g.status, 200);
      assert.equal(g.headers.get('etag'), `"${g.body.version}"`);
      assert.equal(g.body.history.length, 1);
      const first = g.body.history[0];
      assert.equal(first.version, g.body.version);
      assert.equal(first.previous, null);
      assert.equal(first.set_by, 'system');
      assert.ok(!Number.isNaN(Date.parse(first.set_at)));
      assert.equal(first.diff, diffPolicyText('', DEFAULT_POLICY));
      assert.equal(first.diff_sha256, sha256Hex(first.diff));
    });

    it('PUT with the current version in If-Match succeeds; a stale one is 412 and changes nothing', async () => {
      const v1 = (await env.admin.call('GET', '/v1/policies')).body.version;
      const before = await auditCount();
      const ok = await put(V2, `"${v1}"`);
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal(ok.etag, `"${ok.body.version}"`);
      assert.equal(ok.body.previous, v1);
      assert.equal(ok.body.diff_sha256, sha256Hex(diffPolicyText(DEFAULT_POLICY, V2)));
      assert.equal(await auditCount(), before + 1);
      // the audit entry carries the diff's hash
      const entries = (await env.admin.call('GET', '/v1/audit?type=policy.updated&limit=1000')).body.entries;
      assert.equal(entries[entries.length - 1].data.diff_sha256, ok.body.diff_sha256);

      // stale (v1 is no longer active), weak, never stored: 412, nothing written, v2 still active
      for (const tag of [`"${v1}"`, `W/"${ok.body.version}"`, '"deadbeef"']) {
        const stale = await put(V3, tag);
        assert.equal(stale.status, 412, tag);
        assert.equal(stale.body.error.code, 'policy_version_mismatch', tag);
      }
      const junk = await put(V3, '"a", "b"');
      assert.equal(junk.status, 400);
      assert.equal(junk.body.error.code, 'invalid_if_match');
      assert.equal(await auditCount(), before + 1);
      assert.equal((await env.admin.call('GET', '/v1/policies')).body.version, ok.body.version);
    });

    it('two operators editing the same version at once: exactly one wins, the other gets 412', async () => {
      const cur = (await env.admin.call('GET', '/v1/policies')).body.version;
      const [a, b] = await Promise.all([put(`${V3}// a\n`, `"${cur}"`), put(`${V3}// b\n`, `"${cur}"`)]);
      assert.deepEqual([a.status, b.status].sort(), [200, 412], JSON.stringify([a.body, b.body]));
      const winner = a.status === 200 ? a.body.version : b.body.version;
      assert.equal((await env.admin.call('GET', '/v1/policies')).body.version, winner);
    });

    it('GET /v1/policies/{version} returns a stored version; an unknown one is 404', async () => {
      const h = (await env.admin.call('GET', '/v1/policies')).body.history;
      const oldest = h[h.length - 1];
      const g = await env.admin.call('GET', `/v1/policies/${oldest.version}`);
      assert.equal(g.status, 200);
      assert.equal(g.body.policies, DEFAULT_POLICY);
      const missing = await env.admin.call('GET', '/v1/policies/nope');
      assert.equal(missing.status, 404);
      assert.equal(missing.body.error.code, 'policy_version_not_found');
    });

    it('the history is shown to admins and auditors only', async () => {
      const op = await env.admin.call('POST', '/v1/operators', { name: 'req', roles: ['requester'] });
      assert.equal(op.status, 201, JSON.stringify(op.body));
      const g = await env.admin.call('GET', '/v1/policies', undefined, { token: op.body.token });
      assert.equal(g.status, 200);
      assert.equal(g.body.history, undefined);
      assert.equal(typeof g.body.version, 'string');
    });

    it('CLI: diff and rollback (conditional on the version it read)', { skip: backend !== 'sqlite' && 'the CLI is the same on both stores', timeout: 240_000 }, async () => {
      const cli = (args: string[]) => writ(args, { WRIT_URL: env.url, WRIT_TOKEN: BOOT_TOKEN });
      const h = (await env.admin.call('GET', '/v1/policies')).body.history;
      const first = h[h.length - 1].version;
      const d = await cli(['policy', 'diff', first, 'current']);
      assert.equal(d.code, 1, d.stderr);
      assert.match(d.stdout, new RegExp(`^--- ${first}\\n\\+\\+\\+ current\\n@@ `));
      const same = await cli(['policy', 'diff', first, first]);
      assert.equal(same.code, 0, same.stderr);
      assert.equal(same.stdout, '');
      const rb = await cli(['policy', 'rollback', first]);
      assert.equal(rb.code, 0, rb.stderr);
      const now = (await env.admin.call('GET', '/v1/policies')).body;
      assert.equal(now.version, first);
      assert.equal(now.history[0].version, first);
      assert.equal(now.history[0].previous, h[0].version);
      assert.match(now.history[0].set_by, /^operator:/);
      const again = await cli(['policy', 'rollback', first]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /already_active/);
      const unknown = await cli(['policy', 'rollback', 'nope']);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /policy_version_not_found/);
      // set --if-match with a stale version
      const f = join(dir, 'p.cedar');
      writeFileSync(f, V2);
      const stale = await cli(['policy', 'set', f, '--if-match', h[0].version]);
      assert.equal(stale.code, 1);
      assert.match(stale.stderr, /policy_version_mismatch/);
    });
  });
}
