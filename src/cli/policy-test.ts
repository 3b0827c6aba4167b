import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { digestArguments } from '../core/digest.js';
import type { AgentRecord, TaskRecord } from '../core/types.js';
import { decideOnFacts, type PolicyOutcome } from '../policy/decide-offline.js';
import type { LoadedPolicySet, PolicyEngine } from '../policy/engine.js';
import { checkScope } from '../core/scope.js';
import { CliError } from './client.js';
import { readText } from './policy-validate.js';

/**
 * A policy test case: one request, as the facts policy sees (README, Policy tests), and
 * the decision expected. JSON only: a YAML parser is a dependency this project avoids,
 * and a case file is short enough to write as JSON.
 */
const taskFacts = z
  .object({
    id: z.string().min(1).default('task_test'),
    intent: z.string().default('test'),
    owner: z.string().min(1).default('op_test'),
    scope: z
      .object({ tools: z.array(z.string()).default(['*']), resources: z.array(z.string()).default([]), destinations: z.array(z.string()).default([]) })
      .strict()
      .optional(),
    depth: z.number().int().min(0).default(0),
    actions_used: z.number().int().min(0).default(0),
    max_actions: z.number().int().min(1).default(100),
    root: z.object({ id: z.string().min(1), intent: z.string().default('test'), owner: z.string().min(1) }).strict().optional(),
    chain: z.array(z.string()).default([]),
  })
  .strict();

export const policyCaseSchema = z
  .object({
    name: z.string().min(1).optional(),
    request: z
      .object({
        agent: z
          .object({ id: z.string().min(1).default('spiffe://test.invalid/agent'), name: z.string().default('test-agent'), labels: z.array(z.string()).default([]) })
          .strict()
          .prefault({}),
        task: taskFacts.prefault({}),
        tool: z.string().min(1),
        arguments: z.record(z.string(), z.unknown()).default({}),
        audience: z.string().min(1).optional(),
        resource: z.string().optional(),
        destination: z.string().optional(),
        tool_labels: z.array(z.string()).default([]),
        owner_present: z.boolean().default(true),
        approval: z.object({ granted: z.boolean(), approvers: z.number().int().min(0) }).strict().optional(),
        break_glass: z.boolean().default(false),
        /** when the request is made (RFC 3339); policies reading `context.time` need it */
        time: z.string().datetime({ offset: true }).default('2026-01-01T12:00:00Z'),
      })
      .strict(),
    expect: z
      .object({
        decision: z.enum(['allow', 'deny']),
        /** reason codes, all of them, in order (`policy_forbids`, `no_policy_permits`, `tool_out_of_scope`, ...) */
        reasons: z.array(z.string()).optional(),
        /** determining policy ids, in any order */
        policies: z.array(z.string()).optional(),
      })
      .strict(),
  })
  .strict();

export type PolicyCase = z.infer<typeof policyCaseSchema>;

/** One case file holds a case, a list of cases, or `{"cases": [...]}`. */
const caseFile = z.union([z.array(policyCaseSchema), z.object({ cases: z.array(policyCaseSchema) }).strict(), policyCaseSchema]);

export interface LoadedCase {
  label: string;
  testCase: PolicyCase | null;
  /** why the file or case could not be read */
  problem?: string;
}

