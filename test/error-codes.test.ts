import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_CODES, isErrorCode } from '../src/wire/index.js';
import { ERROR_TABLE } from '../src/core/error-codes.js';
import { renderErrorTable, undocumentedErrorCodes, withErrorTable } from '../src/wire/error-table.js';

test('the README error table is what `npm run docs:errors` generates from ERROR_TABLE (regenerate it when this fails)', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  assert.equal(readme, withErrorTable(readme));
  assert.ok(readme.includes(renderErrorTable()));
});

test('every exported error code has a row in ERROR_TABLE, and no code is listed twice', () => {
  assert.deepEqual(undocumentedErrorCodes(), []);
  assert.equal(new Set<string>(ERROR_CODES).size, ERROR_CODES.length);
  // rows name only listed codes (typed, and checked at run time too)
  for (const r of ERROR_TABLE) for (const c of r.codes) assert.ok(isErrorCode(c), c);
  assert.ok(ERROR_TABLE.every((r) => /^\d{3}(, \d{3})*$/.test(r.status)), 'statuses are HTTP status codes');
  assert.ok(ERROR_TABLE.every((r) => !r.when.includes('|') && !r.when.includes('\n')), 'cells stay on one table row');
});

test('the generator refuses a table that leaves a code out, and a README without the markers', () => {
  assert.throws(() => withErrorTable('# no markers here\n'), /markers/);
  const rows = ERROR_TABLE as unknown as { codes: readonly string[] }[];
  const saved = rows[0]!.codes;
  try {
    rows[0]!.codes = [];
    assert.throws(() => renderErrorTable(), /no row for invalid_request/);
  } finally {
    rows[0]!.codes = saved;
  }
});

test('isErrorCode accepts listed codes only', () => {
  assert.equal(isErrorCode('invalid_request'), true);
  assert.equal(isErrorCode('Invalid_Request'), false);
  assert.equal(isErrorCode('invalid_request '), false);
  assert.equal(isErrorCode(['invalid_request']), false);
  assert.equal(isErrorCode('toString'), false);
  assert.equal(isErrorCode(undefined), false);
});
