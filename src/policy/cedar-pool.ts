import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type * as cedarTypes from '@cedar-policy/cedar-wasm/nodejs';

/**
 * Cedar evaluation on worker threads, so that decisions use every core (issue 12): the
 * main thread keeps HTTP, authentication, the store and the durable commit; a worker
 * runs `statefulIsAuthorized` on its own Cedar instance, with the same preparsed sets.
 *
 * Fail closed: a worker that errors, exits or does not answer within `timeoutMs` fails
 * every call it holds with `CedarPoolError` (the caller answers 503, never allow), is
 * terminated, and is replaced by a new one with every set preparsed again. A throw from
 * inside Cedar (a trap) is answered as such and the worker then exits: its WebAssembly
 * instance is never used again (as ./engine.ts does for its own instance).
 */

const ENTRY = createRequire(import.meta.url).resolve('@cedar-policy/cedar-wasm/nodejs');

// CommonJS, evaluated in the worker: no TypeScript loader needed there.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const cedar = require(workerData.entry);
// A call arrives as JSON text and its answer leaves as JSON text; cedar-wasm's glue
// turns its input into JSON text (JSON.stringify) and its output from it (JSON.parse).
// So the text is handed through as is, both ways: a Raw passes JSON.stringify as its
// text, and while one call runs JSON.parse answers a Raw of the text. Nothing else runs
// in this thread, and the call is synchronous, so no other code sees either.
class Raw { constructor(text) { this.text = text; } }
const jsonStringify = JSON.stringify;
const jsonParse = JSON.parse;
let capturing = false;
JSON.stringify = function (value, ...rest) { return value instanceof Raw ? value.text : jsonStringify.call(JSON, value, ...rest); };
JSON.parse = function (text, reviver) { return capturing ? new Raw(text) : jsonParse.call(JSON, text, reviver); };
parentPort.on('message', (m) => {
  if (m.t === 'load') {
    // A set that does not preparse is unknown to this worker: calls on it get Cedar's
    // failure answer, which the engine turns into a deny (fail closed). One that traps
    // Cedar retires the worker, and is not given to its replacement (no restart loop).
    try {
      cedar.preparsePolicySet(m.id, { staticPolicies: m.parts });
    } catch (err) {
      parentPort.postMessage({ loadTrap: m.id });
      process.exit(70);
    }
    return;
  }
  if (m.t === 'stall') {
    // test hook (CedarPool.stallForTest): a worker that stops answering
    const until = Date.now() + m.ms;
    while (Date.now() < until);
    return;
  }
  if (m.t === 'eval') {
    // several calls per message (the pool gathers those of one turn of its event loop),
    // answered together: one message and one wake-up each way for all of them
    const answers = [];
    for (let i = 0; i < m.calls.length; i++) {
      let answer;
      capturing = true;
      try {
        answer = cedar.statefulIsAuthorized(new Raw(m.calls[i]));
      } catch (err) {
        capturing = false;
        // the answers so far, then the trap; the calls after it fail with the worker's exit
        answers.push({ n: m.ns[i], trap: String((err && err.message) || err).slice(0, 300) });
        parentPort.postMessage({ answers });
        process.exit(70);
      }
      capturing = false;
      answers.push({ n: m.ns[i], answer: answer instanceof Raw ? answer.text : jsonStringify.call(JSON, answer) });
    }
    parentPort.postMessage({ answers });
  }
});
`;

export class CedarPoolError extends Error {}

interface Pending {
  resolve: (a: PoolAnswer) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** What a worker answers: Cedar's answer, or the message of a trap inside it. */
export type PoolAnswer = { answer: cedarTypes.AuthorizationAnswer } | { trap: string };

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
  dead: boolean;
  /** calls not yet posted (sent together at the end of this turn of the event loop) */
  queued: { ns: number[]; calls: string[] } | null;
}

type Answer = { n: number; answer?: string; trap?: string };

export class CedarPool {
  private readonly slots: Slot[] = [];
  /** every preparsed set, in load order: a replacement worker gets them all before any call */
  private readonly sets = new Map<string, Record<string, string>>();
  private next = 0;
  private closed = false;
  /** how many workers were replaced after an error, exit or timeout */
  replaced = 0;

  constructor(readonly size: number, readonly timeoutMs: number) {
    if (!(Number.isInteger(size) && size >= 1)) throw new TypeError('a Cedar pool needs at least one worker');
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { entry: ENTRY }, stdout: true, stderr: true });
    worker.unref();
    const slot: Slot = { worker, pending: new Map(), dead: false, queued: null };
    for (const [id, parts] of this.sets) worker.postMessage({ t: 'load', id, parts });
    // Calls and answers cross as JSON text: one string copy, cheaper than the structured
    // clone of many small objects, and the worker hands it to cedar-wasm as it is (cedar-wasm
    // reads its input as JSON and writes its answer as JSON: no parse and re-serialization there).
    worker.on('message', (m: { answers?: Answer[]; loadTrap?: string }) => {
      if (m.loadTrap !== undefined) {
        this.sets.delete(m.loadTrap);
        return;
      }
      for (const a of m.answers ?? []) {
        const p = slot.pending.get(a.n);
        if (!p) continue;
        slot.pending.delete(a.n);
        clearTimeout(p.timer);
        try {
          p.resolve(a.trap !== undefined ? { trap: a.trap } : { answer: JSON.parse(a.answer!) as cedarTypes.AuthorizationAnswer });
        } catch (err) {
          p.reject(new CedarPoolError(`the policy worker's answer does not read (${String((err as Error)?.message ?? err).slice(0, 200)})`));
        }
      }
    });
    worker.on('error', (err) => this.fail(slot, `the policy worker failed (${String(err?.message ?? err).slice(0, 200)})`));
    worker.on('exit', (code) => this.fail(slot, `the policy worker exited with ${code}`));
    return slot;
  }

  /** Fails every call a worker holds and replaces it (once per worker). */
  private fail(slot: Slot, why: string): void {
    if (slot.dead) return;
    slot.dead = true;
    slot.queued = null;
    for (const p of slot.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new CedarPoolError(why));
    }
    slot.pending.clear();
    void slot.worker.terminate().catch(() => undefined);
    if (this.closed) return;
    const i = this.slots.indexOf(slot);
    if (i >= 0) {
      this.slots[i] = this.spawn();
      this.replaced += 1;
    }
  }

  /** Preparses a set (id -> policies by id) in every worker, now and in every replacement. */
  load(id: string, parts: Record<string, string>): void {
    if (this.sets.has(id)) return;
    this.sets.set(id, parts);
    for (const s of this.slots) s.worker.postMessage({ t: 'load', id, parts });
  }

  /**
   * Forgets a set: replacement workers no longer get it, and every worker's copy is
   * replaced by an empty set under the same id (Cedar has no unload; preparsing again
   * under an id replaces what it held, so its memory is released).
   */
  unload(id: string): void {
    if (!this.sets.delete(id)) return;
    for (const s of this.slots) s.worker.postMessage({ t: 'load', id, parts: {} });
  }

  /** Whether no worker has a call in hand. */
  idle(): boolean {
    for (const s of this.slots) if (s.pending.size > 0) return false;
    return true;
  }

  /** One `statefulIsAuthorized` on the least busy worker; rejects with CedarPoolError on error, exit or timeout. */
  evaluate(call: cedarTypes.StatefulAuthorizationCall): Promise<PoolAnswer> {
    return this.evaluateText(JSON.stringify(call));
  }

  /** `evaluate` with the call as JSON text already. */
  evaluateText(call: string): Promise<PoolAnswer> {
    if (this.closed) return Promise.reject(new CedarPoolError('the policy workers are closed'));
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    const n = this.next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(slot, `the policy worker did not answer within ${this.timeoutMs} ms`), this.timeoutMs);
      slot.pending.set(n, { resolve, reject, timer });
      if (slot.queued) {
        slot.queued.ns.push(n);
        slot.queued.calls.push(call);
        return;
      }
      slot.queued = { ns: [n], calls: [call] };
      // the calls of this turn go in one message (under load several requests reach Cedar per turn)
      setImmediate(() => this.post(slot));
    });
  }

  private post(slot: Slot): void {
    const q = slot.queued;
    slot.queued = null;
    // a worker that failed meanwhile has rejected these calls already
    if (!q || slot.dead) return;
    slot.worker.postMessage({ t: 'eval', ns: q.ns, calls: q.calls });
  }

  /**
   * Test hook: makes worker `i` busy for `ms` (it answers nothing meanwhile), as a call
   * that hangs: it is held like one (so the pool is not idle), and times out like one.
   */
  stallForTest(i: number, ms: number): void {
    const slot = this.slots[i]!;
    const n = this.next++;
    const timer = setTimeout(() => this.fail(slot, `the policy worker did not answer within ${this.timeoutMs} ms`), this.timeoutMs);
    slot.pending.set(n, { resolve: () => undefined, reject: () => undefined, timer });
    slot.worker.postMessage({ t: 'stall', ms });
  }

  /** Test hook: the worker threads, to crash one. */
  workersForTest(): Worker[] {
    return this.slots.map((s) => s.worker);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => this.fail(s, 'the policy workers are closed')));
  }
}
