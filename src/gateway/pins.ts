import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { canonicalJson, sha256Hex } from '../core/digest.js';

/**
 * Tool pinning. An operator approves an upstream's catalog (`writ gateway tools
 * approve`); the pin file records, per upstream and tool, the SHA-256 of the RFC 8785
 * canonical JSON of `{name, description, inputSchema}`. At run time a tool whose
 * definition hashes differently (a rug pull) or that was never approved is neither
 * listed nor callable until an operator approves it again.
 */

export interface ToolDefinition {
  name: string;
  description?: string;
  inputSchema?: unknown;
}

export interface Pin {
  sha256: string;
  approved_at: string;
}

export interface PinFile {
  version: 1;
  upstreams: Record<string, Record<string, Pin>>;
}

export type PinStatus = 'pinned' | 'changed' | 'unpinned';

export function toolDigest(t: ToolDefinition): string {
  return sha256Hex(canonicalJson({ name: t.name, description: t.description ?? null, inputSchema: t.inputSchema ?? null }));
}

export function emptyPins(): PinFile {
  return { version: 1, upstreams: {} };
}

function isPinFile(v: any): v is PinFile {
  if (!v || typeof v !== 'object' || v.version !== 1 || !v.upstreams || typeof v.upstreams !== 'object') return false;
  for (const tools of Object.values(v.upstreams)) {
    if (!tools || typeof tools !== 'object') return false;
    for (const p of Object.values(tools as Record<string, any>)) if (!p || typeof p.sha256 !== 'string') return false;
  }
  return true;
}

/** Reads a pin file; a missing file is an empty catalog. A malformed one throws. */
export function readPinFile(path: string): PinFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyPins();
    throw new Error(`cannot read the pin file \`${path}\`: ${(err as NodeJS.ErrnoException).code}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`the pin file \`${path}\` is not JSON`);
  }
  if (!isPinFile(v)) throw new Error(`the pin file \`${path}\` is not a Writ pin file (version 1)`);
  return v;
}

/** Writes atomically (temp file + rename), so a running gateway never reads half a file. */
export function writePinFile(path: string, pins: PinFile): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(pins, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, path);
}

/**
 * The pins a running gateway enforces, re-read whenever the file changes on disk
 * (checked with one `stat` per use), so a re-approval takes effect without a restart.
 * A file that cannot be read or parsed pins nothing (fail closed).
 */
export class PinStore {
  private pins: PinFile = emptyPins();
  private stamp = '';
  error: string | null = null;

  constructor(
    readonly path: string,
    private readonly onReload?: (error: string | null) => void,
  ) {
    this.reload();
  }

  /** Re-reads the file when it changed; true when it did. */
  reload(): boolean {
    let stamp: string;
    try {
      const st = statSync(this.path, { bigint: true });
      stamp = `${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch {
      stamp = 'missing';
    }
    if (stamp === this.stamp) return false;
    this.stamp = stamp;
    try {
      this.pins = readPinFile(this.path);
      this.error = null;
    } catch (err) {
      this.pins = emptyPins();
      this.error = (err as Error).message;
    }
    this.onReload?.(this.error);
    return true;
  }

  status(upstream: string, tool: ToolDefinition, digest = toolDigest(tool)): PinStatus {
    const pin = this.pins.upstreams[upstream]?.[tool.name];
    if (!pin) return 'unpinned';
    return pin.sha256 === digest ? 'pinned' : 'changed';
  }

  pin(upstream: string, name: string): Pin | undefined {
    return this.pins.upstreams[upstream]?.[name];
  }

  get count(): number {
    return Object.values(this.pins.upstreams).reduce((n, t) => n + Object.keys(t).length, 0);
  }
}

export interface ApprovalReportLine {
  upstream: string;
  tool: string;
  status: 'added' | 'changed' | 'unchanged' | 'removed';
  sha256?: string;
}

/**
 * Merges an approval into the pins: for each listed upstream, its current tools (or
 * only `only` of them) are pinned to their current definitions; a fully approved
 * upstream's pins for tools it no longer has are dropped.
 */
export function approveCatalogs(
  existing: PinFile,
  catalogs: Map<string, ToolDefinition[]>,
  opts: { only?: Set<string>; now?: Date } = {},
): { pins: PinFile; report: ApprovalReportLine[] } {
  const at = (opts.now ?? new Date()).toISOString();
  const pins: PinFile = { version: 1, upstreams: structuredClone(existing.upstreams) };
  const report: ApprovalReportLine[] = [];
  for (const [upstream, tools] of catalogs) {
    const before = pins.upstreams[upstream] ?? {};
    const after: Record<string, Pin> = opts.only ? { ...before } : {};
    for (const t of tools) {
      const full = `${upstream}.${t.name}`;
      if (opts.only && !opts.only.has(full)) continue;
      const sha256 = toolDigest(t);
      const prev = before[t.name];
      const status = !prev ? 'added' : prev.sha256 === sha256 ? 'unchanged' : 'changed';
      after[t.name] = status === 'unchanged' ? prev! : { sha256, approved_at: at };
      report.push({ upstream, tool: t.name, status, sha256 });
    }
    if (!opts.only) {
      for (const name of Object.keys(before)) if (!(name in after)) report.push({ upstream, tool: name, status: 'removed' });
    }
    pins.upstreams[upstream] = after;
  }
  return { pins, report };
}
