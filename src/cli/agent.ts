import { flag, hasSwitch, list, parseArgs, positionals, requireFlag, UsageError } from './args.js';
import { baseUrl, CONNECTION, operatorToken, print, request, seg } from './client.js';
import { group } from './command.js';
import { AGENT_USAGE } from './usage.js';
import type { RegisterAgentRequest } from '../wire/types.js';

/** `writ agent keygen|register|list|show|disable`. */
export const agent = group('agent', AGENT_USAGE, {
  async keygen(argv) {
    const args = parseArgs(argv, { values: ['alg', 'out'], switches: ['force'] });
    positionals(args, []);
    const alg = flag(args, 'alg') ?? 'EdDSA';
    if (alg !== 'EdDSA' && alg !== 'ES256') throw new UsageError('`--alg` is `EdDSA` or `ES256`');
    const out = requireFlag(args, 'out');
    const { generateAgentKey } = await import('./agent-key.js');
    print(await generateAgentKey(alg, out, hasSwitch(args, 'force')));
  },

  /** `writ agent assertion`: the signed client assertion alone, for clients that post it to /oauth/token themselves (curl) */
  async assertion(argv) {
    const args = parseArgs(argv, { values: ['url', 'agent', 'key'] });
    positionals(args, []);
    const agentId = requireFlag(args, 'agent');
    const keyPath = requireFlag(args, 'key');
    const { CLIENT_ASSERTION_TYPE, signClientAssertion } = await import('./client-assertion.js');
    const signed = await signClientAssertion(baseUrl(args), agentId, keyPath);
    print({ client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: signed.assertion, audience: signed.audience, expires_in: signed.expiresIn });
  },

  async register(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'id', 'name', 'jwks', 'key'], lists: ['label'] });
    positionals(args, []);
    const id = requireFlag(args, 'id');
    const { readJwks } = await import('./agent-key.js');
    const jwks = await readJwks({ jwks: flag(args, 'jwks'), key: flag(args, 'key') });
    const base = baseUrl(args);
    const token = operatorToken(args);
    const body: RegisterAgentRequest = { id, jwks: jwks as RegisterAgentRequest['jwks'] };
    const name = flag(args, 'name');
    if (name !== undefined) body.name = name;
    const labels = list(args, 'label');
    if (labels.length > 0) body.labels = labels;
    print(await request(base, 'POST', '/v1/agents', { token, json: body }));
  },

  async list(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    positionals(args, []);
    print(await request(baseUrl(args), 'GET', '/v1/agents', { token: operatorToken(args) }));
  },

  async show(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    const [id] = positionals(args, ['ID']);
    print(await request(baseUrl(args), 'GET', `/v1/agents/${seg(id!)}`, { token: operatorToken(args) }));
  },

  async disable(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    const [id] = positionals(args, ['ID']);
    print(await request(baseUrl(args), 'POST', `/v1/agents/${seg(id!)}/disable`, { token: operatorToken(args) }));
  },
});