/** The case files under `dir` (recursively, sorted), each parsed; a file that fails is one failing entry. */
export function loadCases(dir: string): LoadedCase[] {
  let files: string[];
  try {
    files = statSync(dir).isDirectory() ? listFiles(dir) : [dir];
  } catch (err) {
    throw new CliError('read_failed', `cannot read \`${dir}\`: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const out: LoadedCase[] = [];
  for (const file of files) {
    if (/\.ya?ml$/i.test(file)) {
      out.push({ label: file, testCase: null, problem: 'YAML case files are not supported: write the case as JSON (the same fields)' });
      continue;
    }
    if (!file.endsWith('.json')) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(readText(file));
    } catch (err) {
      out.push({ label: file, testCase: null, problem: `not JSON: ${(err as Error).message}` });
      continue;
    }
    const r = caseFile.safeParse(raw);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      out.push({ label: file, testCase: null, problem: `not a test case: \`${issue.path.join('.') || '(top)'}\`: ${issue.message}` });
      continue;
    }
    const cases = Array.isArray(r.data) ? r.data : 'cases' in r.data ? r.data.cases : [r.data];
    cases.forEach((c, i) => out.push({ label: `${file}${cases.length > 1 ? `#${i + 1}` : ''}${c.name ? `: ${c.name}` : ''}`, testCase: c }));
  }
  if (out.length === 0) throw new CliError('no_cases', `no \`.json\` case files under \`${dir}\``);
  return out;
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out;
}

/** What Writ would decide for the case under `set`: the scope and budget checks, then policy. */
export function decideCase(engine: PolicyEngine, set: LoadedPolicySet, c: PolicyCase): PolicyOutcome {
  const r = c.request;
  const now = Date.parse(r.time);
  const t = r.task;
  const scope = t.scope ?? { tools: ['*'], resources: [], destinations: [] };
  const action = { tool: r.tool, arguments: r.arguments, audience: r.audience ?? `mcp:${r.tool.split('.')[0]}`, resource: r.resource, destination: r.destination };
  const violation = checkScope(scope, action);
  if (violation) return { decision: 'deny', reasons: [violation], policies: [] };
  if (t.actions_used >= t.max_actions) return { decision: 'deny', reasons: [{ code: 'budget_exhausted', message: `the task has used its ${t.max_actions} actions` }], policies: [] };
  const agent: AgentRecord = { id: r.agent.id, name: r.agent.name, labels: r.agent.labels, jwks: { keys: [] }, status: 'active', createdAt: now, createdBy: 'op_test' };
  const task: TaskRecord = {
    id: t.id, agentId: agent.id, owner: t.owner, intent: t.intent, scope, status: 'active', createdAt: now, expiresAt: now + 3_600_000, endedAt: null,
    maxActions: t.max_actions, actionsUsed: t.actions_used, actionsReserved: 0, parentId: t.root ? t.root.id : null, rootId: t.root?.id ?? t.id, depth: t.depth,
  };
  const root: TaskRecord | undefined = t.root ? { ...task, id: t.root.id, intent: t.root.intent, owner: t.root.owner, parentId: null, rootId: t.root.id, depth: 0 } : undefined;
  return decideOnFacts(engine, set, {
    agent, task, root, chain: t.chain, action, argsDigest: digestArguments(r.arguments), now, toolLabels: r.tool_labels,
    approval: r.approval, breakGlass: r.break_glass, ownerPresent: r.owner_present,
  });
}

/** Where a result differs from the expectation (null when it matches). */
export function caseMismatch(c: PolicyCase, got: PolicyOutcome): string | null {
  const e = c.expect;
  const problems: string[] = [];
  if (got.decision !== e.decision) problems.push(`decision: expected ${e.decision}, got ${got.decision}`);
  const codes = got.reasons.map((r) => r.code);
  if (e.reasons && JSON.stringify(e.reasons) !== JSON.stringify(codes)) problems.push(`reasons: expected ${JSON.stringify(e.reasons)}, got ${JSON.stringify(codes)}`);
  if (e.policies && JSON.stringify([...e.policies].sort()) !== JSON.stringify([...got.policies].sort())) {
    problems.push(`policies: expected ${JSON.stringify(e.policies)}, got ${JSON.stringify(got.policies)}`);
  }
  return problems.length > 0 ? problems.join('; ') : null;
}

/** Runs every case and prints TAP (version 14); returns how many failed. */
export function runCases(engine: PolicyEngine, set: LoadedPolicySet, cases: LoadedCase[], write: (line: string) => void): number {
  write('TAP version 14');
  write(`1..${cases.length}`);
  let failed = 0;
  cases.forEach((c, i) => {
    const n = i + 1;
    const title = c.label.replace(/#/g, '\\#');
    let problem = c.problem ?? null;
    let got: PolicyOutcome | null = null;
    if (!problem && c.testCase) {
      got = decideCase(engine, set, c.testCase);
      problem = caseMismatch(c.testCase, got);
    }
    if (!problem) {
      write(`ok ${n} - ${title}`);
      return;
    }
    failed += 1;
    write(`not ok ${n} - ${title}`);
    write('  ---');
    write(`  message: ${JSON.stringify(problem)}`);
    if (got) write(`  got: ${JSON.stringify({ decision: got.decision, reasons: got.reasons, policies: got.policies })}`);
    write('  ...');
  });
  write(`# pass ${cases.length - failed}`);
  write(`# fail ${failed}`);
  return failed;
}
