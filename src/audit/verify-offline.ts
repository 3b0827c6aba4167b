import { hash as oneShotHash } from 'node:crypto';
import { open } from 'node:fs/promises';
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
  | { ok: true; kind: 'export'; entries: number; first_seq: number; last_seq: number; checkpoints: Array<{ size: number; root: string }> }
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

const ENTRY_START = Buffer.from('{"actor":');
const HASH_KEY = Buffer.from(',"hash":"');
const PREV_KEY = Buffer.from('","prevHash":"');
const SEQ_KEY = Buffer.from('","seq":');
const NEWLINE = Buffer.from('\n');
const LEAF_PREFIX = Buffer.from([0]);

/**
 * Reads an entry line without parsing its JSON. The line is the entry's RFC 8785 form,
 * keys sorted: actor, agentId, data, decisionId, hash, prevHash, seq, taskId, ts, type.
 * Removing `,"hash":"H","prevHash":"P"` from it leaves exactly the canonical body that
 * the chain hash covers (audit-hash.ts), so the chain check needs no re-serialisation:
 * if SHA-256(P "\n" body) equals H, the body is what Writ hashed. The top-level `hash`
 * is the last `,"hash":"` of the line: only strings follow it, and a string cannot
 * hold an unescaped quote.
 */
function readEntryLine(line: Buffer): { seq: number; prev: Buffer; hash: Buffer; bodyHash: Buffer } | null {
  const at = line.lastIndexOf(HASH_KEY);
  if (at < 0) return null;
  const h0 = at + HASH_KEY.length;
  const p0 = h0 + 64 + PREV_KEY.length;
  const s0 = p0 + 64 + SEQ_KEY.length;
  if (line.length < s0 + 2 || !line.subarray(h0 + 64, p0).equals(PREV_KEY) || !line.subarray(p0 + 64, s0).equals(SEQ_KEY)) return null;
  let seq = 0;
  let i = s0;
  for (; i < line.length && i < s0 + 16; i++) {
    const c = line[i]!;
    if (c < 48 || c > 57) break;
    seq = seq * 10 + (c - 48);
  }
  if (i === s0 || line[i] !== 44 /* , */) return null;
  const hash = line.subarray(h0, h0 + 64);
  const prev = line.subarray(p0, p0 + 64);
  // body = line without `,"hash":"H","prevHash":"P"` (it resumes at `,"seq":`)
  const bodyHash = oneShotHash('sha256', Buffer.concat([prev, NEWLINE, line.subarray(0, at), line.subarray(p0 + 64 + 1)]), 'buffer') as Buffer;
  return { seq, prev, hash, bodyHash };
}

/** Yields the lines of a file as Buffers, without decoding them. */
async function* fileLines(path: string): AsyncGenerator<Buffer[]> {
  const fh = await open(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    let rest: Buffer = Buffer.alloc(0);
    for (;;) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      const buf = rest.length ? Buffer.concat([rest, chunk.subarray(0, bytesRead)]) : Buffer.from(chunk.subarray(0, bytesRead));
      // one batch per chunk: an await per line would cost more than hashing it
      const batch: Buffer[] = [];
      let start = 0;
      for (let nl = buf.indexOf(10, start); nl >= 0; nl = buf.indexOf(10, start)) {
        batch.push(buf.subarray(start, nl));
        start = nl + 1;
      }
      rest = buf.subarray(start);
      yield batch;
    }
    if (rest.length) yield [rest];
  } finally {
    await fh.close();
  }
}

/** Verifies an export file (see verifyExportLines), streaming it in 1 MiB chunks. */
export function verifyExportFile(path: string, verifiers: readonly NoteVerifier[], options: { origin?: string } = {}): Promise<OfflineReport> {
  return verifyExportLines(fileLines(path), verifiers, options);
}

/**
 * Verifies an export, line by line (an async iterable of lines, so a file of millions
 * of entries streams): the chain links and hashes, every checkpoint's signature, the
 * tree root at every checkpoint's size, forks (two checkpoints of one size with
 * different roots) and a cut tail (a checkpoint beyond the last entry). Checkpoints
 * must come before the entries they cover, as the exporter writes them.
 */
