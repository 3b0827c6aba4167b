// Writes the README's "API errors" table from ERROR_TABLE (src/core/error-codes.ts).
import { readFileSync, writeFileSync } from 'node:fs';
import { withErrorTable } from '../src/wire/error-table.js';

const path = new URL('../README.md', import.meta.url);
writeFileSync(path, withErrorTable(readFileSync(path, 'utf8')));
console.log('wrote the error table in README.md');
