#!/usr/bin/env node
import { WritError } from '../core/errors.js';
import { UsageError } from './args.js';
import { serve, serveUsage } from './serve.js';

const USAGE = `usage:
  ${serveUsage}
  writ <command> --help`;

type Command = (argv: string[]) => Promise<void>;

const commands: Record<string, () => Promise<Command>> = {
  serve: async () => serve,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const load = commands[name];
  if (!load) {
    console.error(`writ: unknown command \`${name}\`\n${USAGE}`);
    return 2;
  }
  try {
    await (await load())(rest);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`writ ${name}: ${err.message}`);
      return 2;
    }
    if (err instanceof WritError) {
      console.error(`writ ${name}: ${err.code}: ${err.message}`);
      return 1;
    }
    console.error(`writ ${name}: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  if (code !== 0) process.exit(code);
});
