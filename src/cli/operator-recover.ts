import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { sha256Hex } from '../core/digest.js';
import { newId, newSecret } from '../core/ids.js';
import type { OperatorRecord } from '../core/types.js';
import { openStore } from '../store/open-store.js';
import { parseArgs, positionals, requireFlag, UsageError } from './args.js';
import { operatorConfigFromEnv } from './operator-env.js';
import { settingsOf } from './settings.js';
import { DEFAULT_CONFIG } from '../service/config.js';

/**
 * `writ operator recover --name NAME`: a new admin operator written straight into the store,
 * for when no admin token works any more (every admin disabled or expired, the tokens lost).
 * It needs no token, so it does not go over HTTP: it needs what only the host's owner has,
 * the data directory (file permissions, 0700) or the database URL. The token is shown once;
 * the audit log records `operator.recovered` with the OS user who ran it, so the recovery is
 * as visible as a break-glass session. Safe while `writ serve` runs: it is one store
 * transaction like any other (SQLite waits on the busy lock; PostgreSQL on its row locks).
 */
export async function recoverOperator(argv: string[]): Promise<void> {
  const args = parseArgs(argv, { values: ['data-dir', 'config', 'name'] });
  positionals(args, []);
  const name = requireFlag(args, 'name');
  if (name.length > 200 || /[\u0000-\u001f\u007f]/.test(name)) throw new UsageError('--name is at most 200 characters, without control characters');
  const env = settingsOf(args);
  const operatorTokenTtlSeconds = operatorConfigFromEnv(env).operatorTokenTtlSeconds ?? DEFAULT_CONFIG.operatorTokenTtlSeconds;
  const dataDir = resolve(env.WRIT_DATA_DIR ?? '.writ');
  // never create a store here: a mistyped --data-dir would otherwise give a token to an empty new one
  if (!env.WRIT_DATABASE_URL && !existsSync(join(dataDir, 'writ.db'))) {
    throw new UsageError(`no Writ store at \`${dataDir}\` (writ.db): pass the --data-dir that writ serve uses, or set WRIT_DATABASE_URL`);
  }
  const store = await openStore({ databaseUrl: env.WRIT_DATABASE_URL, databaseSchema: env.WRIT_DATABASE_SCHEMA, databaseUser: env.PGUSER, dataDir });
  try {
    if ((await store.countOperators()) === 0) {
      throw new UsageError('the store has no operators yet: start `writ serve` once, which creates the first admin');
    }
    const token = newSecret('wop');
    const now = Date.now();
    const op: OperatorRecord = {
      id: newId('op'), name, roles: ['admin'], tokenHash: sha256Hex(token), createdAt: now,
      expiresAt: now + operatorTokenTtlSeconds * 1000, rotatedAt: null, disabled: false,
    };
    let osUser = 'unknown';
    try {
      osUser = userInfo().username;
    } catch {
      // no passwd entry for this uid: the audit entry says unknown
    }
    await store.createOperator(op, {
      type: 'operator.recovered',
      actor: `local:${osUser}`,
      data: { operator_id: op.id, name: op.name, roles: op.roles, expires_at: op.expiresAt, os_user: osUser },
    });
    console.log(JSON.stringify({ id: op.id, name: op.name, roles: op.roles, token, expires_at: new Date(op.expiresAt).toISOString() }, null, 2));
    console.error('writ operator recover: a new admin operator was written to the store and audited as operator.recovered; its token is shown once above');
  } finally {
    await store.close();
  }
}
