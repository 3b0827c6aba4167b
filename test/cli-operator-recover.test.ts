import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { writ } from './helpers/cli.js';
import { Api, BOOT_TOKEN, startInstance, type Instance } from './helpers/harness.js';

// `writ operator recover`: when no admin token works any more, whoever holds the data
// directory gets a new admin, loudly audited; nobody else gets anything.
describe('writ operator recover', () => {
  let dir: string;
  let store: SqliteStore;
  let inst: Instance;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'writ-recover-'));
    store = new SqliteStore({ path: join(dir, 'writ.db') });
    inst = await startInstance(store);
    await inst.writ.identity.bootstrapAdmin(BOOT_TOKEN);
  });
  after(async () => {
    await inst?.close();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every admin token expired: a new admin is written while the server runs, works at once, and is audited as operator.recovered', async () => {
    const admin = new Api(inst.url, BOOT_TOKEN);
    assert.equal((await admin.call('GET', '/v1/operators')).status, 200);
    // the only admin's token lapses (as after 90 days nobody rotated it)
    const raw = new Database(join(dir, 'writ.db'));
    try {
      raw.prepare('UPDATE operators SET expires_at = 1').run();
    } finally {
      raw.close();
    }
    const locked = await admin.call('GET', '/v1/operators');
    assert.equal(locked.status, 401);
    assert.equal(locked.body.error.code, 'token_expired');

    const r = await writ(['operator', 'recover', '--data-dir', dir, '--name', 'rescue']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /operator\.recovered/);
    assert.deepEqual(r.json.roles, ['admin']);
    assert.match(r.json.token, /^wop_/);
    assert.ok(Date.parse(r.json.expires_at) > Date.now() + 80 * 86_400_000, 'the default operator token lifetime (90 days)');

    const rescued = new Api(inst.url, r.json.token);
    const ops = await rescued.call('GET', '/v1/operators');
    assert.equal(ops.status, 200, JSON.stringify(ops.body));
    const mine = ops.body.operators.find((o: { id: string }) => o.id === r.json.id);
    assert.equal(mine.name, 'rescue');
    assert.deepEqual(mine.roles, ['admin']);
    // the new admin can repair the rest: rotate the lapsed one
    const old = ops.body.operators.find((o: { id: string; name: string }) => o.id !== r.json.id && o.name === 'admin');
    assert.equal((await rescued.call('POST', `/v1/operators/${old.id}/rotate`)).status, 200);

    const audit = await rescued.call('GET', '/v1/audit?type=operator.recovered');
    assert.equal(audit.status, 200);
    assert.equal(audit.body.entries.length, 1);
    const e = audit.body.entries[0];
    assert.equal(e.actor, `local:${userInfo().username}`);
    assert.equal(e.data.operator_id, r.json.id);
    assert.equal(JSON.stringify(e).includes(r.json.token), false, 'the token is never in the log');
    // written by another process into the same chain: the chain still verifies
    const v = await rescued.call('GET', '/v1/audit/verify');
    assert.equal(v.status, 200);
    assert.equal(v.body.ok, true, JSON.stringify(v.body));
  });

  it('refuses without a store where it is pointed (and creates none), without --name, with a bad name, and on a store with no operators', async () => {
    const nowhere = join(dir, 'not-here');
    const missing = await writ(['operator', 'recover', '--data-dir', nowhere, '--name', 'x']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no Writ store at/);
    assert.equal(existsSync(join(nowhere, 'writ.db')), false);
    assert.equal(existsSync(nowhere), false);

    const noName = await writ(['operator', 'recover', '--data-dir', dir]);
    assert.equal(noName.code, 2);
    assert.match(noName.stderr, /--name/);
    const badName = await writ(['operator', 'recover', '--data-dir', dir, '--name', 'a\u0007b']);
    assert.equal(badName.code, 2);
    const unknown = await writ(['operator', 'recover', '--data-dir', dir, '--name', 'x', '--url', 'http://127.0.0.1:1']);
    assert.equal(unknown.code, 2, 'it never goes over HTTP: --url is not an option');

    const empty = mkdtempSync(join(tmpdir(), 'writ-recover-empty-'));
    try {
      const s = new SqliteStore({ path: join(empty, 'writ.db') });
      await s.migrate();
      await s.close();
      const r = await writ(['operator', 'recover', '--data-dir', empty, '--name', 'x']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /no operators yet/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
    // nothing was written by the refusals
    const list = await new Api(inst.url, BOOT_TOKEN).call('GET', '/v1/operators');
    assert.ok(list.status === 200 || list.status === 401);
    const raw = new Database(join(dir, 'writ.db'), { readonly: true });
    try {
      assert.equal((raw.prepare("SELECT count(*) AS n FROM audit WHERE type = 'operator.recovered'").get() as { n: number }).n, 1);
    } finally {
      raw.close();
    }
  });
});
