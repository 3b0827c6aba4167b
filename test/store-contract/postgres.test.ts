import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { ManualClock } from '../../src/core/clock.js';
import { ConflictError, UnavailableError } from '../../src/core/errors.js';
import { newId } from '../../src/core/ids.js';
import { agentRecord, assertChain, auditInput, childRecord, guardedWrite, runStoreContract, taskRecord } from './contract.js';
import { PostgresStore, withDefaultUser } from '../../src/store/postgres/postgres-store.js';
import { PG_MIGRATIONS } from '../../src/store/postgres/schema.js';
import type { Store } from '../../src/store/store.js';

const url = process.env.WRIT_TEST_DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';
const skipReason = process.env.WRIT_SKIP_POSTGRES;

function freshSchema(): string {
  return `writ_test_${randomBytes(6).toString('hex')}`;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: withDefaultUser(url, process.env.PGUSER) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function dropSchema(schema: string): Promise<void> {
  await admin((c) => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
}

/** Terminates the backends of one application name; returns how many. */
async function terminate(applicationName: string): Promise<number> {
  return admin(async (c) => {
    const r = await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()', [applicationName]);
    return r.rowCount ?? 0;
  });
}

async function readAll(store: Store) {
  const all = [];
  for (;;) {
    const page = await store.listAudit({ after: all.at(-1)?.seq ?? 0, limit: 1000 });
    all.push(...page);
    if (page.length < 1000) return all;
  }
}

/** Polls `fn` until it answers true (a condition another connection makes true). */
async function until(fn: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!(await fn())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`not seen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function waitFor<T>(fn: () => T | undefined, timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      const v = fn();
      if (v !== undefined) return resolve(v);
      if (Date.now() - t0 > timeoutMs) return reject(new Error(`not seen within ${timeoutMs} ms`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

if (skipReason) {
  describe('PostgresStore', { skip: `PostgreSQL suites skipped: ${skipReason}` }, () => {
    it('contract and cross-instance tests', () => undefined);
  });
} else {
  runStoreContract('postgres', async () => {
    const schema = freshSchema();
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const store = new PostgresStore({ connectionString: url, clock, schema, poolSize: 8 });
    await store.migrate();
    const others: PostgresStore[] = [];
    return {
      store,
      clock,
      another: async () => {
        const s = new PostgresStore({ connectionString: url, clock, schema, poolSize: 4 });
        others.push(s);
        return s;
      },
      cleanup: async () => {
        for (const s of others) await s.close();
        await store.close();
        await dropSchema(schema);
      },
    };
  });

  describe('PostgresStore: two instances on one schema', () => {
    const schema = freshSchema();
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    let a: PostgresStore;
    let b: PostgresStore;

    before(async () => {
      a = new PostgresStore({ connectionString: url, clock, schema, poolSize: 6 });
      b = new PostgresStore({ connectionString: url, clock, schema, poolSize: 6 });
    });

    after(async () => {
      await a?.close();
      await b?.close();
      await dropSchema(schema);
    });

    it('migrations run concurrently from both instances without error, once', async () => {
      await Promise.all([a.migrate(), b.migrate(), a.migrate(), b.migrate()]);
      const versions = await admin(async (c) => (await c.query(`SELECT version FROM "${schema}".schema_migrations ORDER BY version`)).rows.map((r) => r.version));
      assert.deepEqual(versions, PG_MIGRATIONS.map((_, i) => i + 1));
      await b.migrate();
      assert.equal(await a.auditHead(), null);
    });

    it('concurrent appendAudit from both: one gap-free chain that verifies', async () => {
      const calls = Array.from({ length: 60 }, (_, i) => (i % 2 ? a : b).appendAudit(Array.from({ length: 1 + (i % 4) }, (_, j) => auditInput('test.x', { data: { i, j } }))));
      const out = (await Promise.all(calls)).flat();
      const all = await readAll(a);
      assert.equal(all.length, out.length);
      assertChain(all);
      const head = await b.auditHead();
      assert.deepEqual(head, { seq: all.at(-1)!.seq, hash: all.at(-1)!.hash });
    });

    it('useOnce of one key split across both: exactly one true', async () => {
      for (let round = 0; round < 5; round++) {
        const key = newId('jti');
        const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).useOnce(key, clock.now() + 60_000, i % 3 ? auditInput('token.used') : null)));
        assert.equal(rs.filter(Boolean).length, 1);
      }
    });

    it('guarded budget split across both: never more than max', async () => {
      const agent = agentRecord(clock);
      await a.createAgent(agent, auditInput('agent.created'));
      const task = taskRecord(clock, agent.id, { maxActions: 7 });
      await b.createTask(task, auditInput('task.created'));
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).commitDecisions(Array.from({ length: 1 + (i % 3) }, () => guardedWrite(clock, task)), clock.now())),
      );
      const flat = results.flat();
      assert.equal(flat.filter((r) => r.written === 'primary').length, 7);
      assert.equal((await a.getTask(task.id))!.actionsUsed, 7);
      assert.equal((await b.listDecisions(task.id)).length, flat.length);
      assertChain(await readAll(b));
    });

    it('delegations split across both never reserve more than the parent has', async () => {
      const agent = agentRecord(clock);
      await a.createAgent(agent, auditInput('agent.created'));
      const parent = taskRecord(clock, agent.id, { maxActions: 10 });
      await a.createTask(parent, auditInput('task.created'));
      const outcomes = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).createTask(childRecord(clock, parent, agent.id, 3), auditInput('task.delegated'))),
      );
      assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 3);
      for (const o of outcomes) if (o.status === 'rejected') assert.ok(o.reason instanceof ConflictError && o.reason.code === 'parent_budget_exhausted');
      assert.equal((await b.getTask(parent.id))!.actionsReserved, 9);
    });

    it('ending a task while delegations race leaves no active task under it', async () => {
      const agent = agentRecord(clock);
      await a.createAgent(agent, auditInput('agent.created'));
      for (let round = 0; round < 8; round++) {
        const root = taskRecord(clock, agent.id, { maxActions: 100 });
        await a.createTask(root, auditInput('task.created'));
        const mids = Array.from({ length: 4 }, () => childRecord(clock, root, agent.id, 20));
        for (const m of mids) await b.createTask(m, auditInput('task.delegated'));
        // grandchildren are delegated from both instances while the root is revoked
        const leaves = Array.from({ length: 16 }, (_, i) => childRecord(clock, mids[i % 4]!, agent.id, 2));
        const ops: Promise<unknown>[] = leaves.map((c, i) => (i % 2 ? a : b).createTask(c, auditInput('task.delegated')).catch(() => undefined));
        ops.splice(4 + (round % 8), 0, (round % 2 ? a : b).endTask(root.id, 'revoked', clock.now(), auditInput('task.revoked')));
        await Promise.all(ops);
        for (const m of mids) {
          const kids = await a.listTasks({ parentId: m.id, limit: 1000 });
          assert.ok(kids.every((k) => k.status === 'revoked'), 'every task that exists was revoked with its ancestor');
          const mid = (await a.getTask(m.id))!;
          assert.equal(mid.status, 'revoked');
          assert.equal(mid.actionsReserved, 0, 'every reserve was returned');
        }
        const r = (await a.getTask(root.id))!;
        assert.equal(r.status, 'revoked');
        assert.equal(r.actionsReserved, 0);
      }
      assertChain(await readAll(a));
    });

    it('a transaction chosen as a deadlock victim is retried, and applied once', async () => {
      const agent = agentRecord(clock);
      await a.createAgent(agent, auditInput('agent.created'));
      const parent = taskRecord(clock, agent.id, { maxActions: 10 });
      await a.createTask(parent, auditInput('task.created'));
      const child = childRecord(clock, parent, agent.id, 4);
      await admin(async (c) => {
        await c.query('BEGIN');
        await c.query(`SELECT seq FROM "${schema}".audit_head WHERE id = 1 FOR UPDATE`);
        // the store locks the parent (reservation), then waits for the chain head ...
        const pending = a.createTask(child, auditInput('task.delegated', { taskId: child.id }));
        const settled = pending.then(
          () => undefined,
          (err: unknown) => assert.fail(`the deadlock victim was not retried: ${String(err)}`),
        );
        await new Promise((r) => setTimeout(r, 300));
        // ... while this session, waiting second, asks for the parent: a deadlock, which
        // PostgreSQL breaks by aborting the store's transaction (it waited first)
        await c.query(`SELECT id FROM "${schema}".tasks WHERE id = $1 FOR UPDATE`, [parent.id]);
        await c.query('COMMIT');
        await settled;
      });
      assert.equal((await b.getTask(parent.id))!.actionsReserved, 4, 'the reservation was applied once');
      assert.deepEqual(await b.getTask(child.id), child);
      assert.equal((await b.listAudit({ taskId: child.id })).length, 1, 'one audit entry');
      assertChain(await readAll(b));
    });

    it('a reader paging by seq while both instances commit sees every entry once, in order', async () => {
      const agent = agentRecord(clock);
      await a.createAgent(agent, auditInput('agent.created'));
      const task = taskRecord(clock, agent.id, { maxActions: 1000 });
      await a.createTask(task, auditInput('task.created'));
      const from = (await a.auditHead())!.seq;
      const seen: number[] = [];
      let writing = true;
      const reader = (async () => {
        let after = from;
        for (;;) {
          const done = !writing; // read once more after the last commit was answered
          const page = await (seen.length % 2 ? a : b).listAudit({ after, limit: 7 });
          for (const e of page) seen.push(e.seq);
          if (page.length > 0) after = page.at(-1)!.seq;
          else if (done) return;
        }
      })();
      const writes = Array.from({ length: 40 }, (_, i) =>
        i % 3 === 0
          ? (i % 2 ? a : b).appendAudit([auditInput('test.page', { data: { i } })])
          : (i % 2 ? a : b).commitDecisions(Array.from({ length: 1 + (i % 4) }, () => guardedWrite(clock, task)), clock.now()),
      );
      await Promise.all(writes);
      writing = false;
      await reader;
      const head = (await a.auditHead())!.seq;
      assert.deepEqual(seen, Array.from({ length: head - from }, (_, i) => from + 1 + i), 'no entry skipped, none seen twice');
      assertChain(await readAll(b));
    });

    it('the same agent id created from both: one wins, the other gets agent_exists', async () => {
      const agent = agentRecord(clock);
      const rs = await Promise.allSettled([a.createAgent(agent, auditInput('agent.created')), b.createAgent(agent, auditInput('agent.created'))]);
      assert.equal(rs.filter((r) => r.status === 'fulfilled').length, 1);
      const rejected = rs.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.ok(rejected.reason instanceof ConflictError);
      assert.equal(rejected.reason.code, 'agent_exists');
    });

    it('listen/notify across instances, unlisten, and reconnect after the listener is killed', async () => {
      const got: (string | null)[] = [];
      const unlisten = await a.listen('cache', (p) => got.push(p));
      await b.notify('cache', 'policy:v2');
      await waitFor(() => (got.includes('policy:v2') ? true : undefined));
      // another channel is not delivered here
      await b.notify('other', 'nope');
      await b.notify('cache', 'second');
      await waitFor(() => (got.includes('second') ? true : undefined));
      assert.ok(!got.includes('nope'));

      // kill the listener's connection: it comes back, says so with null, and still receives
      assert.ok((await terminate(`writ-listen:${schema}`)) >= 1);
      await waitFor(() => (got.includes(null) ? true : undefined));
      await b.notify('cache', 'after-reconnect');
      await waitFor(() => (got.includes('after-reconnect') ? true : undefined));

      await unlisten();
      await b.notify('cache', 'after-unlisten');
      await a.notify('cache', 'after-unlisten');
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(!got.includes('after-unlisten'));
    });

    it('the pool survives its connections being killed; faults surface as UnavailableError', async () => {
      await Promise.all(Array.from({ length: 6 }, () => a.ping())); // fill the pool
      assert.ok((await terminate(`writ:${schema}`)) >= 1);
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        try {
          await a.appendAudit([auditInput('test.after-kill')]);
          ok = true;
        } catch (err) {
          assert.ok(err instanceof UnavailableError, `expected UnavailableError, got ${String(err)}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      assert.ok(ok, 'the store recovered');
      await a.ping();
      assertChain(await readAll(a));
    });
  });

  describe('PostgresStore: a decision batch is written as literals', () => {
    const schema = freshSchema();
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    let s: PostgresStore;

    before(async () => {
      s = new PostgresStore({ connectionString: url, clock, schema, poolSize: 2 });
      await s.migrate();
    });

    after(async () => {
      await s?.close();
      await dropSchema(schema);
    });

    it('a NUL in a decision fails the batch with UnavailableError (as a bound parameter did), writing nothing', async () => {
      const agent = agentRecord(clock);
      await s.createAgent(agent, auditInput('agent.created'));
      const task = taskRecord(clock, agent.id, { maxActions: 10 });
      await s.createTask(task, auditInput('task.created'));
      const head = await s.auditHead();
      const ok = guardedWrite(clock, task);
      const bad = guardedWrite(clock, task);
      bad.decision = { ...bad.decision, audience: 'https://tools.example/\0x' };
      await assert.rejects(s.commitDecisions([ok, bad], clock.now()), (e) => e instanceof UnavailableError);
      assert.deepEqual(await s.auditHead(), head);
      assert.equal(await s.getDecision(ok.decision.id), null);
      assert.equal((await s.getTask(task.id))!.actionsUsed, 0);
      // the connection is usable again
      assert.deepEqual(await s.commitDecisions([guardedWrite(clock, task)], clock.now()), [{ written: 'primary' }]);
    });

    it('a batch whose guards all hold commits in one round trip; one with a failing guard in three, with its fallback', async () => {
      const agent = agentRecord(clock);
      await s.createAgent(agent, auditInput('agent.created'));
      const task = taskRecord(clock, agent.id, { maxActions: 3 });
      await s.createTask(task, auditInput('task.created'));
      const counted = async <T>(fn: () => Promise<T>): Promise<{ value: T; messages: number }> => {
        const query = pg.Client.prototype.query;
        let messages = 0;
        pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
          messages++;
          return (query as (...a: unknown[]) => unknown).apply(this, args);
        } as typeof query;
        try {
          return { value: await fn(), messages };
        } finally {
          pg.Client.prototype.query = query;
        }
      };
      const ok = await counted(() => s.commitDecisions([guardedWrite(clock, task), guardedWrite(clock, task)], clock.now()));
      assert.deepEqual(ok, { value: [{ written: 'primary' }, { written: 'primary' }], messages: 1 });
      const over = await counted(() => s.commitDecisions([guardedWrite(clock, task), guardedWrite(clock, task)], clock.now()));
      assert.deepEqual(over, { value: [{ written: 'primary' }, { written: 'fallback', reason: 'budget_exhausted' }], messages: 3 });
      assert.equal((await s.getTask(task.id))!.actionsUsed, 3);
      assertChain(await readAll(s));
    });
  });

  describe('PostgresStore: a commit waits for its flush without holding its locks', () => {
    const schema = freshSchema();
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    // c has one connection, so one row of the flush barrier (db.ts), which the test holds
    // to stand for a flush that takes long; d is another instance
    let c: PostgresStore;
    let d: PostgresStore;
    let pid: number;
    let task: ReturnType<typeof taskRecord>;

    before(async () => {
      c = new PostgresStore({ connectionString: url, clock, schema, poolSize: 1 });
      d = new PostgresStore({ connectionString: url, clock, schema, poolSize: 2 });
      await c.migrate();
      const agent = agentRecord(clock);
      await c.createAgent(agent, auditInput('agent.created'));
      task = taskRecord(clock, agent.id, { maxActions: 10 });
      await c.createTask(task, auditInput('task.created'));
      const rows = await admin(async (q) => (await q.query(`SELECT pid FROM "${schema}".commit_barrier`)).rows);
      assert.equal(rows.length, 1, 'only c has committed');
      pid = rows[0].pid as number;
    });

    after(async () => {
      await c?.close();
      await d?.close();
      await dropSchema(schema);
    });

    /** Runs `fn` while c's barrier row is locked: c's commits take effect but cannot be confirmed. */
    async function holdingFlush(fn: (q: pg.Client) => Promise<void>): Promise<void> {
      await admin(async (q) => {
        await q.query('BEGIN');
        await q.query(`SELECT n FROM "${schema}".commit_barrier WHERE pid = $1 FOR UPDATE`, [pid]);
        try {
          await fn(q);
        } finally {
          await q.query('ROLLBACK').catch(() => undefined);
        }
      });
    }

    it('another instance takes the chain head and the task while the first waits; the first is answered after its flush', async () => {
      const first = guardedWrite(clock, task);
      let answered = false;
      let pending!: Promise<unknown>;
      await holdingFlush(async () => {
        pending = c.commitDecisions([first], clock.now()).then((r) => {
          answered = true;
          return r;
        });
        // committed (other instances read it) but not answered
        await until(async () => (await d.getDecision(first.decision.id)) !== null);
        // the chain head and the task's row are free: d commits on the same task meanwhile
        assert.deepEqual(await d.commitDecisions([guardedWrite(clock, task)], clock.now()), [{ written: 'primary' }]);
        await d.appendAudit([auditInput('test.meanwhile')]);
        assert.equal(answered, false, 'no answer before the flush barrier passed');
      });
      assert.deepEqual(await pending, [{ written: 'primary' }]);
      assert.equal((await d.getTask(task.id))!.actionsUsed, 2);
      const all = await readAll(d);
      assertChain(all);
      assert.deepEqual(
        all.slice(-3).map((e) => e.type),
        ['decision.allow', 'decision.allow', 'test.meanwhile'],
      );
    });

    it('each commit is answered only after a WAL flush of its own (pg_stat_wal.wal_sync grows by one per commit at least)', async (t) => {
      if ((await admin((q) => q.query('SHOW fsync'))).rows[0].fsync !== 'on') return t.skip('the server runs with fsync off: nothing is flushed');
      const syncs = () => admin(async (q) => Number((await q.query('SELECT wal_sync FROM pg_stat_wal')).rows[0].wal_sync));
      const before = await syncs();
      const n = 30;
      // one after the other: no flush can cover two of them (other sessions' flushes only add)
      for (let i = 0; i < n; i++) await d.appendAudit([auditInput('test.flushed', { data: { i } })]);
      // a backend reports its WAL counters after a statement, at most once a second (else
      // after 10 s idle): statements on both of d's connections bring them out sooner
      await until(async () => {
        await Promise.all([d.ping(), d.ping()]);
        return (await syncs()) - before >= n;
      }, 30_000);
    });

    it('a fault after COMMIT is answered 503 and not retried: the decision is written once', async () => {
      const w = guardedWrite(clock, task);
      let outcome!: Promise<unknown>;
      await holdingFlush(async (q) => {
        outcome = c.commitDecisions([w], clock.now()).then(
          () => assert.fail('answered without a confirmed commit'),
          (err: unknown) => err,
        );
        await until(async () => (await d.getDecision(w.decision.id)) !== null);
        await q.query('SELECT pg_terminate_backend($1)', [pid]);
      });
      const err = await outcome;
      assert.ok(err instanceof UnavailableError, `expected UnavailableError, got ${String(err)}`);
      assert.equal((await d.listDecisions(task.id)).filter((x) => x.id === w.decision.id).length, 1);
      assert.equal((await d.listAudit({ decisionId: w.decision.id })).length, 1, 'one audit entry');
      assert.equal((await d.getTask(task.id))!.actionsUsed, 3, 'the budget was taken once');
      // c recovers on a new connection
      assert.deepEqual(await c.commitDecisions([guardedWrite(clock, task)], clock.now()), [{ written: 'primary' }]);
      assertChain(await readAll(d));
    });
  });

  describe('PostgresStore: unreachable server', () => {
    const dead = new PostgresStore({ connectionString: 'postgres://127.0.0.1:1/test', clock: new ManualClock(), schema: 'writ_unreachable' });
    after(() => dead.close());

    it('every operation fails closed with UnavailableError', async () => {
      const isUnavailable = (err: unknown) => {
        assert.ok(err instanceof UnavailableError, `expected UnavailableError, got ${String(err)}`);
        assert.equal(err.status, 503);
        return true;
      };
      await assert.rejects(dead.ping(), isUnavailable);
      await assert.rejects(dead.migrate(), isUnavailable);
      await assert.rejects(dead.appendAudit([auditInput('x')]), isUnavailable);
      await assert.rejects(dead.useOnce('k', 1, null), isUnavailable);
      await assert.rejects(dead.getTask('t'), isUnavailable);
      await assert.rejects(dead.commitDecisions([guardedWrite(new ManualClock(), { id: 't', agentId: 'a' })], 0), isUnavailable);
      await assert.rejects(dead.listen('c', () => undefined), isUnavailable);
    });

    it('rejects a schema name that is not a plain identifier', () => {
      assert.throws(() => new PostgresStore({ connectionString: url, schema: 'bad"; drop' }), TypeError);
    });
  });
}
