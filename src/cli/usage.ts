/**
 * Usage text for every command, kept apart from the command modules so that
 * `writ --help` loads none of them.
 */

import { APPROVALS_USAGE, BREAK_GLASS_USAGE, PRESENCE_USAGE } from './usage-escalations.js';
import { GATEWAY_USAGE } from './usage-gateway.js';

export const COMMON = `common options:
  --url URL      the Writ server (env WRIT_URL, default http://127.0.0.1:8080)
  --token TOKEN  an operator token (env WRIT_TOKEN)
  --help         this command's usage
output: JSON on stdout; errors on stderr as \`writ <cmd>: <code>: <message>\`, exit 1 (usage errors exit 2)`;

export const SERVE_USAGE = 'writ serve [--host 127.0.0.1] [--port 8080] [--data-dir .writ] [--issuer URL] [--tls-cert cert.pem --tls-key key.pem] [--gateway gateway.json] [--log-format json|pretty] [--config settings.json]';

export const AGENT_USAGE: Record<string, string> = {
  keygen: 'writ agent keygen [--alg EdDSA|ES256] --out FILE [--force]\n    writes the private JWK to FILE (mode 0600), prints the public JWKS',
  assertion:
    'writ agent assertion --agent ID --key FILE\n' +
    '    signs an RFC 7523 client assertion (one minute, single-use) with the private JWK in FILE and prints it,\n' +
    '    for a client that posts it to /oauth/token itself; `writ token` does both',
  register: 'writ agent register --id ID [--name NAME] (--jwks FILE | --key FILE) [--label LABEL ...]',
  list: 'writ agent list',
  show: 'writ agent show ID',
  disable: 'writ agent disable ID',
};

export const TASK_USAGE: Record<string, string> = {
  create:
    'writ task create --agent ID --intent TEXT --tool PATTERN [--tool PATTERN ...] --ttl SECONDS --max-actions N\n' +
    '                 [--resource PATTERN ...] [--destination PATTERN ...] [--require-presence]',
  list: 'writ task list [--agent ID] [--status active|completed|revoked|expired] [--limit N]',
  show: 'writ task show ID',
  revoke: 'writ task revoke ID [--reason TEXT]',
  complete: 'writ task complete ID [--task-token T]',
  presence: PRESENCE_USAGE,
};

export const AUDIT_USAGE: Record<string, string> = {
  list: 'writ audit list [--task ID] [--agent ID] [--type TYPE] [--decision ID] [--after SEQ] [--limit N]',
  checkpoint: 'writ audit checkpoint [--out FILE]   (a signed statement of the chain head; keep it outside Writ)',
  verify:
    'writ audit verify [--data-dir DIR [--audit-key FILE]] [--checkpoint FILE ...]\n' +
    '    with --data-dir: opens DIR/writ.db (or WRIT_DATABASE_URL when set) directly and verifies offline;\n' +
    '    --audit-key pins the checkpoint key (the JSON of GET /.well-known/writ-audit-key) instead of the store\'s;\n' +
    '    otherwise asks the server. With --checkpoint, the chain must also agree with each signed checkpoint\n' +
    '    (catches a rewritten database and a cut-off tail). Exit 0 when the chain is intact, 1 when broken\n' +
    'writ audit verify --offline FILE --key KEY\n' +
    '    no server, no database: FILE is an export or a .tlog-proof file, KEY the note verifier key\n' +
    '    (`writ audit key`, or a file holding it). Checks the chain, the Merkle tree, every checkpoint\n' +
    '    signature and their consistency; reports the exact entry or checkpoint at fault. Exit 0 or 1',
  key: 'writ audit key   (the note verifier key that signs audit checkpoints; pin it for offline verification)',
  export: 'writ audit export [--since TIME] [--until TIME] [--format jsonl|ocsf] [--out FILE]   (TIME: ISO 8601 or epoch ms)',
  prove: 'writ audit prove <decision id | entry index> [--out FILE]   (the entry, its inclusion proof and the signed checkpoint: C2SP tlog-proof)',
  trace: 'writ audit trace <decision id | action token | task id> [--json]   (the story of an action, each step with its log index)',
};

export const POLICY_USAGE: Record<string, string> = {
  get: 'writ policy get [--text]   (--text prints only the Cedar policy text)',
  set:
    'writ policy set FILE [--if-match VERSION] [--shadow]   (FILE of Cedar policies; `-` reads stdin; with --if-match, only if VERSION is still active;\n' +
    '    with --shadow, FILE becomes the shadow candidate, evaluated beside the live set and not enforced; --if-match then names the candidate it replaces)',
  diff: 'writ policy diff A B       (unified diff of two versions; `current` is the active one, a path a file; exit 1 when they differ)',
  rollback: 'writ policy rollback VERSION   (make an earlier version active again, if the active one did not change meanwhile)',
  simulate:
    'writ policy simulate FILE --since 7d [--limit N] [--examples N]   (replay the decisions recorded since then under FILE,\n' +
    '    without setting it: what would change, by tool and reason, with examples, and what could not be replayed and why)',
  'shadow-report': 'writ policy shadow-report [--limit N] [--examples N]   (where the shadow candidate\'s decisions differed from the live ones: by tool and reason, with examples)',
  shadow:
    'writ policy shadow report|promote|drop [--if-match VERSION]   (promote: the candidate becomes live, if neither it nor the live version changed\n' +
    '    since read; drop: remove the candidate, with --if-match only while it is VERSION)',
  validate:
    'writ policy validate FILE [--tools TOOLS.json]   (no server: parse and validate as the server would; with --tools, a\n' +
    '    tools/list result, warn on arguments no tool has. Diagnostics as FILE:LINE:COL. Exit 1 on an error)',
  test:
    'writ policy test FILE --cases DIR   (no server: decide each JSON case under DIR with FILE; TAP output;\n' +
    '    the exit code is the number of failing cases)',
};

