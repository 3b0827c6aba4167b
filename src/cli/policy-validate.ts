import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { WritError } from '../core/errors.js';
import { unknownArgumentWarnings, type ToolSchema } from '../policy/argument-check.js';
import { formatDiagnostic, type PolicyDiagnostic } from '../policy/diagnostics.js';
import { checkPolicyText, tagsRead } from '../policy/engine.js';
import { CliError } from './client.js';

/** Reads a file (or stdin for `-`) as UTF-8; a typed error naming it otherwise. */
export function readText(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new CliError('read_failed', `cannot read \`${file}\`: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

const toolSchema = z.object({ name: z.string().min(1), inputSchema: z.unknown().optional() }).passthrough();
/** a `tools/list` result (MCP), the JSON-RPC response around it, or a bare list */
const toolsFile = z.union([
  z.array(toolSchema),
  z.object({ tools: z.array(toolSchema) }).passthrough(),
  z.object({ result: z.object({ tools: z.array(toolSchema) }).passthrough() }).passthrough(),
]);

/** Tool input schemas from `--tools FILE` (JSON: what `tools/list` returns). */
export function readToolSchemas(file: string): ToolSchema[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readText(file));
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError('invalid_tools_file', `\`${file}\` is not JSON: ${(err as Error).message}`);
  }
  const r = toolsFile.safeParse(raw);
  if (!r.success) throw new CliError('invalid_tools_file', `\`${file}\` is not a tools/list result (\`{"tools": [{"name", "inputSchema"}]}\`)`);
  const d = r.data;
  return Array.isArray(d) ? d : 'tools' in d ? (d.tools as ToolSchema[]) : (d.result.tools as ToolSchema[]);
}

export interface ValidationReport {
  ok: boolean;
  ids: string[];
  diagnostics: PolicyDiagnostic[];
  /** a line that is neither error nor warning (no tool schemas known, ...) */
  notes: string[];
}

/**
 * Checks a policy file as the server would before storing it (complexity scan, parse,
 * schema validation, annotations), without a server; with `tools`, also that every
 * argument a policy reads by name is one some tool has.
 */
export function validatePolicyText(text: string, tools: ToolSchema[] | null): ValidationReport {
  let checked;
  try {
    checked = checkPolicyText(text);
  } catch (err) {
    if (!(err instanceof WritError)) throw err;
    const details = err.details as { diagnostics?: PolicyDiagnostic[]; policy_id?: string } | undefined;
    const diagnostics = details?.diagnostics?.length
      ? details.diagnostics
      : [{ severity: 'error' as const, policy_id: details?.policy_id ?? null, message: err.message, line: null, column: null, excerpt: null }];
    return { ok: false, ids: [], diagnostics, notes: [] };
  }
  const diagnostics = [...checked.warnings];
  const notes: string[] = [];
  const json = Object.values(checked.json);
  const readsNamedArgs = (['args', 'num_args'] as const).some((a) => (tagsRead(json, a)?.size ?? 0) > 0);
  if (tools && tools.length > 0) {
    const policies = checked.ids.map((id) => ({ id, json: checked.json[id]!, text: checked.parts[id]!, offset: checked.offsets[id]! }));
    diagnostics.push(...unknownArgumentWarnings(text, policies, tools));
  } else if (readsNamedArgs) {
    notes.push('note: no tool input schemas are known (pass --tools FILE, a tools/list result), so argument names were not checked');
  }
  return { ok: true, ids: checked.ids, diagnostics, notes };
}

/** Prints a report as a compiler would (diagnostics on stderr, a summary on stdout); returns the exit code. */
export function printValidation(file: string, r: ValidationReport): number {
  for (const d of r.diagnostics) process.stderr.write(`${formatDiagnostic(d, file)}\n`);
  for (const n of r.notes) process.stderr.write(`${n}\n`);
  const errors = r.diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = r.diagnostics.length - errors;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  if (!r.ok) {
    process.stderr.write(`${file}: invalid (${plural(errors, 'error')}, ${plural(warnings, 'warning')})\n`);
    return 1;
  }
  process.stdout.write(`${file}: valid (${plural(r.ids.length, 'policy').replace('policys', 'policies')}, ${plural(warnings, 'warning')})\n`);
  return 0;
}
