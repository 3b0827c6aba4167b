#!/usr/bin/env node
// `npm run check:arch`: the one-way arrows between the parts of the code (README "Layout"),
// read from the import statements (no dependency: a regular expression over the sources).
// An arrow that is not allowed fails, unless it is one of today's EXCEPTIONS below, each
// with its reason; an exception that no longer occurs fails too, so the list only shrinks.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BUILTINS = new Set(builtinModules);

/** Where a file sits: `core`, `policy`, …, `sdk-package` for packages/sdk. */
export function partOf(file) {
  if (file.startsWith('packages/sdk/')) return 'sdk-package';
  const m = /^src\/([^/]+)\//.exec(file);
  return m ? m[1] : null;
}

/**
 * The rules. `allow(to, spec)` says whether a file of this part may import `to` (a
 * repository path, for our own files) or `spec` (a package name).
 */
const PURE = ['policy', 'tokens', 'audit'];
export const RULES = [
  {
    name: 'core imports nothing of ours',
    from: (p) => p === 'core',
    allow: (to) => to === null || partOf(to) === 'core',
  },
  {
    name: 'packages/sdk imports only itself, jose, canonicalize and node builtins',
    from: (p) => p === 'sdk-package',
    allow: (to, spec) => (to === null ? ['jose', 'canonicalize'].includes(spec) || isBuiltin(spec) : to.startsWith('packages/sdk/')),
  },
  {
    name: 'policy, tokens and audit import core (and the Store interface, as a type) only',
    from: (p) => PURE.includes(p),
    allow: (to, _spec, typeOnly, fromPart) => to === null || partOf(to) === 'core' || partOf(to) === fromPart || (typeOnly && to === 'src/store/store.ts'),
  },
  {
    name: 'nothing imports app/ or cli/ except cli itself',
    from: (p) => p !== 'cli',
    allow: (to) => to === null || !['app', 'cli'].includes(partOf(to)),
  },
  {
    name: 'wire imports core only (and zod)',
    from: (p) => p === 'wire',
    allow: (to) => to === null || ['core', 'wire'].includes(partOf(to)),
  },
];

function isBuiltin(spec) {
  return spec.startsWith('node:') || BUILTINS.has(spec);
}

/** Today's arrows against the layout: `from -> to` with the reason each is still here. */
export const EXCEPTIONS = new Map([
  ['src/audit/evidence.ts -> src/store/store.ts', '`treeNodeKey` (a value, the Merkle node key) lives beside the Store interface; moving it to core/ removes this'],
  ['src/audit/merkle-log.ts -> src/store/store.ts', 'the same `treeNodeKey`'],
  ['src/policy/tool-labels.ts -> src/tasks/scope.ts', 'scope pattern matching (`matchPattern`) lives in tasks/; it is pure and moves to core/ with the pure policy step (issue 11 item 4)'],
  ['src/wire/requests.ts -> src/tasks/scope-forms.ts', 'the scope schema refines with the canonical-form check of tasks/; a pure check that belongs in core/'],
  ['src/wire/requests.ts -> src/tasks/scope-limits.ts', 'the scope schema refines with the bounds of tasks/ (400 `scope_too_large`); a pure check that belongs in core/'],
]);

function* sources(dir) {
  for (const name of readdirSync(join(ROOT, dir))) {
    const path = `${dir}/${name}`;
    if (name === 'node_modules' || name === 'dist') continue;
    if (statSync(join(ROOT, path)).isDirectory()) yield* sources(path);
    else if (/\.(ts|mts|js|mjs)$/.test(name) && !name.endsWith('.d.ts')) yield path;
  }
}

const IMPORT = /(?:^|\n)\s*(import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Every import of a file: `{ spec, to (repository path or null), typeOnly }`. */
export function importsOf(file, text) {
  const out = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[3] ?? m[4];
    const typeOnly = Boolean(m[2]) || (m[1] === 'import' && /^\s*import\s+type\s/.test(m[0].trimStart()));
    let to = null;
    if (spec.startsWith('.')) {
      to = normalize(join(dirname(file), spec)).split(sep).join('/').replace(/\.js$/, '.ts');
    }
    out.push({ spec, to, typeOnly });
  }
  return out;
}

/** The parts that may read the process's environment: the CLI edge and the settings it reads (issue 11 item 6). */
const ENV_READERS = ['cli', 'config'];
const ENV_READ = /\bprocess\s*(?:\.\s*env\b|\[\s*['"`]env['"`]\s*\])|\{\s*env\b[^}]*\}\s*=\s*process\b/;

/** The arrows of one file that break a rule: `{ key: 'from -> to', rule }`; a read of `process.env` is `from -> process.env`. */
export function violationsOf(file, text) {
  const out = [];
  const fromPart = partOf(file);
  if (fromPart !== null && !ENV_READERS.includes(fromPart) && ENV_READ.test(text.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, ''))) {
    out.push({ key: `${file} -> process.env`, rule: 'only cli/ and config/ read the environment (the others are passed their settings)' });
  }
  for (const imp of importsOf(file, text)) {
    for (const rule of RULES) {
      if (!rule.from(fromPart) || rule.allow(imp.to, imp.spec, imp.typeOnly, fromPart)) continue;
      out.push({ key: `${file} -> ${imp.to ?? imp.spec}`, rule: rule.name });
    }
  }
  return out;
}

export function checkArchitecture() {
  const violations = [];
  const seenExceptions = new Set();
  for (const file of [...sources('src'), ...sources('packages/sdk/src')]) {
    for (const v of violationsOf(file, readFileSync(join(ROOT, file), 'utf8'))) {
      if (EXCEPTIONS.has(v.key)) seenExceptions.add(v.key);
      else violations.push(`${v.key}  (${v.rule})`);
    }
  }
  const stale = [...EXCEPTIONS.keys()].filter((k) => !seenExceptions.has(k));
  return { violations, stale };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === normalize(process.argv[1])) {
  const { violations, stale } = checkArchitecture();
  for (const v of violations) console.error(`arrow not allowed: ${v}`);
  for (const s of stale) console.error(`exception no longer needed (remove it from scripts/check-arch.mjs): ${s}`);
  if (violations.length > 0 || stale.length > 0) process.exit(1);
  console.log(`check:arch: every import follows the layout (${EXCEPTIONS.size} listed exceptions)`);
}
