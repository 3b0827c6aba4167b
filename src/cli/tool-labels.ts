import { list, parseArgs, positionals } from './args.js';
import { baseUrl, CONNECTION, operatorToken, print, request } from './client.js';
import { group } from './command.js';
import { TOOL_LABELS_USAGE } from './usage.js';

/** `writ tool-labels list|set`: the labels policy sees on tools (`resource.labels`). */
export const toolLabels = group('tool-labels', TOOL_LABELS_USAGE, {
  async list(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    positionals(args, []);
    print(await request(baseUrl(args), 'GET', '/v1/tool-labels', { token: operatorToken(args) }));
  },
  async set(argv) {
    const args = parseArgs(argv, { values: CONNECTION, lists: ['label'] });
    const [pattern] = positionals(args, ['PATTERN']);
    print(await request(baseUrl(args), 'PUT', '/v1/tool-labels', { token: operatorToken(args), json: { pattern, labels: list(args, 'label') } }));
  },
});
