import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { computeEntryHash, GENESIS_HASH } from '../core/audit-hash.js';
import type { AuditEntry } from '../core/types.js';
import { EXPORT_FORMAT, type ExportPrefix } from './audit-export.js';
import { CompactRange } from './compact-range.js';
import { hashLeaf, ProofError, verifyInclusion } from './merkle-tree.js';
import { NoteError, openNote, type NoteVerifier } from './signed-note.js';
import { CheckpointFormatError, parseCheckpoint } from './tlog-checkpoint.js';
import { parseTlogProof, ProofFormatError } from './tlog-proof.js';

/**
 * Offline verification of an export or a proof file (`writ audit verify --offline`):
 * no server, no database, only the file and the verifier key the investigator pins.
 * Every problem is reported at the exact entry (seq) or checkpoint (size) it concerns.
 */

export interface OfflineProblem {
  /** where: `entry <seq>`, `checkpoint <size>`, `line <n>` */
  at: string;
  problem: string;
}

export type OfflineReport =
  | { ok: true; kind: 'export'; entries: number; first_seq: number; last_seq: number; checkpoints: Array<{ size: number; root: string }>; unsigned_tail: number }
  | { ok: true; kind: 'proof'; index: number; size: number; root: string; entry: AuditEntry }
  | { ok: false; kind: 'export' | 'proof'; problems: OfflineProblem[] };

interface CheckpointSeen {
  size: number;
  root: Buffer;
  line: number;
}

function openCheckpoint(note: string, verifiers: readonly NoteVerifier[], origin: string | null): { size: number; root: Buffer; origin: string } {
  const opened = openNote(note, verifiers);
  const cp = parseCheckpoint(opened.text);
  if (origin !== null && cp.origin !== origin) throw new CheckpointFormatError(`the checkpoint is for origin \`${cp.origin}\`, not \`${origin}\``);
  return cp;
}

function readEntry(obj: Record<string, unknown>): AuditEntry {
  const e = obj as unknown as AuditEntry;
  if (!Number.isSafeInteger(e.seq) || typeof e.hash !== 'string' || typeof e.prevHash !== 'string' || typeof e.type !== 'string') {
    throw new TypeError('not an audit entry');
  }
  return e;
}

/**
 * The per-line work of export verification, as CommonJS source: the same function runs on
 * the main thread (compiled once here) and in worker threads (evaluated there, so no
 * TypeScript loader is needed), so there is one implementation of it.
 *
 * An entry line is the entry's RFC 8785 form, keys sorted: actor, agentId, data,
 * decisionId, hash, prevHash, seq, taskId, ts, type. Removing `,"hash":"H","prevHash":"P"`
 * from it leaves exactly the canonical body that the chain hash covers (audit-hash.ts),
 * so the chain check needs no JSON parse and no re-serialisation: if SHA-256(P "\n" body)
 * equals H, the body is what Writ hashed. The top-level `hash` is the line's last
 * `,"hash":"`: only strings follow it, and a string cannot hold an unescaped quote.
 *
 * digest(buf, starts, ends) -> per line: kind 0 (not an entry line), 1 (entry), 2
 * (malformed entry); for entries its seq, prev and hash (64 hex bytes each), whether its
 * content matches its hash, and its Merkle leaf hash SHA-256(0x00 || line).
 */
