import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { sha256Hex } from '../core/digest.js';
import { InvalidRequestError } from '../core/errors.js';
import { toolServer } from './request.js';
import { WRIT_SCHEMA } from './schema.js';

export interface PolicyDiagnostic {
  policy_id: string | null;
  message: string;
  help?: string | null;
}

export interface LoadedPolicySet {
  /** content hash of the policy text: the version every decision records */
  version: string;
  text: string;
  policyIds: string[];
  annotations: Record<string, Record<string, string>>;
  /** whether any policy reads the argument tags; when none does, they are not built */
  readsArgs: boolean;
  /**
   * the tags policies read from `context.num_args` (`getTag`/`hasTag` with a literal
   * name); null when some policy names one with an expression (then every argument
   * counts); false when no policy reads `num_args`
   */
  numericTagsRead: Set<string> | null | false;
  /** the same for `context.args` (string tags) */
  stringTagsRead: Set<string> | null | false;
  /**
   * whether any policy reads `context.approval` / `context.break_glass` /
   * `context.owner_present`: only then does a deny get a second evaluation
   * (src/approvals/escalation.ts) or the presence lease get read
   */
  mentionsApproval: boolean;
  mentionsBreakGlass: boolean;
  mentionsPresence: boolean;
  /**
   * the top-level `context` attributes any policy reads, or null when some policy
   * uses `context` as a whole: Cedar's cost grows with the context it is handed, so
   * only these are passed (a policy reading an attribute not passed would error,
   * and an error denies: the narrowing can only ever fail closed)
   */
  contextKeys: Set<string> | null;
  /** the policies by id, as text: for partial evaluation (`couldAllow`) */
  parts: Record<string, string>;
  /**
   * preparsed sub-sets per tool group (see `partitionByToolGroup`): the id of the set
   * to evaluate for a tool of group `g` is `partitions.get(g) ?? partitions.get('*')`;
   * null when the set is evaluated whole
   */
  partitions: Map<string, string> | null;
}

export interface CedarRequest {
  principal: { type: string; id: string };
  resource: { type: string; id: string };
  context: Record<string, unknown>;
  entities: unknown[];
}

export interface Evaluation {
  decision: 'allow' | 'deny';
  /** determining policies */
  policies: string[];
  errors: { policy_id: string; message: string }[];
}

const SCHEMA_NAME = 'writ';

/** Version ids are content hashes: the same text always gets the same version. */
export function policyVersion(text: string): string {
  return sha256Hex(text).slice(0, 32);
}

/**
 * Parses and validates a policy set against the Writ schema. Throws
 * InvalidRequestError(`invalid_policy`) with Cedar's diagnostics when it does not.
 */
export function checkPolicyText(text: string): {
  ids: string[];
  parts: Record<string, string>;
  annotations: Record<string, Record<string, string>>;
  json: Record<string, cedar.PolicyJson>;
} {
  const split = cedar.policySetTextToParts(text);
  if (split.type !== 'success') throw invalid('the policy text does not parse', split.errors.map((e) => diag(null, e)));
  if (split.policy_templates.length > 0) throw invalid('policy templates are not supported', []);
  const parts: Record<string, string> = {};
  const annotations: Record<string, Record<string, string>> = {};
  const jsonById: Record<string, cedar.PolicyJson> = {};
  split.policies.forEach((p, i) => {
    const json = cedar.policyToJson(p);
    if (json.type !== 'success') throw invalid('the policy text does not parse', json.errors.map((e) => diag(null, e)));
    const ann = (json.json.annotations ?? {}) as Record<string, string>;
    const id = ann.id ?? `policy${i}`;
    if (parts[id] !== undefined) throw invalid(`two policies have the id \`${id}\``, []);
    parts[id] = p;
    jsonById[id] = json.json;
    checkEscalationAnnotations(id, ann);
    annotations[id] = ann;
  });
  const v = cedar.validate({ schema: WRIT_SCHEMA, policies: { staticPolicies: parts }, validationSettings: { mode: 'strict' } });
  if (v.type !== 'success') throw invalid('the policy set does not validate', v.errors.map((e) => diag(null, e)));
  if (v.validationErrors.length > 0) {
    throw invalid('the policy set does not validate against the schema', v.validationErrors.map((e) => diag(e.policyId, e.error)));
  }
  return { ids: Object.keys(parts), parts, annotations, json: jsonById };
}

