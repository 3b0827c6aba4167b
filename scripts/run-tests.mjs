#!/usr/bin/env node
// `npm test`: runs every *.test.ts under src/ and test/ and tells, in its last line, how many
// tests passed, failed and were skipped. A run passes only when every test ran and passed:
//
// - Each file runs in its own node process and process group, two at a time (the machine has
//   2 cores), with the spec reporter for people and scripts/test-events-reporter.mjs for this
//   script. Cancelled and timed-out tests, failing hooks, and a file that ends before its tests
//   finished (no `end` line from the reporter), exits non-zero or runs no test, count as failed.
// - A file gets WRIT_TEST_FILE_TIMEOUT_MS (default 5 minutes); past it its group gets SIGTERM
//   (test/helpers/child.ts then kills the children's groups), SIGKILL 5 s later, and it fails.
// - Every process started for a file carries WRIT_TEST_RUN_MARKER in its environment; one still
//   running after the file ended is killed and fails the file (Linux: read from /proc).
// - PostgreSQL (WRIT_TEST_DATABASE_URL, default postgres://127.0.0.1:5432/test) is checked first:
//   connect, authenticate, `select 1`. When that fails its cause is the first line printed;
//   with WRIT_REQUIRE_POSTGRES=1 (set by .ci/run) the run stops there, otherwise the
//   PostgreSQL suites are skipped with that cause (WRIT_SKIP_POSTGRES).
// - Cedar's WebAssembly runs on V8's baseline compiler only (WRIT_WASM_TIER_UP=0 for every
//   `writ` a test starts, --liftoff-only for the test files): the processes live briefly.
// - The console's browser tests need Debian's chromium (WRIT_CHROMIUM, default /usr/bin/chromium);
//   without it they are skipped, and the run says so first and last (WRIT_SKIP_BROWSER).
//
// Usage: node scripts/run-tests.mjs [filter...]  (a filter is a substring of a test file's
// path, or the path of any file to run as a test file, such as test/fixtures/runner/*.fixture.ts)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { buildTests } from './build-tests.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const REPORTER = fileURLToPath(new URL('./test-events-reporter.mjs', import.meta.url));
const MARKER_ENV = 'WRIT_TEST_RUN_MARKER';
const positive = (v, fallback) => (Number.isFinite(Number(v)) && Number(v) > 0 ? Number(v) : fallback);
const FILE_TIMEOUT_MS = positive(process.env.WRIT_TEST_FILE_TIMEOUT_MS, 300_000);
const CONCURRENCY = Math.floor(positive(process.env.WRIT_TEST_CONCURRENCY, 2));
const KILL_GRACE_MS = 5_000;
/** Files that take 13 s or more on two idle cores (the runner's `slowest files` list), longest first. */
const LONGEST_FIRST = [
  'test/bench-smoke.test.ts', 'test/e2e-concurrent-start.test.ts', 'test/gateway-agent-tasks.test.ts', 'test/demo.test.ts',
  'test/cli.test.ts', 'test/console-browser.test.ts', 'test/readme.test.ts', 'test/cli-approvals.test.ts',
  'test/console-browser-admin.test.ts', 'test/sdk-tarball.test.ts',
];