const DIGEST_SOURCE = `
const { hash } = require('node:crypto');
const ENTRY_START = Buffer.from('{"actor":');
const HASH_KEY = Buffer.from(',"hash":"');
const PREV_KEY = Buffer.from('","prevHash":"');
const SEQ_KEY = Buffer.from('","seq":');
const NEWLINE = Buffer.from('\\n');
const LEAF = Buffer.from([0]);
function digest(buf, starts, ends) {
  const n = starts.length;
  const kinds = new Uint8Array(n), oks = new Uint8Array(n), seqs = new Float64Array(n);
  const prevs = Buffer.alloc(64 * n), hashes = Buffer.alloc(64 * n), leaves = Buffer.alloc(32 * n);
  for (let k = 0; k < n; k++) {
    const line = buf.subarray(starts[k], ends[k]);
    if (line.length < ENTRY_START.length || line.compare(ENTRY_START, 0, ENTRY_START.length, 0, ENTRY_START.length) !== 0) continue;
    kinds[k] = 2;
    const at = line.lastIndexOf(HASH_KEY);
    if (at < 0) continue;
    const h0 = at + HASH_KEY.length, p0 = h0 + 64 + PREV_KEY.length, s0 = p0 + 64 + SEQ_KEY.length;
    if (line.length < s0 + 2 || line.compare(PREV_KEY, 0, PREV_KEY.length, h0 + 64, p0) !== 0 || line.compare(SEQ_KEY, 0, SEQ_KEY.length, p0 + 64, s0) !== 0) continue;
    let seq = 0, i = s0;
    for (; i < line.length && i < s0 + 16; i++) { const c = line[i]; if (c < 48 || c > 57) break; seq = seq * 10 + (c - 48); }
    if (i === s0 || line[i] !== 44) continue;
    kinds[k] = 1;
    seqs[k] = seq;
    line.copy(prevs, 64 * k, p0, p0 + 64);
    line.copy(hashes, 64 * k, h0, h0 + 64);
    const body = hash('sha256', Buffer.concat([line.subarray(p0, p0 + 64), NEWLINE, line.subarray(0, at), line.subarray(p0 + 65)]), 'hex');
    oks[k] = body === line.toString('latin1', h0, h0 + 64) ? 1 : 0;
    hash('sha256', Buffer.concat([LEAF, line]), 'buffer').copy(leaves, 32 * k);
  }
  return { kinds, oks, seqs, prevs, hashes, leaves };
}
`;

interface Digests {
  kinds: Uint8Array;
  oks: Uint8Array;
  seqs: Float64Array;
  prevs: Uint8Array;
  hashes: Uint8Array;
  leaves: Uint8Array;
}
type DigestFn = (buf: Buffer, starts: number[], ends: number[]) => Digests;

const digestHere: DigestFn = new Function('require', `${DIGEST_SOURCE}\nreturn digest;`)(createRequire(import.meta.url)) as DigestFn;

const WORKER_SOURCE = `${DIGEST_SOURCE}
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (m) => {
  const d = digest(Buffer.from(m.buf), m.starts, m.ends);
  parentPort.postMessage(d, [d.kinds.buffer, d.oks.buffer, d.seqs.buffer]);
});
`;

/** The state of one export's verification; lines are fed in order. */
class ExportVerifier {
  readonly problems: OfflineProblem[] = [];
  private origin: string | null;
  private range = new CompactRange();
  private prevHash = Buffer.from(GENESIS_HASH);
  private firstSeq = 0;
  private expectedSeq = 1;
  private entries = 0;
  private sawHeader = false;
  private chainBroken = false;
  private readonly checkpoints = new Map<number, CheckpointSeen>();
  private readonly verifiedRoots: Array<{ size: number; root: string }> = [];
  private n = 0;

  constructor(
    private readonly verifiers: readonly NoteVerifier[],
    origin: string | undefined,
  ) {
    this.origin = origin ?? null;
  }

  private fail(at: string, problem: string): void {
    this.problems.push({ at, problem });
  }

  /** Feeds a batch of lines with their digests; false once verification has stopped. */
  feed(lines: Buffer[], d: Digests): boolean {
    for (let k = 0; k < lines.length; k++) {
      this.n += 1;
      let line = lines[k]!;
      if (line.length === 0 || (line.length === 1 && line[0] === 13)) continue;
      if (this.sawHeader && d.kinds[k] !== 0) {
        if (!this.entry(d, k)) return false;
        continue;
      }
      if (line[line.length - 1] === 13) line = line.subarray(0, -1);
      if (!this.other(line)) return false;
    }
    return true;
  }

