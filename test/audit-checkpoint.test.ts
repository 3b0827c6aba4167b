import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { computeEntryHash, GENESIS_HASH } from '../src/core/audit-hash.js';
import { ConflictError } from '../src/core/errors.js';
import { Writ } from '../src/app/writ.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { CHECKPOINT_TYP, checkpointClaims } from '../src/audit/checkpoint.js';
import { KeyRing } from '../src/tokens/key-ring.js';
import { runChild } from './helpers/child.js';

/** What someone with write access to the database file can do: rewrite rows and recompute every hash and the head. */
function rewrite(path: string, edit: (db: Database.Database) => void): void {
  const db = new Database(path);
  edit(db);
  const rows = db.prepare('SELECT * FROM audit ORDER BY seq').all() as Record<string, any>[];
  let prev = GENESIS_HASH;
  const upd = db.prepare('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?');
  for (const r of rows) {
    const hash = computeEntryHash({ seq: r.seq, ts: r.ts, type: r.type, actor: r.actor, taskId: r.task_id, agentId: r.agent_id, decisionId: r.decision_id, data: JSON.parse(r.data), prevHash: prev });
    upd.run(prev, hash, r.seq);
    prev = hash;
  }
  const last = rows[rows.length - 1]!;
  db.prepare('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1').run(last.seq, prev);
  db.close();
}

describe('signed audit checkpoints catch a rewritten database and a cut-off tail', () => {
  let dir: string;
  let path: string;
  let writ: Writ;
  let admin: Awaited<ReturnType<SqliteStore['findOperatorByTokenHash']>>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'writ-cp-'));
    path = join(dir, 'writ.db');
    writ = new Writ(new SqliteStore({ path }), { issuer: 'http://writ.test' });
    await writ.init();
    const boot = await writ.identity.bootstrapAdmin();
    admin = await writ.identity.authenticateOperator(boot!.token);
    for (let i = 0; i < 5; i++) await writ.store.appendAudit([{ type: 'test', actor: 'system', data: { i } }]);
  });
  after(async () => {
    await writ.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a checkpoint verifies against an untouched chain, and is itself audited', async () => {
    const cp = await writ.audit.checkpointAudit(admin!);
    assert.match(cp.checkpoint, /^eyJ/);
    const r = await writ.audit.verifyAudit(admin!, [cp.checkpoint]);
    assert.equal(r.ok, true);
    const last = await writ.store.listAudit({ type: 'audit.checkpoint' });
    assert.equal(last.length, 1);
    assert.equal(last[0]!.data.seq, cp.seq);
  });

  it('refuses a checkpoint that another key signed, and an empty log', async () => {
    const otherDir = mkdtempSync(join(tmpdir(), 'writ-cp2-'));
    const otherStore = new SqliteStore({ path: join(otherDir, 'writ.db') });
    await otherStore.migrate();
    const ring = new KeyRing(otherStore, { now: () => Date.now() });
    await ring.init();
    const head = await writ.store.auditHead();
    const forged = ring.signJwt(CHECKPOINT_TYP, checkpointClaims('http://writ.test', head!, Date.now()));
    await assert.rejects(writ.audit.verifyAudit(admin!, [forged]), { code: 'invalid_checkpoint' });
    await otherStore.close();
    rmSync(otherDir, { recursive: true, force: true });
    const emptyDir = mkdtempSync(join(tmpdir(), 'writ-cp3-'));
    const empty = new SqliteStore({ path: join(emptyDir, 'writ.db') });
    await empty.migrate();
    const w = new Writ(empty, { issuer: 'http://writ.test' });
    await assert.rejects(w.audit.checkpointAudit({ ...admin! }), (e: unknown) => e instanceof ConflictError || (e as { code?: string }).code === 'audit_empty');
    await empty.close();
    rmSync(emptyDir, { recursive: true, force: true });
  });

  it('a tail cut off with the head moved back passes the plain check but not the checkpoint (API and CLI offline)', async () => {
    const cp = await writ.audit.checkpointAudit(admin!);
    for (let i = 0; i < 3; i++) await writ.store.appendAudit([{ type: 'later', actor: 'system', data: { i } }]);
    await writ.store.close();
    rewrite(path, (db) => db.prepare('DELETE FROM audit WHERE seq >= ?').run(cp.seq - 1));
    writ = new Writ(new SqliteStore({ path }), { issuer: 'http://writ.test' });
    await writ.init();
    assert.equal((await writ.audit.verifyAudit(admin!)).ok, true, 'the plain check cannot see a consistent truncation');
    const r = await writ.audit.verifyAudit(admin!, [cp.checkpoint]);
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.first_bad_seq, cp.seq - 1);

    const file = join(dir, 'cp.jwt');
    writeFileSync(file, cp.checkpoint);
    await writ.store.close();
    const plain = await runChild(process.execPath, ['bin/writ.js', 'audit', 'verify', '--data-dir', dir]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /"ok": true/);
    const checked = await runChild(process.execPath, ['bin/writ.js', 'audit', 'verify', '--data-dir', dir, '--checkpoint', file]);
    assert.equal(checked.code, 1, checked.stderr);
    assert.match(checked.stderr, new RegExp(`seq ${cp.seq - 1}`));
    writ = new Writ(new SqliteStore({ path }), { issuer: 'http://writ.test' });
    await writ.init();
  });

  it('an entry edited with every later hash recomputed is caught by a later checkpoint', async () => {
    const cp = await writ.audit.checkpointAudit(admin!);
    await writ.store.close();
    rewrite(path, (db) => db.prepare(`UPDATE audit SET data = '{"i":999}' WHERE seq = 3`).run());
    writ = new Writ(new SqliteStore({ path }), { issuer: 'http://writ.test' });
    await writ.init();
    assert.equal((await writ.audit.verifyAudit(admin!)).ok, true);
    const r = await writ.audit.verifyAudit(admin!, [cp.checkpoint]);
    assert.equal(r.ok, false);
    assert.ok(!r.ok && r.first_bad_seq <= 3, JSON.stringify(r));
  });
});
