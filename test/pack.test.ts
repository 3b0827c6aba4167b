import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { runChild } from './helpers/child.js';
import { REPO } from './helpers/serve-process.js';

const ROOT = `${REPO}/`;

describe('npm pack ships only what runs', { skip: existsSync(`${ROOT}dist/cli/main.js`) ? false : 'dist/ is not built (npm test builds it first)' }, () => {
  it('has the compiled CLI and SDK, the licence, and no tests, benchmarks, CI files, sources or keys', async () => {
    // --ignore-scripts: `npm test` has built dist/ already; packing must not rebuild it
    const { code, stdout, stderr } = await runChild('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
    assert.equal(code, 0, stderr);
    const files: string[] = JSON.parse(stdout)[0].files.map((f: { path: string }) => f.path);
    for (const must of ['LICENSE', 'README.md', 'package.json', 'bin/writ.js', 'dist/cli/main.js', 'dist/sdk/index.js', 'dist/sdk/index.d.ts']) {
      assert.ok(files.includes(must), `the package lacks ${must}`);
    }
    const shipped = (re: RegExp) => files.filter((f) => re.test(f));
    assert.deepEqual(shipped(/^(test|bench|scripts|examples|src|\.ci)\//), [], 'tests, benchmarks, scripts, examples, sources or CI files');
    assert.deepEqual(shipped(/\.test\.|contract/), [], 'test code');
    assert.deepEqual(shipped(/\.key\.json$|\.pem$|(^|\/)\.env|decision\.json$|\.db$|\.tsbuildinfo$/), [], 'keys, data or build state');
  });

  it('@writ/sdk ships its compiled code, README, LICENSE and package.json, nothing else', { skip: existsSync(`${ROOT}packages/sdk/dist/index.js`) ? false : 'packages/sdk/dist is not built' }, async () => {
    const { code, stdout, stderr } = await runChild('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: `${ROOT}packages/sdk` });
    assert.equal(code, 0, stderr);
    const files: string[] = JSON.parse(stdout)[0].files.map((f: { path: string }) => f.path);
    for (const must of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/agent-client.js']) {
      assert.ok(files.includes(must), `@writ/sdk lacks ${must}`);
    }
    assert.deepEqual(
      files.filter((f) => !['LICENSE', 'README.md', 'package.json'].includes(f) && !/^dist\/[^/]+\.(js|d\.ts)$/.test(f)),
      [],
      'anything but dist/, README, LICENSE and package.json',
    );
    assert.deepEqual(files.filter((f) => /\.test\.|\.ts$/.test(f) && !f.endsWith('.d.ts')), [], 'tests or sources');
  });
});