  private entry(d: Digests, k: number): boolean {
    const n = this.n;
    if (d.kinds[k] === 2) {
      this.fail(`line ${n}`, 'a malformed entry line');
      this.chainBroken = true;
      return false;
    }
    const seq = d.seqs[k]!;
    if (this.entries === 0) this.firstSeq = seq;
    if (seq !== this.expectedSeq) {
      this.fail(`entry ${this.expectedSeq}`, seq > this.expectedSeq ? `entry ${this.expectedSeq} is missing (found ${seq} next)` : `entry ${seq} is out of order (expected ${this.expectedSeq})`);
      this.chainBroken = true;
      return false;
    }
    if (Buffer.compare(d.prevs.subarray(64 * k, 64 * k + 64), this.prevHash) !== 0) {
      this.fail(`entry ${seq}`, `entry ${seq} does not link to entry ${seq - 1}`);
      this.chainBroken = true;
      return false;
    }
    if (d.oks[k] !== 1) {
      this.fail(`entry ${seq}`, `entry ${seq} was altered (its hash does not match its content)`);
      this.chainBroken = true;
      return false;
    }
    // The leaf is the line's own bytes; a non-canonical line would not match the
    // checkpointed root, so it is caught below.
    this.range.append(Buffer.from(d.leaves.subarray(32 * k, 32 * k + 32)));
    this.prevHash = Buffer.from(d.hashes.subarray(64 * k, 64 * k + 64));
    this.expectedSeq += 1;
    this.entries += 1;
    const cp = this.checkpoints.get(this.range.size);
    if (cp) {
      const root = this.range.root();
      if (!root.equals(cp.root)) {
        this.fail(`checkpoint ${cp.size}`, `the entries up to ${cp.size} do not match the signed checkpoint of that size: the log was rewritten at or before entry ${cp.size}`);
        return false;
      }
      this.verifiedRoots.push({ size: cp.size, root: root.toString('base64') });
    }
    return true;
  }

  private other(line: Buffer): boolean {
    const n = this.n;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line.toString('utf8')) as Record<string, unknown>;
      if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new Error();
    } catch {
      this.fail(`line ${n}`, 'not a JSON object');
      return false;
    }
    if (!this.sawHeader) {
      if (obj.format !== EXPORT_FORMAT) {
        this.fail(`line ${n}`, `the file does not start with a \`${EXPORT_FORMAT}\` header`);
        return false;
      }
      this.sawHeader = true;
      if (this.origin === null && typeof obj.origin === 'string') this.origin = obj.origin;
      return true;
    }
    if ('prefix' in obj) {
      if (this.entries > 0) {
        this.fail(`line ${n}`, 'a prefix after entries');
        return false;
      }
      const p = obj.prefix as ExportPrefix;
      try {
        this.range = CompactRange.fromPrefix(p.size, p.nodes.map((b) => Buffer.from(b, 'base64')));
      } catch (e) {
        this.fail(`line ${n}`, `malformed prefix: ${(e as Error).message}`);
        return false;
      }
      this.prevHash = Buffer.from(String(p.prev_hash));
      this.expectedSeq = p.size + 1;
      return true;
    }
    if ('checkpoint' in obj) {
      let cp: { size: number; root: Buffer };
      try {
        cp = openCheckpoint(String(obj.checkpoint), this.verifiers, this.origin);
      } catch (e) {
        this.fail(`line ${n}`, `checkpoint does not verify: ${(e as Error).message}`);
        return true;
      }
      const other = this.checkpoints.get(cp.size);
      if (other && !other.root.equals(cp.root)) {
        this.fail(`checkpoint ${cp.size}`, `fork: two signed checkpoints of size ${cp.size} have different roots (lines ${other.line} and ${n})`);
        return true;
      }
      if (cp.size < this.range.size || (cp.size === this.range.size && this.entries > 0)) {
        this.fail(`checkpoint ${cp.size}`, `the checkpoint comes after the entries it covers (line ${n})`);
        return true;
      }
      this.checkpoints.set(cp.size, { ...cp, line: n });
      return true;
    }
    this.fail(`line ${n}`, 'neither an entry nor a checkpoint');
    return false;
  }

  report(): OfflineReport {
    if (!this.sawHeader && this.problems.length === 0) this.fail('line 1', 'the file is empty');
    if (this.problems.length === 0 && !this.chainBroken) {
      for (const cp of this.checkpoints.values()) {
        if (cp.size > this.range.size) this.fail(`checkpoint ${cp.size}`, `entries after ${this.range.size} are missing: a signed checkpoint covers ${cp.size}`);
      }
      // The chain alone proves nothing against someone who can rewrite the database and
      // recompute every hash: entries no verified checkpoint covers are not vouched for.
      if (this.problems.length === 0 && this.entries > 0 && this.verifiedRoots.length === 0) {
        this.fail(`entry ${this.firstSeq}`, 'no signed checkpoint covers these entries: the chain alone does not show they were not rewritten');
      }
    }
    if (this.problems.length > 0) return { ok: false, kind: 'export', problems: this.problems };
    const checkpoints = this.verifiedRoots.sort((a, b) => a.size - b.size);
    // entries after the last verified checkpoint are linked but not yet signed for
    const lastSeq = this.expectedSeq - 1;
    return { ok: true, kind: 'export', entries: this.entries, first_seq: this.firstSeq, last_seq: lastSeq, checkpoints, unsigned_tail: lastSeq - (checkpoints.at(-1)?.size ?? lastSeq) };
  }
}

