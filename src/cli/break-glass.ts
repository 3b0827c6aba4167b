import { flag, intFlag, parseArgs, positionals, requireFlag, requireInt, requireList, UsageError } from './args.js';
import { baseUrl, CONNECTION, operatorToken, print, request, seg } from './client.js';
import { group } from './command.js';
import { BREAK_GLASS_USAGE } from './usage-escalations.js';

const STATES = ['active', 'pending', 'ended', 'unreviewed'];

/** `writ break-glass start|confirm|end|review|list|show`. */
export const breakGlass = group('break-glass', BREAK_GLASS_USAGE, {
  async start(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'agent', 'task', 'justification', 'duration'], lists: ['tool'] });
    positionals(args, []);
    const agent = flag(args, 'agent');
    const task = flag(args, 'task');
    if ((agent === undefined) === (task === undefined)) throw new UsageError('give exactly one of `--agent` and `--task`');
    const body: Record<string, unknown> = {
      justification: requireFlag(args, 'justification'),
      scope: { tools: requireList(args, 'tool') },
      duration_seconds: requireInt(args, 'duration', 1),
    };
    if (agent !== undefined) body.agent_id = agent;
    if (task !== undefined) body.task_id = task;
    print(await request(baseUrl(args), 'POST', '/v1/break-glass', { token: operatorToken(args), json: body }));
  },

  async confirm(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    const [id] = positionals(args, ['ID']);
    print(await request(baseUrl(args), 'POST', `/v1/break-glass/${seg(id!)}/confirm`, { token: operatorToken(args) }));
  },

  async end(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'reason'] });
    const [id] = positionals(args, ['ID']);
    const reason = flag(args, 'reason');
    print(await request(baseUrl(args), 'POST', `/v1/break-glass/${seg(id!)}/end`, { token: operatorToken(args), json: reason === undefined ? {} : { reason } }));
  },

  async review(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'notes'] });
    const [id] = positionals(args, ['ID']);
    print(await request(baseUrl(args), 'POST', `/v1/break-glass/${seg(id!)}/review`, { token: operatorToken(args), json: { notes: requireFlag(args, 'notes') } }));
  },

  async list(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'state', 'agent', 'limit'] });
    positionals(args, []);
    const state = flag(args, 'state');
    if (state !== undefined && !STATES.includes(state)) throw new UsageError(`\`--state\` is one of ${STATES.join(', ')}`);
    const query = { state, agent_id: flag(args, 'agent'), limit: intFlag(args, 'limit', 1) };
    print(await request(baseUrl(args), 'GET', '/v1/break-glass', { token: operatorToken(args), query }));
  },

  async show(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    const [id] = positionals(args, ['ID']);
    print(await request(baseUrl(args), 'GET', `/v1/break-glass/${seg(id!)}`, { token: operatorToken(args) }));
  },
});