function find(dir) {
  const out = [];
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    if (name === 'node_modules') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** As src/store/postgres withDefaultUser: without PGUSER or USER, libpq's default user is the OS user. */
function withDefaultUser(url) {
  if (process.env.PGUSER || process.env.USER) return url;
  try {
    const u = new URL(url);
    if (u.username || !u.host) return url;
    u.username = userInfo().username;
    return u.toString();
  } catch {
    return url;
  }
}

/** The URL without its password, and with the user the connection will use. */
function displayUrl(url) {
  try {
    const u = new URL(withDefaultUser(url));
    if (u.password) u.password = '***';
    if (!u.username) u.username = process.env.PGUSER || process.env.USER || userInfo().username;
    return u.toString();
  } catch {
    return '(not a URL)';
  }
}

/** null when PostgreSQL at `url` accepts a login and answers `select 1`; else why not, in one line. */
async function checkPostgres(url) {
  try {
    new URL(url);
  } catch {
    return `WRIT_TEST_DATABASE_URL is not a URL`;
  }
  const where = displayUrl(url);
  const client = new pg.Client({ connectionString: withDefaultUser(url), connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const r = await client.query('select 1 as one');
    if (r.rows[0]?.one !== 1) return `PostgreSQL at ${where} answered select 1 with ${JSON.stringify(r.rows)}`;
    return null;
  } catch (e) {
    const code = e.code ? ` (${e.code})` : '';
    const message = String(e.message ?? e).split('\n')[0];
    // SQLSTATE class 28: invalid authorization (wrong role, wrong password, no pg_hba entry)
    if (typeof e.code === 'string' && e.code.startsWith('28')) return `PostgreSQL at ${where} refused the login: ${message}${code}`;
    if (e.code === '3D000') return `PostgreSQL at ${where} has no such database: ${message}${code}`;
    return `PostgreSQL at ${where} is unreachable: ${message}${code}`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Processes (other than `except`) whose environment carries `marker`. Linux only; elsewhere none. */
function markedProcesses(marker, except) {
  if (!existsSync('/proc/self/environ')) return [];
  const needle = `${MARKER_ENV}=${marker}`;
  const found = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === except || Number(d) === process.pid) continue;
    let env;
    try {
      env = readFileSync(`/proc/${d}/environ`, 'latin1');
    } catch {
      continue; // gone, or not ours
    }
    if (!env.split('\0').includes(needle)) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${d}/cmdline`, 'latin1').split('\0').join(' ').trim();
    } catch {
      // gone meanwhile
    }
    found.push({ pid: Number(d), cmd });
  }
  return found;
}

const killGroup = (pid, signal) => {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
};
const killPid = (pid) => {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const runId = randomBytes(6).toString('hex');
const work = mkdtempSync(join(tmpdir(), 'writ-test-run-'));
const running = new Map(); // pid -> marker
function cleanUp() {
  rmSync(work, { recursive: true, force: true });
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
}

/**
 * The compiled mirror of src/ and test/ (scripts/build-tests.mjs) this run uses, or null when
 * the files run through tsx (WRIT_TEST_TSX=1, or a file outside src/ and test/).
 */
let buildDir = null;

/** node's arguments to run `file`: its compiled twin on plain node, else the .ts through tsx. */
function entry(file) {
  if (buildDir && /^(src|test)\/.*\.ts$/.test(file)) {
    const js = join(buildDir, file.replace(/\.ts$/, '.js'));
    if (existsSync(js)) return { loader: ['--enable-source-maps'], path: js };
  }
  return { loader: ['--import', 'tsx'], path: file };
}

/** Runs one test file; resolves with what happened to it. */
async function runFile(file, index, env) {
  const marker = `${runId}-${index}`;
  const eventsPath = join(work, `${index}.jsonl`);
  const { loader, path } = entry(file);
  const args = [
    ...(env.WRIT_WASM_TIER_UP === '0' ? ['--liftoff-only'] : []),
    ...loader,
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    `--test-reporter=${REPORTER}`, `--test-reporter-destination=${eventsPath}`,
    path,
  ];
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...env, [MARKER_ENV]: marker }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  running.set(child.pid, marker);
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  let timedOut = false;
  const limit = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid, 'SIGTERM');
    setTimeout(() => killGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS).unref();
  }, FILE_TIMEOUT_MS);
  const status = await new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (e) => resolve({ code: null, signal: null, error: e }));
  });
  clearTimeout(limit);
  killGroup(child.pid, 'SIGKILL'); // anything left in the file's own group
  // the pipes close once nothing holds them; a process in another group might, so do not wait long
  await Promise.race([Promise.all([child.stdout, child.stderr].map((s) => (s.closed ? null : new Promise((r) => s.once('close', r))))), sleep(2000)]);
  child.stdout.destroy();
  child.stderr.destroy();
  const seconds = (performance.now() - t0) / 1000;

  // processes that outlived the file: give ones being killed a moment to go, then kill the rest
  let left = markedProcesses(marker, child.pid);
  for (let i = 0; left.length && i < 30; i++) {
    await sleep(100);
    left = markedProcesses(marker, child.pid);
  }
  for (const p of left) killPid(p.pid);
  running.delete(child.pid);

  const result = { file, seconds, output, passed: 0, skipped: 0, failed: [] };
  let events = [];
  try {
    events = readFileSync(eventsPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  } catch {
    // no events: the process did not get as far as reporting
  }
  for (const e of events) {
    if (e.type === 'pass') {
      // a skipped suite reports none of its tests: it counts as one skipped
      if (e.suite && !e.skip) continue;
      if (e.skip || e.todo) result.skipped++;
      else result.passed++;
    } else if (e.type === 'fail') {
      if (e.todo) {
        result.skipped++; // a todo test's failure is expected
        continue;
      }
      // failures that only reflect their children's are counted once, at the child
      if (e.failureType === 'subtestsFailed' || (e.suite && e.failureType === 'cancelledByParent')) continue;
      const what = {
        cancelledByParent: 'cancelled',
        testTimeoutFailure: 'timed out',
        hookFailed: 'hook failed',
      }[e.failureType] ?? 'failed';
      result.failed.push(`${file} › ${e.name} (${e.suite ? `suite ${what}` : what}${e.error ? `: ${e.error}` : ''})`);
    }
  }
  const ended = events.some((e) => e.type === 'end');
  // the innermost test that started and did not finish: what was running when the file stopped
  const open = new Set();
  for (const e of events) {
    if (e.type === 'start') open.add(e.name);
    else if (e.type === 'pass' || e.type === 'fail') open.delete(e.name);
  }
  const unfinished = [...open].filter((n) => ![...open].some((m) => m.startsWith(`${n} › `)));
  const during = unfinished.length ? `, during ${unfinished.map((n) => `\`${n}\``).join(', ')}` : '';
  const how = status.error ? `could not start: ${status.error.message}` : status.signal ? `killed by ${status.signal}` : `exit code ${status.code}`;
  if (timedOut) result.failed.push(`${file} (killed at its time limit of ${FILE_TIMEOUT_MS / 1000} s${during})`);
  else if (!ended) result.failed.push(`${file} (ended before its tests finished: ${how}${during})`);
  else if (status.code !== 0 && result.failed.length === 0) result.failed.push(`${file} (${how} with no failed test reported)`);
  else if (result.passed + result.skipped + result.failed.length === 0) result.failed.push(`${file} (ran no test)`);
  if (left.length) {
    result.failed.push(`${file} (${left.length} process(es) outlived it, killed: ${left.map((p) => `${p.pid} ${p.cmd.slice(0, 120)}`).join('; ')})`);
  }
  return result;
}

async function main() {
  const files = [...find('src'), ...find('test')].map((f) => relative(ROOT, join(ROOT, f))).sort();
  const filters = process.argv.slice(2);
  const selected = filters.length
    ? [...new Set([...files.filter((f) => filters.some((a) => f.includes(a))), ...filters.filter((a) => /\.[cm]?[jt]s$/.test(a) && existsSync(a) && statSync(a).isFile())])]
    : files;

  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // run as a test runner of our own, even when started from a test
  env.WRIT_TEST_DATABASE_URL ??= 'postgres://127.0.0.1:5432/test';
  // test processes live briefly: Cedar's WebAssembly on V8's baseline compiler only, in the
  // test files (--liftoff-only) and in every `writ` they start (WRIT_WASM_TIER_UP=0, read by
  // the CLI): recompiling hot functions cost each `writ serve` start about 0.9 s of CPU, a
  // sixth of the run's CPU (365 -> 311-340 s on two cores). WRIT_WASM_TIER_UP=1 keeps V8's default.
  env.WRIT_WASM_TIER_UP ??= '0';
  const why = await checkPostgres(env.WRIT_TEST_DATABASE_URL);
  if (why) {
    if (env.WRIT_REQUIRE_POSTGRES === '1') {
      console.error(`${why}; PostgreSQL is required (WRIT_REQUIRE_POSTGRES=1)`);
      console.error('0 passed, 1 failed, 0 skipped');
      return 1;
    }
    env.WRIT_SKIP_POSTGRES = why;
    console.log(`# skipping PostgreSQL suites: ${why}`);
  } else {
    console.log(`# PostgreSQL at ${displayUrl(env.WRIT_TEST_DATABASE_URL)}: login and select 1 ok`);
  }

  const chromium = env.WRIT_CHROMIUM ?? '/usr/bin/chromium';
  const noBrowser = existsSync(chromium) ? null : `chromium is not installed at ${chromium} (apt-get install -y chromium; .ci/run installs it)`;
  if (noBrowser) {
    env.WRIT_SKIP_BROWSER = noBrowser;
    console.log(`# skipping browser tests: ${noBrowser}`);
  }

  const t0 = performance.now();
  if (env.WRIT_TEST_TSX !== '1' && selected.some((f) => /^(src|test)\//.test(f))) {
    buildDir = await buildTests(`.test-build-${runId}`);
    console.log(`# compiled src/ and test/ into ${relative(ROOT, buildDir)} (${((performance.now() - t0) / 1000).toFixed(1)} s); WRIT_TEST_TSX=1 runs the .ts files through tsx instead`);
  }
  console.log(`# ${selected.length} test files, ${CONCURRENCY} at a time, ${FILE_TIMEOUT_MS / 1000} s limit each`);
  const results = [];
  // The longest files start first, so that the run does not end waiting on one of them while
  // the other core idles (longest-processing-time-first scheduling).
  const rank = (f) => {
    const i = LONGEST_FIRST.findIndex((l) => f.endsWith(l));
    return i === -1 ? LONGEST_FIRST.length : i;
  };
  const queue = selected.map((file, index) => ({ file, index })).sort((a, b) => rank(a.file) - rank(b.file) || a.index - b.index);
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      console.log(`# started ${next.file}`);
      const r = await runFile(next.file, next.index, env);
      results.push(r);
      const mark = r.failed.length ? '✖' : '✔';
      process.stdout.write(`\n▶ ${r.file}\n${r.output.trimEnd()}\n${mark} ${r.file}: ${r.passed} passed, ${r.failed.length} failed, ${r.skipped} skipped (${r.seconds.toFixed(1)} s)\n\n`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, selected.length) }, worker));
  cleanUp();

  const total = (performance.now() - t0) / 1000;
  const passed = results.reduce((n, r) => n + r.passed, 0);
  const skipped = results.reduce((n, r) => n + r.skipped, 0);
  const failed = results.flatMap((r) => r.failed);
  console.log(`# slowest files (whole run ${total.toFixed(1)} s):`);
  for (const r of [...results].sort((a, b) => b.seconds - a.seconds).slice(0, 10)) console.log(`#   ${r.seconds.toFixed(1).padStart(6)} s  ${r.file}`);
  if (why) console.log(`# skipped PostgreSQL suites: ${why}`);
  if (noBrowser) console.log(`# skipped browser tests: ${noBrowser}`);
  if (selected.length === 0) failed.push('no test file matched');
  if (failed.length) {
    console.log(`\nfailed (${failed.length}):`);
    for (const f of failed) console.log(`  ✖ ${f}`);
  }
  console.log(`${passed} passed, ${failed.length} failed, ${skipped} skipped`);
  return failed.length ? 1 : 0;
}

// Stopped from outside (Ctrl-C, CI's limit): stop the files and whatever they started.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    for (const [pid, marker] of running) {
      killGroup(pid, 'SIGTERM');
      setTimeout(() => {
        killGroup(pid, 'SIGKILL');
        for (const p of markedProcesses(marker, pid)) killPid(p.pid);
      }, 1000);
    }
    setTimeout(() => {
      cleanUp();
      process.exit(130);
    }, 1500);
  });
}

process.exitCode = await main();