export async function verifyExportLines(lines: AsyncIterable<string | Buffer | Buffer[]> | Iterable<string | Buffer | Buffer[]>, verifiers: readonly NoteVerifier[], options: { origin?: string } = {}): Promise<OfflineReport> {
  const problems: OfflineProblem[] = [];
  const fail = (at: string, problem: string) => {
    problems.push({ at, problem });
  };
  let origin: string | null = options.origin ?? null;
  let range = new CompactRange();
  let prevHash = Buffer.from(GENESIS_HASH);
  let firstSeq = 0;
  let expectedSeq = 1;
  let entries = 0;
  let sawHeader = false;
  let chainBroken = false;
  const checkpoints = new Map<number, CheckpointSeen>();
  const verifiedRoots: Array<{ size: number; root: string }> = [];
  let n = 0;
  outer: for await (const item of lines) {
    for (const raw of Array.isArray(item) ? item : [item]) {
    n += 1;
    let line: Buffer = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
    if (line.length > 0 && line[line.length - 1] === 13) line = line.subarray(0, -1);
    if (line.length === 0) continue;
    if (sawHeader && line.subarray(0, ENTRY_START.length).equals(ENTRY_START)) {
      const e = readEntryLine(line);
      if (!e) {
        fail(`line ${n}`, 'a malformed entry line');
        chainBroken = true;
        break outer;
      }
      if (entries === 0) firstSeq = e.seq;
      if (e.seq !== expectedSeq) {
        fail(`entry ${expectedSeq}`, e.seq > expectedSeq ? `entry ${expectedSeq} is missing (found ${e.seq} next)` : `entry ${e.seq} is out of order (expected ${expectedSeq})`);
        chainBroken = true;
        break outer;
      }
      if (!e.prev.equals(prevHash)) {
        fail(`entry ${e.seq}`, `entry ${e.seq} does not link to entry ${e.seq - 1}`);
        chainBroken = true;
        break outer;
      }
      if (e.bodyHash.toString('hex') !== e.hash.toString('latin1')) {
        fail(`entry ${e.seq}`, `entry ${e.seq} was altered (its hash does not match its content)`);
        chainBroken = true;
        break outer;
      }
      // The leaf is the line's own bytes; a non-canonical line would not match the
      // checkpointed root, so it is caught below.
      range.append(oneShotHash('sha256', Buffer.concat([LEAF_PREFIX, line]), 'buffer') as Buffer);
      prevHash = Buffer.from(e.hash);
      expectedSeq += 1;
      entries += 1;
      const cp = checkpoints.get(range.size);
      if (cp) {
        const root = range.root();
        if (!root.equals(cp.root)) {
          fail(`checkpoint ${cp.size}`, `the entries up to ${cp.size} do not match the signed checkpoint of that size: the log was rewritten at or before entry ${cp.size}`);
          break outer;
        }
        verifiedRoots.push({ size: cp.size, root: root.toString('base64') });
      }
      continue;
    }
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line.toString('utf8')) as Record<string, unknown>;
      if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new Error();
    } catch {
      fail(`line ${n}`, 'not a JSON object');
      break outer;
    }
    if (!sawHeader) {
      if (obj.format !== EXPORT_FORMAT) {
        fail(`line ${n}`, `the file does not start with a \`${EXPORT_FORMAT}\` header`);
        break outer;
      }
      sawHeader = true;
      if (origin === null && typeof obj.origin === 'string') origin = obj.origin;
      continue;
    }
    if ('prefix' in obj) {
      if (entries > 0) {
        fail(`line ${n}`, 'a prefix after entries');
        break outer;
      }
      const p = obj.prefix as ExportPrefix;
      try {
        range = CompactRange.fromPrefix(p.size, p.nodes.map((b) => Buffer.from(b, 'base64')));
      } catch (e) {
        fail(`line ${n}`, `malformed prefix: ${(e as Error).message}`);
        break outer;
      }
      prevHash = Buffer.from(String(p.prev_hash));
      expectedSeq = p.size + 1;
      continue;
    }
    if ('checkpoint' in obj) {
      let cp: { size: number; root: Buffer };
      try {
        cp = openCheckpoint(String(obj.checkpoint), verifiers, origin);
      } catch (e) {
        fail(`line ${n}`, `checkpoint does not verify: ${(e as Error).message}`);
        continue;
      }
      const other = checkpoints.get(cp.size);
      if (other && !other.root.equals(cp.root)) {
        fail(`checkpoint ${cp.size}`, `fork: two signed checkpoints of size ${cp.size} have different roots (lines ${other.line} and ${n})`);
        continue;
      }
      if (cp.size < range.size || (cp.size === range.size && entries > 0)) {
        fail(`checkpoint ${cp.size}`, `the checkpoint comes after the entries it covers (line ${n})`);
        continue;
      }
      checkpoints.set(cp.size, { ...cp, line: n });
      continue;
    }
    fail(`line ${n}`, 'neither an entry nor a checkpoint');
    break outer;
  }
  }
  if (!sawHeader && problems.length === 0) fail('line 1', 'the file is empty');
  if (problems.length === 0 && !chainBroken) {
    for (const cp of checkpoints.values()) {
      if (cp.size > range.size) fail(`checkpoint ${cp.size}`, `entries after ${range.size} are missing: a signed checkpoint covers ${cp.size}`);
    }
  }
  if (problems.length > 0) return { ok: false, kind: 'export', problems };
  return { ok: true, kind: 'export', entries, first_seq: firstSeq, last_seq: expectedSeq - 1, checkpoints: verifiedRoots.sort((a, b) => a.size - b.size) };
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
