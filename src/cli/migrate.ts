import { resolve } from 'node:path';
import { openStore } from '../store/open-store.js';
import { parseArgs } from './args.js';
import { settingsOf } from './settings.js';

export const migrateUsage = 'writ migrate [--data-dir .writ] [--config settings.json]   (PostgreSQL when WRIT_DATABASE_URL is set)';

/**
 * Applies pending schema migrations and exits. `writ serve` does the same on start;
 * this is for deployments that migrate in a separate step. Safe to run while other
 * instances start: migrations take a lock and are idempotent.
 */
export async function migrate(argv: string[]): Promise<void> {
  const args = parseArgs(argv, { values: ['data-dir', 'config'] });
  const env = settingsOf(args);
  const dataDir = resolve(env.WRIT_DATA_DIR ?? '.writ');
  const store = await openStore({ databaseUrl: env.WRIT_DATABASE_URL, databaseSchema: env.WRIT_DATABASE_SCHEMA, databaseUser: env.PGUSER, dataDir });
  try {
    await store.migrate();
    console.log(JSON.stringify({ ok: true, backend: store.backend }));
  } finally {
    await store.close();
  }
}
