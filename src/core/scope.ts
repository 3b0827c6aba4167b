import type { TaskScope } from './types.js';

/**
 * Scope patterns: `*` matches any run of characters (including none); every other
 * character matches itself. `github.*` matches `github.create_issue`; `*` matches all.
 */
export function matchPattern(pattern: string, value: string): boolean {
  if (!pattern.includes('*')) return pattern === value;
  const parts = pattern.split('*');
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (!value.startsWith(first)) return false;
  if (value.length < first.length + last.length || !value.endsWith(last)) return false;
  let pos = first.length;
  const end = value.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const p = parts[i]!;
    const at = value.indexOf(p, pos);
    if (at < 0 || at + p.length > end) return false;
    pos = at + p.length;
  }
  return true;
}

/**
 * Destination patterns: `*` matches any run of characters other than `:`, so the
 * parts between colons match part by part (`*.github.com` never matches a `kind:name`
 * such as `evil:x.github.com`, nor `api.github.com:8443`; write `*.github.com:*`).
 * A pattern of only `*` matches every destination.
 */
export function matchDestination(pattern: string, value: string): boolean {
  if (/^\*+$/.test(pattern)) return true;
  const p = pattern.split(':');
  const v = value.split(':');
  if (p.length !== v.length) return false;
  for (let i = 0; i < p.length; i++) if (!matchPattern(p[i]!, v[i]!)) return false;
  return true;
}

export function matchesAnyDestination(patterns: string[], value: string): boolean {
  return patterns.some((p) => matchDestination(p, value));
}

export function matchesAny(patterns: string[], value: string): boolean {
  return patterns.some((p) => matchPattern(p, value));
}

export type ScopeViolation = {
  code: 'tool_out_of_scope' | 'resource_out_of_scope' | 'destination_out_of_scope' | 'resource_required' | 'destination_required';
  message: string;
};

/**
 * The task scope is a hard bound, checked before policy. A scope that lists
 * resources (or destinations) bounds every action: an action that names none is
 * refused rather than let through unchecked, since the tool would then act on a
 * resource no one judged. A scope with an empty list allows naming none, and only none.
 */
export function checkScope(scope: TaskScope, action: { tool: string; resource?: string; destination?: string }): ScopeViolation | null {
  if (!matchesAny(scope.tools, action.tool)) {
    return { code: 'tool_out_of_scope', message: `tool \`${action.tool}\` is outside the task scope` };
  }
  if (action.resource === undefined && scope.resources.length > 0) {
    return { code: 'resource_required', message: 'the task scope lists resources: the action must name its `resource`' };
  }
  if (action.resource !== undefined && !matchesAny(scope.resources, action.resource)) {
    return { code: 'resource_out_of_scope', message: `resource \`${action.resource}\` is outside the task scope` };
  }
  if (action.destination === undefined && scope.destinations.length > 0) {
    return { code: 'destination_required', message: 'the task scope lists destinations: the action must name its `destination`' };
  }
  if (action.destination !== undefined && !matchesAnyDestination(scope.destinations, action.destination)) {
    return { code: 'destination_out_of_scope', message: `destination \`${action.destination}\` is outside the task scope` };
  }
  return null;
}
