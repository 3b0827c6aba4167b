#!/usr/bin/env node
// `npm run build` (and the browser tests): bundles the operator console (console/, Preact +
// htm) into dist/console/ with esbuild: one script, one stylesheet and the page, nothing
// fetched at run time (no CDN). The server serves them at /console (src/server/console-assets.ts).
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'dist', 'console');

export async function buildConsole() {
  mkdirSync(OUT, { recursive: true });
  await build({
    entryPoints: [join(ROOT, 'console', 'src', 'app.ts')],
    outfile: join(OUT, 'app.js'),
    bundle: true,
    format: 'esm',
    target: ['es2020'],
    minify: true,
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
  });
  copyFileSync(join(ROOT, 'console', 'index.html'), join(OUT, 'index.html'));
  copyFileSync(join(ROOT, 'console', 'app.css'), join(OUT, 'app.css'));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildConsole();