/**
 * The top-level context attributes the policies read (`context.x`, `context has x`),
 * from their JSON form; null when a policy uses `context` any other way.
 */
export function contextAttributesRead(policies: cedar.PolicyJson[]): Set<string> | null {
  const keys = new Set<string>();
  let whole = false;
  const isContext = (e: unknown) => typeof e === 'object' && e !== null && (e as { Var?: unknown }).Var === 'context';
  const walk = (e: unknown): void => {
    if (whole || typeof e !== 'object' || e === null) return;
    if (Array.isArray(e)) return e.forEach(walk);
    const o = e as Record<string, any>;
    if (isContext(o)) {
      whole = true;
      return;
    }
    const access = o['.'] ?? o.has;
    if (access && typeof access === 'object' && 'left' in access && 'attr' in access && Object.keys(o).length === 1) {
      if (isContext(access.left)) {
        const attr = Array.isArray(access.attr) ? access.attr[0] : access.attr;
        if (typeof attr === 'string') keys.add(attr);
        else whole = true;
        return;
      }
    }
    for (const v of Object.values(o)) walk(v);
  };
  for (const p of policies) walk(p.conditions);
  return whole ? null : keys;
}

/**
 * The literal tag names policies pass to `context.<attr>.getTag/hasTag` (`attr` is
 * `args` or `num_args`); null if any is not a literal (then any argument may be read).
 */
export function tagsRead(policies: cedar.PolicyJson[], attr: 'args' | 'num_args'): Set<string> | null {
  const names = new Set<string>();
  let dynamic = false;
  const isAttr = (e: any) => e && typeof e === 'object' && e['.'] && e['.'].attr === attr && e['.'].left && e['.'].left.Var === 'context';
  const walk = (e: unknown): void => {
    if (dynamic || typeof e !== 'object' || e === null) return;
    if (Array.isArray(e)) return e.forEach(walk);
    const o = e as Record<string, any>;
    for (const op of ['getTag', 'hasTag']) {
      const call = o[op];
      if (call && isAttr(call.left)) {
        const v = call.right?.Value;
        if (typeof v === 'string') names.add(v);
        else dynamic = true;
      }
    }
    for (const v of Object.values(o)) walk(v);
  };
  for (const p of policies) walk(p.conditions);
  return dynamic ? null : names;
}

/** The literal tag names policies pass to `context.num_args.getTag/hasTag`; null if any is not a literal. */
export function numericTagsRead(policies: cedar.PolicyJson[]): Set<string> | null {
  return tagsRead(policies, 'num_args');
}

/**
 * The tool group a policy is confined to by its resource constraint (`resource in
 * Writ::ToolGroup::"g"`, `resource == Writ::Tool::"g.x"`, `resource is Writ::Tool in
 * Writ::ToolGroup::"g"`), or `*` when it can match any tool. Sound because a Tool's
 * only ancestor is the ToolGroup of its server (request.ts builds it so).
 */
export function toolGroupOf(policy: cedar.PolicyJson): string {
  const r = policy.resource as { op: string; entity?: unknown; in?: { entity?: unknown } };
  const uid = (e: unknown): { type: string; id: string } | null => {
    if (!e || typeof e !== 'object') return null;
    const x = ('__entity' in (e as object) ? (e as { __entity: unknown }).__entity : e) as { type?: unknown; id?: unknown };
    return typeof x.type === 'string' && typeof x.id === 'string' ? { type: x.type, id: x.id } : null;
  };
  const groupOf = (e: { type: string; id: string } | null): string => {
    if (!e) return '*';
    if (e.type === 'Writ::ToolGroup') return e.id;
    if (e.type === 'Writ::Tool') return toolServer(e.id);
    return '*';
  };
  if (r.op === '==' || r.op === 'in') return groupOf(uid(r.entity));
  if (r.op === 'is' && r.in) return groupOf(uid(r.in.entity));
  return '*';
}

