/**
 * `writ serve --tls-cert/--tls-key`: HTTPS on node:https (issue 15 item 7). The certificate
 * is self-signed, made here with `openssl` (skipped, with the reason, where it is missing).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { startWarnings } from '../src/cli/start-warnings.js';
import { tlsFromSettings } from '../src/cli/serve.js';
import { spawnChild } from './helpers/child.js';
import { REPO } from './helpers/serve-process.js';

const hasOpenssl = spawnSync('openssl', ['version'], { encoding: 'utf8' }).status === 0;
const KEK = 'k'.repeat(8) + 'Zq7-Lp2_Xw9!Vb4#Nc6$Md1%Kf3^Rh5&';

function selfSigned(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { cert, key };
}

function get(url: string, ca?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, { ca, timeout: 30_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

describe('writ serve over TLS', { skip: hasOpenssl ? false : 'openssl not found: no certificate to test with' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-tls-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const env: NodeJS.ProcessEnv = { ...process.env, WRIT_KEY_ENCRYPTION_KEY: KEK };
  delete env.WRIT_DATABASE_URL;
  delete env.WRIT_ISSUER;

  it('serves HTTPS with the certificate, an https issuer, and no clear-text warning beyond loopback', async (t) => {
    const { cert, key } = selfSigned(dir, 'a');
    const c = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--host', '0.0.0.0', '--data-dir', join(dir, 'data'), '--tls-cert', cert, '--tls-key', key], { cwd: REPO, env, owner: t });
    const line = await c.waitForLine(/writ listening on /, { stream: 'stdout' });
    const m = /writ listening on https:\/\/0\.0\.0\.0:(\d+) \(issuer (\S+),/.exec(line);
    assert.ok(m, line);
    const port = Number(m[1]);
    assert.equal(m[2], `https://0.0.0.0:${port}`, 'the default issuer is https');
    const ca = readFileSync(cert);
    const health = await get(`https://localhost:${port}/healthz`, ca);
    assert.equal(health.status, 200);
    const meta = await get(`https://127.0.0.1:${port}/.well-known/oauth-authorization-server`, ca);
    assert.equal(JSON.parse(meta.body).issuer, `https://0.0.0.0:${port}`);
    // a client that does not trust the certificate is refused by TLS, before any HTTP
    await assert.rejects(get(`https://localhost:${port}/healthz`), /self.signed|certificate/i);
    // plain HTTP on the TLS port gets no answer
    const plain = await get(`http://127.0.0.1:${port}/healthz`).catch((err: Error) => ({ status: 0, body: err.message }));
    assert.notEqual(plain.status, 200);
    await c.stop();
    assert.doesNotMatch(c.stderr(), /beyond loopback without TLS/);
    assert.doesNotMatch(c.stderr(), /unsealed/);
  });

  it('refuses at start: one of the two, a missing file, a key that is not the certificate\'s, a file that is not PEM', async (t) => {
    const a = selfSigned(dir, 'b');
    const b = selfSigned(dir, 'c');
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    const cases: [string, string[], RegExp][] = [
      ['cert alone', ['--tls-cert', a.cert], /go together/],
      ['key alone (environment)', [], /go together/],
      ['missing file', ['--tls-cert', join(dir, 'nope.crt'), '--tls-key', a.key], /cannot read the TLS certificate .*ENOENT/],
      ['mismatched key', ['--tls-cert', a.cert, '--tls-key', b.key], /not usable together/],
      ['not PEM', ['--tls-cert', junk, '--tls-key', a.key], /not usable together/],
    ];
    for (const [what, args, why] of cases) {
      const e = what.includes('environment') ? { ...env, WRIT_TLS_KEY: a.key } : env;
      const c = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', join(dir, `bad-${what.replace(/\W/g, '')}`), ...args], { cwd: REPO, env: e, owner: t });
      const status = await c.exited;
      assert.notEqual(status.code, 0, what);
      assert.match(c.stderr(), why, what);
      assert.doesNotMatch(c.stdout(), /listening/, what);
      // the key's bytes never appear in the message
      assert.doesNotMatch(c.stderr(), /PRIVATE KEY/, what);
    }
    // the same checks in-process
    assert.equal(tlsFromSettings(undefined, undefined), undefined);
    assert.equal(tlsFromSettings('', ' '), undefined);
    assert.ok(tlsFromSettings(a.cert, a.key));
    assert.throws(() => tlsFromSettings(a.cert, b.key), /not usable together/);
  });
});

describe('start warnings with TLS', () => {
  it('no clear-text warning when Writ speaks TLS itself, whatever the issuer', () => {
    assert.deepEqual(startWarnings({ host: '0.0.0.0', issuer: 'https://0.0.0.0:8443', keysSealed: true, tls: true }), []);
    assert.deepEqual(startWarnings({ host: '0.0.0.0', issuer: 'http://writ.internal', keysSealed: true, tls: true }), []);
    assert.equal(startWarnings({ host: '0.0.0.0', issuer: 'http://writ.internal', keysSealed: true, tls: false }).length, 1);
  });
});
