import type { TaskScope } from '../core/types.js';
import { matchPattern } from '../core/scope.js';

/**
 * Inclusion of scope patterns, for delegation ("a sub-task's scope is within its
 * parent's"). Patterns are those of `scope.ts`: `*` matches any run of characters
 * (including none), every other character matches itself.
 *
 * `patternIncludes(parent, child)` is true when every string the child pattern
 * matches is matched by the parent pattern: `github.*` includes `github.issues.*`
 * and `github.get`; it does not include `*`, and `github*` does not include `git*`.
 *
 * The check is the parent matched, as a pattern, against the child's text, in which
 * the child's `*` is an ordinary character that no literal of the parent can equal
 * (a parent literal is a run without `*`). So a parent literal must meet the same
 * child literals, and a parent `*` swallows any run of the child's elements, literals
 * and `*` alike (a parent `*` matches whatever a child `*` can produce). That is the
 * mapping that shows inclusion, so the answer is sound; over an alphabet larger than
 * the patterns' own characters (ours: all printable ASCII) it is also complete for
 * single patterns: put a long run of a letter absent from the parent in place of each
 * child `*`, and only a parent `*` can absorb it.
 *
 * Matching a `*`-only pattern is greedy (`matchPattern`: each literal run at its
 * leftmost place after the previous one is optimal), so a check costs one pass of
 * `indexOf` per literal run: linear in practice, and at most length x length on
 * adversarial text, which `scope-limits.ts` bounds (256 characters). An earlier
 * dynamic program over (child position, parent position) was exact too but cost
 * length x length on every pair, which a delegation of many long patterns turned
 * into seconds on the event loop. A child pattern is accepted when ONE parent pattern
 * includes it; a child covered only by the union of several parent patterns is
 * refused, which errs on the side of narrowing.
 */
export function patternIncludes(parent: string, child: string): boolean {
  return matchPattern(parent, child);
}

/** True when one of `parents` includes `child`. */
export function coveredBy(parents: string[], child: string): boolean {
  return parents.some((p) => patternIncludes(p, child));
}

/**
 * Inclusion of destination patterns (`matchDestination`: `*` never matches `:`). A
 * parent of only `*` includes everything; a child of only `*` is included only by such a
 * parent; otherwise the parts between colons must pair up, each child part included in
 * its parent part (neither side's `*` can produce a `:`, so part by part is exact).
 */
export function destinationPatternIncludes(parent: string, child: string): boolean {
  if (/^\*+$/.test(parent)) return true;
  if (/^\*+$/.test(child)) return false;
  const p = parent.split(':');
  const c = child.split(':');
  if (p.length !== c.length) return false;
  for (let i = 0; i < p.length; i++) if (!patternIncludes(p[i]!, c[i]!)) return false;
  return true;
}

export interface ScopeExcess {
  field: 'tools' | 'resources' | 'destinations';
  patterns: string[];
}

/**
 * The child scope's patterns that no parent pattern covers, per field; empty when the
 * child scope is within the parent's. Delegation never hands this an empty child
 * `resources`/`destinations` list: an empty one inherits the parent's first
 * (`inheritBounds` in delegation.ts), since on a root task `[]` is a bound, not "none".
 */
export function scopeExcess(parent: TaskScope, child: TaskScope): ScopeExcess[] {
  const steps = excessSteps(parent, child);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * `scopeExcess` that gives the event loop back every `sliceMs` of work. At the scope
 * bounds (`scope-limits.ts`) one check costs a few milliseconds to some tens on a busy
 * machine; requests that arrive together would otherwise run their checks back to
 * back in one turn of the loop, and every other request (`/healthz` too) would wait
 * for all of them.
 */
export async function scopeExcessCooperative(parent: TaskScope, child: TaskScope, sliceMs = 2): Promise<ScopeExcess[]> {
  const steps = excessSteps(parent, child);
  let sliceStart = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() - sliceStart >= sliceMs) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
}

/** The check, one child pattern per step. */
function* excessSteps(parent: TaskScope, child: TaskScope): Generator<void, ScopeExcess[], void> {
  const out: ScopeExcess[] = [];
  for (const field of ['tools', 'resources', 'destinations'] as const) {
    const wider: string[] = [];
    for (const c of child[field]) {
      const covered = field === 'destinations' ? parent[field].some((p) => destinationPatternIncludes(p, c)) : coveredBy(parent[field], c);
      if (!covered) wider.push(c);
      yield;
    }
    if (wider.length > 0) out.push({ field, patterns: wider });
  }
  return out;
}

export function isScopeSubset(parent: TaskScope, child: TaskScope): boolean {
  return scopeExcess(parent, child).length === 0;
}
