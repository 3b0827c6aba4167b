import { readFileSync } from 'node:fs';
import { flag, hasSwitch, list, parseArgs, positionals, requireFlag, UsageError } from './args.js';
import { baseUrl, CliError, CONNECTION, operatorToken, print, request, seg } from './client.js';
import { group } from './command.js';
import { ISSUER_USAGE } from './usage.js';

function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError('file_unreadable', `cannot read ${what} \`${path}\`: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new CliError('invalid_json', `${what} \`${path}\` is not JSON`);
  }
}

function parseRule(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError('`--rule` is JSON: {"claims": {"sub": "..."}, "agent_id": "..."}');
  }
}

/** `writ issuer add|list|show|remove`: trusted workload-identity issuers (federation). */
export const issuer = group('issuer', ISSUER_USAGE, {
  async add(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'issuer', 'kind', 'audience', 'jwks', 'jwks-uri', 'rules'], lists: ['rule'] });
    positionals(args, []);
    const body: Record<string, unknown> = { issuer: requireFlag(args, 'issuer'), audience: requireFlag(args, 'audience') };
    const kind = flag(args, 'kind');
    if (kind !== undefined) {
      if (kind !== 'oidc' && kind !== 'spiffe') throw new UsageError('`--kind` is `oidc` or `spiffe`');
      body.kind = kind;
    }
    const jwks = flag(args, 'jwks');
    const jwksUri = flag(args, 'jwks-uri');
    if ((jwks === undefined) === (jwksUri === undefined)) throw new UsageError('give exactly one of `--jwks FILE` and `--jwks-uri URL`');
    if (jwks !== undefined) {
      const v = readJsonFile(jwks, 'JWKS file') as { keys?: unknown; kty?: unknown };
      if (v && typeof v === 'object' && Array.isArray(v.keys)) body.jwks = v;
      else if (v && typeof v === 'object' && typeof v.kty === 'string') body.jwks = { keys: [v] };
      else throw new CliError('invalid_jwks', `\`${jwks}\` is neither a JWKS (\`{"keys": [...]}\`) nor a JWK`);
    } else {
      body.jwks_uri = jwksUri;
    }
    const rules: unknown[] = list(args, 'rule').map(parseRule);
    const file = flag(args, 'rules');
    if (file !== undefined) {
      const v = readJsonFile(file, 'rules file');
      if (!Array.isArray(v)) throw new CliError('invalid_rules', `rules file \`${file}\` must hold a JSON array of rules`);
      rules.push(...v);
    }
    if (rules.length === 0) throw new UsageError('at least one `--rule JSON` (or `--rules FILE`) is required');
    body.rules = rules;
    print(await request(baseUrl(args), 'POST', '/v1/issuers', { token: operatorToken(args), json: body }));
  },

  async list(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    positionals(args, []);
    print(await request(baseUrl(args), 'GET', '/v1/issuers', { token: operatorToken(args) }));
  },

  async show(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    const [id] = positionals(args, ['ID']);
    print(await request(baseUrl(args), 'GET', `/v1/issuers/${seg(id!)}`, { token: operatorToken(args) }));
  },

  async remove(argv) {
    const args = parseArgs(argv, { values: CONNECTION, switches: ['keep-issued'] });
    const [id] = positionals(args, ['ID']);
    const query = hasSwitch(args, 'keep-issued') ? '?keep_issued=true' : '';
    print(await request(baseUrl(args), 'DELETE', `/v1/issuers/${seg(id!)}${query}`, { token: operatorToken(args) }));
  },
});
