import { realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * How the benchmark runs: compiled (`npm run bench`, scripts/bench.mjs: a transpiled mirror
 * of src/ and bench/, as production runs dist/) or from the TypeScript sources through tsx
 * (`node --import tsx bench/run.ts`). The processes it starts run the same way.
 */
export const COMPILED = import.meta.url.endsWith('.js');

/** The checkout's root: the real one, also when running from the mirror (whose package.json is a link to it). */
export const REPO_ROOT = dirname(realpathSync(fileURLToPath(new URL('../../package.json', import.meta.url))));

/** The root the running code is in (the mirror when compiled): where the processes it starts are found. */
export const CODE_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** node's arguments before a script of this checkout: tsx's loader unless compiled. */
export const NODE_ARGS: string[] = COMPILED ? [] : ['--import', 'tsx'];

/** A script of this checkout by its source path (`bench/server-child.ts`), as this run starts it. */
export function script(sourcePath: string): string {
  return join(CODE_ROOT, COMPILED ? sourcePath.replace(/\.ts$/, '.js') : sourcePath);
}
