import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { REPO, startServe } from './helpers/serve-process.js';
import { spawnChild } from './helpers/child.js';

describe('writ serve: WRIT_BOOTSTRAP_TOKEN', () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-serve-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  // random tokens (a weak one is refused at start, see below)
  const first = 'wop_N7pQ2vXk9RzL4mW8tYc3bH6jF1sD5gA0eU_iO-yKqTo';
  const env = (token: string | undefined) => {
    // sealed keys: an unsealed store is warned about at start (test/ops-safe-defaults.test.ts)
    const e: NodeJS.ProcessEnv = { ...process.env, WRIT_BOOTSTRAP_TOKEN: token, WRIT_KEY_ENCRYPTION_KEY: 'kek_Zq7-Lp2_Xw9!Vb4#Nc6$Md1%Kf3^Rh5&Tg8' };
    delete e.WRIT_DATABASE_URL;
    if (token === undefined) delete e.WRIT_BOOTSTRAP_TOKEN;
    return e;
  };
  /** starts on the shared data directory, asks for the agent list with `token`, stops */
  async function run(bootstrap: string | undefined, token: string) {
    const s = await startServe(['--data-dir', dir], env(bootstrap));
    try {
      const res = await fetch(`${s.url}/v1/agents`, { headers: { authorization: `Bearer ${token}` } });
      return { stdout: s.stdout(), stderr: s.stderr(), status: res.status };
    } finally {
      await s.kill();
    }
  }

  it('creates the first admin, then warns when a different token is ignored, and not for the same one', async () => {
    const created = await run(first, first);
    assert.match(created.stdout, /admin operator created with WRIT_BOOTSTRAP_TOKEN/);
    assert.equal(created.stderr, '');
    assert.equal(created.status, 200);

    // the store already has an admin: another token creates nothing, and says so
    const other = 'wop_Qm4Zr8Lx1Vb7Nc2Kd9Ws6Tf3Yh0Jg5Pe_Ua-Io8RnEv';
    const ignored = await run(other, other);
    assert.match(ignored.stderr, /warning: WRIT_BOOTSTRAP_TOKEN is ignored: the store in .* already has operators/);
    assert.match(ignored.stderr, /new --data-dir/);
    assert.equal(ignored.status, 401, 'the ignored token is no operator token');

    // the same token again is the admin's token: nothing to warn about
    const same = await run(first, first);
    assert.doesNotMatch(same.stderr, /warning/);
    assert.match(same.stdout, /already an operator token of this store/);
    assert.equal(same.status, 200);

    // no token: nothing to say either
    const none = await run(undefined, first);
    assert.doesNotMatch(none.stderr + none.stdout, /WRIT_BOOTSTRAP_TOKEN/);

    // the token of an operator that was disabled is no way in: it is ignored, and said so
    const db = new Database(join(dir, 'writ.db'));
    db.prepare('UPDATE operators SET disabled = 1').run();
    db.close();
    const disabled = await run(first, first);
    assert.match(disabled.stderr, /warning: WRIT_BOOTSTRAP_TOKEN is ignored/);
    assert.doesNotMatch(disabled.stdout, /already an operator token/);
    assert.equal(disabled.status, 401);
  });
});

describe('writ serve: a weak WRIT_BOOTSTRAP_TOKEN is refused at start', () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-serve-weak-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const weak: [string, string][] = [
    ['24 identical characters', 'x'.repeat(24)],
    ['a word with swaps, repeated', 'P4ssw0rd!P4ssw0rd!P4ssw0rd!'],
    ['a letters-only phrase', 'averylongandentirelyguessablebootstrapphrase'],
  ];
  for (const [what, token] of weak) {
    it(`refuses ${what}: exit 1 before listening, the token not echoed, no store written`, async () => {
      const env: NodeJS.ProcessEnv = { ...process.env, WRIT_BOOTSTRAP_TOKEN: token };
      delete env.WRIT_DATABASE_URL;
      const dataDir = join(dir, what.replace(/\W/g, '_'));
      const c = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--data-dir', dataDir], { cwd: REPO, env });
      const status = await c.exited;
      assert.equal(status.code, 1, c.stderr());
      assert.match(c.stderr(), /WRIT_BOOTSTRAP_TOKEN is too weak: about \d+ bits estimated, at least 128 needed/);
      assert.doesNotMatch(c.stdout(), /listening/);
      assert.equal((c.stdout() + c.stderr()).includes(token), false, 'the token is not printed');
      assert.equal(existsSync(dataDir), false, 'refused before the store is opened');
    });
  }
});