export const KEYS_USAGE: Record<string, string> = {
  list: 'writ keys list',
  rotate: 'writ keys rotate   (new signing key; the old ones stay in the JWKS until every token they signed has expired)',
};

export const TOOL_LABELS_USAGE: Record<string, string> = {
  list: 'writ tool-labels list',
  set: 'writ tool-labels set PATTERN [--label L ...]   (no --label removes the entry; e.g. `github.delete_*` --label sensitive)',
};

export const OPERATOR_USAGE: Record<string, string> = {
  create: 'writ operator create --name NAME --role admin|approver|auditor|requester [--role ...]',
  list: 'writ operator list   (each operator with its status and token expiry)',
  disable: 'writ operator disable ID   (its token stops working; the last enabled admin cannot be disabled)',
  rotate: 'writ operator rotate ID   (a new token, shown once; the old one stops working)',
  recover:
    'writ operator recover --name NAME [--data-dir .writ] [--config FILE]   (no admin token works any more: a new admin written\n' +
    '    straight into the store on this host, token shown once, audited as operator.recovered; PostgreSQL when WRIT_DATABASE_URL is set)',
};

export const SINGLE_USAGE: Record<string, string> = {
  token:
    'writ token --agent ID --key FILE --task TASK_ID [--dpop-key FILE]\n' +
    '    signs an RFC 7523 client assertion with the private JWK in FILE and exchanges it for a task token;\n' +
    '    --dpop-key: bound to that key (RFC 9449 DPoP, `token_type: DPoP`), usable only with proofs by it',
  authorize: 'writ authorize --task-token T --tool NAME --audience AUD [--args JSON] [--resource R] [--destination D] [--dpop-key FILE]',
  consume: 'writ consume --action-token T --audience AUD',
  outcome: 'writ outcome --task-token T --decision ID --status succeeded|failed [--detail TEXT] [--dpop-key FILE]',
  introspect: 'writ introspect TOKEN',
  delegate:
    'writ delegate --task-token T --task PARENT_ID --agent ID --intent TEXT --tool PATTERN [--tool ...] --ttl SECONDS --max-actions N\n' +
    '              [--resource PATTERN ...] [--destination PATTERN ...]\n' +
    '    gives a narrower sub-task of PARENT_ID (held with task token T) to another agent',
  'token-exchange':
    'writ token-exchange --subject-token JWT|@FILE --task TASK_ID\n' +
    '    exchanges an OIDC workload token or SPIFFE JWT-SVID from a trusted issuer for a task token (RFC 8693)',
};

export const ISSUER_USAGE: Record<string, string> = {
  add:
    'writ issuer add --issuer URL|spiffe://TRUST_DOMAIN [--kind oidc|spiffe] --audience AUD (--jwks FILE | --jwks-uri URL)\n' +
    '                (--rule \'{"claims":{"sub":"..."},"agent_id":"..."}\' ... | --rules FILE)',
  list: 'writ issuer list',
  show: 'writ issuer show ID',
  remove:
    'writ issuer remove ID [--keep-issued]   (disables it: its tokens are refused at once, and the task tokens\n' +
    '                obtained through it stop working; --keep-issued lets those run until they expire)',
};

/**
 * Each subcommand's synopsis, indented: the first line of its usage (which names every
 * required option), and any further `writ ...` line (one entry may hold two forms).
 */
function group(subs: Record<string, string>): string {
  return Object.values(subs)
    .flatMap((u) => u.split('\n').filter((line, i) => i === 0 || line.trimStart().startsWith('writ ')))
    .map((line) => `  ${line.trimStart()}`)
    .join('\n');
}

export function groupUsage(subs: Record<string, string>): string {
  return `usage:\n${Object.values(subs).map((u) => `  ${u}`).join('\n')}\n${COMMON}`;
}

export const USAGE = `usage:
  ${SERVE_USAGE}
  writ migrate [--data-dir .writ] [--config settings.json]   apply schema migrations (PostgreSQL when WRIT_DATABASE_URL is set)
operators:
${group(AGENT_USAGE)}
${group(TASK_USAGE)}
${group(POLICY_USAGE)}
${group(OPERATOR_USAGE)}
${group(TOOL_LABELS_USAGE)}
${group(KEYS_USAGE)}
${group(ISSUER_USAGE)}
${group(AUDIT_USAGE)}
${group(APPROVALS_USAGE)}
${group(BREAK_GLASS_USAGE)}
  ${SINGLE_USAGE.introspect}
gateway (between agents and their tools):
${group(GATEWAY_USAGE)}
agents and tool servers:
  ${SINGLE_USAGE.token!.split('\n')[0]}
  ${SINGLE_USAGE.authorize}
  ${SINGLE_USAGE.consume}
  ${SINGLE_USAGE.outcome}
  ${SINGLE_USAGE['token-exchange']!.split('\n')[0]}
  ${SINGLE_USAGE.delegate!.split('\n')[0]}
other:
  writ help [<command> [<subcommand>]]   a command's usage (also: writ <command> [<subcommand>] --help)
  writ --version                       the version of writ
${COMMON}`;