/** Past this many policies a set is split by tool group (design §7: 1.5 us per policy checked). */
const PARTITION_MIN_POLICIES = 64;
/** ...unless the copies of the group-independent policies would cost more than this. */
const PARTITION_MAX_COPIES = 50_000;

function partitionByToolGroup(json: Record<string, cedar.PolicyJson>): Map<string, string[]> | null {
  const ids = Object.keys(json);
  if (ids.length < PARTITION_MIN_POLICIES) return null;
  const common: string[] = [];
  const byGroup = new Map<string, string[]>();
  for (const id of ids) {
    const g = toolGroupOf(json[id]!);
    if (g === '*') common.push(id);
    else byGroup.set(g, [...(byGroup.get(g) ?? []), id]);
  }
  if (byGroup.size === 0 || common.length * byGroup.size > PARTITION_MAX_COPIES) return null;
  const out = new Map<string, string[]>([['*', common]]);
  for (const [g, own] of byGroup) out.set(g, [...common, ...own]);
  return out;
}

/** `@approvals("N")` is a whole number 1..10; `@four_eyes` is "true" or "false" (README, Approvals). */
function checkEscalationAnnotations(id: string, ann: Record<string, string>): void {
  if (ann.approvals !== undefined && !/^([1-9]|10)$/.test(ann.approvals)) {
    throw invalid(`policy \`${id}\`: @approvals must be a whole number from 1 to 10`, [{ policy_id: id, message: '@approvals must be a whole number from 1 to 10' }]);
  }
  if (ann.four_eyes !== undefined && ann.four_eyes !== 'true' && ann.four_eyes !== 'false') {
    throw invalid(`policy \`${id}\`: @four_eyes must be "true" or "false"`, [{ policy_id: id, message: '@four_eyes must be "true" or "false"' }]);
  }
}

function diag(policyId: string | null, e: cedar.DetailedError): PolicyDiagnostic {
  return { policy_id: policyId, message: e.message, help: e.help };
}

function invalid(message: string, diagnostics: PolicyDiagnostic[]): InvalidRequestError {
  return new InvalidRequestError(message, { diagnostics }, 'invalid_policy');
}

/**
 * The Cedar engine. Policy sets are parsed and validated once, preparsed into
 * cedar-wasm's cache under their version id, and evaluated with
 * `statefulIsAuthorized`: no policy text is parsed on the request path.
 */
export class PolicyEngine {
  private current: LoadedPolicySet | null = null;
  private readonly loaded = new Map<string, LoadedPolicySet>();

  constructor() {
    const s = cedar.preparseSchema(SCHEMA_NAME, WRIT_SCHEMA);
    if (s.type !== 'success') throw new Error(`the built-in schema does not parse: ${s.errors.map((e) => e.message).join('; ')}`);
  }

