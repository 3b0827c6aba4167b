import { test } from 'node:test';
import assert from 'node:assert/strict';
// @ts-expect-error: a plain .mjs script without declarations
import { checkArchitecture, cyclesOf, EXCEPTIONS, importsOf, violationsOf } from '../scripts/check-arch.mjs';

type Violation = { key: string; rule: string };
const keys = (file: string, text: string) => (violationsOf(file, text) as Violation[]).map((v) => v.key);

test('the code follows the layout: no arrow outside the rules, no import cycle, no exception left (issue 11 item 8)', () => {
  const { violations, stale } = checkArchitecture() as { violations: string[]; stale: string[] };
  assert.deepEqual(violations, []);
  assert.deepEqual(stale, []);
  assert.equal((EXCEPTIONS as Map<string, string>).size, 0, 'the old shapes are gone: an exception needs a reason and a plan to remove it');
});

test('import cycles are found, type imports and self-imports included, each reported once as a loop', () => {
  const g = (edges: Record<string, string[]>) => new Map(Object.entries(edges));
  assert.deepEqual(cyclesOf(g({ a: ['b'], b: ['c'], c: [] })), []);
  assert.deepEqual(cyclesOf(g({ a: ['b'], b: ['a'] })), ['a -> b -> a']);
  assert.deepEqual(cyclesOf(g({ a: ['b'], b: ['c'], c: ['a', 'd'], d: [] })), ['a -> b -> c -> a']);
  assert.deepEqual(cyclesOf(g({ a: ['a'] })), ['a -> a']);
  // two separate loops, an import of a file outside the graph ignored
  assert.deepEqual(cyclesOf(g({ a: ['b', 'zod'], b: ['a'], x: ['y'], y: ['x'] })).sort(), ['a -> b -> a', 'x -> y -> x']);
  // the shortest loop through the component's first file
  assert.deepEqual(cyclesOf(g({ a: ['b', 'c'], b: ['c'], c: ['a'] })), ['a -> c -> a']);
  // read from the sources: a type-only import counts
  const types = (importsOf('src/policy/engine.ts', "import type { RequestFacts } from './request.js';") as { to: string }[]).map((i) => i.to);
  assert.deepEqual(types, ['src/policy/request.ts']);
});

test('imports are read in every form: multi-line, type-only, re-export, dynamic, side effect', () => {
  const text = [
    "import {\n  a,\n  b,\n} from '../policy/engine.js';",
    "import type { Store } from '../store/store.js';",
    "export { x } from './y.js';",
    "export * from '../tasks/scope.js';",
    "const m = await import('../cli/main.js');",
    "import '../server/http-server.js';",
    "import { z } from 'zod';",
  ].join('\n');
  const found = (importsOf('src/core/x.ts', text) as { spec: string; to: string | null; typeOnly: boolean }[]).map((i) => `${i.to ?? i.spec}${i.typeOnly ? ' (type)' : ''}`);
  assert.deepEqual(found.sort(), ['src/cli/main.ts', 'src/core/y.ts', 'src/policy/engine.ts', 'src/server/http-server.ts', 'src/store/store.ts (type)', 'src/tasks/scope.ts', 'zod'].sort());
});

