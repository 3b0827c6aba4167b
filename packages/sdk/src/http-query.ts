/**
 * One reading of a query string, shared by Writ's HTTP proxy (which shows it to policy
 * and forwards it) and a tool server's guard (which checks the action token against
 * it). Query parsers disagree (WHATWG URL, PHP, Rack, `qs`, Go, servlet containers):
 * on `;` as a separator, on `+`, on `name[]` and `name[key]`, on repeated names, on bad
 * percent-encoding. A parameter policy reads must mean the same to policy and to the
 * upstream, so the query is read once here, in the form the bracket-aware parsers give
 * it, anything parsers read differently is refused, and the upstream gets it
 * re-encoded one way (`encoded`), so what it parses is what policy saw.
 */

/** A query value: a string, an array (a repeated name or `name[]`), or a map (`name[key]`). */
export type QueryValue = string | string[] | { [key: string]: QueryValue };
export type QueryObject = Record<string, QueryValue>;

/** A query that parsers read differently: 400 `invalid_query`. */
export class InvalidQueryError extends Error {
  readonly code = 'invalid_query';
  readonly status = 400;
  constructor(message: string) {
    super(message);
    this.name = 'InvalidQueryError';
  }
}

/** Past this many `[...]` levels `qs` stops nesting (it keeps the rest as text) and PHP goes on: refused. */
export const MAX_QUERY_DEPTH = 5;
/** Names that would reach an object's prototype in a parser that builds plain objects. */
const PROTOTYPE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const NAME = /^([^[\]]+)((?:\[[^[\]]*\])*)$/;

function decode(part: string, what: string): string {
  try {
    // RFC 1866 form encoding: `+` is a space (what WHATWG URLSearchParams, PHP, Rack and qs do)
    return decodeURIComponent(part.replace(/\+/g, ' '));
  } catch {
    throw new InvalidQueryError(`the query ${what} \`${part.slice(0, 100)}\` is not valid percent-encoding (or not UTF-8)`);
  }
}

/** RFC 3986 §3.4 query, encoded one way: every byte but unreserved ones is percent-encoded. */
function encode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const isMap = (v: QueryValue | undefined): v is { [key: string]: QueryValue } => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Parses `search` (with or without the leading `?`). Throws `InvalidQueryError` for:
 * `;` (a separator to some parsers, part of the value to others), bad percent-encoding,
 * an empty name, NUL or control characters in a name, NUL in a value, a name still
 * percent-encoded after decoding (`%2561`, double encoding), unbalanced brackets,
 * more than `MAX_QUERY_DEPTH` bracket levels, `__proto__`/`constructor`/`prototype`,
 * and one name used in two shapes (`a=1&a[b]=2`, `a[]=1&a[b]=2`).
 */
export function parseQuery(search: string): { query: QueryObject; encoded: string } {
  const text = search.startsWith('?') ? search.slice(1) : search;
  const query: QueryObject = {};
  if (text === '') return { query, encoded: '' };
  if (text.includes(';')) throw new InvalidQueryError('the query has a `;`: some parsers read it as a separator, others as part of a value (encode it as `%3B`)');
  const out: string[] = [];
  for (const part of text.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = decode(eq < 0 ? part : part.slice(0, eq), 'name');
    const value = eq < 0 ? '' : decode(part.slice(eq + 1), 'value');
    if (name === '') throw new InvalidQueryError('the query has a parameter without a name');
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(name)) throw new InvalidQueryError('a query parameter name has control characters or NUL');
    if (value.includes('\0')) throw new InvalidQueryError('a query parameter value has a NUL');
    if (/%[0-9A-Fa-f]{2}/.test(name)) throw new InvalidQueryError(`the query parameter name \`${name.slice(0, 100)}\` is percent-encoded twice`);
    const m = NAME.exec(name);
    if (!m) throw new InvalidQueryError(`the query parameter name \`${name.slice(0, 100)}\` has unbalanced brackets`);
    const base = m[1]!;
    const keys = m[2] ? m[2].slice(1, -1).split('][') : [];
    if (keys.length > MAX_QUERY_DEPTH) throw new InvalidQueryError(`the query parameter name \`${name.slice(0, 100)}\` nests deeper than ${MAX_QUERY_DEPTH} levels`);
    for (const k of [base, ...keys]) {
      if (PROTOTYPE_KEYS.has(k)) throw new InvalidQueryError(`the query parameter name \`${name.slice(0, 100)}\` is not allowed`);
    }
    keys.slice(0, -1).forEach((k) => {
      if (k === '') throw new InvalidQueryError(`the query parameter name \`${name.slice(0, 100)}\` has \`[]\` before its end; parsers read it differently`);
    });
    place(query, base, keys, value, name);
    out.push(`${encode(name)}=${encode(value)}`);
  }
  return { query, encoded: out.length ? `?${out.join('&')}` : '' };
}

/**
 * Puts one value in place. A plain name repeated becomes an array (in order); `[]`
 * appends; `[key]` descends into a map. A name already holding another shape is refused:
 * parsers disagree on what `a=1&a[b]=2` means (`qs` merges, PHP keeps the last).
 */
function place(query: QueryObject, base: string, keys: string[], value: string, name: string): void {
  const mixed = () => new InvalidQueryError(`the query parameter \`${name.slice(0, 100)}\` is used in two shapes (plain, \`[]\` and \`[key]\`); parsers read that differently`);
  let holder: { [key: string]: QueryValue } = query;
  let key = base;
  for (const k of keys) {
    const cur = Object.hasOwn(holder, key) ? holder[key] : undefined;
    if (k === '') {
      // `name[]`: append
      if (cur === undefined) holder[key] = [value];
      else if (Array.isArray(cur) && appended.has(cur)) cur.push(value);
      else throw mixed();
      if (cur === undefined) appended.add(holder[key] as string[]);
      return;
    }
    if (cur === undefined) holder[key] = {};
    else if (!isMap(cur)) throw mixed();
    holder = holder[key] as { [key: string]: QueryValue };
    key = k;
  }
  const cur = Object.hasOwn(holder, key) ? holder[key] : undefined;
  if (cur === undefined) holder[key] = value;
  else if (typeof cur === 'string') holder[key] = [cur, value];
  else if (Array.isArray(cur) && !appended.has(cur)) cur.push(value);
  else throw mixed();
}

/** arrays made by `name[]` (as opposed to a repeated plain name): the two shapes do not mix */
const appended = new WeakSet<string[]>();
