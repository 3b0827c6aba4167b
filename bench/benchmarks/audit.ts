import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { once } from 'node:events';
import { EXPORT_FORMAT } from '../../src/audit/audit-export.js';
import { CompactRange } from '../../src/audit/compact-range.js';
import { checkpointOrigin, inclusion, signCheckpoint, type EvidenceContext } from '../../src/audit/evidence.js';
import { hashLeaf } from '../../src/audit/merkle-tree.js';
import { createNoteSigner, parseNoteVerifierKey, signNote } from '../../src/audit/signed-note.js';
import { formatCheckpoint } from '../../src/audit/tlog-checkpoint.js';
import { verifyExportFile } from '../../src/audit/verify-offline.js';
import { auditLeafBytes, computeEntryHash, GENESIS_HASH } from '../../src/core/audit-hash.js';
import { systemClock } from '../../src/core/clock.js';
import type { AuditEntry } from '../../src/core/types.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { summarize } from '../lib/stats.js';
import { atMost, type BenchOutput, type RunOptions } from '../lib/types.js';

/**
 * Audit evidence (issue: evidence anyone can verify offline):
 *   offline_verify   verifying an export of N entries (chain, tree, checkpoints) from a file
 *   proof            one inclusion proof from a store of 100,000 entries (O(log n) reads)
 *   checkpoint       extending the tree by 1,000 entries and signing a checkpoint
 */
export async function auditEvidence(opts: RunOptions): Promise<BenchOutput> {
  const n = opts.quick ? 50_000 : 1_000_000;
  const dir = await mkdtemp(join(opts.dataRoot, 'writ-bench-audit-'));
  try {
    const { privateKey } = generateKeyPairSync('ed25519');
    const signer = createNoteSigner('bench.writ/audit', privateKey);
    const origin = 'bench.writ/audit';
    // Write an export of n decision-like entries with checkpoints every 100,000.
    const file = join(dir, 'export.jsonl');
    const out = createWriteStream(file);
    const write = async (s: string) => {
      if (!out.write(`${s}\n`)) await once(out, 'drain');
    };
    await write(JSON.stringify({ format: EXPORT_FORMAT, origin, first_seq: 1, last_seq: n, exported_at: new Date().toISOString() }));
    // Checkpoints precede the entries they cover: compute the roots in a first pass.
    const cpEvery = Math.min(100_000, n);
    const range = new CompactRange();
    const lines: string[] = [];
    let prev = GENESIS_HASH;
    const ts = Date.now();
    for (let seq = 1; seq <= n; seq++) {
      const body = {
        seq, ts: ts + seq, type: 'decision', actor: 'agent:spiffe://acme.test/agent/billing', taskId: `tsk_${seq >> 6}`, agentId: 'spiffe://acme.test/agent/billing', decisionId: `dec_${seq}`,
        data: { decision: seq % 7 ? 'allow' : 'deny', tool: 'github.create_issue', audience: 'https://tools.example/github', args_digest: 'Yx5n4VZ0e8nCwA1m9oZ7b0m1Sxw2YqkLdB3q9u8Qz1c', policy_version: 'pv_1', policies: ['allow-github'], reasons: [] },
        prevHash: prev,
      };
      const e: AuditEntry = { ...body, hash: computeEntryHash(body) };
      prev = e.hash;
      const line = auditLeafBytes(e);
      range.append(hashLeaf(line));
      lines.push(line);
      if (seq % cpEvery === 0 || seq === n) {
        await write(JSON.stringify({ checkpoint: signNote(formatCheckpoint({ origin, size: seq, root: range.root(), extensions: [] }), [signer]) }));
      }
    }
    for (const l of lines) await write(l);
    out.end();
    await once(out, 'finish');
    lines.length = 0;
    const bytes = (await stat(file)).size;
    opts.log(`audit: verifying an export of ${n} entries (${Math.round(bytes / 1e6)} MB) offline`);
    const verifier = parseNoteVerifierKey(signer.verifierKey);
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const report = await verifyExportFile(file, [verifier]);
    const verifyS = (performance.now() - t0) / 1000;
    const c1 = process.cpuUsage(c0);
    const verifyCpuS = (c1.user + c1.system) / 1e6;
    if (!report.ok) throw new Error(`the bench export did not verify: ${JSON.stringify(report.problems)}`);

    // Proofs and checkpoints against a real store.
    const store = new SqliteStore({ path: join(dir, 'writ.db'), clock: systemClock });
    await store.migrate();
    const storeEntries = opts.quick ? 20_000 : 100_000;
    for (let i = 0; i < storeEntries; i += 1000) {
      await store.appendAudit(Array.from({ length: 1000 }, (_, k) => ({ type: 'decision', actor: 'system', data: { k: i + k } })));
    }
    const ctx: EvidenceContext = { store, signer, origin: checkpointOrigin('http://bench'), now: () => Date.now() };
    await signCheckpoint(ctx);
    const proofUs: number[] = [];
    for (let i = 0; i < 300; i++) {
      const t = performance.now();
      await inclusion(ctx, (i * 7919) % storeEntries, storeEntries);
      proofUs.push((performance.now() - t) * 1000);
    }
    const cpUs: number[] = [];
    for (let i = 0; i < 20; i++) {
      await store.appendAudit(Array.from({ length: 1000 }, (_, k) => ({ type: 'decision', actor: 'system', data: { k } })));
      const t = performance.now();
      await signCheckpoint(ctx);
      cpUs.push((performance.now() - t) * 1000);
    }
    await store.close();
    const perMillion = (verifyS * 1_000_000) / n;
    const cpuPerMillion = (verifyCpuS * 1_000_000) / n;
    return {
      result: {
        offline_verify: { entries: n, bytes, seconds: Math.round(verifyS * 100) / 100, seconds_per_million: Math.round(perMillion * 100) / 100, cpu_seconds: Math.round(verifyCpuS * 100) / 100, cpu_seconds_per_million: Math.round(cpuPerMillion * 100) / 100, us_per_entry: Math.round((verifyS * 1e6 * 100) / n) / 100 },
        inclusion_proof_us: summarize(proofUs),
        checkpoint_per_1000_entries_us: summarize(cpUs),
        store_entries: storeEntries,
      },
      targets: { 'audit.offline_verify_seconds_per_million': atMost('offline verification of 1,000,000 entries (s, wall clock)', Math.round(perMillion * 100) / 100, 5) },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