/** Line boundaries of `buf` (the last line may lack its newline only at the end of input). */
function splitLines(buf: Buffer, final: boolean): { starts: number[]; ends: number[]; rest: number } {
  const starts: number[] = [];
  const ends: number[] = [];
  let start = 0;
  for (let nl = buf.indexOf(10, start); nl >= 0; nl = buf.indexOf(10, start)) {
    starts.push(start);
    ends.push(nl);
    start = nl + 1;
  }
  if (final && start < buf.length) {
    starts.push(start);
    ends.push(buf.length);
    start = buf.length;
  }
  return { starts, ends, rest: start };
}

const CHUNK_BYTES = 1 << 20;

/**
 * Verifies an export file (see verifyExportLines), streaming it in 1 MiB chunks. With
 * `workers` (default: one per core, up to 2, for files over 4 MiB) the hashing of each
 * chunk runs on worker threads while the main thread checks the links and builds the
 * tree in order.
 */
export async function verifyExportFile(path: string, verifiers: readonly NoteVerifier[], options: { origin?: string; workers?: number } = {}): Promise<OfflineReport> {
  const fh = await open(path, 'r');
  const size = (await fh.stat()).size;
  const want = options.workers ?? (size > 4 * CHUNK_BYTES ? Math.min(2, availableParallelism()) : 0);
  const pool: Worker[] = [];
  try {
    for (let i = 0; i < want; i++) pool.push(new Worker(WORKER_SOURCE, { eval: true, execArgv: [] }));
    const v = new ExportVerifier(verifiers, options.origin);
    // Each worker answers its messages in order: one FIFO of waiters per worker.
    const waiting = new Map<Worker, Array<{ resolve: (d: Digests) => void; reject: (e: Error) => void }>>();
    for (const w of pool) {
      const q: Array<{ resolve: (d: Digests) => void; reject: (e: Error) => void }> = [];
      waiting.set(w, q);
      w.on('message', (d: Digests) => q.shift()?.resolve(d));
      const failAll = (e: Error) => q.splice(0).forEach((x) => x.reject(e));
      w.on('error', failAll);
      w.on('exit', () => failAll(new Error('a verification worker stopped')));
    }
    const digestOn = (w: Worker | undefined, buf: Buffer, starts: number[], ends: number[]): Promise<Digests> => {
      if (!w) return Promise.resolve(digestHere(buf, starts, ends));
      return new Promise((resolve, reject) => {
        waiting.get(w)!.push({ resolve, reject });
        w.postMessage({ buf, starts, ends });
      });
    };
    // In flight: one chunk per worker (each worker answers in order), results fed in order.
    const inflight: Array<{ buf: Buffer; starts: number[]; ends: number[]; digests: Promise<Digests> }> = [];
    let rest: Buffer = Buffer.alloc(0);
    let turn = 0;
    let done = false;
    const drainOne = async (): Promise<boolean> => {
      const c = inflight.shift()!;
      const d = await c.digests;
      const lines = c.starts.map((s, k) => c.buf.subarray(s, c.ends[k]));
      return v.feed(lines, d);
    };
    while (!done) {
      const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
      const { bytesRead } = await fh.read(chunk, 0, CHUNK_BYTES, null);
      const final = bytesRead === 0;
      const buf = rest.length ? Buffer.concat([rest, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
      const { starts, ends, rest: restAt } = splitLines(buf, final);
      rest = Buffer.from(buf.subarray(restAt));
      if (starts.length > 0) {
        const w = pool.length ? pool[turn++ % pool.length] : undefined;
        // a worker gets its own copy; the main thread keeps `buf` to read non-entry lines
        inflight.push({ buf, starts, ends, digests: digestOn(w, w ? Buffer.from(buf) : buf, starts, ends) });
      }
      while (inflight.length > Math.max(pool.length, 1) || (final && inflight.length > 0)) {
        if (!(await drainOne())) {
          done = true;
          break;
        }
      }
      if (final) done = true;
    }
    await Promise.allSettled(inflight.map((c) => c.digests));
    return v.report();
  } finally {
    await Promise.all(pool.map((w) => w.terminate()));
    await fh.close();
  }
}

/**
 * Verifies an export, line by line (an async iterable of lines, so a file of millions
 * of entries streams): the chain links and hashes, every checkpoint's signature, the
 * tree root at every checkpoint's size, forks (two checkpoints of one size with
 * different roots) and a cut tail (a checkpoint beyond the last entry). Checkpoints
 * must come before the entries they cover, as the exporter writes them.
 */
export async function verifyExportLines(lines: AsyncIterable<string | Buffer> | Iterable<string | Buffer>, verifiers: readonly NoteVerifier[], options: { origin?: string } = {}): Promise<OfflineReport> {
  const v = new ExportVerifier(verifiers, options.origin);
  for await (const raw of lines) {
    const line = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
    if (!v.feed([line], digestHere(line, [0], [line.length]))) break;
  }
  return v.report();
}

/** Verifies a `.tlog-proof` file: the checkpoint signature, the entry's own hash, and its inclusion. */
export function verifyProofText(text: string, verifiers: readonly NoteVerifier[], options: { origin?: string } = {}): OfflineReport {
  const problem = (at: string, p: string): OfflineReport => ({ ok: false, kind: 'proof', problems: [{ at, problem: p }] });
  let parsed;
  try {
    parsed = parseTlogProof(text);
  } catch (e) {
    return problem('file', (e as ProofFormatError).message);
  }
  let cp;
  try {
    cp = openCheckpoint(parsed.checkpoint, verifiers, options.origin ?? null);
  } catch (e) {
    return problem('checkpoint', `the checkpoint does not verify: ${(e as NoteError).message}`);
  }
  if (!parsed.extra) return problem('file', 'the proof carries no entry (extra line)');
  let entry: AuditEntry;
  try {
    entry = readEntry(JSON.parse(parsed.extra.toString('utf8')) as Record<string, unknown>);
  } catch {
    return problem('entry', 'the extra data is not an audit entry');
  }
  if (entry.seq - 1 !== parsed.index) return problem(`entry ${entry.seq}`, `the entry is seq ${entry.seq} but the proof is for index ${parsed.index}`);
  const { hash, ...body } = entry;
  if (computeEntryHash(body) !== hash) return problem(`entry ${entry.seq}`, `entry ${entry.seq} was altered (its hash does not match its content)`);
  try {
    verifyInclusion(hashLeaf(parsed.extra), parsed.index, cp.size, parsed.proof, cp.root);
  } catch (e) {
    return problem(`entry ${entry.seq}`, `not included in the checkpointed tree of size ${cp.size}: ${(e as ProofError).message}`);
  }
  return { ok: true, kind: 'proof', index: parsed.index, size: cp.size, root: cp.root.toString('base64'), entry };
}
