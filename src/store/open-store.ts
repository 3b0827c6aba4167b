import { join } from 'node:path';
import type { Clock } from '../core/clock.js';
import type { Store } from './store.js';
import { SqliteStore } from './sqlite/sqlite-store.js';

/**
 * The one place a backend is chosen: `postgres://` (or `postgresql://`) URLs select
 * PostgreSQL; otherwise the embedded SQLite file under the data directory.
 */
export async function openStore(options: { databaseUrl?: string; databaseSchema?: string; databaseUser?: string; dataDir: string; clock?: Clock }): Promise<Store> {
  const url = options.databaseUrl?.trim();
  if (url) {
    if (!/^postgres(ql)?:\/\//.test(url)) throw new TypeError('WRIT_DATABASE_URL must be a postgres:// URL');
    const { PostgresStore } = await import('./postgres/postgres-store.js');
    // WRIT_DATABASE_SCHEMA and PGUSER, read by the caller (src/config/settings.ts): stores read no environment
    const schema = options.databaseSchema;
    const user = options.databaseUser || undefined;
    return new PostgresStore({ connectionString: url, clock: options.clock, ...(schema ? { schema } : {}), ...(user ? { user } : {}) });
  }
  return new SqliteStore({ path: join(options.dataDir, 'writ.db'), clock: options.clock });
}
