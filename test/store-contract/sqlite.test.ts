import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { runStoreContract } from './contract.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';

runStoreContract('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'writ-store-'));
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const store = new SqliteStore({ path: join(dir, 'writ.db'), clock });
  await store.migrate();
  const others: SqliteStore[] = [];
  return {
    store,
    clock,
    another: async () => {
      const s = new SqliteStore({ path: join(dir, 'writ.db'), clock });
      others.push(s);
      return s;
    },
    cleanup: async () => {
      for (const s of others) await s.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
