import { COMPILED } from './runtime.js';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';

export type Backend = 'sqlite' | 'postgres';

/** What a server child needs to open the same data. */
export type StoreSpec = { backend: 'sqlite'; path: string } | { backend: 'postgres'; url: string; schema: string };

export const POSTGRES_URL = process.env.WRIT_BENCH_DATABASE_URL ?? 'postgres://127.0.0.1:5432/test';

const PG_MODULE = new URL(`../../src/store/postgres/postgres-store.${COMPILED ? 'js' : 'ts'}`, import.meta.url);

/** Null when the PostgreSQL backend can be used; otherwise why not. */
export function postgresUnavailable(): string | null {
  if (!existsSync(fileURLToPath(PG_MODULE))) return 'src/store/postgres/postgres-store.ts does not exist yet';
  return null;
}

/** Opens a store on `spec` (in this process). */
export async function openSpec(spec: StoreSpec): Promise<Store> {
  if (spec.backend === 'sqlite') return new SqliteStore({ path: spec.path });
  const mod = (await import(PG_MODULE.href)) as {
    PostgresStore: new (o: { connectionString: string; schema?: string }) => Store;
  };
  return new mod.PostgresStore({ connectionString: spec.url, schema: spec.schema });
}

export interface BenchData {
  spec: StoreSpec;
  /** removes the data (the temp directory, or the schema) */
  destroy: () => Promise<void>;
}

/** Fresh, empty data for one benchmark: a temp dir under `root`, or a random schema. */
export function freshData(backend: Backend, root: string): BenchData {
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(root, 'writ-bench-'));
    return { spec: { backend, path: join(dir, 'writ.db') }, destroy: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const schema = `writ_bench_${randomBytes(6).toString('hex')}`;
  return {
    spec: { backend, url: POSTGRES_URL, schema },
    destroy: async () => {
      const pg = await import('pg');
      const mod = (await import(PG_MODULE.href)) as { withDefaultUser?: (url: string) => string };
      const client = new pg.default.Client({ connectionString: mod.withDefaultUser?.(POSTGRES_URL) ?? POSTGRES_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
