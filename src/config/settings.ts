import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { InvalidRequestError } from '../core/errors.js';

/**
 * The one configuration of `writ serve` and `writ migrate`: every setting, where it may come
 * from (a flag, the environment, a JSON file), its default and what it means. Read once, at
 * the edge (the CLI), by `readSettings`; nothing else under src/ reads the environment for these.
 * `docs/configuration.md` is generated from this table (`npm run docs:config`); a test fails
 * when the two drift. The values stay text here: each is checked (and its error worded) by
 * the parser of the part that uses it, so a bad value is refused exactly as before.
 */
interface Setting {
  /** the command-line flag of `writ serve`, when there is one */
  flag?: string;
  /** as documented (not applied here: the part that reads the setting applies it) */
  default: string;
  description: string;
  section: 'service' | 'store' | 'limits' | 'policy' | 'escalations' | 'federation' | 'audit' | 'operations';
}

export const SETTINGS = {
  WRIT_HOST: { flag: 'host', default: '127.0.0.1', section: 'service', description: 'listen address' },
  WRIT_PORT: { flag: 'port', default: '8080', section: 'service', description: 'listen port' },
  WRIT_ISSUER: { flag: 'issuer', default: 'http://<host>:<port>', section: 'service', description: '`iss` of every token and the audience of client assertions; the public URL behind a proxy (all instances share it)' },
  WRIT_GATEWAY_CONFIG: { flag: 'gateway', default: 'unset', section: 'service', description: 'also run the MCP gateway of this configuration file inside the service, deciding in-process' },
  WRIT_TLS_CERT: { flag: 'tls-cert', default: 'unset', section: 'service', description: 'serve HTTPS with this PEM certificate chain (with `WRIT_TLS_KEY`); the default issuer becomes `https://…`' },
  WRIT_TLS_KEY: { flag: 'tls-key', default: 'unset', section: 'service', description: 'the PEM private key of `WRIT_TLS_CERT`' },
  WRIT_BOOTSTRAP_TOKEN: { default: 'generated', section: 'service', description: 'the first admin operator token of a new store (refused when weaker than 128 bits)' },
  WRIT_KEY_ENCRYPTION_KEY: { default: 'unset', section: 'service', description: 'a secret (at least 32 characters) that seals private signing keys at rest; every instance needs the same one' },
  WRIT_DATA_DIR: { flag: 'data-dir', default: '.writ', section: 'store', description: 'SQLite store directory (created 0700)' },
  WRIT_DATABASE_URL: { default: 'unset', section: 'store', description: '`postgres://…` selects PostgreSQL instead of SQLite' },
  WRIT_DATABASE_SCHEMA: { default: 'public', section: 'store', description: 'the PostgreSQL schema the tables live in' },
  PGUSER: { default: 'the operating-system user', section: 'store', description: 'the PostgreSQL user when `WRIT_DATABASE_URL` names none (as libpq and psql)' },
  WRIT_TASK_TOKEN_TTL: { default: '600', section: 'service', description: 'the longest a task token lives, in seconds (1 to 900; never past its task); agents renew before it ends' },
  WRIT_OPERATOR_TOKEN_TTL: { default: '90d', section: 'service', description: 'how long an operator token works after it is issued or rotated: seconds, or a number with s/m/h/d (60 s to 3650 d)' },
  WRIT_FAILURE_LIMIT: { default: '1000/10', section: 'limits', description: '`MAX/SECONDS`: failed requests one client address may make without a valid credential per window (then 429)' },
  WRIT_CREDENTIAL_FAILURE_LIMIT: { default: '1000/10', section: 'limits', description: '`MAX/SECONDS`: failed requests one valid credential may make per window (then 429)' },
  WRIT_TRUSTED_PROXIES: { default: 'unset', section: 'limits', description: 'comma-separated addresses and CIDR ranges of proxies whose `X-Forwarded-For` names the client' },
  WRIT_TASK_REFUSAL_LIMIT: { default: '20/1', section: 'limits', description: '`MAX/SECONDS`: denied or approval-requiring answers one task may get per window (then 429 `rate_limited`)' },
  WRIT_VISIBLE_TOOLS_MAX: { default: '256', section: 'limits', description: 'the most tools one `POST /v1/tools/visible` may list (then 400 `too_many_tools`; at most 10000)' },
  WRIT_VISIBLE_TOOLS_LIMIT: { default: '30/10', section: 'limits', description: '`MAX/SECONDS`: `POST /v1/tools/visible` requests one task may make per window' },
  WRIT_APPROVAL_OPEN_MAX_PER_TASK: { default: '50', section: 'limits', description: 'open approvals one task may have (then 429 `approval_limit`)' },
  WRIT_APPROVAL_OPEN_MAX_PER_AGENT: { default: '200', section: 'limits', description: 'open approvals one agent may have over all its tasks' },
  WRIT_DPOP_NONCES: { default: '0', section: 'limits', description: '`1`: every DPoP proof must carry a server nonce (RFC 9449 §8)' },
  WRIT_POLICY_MAX_DEPTH: { default: '32', section: 'policy', description: 'the deepest a policy expression may nest (at most 64; then 400 `policy_too_complex`)' },
  WRIT_POLICY_MAX_TOKENS: { default: '10000', section: 'policy', description: 'the most tokens one policy may have' },
  WRIT_POLICY_WORKERS: { default: 'auto', section: 'policy', description: 'worker threads that run Cedar for `POST /v1/authorize` (0 to 64; 0: the main thread; `auto`: 1 with two cores or more, else 0)' },
  WRIT_POLICY_WORKER_TIMEOUT_MS: { default: '2000', section: 'policy', description: 'how long one evaluation on a worker may take before the decision fails closed' },
  WRIT_APPROVAL_PENDING_TTL: { default: '900', section: 'escalations', description: 'seconds an approval request waits for reviews' },
  WRIT_APPROVAL_APPROVED_TTL: { default: '300', section: 'escalations', description: 'seconds an approved action may be collected' },
  WRIT_BREAK_GLASS_MAX_SECONDS: { default: '3600', section: 'escalations', description: 'the longest a break-glass may last' },
  WRIT_BREAK_GLASS_CONFIRM: { default: '0', section: 'escalations', description: '`1`: a break-glass needs a second admin to confirm it' },
  WRIT_BREAK_GLASS_WEBHOOK_URL: { default: 'unset', section: 'escalations', description: 'an http(s) URL told of every break-glass' },
  WRIT_PRESENCE_MAX_TTL: { default: '300', section: 'escalations', description: 'the longest (and default) owner presence lease, in seconds' },
  WRIT_MAX_DELEGATION_DEPTH: { default: '3', section: 'federation', description: 'deepest sub-task (root = 0)' },
  WRIT_JWKS_TIMEOUT_MS: { default: '2000', section: 'federation', description: "a trusted issuer's JWKS URL must answer within this, or the exchange fails closed (503)" },
  WRIT_JWKS_COOLDOWN_MS: { default: '30000', section: 'federation', description: 'least time between refetches caused by an unknown `kid`' },
  WRIT_JWKS_CACHE_MAX_AGE_MS: { default: '600000', section: 'federation', description: 'how long a fetched JWKS is used' },
  WRIT_MAX_SUBJECT_TOKEN_LIFETIME: { default: '86400', section: 'federation', description: 'longest subject token accepted, in seconds' },
  WRIT_AUDIT_ARGS: { default: 'masked', section: 'audit', description: 'how decision records keep arguments: `full`, `masked` or `digest`' },
  WRIT_AUDIT_MASK: { default: 'unset', section: 'audit', description: 'more arguments to mask: `tool:path,…`' },
  WRIT_WEBHOOK_URL: { default: 'unset', section: 'operations', description: 'post events from the audit log to this URL (Standard Webhooks)' },
  WRIT_WEBHOOK_SECRET: { default: 'unset', section: 'operations', description: 'the `whsec_…` secret the webhooks are signed with (required with `WRIT_WEBHOOK_URL`)' },
  WRIT_WEBHOOK_EVENTS: { default: 'approval.requested,approval.reviewed,break_glass.*,task.revoked', section: 'operations', description: 'the audit entry types sent (`prefix.*` for a family)' },
  WRIT_WEBHOOK_FORMAT: { default: 'standard', section: 'operations', description: '`standard` (`{type, timestamp, data}`) or `slack`: a Slack-compatible message with the tool, the masked arguments and the command (or link) to approve' },
  WRIT_WEBHOOK_APPROVAL_URL: { default: 'unset', section: 'operations', description: 'with `slack`: a link to review an approval at, `{approval_id}` replaced (`https://console.example.com/approvals/{approval_id}`)' },
  WRIT_SHUTDOWN_GRACE_MS: { default: '30000', section: 'operations', description: 'on SIGTERM/SIGINT, how long in-flight requests get to finish' },
  WRIT_SHUTDOWN_DELAY_MS: { default: '0', section: 'operations', description: 'on SIGTERM, how long `/readyz` answers 503 before the listener closes' },
  WRIT_METRICS_TOKEN: { default: 'unset', section: 'operations', description: 'a bearer token (at least 32 characters) that may read `GET /metrics`' },
  WRIT_METRICS_PORT: { default: 'unset', section: 'operations', description: 'also serve `GET /metrics` without authentication on this separate port' },
  WRIT_METRICS_HOST: { default: '127.0.0.1', section: 'operations', description: 'the address of that metrics listener' },
  WRIT_LOG_LEVEL: { default: 'info', section: 'operations', description: '`trace`, `debug`, `info`, `warn`, `error`, `fatal` or `silent`' },
  OTEL_EXPORTER_OTLP_ENDPOINT: { default: 'unset', section: 'operations', description: 'turns tracing on: OpenTelemetry spans sent over OTLP/HTTP to this base URL (`/v1/traces` appended); unset (with the next one), no tracing code runs' },
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: { default: 'unset', section: 'operations', description: 'turns tracing on: the full OTLP/HTTP traces URL (wins over `OTEL_EXPORTER_OTLP_ENDPOINT`)' },
  OTEL_SERVICE_NAME: { default: 'writ', section: 'operations', description: 'the `service.name` of the spans (`writ-gateway` for `writ gateway`)' },
} as const satisfies Record<string, Setting>;

