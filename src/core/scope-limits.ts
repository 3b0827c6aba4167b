import { InvalidRequestError } from './errors.js';
import type { TaskScope } from './types.js';

/**
 * Bounds on the size of a task scope, for task creation and delegation alike. A scope
 * is checked against its parent's pattern by pattern (`scope-subset.ts`) and matched on
 * every request (`scope.ts`): its size sets the cost of both, so it is bounded where it
 * enters, with a 400 `scope_too_large` that names the bound. The bounds are generous
 * for real scopes (a handful of patterns with one or two `*` each).
 */
export const SCOPE_LIMITS = Object.freeze({
  /** patterns in one list (`tools`, `resources` or `destinations`) */
  patternsPerList: 64,
  /** characters in one pattern */
  patternLength: 256,
  /** `*` in one pattern (a run such as `**` counts as one: it matches what `*` matches) */
  starsPerPattern: 8,
});

export interface ScopeBoundsProblem {
  /** the path of the offending field, e.g. `["tools"]` or `["resources", 3]` */
  path: (string | number)[];
  message: string;
}

/** Counts the runs of `*` in a pattern. */
export function starCount(pattern: string): number {
  let n = 0;
  for (let i = 0; i < pattern.length; i++) if (pattern[i] === '*' && pattern[i - 1] !== '*') n++;
  return n;
}

/** The first bound the scope breaks, or null. Lists may be partial (`resources` left out). */
export function scopeBoundsProblem(scope: Partial<Record<keyof TaskScope, unknown>>): ScopeBoundsProblem | null {
  for (const field of ['tools', 'resources', 'destinations'] as const) {
    const list = scope[field];
    if (!Array.isArray(list)) continue;
    if (list.length > SCOPE_LIMITS.patternsPerList) {
      return { path: [field], message: `\`${field}\` holds ${list.length} patterns; a scope list holds at most ${SCOPE_LIMITS.patternsPerList}` };
    }
    for (const [i, p] of list.entries()) {
      if (typeof p !== 'string') continue;
      if (p.length > SCOPE_LIMITS.patternLength) {
        return { path: [field, i], message: `a pattern of \`${field}\` is ${p.length} characters long; the limit is ${SCOPE_LIMITS.patternLength}` };
      }
      const stars = starCount(p);
      if (stars > SCOPE_LIMITS.starsPerPattern) {
        return { path: [field, i], message: `a pattern of \`${field}\` holds ${stars} \`*\`; the limit is ${SCOPE_LIMITS.starsPerPattern}` };
      }
    }
  }
  return null;
}

/** Throws 400 `scope_too_large` when the scope breaks a bound (callers that bypass the HTTP edge). */
export function assertScopeBounds(scope: Partial<Record<keyof TaskScope, unknown>>): void {
  const problem = scopeBoundsProblem(scope);
  if (problem) throw new InvalidRequestError(problem.message, { path: problem.path.join('.') }, 'scope_too_large');
}
