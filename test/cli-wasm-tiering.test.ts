import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { UsageError } from '../src/cli/args.js';
import { applyWasmTiering } from '../src/cli/wasm-tiering.js';
import { runChild } from './helpers/child.js';
import { REPO } from './helpers/serve-process.js';

describe('WRIT_WASM_TIER_UP', () => {
  it('takes 0, 1 or nothing; any other value is a usage error of every command, before it runs', async () => {
    assert.doesNotThrow(() => applyWasmTiering(undefined));
    assert.doesNotThrow(() => applyWasmTiering(''));
    assert.doesNotThrow(() => applyWasmTiering('1'));
    for (const bad of ['2', 'false', 'off', ' 0', '0 ', '01', 'yes']) {
      assert.throws(() => applyWasmTiering(bad), (e: unknown) => e instanceof UsageError && /WRIT_WASM_TIER_UP is `.*`; use 0 or 1/.test((e as Error).message), bad);
    }
    const run = (value: string | undefined, args: string[]) => {
      const env = { ...process.env };
      if (value === undefined) delete env.WRIT_WASM_TIER_UP;
      else env.WRIT_WASM_TIER_UP = value;
      return runChild(process.execPath, ['bin/writ.js', ...args], { cwd: REPO, env });
    };
    const refused = await run('off', ['--version']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /^writ: WRIT_WASM_TIER_UP is `off`; use 0 or 1$/m);
    assert.equal(refused.stdout, '');
    // Cedar on the baseline compiler only answers as with the default: the same policies are
    // valid, the same invalid one refused with the same error
    const dir = mkdtempSync(join(tmpdir(), 'writ-tier-'));
    try {
      const bad = join(dir, 'bad.cedar');
      writeFileSync(bad, 'permit(principal, action, resource) when { context.nope.x };\n');
      const good = join(REPO, 'examples/policies/approvals-break-glass.cedar');
      const seen = new Set<string>();
      for (const value of ['0', '1', undefined]) {
        const ok = await run(value, ['policy', 'validate', good]);
        assert.equal(ok.code, 0, `${value}: ${ok.stderr}`);
        assert.match(ok.stdout, /valid \(5 policies, 0 warnings\)/);
        const no = await run(value, ['policy', 'validate', bad]);
        assert.equal(no.code, 1, `${value}: ${no.stdout}`);
        assert.match(no.stderr, /attribute `nope` in context .* not found/);
        seen.add(`${ok.stdout}|${no.stderr}`);
      }
      assert.equal(seen.size, 1, 'the same answers with and without tier-up');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
