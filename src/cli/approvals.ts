import { flag, intFlag, parseArgs, positionals, UsageError } from './args.js';
import { baseUrl, CONNECTION, operatorToken, print, request, seg } from './client.js';
import { group } from './command.js';
import { APPROVALS_USAGE } from './usage-escalations.js';

const STATUSES = ['pending', 'approved', 'denied', 'expired', 'cancelled', 'used'];

async function review(argv: string[], verdict: 'approve' | 'deny'): Promise<void> {
  const args = parseArgs(argv, { values: [...CONNECTION, 'comment'] });
  const [id] = positionals(args, ['ID']);
  const comment = flag(args, 'comment');
  print(await request(baseUrl(args), 'POST', `/v1/approvals/${seg(id!)}/${verdict}`, { token: operatorToken(args), json: comment === undefined ? {} : { comment } }));
}

/** `writ approvals list|show|approve|deny`. */
export const approvals = group('approvals', APPROVALS_USAGE, {
  async list(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'status', 'task', 'limit'] });
    positionals(args, []);
    const status = flag(args, 'status');
    if (status !== undefined && !STATUSES.includes(status)) throw new UsageError(`\`--status\` is one of ${STATUSES.join(', ')}`);
    const query = { status, task_id: flag(args, 'task'), limit: intFlag(args, 'limit', 1) };
    print(await request(baseUrl(args), 'GET', '/v1/approvals', { token: operatorToken(args), query }));
  },

  async show(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'wait', 'task-token'] });
    const [id] = positionals(args, ['ID']);
    const wait = intFlag(args, 'wait');
    if (wait !== undefined && wait > 30) throw new UsageError('`--wait` is at most 30 seconds');
    const token = flag(args, 'task-token') ?? operatorToken(args);
    print(await request(baseUrl(args), 'GET', `/v1/approvals/${seg(id!)}`, { token, query: { wait } }));
  },

  approve: (argv) => review(argv, 'approve'),
  deny: (argv) => review(argv, 'deny'),
});
