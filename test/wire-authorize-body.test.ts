import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidRequestError } from '../src/core/errors.js';
import { authorizeSchema, parse, parseAuthorizeBody, plainAuthorizeBody } from '../src/wire/index.js';

/**
 * `parseAuthorizeBody` checks the common shape of an authorize body by hand before the
 * zod schema (src/wire/authorize-body.ts). Held here to the schema: whatever the plain
 * check accepts the schema accepts with the same value (same keys in the same order), and
 * every near variant of a good body that the schema refuses is refused with the
 * schema's own error code and message.
 */
const good = {
  tool: 'github.create_issue',
  arguments: { repo: 'acme/api', title: 'Weekly #1', labels: ['report', 'billing'], priority: 2, nested: { a: [1, { b: null }], t: true } },
  audience: 'https://tools.example/github',
  resource: 'repo:acme/api',
  destination: 'api.github.com',
};

function nest(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = { k: v };
  return v;
}

/** Bodies as they arrive (JSON text), good and near variants of good ones. */
const bodies: Record<string, string> = {
  good: JSON.stringify(good),
  'good, reordered': JSON.stringify({ destination: good.destination, audience: good.audience, arguments: good.arguments, resource: good.resource, tool: good.tool }),
  'no resource, no destination': JSON.stringify({ tool: 't', arguments: {}, audience: 'a' }),
  'resource only': JSON.stringify({ tool: 't', arguments: {}, audience: 'a', resource: 'r:x' }),
  'destination kind:name': JSON.stringify({ tool: 't', arguments: {}, audience: 'a', destination: 'stdio:local' }),
  'destination with port': JSON.stringify({ ...good, destination: 'api.github.com:8443' }),
  'destination ipv6': JSON.stringify({ ...good, destination: '[::1]:443' }),
  'tool 256': JSON.stringify({ ...good, tool: 'x'.repeat(256) }),
  'audience 1024': JSON.stringify({ ...good, audience: 'a'.repeat(1024) }),
  'nesting 63': JSON.stringify({ ...good, arguments: nest(63) }),
  'unicode argument': JSON.stringify({ ...good, arguments: { t: 'ünïcødé ☃', e: '' } }),
  // refused ones, each near a good body
  'not an object': '[1]',
  null: 'null',
  string: '"x"',
  'unknown field': JSON.stringify({ ...good, extra: 1 }),
  '__proto__ field': '{"tool":"t","arguments":{},"audience":"a","__proto__":{"x":1}}',
  'no tool': JSON.stringify({ arguments: {}, audience: 'a' }),
  'empty tool': JSON.stringify({ ...good, tool: '' }),
  'tool 257': JSON.stringify({ ...good, tool: 'x'.repeat(257) }),
  'tool with space': JSON.stringify({ ...good, tool: 'github create' }),
  'tool not a string': JSON.stringify({ ...good, tool: 7 }),
  'no audience': JSON.stringify({ tool: 't', arguments: {} }),
  'empty audience': JSON.stringify({ ...good, audience: '' }),
  'audience 1025': JSON.stringify({ ...good, audience: 'a'.repeat(1025) }),
  'audience null': JSON.stringify({ ...good, audience: null }),
  'no arguments': JSON.stringify({ tool: 't', audience: 'a' }),
  'arguments null': JSON.stringify({ ...good, arguments: null }),
  'arguments array': JSON.stringify({ ...good, arguments: [1, 2] }),
  'arguments string': JSON.stringify({ ...good, arguments: 's' }),
  'reserved key top': '{"tool":"t","audience":"a","arguments":{"__proto__":{"admin":true}}}',
  'reserved key deep': JSON.stringify({ ...good, arguments: { a: [{ b: { constructor: 1 } }] } }),
  'reserved key prototype': JSON.stringify({ ...good, arguments: { a: { prototype: 1 } } }),
  'infinite number': '{"tool":"t","audience":"a","arguments":{"n":1e400}}',
  'infinite number deep': '{"tool":"t","audience":"a","arguments":{"n":[{"m":-1e999}]}}',
  'nesting 64': JSON.stringify({ ...good, arguments: nest(64) }),
  'nesting 200': JSON.stringify({ ...good, arguments: nest(200) }),
  'resource with ..': JSON.stringify({ ...good, resource: 'repo:acme/../other' }),
  'resource encoded': JSON.stringify({ ...good, resource: 'repo:acme%2f..' }),
  'resource empty': JSON.stringify({ ...good, resource: '' }),
  'resource null': JSON.stringify({ ...good, resource: null }),
  'resource number': JSON.stringify({ ...good, resource: 5 }),
  'destination uppercase': JSON.stringify({ ...good, destination: 'API.github.com' }),
  'destination userinfo': JSON.stringify({ ...good, destination: 'evil@api.github.com' }),
  'destination path': JSON.stringify({ ...good, destination: 'evil.example/.github.com' }),
  'destination ipv4 short': JSON.stringify({ ...good, destination: '127.1' }),
  'destination unicode': JSON.stringify({ ...good, destination: 'bücher.de' }),
  'destination port 0': JSON.stringify({ ...good, destination: 'api.github.com:0' }),
  'destination null': JSON.stringify({ ...good, destination: null }),
};

