import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_CODES, isErrorCode } from '../src/wire/index.js';

/** Every `| status | code | when |` table of the README, read as a set of codes. */
function readmeErrorCodes(readme: string): Set<string> {
  const codes = new Set<string>();
  const lines = readme.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^\| status \| code \|/.test(lines[i]!)) continue;
    for (let j = i + 2; j < lines.length && lines[j]!.startsWith('|'); j++) {
      const cell = lines[j]!.split('|')[2] ?? '';
      for (const m of cell.matchAll(/`([a-z_]+)`/g)) codes.add(m[1]!);
    }
  }
  return codes;
}

test('the README error tables list exactly the exported error codes', () => {
  const table = readmeErrorCodes(readFileSync(new URL('../README.md', import.meta.url), 'utf8'));
  assert.ok(table.size > 40, 'the README error tables were found');
  const list = new Set<string>(ERROR_CODES);
  assert.deepEqual([...list].filter((c) => !table.has(c)), [], 'codes missing from the README tables');
  assert.deepEqual([...table].filter((c) => !list.has(c)), [], 'README codes missing from ERROR_CODES');
  assert.equal(list.size, ERROR_CODES.length, 'no code is listed twice');
});

test('isErrorCode accepts listed codes only', () => {
  assert.equal(isErrorCode('invalid_request'), true);
  assert.equal(isErrorCode('Invalid_Request'), false);
  assert.equal(isErrorCode('invalid_request '), false);
  assert.equal(isErrorCode(['invalid_request']), false);
  assert.equal(isErrorCode('toString'), false);
  assert.equal(isErrorCode(undefined), false);
});
