/**
 * Minimal `--flag value` / `--flag=value` / `--switch` parser; unknown flags are errors.
 * Flags named in `lists` may repeat and collect every value in order; `--` ends the options.
 */
export interface ParsedArgs {
  positional: string[];
  flags: Record<string, string | true>;
  lists: Record<string, string[]>;
}

export class UsageError extends Error {}

export function parseArgs(argv: string[], known: { values: string[]; switches?: string[]; lists?: string[] }): ParsedArgs {
  const out: ParsedArgs = { positional: [], flags: {}, lists: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.positional.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('--')) {
      out.positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (known.switches?.includes(name)) {
      if (eq >= 0) throw new UsageError(`option \`--${name}\` takes no value`);
      out.flags[name] = true;
      continue;
    }
    const isList = known.lists?.includes(name) ?? false;
    if (!isList && !known.values.includes(name)) throw new UsageError(`unknown option \`--${name}\``);
    const value = eq >= 0 ? a.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`option \`--${name}\` needs a value`);
    if (isList) (out.lists[name] ??= []).push(value);
    else out.flags[name] = value;
  }
  return out;
}

export function flag(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function requireFlag(args: ParsedArgs, name: string): string {
  const v = flag(args, name);
  if (v === undefined) throw new UsageError(`option \`--${name}\` is required`);
  return v;
}

export function hasSwitch(args: ParsedArgs, name: string): boolean {
  return args.flags[name] === true;
}

export function list(args: ParsedArgs, name: string): string[] {
  return args.lists[name] ?? [];
}

export function requireList(args: ParsedArgs, name: string): string[] {
  const v = list(args, name);
  if (v.length === 0) throw new UsageError(`option \`--${name}\` is required`);
  return v;
}

/** A whole number within bounds, from a flag; undefined when the flag is absent. */
export function intFlag(args: ParsedArgs, name: string, min = 0): number | undefined {
  const v = flag(args, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) {
    throw new UsageError(`option \`--${name}\` must be a whole number${min > 0 ? ` of at least ${min}` : ''}`);
  }
  return Number(v);
}

export function requireInt(args: ParsedArgs, name: string, min = 0): number {
  const v = intFlag(args, name, min);
  if (v === undefined) throw new UsageError(`option \`--${name}\` is required`);
  return v;
}

/** Exactly the named positional arguments, no more, no fewer. */
export function positionals(args: ParsedArgs, names: string[]): string[] {
  if (args.positional.length < names.length) throw new UsageError(`missing argument ${names[args.positional.length]}`);
  if (args.positional.length > names.length) throw new UsageError(`unexpected argument \`${args.positional[names.length]}\``);
  return args.positional;
}