test('each rule refuses the arrows it names, near variants included', () => {
  // core imports nothing of ours (a type import too; a package is fine)
  assert.deepEqual(keys('src/core/a.ts', "import type { X } from '../policy/engine.js';"), ['src/core/a.ts -> src/policy/engine.ts']);
  assert.deepEqual(keys('src/core/a.ts', "import { z } from 'zod';\nimport { b } from './b.js';"), []);
  // the SDK: only itself, jose, canonicalize, node builtins
  assert.deepEqual(keys('packages/sdk/src/a.ts', "import { z } from 'zod';"), ['packages/sdk/src/a.ts -> zod']);
  assert.deepEqual(keys('packages/sdk/src/a.ts', "import { x } from '../../../src/core/errors.js';"), ['packages/sdk/src/a.ts -> src/core/errors.ts']);
  assert.deepEqual(keys('packages/sdk/src/a.ts', "import { jwtVerify } from 'jose';\nimport c from 'canonicalize';\nimport { createHash } from 'node:crypto';\nimport { readFileSync } from 'fs';\nimport { b } from './b.js';"), []);
  assert.deepEqual(keys('packages/sdk/src/a.ts', "import x from 'jose-extra';"), ['packages/sdk/src/a.ts -> jose-extra']);
  // policy: core only, not even the Store interface (tool labels are the policy service's)
  assert.deepEqual(keys('src/policy/a.ts', "import type { Store } from '../store/store.js';"), ['src/policy/a.ts -> src/store/store.ts']);
  assert.deepEqual(keys('src/policy/a.ts', "import { matchPattern } from '../tasks/scope.js';"), ['src/policy/a.ts -> src/tasks/scope.ts']);
  assert.deepEqual(keys('src/policy/a.ts', "import { matchPattern } from '../core/scope.js';\nimport { b } from './b.js';"), []);
  // tokens/audit: core, themselves, and the Store interface as a type only
  assert.deepEqual(keys('src/audit/a.ts', "import type { Store } from '../store/store.js';"), []);
  assert.deepEqual(keys('src/audit/a.ts', "import { treeNodeKey } from '../store/store.js';"), ['src/audit/a.ts -> src/store/store.ts']);
  assert.deepEqual(keys('src/tokens/a.ts', "import type { Row } from '../store/sqlite/sqlite-store.js';"), ['src/tokens/a.ts -> src/store/sqlite/sqlite-store.ts']);
  assert.deepEqual(keys('src/audit/a.ts', "import { x } from '../policy/engine.js';"), ['src/audit/a.ts -> src/policy/engine.ts']);
  // nobody imports app/ or cli/ but cli itself (a dynamic import too)
  assert.deepEqual(keys('src/server/a.ts', "const m = await import('../cli/main.js');"), ['src/server/a.ts -> src/cli/main.ts']);
  assert.deepEqual(keys('src/gateway/a.ts', "import { wire } from '../app/wire.js';"), ['src/gateway/a.ts -> src/app/wire.ts']);
  assert.deepEqual(keys('src/cli/a.ts', "import { b } from './b.js';\nimport { w } from '../app/wire.js';"), []);
  // the environment is read at the CLI edge only (a comment naming it is not a read)
  assert.deepEqual(keys('src/gateway/a.ts', 'const v = (opts.env ?? process.env)[name];'), ['src/gateway/a.ts -> process.env']);
  assert.deepEqual(keys('src/store/a.ts', "const { env } = process;"), ['src/store/a.ts -> process.env']);
  assert.deepEqual(keys('src/service/a.ts', "const v = process['env'].X;"), ['src/service/a.ts -> process.env']);
  assert.deepEqual(keys('src/gateway/a.ts', '/** default process.env */\n// not process.env\nconst x = opts.env;'), []);
  assert.deepEqual(keys('src/cli/a.ts', 'const v = process.env.WRIT_URL;'), []);
  assert.deepEqual(keys('src/config/a.ts', 'const v = process.env.WRIT_URL;'), []);
  // the decide step of the authorize pipeline: core and policy only (the facts' shape as a type)
  assert.deepEqual(keys('src/authorize/decide.ts', "import { checkScope } from '../core/scope.js';\nimport { buildCedarRequest } from '../policy/request.js';\nimport type { Facts } from './facts.js';"), []);
  assert.deepEqual(keys('src/authorize/decide.ts', "import { gatherFacts } from './facts.js';"), ['src/authorize/decide.ts -> src/authorize/facts.ts']);
  assert.deepEqual(keys('src/authorize/escalation.ts', "import type { Store } from '../store/store.js';"), ['src/authorize/escalation.ts -> src/store/store.ts']);
  assert.deepEqual(keys('src/authorize/decide.ts', "import type { WritConfig } from '../service/config.js';"), ['src/authorize/decide.ts -> src/service/config.ts']);
  assert.deepEqual(keys('src/authorize/facts.ts', "import type { Store } from '../store/store.js';"), [], 'gathering the facts reads the store');
  // the store: core only; its backends only through store/open-store.ts
  assert.deepEqual(keys('src/store/sqlite/a.ts', "import { x } from '../../policy/engine.js';"), ['src/store/sqlite/a.ts -> src/policy/engine.ts']);
  assert.deepEqual(keys('src/store/open-store.ts', "import { SqliteStore } from './sqlite/sqlite-store.js';"), []);
  assert.deepEqual(keys('src/cli/a.ts', "import { SqliteStore } from '../store/sqlite/sqlite-store.js';"), ['src/cli/a.ts -> src/store/sqlite/sqlite-store.ts']);
  assert.deepEqual(keys('src/server/a.ts', "import type { PgDb } from '../store/postgres/db.js';"), ['src/server/a.ts -> src/store/postgres/db.ts']);
  // services never reach up to the edges or the wiring
  assert.deepEqual(keys('src/service/a.ts', "import { sendJson } from '../server/http-io.js';"), ['src/service/a.ts -> src/server/http-io.ts']);
  assert.deepEqual(keys('src/approvals/a.ts', "import type { Writ } from '../app/writ.js';"), ['src/approvals/a.ts -> src/app/writ.ts']);
  assert.deepEqual(keys('src/tasks/a.ts', "import type { McpGateway } from '../gateway/mcp-gateway.js';"), ['src/tasks/a.ts -> src/gateway/mcp-gateway.ts']);
  assert.deepEqual(keys('src/server/a.ts', "import type { Writ } from '../service/writ.js';"), []);
  // wire: core only
  assert.deepEqual(keys('src/wire/a.ts', "import type { Writ } from '../service/writ.js';"), ['src/wire/a.ts -> src/service/writ.ts']);
});
