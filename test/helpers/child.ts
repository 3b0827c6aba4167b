/**
 * Child processes for tests, started so that none outlives its test.
 *
 * - Each child leads its own process group (`detached`), so stopping it also stops what it
 *   started (a gateway's stdio upstream, a CLI's helpers): signals go to `-pid`.
 * - Cleanup is registered before the spawn: the child is in the live set before `spawn` runs,
 *   and every live group is killed when its owner test ends (`owner`), when the file's tests
 *   end (a root `after` hook, which also runs when a suite's hook failed), and when this
 *   process exits or is told to stop (SIGTERM/SIGINT/SIGHUP, as the test runner does at a
 *   file's time limit).
 * - Readiness waits follow events (an output line, a port accepting) and fail, after a
 *   timeout sized for a loaded machine, with the child's captured output.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { after } from 'node:test';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/** How long a readiness wait lasts by default: generous, a busy 2-core machine starts tsx slowly. */
export const READY_TIMEOUT_MS = 120_000;
/** How long a stopped child gets between SIGTERM and SIGKILL. */
export const STOP_GRACE_MS = 5_000;
/**
 * Set by scripts/run-tests.mjs to a value unique to one test file's run; passed to every child,
 * so the runner can find (and report) any process that outlived the file.
 */
export const RUN_MARKER_ENV = 'WRIT_TEST_RUN_MARKER';

export interface ChildOptions {
  cwd?: string;
  /** the child's whole environment (default: this process's); the run marker is always added */
  env?: NodeJS.ProcessEnv;
  /** `pipe` gives the child a stdin (`child.proc.stdin`); default `ignore` */
  stdin?: 'ignore' | 'pipe';
  /** a test context: the child is stopped when that test ends */
  owner?: { after: (fn: () => unknown) => void };
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WaitOptions {
  /** which output to read; default both */
  stream?: 'stdout' | 'stderr' | 'both';
  timeoutMs?: number;
}

export interface Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** the command line, for messages */
  readonly name: string;
  stdout(): string;
  stderr(): string;
  /** resolves when the child has exited (and its group was killed) */
  readonly exited: Promise<ExitStatus>;
  /** resolves with the first complete output line (already seen or to come) matching `match` */
  waitForLine(match: RegExp | ((line: string) => boolean), opts?: WaitOptions): Promise<string>;
  /** resolves once `host:port` accepts a TCP connection */
  waitForPort(port: number, opts?: { host?: string; timeoutMs?: number }): Promise<void>;
  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves when the child has exited */
  stop(opts?: { graceMs?: number }): Promise<void>;
}

interface Tracked {
  pid?: number;
  done: boolean;
}

const live = new Set<Tracked>();
const stoppers = new Set<() => Promise<void>>();

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is gone already
  }
}

function killAllNow(): void {
  for (const t of live) killGroup(t.pid, 'SIGKILL');
}

/** Stops every child still running (the file's tests are over, or a hook failed). */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...stoppers].map((s) => s()));
  killAllNow();
}

after(stopAllChildren);
process.on('exit', killAllNow);
for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130], ['SIGHUP', 129]] as const) {
  process.on(signal, () => {
    killAllNow();
    process.exit(code);
  });
}

function describeOutput(out: string, err: string): string {
  const tail = (s: string) => (s.length > 8000 ? `…${s.slice(-8000)}` : s);
  return `\n--- stdout ---\n${tail(out)}\n--- stderr ---\n${tail(err)}`;
}

