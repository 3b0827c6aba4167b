import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout this test runs from (where `bin/writ.js` is). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Process groups still running: killed when this process exits, whatever way it ends. */
const live = new Set<number>();
process.once('exit', () => {
  for (const pgid of live) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

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

/**
 * Spawns a command in a process group of its own, so that it and every child it starts
 * (a shell's background server, tsx's node) can be killed together.
 */
export function spawnGroup(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Spawned {
  const env: NodeJS.ProcessEnv = { ...(options.env ?? process.env) };
  // the test runner's context would make a child `node --test` report to us
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(command, args, { cwd: options.cwd ?? REPO, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | string>((ok) => {
    child.once('exit', (code, signal) => ok(code ?? signal ?? -1));
    child.once('error', () => ok(-1));
  });
  if (child.pid !== undefined) live.add(child.pid);
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      /* already gone */
    }
  };
  const kill = async (graceMs = 5000) => {
    signalGroup('SIGTERM');
    const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
    // children that outlive the group leader (a shell's background job) go too
    signalGroup('SIGKILL');
    live.delete(child.pid!);
  };
  return { child, stdout: () => out, stderr: () => err, exited, kill };
}

/** Resolves with the first match of `pattern` in the stream's output; rejects on exit or after `timeoutMs`. */
export function waitForOutput(p: Spawned, stream: 'stdout' | 'stderr', pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
  return new Promise((ok, fail) => {
    const source = stream === 'stdout' ? p.child.stdout! : p.child.stderr!;
    const text = stream === 'stdout' ? p.stdout : p.stderr;
    const check = () => {
      const m = text().match(pattern);
      if (m) {
        cleanup();
        ok(m);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      fail(new Error(`no ${pattern} on ${stream} within ${timeoutMs} ms\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`));
    }, timeoutMs);
    const onExit = (code: number | string) => {
      // the last data may arrive together with the exit
      setImmediate(() => {
        const m = text().match(pattern);
        cleanup();
        if (m) ok(m);
        else fail(new Error(`exited (${code}) before ${pattern} on ${stream}\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`));
      });
    };
    let waiting = true;
    const cleanup = () => {
      waiting = false;
      clearTimeout(timer);
      source.off('data', check);
    };
    source.on('data', check);
    void p.exited.then((c) => waiting && onExit(c));
    check();
  });
}

/** `writ serve` on port 0 with these arguments; resolves once it listens, with its URL. */
export async function startServe(args: string[], env: NodeJS.ProcessEnv): Promise<Spawned & { url: string }> {
  const p = spawnGroup(process.execPath, ['bin/writ.js', 'serve', '--port', '0', ...args], { env });
  try {
    const m = await waitForOutput(p, 'stdout', /writ listening on (http:\/\/\S+)/);
    return { ...p, url: m[1]! };
  } catch (err) {
    await p.kill();
    throw err;
  }
}
