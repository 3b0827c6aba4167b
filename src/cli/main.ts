#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { WritError } from '../core/errors.js';
import { UsageError } from './args.js';
import type { Command, CommandContext } from './command.js';
import { SERVE_USAGE, USAGE } from './usage.js';
import { applyWasmTiering } from './wasm-tiering.js';

// Command modules load on demand: `writ --help` and `writ agent list` stay fast.
const commands: Record<string, () => Promise<Command>> = {
  serve: async () => {
    const { serve } = await import('./serve.js');
    const { single } = await import('./command.js');
    return single(SERVE_USAGE, (argv) => serve(argv));
  },
  migrate: async () => {
    const { migrate, migrateUsage } = await import('./migrate.js');
    const { single } = await import('./command.js');
    return single(migrateUsage, (argv) => migrate(argv));
  },
  agent: async () => (await import('./agent.js')).agent,
  task: async () => (await import('./task.js')).task,
  token: async () => (await import('./agent-actions.js')).token,
  authorize: async () => (await import('./agent-actions.js')).authorize,
  consume: async () => (await import('./agent-actions.js')).consume,
  outcome: async () => (await import('./agent-actions.js')).outcome,
  audit: async () => (await import('./audit.js')).audit,
  policy: async () => (await import('./policy.js')).policy,
  operator: async () => (await import('./operator.js')).operator,
  'tool-labels': async () => (await import('./tool-labels.js')).toolLabels,
  keys: async () => (await import('./keys.js')).keys,
  introspect: async () => (await import('./introspect.js')).introspect,
  issuer: async () => (await import('./issuer.js')).issuer,
  delegate: async () => (await import('./delegate.js')).delegate,
  'token-exchange': async () => (await import('./delegate.js')).tokenExchange,
  gateway: async () => (await import('./gateway.js')).gateway,
  approvals: async () => (await import('./approvals.js')).approvals,
  'break-glass': async () => (await import('./break-glass.js')).breakGlass,
};

/** The version in package.json (read on demand: only `--version` needs it). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  try {
    applyWasmTiering(process.env.WRIT_WASM_TIER_UP);
  } catch (err) {
    console.error(`writ: ${(err as Error).message}`);
    return 2;
  }
  if (argv[0] === 'help') {
    // `writ help task create` is `writ task create --help`
    if (argv.length === 1) {
      console.log(USAGE);
      return 0;
    }
    argv = [...argv.slice(1), '--help'];
  }
  const [name, ...rest] = argv;
  if (!name) {
    console.error(USAGE);
    return 2;
  }
  if (name === '--help' || name === '-h') {
    console.log(USAGE);
    return 0;
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    console.log(packageVersion());
    return 0;
  }
  const load = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!load) {
    console.error(`writ: unknown command \`${name}\`\n${USAGE}`);
    return 2;
  }
  const ctx: CommandContext = { label: name };
  try {
    return (await (await load())(rest, ctx)) ?? 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`writ ${ctx.label}: ${err.message}`);
      if (ctx.usage) console.error(ctx.usage.startsWith('usage:') ? ctx.usage : `usage: ${ctx.usage}`);
      return 2;
    }
    if (err instanceof WritError) {
      console.error(`writ ${ctx.label}: ${err.code}: ${err.message}`);
      const notes = (err as { notes?: unknown }).notes;
      if (Array.isArray(notes)) for (const n of notes) console.error(n);
      return 1;
    }
    console.error(`writ ${ctx.label}: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}

/** Exits once stdout and stderr have flushed (an idle keep-alive socket would hold the process open). */
function exitWhenFlushed(code: number): void {
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}

const argv = process.argv.slice(2);
main(argv).then((code) => {
  // `serve` returns once listening and keeps running
  if (code !== 0 || argv[0] !== 'serve') exitWhenFlushed(code);
});
