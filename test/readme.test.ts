/**
 * The documentation runs as written: the README walkthrough, its curl section and SDK
 * snippet, and every runnable block in docs/, are run with bash exactly as printed, from a
 * fresh temporary directory, each session against a fresh Writ that its setup block starts.
 * Which blocks run is marked in the Markdown (see helpers/doc-blocks.ts).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkPolicyText } from '../src/policy/engine.js';
import { parseDocBlocks, sessionScript, type DocBlock } from './helpers/doc-blocks.js';
import { REPO, spawnGroup } from './helpers/serve-process.js';

const SESSION_TIMEOUT_MS = 240_000;

/** What the runnable blocks of each file in docs/ must print (on stdout). */
const EXPECTED: Record<string, RegExp[]> = {
  'docs/gateway.md': [
    // tools approve: the echo server's one tool, added to the pins
    /"tool": "echo\.echo",\s*"status": "added"/,
    // tools list: pinned
    /"tool": "echo\.echo",\s*"status": "pinned"/,
  ],
};

function blocksOf(file: string): DocBlock[] {
  const { blocks, errors } = parseDocBlocks(readFileSync(join(REPO, file), 'utf8'), file);
  assert.deepEqual(errors, [], `doc-test markers in ${file}`);
  return blocks;
}

const docFiles = readdirSync(join(REPO, 'docs'))
  .filter((f) => f.endsWith('.md'))
  .map((f) => `docs/${f}`);

