import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isLoopbackHost, startWarnings } from '../src/cli/start-warnings.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { REPO, startServe } from './helpers/serve-process.js';
import { spawnChild } from './helpers/child.js';

const mode = (p: string) => statSync(p).mode & 0o777;

describe('safe defaults on disk (issue 15 item 7)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'writ-disk-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('creates the data directory 0700 and writ.db, -wal, -shm 0600 under a permissive umask', async () => {
    const old = process.umask(0o000);
    try {
      const dataDir = join(dir, 'fresh', 'nested');
      const store = new SqliteStore({ path: join(dataDir, 'writ.db') });
      await store.migrate();
      assert.equal(mode(dataDir), 0o700);
      assert.equal(mode(join(dir, 'fresh')), 0o700, 'every directory it creates');
      for (const f of ['writ.db', 'writ.db-wal', 'writ.db-shm']) {
        assert.ok(existsSync(join(dataDir, f)), f);
        assert.equal(mode(join(dataDir, f)), 0o600, f);
      }
      await store.close();
    } finally {
      process.umask(old);
    }
  });

  it('tightens a world-readable store left by an older version, and leaves an existing directory alone', async () => {
    const dataDir = join(dir, 'old');
    const store0 = new SqliteStore({ path: join(dataDir, 'writ.db') });
    await store0.migrate();
    await store0.close();
    chmodSync(dataDir, 0o755);
    chmodSync(join(dataDir, 'writ.db'), 0o644);
    writeFileSync(join(dataDir, 'writ.db-wal'), '');
    chmodSync(join(dataDir, 'writ.db-wal'), 0o666);
    const store = new SqliteStore({ path: join(dataDir, 'writ.db') });
    await store.migrate();
    assert.equal(mode(join(dataDir, 'writ.db')), 0o600);
    assert.equal(mode(join(dataDir, 'writ.db-wal')), 0o600);
    assert.equal(mode(dataDir), 0o755, 'a directory the operator made is theirs');
    await store.close();
  });

  it('knows loopback from everything else, near variants included', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', 'LOCALHOST', '::1', '[::1]', '::ffff:127.0.0.1']) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ['0.0.0.0', '::', '[::]', '10.0.0.1', '192.168.1.1', '::ffff:10.0.0.1', '127.0.0.1.nip.io', 'localhost.example.com', '128.0.0.1', '0:0:0:0:0:0:0:0', '']) {
      assert.equal(isLoopbackHost(h), false, h);
    }
  });

  it('warns about unsealed keys, and about listening beyond loopback unless the issuer is https', () => {
    assert.deepEqual(startWarnings({ host: '127.0.0.1', issuer: 'http://127.0.0.1:8080', keysSealed: true }), []);
    assert.deepEqual(startWarnings({ host: '0.0.0.0', issuer: 'https://writ.example.com', keysSealed: true }), []);
    const both = startWarnings({ host: '0.0.0.0', issuer: 'http://0.0.0.0:8080', keysSealed: false });
    assert.equal(both.length, 2);
    assert.match(both[0]!, /unsealed.*WRIT_KEY_ENCRYPTION_KEY/);
    assert.match(both[1]!, /beyond loopback without TLS/);
    // an http issuer that merely mentions https is still clear text
    assert.equal(startWarnings({ host: '::', issuer: 'http://https.example.com', keysSealed: true }).length, 1);
  });

  it('writ serve says so on stderr at start, and is quiet when sealed on loopback', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.WRIT_DATABASE_URL;
    delete env.WRIT_KEY_ENCRYPTION_KEY;
    delete env.WRIT_ISSUER;
    const loud = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', '--host', '0.0.0.0', '--data-dir', join(dir, 'loud')], { cwd: REPO, env });
    try {
      await loud.waitForLine(/writ listening on/, { stream: 'stdout' });
      // two pipes: wait for each line, not for time
      await loud.waitForLine(/warning: signing keys are stored unsealed/, { stream: 'stderr' });
      await loud.waitForLine(/warning: listening on `0\.0\.0\.0` beyond loopback without TLS/, { stream: 'stderr' });
      assert.equal(mode(join(dir, 'loud', 'writ.db')), 0o600);
      assert.equal(mode(join(dir, 'loud')), 0o700);
    } finally {
      await loud.stop();
    }
    const quiet = await startServe(['--data-dir', join(dir, 'quiet')], { ...env, WRIT_KEY_ENCRYPTION_KEY: 'k'.repeat(8) + 'Zq7-Lp2_Xw9!Vb4#Nc6$Md1%Kf3^Rh5&' });
    try {
      assert.doesNotMatch(quiet.stderr(), /warning/);
    } finally {
      await quiet.kill();
    }
  });
});
