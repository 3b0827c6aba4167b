import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { CHECKPOINT_TYP, checkpointClaims, verifyCheckpoint } from '../src/audit/checkpoint.js';
import { Writ } from '../src/app/writ.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { TASK_TOKEN_TYP } from '../src/tokens/token-types.js';
import { Api, backends, setup } from './helpers/harness.js';
import { runChild } from './helpers/child.js';

type KeySet = { keys: { kid: string; d?: string; x: string }[] };

for (const { backend, skip } of backends()) {
  describe(`audit checkpoints are signed with a key apart from the token keys (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    let jwks: KeySet;
    let auditKey: KeySet;
    before(async () => {
      env = await setup(backend, { config: { keyEncryptionKey: 'k'.repeat(40) } });
      jwks = (await (await fetch(`${env.url}/.well-known/jwks.json`)).json()) as KeySet;
      const r = await fetch(`${env.url}/.well-known/writ-audit-key`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /application\/json/);
      auditKey = (await r.json()) as KeySet;
    });
    after(async () => env?.teardown());

    it('the audit key is published on its own: one public key, never in the token JWKS, and no token key in it', () => {
      assert.equal(auditKey.keys.length, 1);
      assert.equal(auditKey.keys[0]!.d, undefined, 'public only');
      const tokenKids = jwks.keys.map((k) => k.kid);
      const tokenXs = jwks.keys.map((k) => k.x);
      assert.equal(tokenKids.includes(auditKey.keys[0]!.kid), false);
      assert.equal(tokenXs.includes(auditKey.keys[0]!.x), false, 'not the same key under another kid');
      assert.equal(JSON.stringify(jwks).includes('"d"'), false);
    });

    it('a checkpoint is signed by the audit key and verifies with it, not with the token JWKS', async () => {
      const cp = await env.admin.call('POST', '/v1/audit/checkpoints');
      assert.equal(cp.status, 201, JSON.stringify(cp.body));
      assert.equal(decodeProtectedHeader(cp.body.checkpoint).kid, auditKey.keys[0]!.kid);
      await verifyCheckpoint(cp.body.checkpoint, auditKey as never, env.writ.config.issuer);
      await assert.rejects(verifyCheckpoint(cp.body.checkpoint, jwks as never, env.writ.config.issuer));
      const ok = await env.admin.call('POST', '/v1/audit/verify', { checkpoints: [cp.body.checkpoint] });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.ok, true);
    });

    it('a checkpoint signed with a token-signing key (a leaked one) is refused: 400 invalid_checkpoint', async () => {
      const head = (await env.store.auditHead())!;
      const claims = checkpointClaims(env.writ.config.issuer, head, Date.now());
      const forged = env.writ.tokens.keys.signJwt(CHECKPOINT_TYP, claims);
      // near variants: the token key's signature under the audit key's kid; the right kid and typ, a token key's bytes
      const [h, p] = forged.split('.');
      const header = JSON.parse(Buffer.from(h!, 'base64url').toString());
      const relabelled = Buffer.from(JSON.stringify({ ...header, kid: auditKey.keys[0]!.kid })).toString('base64url');
      const relabelledToken = env.writ.tokens.keys.signJwt(CHECKPOINT_TYP, claims).replace(/^[^.]+/, relabelled);
      for (const cp of [forged, relabelledToken, `${relabelled}.${p}.${forged.split('.')[2]}`]) {
        const r = await env.admin.call('POST', '/v1/audit/verify', { checkpoints: [cp] });
        assert.equal(r.status, 400, JSON.stringify(r.body));
        assert.equal(r.body.error.code, 'invalid_checkpoint');
      }
    });

    it('the audit key signs nothing an agent or tool server accepts: a task token it signed is refused', async () => {
      const task = await env.createTask();
      const now = Math.floor(Date.now() / 1000);
      const token = env.writ.audit.checkpointKey.sign(TASK_TOKEN_TYP, { iss: env.writ.config.issuer, sub: env.agent.id, aud: env.writ.config.issuer, iat: now, exp: now + 300, jti: 'j-ckp', txn: task.id });
      const r = await new Api(env.url, token).call('GET', '/v1/tasks/current');
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, 'invalid_token');
      // and offline, a verifier using the token JWKS refuses it too
      await assert.rejects(jwtVerify(token, createLocalJWKSet(jwks as never)));
      // a checkpoint-typed JWT from the audit key is no task token either
      const typed = env.writ.audit.checkpointKey.sign(CHECKPOINT_TYP, { iss: env.writ.config.issuer, sub: env.agent.id, aud: env.writ.config.issuer, iat: now, exp: now + 300, jti: 'j2', txn: task.id });
      assert.equal((await new Api(env.url, typed).call('GET', '/v1/tasks/current')).status, 401);
    });

    it('the audit key is kept across restarts and token key rotations, and sealed at rest with the key-encryption key', async () => {
      assert.equal((await env.admin.call('POST', '/v1/keys/rotate')).status, 200);
      const second = new Writ(await env.opened.another(), { issuer: env.writ.config.issuer, keyEncryptionKey: 'k'.repeat(40) });
      await second.init();
      assert.deepEqual(second.audit.checkpointKey.jwks(), auditKey);
      const stored = await env.store.listCheckpointKeys();
      assert.equal(stored.length, 1);
      assert.equal(stored[0]!.privateJwk.kty, 'writ-sealed', 'the private key is sealed');
      assert.equal(JSON.stringify(stored[0]!.privateJwk).includes('"d"'), false);
      // without the key-encryption key the instance refuses to start, as for the token keys
      const third = new Writ(await env.opened.another(), { issuer: env.writ.config.issuer });
      await assert.rejects(third.init(), /sealed: set WRIT_KEY_ENCRYPTION_KEY/);
      await second.close();
      await third.close();
    });
  });
}

describe('offline verification pins the audit key (writ audit verify --data-dir --audit-key)', () => {
  let dir: string;
  let writ: Writ;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'writ-ckp-'));
    writ = new Writ(new SqliteStore({ path: join(dir, 'writ.db') }), { issuer: 'http://writ.test' });
    await writ.init();
    await writ.identity.bootstrapAdmin();
  });
  after(async () => {
    await writ.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('verifies with the pinned key; refuses with another key, a token key set, or a file that is no key set', async () => {
    const admin = (await writ.store.listOperators())[0]!;
    const cp = await writ.audit.checkpointAudit(admin);
    const files = {
      cp: join(dir, 'cp.jwt'),
      pinned: join(dir, 'audit-key.json'),
      other: join(dir, 'other-key.json'),
      tokenKeys: join(dir, 'jwks.json'),
      junk: join(dir, 'junk.json'),
    };
    writeFileSync(files.cp, cp.checkpoint);
    writeFileSync(files.pinned, JSON.stringify(writ.audit.checkpointKey.jwks()));
    writeFileSync(files.tokenKeys, JSON.stringify(writ.tokens.keys.jwks()));
    const otherDir = mkdtempSync(join(tmpdir(), 'writ-ckp-other-'));
    const other = new Writ(new SqliteStore({ path: join(otherDir, 'writ.db') }), { issuer: 'http://writ.test' });
    await other.init();
    writeFileSync(files.other, JSON.stringify(other.audit.checkpointKey.jwks()));
    await other.close();
    rmSync(otherDir, { recursive: true, force: true });
    writeFileSync(files.junk, '{"keys": []}');
    await writ.store.close();

    const run = (...extra: string[]) => runChild(process.execPath, ['bin/writ.js', 'audit', 'verify', '--data-dir', dir, '--checkpoint', files.cp, ...extra]);
    const ok = await run('--audit-key', files.pinned);
    assert.equal(ok.code, 0, ok.stderr);
    const byStore = await run();
    assert.equal(byStore.code, 0, byStore.stderr);
    for (const [file, code] of [[files.other, 'invalid_checkpoint'], [files.tokenKeys, 'invalid_checkpoint'], [files.junk, 'invalid_audit_key']] as const) {
      const r = await run('--audit-key', file);
      assert.equal(r.code, 1, `${file}: ${r.stdout}`);
      assert.match(r.stderr, new RegExp(code));
    }
    const online = await runChild(process.execPath, ['bin/writ.js', 'audit', 'verify', '--audit-key', files.pinned, '--checkpoint', files.cp]);
    assert.equal(online.code, 2, '--audit-key needs --data-dir');
    writ = new Writ(new SqliteStore({ path: join(dir, 'writ.db') }), { issuer: 'http://writ.test' });
  });
});
