// SQL literals for the statements the decision commit sends in the simple-query protocol.
// Part of the PostgreSQL store; see decisions.ts for why (several statements in one message).

/**
 * Values written into a statement's text instead of being bound as parameters: the
 * simple-query protocol (one `Query` message) may carry several statements, so a
 * transaction's locks, or its writes with its COMMIT and the flush barrier, travel in
 * one message and one round trip; the extended protocol that binds parameters carries
 * one statement per Sync. Every value goes through here, never through string
 * concatenation elsewhere.
 *
 * Strings are single-quoted with `'` doubled (PostgreSQL docs §4.1.2.1); a string with a
 * backslash is written as an escape string `E'…'` with `\` doubled too (§4.1.2.2), so the
 * literal means the same whatever `standard_conforming_strings` is. NUL is refused: a
 * `Query` message's text is a C string, and PostgreSQL text cannot hold it anyway (a
 * bound parameter with it fails as well).
 */
export function sqlString(s: string): string {
  if (s.includes('\0')) throw new NulInText();
  const quoted = s.replaceAll("'", "''");
  return s.includes('\\') ? `E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

/**
 * The fault PostgreSQL itself raises for NUL in a bound text parameter (SQLSTATE 22021,
 * character_not_in_repertoire), so the store answers it as before: 503, nothing written.
 */
class NulInText extends Error {
  readonly code = '22021';
  constructor() {
    super('a text value cannot hold NUL');
  }
}

/** An integer literal: only safe integers are written (a bigint column's values here are counts and milliseconds). */
export function sqlInteger(n: number): string {
  if (!Number.isSafeInteger(n)) throw new TypeError(`not a safe integer: ${n}`);
  return String(n);
}

/** A nullable value as a literal: NULL, a string or a safe integer. */
export function sqlValue(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return 'NULL';
  return typeof v === 'number' ? sqlInteger(v) : sqlString(v);
}

/**
 * An array as one constant, `E'{…}'::type[]` (PostgreSQL docs §8.15.2): PostgreSQL parses,
 * analyzes and folds it as a single literal, where `ARRAY[…]` is one expression node per
 * element (a commit of 6 decisions sends ~180 elements: 160 -> 110 us of the server's CPU
 * for such a statement, 13 decisions 265 -> 180 us). NULL is written bare; every other
 * element is double-quoted, with `"` and `\` backslash-escaped inside the quotes (so braces,
 * commas, spaces, an empty string or the text `NULL` are read as themselves), and the
 * whole is an escape string `E'…'` (§4.1.2.2: `\` and `'` doubled once more), whose meaning
 * does not depend on `standard_conforming_strings`. Each element is escaped in one pass.
 * NUL is refused as by `sqlString`; integers are safe integers only, as `sqlInteger`.
 */
export function sqlArray(values: readonly (string | number | null | undefined)[], type: 'text' | 'bigint' | 'int'): string {
  let body = '';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) body += ',';
    if (v === null || v === undefined) body += 'NULL';
    else if (typeof v === 'number') body += sqlInteger(v);
    else {
      if (v.includes('\0')) throw new NulInText();
      body += `"${escapeInArray(v)}"`;
    }
  }
  return `E'{${body}}'::${type}[]`;
}

/** `\` -> `\\` (array) -> `\\\\` (E-string); `"` -> `\"` -> `\\"`; `'` -> `''` (E-string); backslashes first */
function escapeInArray(v: string): string {
  let out = v;
  if (out.includes('\\')) out = out.replaceAll('\\', '\\\\\\\\');
  if (out.includes('"')) out = out.replaceAll('"', '\\\\"');
  if (out.includes("'")) out = out.replaceAll("'", "''");
  return out;
}
