/**
 * The public surface of @writ/sdk, pinned: adding, renaming or removing an export fails
 * here, so that a change to what users import is a deliberate one (update the lists and
 * packages/sdk/README.md together).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import * as sdk from '@writ/sdk';

const VALUES = [
  'ACTION_TOKEN_HEADER',
  'ACTION_TOKEN_TYPE',
  'ActionRefusedError',
  'ActionTokenError',
  'argumentsDigest',
  'canonicalPath',
  'CLIENT_ASSERTION_TYPE',
  'consumeActionToken',
  'createActionGuard',
  'createActionVerifier',
  'createHttpActionGuard',
  'DpopKey',
  'DpopNonces',
  'dpopProof',
  'encodePath',
  'httpActionArguments',
  'InvalidPathError',
  'InvalidQueryError',
  'isJsonContentType',
  'MCP_ACTION_TOKEN_META',
  'parseQuery',
  'queryObject',
  'sendWithDpop',
  'withActionToken',
  'WritAgentClient',
  'WritApiError',
  'WritClient',
  'writHttpMiddleware',
];

const TYPES = [
  'ActionClaims',
  'ActionGuardOptions',
  'ActionInput',
  'ActionTokenErrorCode',
  'ActionVerifierOptions',
  'AgentClientOptions',
  'AgentKeyInput',
  'ApiCall',
  'ApiResponse',
  'ApprovalResponse',
  'AuthorizeResponse',
  'DpopAlgorithm',
  'DpopProofInput',
  'DpopResponse',
  'GuardedRequest',
  'HttpActionArguments',
  'HttpGuardOptions',
  'McpHandlerExtra',
  'QueryObject',
  'QueryValue',
  'WritClientOptions',
];

const sorted = (xs: string[]) => [...xs].sort((a, b) => a.localeCompare(b));

describe('@writ/sdk exports', () => {
  it('exports exactly the pinned values', () => {
    assert.deepEqual(sorted(Object.keys(sdk)), sorted(VALUES));
  });

  it('exports exactly the pinned types (type-only names of its index)', () => {
    // type-only exports leave no trace at run time: read them from the index itself
    const text = readFileSync(new URL('../packages/sdk/src/index.ts', import.meta.url), 'utf8');
    const types = [...text.matchAll(/\btype\s+([A-Za-z0-9_]+)/g)].map((m) => m[1]!);
    assert.deepEqual(sorted(types), sorted(TYPES));
    assert.doesNotMatch(text, /export\s+\*/, 'a wildcard re-export would widen the surface unseen');
  });

  it('depends on jose and canonicalize only: its package.json and every import of its source', () => {
    const pkg = JSON.parse(readFileSync(new URL('../packages/sdk/package.json', import.meta.url), 'utf8'));
    assert.deepEqual(Object.keys(pkg.dependencies ?? {}).sort(), ['canonicalize', 'jose']);
    assert.equal(pkg.peerDependencies, undefined);
    assert.equal(pkg.optionalDependencies, undefined);
    const dir = new URL('../packages/sdk/src/', import.meta.url);
    const outside: string[] = [];
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      const text = readFileSync(new URL(f, dir), 'utf8');
      // static imports and re-exports, side-effect imports, and dynamic import()
      for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
        const spec = (m[1] ?? m[2] ?? m[3])!;
        if (spec.startsWith('./') || spec.startsWith('node:') || spec === 'jose' || spec === 'canonicalize') continue;
        outside.push(`${f}: ${spec}`);
      }
    }
    assert.deepEqual(outside, [], 'imports of anything but its own files, node builtins, jose and canonicalize');
  });
});
