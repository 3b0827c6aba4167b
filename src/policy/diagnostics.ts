import type * as cedarTypes from '@cedar-policy/cedar-wasm/nodejs';
import { sha256Hex } from '../core/digest.js';

/**
 * A problem found in policy text, located the way a compiler reports one: the policy
 * (its `@id`), the 1-based line and column in the text as submitted, and an excerpt of
 * that line with a caret under the span.
 */
export interface PolicyDiagnostic {
  severity: 'error' | 'warning';
  policy_id: string | null;
  message: string;
  help?: string | null;
  /** 1-based; null when Cedar gave no location */
  line: number | null;
  column: number | null;
  /** `  12 | when { resource resource };` and a caret line under it */
  excerpt: string | null;
}

/** The 1-based line and column of a UTF-16 offset in `text`. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  const at = Math.max(0, Math.min(offset, text.length));
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < at; i = text.indexOf('\n', i + 1)) {
    line += 1;
    start = i + 1;
  }
  return { line, column: at - start + 1 };
}

/** The line holding `start`, numbered, with carets under `start..end` (clipped to that line). */
export function caretExcerpt(text: string, start: number, end: number): string {
  const { line, column } = lineColumn(text, start);
  const lineStart = start - (column - 1);
  let lineEnd = text.indexOf('\n', lineStart);
  if (lineEnd < 0) lineEnd = text.length;
  const src = text.slice(lineStart, lineEnd).replace(/\r$/, '');
  const width = Math.max(1, Math.min(end, lineEnd) - start);
  const gutter = String(line);
  // tabs kept under tabs, so the caret lines up whatever the tab width
  const pad = src.slice(0, column - 1).replace(/[^\t]/g, ' ');
  return `${gutter} | ${src}\n${' '.repeat(gutter.length)} | ${pad}${'^'.repeat(width)}`;
}

/**
 * A diagnostic from Cedar's error, its offsets shifted by `base` (where the policy's own
 * text starts in the full text: Cedar's validator counts from the start of each policy).
 */
export function fromCedar(
  text: string,
  policyId: string | null,
  e: cedarTypes.DetailedError,
  base = 0,
  severity: 'error' | 'warning' = 'error',
): PolicyDiagnostic {
  const loc = e.sourceLocations?.[0];
  const label = loc?.label ? ` (${loc.label})` : '';
  return located(text, { severity, policy_id: policyId ?? policyAt(text, loc ? base + loc.start : null), message: `${e.message}${label}`, help: e.help ?? null }, loc ? base + loc.start : null, loc ? base + loc.end : null);
}

/** Adds line, column and excerpt for the span `start..end` (none when `start` is null). */
export function located(text: string, d: Omit<PolicyDiagnostic, 'line' | 'column' | 'excerpt'>, start: number | null, end: number | null = start): PolicyDiagnostic {
  if (start === null) return { ...d, line: null, column: null, excerpt: null };
  const { line, column } = lineColumn(text, start);
  return { ...d, line, column, excerpt: caretExcerpt(text, start, end ?? start + 1) };
}

/**
 * The `@id` of the policy a syntax error falls in, when Cedar could not split the text
 * into policies: the last `@id("...")` after the statement end (`;`) before the offset.
 * A heuristic for the message only (a `;` inside a string can mislead it).
 */
function policyAt(text: string, offset: number | null): string | null {
  if (offset === null) return null;
  const before = text.slice(0, offset);
  const from = before.lastIndexOf(';') + 1;
  const ids = [...before.slice(from).matchAll(/@id\s*\(\s*"((?:[^"\\]|\\.)*)"\s*\)/g)];
  return ids.length > 0 ? ids[ids.length - 1]![1]! : null;
}

/**
 * The id of a policy without `@id`: derived from its text (runs of whitespace folded
 * to one space), so it stays the same when other policies are added, removed or
 * reordered, unlike a position (`policy0`), and decisions keep naming the same policy.
 */
export function derivedPolicyId(policyText: string): string {
  const canonical = policyText.replace(/\s+/g, ' ').trim();
  return `policy-${sha256Hex(canonical).slice(0, 12)}`;
}

/** `file:12:7: error: policy \`x\`: message` and the excerpt, as a compiler prints it. */
export function formatDiagnostic(d: PolicyDiagnostic, file: string): string {
  const where = d.line !== null ? `${file}:${d.line}:${d.column}` : file;
  const named = d.policy_id && !d.message.includes(`policy \`${d.policy_id}\``) ? `policy \`${d.policy_id}\`: ` : '';
  const lines = [`${where}: ${d.severity}: ${named}${d.message}`];
  if (d.excerpt) lines.push(...d.excerpt.split('\n').map((l) => `  ${l}`));
  if (d.help) lines.push(`  help: ${d.help}`);
  return lines.join('\n');
}
