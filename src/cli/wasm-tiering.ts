import { setFlagsFromString } from 'node:v8';
import { UsageError } from './args.js';

/**
 * `WRIT_WASM_TIER_UP=0`: Cedar's WebAssembly runs on V8's baseline compiler (Liftoff) only.
 * By default V8 also recompiles the functions that turn hot with its optimizing compiler
 * (dynamic tiering), on background threads: worth it for a long-running `writ serve`, but
 * about 0.9 s of CPU for a process that starts, checks a few policies and ends (measured on
 * `writ serve` from start to ready: 1.9-2.0 s of CPU by default, 1.1 s without). Decisions
 * are slower without it, so a service that lives keeps the default. It must be set before
 * Cedar is loaded: the CLI applies it before it loads any command.
 */
export function applyWasmTiering(value: string | undefined): void {
  if (value === undefined || value === '' || value === '1') return;
  if (value !== '0') throw new UsageError(`WRIT_WASM_TIER_UP is \`${value.slice(0, 40)}\`; use 0 or 1`);
  setFlagsFromString('--liftoff-only');
}
