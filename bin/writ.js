#!/usr/bin/env node
// The `writ` command: the compiled CLI in dist/ (built by `npm run build`, which `npm ci`,
// `npm start` and `npm test` run). Inside a checkout whose dist/ is missing or older than
// src/ (or than the SDK's source, packages/sdk/src), it runs the TypeScript source through
// tsx (a dev dependency) instead, so that a stale build never answers for the code in front
// of you; tsx then reads tsconfig.json, whose `paths` map @writ/sdk to the SDK's source.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const built = `${root}dist/cli/main.js`;

function newestMtime(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    const t = e.isDirectory() ? newestMtime(p) : e.name.endsWith('.ts') ? statSync(p).mtimeMs : 0;
    if (t > newest) newest = t;
  }
  return newest;
}

function stale() {
  if (!existsSync(`${root}src`)) return false; // an installed package ships dist only
  if (!existsSync(built)) return true;
  const info = `${root}dist/.built`; // touched by `npm run build` after tsc
  if (!existsSync(info)) return true;
  const sdk = `${root}packages/sdk/src`;
  const newest = Math.max(newestMtime(`${root}src`), existsSync(sdk) ? newestMtime(sdk) : 0);
  return newest > statSync(info).mtimeMs;
}

if (stale()) {
  const { register } = await import('tsx/esm/api');
  register({ tsconfig: `${root}tsconfig.json` });
  await import('../src/cli/main.ts');
} else {
  await import(built);
}
