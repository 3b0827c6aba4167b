import { createRequire } from 'node:module';

/**
 * The Cedar WebAssembly instance, replaceable. A trap inside Cedar (a WebAssembly
 * `RuntimeError` such as "memory access out of bounds", or a Rust panic surfacing as
 * "unreachable") can leave the instance's memory and stack in any state, so it is never
 * used again: `resetCedar` discards it and loads the package's nodejs entry afresh,
 * which compiles and instantiates a new module with fresh memory. (The nodejs entry is
 * CommonJS that instantiates at load, so a fresh load is the only way to a new
 * instance; dropping it from the require cache is what makes the load fresh. Modules
 * that imported the package statically keep their own, separate instance.)
 */
export type CedarModule = typeof import('@cedar-policy/cedar-wasm/nodejs');

const require = createRequire(import.meta.url);
const ENTRY = require.resolve('@cedar-policy/cedar-wasm/nodejs');

let instance: CedarModule = require(ENTRY) as CedarModule;
let generation = 0;

/** The current instance: always call through this, never keep it. */
export function cedar(): CedarModule {
  return instance;
}

/** Bumped by every reset: what was preparsed into an older instance is gone. */
export function cedarGeneration(): number {
  return generation;
}

/** Discards the current instance and creates a new one (about 150 ms: a compile). */
export function resetCedar(): void {
  delete require.cache[ENTRY];
  instance = require(ENTRY) as CedarModule;
  generation += 1;
}
