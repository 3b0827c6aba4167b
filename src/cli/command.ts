import { UsageError } from './args.js';
import { COMMON, groupUsage } from './usage.js';

/** What a command tells main.ts about itself, for error messages and usage. */
export interface CommandContext {
  /** `agent register`, `token`, ...: the prefix of error lines */
  label: string;
  /** the usage shown after a usage error */
  usage?: string;
}

/** A command returns its exit code (0 when it returns nothing). */
export type Command = (argv: string[], ctx: CommandContext) => Promise<number | void>;

export function wantsHelp(argv: string[]): boolean {
  const end = argv.indexOf('--');
  const opts = end < 0 ? argv : argv.slice(0, end);
  return opts.includes('--help') || opts.includes('-h');
}

export function printUsage(usage: string): void {
  process.stdout.write(usage.startsWith('usage:') ? `${usage}\n` : `usage: ${usage}\n`);
}

/** A command group (`writ agent ...`): picks the subcommand, handles `--help`. */
export function group(name: string, usage: Record<string, string>, subs: Record<string, (argv: string[], ctx: CommandContext) => Promise<number | void>>): Command {
  return async (argv, ctx) => {
    const [sub, ...rest] = argv;
    ctx.usage = groupUsage(usage);
    if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
      if (sub === undefined) throw new UsageError('a subcommand is required');
      printUsage(ctx.usage);
      return 0;
    }
    const run = Object.hasOwn(subs, sub) ? subs[sub] : undefined;
    if (!run) throw new UsageError(`unknown subcommand \`${sub}\``);
    ctx.label = `${name} ${sub}`;
    ctx.usage = usage[sub];
    if (wantsHelp(rest)) {
      printUsage(`usage: ${ctx.usage}\n${COMMON}`);
      return 0;
    }
    return run(rest, ctx);
  };
}

/** A single command (`writ token ...`) with `--help`. */
export function single(usage: string, run: (argv: string[], ctx: CommandContext) => Promise<number | void>): Command {
  return async (argv, ctx) => {
    ctx.usage = usage;
    if (wantsHelp(argv)) {
      printUsage(`usage: ${usage}\n${COMMON}`);
      return 0;
    }
    return run(argv, ctx);
  };
}
