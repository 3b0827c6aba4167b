import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { openTestStore, startInstance, type Instance, type OpenedStore } from './helpers/harness.js';
import { API_ROUTES, buildOpenApi } from '../src/wire/openapi.js';
import { authorizeSchema, authzenEvaluationSchema, authzenEvaluationsSchema, EVALUATIONS_MAX } from '../src/wire/index.js';

const committed = () => JSON.parse(readFileSync(new URL('../docs/openapi.json', import.meta.url), 'utf8')) as Record<string, unknown>;

/** `route('METHOD', '/path'` (or a template over `verdict`) in src/server/*.ts */
function registeredRoutes(): string[] {
  const dir = new URL('../src/server/', import.meta.url);
  const out: string[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
    const text = readFileSync(new URL(f, dir), 'utf8');
    for (const m of text.matchAll(/route\('(GET|POST|PUT|DELETE|PATCH)', ['`]([^'`]+)['`]/g)) {
      const path = m[2]!;
      if (path.includes('${verdict}')) for (const v of ['approve', 'deny']) out.push(`${m[1]} ${path.replace('${verdict}', v)}`);
      else out.push(`${m[1]} ${path}`);
    }
  }
  return out;
}

describe('OpenAPI document', () => {
  it('docs/openapi.json is what `npm run openapi` generates (regenerate it when this fails)', () => {
    assert.deepEqual(committed(), JSON.parse(JSON.stringify(buildOpenApi())));
  });

  it('documents every route the server registers, and no other', () => {
    const registered = new Set(registeredRoutes());
    assert.ok(registered.size > 50, 'routes were found');
    const documented = new Set(Object.keys(API_ROUTES));
    assert.deepEqual([...registered].filter((r) => !documented.has(r)), [], 'routes missing from src/wire/openapi.ts');
    assert.deepEqual([...documented].filter((r) => !registered.has(r)), [], 'documented routes the server does not have');
  });

  it('is OpenAPI 3.1 and carries the request schemas (unknown fields refused, bounds kept)', () => {
    const doc = buildOpenApi() as { openapi: string; paths: Record<string, Record<string, any>> };
    assert.equal(doc.openapi, '3.1.0');
    const body = doc.paths['/v1/authorize']!.post.requestBody.content['application/json'].schema;
    // `arguments` is required today (zod: a missing key fails the pipe's record)
    assert.deepEqual(body.required.sort(), ['arguments', 'audience', 'tool']);
    assert.equal(body.additionalProperties, false);
    assert.equal(body.properties.tool.maxLength, 256);
    const errs = doc.paths['/v1/authorize']!.post.responses.default.content['application/json'].schema;
    assert.equal(errs.$ref, '#/components/schemas/Error');
    // the schema in the document and the one the server parses with are the same object's
    assert.equal(authorizeSchema.safeParse({ tool: 'a', audience: 'b', extra: 1 }).success, false);
    const query = doc.paths['/v1/tasks']!.get.parameters as { name: string; in: string }[];
    assert.ok(query.some((p) => p.name === 'status' && p.in === 'query'));
  });

  it('carries the AuthZEN evaluation requests and decisions (src/wire/authzen.ts), unknown fields allowed as AuthZEN asks', () => {
    const doc = buildOpenApi() as { paths: Record<string, Record<string, any>> };
    const one = doc.paths['/access/v1/evaluation']!.post;
    const body = one.requestBody.content['application/json'].schema;
    assert.deepEqual(body.required.sort(), ['action', 'resource', 'subject']);
    assert.notEqual(body.additionalProperties, false, '§"JSON Serialization": unknown fields are ignored, not refused');
    assert.equal(body.properties.subject.properties.id.maxLength, 256);
    assert.deepEqual(one.responses['200'].content['application/json'].schema.required.sort(), ['context', 'decision']);
    const many = doc.paths['/access/v1/evaluations']!.post;
    const mbody = many.requestBody.content['application/json'].schema;
    assert.equal(mbody.properties.evaluations.maxItems, EVALUATIONS_MAX);
    assert.deepEqual(mbody.properties.options.properties.evaluations_semantic.enum, ['execute_all', 'deny_on_first_deny', 'permit_on_first_permit']);
    assert.equal(many.responses['200'].content['application/json'].schema.properties.evaluations.type, 'array');
    const meta = doc.paths['/.well-known/authzen-configuration']!.get.responses['200'].content['application/json'].schema;
    assert.ok(meta.required.includes('access_evaluations_endpoint'));
    // the server parses with the same schemas
    assert.equal(authzenEvaluationSchema.safeParse({ subject: { type: 'agent', id: 'a' }, action: { name: 'call' }, resource: { type: 'tool', id: 't' }, extra: 1 }).success, true);
    assert.equal(authzenEvaluationsSchema.safeParse({ evaluations: Array.from({ length: EVALUATIONS_MAX + 1 }, () => ({})) }).success, false);
  });
});

describe('GET /openapi.json', () => {
  let opened: OpenedStore;
  let inst: Instance;
  before(async () => {
    opened = await openTestStore('sqlite');
    inst = await startInstance(opened.store);
  });
  after(async () => {
    await inst?.close();
    await opened?.cleanup();
  });

  it('serves the committed document without credentials', async () => {
    const res = await fetch(`${inst.url}/openapi.json`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    assert.deepEqual(await res.json(), committed());
  });

  it('refuses other methods and near paths', async () => {
    assert.equal((await fetch(`${inst.url}/openapi.json`, { method: 'POST' })).status, 405);
    assert.equal((await fetch(`${inst.url}/openapi.json/`)).status, 404);
    assert.equal((await fetch(`${inst.url}/OPENAPI.json`)).status, 404);
  });
});
