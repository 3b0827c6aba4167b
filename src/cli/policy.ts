import { readFileSync } from 'node:fs';
import { WritError } from '../core/errors.js';
import { PolicyEngine } from '../policy/engine.js';
import { flag, hasSwitch, intFlag, parseArgs, positionals, requireFlag, UsageError } from './args.js';
import { diffPolicyText } from '../policy/policy-diff.js';
import { baseUrl, CliError, CONNECTION, operatorToken, print, request, seg } from './client.js';
import { group } from './command.js';
import { loadCases, runCases } from './policy-test.js';
import { printValidation, readText, readToolSchemas, validatePolicyText } from './policy-validate.js';
import { POLICY_USAGE } from './usage.js';

/** `writ policy get|set|diff|rollback|simulate|shadow-report|shadow|validate|test`. A rejected set prints Cedar's diagnostics (error.details) on stderr. */
export const policy = group('policy', POLICY_USAGE, {
  async get(argv) {
    const args = parseArgs(argv, { values: CONNECTION, switches: ['text'] });
    positionals(args, []);
    const r = await request(baseUrl(args), 'GET', '/v1/policies', { token: operatorToken(args) });
    if (hasSwitch(args, 'text')) process.stdout.write(String(r.policies).endsWith('\n') ? r.policies : `${r.policies}\n`);
    else print(r);
  },

  async set(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'if-match'], switches: ['shadow'] });
    const [file] = positionals(args, ['FILE']);
    const base = baseUrl(args);
    const token = operatorToken(args);
    let text: string;
    try {
      text = readFileSync(file === '-' ? 0 : file!, 'utf8');
    } catch (err) {
      throw new CliError('read_failed', `cannot read \`${file}\`: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      const ifMatch = flag(args, 'if-match');
      // --shadow: the candidate evaluated beside the live set (--if-match then names the candidate it replaces)
      const query = hasSwitch(args, 'shadow') ? { mode: 'shadow' } : undefined;
      print(await request(base, 'PUT', '/v1/policies', { token, json: { policies: text }, ...(query ? { query } : {}), ...(ifMatch ? { headers: { 'if-match': `"${ifMatch}"` } } : {}) }));
    } catch (err) {
      // the diagnostics name the file, as a compiler's do
      if (!(err instanceof CliError) || err.notes.length === 0) throw err;
      throw new CliError(err.code, err.message, { status: err.status, details: err.details, notes: err.notes.map((n) => n.replace(/^<policy>/, file === '-' ? '<stdin>' : file!)) });
    }
  },

  /** The unified diff between two versions (`current` is the active one; a path to a file also works). */
  async diff(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    const [a, b] = positionals(args, ['A', 'B']);
    const base = baseUrl(args);
    const token = operatorToken(args);
    const textOf = async (v: string): Promise<string> => {
      if (v === 'current') return (await request(base, 'GET', '/v1/policies', { token, query: { limit: 1 } })).policies;
      if (v.includes('/') || v.includes('.')) return readText(v);
      return (await request(base, 'GET', `/v1/policies/${seg(v)}`, { token })).policies;
    };
    const d = diffPolicyText(await textOf(a!), await textOf(b!));
    process.stdout.write(d === '' ? '' : `--- ${a}\n+++ ${b}\n${d}`);
    // as diff(1): 1 when they differ
    return d === '' ? 0 : 1;
  },

  /**
   * Makes an earlier version active again: its text is stored anew (the same checks as
   * `set`), conditional on the version active when it was read (If-Match), so a change
   * made meanwhile is not silently undone.
   */
  async rollback(argv) {
    const args = parseArgs(argv, { values: CONNECTION });
    const [version] = positionals(args, ['VERSION']);
    const base = baseUrl(args);
    const token = operatorToken(args);
    const current = await request(base, 'GET', '/v1/policies', { token, query: { limit: 1 } });
    if (current.version === version) throw new CliError('already_active', `version \`${version}\` is the active one`);
    const target = await request(base, 'GET', `/v1/policies/${seg(version!)}`, { token });
    print(await request(base, 'PUT', '/v1/policies', { token, json: { policies: target.policies }, headers: { 'if-match': `"${current.version}"` } }));
  },

  /** Replays the decisions recorded since `--since` (7d, 12h, 30m or RFC 3339) under FILE, without setting it. */
  async simulate(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'since', 'limit', 'examples'] });
    const [file] = positionals(args, ['FILE']);
    const since = sinceTime(requireFlag(args, 'since'), Date.now());
    const limit = intFlag(args, 'limit', 1);
    const examples = intFlag(args, 'examples', 0);
    print(
      await request(baseUrl(args), 'POST', '/v1/policies/simulate', {
        token: operatorToken(args),
        json: { policies: readText(file!), since, ...(limit !== undefined ? { limit } : {}), ...(examples !== undefined ? { examples } : {}) },
      }),
    );
  },

  /** Where the shadow candidate's decisions differ from the live ones (counts by tool and reason, examples). */
  async 'shadow-report'(argv) {
    const args = parseArgs(argv, { values: [...CONNECTION, 'limit', 'examples'] });
    positionals(args, []);
    print(await request(baseUrl(args), 'GET', '/v1/policies/shadow', { token: operatorToken(args), query: { limit: intFlag(args, 'limit', 1), examples: intFlag(args, 'examples', 0) } }));
  },

  /**
   * `shadow report` (as `shadow-report`), `shadow promote` (the candidate becomes live, if
   * neither the live version nor the candidate changed since they were read) and
   * `shadow drop` (removes the candidate; with --if-match, only while it is that version).
   */
  async shadow(argv) {
    const [action, ...rest] = argv;
    if (action === 'report') return policy(['shadow-report', ...rest], { label: 'policy shadow report' });
    const args = parseArgs(rest, { values: [...CONNECTION, 'if-match'] });
    positionals(args, []);
    const base = baseUrl(args);
    const token = operatorToken(args);
    if (action === 'promote') {
      const live = await request(base, 'GET', '/v1/policies', { token, query: { limit: 1 } });
      const candidate = flag(args, 'if-match') ?? (await request(base, 'GET', '/v1/policies/shadow', { token, query: { limit: 1, examples: 0 } })).candidate.version;
      print(await request(base, 'POST', '/v1/policies/shadow/promote', { token, json: { version: candidate }, headers: { 'if-match': `"${live.version}"` } }));
      return;
    }
    if (action === 'drop') {
      const ifMatch = flag(args, 'if-match');
      print(await request(base, 'DELETE', '/v1/policies/shadow', { token, ...(ifMatch ? { headers: { 'if-match': `"${ifMatch}"` } } : {}) }));
      return;
    }
    throw new UsageError(action === undefined ? 'missing argument ACTION (report, promote or drop)' : `unknown shadow action \`${action}\` (report, promote or drop)`);
  },

  /** No server: the checks the server makes before storing, and argument names against tool schemas. */
  async validate(argv) {
    const args = parseArgs(argv, { values: ['tools'] });
    const [file] = positionals(args, ['FILE']);
    const tools = flag(args, 'tools');
    return printValidation(file!, validatePolicyText(readText(file!), tools ? readToolSchemas(tools) : null));
  },

  /** No server: each case's request decided under FILE, as TAP; the exit code is the number of failures. */
  async test(argv) {
    const args = parseArgs(argv, { values: ['cases'] });
    const [file] = positionals(args, ['FILE']);
    const dir = requireFlag(args, 'cases');
    const text = readText(file!);
    const report = validatePolicyText(text, null);
    if (!report.ok) {
      printValidation(file!, report);
      return 1;
    }
    const engine = new PolicyEngine();
    let set;
    try {
      set = engine.prepare(text);
    } catch (err) {
      if (err instanceof WritError) throw err;
      throw new CliError('invalid_policy', `\`${file}\` cannot be loaded: ${(err as Error).message}`);
    }
    const failed = runCases(engine, set, loadCases(dir), (line) => process.stdout.write(`${line}\n`));
    // exit codes are one byte; 125 and up mean other things to shells
    return Math.min(failed, 120);
  },
});

/** `7d`, `12h`, `30m`, `90s` before `nowMs`, or an RFC 3339 time, as RFC 3339. */
export function sinceTime(value: string, nowMs: number): string {
  const m = /^(\d{1,6})([smhd])$/.exec(value);
  if (m) return new Date(nowMs - Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as 's' | 'm' | 'h' | 'd'] * 1000).toISOString();
  if (/^\d{4}-\d{2}-\d{2}T/.test(value) && !Number.isNaN(Date.parse(value))) return value;
  throw new UsageError(`--since takes a duration (\`7d\`, \`12h\`, \`30m\`) or an RFC 3339 time, not \`${value}\``);
}
