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
const CORE_ONLY = (to) => to === null || partOf(to) === 'core';
/** the decide step of the authorize pipeline: pure (no store, no clock, no writes) */
const PURE_DECIDE = ['src/authorize/decide.ts', 'src/authorize/escalation.ts', 'src/authorize/result.ts'];
/** the services of the aggregates, below the edges */
const SERVICES = ['service', 'authorize', 'approvals', 'breakglass', 'tasks', 'identity'];
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
    name: 'policy is pure: it imports core only (no store, not even as a type)',
    from: (p) => p === 'policy',
    allow: (to) => CORE_ONLY(to) || partOf(to) === 'policy',
  },
  {
    name: 'tokens and audit import core (and the Store interface, as a type) only',
    from: (p) => p === 'tokens' || p === 'audit',
    allow: (to, _spec, typeOnly, fromPart) => CORE_ONLY(to) || partOf(to) === fromPart || (typeOnly && to === 'src/store/store.ts'),
  },
  {
    name: 'the authorize decide step is pure: core and policy only',
    from: (_p, file) => PURE_DECIDE.includes(file),
    allow: (to, _spec, typeOnly) => CORE_ONLY(to) || partOf(to) === 'policy' || PURE_DECIDE.includes(to) || (typeOnly && to === 'src/authorize/facts.ts'),
  },
  {
    name: 'store imports core only (and itself)',
    from: (p) => p === 'store',
    allow: (to) => CORE_ONLY(to) || partOf(to) === 'store',
  },
  {
    name: 'the store backends (store/sqlite, store/postgres) are opened through store/open-store.ts only',
    from: (p) => p !== 'store',
    allow: (to) => to === null || !/^src\/store\/(sqlite|postgres)\//.test(to),
  },
  {
    name: 'services never import the edges (server, gateway, cli) or the wiring (app)',
    from: (p) => SERVICES.includes(p),
    allow: (to) => to === null || !['server', 'gateway', 'cli', 'app'].includes(partOf(to)),
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

/** Arrows against the layout that are still here: `from -> to` with the reason (none today; keep it that way). */
export const EXCEPTIONS = new Map([]);

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
      if (!rule.from(fromPart, file) || rule.allow(imp.to, imp.spec, imp.typeOnly, fromPart)) continue;
      const key = `${file} -> ${imp.to ?? imp.spec}`;
      // one report per arrow: the first rule it breaks
      if (!out.some((v) => v.key === key)) out.push({ key, rule: rule.name });
    }
  }
  return out;
}

/**
 * The import cycles of a graph (file -> the files it imports, type imports included: a
 * loop of types is a loop in the design too), one per strongly connected component,
 * each as the path `a -> b -> … -> a`.
 */
export function cyclesOf(graph) {
  let next = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const components = [];
  const visit = (v) => {
    index.set(v, next);
    low.set(v, next);
    next += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) !== index.get(v)) return;
    const c = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      c.push(w);
    } while (w !== v);
    if (c.length > 1 || (graph.get(v) ?? []).includes(v)) components.push(new Set(c));
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  // one loop through each component, from its first file (breadth-first: the shortest)
  return components.map((c) => {
    const start = [...c].sort()[0];
    const prev = new Map([[start, null]]);
    const queue = [start];
    while (queue.length > 0) {
      const v = queue.shift();
      for (const w of graph.get(v) ?? []) {
        if (!c.has(w)) continue;
        if (w === start) {
          const path = [start];
          for (let u = v; u !== start; u = prev.get(u)) path.splice(1, 0, u);
          return [...path, start].join(' -> ');
        }
        if (!prev.has(w)) {
          prev.set(w, v);
          queue.push(w);
        }
      }
    }
    return [...c].join(' -> ');
  });
}

export function checkArchitecture() {
  const violations = [];
  const seenExceptions = new Set();
  const graph = new Map();
  for (const file of [...sources('src'), ...sources('packages/sdk/src')]) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    graph.set(file, importsOf(file, text).flatMap((i) => (i.to === null ? [] : [i.to])));
    for (const v of violationsOf(file, text)) {
      if (EXCEPTIONS.has(v.key)) seenExceptions.add(v.key);
      else violations.push(`${v.key}  (${v.rule})`);
    }
  }
  for (const cycle of cyclesOf(graph)) violations.push(`import cycle: ${cycle}  (no import cycles)`);
  const stale = [...EXCEPTIONS.keys()].filter((k) => !seenExceptions.has(k));
  return { violations, stale };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === normalize(process.argv[1])) {
  const { violations, stale } = checkArchitecture();
  for (const v of violations) console.error(`arrow not allowed: ${v}`);
  for (const s of stale) console.error(`exception no longer needed (remove it from scripts/check-arch.mjs): ${s}`);
  if (violations.length > 0 || stale.length > 0) process.exit(1);
  console.log(`check:arch: every import follows the layout, no import cycle (${EXCEPTIONS.size} listed exceptions)`);
}
