import { ERROR_CODES, ERROR_TABLE } from '../core/error-codes.js';

/**
 * The README's "API errors" table, rendered from `ERROR_TABLE` (src/core/error-codes.ts)
 * between two marker comments: `npm run docs:errors` writes it, and
 * test/error-codes.test.ts fails when README.md holds anything else there.
 */

export const ERRORS_BEGIN = '<!-- errors:begin (generated from ERROR_TABLE in src/core/error-codes.ts by `npm run docs:errors`; edit it there) -->';
export const ERRORS_END = '<!-- errors:end -->';

/** The codes of `ERROR_CODES` no row of the table names (the generator refuses to leave one out). */
export function undocumentedErrorCodes(): string[] {
  const named = new Set<string>(ERROR_TABLE.flatMap((r) => r.codes));
  return ERROR_CODES.filter((c) => !named.has(c));
}

/** The block between the markers, markers included. */
export function renderErrorTable(): string {
  const missing = undocumentedErrorCodes();
  if (missing.length > 0) throw new Error(`ERROR_TABLE in src/core/error-codes.ts has no row for ${missing.join(', ')}`);
  const row = (cells: string[]) => `|${cells.map((c) => (c === '' ? ' ' : ` ${c} `)).join('|')}|`;
  const rows = ERROR_TABLE.map((r) => row([r.status, r.codes.map((c) => `\`${c}\``).join(', '), r.when]));
  return [ERRORS_BEGIN, '', '| status | code | when |', '|---|---|---|', ...rows, '', ERRORS_END].join('\n');
}

/** `readme` with the block between the markers replaced by `renderErrorTable()`. */
export function withErrorTable(readme: string): string {
  const a = readme.indexOf(ERRORS_BEGIN);
  const b = readme.indexOf(ERRORS_END);
  if (a < 0 || b < a) throw new Error('README.md lacks the error table markers');
  return readme.slice(0, a) + renderErrorTable() + readme.slice(b + ERRORS_END.length);
}
