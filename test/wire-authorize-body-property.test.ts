import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { InvalidRequestError } from '../src/core/errors.js';
import { authorizeSchema, parse, parseAuthorizeBody, plainAuthorizeBody } from '../src/wire/index.js';

/**
 * The hand check of an authorize body (src/wire/authorize-body.ts) against the zod schema
 * it stands in front of, on random bodies near the accepted shape, sent as JSON text
 * (so `__proto__` arrives as an own key, as from the wire): whatever the plain check
 * accepts the schema accepts with the same value, and `parseAuthorizeBody` answers the
 * same value or the same typed error as the schema alone. The named near variants are in
 * test/wire-authorize-body.test.ts.
 */

type Answer = { value: string } | { code: string; message: string };

function answer(f: () => unknown): Answer {
  try {
    return { value: JSON.stringify(f()) };
  } catch (err) {
    assert.ok(err instanceof InvalidRequestError, `not a typed error: ${String(err)}`);
    return { code: err.code, message: err.message };
  }
}

/** A JSON object's text from key/value pairs, keeping duplicate and reserved keys as the wire would carry them. */
function objectText(pairs: [string, string][]): string {
  return `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;
}

const key = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'a', 'b', ''), fc.string({ maxLength: 6 }));
const leaf = fc.oneof(fc.constantFrom('1e400', '-1e999', '0', '-0', '1.5', 'null', 'true', '""'), fc.jsonValue({ maxDepth: 1 }).map((v) => JSON.stringify(v)));
const value: fc.Arbitrary<string> = fc.letrec<{ v: string }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('v'), { maxLength: 3 }).map((xs) => `[${xs.join(',')}]`),
    fc.array(fc.tuple(key, tie('v')), { maxLength: 3 }).map(objectText),
  ),
})).v;

const str = (xs: string[]) => fc.oneof(fc.constantFrom(...xs), fc.string({ maxLength: 12 })).map((s) => JSON.stringify(s));
/** mostly a good value (so that whole bodies often take the plain path), else a near or odd one */
const mostly = (good: string, other: fc.Arbitrary<string>) => fc.oneof({ arbitrary: fc.constant(JSON.stringify(good)), weight: 3 }, { arbitrary: other, weight: 1 });
const field = {
  tool: fc.oneof(str(['github.create_issue', 't', 'a b', '', 'x'.repeat(256), 'x'.repeat(257), 'ns:tool/x-1']), leaf),
  arguments: fc.oneof(value, fc.array(fc.tuple(key, value), { maxLength: 4 }).map(objectText)),
  audience: fc.oneof(str(['https://tools.example/github', 'a', '', 'a'.repeat(1024), 'a'.repeat(1025)]), leaf),
  resource: fc.oneof(str(['repo:acme/api', 'repo:acme/../x', 'repo:acme%2f..', 'r:x', '', 'repo:a/./b', 'repo:a;b']), leaf),
  destination: fc.oneof(str(['api.github.com', 'API.github.com', 'a@b.com', '127.1', 'api.github.com:0', 'stdio:local', '[::1]:443', 'bücher.de', 'x.example/.y']), leaf),
  extra: leaf,
};

const body = fc
  .record(
    {
      tool: mostly('github.create_issue', field.tool),
      arguments: fc.oneof({ arbitrary: fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), value), { maxLength: 3 }).map(objectText), weight: 3 }, { arbitrary: field.arguments, weight: 1 }),
      audience: mostly('https://tools.example/github', field.audience),
      resource: mostly('repo:acme/api', field.resource),
      destination: mostly('api.github.com', field.destination),
      extra: field.extra,
    },
    { requiredKeys: [] },
  )
  .chain((r) => fc.shuffledSubarray(Object.entries(r), { minLength: Object.keys(r).length }))
  .map((pairs) => objectText(pairs.map(([k, v]) => [k === 'extra' ? '__proto__' : k, v])));
// `extra` (sent as `__proto__`, which the schema must refuse as an unknown key) is in about half the bodies

describe('parseAuthorizeBody against the schema on random near-valid bodies', () => {
  it('the plain check never accepts what the schema refuses, and answers the same value or error', () => {
    let plainTaken = 0;
    fc.assert(
      fc.property(body, (text) => {
        const expected = answer(() => parse(authorizeSchema, JSON.parse(text)));
        const plain = plainAuthorizeBody(JSON.parse(text));
        if (plain !== undefined) {
          plainTaken += 1;
          assert.ok('value' in expected, `the plain check accepted ${text}, which the schema refuses: ${JSON.stringify(expected)}`);
          assert.equal(JSON.stringify(plain), expected.value);
        }
        assert.deepEqual(answer(() => parseAuthorizeBody(JSON.parse(text))), expected);
      }),
      { numRuns: 5000 },
    );
    // the generator reaches the plain path too, or this test would check nothing of it
    assert.ok(plainTaken > 50, `only ${plainTaken} bodies took the plain path`);
  });
});
