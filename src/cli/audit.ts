import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { flag, intFlag, parseArgs, positionals } from './args.js';
import { baseUrl, CliError, CONNECTION, operatorToken, print, request } from './client.js';
import { group } from './command.js';
import { AUDIT_USAGE } from './usage.js';

type ChainReport = { ok: true; entries: number } | { ok: false; entries: number; first_bad_seq: number; problem: string };

/** Opens the store itself (no server needed): SQLite under `dataDir`, or WRIT_DATABASE_URL. */
async function verifyLocally(dataDir: string): Promise<ChainReport> {
  const databaseUrl = process.env.WRIT_DATABASE_URL?.trim() || undefined;
  const dir = resolve(dataDir);
  // the store would create an empty database, which verifies as an intact empty chain
  if (!databaseUrl && !existsSync(join(dir, 'writ.db'))) throw new CliError('store_not_found', `no Writ database at ${join(dir, 'writ.db')}`);
  const [{ openStore }, { verifyChain }] = await Promise.all([import('../store/open-store.js'), import('../audit/verify-chain.js')]);
  let store;
  try {
    store = await openStore({ databaseUrl, dataDir: dir });
  } catch (err) {
    throw new CliError('store_unavailable', `cannot open the store: ${(err as Error).message}`);
  }
  try {
    return await verifyChain(store);
  } catch (err) {
    const cause = (err as { cause?: Error }).cause;
    throw new CliError('store_unavailable', `cannot read the audit chain: ${cause?.message ?? (err as Error).message}`);
  } finally {
    await store.close().catch(() => undefined);
  }
}

/** `writ audit list|verify`. */
export const audit = group('audit', AUDIT_USAGE, {
  async list(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'task', 'agent', 'type', 'decision', 'after', 'limit'] });
    positionals(args, []);
    const query = {
      task_id: flag(args, 'task'),
      agent_id: flag(args, 'agent'),
      type: flag(args, 'type'),
      decision_id: flag(args, 'decision'),
      after: intFlag(args, 'after', 0),
      limit: intFlag(args, 'limit', 1),
    };
    print(await request(baseUrl(args), 'GET', '/v1/audit', { token: operatorToken(args), query }));
  },

  async verify(argv, ctx) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'data-dir'] });
    positionals(args, []);
    const dataDir = flag(args, 'data-dir');
    const report: ChainReport = dataDir !== undefined
      ? await verifyLocally(dataDir)
      : await request(baseUrl(args), 'GET', '/v1/audit/verify', { token: operatorToken(args) });
    print(report);
    if (report.ok) return 0;
    process.stderr.write(`writ ${ctx.label}: audit_chain_broken: the chain breaks at seq ${report.first_bad_seq}: ${report.problem}\n`);
    return 1;
  },
});
