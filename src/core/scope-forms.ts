import { destinationPatternProblem } from './destination.js';
import { InvalidRequestError } from './errors.js';
import { resourceProblem } from './resource.js';
import type { TaskScope } from './types.js';

export interface ScopeFormProblem {
  path: (string | number)[];
  message: string;
  code: 'invalid_destination' | 'invalid_resource';
}

/**
 * The first scope pattern that is not in the canonical form of its field
 * (`core/destination.ts`, `core/resource.ts`), or null. Checked where a scope enters
 * (task creation, delegation), so a pattern can only ever meet canonical values.
 */
export function scopeFormProblem(scope: Partial<Record<keyof TaskScope, unknown>>): ScopeFormProblem | null {
  for (const [i, p] of (Array.isArray(scope.resources) ? scope.resources : []).entries()) {
    if (typeof p !== 'string') continue;
    const why = resourceProblem(p);
    if (why) return { path: ['resources', i], message: `resource pattern \`${p.slice(0, 200)}\`: ${why}`, code: 'invalid_resource' };
  }
  for (const [i, p] of (Array.isArray(scope.destinations) ? scope.destinations : []).entries()) {
    if (typeof p !== 'string') continue;
    const why = destinationPatternProblem(p);
    if (why) return { path: ['destinations', i], message: `destination pattern \`${p.slice(0, 200)}\`: ${why}`, code: 'invalid_destination' };
  }
  return null;
}

/** Throws 400 `invalid_resource` / `invalid_destination` (callers that bypass the HTTP edge). */
export function assertScopeForms(scope: Partial<Record<keyof TaskScope, unknown>>): void {
  const p = scopeFormProblem(scope);
  if (p) throw new InvalidRequestError(p.message, { path: p.path.join('.') }, p.code);
}
