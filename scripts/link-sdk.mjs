// Makes sure node_modules/@writ/sdk is the workspace package packages/sdk, as `npm ci` and
// `npm install` link it (package.json `workspaces`). A checkout whose node_modules was
// installed before the SDK became a workspace package lacks the link, and then neither the
// build nor the compiled server can resolve `@writ/sdk`: `npm run build` runs this first.
import { lstatSync, mkdirSync, readlinkSync, symlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const link = `${root}node_modules/@writ/sdk`;
const target = '../../packages/sdk';

let present = null;
try {
  present = lstatSync(link);
} catch {
  /* missing */
}
if (present === null) {
  mkdirSync(`${root}node_modules/@writ`, { recursive: true });
  symlinkSync(target, link, 'dir');
  console.error(`linked node_modules/@writ/sdk -> packages/sdk (an install from before the workspace; \`npm ci\` does this too)`);
} else if (!present.isSymbolicLink() || !readlinkSync(link).replace(/\/+$/, '').endsWith('packages/sdk')) {
  console.error('node_modules/@writ/sdk is not the workspace package packages/sdk: run `npm ci`');
  process.exit(1);
}
