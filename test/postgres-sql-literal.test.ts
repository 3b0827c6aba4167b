// The decision commit writes its values into statement text (src/store/postgres/sql-literal.ts)
// so that several statements travel in one message. A literal that PostgreSQL reads as
// anything but the value would be SQL injection: this checks, for any text, that PostgreSQL
// reads each literal back as exactly the value, under both settings of
// `standard_conforming_strings` (which changes what a backslash means in '…').
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { sqlArray, sqlInteger, sqlString, sqlValue } from '../src/store/postgres/sql-literal.js';
import { withDefaultUser } from '../src/store/postgres/postgres-store.js';

const skipReason = process.env.WRIT_SKIP_POSTGRES;
const url = withDefaultUser(process.env.WRIT_TEST_DATABASE_URL ?? 'postgres://127.0.0.1:5432/test');

/** Text PostgreSQL can hold: no NUL, and no lone surrogate (not encodable as UTF-8). */
const storable = (s: string) => !s.includes('\0') && !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

// strings made mostly of the characters that matter to a literal's syntax, and any code point
const tricky = fc.string({
  unit: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom("'", '\\', '"', ';', '-', '/', '*', '$', 'E', 'e', 'U', '&', '\n', '\r', '\t', ' ', '0', 'x') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  ),
  maxLength: 40,
}).filter(storable);

describe('PostgreSQL literals for the one-message commit', { skip: skipReason ? `PostgreSQL unreachable: ${skipReason}` : false }, () => {
  let client: pg.Client;
  before(async () => {
    client = new pg.Client({ connectionString: url });
    await client.connect();
  });
  after(async () => {
    await client?.end();
  });

  for (const conforming of ['on', 'off']) {
    it(`reads back any text as itself (standard_conforming_strings = ${conforming})`, async () => {
      await client.query(`SET standard_conforming_strings = ${conforming}`);
      await client.query('SET escape_string_warning = off');
      await fc.assert(
        fc.asyncProperty(fc.array(tricky, { minLength: 1, maxLength: 4 }), async (values) => {
          // simple-query protocol (no parameters), as the commit sends it: two statements in one message
          const text = `SELECT ${values.map((v, i) => `${sqlString(v)} AS v${i}`).join(', ')}; SELECT ${sqlArray(values, 'text')} AS a`;
          const [row, arr] = (await client.query(text)) as unknown as pg.QueryResult[];
          assert.deepEqual(Object.values(row!.rows[0]), values);
          assert.deepEqual(arr!.rows[0].a, values);
        }),
        { numRuns: 300 },
      );
    });
  }

  it('reads back any array of text and NULLs, and of integers, as itself', async () => {
    await client.query('SET standard_conforming_strings = on');
    // the characters of an array literal's own syntax too (sqlArray writes '{…}'::text[])
    const element = fc.oneof(
      { weight: 4, arbitrary: tricky },
      { weight: 1, arbitrary: fc.constantFrom('{', '}', ',', '"', '""', '\\"', 'NULL', 'null', ' NULL ', ' ', '', '{a,b}', 'a"b', '\\\\') },
      { weight: 1, arbitrary: fc.constant(null) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(element, { maxLength: 6 }), fc.array(fc.option(fc.maxSafeInteger(), { nil: null }), { maxLength: 4 }), async (texts, ints) => {
        const r = await client.query(`SELECT ${sqlArray(texts, 'text')} AS t, ${sqlArray(ints, 'bigint')}::text AS b`);
        assert.deepEqual(r.rows[0].t, texts);
        assert.equal(r.rows[0].b, `{${ints.map((n) => (n === null ? 'NULL' : String(n))).join(',')}}`);
      }),
      { numRuns: 300 },
    );
    for (const texts of [['NULL'], [null], [''], ['{', '}'], ['a,b'], ['"'], ['\\'], [' x '], ["'); DROP TABLE decisions; --"]]) {
      const r = await client.query(`SELECT ${sqlArray(texts, 'text')} AS t`);
      assert.deepEqual(r.rows[0].t, texts);
    }
  });

  it('writes named near variants verbatim', async () => {
    await client.query('SET standard_conforming_strings = on');
    for (const v of ["'", "''", "\\'", "\\\\'", "'); DROP TABLE decisions; --", "E'\\x41'", 'U&"\\0041"', '$$', '$tag$', '\\', 'ünïcødé 🙂', '']) {
      const r = await client.query(`SELECT ${sqlString(v)} AS v`);
      assert.equal(r.rows[0].v, v);
    }
  });

  it('refuses what it cannot write as a literal', () => {
    assert.throws(() => sqlString('a\0b'), (e: { code?: string }) => e.code === '22021');
    for (const n of [1.5, Number.NaN, Infinity, 2 ** 53, -(2 ** 53)]) assert.throws(() => sqlInteger(n), TypeError);
    assert.equal(sqlValue(null), 'NULL');
    assert.equal(sqlValue(undefined), 'NULL');
    assert.equal(sqlValue(-42), '-42');
    assert.equal(sqlArray([], 'bigint'), "E'{}'::bigint[]");
    assert.throws(() => sqlArray(['a\0b'], 'text'), (e: { code?: string }) => e.code === '22021');
    assert.throws(() => sqlArray([1.5], 'bigint'), TypeError);
  });
});
