import type { AgentRecord, TaskRecord } from '../core/types.js';
import type { CedarRequest } from './engine.js';

export interface ActionInput {
  tool: string;
  arguments: Record<string, unknown>;
  audience: string;
  resource?: string;
  destination?: string;
}

export interface RequestFacts {
  agent: AgentRecord;
  task: TaskRecord;
  /** the root task, for delegated tasks (the task itself otherwise) */
  root?: TaskRecord;
  /** agent ids from the root task's agent down to this task's agent's delegator */
  chain?: string[];
  action: ActionInput;
  argsDigest: string;
  now: number;
  toolLabels?: string[];
  approval?: { granted: boolean; approvers: number };
  breakGlass?: boolean;
  ownerPresent?: boolean;
  /** whether to build the argument tag entities (skipped when no policy reads them) */
  withArgs: boolean;
  /** the arguments flattened already (by the caller's check), to not do it twice */
  flatArgs?: FlatArguments;
}

/** `github.create_issue` -> `github`: the tool's server, and its ToolGroup. */
export function toolServer(tool: string): string {
  const i = tool.indexOf('.');
  return i > 0 ? tool.slice(0, i) : tool;
}

/** Past this many leaves (or this depth) arguments are not flattened: the request is denied. */
export const MAX_ARGUMENT_LEAVES = 2048;
export const MAX_ARGUMENT_DEPTH = 32;

export interface FlatArguments {
  strings: Record<string, string>;
  longs: Record<string, number>;
  /**
   * set when the arguments cannot be shown to policy faithfully: too many leaves, too
   * deep, or two paths that read the same (`{"a": {"b": 1}, "a.b": 2}`); policy would
   * otherwise judge a different call than the one made, so the caller denies
   */
  problem?: { code: 'arguments_too_complex' | 'ambiguous_arguments'; message: string };
}

/**
 * Flattens arguments to scalar leaves keyed by dotted path (`a.b`, `list.0`).
 * Every leaf becomes a string tag; safe integers also a Long tag.
 */
export function flattenArguments(args: Record<string, unknown>): FlatArguments {
  const strings: Record<string, string> = {};
  const longs: Record<string, number> = {};
  let count = 0;
  let problem: FlatArguments['problem'];
  const walk = (value: unknown, path: string, depth: number): void => {
    if (problem) return;
    if (value !== null && typeof value === 'object') {
      if (depth >= MAX_ARGUMENT_DEPTH) {
        problem = { code: 'arguments_too_complex', message: `arguments nest deeper than ${MAX_ARGUMENT_DEPTH} levels` };
        return;
      }
      const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
      for (const [k, v] of entries) walk(v, path ? `${path}.${k}` : k, depth + 1);
      return;
    }
    if (!path) return;
    if (++count > MAX_ARGUMENT_LEAVES) {
      problem = { code: 'arguments_too_complex', message: `arguments have more than ${MAX_ARGUMENT_LEAVES} values` };
      return;
    }
    if (Object.hasOwn(strings, path)) {
      problem = { code: 'ambiguous_arguments', message: `two arguments read as \`${path.slice(0, 200)}\`` };
      return;
    }
    if (typeof value === 'string') strings[path] = value;
    else {
      strings[path] = String(value);
      if (typeof value === 'number' && Number.isSafeInteger(value)) longs[path] = value;
    }
  };
  walk(args, '', 0);
  return problem ? { strings, longs, problem } : { strings, longs };
}

/**
 * The reason to deny when the arguments cannot be judged as policy reads them:
 * flattening failed, or an argument a policy reads as an integer (`num_args`) is
 * present but is not one (`"1000"`, `1000.5`, `1e30`): with no tag, `hasTag` would be
 * false and a `forbid` on the amount would not apply.
 */
export function argumentsProblem(flat: FlatArguments, numericTagsRead: Set<string> | null | false): { code: string; message: string } | null {
  if (flat.problem) return flat.problem;
  if (numericTagsRead === false) return null;
  const keys = numericTagsRead ?? Object.keys(flat.strings);
  for (const k of keys) {
    if (Object.hasOwn(flat.strings, k) && !Object.hasOwn(flat.longs, k)) {
      return {
        code: 'argument_type_mismatch',
        message: `argument \`${k.slice(0, 200)}\` is read by policy as an integer but is \`${flat.strings[k]!.slice(0, 100)}\``,
      };
    }
  }
  return null;
}

/**
 * Builds the Cedar request, passing only the entities the request touches
 * (principal, resource, their groups, the argument entities): Cedar's cost grows
 * with every entity passed.
 */
export function buildCedarRequest(f: RequestFacts): CedarRequest {
  const { agent, task, action } = f;
  const root = f.root ?? task;
  const server = toolServer(action.tool);
  const d = new Date(f.now);
  const context: Record<string, unknown> = {
    task: {
      id: task.id,
      intent: task.intent,
      owner: task.owner,
      depth: task.depth,
      root_id: root.id,
      root_owner: root.owner,
      root_intent: root.intent,
    },
    audience: action.audience,
    args: { __entity: { type: 'Writ::Arguments', id: 'request' } },
    num_args: { __entity: { type: 'Writ::NumericArguments', id: 'request' } },
    args_digest: f.argsDigest,
    usage: {
      actions_used: task.actionsUsed,
      actions_left: Math.max(0, task.maxActions - task.actionsUsed - task.actionsReserved),
      max_actions: task.maxActions,
    },
    time: { epoch_seconds: Math.floor(f.now / 1000), hour_utc: d.getUTCHours(), weekday: d.getUTCDay() },
    approval: f.approval ?? { granted: false, approvers: 0 },
    break_glass: f.breakGlass ?? false,
    owner_present: f.ownerPresent ?? true,
    delegation: { depth: task.depth, chain: f.chain ?? [] },
  };
  if (action.resource !== undefined) context.resource = action.resource;
  if (action.destination !== undefined) context.destination = action.destination;

  const entities: unknown[] = [
    {
      uid: { type: 'Writ::Agent', id: agent.id },
      attrs: { name: agent.name, labels: agent.labels },
      parents: agent.labels.map((l) => ({ type: 'Writ::AgentGroup', id: l })),
    },
    {
      uid: { type: 'Writ::Tool', id: action.tool },
      attrs: { name: action.tool, server, labels: f.toolLabels ?? [] },
      parents: [{ type: 'Writ::ToolGroup', id: server }],
    },
  ];
  if (f.withArgs) {
    const flat = f.flatArgs ?? flattenArguments(action.arguments);
    entities.push(
      { uid: { type: 'Writ::Arguments', id: 'request' }, attrs: {}, parents: [], tags: flat.strings },
      { uid: { type: 'Writ::NumericArguments', id: 'request' }, attrs: {}, parents: [], tags: flat.longs },
    );
  }
  return {
    principal: { type: 'Writ::Agent', id: agent.id },
    resource: { type: 'Writ::Tool', id: action.tool },
    context,
    entities,
  };
}
