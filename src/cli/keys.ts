import { parseArgs, positionals } from './args.js';
import { baseUrl, CONNECTION, operatorToken, print, request } from './client.js';
import { group } from './command.js';
import { KEYS_USAGE } from './usage.js';

/** `writ keys list|rotate`: Writ's signing keys (public facts only). */
export const keys = group('keys', KEYS_USAGE, {
  async list(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    positionals(args, []);
    print(await request(baseUrl(args), 'GET', '/v1/keys', { token: operatorToken(args) }));
  },
  async rotate(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    positionals(args, []);
    print(await request(baseUrl(args), 'POST', '/v1/keys/rotate', { token: operatorToken(args) }));
  },
});
