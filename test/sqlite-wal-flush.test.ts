import assert from 'node:assert/strict';
import { fdatasync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import type { WritError } from '../src/core/errors.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import type { SyncFile } from '../src/store/sqlite/wal-flush.js';
import { agentRecord, auditInput } from './store-contract/contract.js';
import { Api, setup } from './helpers/harness.js';

/**
 * The SQLite store's durability (src/store/sqlite/wal-flush.ts): commits run with
 * synchronous=NORMAL and each write is answered only after an fsync of the WAL that began
 * after its commit; a failed fsync fails every waiting and later write closed.
 */

/** An fsync the test controls: each call waits until released (then runs the real one), or fails. */
function gatedSync() {
  const calls: { fd: number; release: () => void; fail: (code: string) => void }[] = [];
  const waiting: { n: number; ok: () => void }[] = [];
  let mode: 'gate' | 'pass' | 'fail' = 'gate';
  const syncFile: SyncFile = (fd, done) => {
    if (mode === 'pass') return fdatasync(fd, done);
    if (mode === 'fail') return done(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
    calls.push({
      fd,
      release: () => fdatasync(fd, done),
      fail: (code) => done(Object.assign(new Error(`${code}: fsync`), { code })),
    });
    for (const w of waiting.splice(0)) if (calls.length >= w.n) w.ok();
    else waiting.push(w);
  };
  return {
    syncFile,
    calls,
    /** resolves once `n` fsyncs have been asked for (an event, not a delay) */
    called: (n: number) => new Promise<void>((ok) => (calls.length >= n ? ok() : waiting.push({ n, ok }))),
    pass: () => (mode = 'pass'),
    gate: () => (mode = 'gate'),
    failAll: () => (mode = 'fail'),
  };
}

/** Watches a promise: `state()` tells whether it has settled yet. */
function watch<T>(p: Promise<T>) {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  p.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  return { promise: p, state: () => state };
}

/** Lets every callback already due run (promise reactions, I/O callbacks): not a timed wait. */
const turn = () => new Promise<void>((ok) => setImmediate(ok));

function tempDb() {
  const dir = mkdtempSync(join(tmpdir(), 'writ-walflush-'));
  return { dir, path: join(dir, 'writ.db'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function isUnavailable(err: unknown): boolean {
  const e = err as WritError;
  assert.equal(e.code, 'store_unavailable');
  assert.equal(e.status, 503);
  return true;
}

describe('SQLite store: writes answered after the WAL fsync', () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));

  it('a write resolves only after an fsync that began after its commit; writes meanwhile share the next fsync', async () => {
    const t = tempDb();
    // `store` reads what `s2` commits; every fsync of s2 waits for the test
    const store = new SqliteStore({ path: t.path, clock });
    try {
      await store.migrate();
      const gated = gatedSync();
      const s2 = new SqliteStore({ path: t.path, clock, syncFile: gated.syncFile });
      try {
        const a = agentRecord(clock);
        const first = watch(s2.createAgent(a, auditInput('agent.created')));
        await gated.called(1);
        // committed (another connection reads it) but not answered: its fsync has not completed
        assert.ok(await store.getAgent(a.id));
        await turn();
        assert.equal(first.state(), 'pending');

        // three writers commit while that fsync runs: none may ride on it
        const others = [agentRecord(clock), agentRecord(clock), agentRecord(clock)];
        const later = others.map((r) => watch(s2.createAgent(r, auditInput('agent.created'))));
        for (const r of others) assert.ok(await store.getAgent(r.id), 'committed before the first fsync completes');
        gated.calls[0]!.release();
        await first.promise;
        await turn();
        for (const w of later) assert.equal(w.state(), 'pending', 'a write that committed during an fsync waits for the next');
        // one more fsync, for all three
        await gated.called(2);
        assert.equal(gated.calls.length, 2);
        gated.calls[1]!.release();
        await Promise.all(later.map((w) => w.promise));
        assert.equal(gated.calls.length, 2, 'one fsync covered the three commits');
      } finally {
        gated.pass();
        for (const c of gated.calls) c.release();
        await s2.close();
      }
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('a failed fsync rejects the writes waiting on it and the next one, refuses later writes before they run, and fails ping', async () => {
    const t = tempDb();
    const store = new SqliteStore({ path: t.path, clock });
    try {
      await store.migrate();
      await store.ping();
      const gated = gatedSync();
      const s2 = new SqliteStore({ path: t.path, clock, syncFile: gated.syncFile });
      try {
        const first = watch(s2.createAgent(agentRecord(clock), auditInput('agent.created')));
        await gated.called(1);
        const second = watch(s2.createAgent(agentRecord(clock), auditInput('agent.created')));
        await turn();
        gated.calls[0]!.fail('EIO');
        await assert.rejects(first.promise, isUnavailable);
        await assert.rejects(second.promise, isUnavailable);
        // durability is lost for good on this handle: a later write is refused before it runs,
        // even though the next fsync would succeed (Linux may have dropped the failed pages)
        gated.pass();
        const late = agentRecord(clock);
        await assert.rejects(s2.createAgent(late, auditInput('agent.created')), isUnavailable);
        assert.equal(await store.getAgent(late.id), null, 'the refused write did not run');
        await assert.rejects(s2.ping(), isUnavailable);
        assert.equal(gated.calls.length, 1, 'no fsync after the failed one');
        // the other handle (another instance) has its own descriptor and is unaffected
        await store.createAgent(agentRecord(clock), auditInput('agent.created'));
      } finally {
        await s2.close();
      }
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('close waits for the flush in flight; what it flushed is there when the file is opened again', async () => {
    const t = tempDb();
    const store = new SqliteStore({ path: t.path, clock });
    await store.migrate();
    await store.close();
    const g = gatedSync();
    const s = new SqliteStore({ path: t.path, clock, syncFile: g.syncFile });
    const a = agentRecord(clock);
    const write = watch(s.createAgent(a, auditInput('agent.created')));
    await g.called(1);
    const closing = watch(s.close());
    await turn();
    assert.equal(closing.state(), 'pending', 'close waits for the fsync in flight');
    assert.equal(write.state(), 'pending');
    // a write after close began is refused
    await assert.rejects(s.createAgent(agentRecord(clock), auditInput('agent.created')), isUnavailable);
    g.calls[0]!.release();
    await write.promise;
    await closing.promise;
    const again = new SqliteStore({ path: t.path, clock });
    try {
      assert.equal((await again.getAgent(a.id))?.id, a.id);
    } finally {
      await again.close();
      t.cleanup();
    }
  });

  it('each connection fsyncs after its own commits (two handles on one file, as two processes)', async () => {
    const t = tempDb();
    const ga = gatedSync();
    const gb = gatedSync();
    ga.pass();
    gb.pass();
    let aCalls = 0;
    let bCalls = 0;
    const a = new SqliteStore({ path: t.path, clock, syncFile: (fd, done) => (aCalls++, ga.syncFile(fd, done)) });
    const b = new SqliteStore({ path: t.path, clock, syncFile: (fd, done) => (bCalls++, gb.syncFile(fd, done)) });
    try {
      await a.migrate();
      const a0 = aCalls;
      await b.createAgent(agentRecord(clock), auditInput('agent.created'));
      assert.equal(aCalls, a0, "b's write waits for no fsync of a's");
      assert.equal(bCalls, 1);
      await a.createAgent(agentRecord(clock), auditInput('agent.created'));
      assert.equal(aCalls, a0 + 1);
      assert.equal(bCalls, 1);
    } finally {
      await b.close();
      await a.close();
      t.cleanup();
    }
  });

  it('a WAL file removed under an open store fails its writes closed', async () => {
    const t = tempDb();
    const store = new SqliteStore({ path: t.path, clock });
    try {
      await store.migrate();
      await store.createAgent(agentRecord(clock), auditInput('agent.created'));
      // SQLite keeps writing to the removed file, which no restart would read back
      unlinkSync(`${t.path}-wal`);
      await assert.rejects(store.createAgent(agentRecord(clock), auditInput('agent.created')), isUnavailable);
      await assert.rejects(store.createAgent(agentRecord(clock), auditInput('agent.created')), isUnavailable);
      await assert.rejects(store.ping(), isUnavailable);
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it(':memory: needs no fsync', async () => {
    let calls = 0;
    const store = new SqliteStore({ path: ':memory:', clock, syncFile: (_fd, done) => (calls++, done(null)) });
    try {
      await store.migrate();
      await store.createAgent(agentRecord(clock), auditInput('agent.created'));
      assert.equal(calls, 0);
    } finally {
      await store.close();
    }
  });
});

describe('SQLite store: a failed fsync never lets a decision out (end to end)', () => {
  const t = tempDb();
  let fail = false;
  const syncFile: SyncFile = (fd, done) => (fail ? done(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })) : fdatasync(fd, done));
  const store = new SqliteStore({ path: t.path, syncFile });
  let env: Awaited<ReturnType<typeof setup>>;

  before(async () => {
    env = await setup('sqlite', {
      opened: { store, another: async () => new SqliteStore({ path: t.path }), cleanup: async () => (await store.close(), t.cleanup()) },
    });
  });
  after(async () => {
    await env?.teardown();
  });

  it('POST /v1/authorize answers 503 store_unavailable, with no decision and no token; /readyz fails', async () => {
    const task = await env.createTask();
    const api = new Api(env.url, await env.taskToken(task.id));
    const action = { tool: 'github.get', arguments: { n: 1 }, audience: 'https://tools.example/github' };
    const ok = await api.call('POST', '/v1/authorize', action);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.decision, 'allow');

    fail = true;
    const results = await Promise.all([1, 2, 3].map((n) => api.call('POST', '/v1/authorize', { ...action, arguments: { n } })));
    for (const r of results) {
      assert.equal(r.status, 503, JSON.stringify(r.body));
      assert.equal(r.body.error?.code, 'store_unavailable');
      assert.equal(r.body.decision, undefined);
      assert.equal(r.body.action_token, undefined);
      assert.doesNotMatch(JSON.stringify(r.body), /EIO|fsync/);
    }
    // and it stays so: the fsync working again does not make the lost writes durable
    fail = false;
    const after = await api.call('POST', '/v1/authorize', action);
    assert.equal(after.status, 503);
    assert.equal(after.body.decision, undefined);
    const ready = await new Api(env.url).call('GET', '/readyz');
    assert.equal(ready.status, 503);
  });
});

describe('SQLite store: an allow is answered only once its flush completed (the token is signed during it)', () => {
  const t = tempDb();
  const gate = gatedSync();
  gate.pass();
  const store = new SqliteStore({ path: t.path, syncFile: gate.syncFile });
  let env: Awaited<ReturnType<typeof setup>>;

  before(async () => {
    env = await setup('sqlite', {
      opened: { store, another: async () => new SqliteStore({ path: t.path }), cleanup: async () => (await store.close(), t.cleanup()) },
    });
  });
  after(async () => {
    gate.pass();
    for (const c of gate.calls.splice(0)) c.release();
    await env?.teardown();
  });

  it('POST /v1/authorize waits for the fsync of its commit, then answers the allow with its token', async () => {
    const task = await env.createTask();
    const api = new Api(env.url, await env.taskToken(task.id));
    const action = { tool: 'github.get', arguments: { n: 1 }, audience: 'https://tools.example/github' };
    gate.gate();
    const before = gate.calls.length;
    const answer = watch(api.call('POST', '/v1/authorize', action));
    await gate.called(before + 1);
    // the decision's transaction has committed and its token is signed meanwhile; no answer yet
    for (let i = 0; i < 5; i++) await turn();
    assert.equal(answer.state(), 'pending');
    gate.pass();
    for (const c of gate.calls.splice(0)) c.release();
    const r = await answer.promise;
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.decision, 'allow');
    assert.match(r.body.action_token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const d = await env.store.getDecision(r.body.decision_id);
    assert.equal(d?.decision, 'allow');
    const claims = JSON.parse(Buffer.from(r.body.action_token.split('.')[1], 'base64url').toString());
    assert.equal(claims.jti, d?.tokenJti);
    assert.equal(claims.decision_id, d?.id);
  });
});
