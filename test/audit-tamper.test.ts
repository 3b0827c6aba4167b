import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { verifyChain } from '../src/audit/verify-chain.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';

describe('audit chain: tampering directly in the database file is found', () => {
  let dir: string;
  let path: string;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'writ-tamper-'));
    path = join(dir, 'writ.db');
    const s = new SqliteStore({ path });
    await s.migrate();
    for (let i = 1; i <= 6; i++) await s.appendAudit([{ type: 'test', actor: 'system', data: { i } }]);
    await s.close();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const verify = async () => {
    const s = new SqliteStore({ path });
    try {
      return await verifyChain(s, 2);
    } finally {
      await s.close();
    }
  };
  const raw = (sql: string) => {
    const db = new Database(path);
    db.exec(sql);
    db.close();
  };

  it('an intact chain verifies', async () => {
    const r = await verify();
    assert.equal(r.ok, true);
    assert.equal(r.entries, 6);
  });

  it('an edited row is reported at its seq', async () => {
    raw(`UPDATE audit SET data = '{"i":99}' WHERE seq = 3`);
    const r = await verify();
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.first_bad_seq, 3);
  });

  it('an edited row with a recomputed own hash still breaks the next link', async () => {
    // a different first hex digit (a fixed 'f' left a hash that already began with one unchanged: 1 run in 16 passed nothing)
    raw(`UPDATE audit SET hash = (CASE WHEN substr(hash, 1, 1) = 'f' THEN '0' ELSE 'f' END) || substr(hash, 2) WHERE seq = 4`);
    const r = await verify();
    assert.equal(!r.ok && r.first_bad_seq, 4);
  });

  it('a deleted row is reported as the first missing seq', async () => {
    raw(`DELETE FROM audit WHERE seq = 2`);
    const r = await verify();
    assert.equal(!r.ok && r.first_bad_seq, 2);
  });

  it('reordered rows are reported', async () => {
    raw(`UPDATE audit SET seq = 100 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = 100;`);
    const r = await verify();
    assert.equal(!r.ok && r.first_bad_seq, 4);
  });

  it('a cut-off tail is reported', async () => {
    raw(`DELETE FROM audit WHERE seq >= 5`);
    const r = await verify();
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.first_bad_seq, 5);
  });
});
