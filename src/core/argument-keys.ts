import { InvalidRequestError } from './errors.js';

/**
 * Keys that name JavaScript's object machinery. A tool handler that merges or indexes
 * arguments into a plain object (`Object.assign`, `obj[key] = …`, lodash `merge`) turns
 * `__proto__` into a prototype change, and `constructor`/`prototype` reach the same
 * machinery through `constructor.prototype`. JSON.parse keeps them as own keys, but
 * many validators (zod's records among them) drop `__proto__` silently: policy would
 * judge arguments without the key while the tool receives them with it. So they are
 * refused outright, at every depth.
 */
export const RESERVED_ARGUMENT_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** The dotted path of the first reserved key in `value`, or null (iterative: no recursion limit). */
export function findReservedArgumentKey(value: unknown): string | null {
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push([v[i], path ? `${path}.${i}` : String(i)]);
      continue;
    }
    // Object.keys lists an own `__proto__` (JSON.parse creates one); `for…in` would too, but also inherited keys
    for (const k of Object.keys(v)) {
      const p = path ? `${path}.${k}` : k;
      if (RESERVED_ARGUMENT_KEYS.has(k)) return p;
      stack.push([(v as Record<string, unknown>)[k], p]);
    }
  }
  return null;
}

/** Throws 400 `reserved_argument_key` when `args` holds `__proto__`, `constructor` or `prototype` at any depth. */
export function checkArgumentKeys(args: unknown): void {
  const at = findReservedArgumentKey(args);
  if (at !== null) {
    throw new InvalidRequestError(
      `argument key \`${at.slice(0, 200)}\` is reserved: \`__proto__\`, \`constructor\` and \`prototype\` are refused at every depth`,
      { path: at.slice(0, 1000) },
      'reserved_argument_key',
    );
  }
}
