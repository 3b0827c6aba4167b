import { sha256Hex } from '../core/digest.js';

/** Past this many cells the line-by-line table is not built: the diff replaces every line. */
const MAX_CELLS = 4_000_000;

/**
 * A unified diff (the `diff -u` body: `@@ -a,n +b,m @@` hunks with `context` lines
 * around each change) from `before` to `after`, by longest common subsequence of
 * lines. Empty when the texts are equal.
 */
export function diffPolicyText(before: string, after: string, context = 2): string {
  if (before === after) return '';
  const a = before.split('\n');
  const b = after.split('\n');
  // ops: ' ' kept, '-' only in a, '+' only in b
  const ops: [string, string][] = [];
  if (a.length * b.length > MAX_CELLS) {
    for (const l of a) ops.push(['-', l]);
    for (const l of b) ops.push(['+', l]);
  } else {
    const n = a.length;
    const m = b.length;
    const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && a[i] === b[j]) (ops.push([' ', a[i]!]), i++, j++);
      else if (i < n && (j >= m || lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) ops.push(['-', a[i++]!]);
      else ops.push(['+', b[j++]!]);
    }
  }
  // group the changes into hunks with `context` kept lines around each
  const out: string[] = [];
  let k = 0;
  let lineA = 1;
  let lineB = 1;
  const posA: number[] = [];
  const posB: number[] = [];
  for (const [op] of ops) {
    posA.push(lineA);
    posB.push(lineB);
    if (op !== '+') lineA++;
    if (op !== '-') lineB++;
  }
  while (k < ops.length) {
    while (k < ops.length && ops[k]![0] === ' ') k++;
    if (k >= ops.length) break;
    const start = Math.max(0, k - context);
    let end = k;
    for (let last = k; end < ops.length; end++) {
      if (ops[end]![0] !== ' ') last = end;
      else if (end - last > 2 * context) break;
    }
    while (end > k && ops[end - 1]![0] === ' ' && end - 1 > lastChange(ops, start, end) + context) end--;
    const hunk = ops.slice(start, end);
    const countA = hunk.filter(([o]) => o !== '+').length;
    const countB = hunk.filter(([o]) => o !== '-').length;
    out.push(`@@ -${posA[start]},${countA} +${posB[start]},${countB} @@`);
    for (const [o, l] of hunk) out.push(`${o}${l}`);
    k = end;
  }
  return `${out.join('\n')}\n`;
}

function lastChange(ops: [string, string][], from: number, to: number): number {
  for (let i = to - 1; i >= from; i--) if (ops[i]![0] !== ' ') return i;
  return from;
}

/** What each policy change's audit entry records: the SHA-256 (hex) of its diff. */
export function diffHash(diff: string): string {
  return sha256Hex(diff);
}
