#!/usr/bin/env node
// Compiles src/ and test/ for `npm test` into .test-build/, so that each test file runs on
// plain node instead of through the tsx loader: the loader costs about 0.45 s of start-up and
// module loading per test process (about 100 of them per run, on two cores).
//
// .test-build/ mirrors the repository at the same depth, so that every path a test or the
// code under test takes from `import.meta.url` (`new URL('..', import.meta.url)`, fixtures,
// `../../dist/console/`, `../../package.json`) points where it did:
// - src/**/*.ts and test/**/*.ts are transpiled one file to one file by esbuild, as tsx does
//   (type stripping only, no bundling; the specifiers stay `./x.js`);
// - every other file of src/ and test/ (and the .ts sources, which children may run with tsx)
//   is a symlink to the original;
// - every other top-level entry (dist, bin, package.json, README.md, bench, ...) is a symlink.
// Packages resolve from the repository's node_modules (the parent directory); `@writ/sdk`
// resolves to its built package (packages/sdk/dist) instead of its source, as it does for users.
//
// Usage: node scripts/build-tests.mjs  → prints the output directory
import { build } from 'esbuild';
import { mkdirSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const isBuildDir = (name) => name === '.test-build' || name.startsWith('.test-build-') || name.startsWith('.bench-build-');

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

function link(target, at) {
  mkdirSync(dirname(at), { recursive: true });
  symlinkSync(target, at);
}

/**
 * Builds the mirror at `<repo>/<name>` (a name of the form `.test-build`, `.test-build-*` or
 * `.bench-build-*`, so that concurrent runs, such as the runner's own tests, each get their
 * own), compiling the top-level directories `compiled` (the benchmarks: src and bench).
 */
export async function buildTests(name = '.test-build', compiled = ['src', 'test']) {
  const COMPILED = compiled;
  if (!isBuildDir(name)) throw new TypeError(`not a test build directory name: \`${name}\``);
  const OUT = join(ROOT, name);
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT);
  for (const top of readdirSync(ROOT)) if (top !== '.git' && top !== 'node_modules' && !isBuildDir(top) && !COMPILED.includes(top)) link(join(ROOT, top), join(OUT, top));
  const sources = [];
  for (const top of COMPILED) {
    for (const file of walk(join(ROOT, top))) {
      const rel = relative(ROOT, file);
      link(file, join(OUT, rel)); // the original too: fixtures and .ts sources run by children
      if (file.endsWith('.ts') && !file.endsWith('.d.ts')) sources.push(rel);
    }
  }
  await build({
    absWorkingDir: ROOT,
    entryPoints: sources,
    outdir: OUT,
    outbase: '.',
    bundle: false,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // line numbers in a failure's stack point into the original .ts (node --enable-source-maps)
    sourcemap: 'inline',
    logLevel: 'warning',
  });
  return OUT;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const t = performance.now();
  const out = await buildTests(process.argv[2]);
  console.log(`${relative(process.cwd(), out)} (${Math.round(performance.now() - t)} ms)`);
}