function schemaAnswer(input: unknown): { value: unknown } | { code: string; message: string } {
  try {
    return { value: parse(authorizeSchema, input) };
  } catch (err) {
    assert.ok(err instanceof InvalidRequestError, String(err));
    return { code: err.code, message: err.message };
  }
}

function fastAnswer(input: unknown): { value: unknown } | { code: string; message: string } {
  try {
    return { value: parseAuthorizeBody(input) };
  } catch (err) {
    assert.ok(err instanceof InvalidRequestError, String(err));
    return { code: err.code, message: err.message };
  }
}

describe('parseAuthorizeBody: the plain check answers as the schema does', () => {
  for (const [name, text] of Object.entries(bodies)) {
    it(name, () => {
      // twice: the second time through the remembered resource and destination checks
      for (let round = 0; round < 2; round++) {
        const expected = schemaAnswer(JSON.parse(text));
        const plain = plainAuthorizeBody(JSON.parse(text));
        if (plain !== undefined) {
          assert.ok('value' in expected, `the plain check accepted what the schema refuses: ${JSON.stringify(expected)}`);
          // same value, same key order
          assert.equal(JSON.stringify(plain), JSON.stringify(expected.value));
          assert.deepEqual(plain, expected.value);
        }
        assert.deepEqual(fastAnswer(JSON.parse(text)), expected);
      }
    });
  }

  it('the good shapes take the plain path (none of them falls through to the schema)', () => {
    for (const name of ['good', 'good, reordered', 'no resource, no destination', 'resource only', 'destination kind:name', 'destination with port', 'tool 256', 'audience 1024', 'nesting 63', 'unicode argument']) {
      assert.ok(plainAuthorizeBody(JSON.parse(bodies[name]!)) !== undefined, name);
    }
  });

  it('a refused resource or destination stays refused when asked again, and a good one next to it stays good', () => {
    for (let i = 0; i < 3; i++) {
      assert.throws(() => parseAuthorizeBody({ ...good, destination: 'API.github.com' }), (e: unknown) => e instanceof InvalidRequestError && e.code === 'invalid_destination');
      assert.throws(() => parseAuthorizeBody({ ...good, resource: 'repo:acme/..' }), (e: unknown) => e instanceof InvalidRequestError && e.code === 'invalid_resource');
      assert.equal(parseAuthorizeBody({ ...good }).destination, 'api.github.com');
    }
  });

  it('an object that is not plain (a class instance, a null prototype) goes to the schema', () => {
    const nullProto = Object.assign(Object.create(null) as object, good);
    assert.equal(plainAuthorizeBody(nullProto), undefined);
    assert.equal(plainAuthorizeBody({ ...good, arguments: new Map() }), undefined);
    assert.equal(plainAuthorizeBody({ ...good, arguments: Object.assign(Object.create(null) as object, { a: 1 }) }), undefined);
  });
});