/** Starts `command args` as a child in its own process group, tracked until it and its group are gone. */
export function spawnChild(command: string, args: readonly string[], opts: ChildOptions = {}): Child {
  const name = [command, ...args].join(' ');
  const tracked: Tracked = { done: false };
  live.add(tracked); // before the spawn: an exit between spawn and registration would leak nothing
  const env = { ...(opts.env ?? process.env) };
  if (process.env[RUN_MARKER_ENV]) env[RUN_MARKER_ENV] = process.env[RUN_MARKER_ENV];
  delete env.NODE_TEST_CONTEXT; // a child that runs tests must not report into this runner
  let proc: ChildProcess;
  try {
    proc = spawn(command, args, { cwd: opts.cwd, env, detached: true, stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'] });
  } catch (e) {
    live.delete(tracked);
    throw e;
  }
  tracked.pid = proc.pid;

  const text = { stdout: '', stderr: '' };
  const partial = { stdout: '', stderr: '' };
  const lines: { stream: 'stdout' | 'stderr'; line: string }[] = [];
  const listeners = new Set<(stream: 'stdout' | 'stderr', line: string) => void>();
  const feed = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
    const s = chunk.toString('utf8');
    text[stream] += s;
    partial[stream] += s;
    let nl: number;
    while ((nl = partial[stream].indexOf('\n')) >= 0) {
      const line = partial[stream].slice(0, nl).replace(/\r$/, '');
      partial[stream] = partial[stream].slice(nl + 1);
      lines.push({ stream, line });
      for (const l of [...listeners]) l(stream, line);
    }
  };
  proc.stdout!.on('data', feed('stdout'));
  proc.stderr!.on('data', feed('stderr'));

  let status: ExitStatus | undefined;
  const exited = new Promise<ExitStatus>((resolve) => {
    const finish = (s: ExitStatus) => {
      if (status) return;
      status = s;
      // what the child started may still run in its group: end it with the child
      killGroup(tracked.pid, 'SIGKILL');
      tracked.done = true;
      live.delete(tracked);
      stoppers.delete(stop);
      resolve(s);
    };
    proc.once('exit', (code, signal) => finish({ code, signal }));
    proc.once('error', () => finish({ code: null, signal: null })); // e.g. ENOENT: nothing started
  });
  let spawnError: Error | undefined;
  proc.once('error', (e) => (spawnError = e));

  const failure = (what: string) => new Error(`${what}: ${name}${spawnError ? ` (${spawnError.message})` : ''}${describeOutput(text.stdout, text.stderr)}`);

  const stop = async (o: { graceMs?: number } = {}): Promise<void> => {
    if (status) return;
    killGroup(tracked.pid, 'SIGTERM');
    const t = setTimeout(() => killGroup(tracked.pid, 'SIGKILL'), o.graceMs ?? STOP_GRACE_MS);
    await exited;
    clearTimeout(t);
  };
  stoppers.add(stop);
  opts.owner?.after(() => stop());

  const waitForLine = (match: RegExp | ((line: string) => boolean), w: WaitOptions = {}): Promise<string> => {
    const test = typeof match === 'function' ? match : (l: string) => match.test(l);
    const wanted = (s: 'stdout' | 'stderr') => !w.stream || w.stream === 'both' || w.stream === s;
    const timeoutMs = w.timeoutMs ?? READY_TIMEOUT_MS;
    return new Promise<string>((resolve, reject) => {
      const seen = lines.find((l) => wanted(l.stream) && test(l.line));
      if (seen) return resolve(seen.line);
      const done = () => (clearTimeout(timer), listeners.delete(listener));
      const listener = (s: 'stdout' | 'stderr', line: string) => {
        if (wanted(s) && test(line)) {
          done();
          resolve(line);
        }
      };
      const timer = setTimeout(() => (done(), reject(failure(`no line matching ${String(match)} within ${timeoutMs} ms`))), timeoutMs);
      listeners.add(listener);
      void exited.then((s) => {
        if (!listeners.has(listener)) return;
        done();
        reject(failure(`exited (code ${s.code}, signal ${s.signal}) before a line matching ${String(match)}`));
      });
    });
  };

  const waitForPort = async (port: number, o: { host?: string; timeoutMs?: number } = {}): Promise<void> => {
    const host = o.host ?? '127.0.0.1';
    const until = Date.now() + (o.timeoutMs ?? READY_TIMEOUT_MS);
    for (;;) {
      if (status) throw failure(`exited (code ${status.code}) before ${host}:${port} accepted`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect({ host, port });
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      });
      if (ok) return;
      if (Date.now() > until) throw failure(`${host}:${port} did not accept within ${o.timeoutMs ?? READY_TIMEOUT_MS} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  return {
    proc,
    pid: proc.pid ?? 0,
    name,
    stdout: () => text.stdout,
    stderr: () => text.stderr,
    exited,
    waitForLine,
    waitForPort,
    stop,
  };
}

export interface RunResult extends ExitStatus {
  stdout: string;
  stderr: string;
}

/**
 * Runs `command args` to completion (see spawnChild). `timeoutMs` (default 5 minutes; `Infinity`
 * for none) only guards against a hang: past it the group is killed and the run fails with the output.
 */
export async function runChild(command: string, args: readonly string[], opts: ChildOptions & { timeoutMs?: number } = {}): Promise<RunResult> {
  const c = spawnChild(command, args, opts);
  const timeoutMs = opts.timeoutMs ?? 300_000;
  let timedOut = false;
  const t = Number.isFinite(timeoutMs)
    ? setTimeout(() => {
        timedOut = true;
        void c.stop({ graceMs: 1000 });
      }, timeoutMs)
    : undefined;
  const s = await c.exited;
  clearTimeout(t);
  // the exit event can come before the last output: wait for the pipes to close
  await Promise.all([c.proc.stdout, c.proc.stderr].map((p) => (p && !p.closed ? new Promise((r) => p.once('close', r)) : undefined)));
  if (timedOut) throw new Error(`still running after ${timeoutMs} ms, killed: ${c.name}${describeOutput(c.stdout(), c.stderr())}`);
  return { ...s, stdout: c.stdout(), stderr: c.stderr() };
}

/**
 * An MCP client transport over a child's stdin/stdout (newline-delimited JSON-RPC, as the
 * SDK's stdio transport), for a child started with spawnChild so it is cleaned up like any other.
 */
export class ChildStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private readonly buffer = new ReadBuffer();

  constructor(readonly child: Child) {}

  async start(): Promise<void> {
    const { proc } = this.child;
    proc.stdout!.on('data', (chunk: Buffer) => {
      this.buffer.append(chunk);
      for (;;) {
        let msg: JSONRPCMessage | null;
        try {
          msg = this.buffer.readMessage();
        } catch (e) {
          this.onerror?.(e as Error);
          continue;
        }
        if (!msg) break;
        this.onmessage?.(msg);
      }
    });
    proc.stdin!.on('error', (e) => this.onerror?.(e));
    void this.child.exited.then(() => this.onclose?.());
  }

  async send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.child.proc.stdin!;
    if (!stdin.write(serializeMessage(message))) await new Promise((r) => stdin.once('drain', r));
  }

  async close(): Promise<void> {
    this.child.proc.stdin?.end();
    await this.child.stop();
  }
}
