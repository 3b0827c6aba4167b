import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Writ } from '../src/app/writ.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { TASK_TOKEN_TYP } from '../src/tokens/token-types.js';

const SECRET = 'correct horse battery staple, but longer than 32';

describe('private signing keys sealed at rest with WRIT_KEY_ENCRYPTION_KEY', () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-seal-'));
  const path = join(dir, 'writ.db');
  after(() => rmSync(dir, { recursive: true, force: true }));

  const open = (keyEncryptionKey?: string) => new Writ(new SqliteStore({ path }), { issuer: 'http://writ.test', ...(keyEncryptionKey ? { keyEncryptionKey } : {}) });

  it('stores no private key material, signs and verifies across restarts with the same secret', async () => {
    const w = open(SECRET);
    await w.init();
    const stored = await w.store.listSigningKeys();
    assert.equal(stored.length, 1);
    assert.equal(stored[0]!.privateJwk.kty, 'writ-sealed');
    assert.equal('d' in stored[0]!.privateJwk, false);
    const token = w.tokens.keys.signJwt(TASK_TOKEN_TYP, { iss: 'http://writ.test', sub: 'a', aud: 'http://writ.test', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 60, jti: 'j', txn: 't' });
    await w.close();
    const again = open(SECRET);
    await again.init();
    const p = await again.tokens.verifyTaskToken(token);
    assert.equal(p.taskId, 't');
    await again.close();
  });

  it('refuses to start without the secret, or with another one, rather than run without its keys', async () => {
    await assert.rejects(open().init(), /sealed: set WRIT_KEY_ENCRYPTION_KEY/);
    await assert.rejects(open('another secret that is also long enough!!').init(), /does not open/);
    assert.throws(() => open('short'), /at least 32 characters/);
  });
});
