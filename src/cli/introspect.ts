import { parseArgs, positionals } from './args.js';
import { baseUrl, CONNECTION, operatorToken, print, request } from './client.js';
import { single } from './command.js';
import { SINGLE_USAGE } from './usage.js';

/** `writ introspect TOKEN`: RFC 7662 introspection, as an operator. */
export const introspect = single(SINGLE_USAGE.introspect!, async (argv) => {
  const args = parseArgs(argv, { values: CONNECTION });
  const [tok] = positionals(args, ['TOKEN']);
  print(await request(baseUrl(args), 'POST', '/oauth/introspect', { token: operatorToken(args), form: { token: tok! } }));
});
