import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { readSettings, renderConfigurationDoc, SETTINGS } from '../src/config/settings.js';
import { writ } from './helpers/cli.js';
import { REPO } from './helpers/serve-process.js';

const ROOT = pathToFileURL(`${REPO}/`);

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'writ-config-'));
}

describe('typed configuration', () => {
  it('docs/configuration.md is what `npm run docs:config` generates (regenerate it when this fails)', () => {
    assert.equal(readFileSync(new URL('docs/configuration.md', ROOT), 'utf8'), renderConfigurationDoc());
  });

  it('every WRIT_ variable the service reads is a documented setting', () => {
    const read = new Set<string>();
    for (const f of ['src/cli/serve.ts', 'src/cli/migrate.ts', 'src/cli/limits-env.ts', 'src/cli/audit-env.ts', 'src/cli/escalation-env.ts', 'src/cli/federation-env.ts', 'src/cli/operator-env.ts']) {
      for (const m of readFileSync(new URL(f, ROOT), 'utf8').matchAll(/\b(WRIT_[A-Z0-9_]+)\b/g)) read.add(m[1]!);
    }
    assert.deepEqual([...read].filter((n) => !(n in SETTINGS)), []);
  });

  it('stores and sub-services read no environment: process.env only at the CLI edge (and gateway secret references)', () => {
    // the gateway resolves its own `{env: NAME}` secret references and task-token variable by
    // design (the PostgreSQL store's user, PGUSER, is a setting read at the CLI edge)
    const allowed = new Set(['src/gateway/secrets.ts', 'src/gateway/mcp-serve.ts', 'src/gateway/mcp-gateway.ts']);
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(new URL(dir, ROOT), { withFileTypes: true })) {
        const path = `${dir}/${e.name}`;
        if (e.isDirectory()) walk(path);
        else if (path.endsWith('.ts') && !path.startsWith('src/cli/') && !allowed.has(path) && readFileSync(new URL(path, ROOT), 'utf8').includes('process.env')) offenders.push(path);
      }
    };
    walk('src');
    assert.deepEqual(offenders, []);
  });

  it('flags win over the environment, the environment over the file; empty values count as given', () => {
    const dir = tmp();
    try {
      const file = join(dir, 'settings.json');
      writeFileSync(file, JSON.stringify({ WRIT_PORT: 9000, WRIT_HOST: '10.0.0.1', WRIT_DATA_DIR: '/from/file', WRIT_DPOP_NONCES: true }));
      const s = readSettings({ env: { WRIT_HOST: '127.0.0.2', WRIT_ISSUER: '' }, flags: { host: undefined, 'data-dir': '/from/flag' }, file });
      assert.equal(s.WRIT_PORT, '9000');
      assert.equal(s.WRIT_HOST, '127.0.0.2');
      assert.equal(s.WRIT_DATA_DIR, '/from/flag');
      assert.equal(s.WRIT_ISSUER, '');
      assert.equal(s.WRIT_DPOP_NONCES, 'true'); // and the DPoP parser refuses it, as it refuses the same text from the environment
      assert.equal(s.WRIT_LOG_LEVEL, undefined);
      // variables that are not settings are not picked up
      assert.equal((readSettings({ env: { WRIT_NOT_A_SETTING: '1' } }) as Record<string, unknown>).WRIT_NOT_A_SETTING, undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a bad file is refused with a clear error: unknown name, lower-case name, nested value, not an object, not JSON, missing', () => {
    const dir = tmp();
    try {
      const file = join(dir, 'settings.json');
      const refused = (text: string, why: RegExp) => {
        writeFileSync(file, text);
        assert.throws(() => readSettings({ env: {}, file }), (err: Error & { code?: string }) => err.code === 'invalid_request' && why.test(err.message));
      };
      refused('{"WRIT_PORTT": 1}', /writ_portt/);
      refused('{"writ_port": 1}', /writ_port/);
      refused('{"WRIT_PORT": [8080]}', /writ_port/);
      refused('{"WRIT_PORT": {"value": 8080}}', /writ_port/);
      refused('{"WRIT_PORT": null}', /writ_port/);
      refused('[]', /configuration file/);
      refused('{"WRIT_PORT": 1', /configuration file/);
      assert.throws(() => readSettings({ env: {}, file: join(dir, 'missing.json') }), /configuration file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('`writ migrate --config FILE` takes the data directory from the file; a bad file fails with a usage error', { timeout: 120_000 }, async () => {
    const dir = tmp();
    try {
      const file = join(dir, 'settings.json');
      writeFileSync(file, JSON.stringify({ WRIT_DATA_DIR: join(dir, 'store') }));
      const r = await writ(['migrate', '--config', file], { WRIT_DATA_DIR: undefined, WRIT_DATABASE_URL: undefined });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(existsSync(join(dir, 'store', 'writ.db')));
      writeFileSync(file, JSON.stringify({ WRIT_DATA_DIRR: join(dir, 'other') }));
      const bad = await writ(['migrate', '--config', file], { WRIT_DATA_DIR: undefined });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /writ_data_dirr/);
      assert.ok(!existsSync(join(dir, 'other')));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
