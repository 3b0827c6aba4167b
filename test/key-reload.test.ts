import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeProtectedHeader } from 'jose';
import { systemClock } from '../src/core/clock.js';
import type { Store } from '../src/store/store.js';
import { KeyRing } from '../src/tokens/key-ring.js';
import { TASK_TOKEN_TYP } from '../src/tokens/token-types.js';
import { verifyWritJwt } from '../src/tokens/verify-token.js';
import { backends, openTestStore, type OpenedStore } from './helpers/harness.js';

const ISSUER = 'http://writ.test';

/** Counts the key reads a store answers (a reload is one). */
function counting(store: Store): { store: Store; reads: () => number } {
  let n = 0;
  const wrapped = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'listSigningKeys') {
        return async () => {
          n += 1;
          return target.listSigningKeys();
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { store: wrapped, reads: () => n };
}

const sign = (ring: KeyRing) => {
  const now = Math.floor(Date.now() / 1000);
  return ring.signJwt(TASK_TOKEN_TYP, { iss: ISSUER, sub: 'agent', aud: ISSUER, iat: now, exp: now + 300, jti: `j${Math.random()}`, txn: 't' });
};
const verify = (ring: KeyRing, token: string) => verifyWritJwt(ring, token, { typ: TASK_TOKEN_TYP, issuer: ISSUER, audience: ISSUER });

for (const { backend, skip } of backends()) {
  describe(`key ring reloads: an unknown kid always reloads; concurrent reloads are shared (${backend})`, { skip }, () => {
    let opened: OpenedStore;
    let a: KeyRing;
    let b: KeyRing;
    let bReads: () => number;
    before(async () => {
      opened = await openTestStore(backend);
      await opened.store.migrate();
      a = new KeyRing(opened.store, systemClock);
      await a.init();
      const other = counting(await opened.another());
      bReads = other.reads;
      b = new KeyRing(other.store, systemClock);
      await b.init();
    });
    after(async () => opened?.cleanup());

    it('two rings on one store start with the one first key', async () => {
      assert.deepEqual(a.jwks(), b.jwks());
      assert.equal(a.jwks().keys.length, 1);
    });

    it('a token signed with a key rotated in on the other instance verifies at once, even right after a reload', async () => {
      for (let i = 0; i < 3; i++) {
        // B has just reloaded (this is what a 1-second throttle used to skip)
        await b.reload();
        await a.rotate('test', 3600);
        const token = sign(a);
        assert.equal(b.publicKey(String(decodeProtectedHeader(token).kid)), null, 'B does not know the new key yet');
        const before = bReads();
        const { payload } = await verify(b, token);
        assert.equal(payload.sub, 'agent');
        assert.equal(bReads(), before + 1, 'one reload');
      }
    });

    it('concurrent verifications of tokens with unknown kids share reloads: at most two reads for a burst, each caller sees a read that began after it asked', async () => {
      await a.rotate('test', 3600);
      const tokens = Array.from({ length: 50 }, () => sign(a));
      const before = bReads();
      const results = await Promise.all(tokens.map((t) => verify(b, t)));
      assert.equal(results.length, 50);
      assert.ok(bReads() - before <= 2, `${bReads() - before} reads`);
      // a kid that exists nowhere is refused after its reload, and never skips one
      const bogus = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: TASK_TOKEN_TYP, kid: 'nope' })).toString('base64url');
      const [, payload, sig] = sign(a).split('.');
      const r0 = bReads();
      for (let i = 0; i < 3; i++) {
        await assert.rejects(verify(b, `${bogus}.${payload}.${sig}`), { reason: 'invalid_token', message: 'the token was not signed by a key of this issuer' });
      }
      assert.equal(bReads() - r0, 3, 'each unknown kid reloads, however recent the last reload');
    });

    it('a failed reload does not wedge later ones', async () => {
      let fail = true;
      const flaky = new Proxy(opened.store, {
        get(target, prop, receiver) {
          if (prop === 'listSigningKeys') {
            return async () => {
              if (fail) throw new Error('store down');
              return target.listSigningKeys();
            };
          }
          const v = Reflect.get(target, prop, receiver);
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
      const ring = new KeyRing(flaky, systemClock);
      await assert.rejects(Promise.all([ring.reload(), ring.reload(), ring.reload()]), /store down/);
      fail = false;
      await ring.reload();
      assert.ok(ring.ready());
    });
  });
}