  /** Validates, preparses and makes `text` the active policy set. */
  load(text: string): LoadedPolicySet {
    const version = policyVersion(text);
    let set = this.loaded.get(version);
    if (!set) {
      const checked = checkPolicyText(text);
      const r = cedar.preparsePolicySet(version, { staticPolicies: checked.parts });
      if (r.type !== 'success') throw invalid('the policy set does not parse', r.errors.map((e) => diag(null, e)));
      let partitions: Map<string, string> | null = null;
      const groups = partitionByToolGroup(checked.json);
      if (groups) {
        partitions = new Map();
        for (const [g, ids] of groups) {
          const setId = `${version}:${g}`;
          const pr = cedar.preparsePolicySet(setId, { staticPolicies: Object.fromEntries(ids.map((id) => [id, checked.parts[id]!])) });
          if (pr.type !== 'success') throw invalid('the policy set does not parse', pr.errors.map((e) => diag(null, e)));
          partitions.set(g, setId);
        }
      }
      set = {
        version,
        text,
        policyIds: checked.ids,
        annotations: checked.annotations,
        readsArgs: /\b(num_)?args\b/.test(text),
        mentionsApproval: /\bapproval\b/.test(text),
        mentionsBreakGlass: /\bbreak_glass\b/.test(text),
        mentionsPresence: /\bowner_present\b/.test(text),
        parts: checked.parts,
        contextKeys: contextAttributesRead(Object.values(checked.json)),
        numericTagsRead: /\bnum_args\b/.test(text) ? numericTagsRead(Object.values(checked.json)) : false,
        stringTagsRead: /\bargs\b/.test(text) ? tagsRead(Object.values(checked.json), 'args') : false,
        partitions,
      };
      this.loaded.set(version, set);
    }
    this.current = set;
    return set;
  }

  activeOrNull(): LoadedPolicySet | null {
    return this.current;
  }

  active(): LoadedPolicySet {
    if (!this.current) throw new Error('no policy set is loaded');
    return this.current;
  }

  /**
   * Whether any call of this tool by this agent could be allowed, whatever its
   * arguments, resource, destination, approvals or task facts: Cedar's partial
   * evaluation with every context value unknown. `deny` only when policy settles it
   * regardless (a tool no call can use); an error counts as `deny` (fail closed).
   */
  couldAllow(request: CedarRequest, set: LoadedPolicySet = this.active()): 'allow' | 'deny' | 'maybe' {
    const keys = new Set([...Object.keys(request.context), 'resource', 'destination']);
    const context: Record<string, unknown> = {};
    for (const k of keys) context[k] = { __extn: { fn: 'unknown', arg: `context.${k}` } };
    const entities = (request.entities as { uid: { type: string } }[]).filter((e) => e.uid.type === 'Writ::Agent' || e.uid.type === 'Writ::Tool');
    const answer = cedar.isAuthorizedPartial({
      principal: request.principal,
      action: { type: 'Writ::Action', id: 'call' },
      resource: request.resource,
      context: context as cedar.Context,
      entities: entities as cedar.Entities,
      policies: { staticPolicies: set.parts },
    });
    if (answer.type !== 'residuals') return 'deny';
    if (answer.response.errored.length > 0 && answer.response.decision === null) return 'maybe';
    return answer.response.decision === 'deny' ? 'deny' : answer.response.decision === 'allow' ? 'allow' : 'maybe';
  }

  /**
   * Evaluates one request against a loaded set. Cedar skips a policy whose
   * evaluation errors, which for a `forbid` would mean allowing: so any error
   * turns the answer into a deny (fail closed).
   */
  evaluate(request: CedarRequest, set: LoadedPolicySet = this.active()): Evaluation {
    let context = request.context;
    if (set.contextKeys) {
      context = {};
      for (const k of set.contextKeys) if (k in request.context) context[k] = request.context[k];
    }
    const setId = set.partitions
      ? (set.partitions.get(request.resource.type === 'Writ::Tool' ? toolServer(request.resource.id) : '*') ?? set.partitions.get('*')!)
      : set.version;
    const answer = cedar.statefulIsAuthorized({
      principal: request.principal,
      action: { type: 'Writ::Action', id: 'call' },
      resource: request.resource,
      context: context as cedar.Context,
      entities: request.entities as cedar.Entities,
      preparsedPolicySetId: setId,
      validateRequest: false,
    });
    if (answer.type !== 'success') {
      return { decision: 'deny', policies: [], errors: answer.errors.map((e) => ({ policy_id: '', message: e.message })) };
    }
    const errors = answer.response.diagnostics.errors.map((e) => ({ policy_id: e.policyId, message: e.error.message }));
    const decision = errors.length > 0 ? 'deny' : answer.response.decision;
    return { decision, policies: answer.response.diagnostics.reason, errors };
  }
}
