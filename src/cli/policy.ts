import { readFileSync } from 'node:fs';
import { hasSwitch, parseArgs, positionals } from './args.js';
import { baseUrl, CliError, CONNECTION, operatorToken, print, request } from './client.js';
import { group } from './command.js';
import { POLICY_USAGE } from './usage.js';

/** `writ policy get|set`. A rejected set prints Cedar's diagnostics (error.details) on stderr. */
export const policy = group('policy', POLICY_USAGE, {
  async get(argv) {
    const args = parseArgs(argv, { values: CONNECTION, switches: ['text'] });
    positionals(args, []);
    const r = await request(baseUrl(args), 'GET', '/v1/policies', { token: operatorToken(args) });
    if (hasSwitch(args, 'text')) process.stdout.write(String(r.policies).endsWith('\n') ? r.policies : `${r.policies}\n`);
    else print(r);
  },

  async set(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    const [file] = positionals(args, ['FILE']);
    const base = baseUrl(args);
    const token = operatorToken(args);
    let text: string;
    try {
      text = readFileSync(file === '-' ? 0 : file!, 'utf8');
    } catch (err) {
      throw new CliError('read_failed', `cannot read \`${file}\`: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    print(await request(base, 'PUT', '/v1/policies', { token, json: { policies: text } }));
  },
});