export type SettingName = keyof typeof SETTINGS;
/** The settings as given (text, or unset); each part parses its own. */
export type Settings = { readonly [K in SettingName]?: string };

const value = z.union([z.string(), z.number(), z.boolean()]).transform(String);

/** The optional configuration file: a JSON object of these names (`{"WRIT_PORT": 8080}`); unknown names are refused. */
export const settingsFileSchema = z.strictObject(Object.fromEntries(Object.keys(SETTINGS).map((k) => [k, value.optional()])) as Record<SettingName, z.ZodOptional<typeof value>>);

/**
 * Flags over the environment over the file. An empty environment value counts as set
 * (each parser treats `''` as before); a flag given counts even when empty.
 */
export function readSettings(sources: { env: NodeJS.ProcessEnv; flags?: Record<string, string | undefined>; file?: string }): Settings {
  let fromFile: Partial<Record<SettingName, string>> = {};
  if (sources.file !== undefined) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(sources.file, 'utf8'));
    } catch (err) {
      throw new InvalidRequestError(`configuration file \`${sources.file}\`: ${(err as Error).message}`);
    }
    const r = settingsFileSchema.safeParse(raw);
    if (!r.success) {
      const i = r.error.issues[0]!;
      throw new InvalidRequestError(`configuration file \`${sources.file}\`: ${i.path.length > 0 ? `\`${i.path.join('.')}\`: ` : ''}${i.message}`.toLowerCase());
    }
    fromFile = r.data;
  }
  const out: Record<string, string | undefined> = {};
  for (const [name, s] of Object.entries(SETTINGS) as [SettingName, Setting][]) {
    const fromFlag = s.flag !== undefined ? sources.flags?.[s.flag] : undefined;
    const v = fromFlag ?? sources.env[name] ?? fromFile[name];
    if (v !== undefined) out[name] = v;
  }
  return out as Settings;
}

/** docs/configuration.md */
export function renderConfigurationDoc(): string {
  const lines = [
    '# Configuration',
    '',
    '<!-- generated from src/config/settings.ts by `npm run docs:config`; edit that file, not this one -->',
    '',
    'Every setting of `writ serve` (and `writ migrate`, which reads the store settings). Each may be',
    'given as an environment variable, as a flag where one is listed, or in a JSON file named by',
    '`--config FILE` (`{"WRIT_PORT": 8080, "WRIT_DATA_DIR": "/var/lib/writ"}`; unknown names are',
    'refused). A flag wins over the environment, the environment over the file.',
    '',
  ];
  const sections = [...new Set(Object.values(SETTINGS).map((s) => s.section))];
  for (const section of sections) {
    lines.push(`## ${section}`, '', '| variable | flag | default | meaning |', '|---|---|---|---|');
    for (const [name, s] of Object.entries(SETTINGS) as [SettingName, Setting][]) {
      if (s.section !== section) continue;
      lines.push(`| \`${name}\` | ${s.flag ? `\`--${s.flag}\`` : ''} | \`${s.default}\` | ${s.description} |`);
    }
    lines.push('');
  }
  lines.push(
    '## the `writ` process',
    '',
    'Read from the environment only, by every `writ` command before it loads anything else:',
    '',
    '| variable | default | meaning |',
    '|---|---|---|',
    '| `WRIT_WASM_TIER_UP` | `1` | `0`: Cedar\'s WebAssembly runs on V8\'s baseline compiler only, without recompiling the functions that turn hot: about 0.9 s less CPU per start for a process that lives briefly (tests, scripts), slower decisions (src/cli/wasm-tiering.ts) |',
    '',
  );
  return lines.join('\n');
}
