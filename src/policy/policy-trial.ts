import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { tooComplex } from './complexity.js';

/**
 * Tries a policy set in a throwaway worker thread, with its own Cedar WebAssembly
 * instance, before the set is stored: it is parsed, validated and preparsed, and
 * evaluated once in full and once partially (the evaluation behind `tools/visible` and
 * the gateway's `tools/list`), the calls the engine makes. A trap there (WebAssembly
 * "memory access out of bounds", a panic's "unreachable"), a crash of the worker or a
 * run past the timeout refuses the set with `policy_too_complex`; the service's own
 * instance never sees it. The complexity scan (./complexity.ts) runs first and catches
 * the known shapes by name; this catches what the scan's estimate cannot.
 */

const ENTRY = createRequire(import.meta.url).resolve('@cedar-policy/cedar-wasm/nodejs');

// CommonJS, evaluated in the worker: no TypeScript loader needed there.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const cedar = require(workerData.entry);
let step = 'loading cedar';
try {
  step = 'parsing';
  const split = cedar.policySetTextToParts(workerData.text);
  if (split.type === 'success') {
    const parts = {};
    split.policies.forEach((p, i) => {
      step = 'converting policy ' + i;
      cedar.policyToJson(p);
      parts['policy' + i] = p;
    });
    step = 'validating';
    cedar.validate({ schema: workerData.schema, policies: { staticPolicies: parts }, validationSettings: { mode: 'strict' } });
    step = 'preparsing';
    cedar.preparseSchema('writ', workerData.schema);
    const pre = cedar.preparsePolicySet('trial', { staticPolicies: parts });
    if (pre.type === 'success') {
      step = 'deciding';
      cedar.statefulIsAuthorized(Object.assign({}, workerData.full, { preparsedPolicySetId: 'trial' }));
      step = 'evaluating partially';
      cedar.isAuthorizedPartial(Object.assign({}, workerData.partial, { policies: { staticPolicies: parts } }));
    }
  }
  parentPort.postMessage({ ok: true });
} catch (err) {
  parentPort.postMessage({ ok: false, step, error: String((err && err.message) || err).slice(0, 300) });
}
`;

export interface TrialInput {
  text: string;
  schema: string;
  /** a `statefulIsAuthorized` call, less its preparsed set id */
  full: Record<string, unknown>;
  /** an `isAuthorizedPartial` call, less its policies */
  partial: Record<string, unknown>;
  timeoutMs: number;
}

/** Resolves when the set survives the trial; rejects with 400 `policy_too_complex` otherwise. */
export function trialPolicySet(input: TrialInput): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      execArgv: [],
      workerData: { entry: ENTRY, text: input.text, schema: input.schema, full: input.full, partial: input.partial },
      resourceLimits: { maxOldGenerationSizeMb: 256 },
      stdout: true,
      stderr: true,
    });
    let settled = false;
    const finish = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate().catch(() => undefined);
      if (err) reject(err);
      else resolve();
    };
    const refuse = (what: string, details: Record<string, unknown>) =>
      finish(tooComplex('(the set)', `Cedar failed on it in a trial run (${what})`, { limit: 'trial', ...details }));
    const timer = setTimeout(() => refuse(`no answer within ${input.timeoutMs} ms`, { step: 'timeout' }), input.timeoutMs);
    worker.once('message', (m: { ok: boolean; step?: string; error?: string }) => {
      if (m.ok) finish(null);
      else refuse(`${m.step}: ${m.error}`, { step: m.step, error: m.error });
    });
    worker.once('error', (err) => refuse(`the trial worker failed: ${String(err?.message ?? err).slice(0, 300)}`, { step: 'worker' }));
    worker.once('exit', (code) => refuse(`the trial worker exited with ${code}`, { step: 'worker' }));
  });
}
