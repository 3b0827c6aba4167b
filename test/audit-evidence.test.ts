import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toOcsf } from '../src/audit/audit-export.js';
import { checkpointOrigin, consistency, exportLines, inclusion, proofFile, seqRangeForTime, signCheckpoint, type EvidenceContext } from '../src/audit/evidence.js';
import { verifyConsistency, verifyInclusion } from '../src/audit/merkle-tree.js';
import { createNoteSigner, openNote, parseNoteVerifierKey } from '../src/audit/signed-note.js';
import { parseCheckpoint } from '../src/audit/tlog-checkpoint.js';
import { parseTlogProof, formatTlogProof } from '../src/audit/tlog-proof.js';
import { verifyExportLines, verifyProofText } from '../src/audit/verify-offline.js';
import { computeEntryHash, auditLeafBytes } from '../src/core/audit-hash.js';
import { ManualClock } from '../src/core/clock.js';
import { SqliteStore } from '../src/store/sqlite/sqlite-store.js';

describe('audit evidence: checkpoints, proofs, export, offline verification', () => {
  let dir: string;
  let store: SqliteStore;
  let ctx: EvidenceContext;
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const signer = createNoteSigner('writ.test/audit', generateKeyPairSync('ed25519').privateKey);
  const verifier = parseNoteVerifierKey(signer.verifierKey);
  const stranger = parseNoteVerifierKey(createNoteSigner('writ.test/audit', generateKeyPairSync('ed25519').privateKey).verifierKey);
  let lines: string[] = [];

  async function append(n: number, type = 'decision') {
    for (let i = 0; i < n; i += 100) {
      clock.advance(1000);
      await store.appendAudit(
        Array.from({ length: Math.min(100, n - i) }, (_, k) => ({
          type,
          actor: 'agent:spiffe://acme.test/a',
          agentId: 'spiffe://acme.test/a',
          taskId: 'tsk_1',
          decisionId: `dec_${i + k}`,
          data: { decision: k % 3 === 0 ? 'deny' : 'allow', tool: 'payments.send', policy_version: 'v1', policies: ['p1'], args_digest: 'x' },
        })),
      );
    }
  }
  const verify = (ls: string[], v = [verifier]) => verifyExportLines(ls, v);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'writ-evidence-'));
    store = new SqliteStore({ path: join(dir, 'writ.db'), clock });
    await store.migrate();
    ctx = { store, signer, origin: checkpointOrigin('http://127.0.0.1:8080'), now: () => clock.now() };
    assert.equal(ctx.origin, '127.0.0.1:8080/audit');
    await append(10);
    await signCheckpoint(ctx);
    await append(250);
    await signCheckpoint(ctx);
    await append(5);
    await signCheckpoint(ctx);
    lines = [];
    for await (const l of exportLines(ctx, { firstSeq: 1, lastSeq: 265 }, { verifierKey: signer.verifierKey })) lines.push(l);
  });
  after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('signs C2SP checkpoints that open with the published verifier key, once per size', async () => {
    const latest = (await store.latestAuditCheckpoint())!;
    const body = parseCheckpoint(openNote(latest.note, [verifier]).text);
    assert.equal(body.origin, '127.0.0.1:8080/audit');
    assert.equal(body.size, 265);
    assert.deepEqual((await store.listAuditCheckpoints(0, 10)).map((c) => c.size), [10, 260, 265]);
    // nothing new: the same checkpoint comes back
    assert.equal((await signCheckpoint(ctx))!.note, latest.note);
    assert.throws(() => openNote(latest.note, [stranger]));
  });

  it('serves inclusion and consistency proofs that verify against the checkpointed roots', async () => {
    const cps = await store.listAuditCheckpoints(0, 10);
    const roots = cps.map((c) => parseCheckpoint(openNote(c.note, [verifier]).text));
    const inc = await inclusion(ctx, 137, 260);
    verifyInclusion(Buffer.from(inc.leaf_hash, 'base64'), 137, 260, inc.proof.map((p) => Buffer.from(p, 'base64')), roots[1]!.root);
    const con = await consistency(ctx, 10, 265);
    verifyConsistency(10, 265, con.proof.map((p) => Buffer.from(p, 'base64')), roots[0]!.root, roots[2]!.root);
  });

  it('an untouched export verifies offline: chain, tree, every checkpoint', async () => {
    const r = await verify(lines);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.ok(r.ok && r.kind === 'export');
    if (r.ok && r.kind === 'export') {
      assert.equal(r.entries, 265);
      assert.deepEqual(r.checkpoints.map((c) => c.size), [10, 260, 265]);
    }
  });

  it('a partial export (with its prefix) verifies; a time range picks a contiguous run', async () => {
    const range = (await seqRangeForTime(store, Date.UTC(2026, 0, 1) + 2500, null))!;
    assert.ok(range.firstSeq > 1);
    const part: string[] = [];
    for await (const l of exportLines(ctx, range, {})) part.push(l);
    const r = await verify(part);
    assert.equal(r.ok, true, JSON.stringify(r));
  });

  const entryIndex = (ls: string[], seq: number) => ls.findIndex((l) => l.startsWith('{') && JSON.parse(l).seq === seq);
  const problemsOf = async (ls: string[], v = [verifier]) => {
    const r = await verify(ls, v);
    assert.equal(r.ok, false, 'the tampered export must not verify');
    return r.ok ? [] : r.problems;
  };

  it('reports an edit, a deletion, a reordering, a cut tail and a fork at the exact entry or checkpoint', async () => {
    // edit
    const edited = lines.slice();
    const i = entryIndex(edited, 42);
    edited[i] = edited[i]!.replace('payments.send', 'payments.refund');
    assert.deepEqual((await problemsOf(edited))[0]!.at, 'entry 42');
    // deletion
    const deleted = lines.slice();
    deleted.splice(entryIndex(deleted, 100), 1);
    assert.equal((await problemsOf(deleted))[0]!.at, 'entry 100');
    // reordering
    const swapped = lines.slice();
    const a = entryIndex(swapped, 7);
    [swapped[a], swapped[a + 1]] = [swapped[a + 1]!, swapped[a]!];
    assert.equal((await problemsOf(swapped))[0]!.at, 'entry 7');
    // cut tail: the last entries gone, the checkpoints still name 265
    const cut = lines.slice(0, entryIndex(lines, 262));
    const cutProblems = await problemsOf(cut);
    assert.equal(cutProblems[0]!.at, 'checkpoint 265');
    assert.match(cutProblems[0]!.problem, /entries after 261 are missing/);
    // fork: a second checkpoint of size 260 with another root, properly signed
    const forkNote = (await import('../src/audit/signed-note.js')).signNote(
      (await import('../src/audit/tlog-checkpoint.js')).formatCheckpoint({ origin: ctx.origin, size: 260, root: Buffer.alloc(32, 9), extensions: [] }),
      [signer],
    );
    const forked = lines.slice();
    forked.splice(2, 0, JSON.stringify({ checkpoint: forkNote }));
    const forkProblems = await problemsOf(forked);
    assert.equal(forkProblems[0]!.at, 'checkpoint 260');
    assert.match(forkProblems[0]!.problem, /fork/);
  });

  it('reports a rewrite that recomputed every chain hash at the checkpoint it contradicts', async () => {
    // The attacker rewrites entry 50 and re-chains everything after it: the chain alone
    // verifies, the signed checkpoints do not.
    const rewritten: string[] = [];
    let prev: string | null = null;
    for (const l of lines) {
      const o = JSON.parse(l);
      if (typeof o.seq !== 'number') {
        rewritten.push(l);
        continue;
      }
      if (o.seq === 50) o.data.tool = 'payments.refund';
      if (prev !== null) o.prevHash = prev;
      const { hash: _h, ...body } = o;
      o.hash = computeEntryHash(body);
      prev = o.hash;
      rewritten.push(auditLeafBytes(o));
    }
    const p = await problemsOf(rewritten);
    assert.equal(p[0]!.at, 'checkpoint 260');
    assert.match(p[0]!.problem, /rewritten at or before entry 260/);
  });

  it('a file verifies the same on the main thread and on worker threads, small chunks or not', async () => {
    const { writeFile } = await import('node:fs/promises');
    const { verifyExportFile } = await import('../src/audit/verify-offline.js');
    const good = join(dir, 'good.jsonl');
    await writeFile(good, lines.join('\n') + '\n');
    const bad = join(dir, 'bad.jsonl');
    const edited = lines.slice();
    const i = entryIndex(edited, 200);
    edited[i] = edited[i]!.replace('payments.send', 'payments.refund');
    await writeFile(bad, edited.join('\n')); // no final newline either
    for (const workers of [0, 1, 2]) {
      const r = await verifyExportFile(good, [verifier], { workers });
      assert.equal(r.ok, true, `workers ${workers}: ${JSON.stringify(r)}`);
      if (r.ok && r.kind === 'export') assert.deepEqual(r.checkpoints.map((c) => c.size), [10, 260, 265]);
      const b = await verifyExportFile(bad, [verifier], { workers });
      assert.equal(b.ok, false);
      if (!b.ok) assert.equal(b.problems[0]!.at, 'entry 200');
    }
  });

  it('an export stripped of its checkpoints is not vouched for by its chain alone; one past its last checkpoint says how much is unsigned', async () => {
    const stripped = lines.filter((l) => !l.startsWith('{"checkpoint"'));
    const p = await problemsOf(stripped);
    assert.equal(p[0]!.at, 'entry 1');
    assert.match(p[0]!.problem, /no signed checkpoint covers these entries/);
    // keep only the first checkpoint (size 10): the rest verifies as linked, 255 entries unsigned
    let seen = 0;
    const oneLeft = lines.filter((l) => !l.startsWith('{"checkpoint"') || seen++ === 0);
    const r = await verify(oneLeft);
    assert.equal(r.ok, true, JSON.stringify(r));
    if (r.ok && r.kind === 'export') assert.equal(r.unsigned_tail, 255);
  });

  it('an export to the head carries a checkpoint of its last entry, signed when none covered it yet', async () => {
    await append(3);
    const head = (await store.auditHead())!.seq;
    const fresh: string[] = [];
    for await (const l of exportLines(ctx, { firstSeq: 1, lastSeq: head }, {})) fresh.push(l);
    const r = await verify(fresh);
    assert.equal(r.ok, true, JSON.stringify(r));
    if (r.ok && r.kind === 'export') {
      assert.equal(r.checkpoints.at(-1)!.size, head);
      assert.equal(r.unsigned_tail, 0);
    }
  });

  it('refuses checkpoints signed by another key, and a file without the header', async () => {
    const p = await problemsOf(lines, [stranger]);
    assert.match(p[0]!.problem, /checkpoint does not verify/);
    assert.equal((await problemsOf(lines.slice(1)))[0]!.at, 'line 1');
    assert.equal((await problemsOf([]))[0]!.at, 'line 1');
    assert.equal((await problemsOf([lines[0]!, 'not json']))[0]!.at, 'line 2');
  });

  it('a proof file verifies offline; each mutation of it is rejected', async () => {
    const entry = (await store.listAudit({ decisionId: 'dec_77', limit: 1 }))[0]!;
    const text = (await proofFile(ctx, entry))!;
    assert.ok(text.startsWith('c2sp.org/tlog-proof@v1\nextra '));
    const ok = verifyProofText(text, [verifier]);
    assert.equal(ok.ok, true, JSON.stringify(ok));
    const p = parseTlogProof(text);
    const variants: Record<string, string> = {
      'index + 1': formatTlogProof({ ...p, index: p.index + 1 }),
      'index - 1': formatTlogProof({ ...p, index: p.index - 1 }),
      'element flipped': formatTlogProof({ ...p, proof: p.proof.map((h, k) => (k === 1 ? Buffer.from(h.map((b, j) => (j === 0 ? b ^ 1 : b))) : h)) }),
      truncated: formatTlogProof({ ...p, proof: p.proof.slice(0, -1) }),
      'entry edited': formatTlogProof({ ...p, extra: Buffer.from(p.extra!.toString().replace('payments.send', 'payments.refund')) }),
      'no entry': formatTlogProof({ ...p, extra: null }),
      'checkpoint edited': text.replace(/(\/audit\n)(\d+)\n/, (_m, o, n) => `${o}${Number(n) + 1}\n`),
    };
    for (const [what, t] of Object.entries(variants)) assert.equal(verifyProofText(t, [verifier]).ok, false, what);
    assert.equal(verifyProofText(text, [stranger]).ok, false, 'another key');
  });

  it('maps entries to OCSF API Activity (6003) with the fields the class requires', async () => {
    const entries = await store.listAudit({ limit: 3 });
    for (const e of entries) {
      const o = toOcsf(e, { version: '0.1.0', origin: ctx.origin });
      for (const field of ['activity_id', 'category_uid', 'class_uid', 'severity_id', 'time', 'type_uid', 'metadata', 'actor', 'api', 'src_endpoint', 'cloud']) {
        assert.ok(o[field] !== undefined, `missing ${field}`);
      }
      assert.equal(o.class_uid, 6003);
      assert.equal(o.type_uid, 600399);
      assert.equal((o.api as any).operation, 'payments.send');
      assert.equal((o.metadata as any).product.name, 'Writ');
      assert.ok([1, 2].includes(o.action_id as number));
      assert.equal((o.policy as any).version, 'v1');
      assert.equal((o.unmapped as any).writ.hash, e.hash);
    }
  });
});
