/**
 * The README's SDK snippet, run as a user would run it: from a directory outside the
 * checkout whose node_modules holds @writ/sdk installed from its tarball (`npm pack` of
 * packages/sdk, unpacked as npm would), with its two dependencies, jose and canonicalize,
 * linked from the checkout's node_modules so that no network is needed. Nothing resolves into
 * the checkout's source: the snippet gets the packed dist/ or nothing.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { WritAgentClient } from '@writ/sdk';
import { runChild, type RunResult } from './helpers/child.js';
import { parseDocBlocks } from './helpers/doc-blocks.js';
import { setup } from './helpers/harness.js';
import { REPO } from './helpers/serve-process.js';

/** Runs a command to its end; its result, or a throw when it does not exit 0. */
async function run(command: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<RunResult> {
  const r = await runChild(command, args, { timeoutMs: 240_000, ...opts });
  if (r.code !== 0) throw Object.assign(new Error(`${command} ${args.join(' ')} exited ${r.code}: ${r.stderr}`), r);
  return r;
}
const SDK = join(REPO, 'packages/sdk');

/** The README block the walkthrough saves as verify-call.mts. */
function readmeSnippet(): string {
  const { blocks } = parseDocBlocks(readFileSync(join(REPO, 'README.md'), 'utf8'), 'README.md');
  const b = blocks.find((x) => x.kind === 'file' && x.arg.endsWith('/verify-call.mts'));
  assert.ok(b, 'README.md has the SDK snippet (doc-test: file $WRIT_DIR/verify-call.mts)');
  return b.body;
}

describe('@writ/sdk from its tarball: the README snippet', () => {
  let dir: string;
  let env: Awaited<ReturnType<typeof setup>>;

  before(async () => {
    dir = realpathSync(mkdtempSync(join(tmpdir(), 'writ-sdk-tarball-')));
    // packing runs the SDK's prepack (tsc, incremental): the tarball holds its current source
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: SDK });
    const tarball = join(dir, JSON.parse(stdout)[0].filename as string);
    const scope = join(dir, 'node_modules/@writ');
    mkdirSync(scope, { recursive: true });
    await run('tar', ['-xzf', tarball, '-C', scope], { cwd: dir });
    renameSync(join(scope, 'package'), join(scope, 'sdk'));
    for (const dep of ['jose', 'canonicalize']) symlinkSync(join(REPO, 'node_modules', dep), join(dir, 'node_modules', dep), 'dir');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'tool-server', private: true, type: 'module' }));
    writeFileSync(join(dir, 'verify-call.mts'), readmeSnippet());
    env = await setup('sqlite');
  });
  after(async () => {
    await env?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('installs as dist/ only, and @writ/sdk resolves to it from outside the checkout', async () => {
    const pkg = join(dir, 'node_modules/@writ/sdk');
    assert.deepEqual(readdirSync(pkg).sort(), ['LICENSE', 'README.md', 'dist', 'package.json']);
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', "console.log(import.meta.resolve('@writ/sdk'))"], { cwd: dir });
    assert.equal(stdout.trim(), `file://${pkg}/dist/index.js`);
  });

  it('verifies and consumes an action token once, and refuses other arguments', async () => {
    const { privateKey, publicKey } = await generateKeyPair('Ed25519', { extractable: true });
    const agentId = 'spiffe://acme.test/agent/tool-user';
    const reg = await env.admin.call('POST', '/v1/agents', { id: agentId, jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1' }] } });
    assert.equal(reg.status, 201);
    const task = await env.admin.call('POST', '/v1/tasks', { agent_id: agentId, intent: 'file the weekly report', scope: { tools: ['github.*'], resources: ['repo:acme/*'] }, ttl_seconds: 300, max_actions: 5 });
    assert.equal(task.status, 201);
    const agent = new WritAgentClient({ url: env.url, agentId, taskId: task.body.id, key: { jwk: { ...(await exportJWK(privateKey)), kid: 'k1' } } });
    const args = { repo: 'acme/api', title: 'Weekly report' };
    const d = await agent.authorize({ tool: 'github.create_issue', arguments: args, audience: 'https://tools.example/github', resource: 'repo:acme/api' });
    assert.equal(d.decision, 'allow');
    const token = d.decision === 'allow' ? d.action_token : '';

    const tsx = join(REPO, 'node_modules/.bin/tsx');
    const opts = { cwd: dir, env: { ...process.env, WRIT_URL: env.url } };
    // other arguments first: refused offline, so the token stays unspent
    await assert.rejects(run(tsx, ['verify-call.mts', token, JSON.stringify({ ...args, title: 'Something else' })], opts), (e: { stderr: string }) => /arguments_mismatch/.test(e.stderr));
    const ok = await run(tsx, ['verify-call.mts', token, JSON.stringify(args)], opts);
    assert.match(ok.stdout, new RegExp(`verified and consumed: decision ${d.decision_id}`));
    // a replay: verified offline, refused at consume
    await assert.rejects(run(tsx, ['verify-call.mts', token, JSON.stringify(args)], opts), (e: { stderr: string }) => /token_already_used/.test(e.stderr));
  });
});
