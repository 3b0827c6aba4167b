import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openNote, parseNoteVerifierKey } from '../src/audit/signed-note.js';
import { parseCheckpoint } from '../src/audit/tlog-checkpoint.js';
import { verifyConsistency, verifyInclusion } from '../src/audit/merkle-tree.js';
import { backends, BOOT_TOKEN, setup } from './helpers/harness.js';
import { ok, writ } from './helpers/cli.js';

for (const { backend, skip } of backends()) {
  describe(`audit evidence end to end (${backend})`, { skip }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    let dir: string;
    let decisionId: string;
    let actionToken: string;
    let taskId: string;
    const cli = (args: string[]) => writ(args, { WRIT_URL: env.url, WRIT_TOKEN: BOOT_TOKEN });

    before(async () => {
      env = await setup(backend);
      dir = await mkdtemp(join(tmpdir(), 'writ-evidence-e2e-'));
      const task = await env.createTask({ scope: { tools: ['github.*'], resources: [], destinations: [] } });
      taskId = task.id;
      const token = await env.taskToken(task.id);
      const agentApi = new (env.admin.constructor as any)(env.url, token);
      for (let i = 0; i < 3; i++) {
        const r = await agentApi.call('POST', '/v1/authorize', { tool: 'github.create_issue', arguments: { title: `t${i}`, api_key: 'sk_do_not_log' }, audience: 'https://tools.example/github' });
        assert.equal(r.status, 200);
        decisionId = r.body.decision_id;
        actionToken = r.body.action_token;
      }
      const c = await env.admin.call('POST', '/v1/actions/consume', { action_token: actionToken, audience: 'https://tools.example/github' }, { token: null });
      assert.equal(c.status, 200);
    });
    after(async () => {
      await env?.teardown();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('serves a signed C2SP checkpoint, its key apart from the token JWKS, and proofs that verify', async () => {
      const key = await env.admin.call('GET', '/v1/audit/checkpoint-key');
      assert.equal(key.status, 200);
      const verifier = parseNoteVerifierKey(key.body.note_key);
      const jwks = await (await fetch(`${env.url}/.well-known/jwks.json`)).json();
      const noteKeyRaw = Buffer.from(key.body.note_key.split('+')[2], 'base64').subarray(1).toString('base64url');
      assert.ok(!jwks.keys.some((k: { x?: string }) => k.x === noteKeyRaw), 'the checkpoint key is not a token key');

      const cp = await env.admin.call('GET', '/v1/audit/checkpoint');
      assert.equal(cp.status, 200);
      const body = parseCheckpoint(openNote(cp.body.note, [verifier]).text);
      assert.equal(body.size, cp.body.size);
      const size = body.size;
      const inc = await env.admin.call('GET', `/v1/audit/proofs/inclusion?index=1&size=${size}`);
      assert.equal(inc.status, 200);
      verifyInclusion(Buffer.from(inc.body.leaf_hash, 'base64'), 1, size, inc.body.proof.map((p: string) => Buffer.from(p, 'base64')), body.root);
      const con = await env.admin.call('GET', `/v1/audit/proofs/consistency?from=2&to=${size}`);
      assert.equal(con.status, 200);
      verifyConsistency(2, size, con.body.proof.map((p: string) => Buffer.from(p, 'base64')), Buffer.from(con.body.from_root, 'base64'), body.root);
      const listed = await env.admin.call('GET', '/v1/audit/checkpoints?since=0');
      assert.ok(listed.body.checkpoints.some((c: { size: number }) => c.size === size));
    });

    it('refuses bad proof requests with typed errors, and agents', async () => {
      const head = (await env.admin.call('GET', '/v1/audit?limit=1000')).body.entries.length;
      for (const [q, code] of [
        [`index=0&size=${head + 1000}`, 'size_beyond_log'],
        ['index=5&size=5', 'invalid_request'],
        ['index=-1&size=5', 'invalid_request'],
        ['index=x&size=5', 'invalid_request'],
        ['index=1', 'invalid_request'],
        ['index=1&size=2&extra=1', 'invalid_request'],
      ] as const) {
        const r = await env.admin.call('GET', `/v1/audit/proofs/inclusion?${q}`);
        assert.equal(r.status, 400, q);
        assert.equal(r.body.error.code, code, q);
      }
      const c = await env.admin.call('GET', '/v1/audit/proofs/consistency?from=5&to=2');
      assert.equal(c.status, 400);
      const anon = await env.admin.call('GET', '/v1/audit/checkpoint', undefined, { token: null });
      assert.equal(anon.status, 401);
      const agentToken = await env.taskToken(taskId);
      const asAgent = await env.admin.call('GET', '/v1/audit/checkpoint', undefined, { token: agentToken });
      assert.ok(asAgent.status === 401 || asAgent.status === 403);
      const missing = await env.admin.call('GET', '/v1/audit/proof/dec_nope');
      assert.equal(missing.status, 404);
    });

    it('writ audit prove writes a tlog-proof that verifies offline with only the pinned key; a tampered one does not', async () => {
      const key = ok(await cli(['audit', 'key'])).note_key as string;
      const keyFile = join(dir, 'audit.key');
      await writeFile(keyFile, `${key}\n`);
      const proof = join(dir, 'decision.tlog-proof');
      const p = await cli(['audit', 'prove', decisionId, '--out', proof]);
      assert.equal(p.code, 0, p.stderr);
      const v = await cli(['audit', 'verify', '--offline', proof, '--key', keyFile]);
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.json.ok, true);
      assert.equal(v.json.entry.decisionId, decisionId);
      // the masked arguments are in the entry, the secret is not
      assert.equal(v.json.entry.data.arguments.api_key, '[masked]');
      const text = await readFile(proof, 'utf8');
      const tampered = join(dir, 'tampered.tlog-proof');
      await writeFile(tampered, text.replace(/^index (\d+)$/m, (_m, n) => `index ${Number(n) + 1}`));
      const bad = await cli(['audit', 'verify', '--offline', tampered, '--key', keyFile]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /audit_evidence_invalid/);
      const wrongKey = await cli(['audit', 'verify', '--offline', proof, '--key', 'someone+00000000+AQ==']);
      assert.equal(wrongKey.code, 2, 'a malformed key is a usage error');
    });

    it('writ audit export streams a log that verifies offline; jsonl and ocsf', async () => {
      const onDemand = await env.admin.call('POST', '/v1/audit/checkpoints', {});
      assert.equal(onDemand.status, 201);
      assert.ok(onDemand.body.tree.size > onDemand.body.seq - 1, 'the tree checkpoint covers the log, its own audit entry included');
      assert.match(onDemand.body.tree.note, /\n\n\u2014 /);
      const key = ok(await cli(['audit', 'key'])).note_key as string;
      const file = join(dir, 'export.jsonl');
      const e = await cli(['audit', 'export', '--out', file]);
      assert.equal(e.code, 0, e.stderr);
      const v = await cli(['audit', 'verify', '--offline', file, '--key', key]);
      assert.equal(v.code, 0, v.stderr);
      assert.ok(v.json.entries >= 5);
      assert.ok(v.json.checkpoints.length >= 1);
      // one entry edited: caught at that entry
      const lines = (await readFile(file, 'utf8')).split('\n');
      const i = lines.findIndex((l) => l.includes('"type":"decision"'));
      const seq = JSON.parse(lines[i]!).seq;
      lines[i] = lines[i]!.replace('github.create_issue', 'github.delete_repo');
      const edited = join(dir, 'edited.jsonl');
      await writeFile(edited, lines.join('\n'));
      const bad = await cli(['audit', 'verify', '--offline', edited, '--key', key]);
      assert.equal(bad.code, 1);
      assert.equal(bad.json.problems[0].at, `entry ${seq}`);
      const ocsf = await cli(['audit', 'export', '--format', 'ocsf']);
      assert.equal(ocsf.code, 0, ocsf.stderr);
      const events = ocsf.stdout.trim().split('\n').map((l) => JSON.parse(l));
      assert.ok(events.every((ev) => ev.class_uid === 6003 && ev.category_uid === 6));
      assert.ok(events.some((ev) => ev.api.operation === 'github.create_issue' && ev.disposition_id === 1));
      const badFormat = await cli(['audit', 'export', '--format', 'csv']);
      assert.equal(badFormat.code, 2);
      const badTime = await env.admin.call('GET', '/v1/audit/export?since=yesterday');
      assert.equal(badTime.status, 400);
    });

    it('writ audit trace tells the story of a decision, an action token and a task, each step with its log index', async () => {
      const t = await cli(['audit', 'trace', decisionId]);
      assert.equal(t.code, 0, t.stderr);
      const lines = t.stdout.trim().split('\n');
      assert.match(lines[0]!, new RegExp(`trace of decision ${decisionId}`));
      const order = ['agent.registered', 'task.created', 'token.issued', 'decision', 'action.consumed'];
      const at = order.map((type) => lines.findIndex((l) => new RegExp(`^#\\d+ .* ${type.replace('.', '\\.')}\\s`).test(l)));
      assert.ok(at.every((x) => x > 0), `every step present: ${t.stdout}`);
      assert.deepEqual([...at].sort((a, b) => a - b), at, 'in log order');
      assert.match(t.stdout, /intent "file the weekly billing report"/);
      assert.match(t.stdout, /signed with its registered key/);
      assert.doesNotMatch(t.stdout, /sk_do_not_log/);
      const j = await cli(['audit', 'trace', actionToken, '--json']);
      assert.equal(j.code, 0, j.stderr);
      assert.equal(j.json.subject.id, decisionId);
      assert.ok(j.json.steps.every((s: { index: number; seq: number }) => s.index === s.seq - 1));
      const task = await env.admin.call('GET', `/v1/audit/trace/${taskId}`);
      assert.equal(task.status, 200);
      assert.equal(task.body.steps.filter((s: { type: string }) => s.type === 'decision').length, 3);
      const none = await env.admin.call('GET', '/v1/audit/trace/task_nope');
      assert.equal(none.status, 404);
    });
  });
}
