import type { TaskScope } from '../core/types.js';

/**
 * Inclusion of scope patterns, for delegation ("a sub-task's scope is within its
 * parent's"). Patterns are those of `scope.ts`: `*` matches any run of characters
 * (including none), every other character matches itself.
 *
 * `patternIncludes(parent, child)` is true when every string the child pattern
 * matches is matched by the parent pattern: `github.*` includes `github.issues.*`
 * and `github.get`; it does not include `*`, and `github*` does not include `git*`.
 *
 * The check is a dynamic program over (position in child, position in parent):
 * a parent literal must meet the same child literal; a parent `*` either ends (matches
 * nothing more) or swallows the child's next element, a literal or a `*` (a parent
 * `*` matches whatever a child `*` can produce). It is sound: it answers true only
 * when it has built the mapping that shows inclusion. Over an alphabet larger than
 * the patterns' own characters (ours: all printable ASCII) it is also complete for
 * single patterns. A child pattern is accepted when ONE parent pattern includes it;
 * a child covered only by the union of several parent patterns is refused, which
 * errs on the side of narrowing.
 */
export function patternIncludes(parent: string, child: string): boolean {
  const p = squeeze(parent);
  const c = squeeze(child);
  if (!p.includes('*')) return p === c;
  const n = c.length;
  const m = p.length;
  // memo[i * (m + 1) + j]: 0 unknown, 1 true, 2 false; iterative from the end.
  const memo = new Uint8Array((n + 1) * (m + 1));
  const at = (i: number, j: number) => memo[i * (m + 1) + j] === 1;
  for (let i = n; i >= 0; i--) {
    for (let j = m; j >= 0; j--) {
      let v: boolean;
      if (j === m) v = i === n;
      else if (p[j] === '*') v = at(i, j + 1) || (i < n && at(i + 1, j));
      else v = i < n && c[i] !== '*' && c[i] === p[j] && at(i + 1, j + 1);
      memo[i * (m + 1) + j] = v ? 1 : 2;
    }
  }
  return at(0, 0);
}

/** `a**b` matches what `a*b` matches. */
function squeeze(p: string): string {
  return p.replace(/\*{2,}/g, '*');
}

/** True when one of `parents` includes `child`. */
export function coveredBy(parents: string[], child: string): boolean {
  return parents.some((p) => patternIncludes(p, child));
}

export interface ScopeExcess {
  field: 'tools' | 'resources' | 'destinations';
  patterns: string[];
}

/**
 * The child scope's patterns that no parent pattern covers, per field; empty when the
 * child scope is within the parent's. An empty child list (the child may name no
 * resource, or no destination) is always within.
 */
export function scopeExcess(parent: TaskScope, child: TaskScope): ScopeExcess[] {
  const out: ScopeExcess[] = [];
  for (const field of ['tools', 'resources', 'destinations'] as const) {
    const wider = child[field].filter((c) => !coveredBy(parent[field], c));
    if (wider.length > 0) out.push({ field, patterns: wider });
  }
  return out;
}

export function isScopeSubset(parent: TaskScope, child: TaskScope): boolean {
  return scopeExcess(parent, child).length === 0;
}
