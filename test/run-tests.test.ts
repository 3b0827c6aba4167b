// `npm test` (scripts/run-tests.mjs) on fixture files (test/fixtures/runner/*.fixture.ts, which
// the normal run does not pick up): a run fails whenever a test did not run and pass, tells
// which, and leaves no process behind.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runChild, type RunResult } from './helpers/child.js';
import { REPO } from './helpers/serve-process.js';

const ROOT = REPO;
const fixture = (name: string) => `test/fixtures/runner/${name}.fixture.ts`;

const dir = mkdtempSync(join(tmpdir(), 'writ-run-tests-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

async function runTests(files: string[], env: Record<string, string> = {}): Promise<RunResult & { lines: string[]; pids: () => number[] }> {
  const pidsFile = join(dir, `pids-${n++}.json`);
  const r = await runChild(process.execPath, ['scripts/run-tests.mjs', ...files], {
    cwd: ROOT,
    // through tsx: one compiled mirror of src/ and test/ per nested run would cost more than
    // these cases; the case below checks the compiled mode
    env: { ...process.env, FIXTURE_PIDS_FILE: pidsFile, WRIT_TEST_TSX: '1', ...env },
  });
  return { ...r, lines: r.stdout.trimEnd().split('\n'), pids: () => JSON.parse(readFileSync(pidsFile, 'utf8')) };
}

/** Whether `pid` is a live process (a zombie is not: it only waits to be reaped). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

// The cases run at once: each is its own runner process, mostly waiting on its children.
describe('scripts/run-tests.mjs', { concurrency: true }, () => {
  it('passes a file whose tests pass, and counts a skipped test and a skipped suite as skipped', async () => {
    const r = await runTests([fixture('passes')]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.lines.at(-1), '1 passed, 0 failed, 2 skipped');
    assert.ok(r.lines.some((l) => /slowest files/.test(l)), 'prints the slowest files');
  });

  it('runs the files compiled to plain JavaScript, points a failure at its .ts line, and removes the build', async () => {
    const r = await runTests([fixture('passes'), fixture('throws-on-load')], { WRIT_TEST_TSX: '0' });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(r.lines.at(-1), '1 passed, 1 failed, 2 skipped');
    const built = /# compiled src\/ and test\/ into (\.test-build-[0-9a-f]+) /.exec(r.stdout);
    assert.ok(built, r.stdout);
    assert.match(r.stdout, new RegExp(`running .*/${built[1]}/test/fixtures/runner/passes\\.fixture\\.js\\n`), 'node ran the compiled file');
    // the source map takes a failure's stack back to the .ts source and its line
    assert.match(r.stdout, /at .*\/test\/fixtures\/runner\/throws-on-load\.fixture\.ts:4:7\)/);
    assert.equal(existsSync(join(ROOT, built[1]!)), false, 'the mirror is removed after the run');
  });

  it('fails when a hook fails after spawning a child, names the failures above the last line, and leaves no process behind', async () => {
    const r = await runTests([fixture('passes'), fixture('hook-spawns-then-throws')]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(r.lines.at(-1), '1 passed, 2 failed, 2 skipped');
    assert.match(r.lines.at(-2)!, /hook-spawns-then-throws\.fixture\.ts › a suite whose before hook fails after starting a child \(suite hook failed: the hook failed on purpose\)/);
    assert.match(r.lines.at(-3)!, /› never runs \(cancelled/);
    const [child, grandchild] = r.pids();
    assert.equal(alive(child!), false, `the child ${child} is gone`);
    assert.equal(alive(grandchild!), false, `the grandchild ${grandchild} (in the child's process group) is gone`);
    // gone because the test helper killed them, not because the runner had to
    assert.doesNotMatch(r.stdout, /outlived/);
  });

  it('fails when a file ends without its tests running', async () => {
    const r = await runTests([fixture('ends-early')]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(r.lines.at(-1), '0 passed, 1 failed, 0 skipped');
    // (which test was running is told when the reporter got to write it before the exit)
    assert.match(r.lines.at(-2)!, /ends-early\.fixture\.ts \(ended before its tests finished: exit code 0(, during `starts, and the process exits under it`)?\)$/);
  });

  it('fails when a file throws while it loads, before declaring a test', async () => {
    const r = await runTests([fixture('throws-on-load')]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(r.lines.at(-1), '0 passed, 1 failed, 0 skipped');
    assert.match(r.lines.at(-2)!, /throws-on-load\.fixture\.ts \(ended before its tests finished: exit code 1\)$/);
    assert.match(r.stdout, /the file failed to load on purpose/, "the file's own output is shown");
  });

  it('kills a file at its time limit, with what it started, and fails it', async () => {
    // long enough for the fixture to load and start its child on a busy machine
    const r = await runTests([fixture('hangs')], { WRIT_TEST_FILE_TIMEOUT_MS: '8000' });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(r.lines.at(-1), '0 passed, 1 failed, 0 skipped');
    assert.match(r.lines.at(-2)!, /hangs\.fixture\.ts \(killed at its time limit of 8 s, during `waits forever`\)/);
    const [child] = r.pids();
    assert.equal(alive(child!), false, `the child ${child} is gone`);
  });

  it('kills a process that outlived its file and fails the file, even when its tests passed', async () => {
    const r = await runTests([fixture('leaks')]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(r.lines.at(-1), '1 passed, 1 failed, 0 skipped');
    const [leaked] = r.pids();
    assert.match(r.lines.at(-2)!, new RegExp(`leaks\\.fixture\\.ts \\(1 process\\(es\\) outlived it, killed: ${leaked} `));
    assert.equal(alive(leaked!), false, `the leaked process ${leaked} is gone`);
  });

  it('reports unreachable PostgreSQL on its first line, and skips only with WRIT_REQUIRE_POSTGRES unset', async () => {
    const url = 'postgres://writ@127.0.0.1:1/test';
    const skipped = await runTests([fixture('passes')], { WRIT_TEST_DATABASE_URL: url, WRIT_REQUIRE_POSTGRES: '' });
    assert.equal(skipped.code, 0, skipped.stdout + skipped.stderr);
    assert.equal(skipped.lines.at(-1), '1 passed, 0 failed, 2 skipped');
    assert.match(skipped.lines[0]!, /^# skipping PostgreSQL suites: PostgreSQL at postgres:\/\/writ@127\.0\.0\.1:1\/test is unreachable: .*ECONNREFUSED/);

    const required = await runTests([fixture('passes')], { WRIT_TEST_DATABASE_URL: url, WRIT_REQUIRE_POSTGRES: '1' });
    assert.equal(required.code, 1);
    assert.match(required.stderr.split('\n')[0]!, /^PostgreSQL at .* is unreachable: .*ECONNREFUSED.*WRIT_REQUIRE_POSTGRES=1/);
    assert.equal(required.stdout, '', 'no test ran');
  });

  it('reports a refused login with its cause (role, password), not as unreachable', { skip: process.env.WRIT_SKIP_POSTGRES ? `PostgreSQL unreachable: ${process.env.WRIT_SKIP_POSTGRES}` : false }, async () => {
    const base = new URL(process.env.WRIT_TEST_DATABASE_URL ?? 'postgres://127.0.0.1:5432/test');
    base.username = 'writ_no_such_role';
    base.password = 'secret-password';
    const r = await runTests([fixture('passes')], { WRIT_TEST_DATABASE_URL: base.toString(), WRIT_REQUIRE_POSTGRES: '1' });
    assert.equal(r.code, 1);
    const first = r.stderr.split('\n')[0]!;
    assert.match(first, /^PostgreSQL at postgres:\/\/writ_no_such_role:\*\*\*@.* refused the login: .*writ_no_such_role.* \(28\w{3}\)/);
    assert.doesNotMatch(r.stdout + r.stderr, /secret-password/);
  });
});
