import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';
import { BOOT_TOKEN, setup } from './helpers/harness.js';
import { ok, writ, type CliResult as Result } from './helpers/cli.js';



describe('writ CLI against a running server', () => {
  let env: Awaited<ReturnType<typeof setup>>;
  let dir: string;
  let cli: (args: string[], extra?: Record<string, string | undefined>) => Promise<Result>;
  before(async () => {
    env = await setup('sqlite');
    dir = mkdtempSync(join(tmpdir(), 'writ-cli-'));
    cli = (args, extra = {}) => writ(args, { WRIT_URL: env.url, WRIT_TOKEN: BOOT_TOKEN, ...extra });
  });
  after(async () => {
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('keygen, register, task, token, authorize, consume once, outcome, complete, verify', async () => {
    const keyFile = join(dir, 'key.json');
    const jwks = ok(await cli(['agent', 'keygen', '--out', keyFile]));
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const priv = JSON.parse(readFileSync(keyFile, 'utf8'));
    assert.equal(priv.kty, 'OKP');
    assert.equal(priv.alg, 'EdDSA');
    assert.equal(typeof priv.d, 'string');
    assert.equal(jwks.keys.length, 1);
    assert.equal(jwks.keys[0].d, undefined, 'the printed JWKS holds no private key');
    assert.equal(jwks.keys[0].kid, priv.kid);
    assert.equal(jwks.keys[0].x, priv.x);

    // a second keygen to the same file refuses to overwrite the key
    const again = await cli(['agent', 'keygen', '--out', keyFile]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^writ agent keygen: file_exists: /);

    const agentId = 'spiffe://acme.test/agent/cli';
    const reg = ok(await cli(['agent', 'register', '--id', agentId, '--name', 'cli agent', '--key', keyFile, '--label', 'cli', '--label', 'test']));
    assert.equal(reg.id, agentId);
    assert.deepEqual(reg.labels, ['cli', 'test']);
    assert.equal(reg.jwks.keys[0].d, undefined);
    const [shownR, listedR] = await Promise.all([cli(['agent', 'show', agentId]), cli(['agent', 'list'])]);
    const shown = ok(shownR);
    const listed = ok(listedR);
    assert.equal(shown.name, 'cli agent');
    assert.ok(listed.agents.some((a: { id: string }) => a.id === agentId));

    const task = ok(
      await cli([
        'task', 'create', '--agent', agentId, '--intent', 'file the weekly report',
        '--tool', 'github.*', '--tool', 'billing.read', '--resource', 'repo:acme/*', '--destination', 'api.github.com',
        '--ttl', '600', '--max-actions', '5',
      ]),
    );
    assert.equal(task.status, 'active');
    assert.deepEqual(task.scope, { tools: ['github.*', 'billing.read'], resources: ['repo:acme/*'], destinations: ['api.github.com'] });
    const [tasksR, tokR] = await Promise.all([
      cli(['task', 'list', '--agent', agentId, '--status', 'active']),
      cli(['token', '--agent', agentId, '--key', keyFile, '--task', task.id]),
    ]);
    const tasks = ok(tasksR);
    assert.deepEqual(tasks.tasks.map((t: { id: string }) => t.id), [task.id]);
    const tok = ok(tokR);
    assert.equal(tok.token_type, 'Bearer');
    assert.ok(tok.expires_in > 0);
    const taskToken = tok.access_token as string;

    // `agent assertion`: the client assertion alone, for a client that posts it itself; single-use
    const signed = ok(await cli(['agent', 'assertion', '--agent', agentId, '--key', keyFile]));
    assert.equal(signed.client_assertion_type, 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    assert.equal(signed.audience, env.url);
    const exchange = () =>
      fetch(`${env.url}/oauth/token`, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: signed.client_assertion_type, client_assertion: signed.client_assertion, task_id: task.id }),
      });
    const first = await exchange();
    assert.equal(first.status, 200);
    assert.equal(((await first.json()) as { token_type: string }).token_type, 'Bearer');
    const replay = await exchange();
    assert.equal(replay.status, 401);
    assert.equal(((await replay.json()) as { error: string }).error, 'invalid_client');
    const noKey = await cli(['agent', 'assertion', '--agent', agentId]);
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /--key/);

    const intro = ok(await cli(['introspect', taskToken]));
    assert.equal(intro.active, true);
    assert.equal(intro.sub, agentId);

    const audience = 'https://tools.example/github';
    const az = ok(
      await cli([
        'authorize', '--task-token', taskToken, '--tool', 'github.create_issue', '--audience', audience,
        '--args', '{"repo":"acme/api","title":"Weekly report"}', '--resource', 'repo:acme/api', '--destination', 'api.github.com',
      ]),
    );
    assert.equal(az.decision, 'allow', JSON.stringify(az));
    assert.equal(typeof az.action_token, 'string');

    const c1 = ok(await cli(['consume', '--action-token', az.action_token, '--audience', audience]));
    assert.equal(c1.claims.decision_id, az.decision_id);
    assert.equal(c1.claims.tool, 'github.create_issue');
    const c2 = await cli(['consume', '--action-token', az.action_token, '--audience', audience]);
    assert.equal(c2.code, 1);
    assert.match(c2.stderr, /^writ consume: token_already_used: /);
    assert.equal(c2.stdout, '');

    const out = ok(await cli(['outcome', '--task-token', taskToken, '--decision', az.decision_id, '--status', 'succeeded', '--detail', 'issue #12']));
    assert.equal(out.status, 'succeeded');

    const done = ok(await cli(['task', 'complete', task.id]));
    assert.equal(done.status, 'completed');
    const [detailR, entriesR, verified] = await Promise.all([
      cli(['task', 'show', task.id]),
      cli(['audit', 'list', '--task', task.id, '--limit', '100']),
      cli(['audit', 'verify']),
    ]);
    const detail = ok(detailR);
    assert.equal(detail.status, 'completed');
    assert.equal(detail.decisions.length, 1);
    const entries = ok(entriesR);
    assert.ok(entries.entries.length >= 3);
    assert.ok(entries.entries.every((e: { task_id: string }) => e.task_id === task.id));
    assert.equal(verified.code, 0, verified.stderr);
    assert.equal(verified.json.ok, true);
    assert.ok(verified.json.entries > 5);
  });

  it('ES256 keys, --jwks registration, revoke and disable', async () => {
    const keyFile = join(dir, 'es.json');
    const jwksFile = join(dir, 'es.jwks.json');
    const gen = await cli(['agent', 'keygen', '--alg', 'ES256', '--out', keyFile]);
    const jwks = ok(gen);
    assert.equal(jwks.keys[0].kty, 'EC');
    assert.equal(jwks.keys[0].alg, 'ES256');
    writeFileSync(jwksFile, gen.stdout);
    ok(await cli(['agent', 'register', '--id', 'es-agent', '--jwks', jwksFile]));
    const task = ok(await cli(['task', 'create', '--agent', 'es-agent', '--intent', 'read billing', '--tool', 'billing.read', '--ttl', '60', '--max-actions', '1']));
    const tok = ok(await cli(['token', '--agent', 'es-agent', '--key', keyFile, '--task', task.id]));
    assert.equal(typeof tok.access_token, 'string');

    const revoked = ok(await cli(['task', 'revoke', task.id, '--reason', 'test']));
    assert.equal(revoked.status, 'revoked');
    const az = await cli(['authorize', '--task-token', tok.access_token, '--tool', 'billing.read', '--audience', 'https://tools.example/billing']);
    assert.equal(az.code, 1);
    assert.match(az.stderr, /^writ authorize: task_not_active: /);
    const disabled = ok(await cli(['agent', 'disable', 'es-agent']));
    assert.equal(disabled.status, 'disabled');
    const refused = await cli(['token', '--agent', 'es-agent', '--key', keyFile, '--task', task.id]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^writ token: invalid_client: /);
  });

  it('policy get, a rejected policy set prints Cedar diagnostics, operator create', async () => {
    const pol = ok(await cli(['policy', 'get']));
    assert.equal(typeof pol.version, 'string');
    assert.ok(pol.policies.includes('permit'));
    const bad = join(dir, 'bad.cedar');
    writeFileSync(bad, 'permit(principal, action, resource) when { context.no_such_attribute };');
    const r = await cli(['policy', 'set', bad]);
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split('\n');
    assert.match(lines[0]!, /^writ policy set: invalid_policy: /);
    assert.ok(lines.length >= 2 && lines.slice(1).some((l) => l.includes('no_such_attribute')), r.stderr);
    // as a compiler prints it: the file, line and column, then the line and a caret
    assert.ok(lines.some((l) => l.startsWith(`${bad}:1:44: error: `)), r.stderr);
    assert.ok(lines.some((l) => /^ {4}\| {44}\^+$/.test(l)), r.stderr);
    const text = join(dir, 'good.cedar');
    writeFileSync(text, pol.policies);
    const set = ok(await cli(['policy', 'set', text]));
    assert.equal(set.version, pol.version);

    const op = ok(await cli(['operator', 'create', '--name', 'auditor', '--role', 'auditor']));
    assert.match(op.token, /\S{20,}/);
    const asAuditor = await cli(['audit', 'verify'], { WRIT_TOKEN: op.token });
    assert.equal(asAuditor.code, 0, asAuditor.stderr);
    const forbidden = await cli(['agent', 'register', '--id', 'x', '--key', join(dir, 'key.json'), '--token', op.token]);
    assert.equal(forbidden.code, 1);
    assert.match(forbidden.stderr, /^writ agent register: insufficient_role: /);
  });

  it('bad usage exits 2, server errors exit 1', async () => {
    // independent cases run side by side: each is a process start
    const [unknownFlag, missing, notNumber, unknownCmd, unknownSub, noId, argsNotObject, noToken, noArgs, wrongToken, notFound, unreachable] = await Promise.all([
      cli(['agent', 'list', '--bogus']),
      cli(['task', 'create', '--agent', 'a', '--intent', 'i', '--ttl', '60', '--max-actions', '1']),
      cli(['task', 'create', '--agent', 'a', '--intent', 'i', '--tool', 't', '--ttl', 'soon', '--max-actions', '1']),
      cli(['frobnicate']),
      cli(['agent', 'frobnicate']),
      cli(['task', 'show']),
      cli(['authorize', '--task-token', 't', '--tool', 'x', '--audience', 'a', '--args', '[1]']),
      cli(['agent', 'list'], { WRIT_TOKEN: undefined }),
      cli([]),
      cli(['agent', 'list', '--token', 'wop_not_a_real_token_at_all_0000']),
      cli(['task', 'show', 'task_nope']),
      cli(['agent', 'list'], { WRIT_URL: 'http://127.0.0.1:9' }),
    ]);
    assert.equal(unknownFlag.code, 2);
    assert.match(unknownFlag.stderr, /unknown option `--bogus`/);
    assert.match(unknownFlag.stderr, /usage: writ agent list/);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /option `--tool` is required/);
    assert.equal(notNumber.code, 2);
    assert.match(notNumber.stderr, /`--ttl` must be a whole number/);
    for (const r of [unknownCmd, unknownSub, noId, argsNotObject, noToken, noArgs]) assert.equal(r.code, 2, r.stderr);
    assert.match(noToken.stderr, /operator token is required/);

    assert.equal(wrongToken.code, 1);
    assert.match(wrongToken.stderr, /^writ agent list: invalid_token: /);
    assert.equal(wrongToken.stdout, '');
    assert.equal(notFound.code, 1);
    assert.match(notFound.stderr, /^writ task show: task_not_found: /);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /^writ agent list: connection_failed: /);
  });

  it('--help prints usage and exits 0', async () => {
    const [top, sub, grp, single] = await Promise.all([
      cli(['--help']),
      cli(['task', 'create', '--help']),
      cli(['audit', '--help']),
      cli(['token', '--help']),
    ]);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /writ task create/);
    assert.match(top.stdout, /writ audit verify/);
    assert.equal(sub.code, 0);
    assert.match(sub.stdout, /^usage: writ task create --agent ID/);
    assert.equal(grp.code, 0);
    assert.match(grp.stdout, /writ audit list/);
    assert.equal(single.code, 0);
    assert.match(single.stdout, /--key FILE/);
  });

  it('top-level help names every command, each required option of task create, and the gateway', async () => {
    const top = await cli(['--help']);
    assert.equal(top.code, 0);
    // every command main.ts dispatches to (read from its source, so a new one cannot be missed) ...
    const main = readFileSync('src/cli/main.ts', 'utf8');
    const table = main.slice(main.indexOf('const commands'), main.indexOf('\n};', main.indexOf('const commands')));
    const commands = [...table.matchAll(/^ {2}'?([a-z][a-z-]*)'?: async/gm)].map((m) => m[1]!);
    assert.ok(commands.length >= 20 && commands.includes('gateway'), commands.join(' '));
    for (const c of [...commands, 'help']) assert.match(top.stdout, new RegExp(`^  writ ${c}( |$)`, 'm'), `\`writ ${c}\` is listed`);
    // ... and every subcommand's synopsis of every usage table
    const tables = [await import('../src/cli/usage.js'), await import('../src/cli/usage-gateway.js'), await import('../src/cli/usage-escalations.js')]
      .flatMap((m) => Object.values(m))
      .filter((v): v is Record<string, string> => typeof v === 'object' && v !== null);
    for (const t of tables) {
      for (const u of Object.values(t)) {
        for (const line of u.split('\n').filter((l, i) => i === 0 || l.trimStart().startsWith('writ '))) {
          assert.ok(top.stdout.includes(`  ${line.trimStart()}\n`), `top-level help lists \`${line.trimStart()}\``);
        }
      }
    }
    for (const sub of ['mcp', 'http', 'tools approve', 'tools list', 'labels']) assert.match(top.stdout, new RegExp(`^  writ gateway ${sub} `, 'm'));
    const create = top.stdout.split('\n').find((l) => l.startsWith('  writ task create'));
    assert.match(create ?? '', /--ttl SECONDS --max-actions N/);
    const delegate = top.stdout.split('\n').find((l) => l.startsWith('  writ delegate'));
    assert.match(delegate ?? '', /--ttl SECONDS --max-actions N/);
    assert.match(top.stdout, /writ --version/);
  });

  it('`writ help [command]` prints usage and exits 0; `--version` prints the package version', async () => {
    const [help, helpTask, helpCreate, helpGatewayTools, helpUnknown, version, bare] = await Promise.all([
      cli(['help']),
      cli(['help', 'task']),
      cli(['help', 'task', 'create']),
      cli(['help', 'gateway', 'tools']),
      cli(['help', 'no-such-command']),
      cli(['--version']),
      cli([]),
    ]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage:\n  writ serve/);
    assert.equal(helpTask.code, 0);
    assert.match(helpTask.stdout, /writ task create .*--ttl SECONDS --max-actions N/);
    assert.equal(helpCreate.code, 0);
    assert.match(helpCreate.stdout, /^usage: writ task create --agent ID/);
    assert.equal(helpGatewayTools.code, 0);
    assert.match(helpGatewayTools.stdout, /writ gateway tools list/);
    assert.equal(helpUnknown.code, 2);
    assert.match(helpUnknown.stderr, /unknown command `no-such-command`/);
    const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
    assert.equal(version.code, 0);
    assert.equal(version.stdout, `${pkg.version}\n`);
    // no command at all is a usage error: usage on stderr, exit 2
    assert.equal(bare.code, 2);
    assert.equal(bare.stdout, '');
    assert.match(bare.stderr, /^usage:/);
  });
});

