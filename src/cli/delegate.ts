import { readFileSync } from 'node:fs';
import { list, parseArgs, positionals, requireFlag, requireInt, requireList } from './args.js';
import { baseUrl, CliError, print, request, seg } from './client.js';
import { single } from './command.js';
import { SINGLE_USAGE } from './usage.js';

/** `writ delegate`: the agent holding a task gives a narrower sub-task to another agent. */
export const delegate = single(SINGLE_USAGE.delegate!, async (argv) => {
  const args = parseArgs(argv, {
    values: ['url', 'task-token', 'task', 'agent', 'intent', 'ttl', 'max-actions'],
    lists: ['tool', 'resource', 'destination'],
  });
  positionals(args, []);
  const body = {
    agent_id: requireFlag(args, 'agent'),
    intent: requireFlag(args, 'intent'),
    scope: { tools: requireList(args, 'tool'), resources: list(args, 'resource'), destinations: list(args, 'destination') },
    ttl_seconds: requireInt(args, 'ttl', 1),
    max_actions: requireInt(args, 'max-actions', 1),
  };
  const path = `/v1/tasks/${seg(requireFlag(args, 'task'))}/delegations`;
  print(await request(baseUrl(args), 'POST', path, { token: requireFlag(args, 'task-token'), json: body }));
});

/**
 * `writ token-exchange`: an OIDC workload token or SPIFFE JWT-SVID (RFC 8693 subject
 * token) exchanged for a task token. `--subject-token @FILE` reads it from a file
 * (a projected Kubernetes service-account token, a SPIFFE helper's output).
 */
export const tokenExchange = single(SINGLE_USAGE['token-exchange']!, async (argv) => {
  const args = parseArgs(argv, { values: ['url', 'subject-token', 'task'] });
  positionals(args, []);
  let subject = requireFlag(args, 'subject-token');
  if (subject.startsWith('@')) {
    try {
      subject = readFileSync(subject.slice(1), 'utf8').trim();
    } catch (err) {
      throw new CliError('file_unreadable', `cannot read \`${subject.slice(1)}\`: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  const form = {
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: subject,
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    task_id: requireFlag(args, 'task'),
  };
  print(await request(baseUrl(args), 'POST', '/oauth/token', { form }));
});
