import type { ChildProcess } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnChild, type Child } from './child.js';

/**
 * The checkout this test runs from (where `bin/writ.js` and node_modules are). `npm test` runs
 * the tests compiled into a mirror of the checkout whose package.json is a symlink to the real
 * one (scripts/build-tests.mjs): its real path names the checkout either way.
 */
export const REPO = dirname(realpathSync(join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'package.json')));

export interface Spawned {
  child: ChildProcess;
  /** everything the process wrote so far */
  stdout: () => string;
  stderr: () => string;
  /** resolves with the exit code (or the signal's name) once the process has exited */
  exited: Promise<number | string>;
  /** SIGTERM to the whole process group (SIGKILL after `graceMs`); resolves once it exited */
  kill: (graceMs?: number) => Promise<void>;
}

function spawned(c: Child): Spawned {
  return {
    child: c.proc,
    stdout: c.stdout,
    stderr: c.stderr,
    exited: c.exited.then((s) => s.code ?? s.signal ?? -1),
    kill: (graceMs) => c.stop({ graceMs }),
  };
}

/**
 * Spawns a command in a process group of its own, so that it and every child it starts
 * (a shell's background server, tsx's node) can be killed together (see child.ts).
 */
export function spawnGroup(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Spawned {
  return spawned(spawnChild(command, args, { cwd: options.cwd ?? REPO, env: options.env }));
}

/** `writ serve` on port 0 with these arguments; resolves once it listens, with its URL. */
export async function startServe(args: string[], env: NodeJS.ProcessEnv): Promise<Spawned & { url: string }> {
  const c = spawnChild(process.execPath, ['bin/writ.js', 'serve', '--port', '0', ...args], { cwd: REPO, env });
  try {
    const line = await c.waitForLine(/writ listening on http:\/\//, { stream: 'stdout' });
    return { ...spawned(c), url: /writ listening on (http:\/\/\S+)/.exec(line)![1]! };
  } catch (err) {
    await c.stop();
    throw err;
  }
}