describe('writ audit verify --data-dir (offline, no server)', () => {
  let dir: string;
  const dbPath = () => join(dir, 'writ.db');
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'writ-cli-audit-'));
    const store = new SqliteStore({ path: dbPath() });
    await store.migrate();
    await store.appendAudit([
      { type: 'test.one', actor: 'system', data: { n: 1 } },
      { type: 'test.two', actor: 'system', data: { n: 2 } },
    ]);
    await store.appendAudit([
      { type: 'test.three', actor: 'system', data: { n: 3 } },
      { type: 'test.four', actor: 'system', data: { n: 4 } },
    ]);
    await store.close();
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  // no WRIT_URL: an unreachable default would fail the test if the CLI called the API
  const verify = () => writ(['audit', 'verify', '--data-dir', dir], { WRIT_URL: 'http://127.0.0.1:9', WRIT_TOKEN: undefined });

  it('verifies an intact chain, finds an edited entry and a deleted one', async () => {
    const good = await verify();
    assert.equal(good.code, 0, good.stderr);
    assert.equal(good.json.ok, true);
    assert.equal(good.json.entries, 4);

    const db = new Database(dbPath());
    const original = (db.prepare('SELECT data FROM audit WHERE seq = 2').get() as { data: string }).data;
    db.prepare('UPDATE audit SET data = ? WHERE seq = 2').run(JSON.stringify({ n: 200 }));
    db.close();
    const edited = await verify();
    assert.equal(edited.code, 1);
    assert.equal(edited.json.ok, false);
    assert.equal(edited.json.first_bad_seq, 2);
    assert.match(edited.stderr, /seq 2/);
    assert.match(edited.stderr, /altered/);

    const db2 = new Database(dbPath());
    db2.prepare('UPDATE audit SET data = ? WHERE seq = 2').run(original);
    db2.prepare('DELETE FROM audit WHERE seq = 3').run();
    db2.close();
    const deleted = await verify();
    assert.equal(deleted.code, 1);
    assert.equal(deleted.json.first_bad_seq, 3);
    assert.match(deleted.json.problem, /entry 3 is missing/);
    assert.match(deleted.stderr, /seq 3: entry 3 is missing/);
  });

  it('refuses a directory with no database rather than verifying an empty chain', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'writ-cli-empty-'));
    try {
      const r = await writ(['audit', 'verify', '--data-dir', empty]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^writ audit verify: store_not_found: /);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
