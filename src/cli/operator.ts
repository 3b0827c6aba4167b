import { parseArgs, positionals, requireFlag, requireList, UsageError } from './args.js';
import { baseUrl, CONNECTION, operatorToken, print, request, seg } from './client.js';
import { group } from './command.js';
import { recoverOperator } from './operator-recover.js';
import { OPERATOR_USAGE } from './usage.js';

const ROLES = ['admin', 'approver', 'auditor', 'requester'];

/** `writ operator create|list|disable|rotate|recover`: operators and their tokens (a new token is shown once). */
export const operator = group('operator', OPERATOR_USAGE, {
  async create(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'name'], lists: ['role'] });
    positionals(args, []);
    const name = requireFlag(args, 'name');
    const roles = requireList(args, 'role');
    const bad = roles.find((r) => !ROLES.includes(r));
    if (bad !== undefined) throw new UsageError(`unknown role \`${bad}\` (roles: ${ROLES.join(', ')})`);
    print(await request(baseUrl(args), 'POST', '/v1/operators', { token: operatorToken(args), json: { name, roles: [...new Set(roles)] } }));
  },
  async list(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    positionals(args, []);
    print(await request(baseUrl(args), 'GET', '/v1/operators', { token: operatorToken(args) }));
  },
  async disable(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    const [id] = positionals(args, ['ID']);
    print(await request(baseUrl(args), 'POST', `/v1/operators/${seg(id!)}/disable`, { token: operatorToken(args) }));
  },
  async rotate(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    const [id] = positionals(args, ['ID']);
    print(await request(baseUrl(args), 'POST', `/v1/operators/${seg(id!)}/rotate`, { token: operatorToken(args) }));
  },
  recover: recoverOperator,
});