/** A port nobody listens on right now (the OS picks it). */
async function freePort(): Promise<number> {
  return await new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

interface Session {
  code: number | string;
  stdout: string;
  stderr: string;
  trace: string;
  /** the directory bash ran in: it must stay empty (scratch files go to $WRIT_DIR) */
  cwdEntries: string[];
  /** what the session's Writ logged */
  serveLog: string;
}

/** Newest modification time of the .ts files under `dir`. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    const t = e.isDirectory() ? newestSource(p) : e.name.endsWith('.ts') ? statSync(p).mtimeMs : 0;
    if (t > newest) newest = t;
  }
  return newest;
}

/**
 * The README's SDK snippet imports `@writ/sdk`, whose package (packages/sdk) exports its dist/,
 * and `writ` runs dist/. `npm test` builds both first; a run of this file alone builds them
 * when missing or older than src/ or packages/sdk/src (the rule bin/writ.js follows), so the
 * snippet never runs against a stale build.
 */
before(async () => {
  const stamp = join(REPO, 'dist', '.built');
  const newest = Math.max(newestSource(join(REPO, 'src')), newestSource(join(REPO, 'packages', 'sdk', 'src')));
  if (existsSync(join(REPO, 'packages', 'sdk', 'dist', 'index.js')) && existsSync(stamp) && newest <= statSync(stamp).mtimeMs) return;
  const build = spawnGroup('npm', ['run', 'build'], { cwd: REPO });
  const timer = setTimeout(() => void build.kill(), SESSION_TIMEOUT_MS);
  try {
    assert.equal(await build.exited, 0, `npm run build failed:\n${build.stdout()}\n${build.stderr()}`);
  } finally {
    clearTimeout(timer);
    await build.kill();
  }
}, { timeout: SESSION_TIMEOUT_MS + 30_000 });

const root = mkdtempSync(join(tmpdir(), 'writ-doc-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** Runs one bash session from a fresh directory; kills everything it started when it ends. */
async function runSession(name: string, script: string): Promise<Session> {
  const dir = mkdtempSync(join(root, `${name}-`));
  const cwd = join(dir, 'cwd');
  const tmp = join(dir, 'tmp');
  mkdirSync(cwd);
  mkdirSync(tmp);
  const scriptPath = join(dir, 'session.sh');
  const tracePath = join(dir, 'trace.log');
  // the harness's own lines: strict mode, and a trace of each command in a file of its own
  writeFileSync(scriptPath, `set -euo pipefail\nexec 9>>"${tracePath}"\nBASH_XTRACEFD=9\nset -x\n${script}`);
  const env: NodeJS.ProcessEnv = { ...process.env, WRIT_HOME: REPO, WRIT_PORT: String(await freePort()), TMPDIR: tmp };
  for (const k of ['WRIT_URL', 'WRIT_TOKEN', 'WRIT_DIR', 'WRIT_DATA_DIR', 'WRIT_DATABASE_URL', 'WRIT_BOOTSTRAP_TOKEN', 'WRIT_ISSUER']) delete env[k];
  const p = spawnGroup('bash', [scriptPath], { cwd, env });
  const timer = setTimeout(() => void p.kill(), SESSION_TIMEOUT_MS);
  let code: number | string;
  try {
    code = await p.exited;
  } finally {
    clearTimeout(timer);
    // the session's background Writ, and anything else it left running
    await p.kill();
  }
  let trace = '';
  try {
    trace = readFileSync(tracePath, 'utf8');
  } catch {
    /* no trace */
  }
  return { code, stdout: p.stdout(), stderr: p.stderr(), trace, cwdEntries: readdirSync(cwd), serveLog: serveLogs(tmp) };
}

/** The server logs the session's setup block wrote (`$WRIT_DIR/serve.log`, under the session's TMPDIR). */
function serveLogs(tmp: string): string {
  let out = '';
  for (const d of readdirSync(tmp)) {
    try {
      out += readFileSync(join(tmp, d, 'serve.log'), 'utf8');
    } catch {
      /* not a walkthrough directory */
    }
  }
  return out;
}

/**
 * Runs a session; once more when its server could not listen because the free port found
 * for it was taken before it started (another test's server took it in between).
 */
async function runSessionWithPort(name: string, script: string): Promise<Session> {
  const first = await runSession(name, script);
  if (first.code === 0 || !/EADDRINUSE/.test(first.serveLog)) return first;
  return await runSession(name, script);
}

function explain(s: Session): string {
  return `exit ${s.code}\n--- serve.log (tail)\n${s.serveLog.slice(-2000)}\n--- stdout (tail)\n${s.stdout.slice(-3000)}\n--- stderr (tail)\n${s.stderr.slice(-3000)}\n--- last commands\n${s.trace.split('\n').slice(-15).map((l) => (l.length > 240 ? `${l.slice(0, 240)}…` : l)).join('\n')}`;
}

/** `n` JSON objects on stdout that match `pattern` (stdout is a stream of pretty-printed JSON and text) */
function count(text: string, pattern: RegExp): number {
  return text.match(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`))?.length ?? 0;
}

// the sessions are independent (own server, port and directories): run them side by side
describe('the documentation runs as written', { concurrency: true }, () => {
  it('every code block in README.md and docs/ is marked run, setup, file, policy or skip', () => {
    const readme = blocksOf('README.md');
    assert.equal(readme.filter((b) => b.kind === 'setup').length, 1, 'README.md has one setup block');
    for (const f of docFiles) assert.equal(blocksOf(f).filter((b) => b.kind === 'setup').length, 0, `${f}: only the README has a setup block`);
    assert.ok(readme.filter((b) => b.kind === 'run').length >= 4, 'the walkthrough, curl, SDK and stop blocks run');
    assert.ok(readme.some((b) => b.kind === 'file' && b.lang === 'ts'), 'the SDK snippet runs');
  });

  it('the marker parser refuses unmarked blocks, stray markers, skips without a reason and non-shell runs', () => {
    const md = [
      '<!-- doc-test: run -->',
      '```sh',
      'echo one',
      '```',
      '```sh',
      'echo unmarked',
      '```',
      '<!-- doc-test: skip -->',
      '```json',
      '{}',
      '```',
      '<!-- doc-test: run -->',
      '```ts',
      'let x = 1;',
      '```',
      '<!-- doc-test: run -->',
      'some prose',
      '<!-- doc-test: file $WRIT_DIR/a.txt -->',
      '',
      '~~~text',
      'a ``` inside',
      '~~~',
      '<!-- doc-test: run -->',
    ].join('\n');
    const { blocks, errors } = parseDocBlocks(md, 'x.md');
    assert.deepEqual(errors, [
      'x.md:5: a code block without a doc-test marker (run, setup, file PATH, policy or skip (why))',
      'x.md:8: `skip` needs a reason: <!-- doc-test: skip (why) -->',
      'x.md:13: only shell blocks can be run (this one is `ts`)',
      'x.md:16: a doc-test marker not directly before a code block',
      'x.md:23: a doc-test marker with no code block after it',
    ]);
    assert.deepEqual(blocks.map((b) => [b.kind, b.line, b.body]), [
      ['run', 2, 'echo one\n'],
      ['skip', 9, '{}\n'],
      ['run', 13, 'let x = 1;\n'],
      ['file', 20, 'a ``` inside\n'],
    ]);
    // a file block becomes a quoted here-document: the body is written as is, the path expanded
    assert.equal(sessionScript([blocks[3]!]), `# --- x.md:20 (file) ---\ncat > "$WRIT_DIR/a.txt" <<'WRIT_DOC_TEST_EOF'\na \`\`\` inside\nWRIT_DOC_TEST_EOF\n`);
  });

  it('every Cedar policy shown is accepted by `writ policy set` (parses, validates strictly against the schema)', () => {
    const policies = ['README.md', ...docFiles].flatMap(blocksOf).filter((b) => b.kind === 'policy');
    assert.ok(policies.length >= 5);
    for (const b of policies) {
      let ids: string[] = [];
      try {
        ids = checkPolicyText(b.body).ids;
      } catch (err) {
        const e = err as { message: string; details?: unknown };
        assert.fail(`${b.file}:${b.line}: ${e.message} ${JSON.stringify(e.details ?? '')}`);
      }
      assert.ok(ids.length > 0 && checkPolicyText(b.body).warnings.length === 0, `${b.file}:${b.line}: every policy shown has an @id`);
    }
  });

  it('README.md: the walkthrough, the curl section and the SDK snippet', { timeout: SESSION_TIMEOUT_MS + 30_000 }, async () => {
    const s = await runSessionWithPort('readme', sessionScript(blocksOf('README.md')));
    const why = explain(s);
    assert.equal(s.code, 0, why);
    // 5: one action allowed
    assert.match(s.stdout, /"decision": "allow"/, why);
    // 6: consumed once, refused the second time
    assert.match(s.stdout, /"jti": "/, why);
    assert.match(s.stderr, /^writ consume: token_already_used: /m, why);
    assert.match(s.stdout, /^refused: the token was already used$/m, why);
    // 7: the completed task's token no longer works
    assert.match(s.stderr, /^writ authorize: task_not_active: /m, why);
    assert.match(s.stdout, /^refused: the task is over$/m, why);
    // 8 and curl: the chain verifies through the API (twice) and offline
    assert.equal(count(s.stdout, /"ok": ?true/), 3, why);
    assert.doesNotMatch(s.stdout, /"ok": ?false/, why);
    // curl: a task token from a client assertion, and an allow on the live task
    assert.match(s.stdout, /\{\n {2}"decision": "allow",\n {2}"decision_id": "dec_/, why);
    assert.doesNotMatch(s.stdout + s.stderr, /invalid_client|invalid_grant|task_not_active".*curl/, why);
    // the SDK snippet: verified and consumed once; other arguments are refused
    assert.match(s.stdout, /^verified and consumed: decision dec_\S+; now create the issue$/m, why);
    assert.match(s.stderr, /the arguments received are not the ones that were authorized/, why);
    assert.match(s.stdout, /^refused: not the arguments that were authorized$/m, why);
    // no warning about an ignored bootstrap token: the walkthrough's store is its own
    assert.match(s.serveLog, /admin operator created with WRIT_BOOTSTRAP_TOKEN/, why);
    assert.doesNotMatch(s.serveLog, /warning: WRIT_BOOTSTRAP_TOKEN/, why);
    // scratch files went to $WRIT_DIR, not to the directory it ran in
    assert.deepEqual(s.cwdEntries, [], why);
  });

  for (const file of docFiles) {
    it(`${file}: its runnable blocks`, { timeout: SESSION_TIMEOUT_MS + 30_000 }, async (t) => {
      const own = blocksOf(file);
      if (!own.some((b) => b.kind === 'run')) return t.skip(`${file} has no runnable block`);
      // a session of docs/ starts like the README's: its setup block (a fresh Writ, `writ`)
      const setup = blocksOf('README.md').filter((b) => b.kind === 'setup');
      const s = await runSessionWithPort(file.replace(/\W+/g, '-'), sessionScript([...setup, ...own]));
      assert.equal(s.code, 0, explain(s));
      assert.deepEqual(s.cwdEntries, [], explain(s));
      const expected = EXPECTED[file];
      assert.ok(expected, `${file}: say in EXPECTED what its runnable blocks must print`);
      for (const pattern of expected) assert.match(s.stdout, pattern, explain(s));
    });
  }
});
