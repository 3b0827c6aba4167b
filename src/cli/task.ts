import { flag, hasSwitch, intFlag, list, parseArgs, positionals, requireFlag, requireInt, requireList, UsageError } from './args.js';
import { baseUrl, CONNECTION, operatorToken, print, request, seg } from './client.js';
import { group } from './command.js';
import { TASK_USAGE } from './usage.js';
import type { CreateTaskRequest } from '../wire/types.js';

const STATUSES = ['active', 'completed', 'revoked', 'expired'];

/** `writ task create|list|show|revoke|complete`. */
export const task = group('task', TASK_USAGE, {
  /** `writ task presence ID [--ttl S] [--show]`: the owner renews (or reads) its presence lease */
  async presence(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'ttl'], switches: ['show'] });
    const [id] = positionals(args, ['ID']);
    const path = `/v1/tasks/${seg(id!)}/presence`;
    if (hasSwitch(args, 'show')) {
      if (flag(args, 'ttl') !== undefined) throw new UsageError('`--show` only reads: it takes no `--ttl`');
      print(await request(baseUrl(args), 'GET', path, { token: operatorToken(args) }));
      return;
    }
    const ttl = intFlag(args, 'ttl');
    print(await request(baseUrl(args), 'POST', path, { token: operatorToken(args), json: ttl === undefined ? {} : { ttl_seconds: ttl } }));
  },

  async create(argv) {
    const args = parseArgs(argv, {
      values: [...CONNECTION, 'agent', 'intent', 'ttl', 'max-actions'],
      lists: ['tool', 'resource', 'destination'],
      switches: ['require-presence'],
    });
    positionals(args, []);
    const body: CreateTaskRequest = {
      agent_id: requireFlag(args, 'agent'),
      intent: requireFlag(args, 'intent'),
      scope: { tools: requireList(args, 'tool'), resources: list(args, 'resource'), destinations: list(args, 'destination') },
      ttl_seconds: requireInt(args, 'ttl', 1),
      max_actions: requireInt(args, 'max-actions', 1),
      ...(hasSwitch(args, 'require-presence') ? { require_owner_presence: true } : {}),
    };
    print(await request(baseUrl(args), 'POST', '/v1/tasks', { token: operatorToken(args), json: body }));
  },

  async list(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'agent', 'status', 'limit'] });
    positionals(args, []);
    const status = flag(args, 'status');
    if (status !== undefined && !STATUSES.includes(status)) throw new UsageError(`\`--status\` is one of ${STATUSES.join(', ')}`);
    const query = { agent_id: flag(args, 'agent'), status, limit: intFlag(args, 'limit', 1) };
    print(await request(baseUrl(args), 'GET', '/v1/tasks', { token: operatorToken(args), query }));
  },

  async show(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    const [id] = positionals(args, ['ID']);
    print(await request(baseUrl(args), 'GET', `/v1/tasks/${seg(id!)}`, { token: operatorToken(args) }));
  },

  async revoke(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'reason'] });
    const [id] = positionals(args, ['ID']);
    const reason = flag(args, 'reason');
    const json = reason === undefined ? undefined : { reason };
    print(await request(baseUrl(args), 'POST', `/v1/tasks/${seg(id!)}/revoke`, { token: operatorToken(args), json }));
  },

  async complete(argv) {
    // an operator completes a task, or the agent does with its own task token
    const args = parseArgs(argv, { values: [...CONNECTION, 'task-token'] });
    const [id] = positionals(args, ['ID']);
    const token = flag(args, 'task-token') ?? operatorToken(args);
    print(await request(baseUrl(args), 'POST', `/v1/tasks/${seg(id!)}/complete`, { token }));
  },
});
