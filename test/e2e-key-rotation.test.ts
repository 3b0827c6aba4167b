import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { ManualClock } from '../src/core/clock.js';
import { Api, backends, setup } from './helpers/harness.js';

for (const { backend, skip } of backends()) {
  describe(`signing key rotation (${backend})`, { skip }, () => {
    const clock = new ManualClock(Date.now());
    let env: Awaited<ReturnType<typeof setup>>;
    before(async () => {
      clock.set(Date.now()); // the suites run one after the other: start this one's clock now
      env = await setup(backend, { clock });
    });
    after(async () => env?.teardown());

    it('new tokens use the new key; tokens out already keep verifying until the old key retires', async () => {
      const task = await env.createTask({ ttl_seconds: 3600 });
      const oldToken = await env.taskToken(task.id);
      const oldKid = decodeProtectedHeader(oldToken).kid;
      const rotated = await env.admin.call('POST', '/v1/keys/rotate');
      assert.equal(rotated.status, 200);
      assert.notEqual(rotated.body.kid, oldKid);

      const jwks = (await (await fetch(`${env.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
      assert.deepEqual(jwks.keys.map((k) => k.kid).sort(), [oldKid, rotated.body.kid].sort(), 'both keys published');
      const newToken = await env.taskToken(task.id);
      assert.equal(decodeProtectedHeader(newToken).kid, rotated.body.kid);

      const a1 = await new Api(env.url, oldToken).call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: 'aud' });
      assert.equal(a1.body.decision, 'allow', 'a task token signed before the rotation still works');
      assert.equal(decodeProtectedHeader(a1.body.action_token).kid, rotated.body.kid, 'the action token is signed with the new key');
      await jwtVerify(a1.body.action_token, createLocalJWKSet(jwks as never), { audience: 'aud' });

      const listed = await env.admin.call('GET', '/v1/keys');
      const old = listed.body.keys.find((k: any) => k.kid === oldKid);
      assert.equal(old.signing, false);
      assert.ok(old.retired_at);
      assert.equal(JSON.stringify(listed.body).includes('"d"'), false, 'no private key material');

      // past the retirement the old key verifies nothing and leaves the JWKS
      clock.advance(16 * 60 * 1000 + 1000);
      const a2 = await new Api(env.url, oldToken).call('POST', '/v1/authorize', { tool: 'github.get', arguments: {}, audience: 'aud' });
      assert.equal(a2.status, 401);
      // the signature is checked before the claims: refused for its key, not for its age
      assert.equal(a2.body.error.code, 'invalid_token');
      const jwks2 = (await (await fetch(`${env.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
      assert.deepEqual(jwks2.keys.map((k) => k.kid), [rotated.body.kid]);
      const audit = await env.admin.call('GET', '/v1/audit?type=key.rotated');
      assert.equal(audit.body.entries.length, 1);
      assert.deepEqual(audit.body.entries[0].data.previous, [oldKid]);
    });

    it('only an admin rotates', async () => {
      const auditor = await env.admin.call('POST', '/v1/operators', { name: 'a', roles: ['auditor'] });
      const r = await new Api(env.url, auditor.body.token).call('POST', '/v1/keys/rotate');
      assert.equal(r.status, 403);
      assert.equal((await new Api(env.url, auditor.body.token).call('GET', '/v1/keys')).status, 200);
    });
  });
}
