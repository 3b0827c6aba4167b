import { flag, parseArgs, positionals, requireFlag, UsageError } from './args.js';
import { baseUrl, print, request, requestDpop, seg } from './client.js';
import { single } from './command.js';
import { SINGLE_USAGE } from './usage.js';
// types only: the CLI sends the wire's shapes; the server parses them (no zod loaded here)
import type { AuthorizeRequest, ConsumeRequest, OutcomeRequest } from '../wire/types.js';

/**
 * `writ token`: an RFC 7523 client assertion (see `signClientAssertion`) exchanged for a
 * task token at `/oauth/token`.
 */
export const token = single(SINGLE_USAGE.token!, async (argv) => {
  const args = parseArgs(argv, { values: ['url', 'agent', 'key', 'task', 'dpop-key'] });
  positionals(args, []);
  const agentId = requireFlag(args, 'agent');
  const keyPath = requireFlag(args, 'key');
  const taskId = requireFlag(args, 'task');
  const base = baseUrl(args);
  const { CLIENT_ASSERTION_TYPE, signClientAssertion } = await import('./client-assertion.js');
  const form = async () => ({
    grant_type: 'client_credentials',
    client_assertion_type: CLIENT_ASSERTION_TYPE,
    client_assertion: (await signClientAssertion(base, agentId, keyPath)).assertion,
    task_id: taskId,
  });
  const dpopKeyPath = flag(args, 'dpop-key');
  if (dpopKeyPath === undefined) return print(await request(base, 'POST', '/oauth/token', { form: await form() }));
  // RFC 9449 §5: a proof on the token request binds the token to the key (`token_type: DPoP`);
  // a nonce challenge is answered once, with a new assertion (each is single-use)
  const { loadDpopKey } = await import('./agent-key.js');
  const key = await loadDpopKey(dpopKeyPath);
  print(await requestDpop(base, key, 'POST', '/oauth/token', { form }));
});

/** Calls the API as the agent: `--dpop-key FILE` sends the (bound) task token as `DPoP` with a proof by that key. */
async function asAgent(args: ReturnType<typeof parseArgs>, method: string, path: string, token: string, json: unknown): Promise<unknown> {
  const dpopKeyPath = flag(args, 'dpop-key');
  if (dpopKeyPath === undefined) return request(baseUrl(args), method, path, { token, json });
  const { loadDpopKey } = await import('./agent-key.js');
  return requestDpop(baseUrl(args), await loadDpopKey(dpopKeyPath), method, path, { token, json });
}

/** `writ authorize`: asks for one action under a task token. */
export const authorize = single(SINGLE_USAGE.authorize!, async (argv) => {
  const args = parseArgs(argv, { values: ['url', 'task-token', 'tool', 'audience', 'args', 'resource', 'destination', 'dpop-key'] });
  positionals(args, []);
  const taskToken = requireFlag(args, 'task-token');
  const body: AuthorizeRequest = { tool: requireFlag(args, 'tool'), arguments: {}, audience: requireFlag(args, 'audience') };
  const rawArgs = flag(args, 'args');
  if (rawArgs !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(rawArgs);
    } catch {
      throw new UsageError('`--args` is not valid JSON');
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError('`--args` must be a JSON object');
    body.arguments = parsed;
  }
  const resource = flag(args, 'resource');
  if (resource !== undefined) body.resource = resource;
  const destination = flag(args, 'destination');
  if (destination !== undefined) body.destination = destination;
  print(await asAgent(args, 'POST', '/v1/authorize', taskToken, body));
});

/** `writ consume`: what a tool server does with an action token, once. */
export const consume = single(SINGLE_USAGE.consume!, async (argv) => {
  const args = parseArgs(argv, { values: ['url', 'action-token', 'audience'] });
  positionals(args, []);
  const body: ConsumeRequest = { action_token: requireFlag(args, 'action-token'), audience: requireFlag(args, 'audience') };
  print(await request(baseUrl(args), 'POST', '/v1/actions/consume', { json: body }));
});

/** `writ outcome`: reports how an allowed action went. */
export const outcome = single(SINGLE_USAGE.outcome!, async (argv) => {
  const args = parseArgs(argv, { values: ['url', 'task-token', 'decision', 'status', 'detail', 'dpop-key'] });
  positionals(args, []);
  const taskToken = requireFlag(args, 'task-token');
  const decision = requireFlag(args, 'decision');
  const status = requireFlag(args, 'status');
  if (status !== 'succeeded' && status !== 'failed') throw new UsageError('`--status` is `succeeded` or `failed`');
  const body: OutcomeRequest = { status };
  const detail = flag(args, 'detail');
  if (detail !== undefined) body.detail = detail;
  print(await asAgent(args, 'POST', `/v1/actions/${seg(decision)}/outcome`, taskToken, body));
});
