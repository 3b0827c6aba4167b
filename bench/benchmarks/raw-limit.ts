import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { digestArguments } from '../../src/core/digest.js';
import { newId } from '../../src/core/ids.js';
import type { AgentRecord, TaskRecord } from '../../src/core/types.js';
import { checkPolicyText, contextAttributesRead, PolicyEngine, type CedarRequest, type LoadedPolicySet } from '../../src/policy/engine.js';
import { buildCedarRequest } from '../../src/policy/request.js';
import { ACTION_TOKEN_TYP } from '../../src/tokens/token-types.js';
import type { Writ } from '../../src/app/writ.js';
import { freshData } from '../lib/backend.js';
import { startInProcess } from '../lib/fixture.js';
import { BENCH_ISSUER } from '../lib/identity.js';
import { benchAction, BENCH_AGENT, BENCH_SCOPE, POLICIES_20 } from '../lib/policies.js';
import { timeSync, type LatencySummary } from '../lib/stats.js';
import { atMost, type BenchOutput, type RunOptions } from '../lib/types.js';

export function fakeAgent(id: string, labels: string[]): AgentRecord {
  return { id, name: id.split('/').pop()!, jwks: { keys: [] }, labels, status: 'active', createdAt: Date.now(), createdBy: 'op_bench' };
}

export function fakeTask(agentId: string, scope = BENCH_SCOPE): TaskRecord {
  const id = newId('task');
  return {
    id, agentId, owner: 'op_bench', intent: 'benchmark: file the weekly billing report', scope, status: 'active',
    createdAt: Date.now(), expiresAt: Date.now() + 3600_000, endedAt: null, maxActions: 100_000, actionsUsed: 0,
    actionsReserved: 0, parentId: null, rootId: id, depth: 0,
  };
}

/** The call Writ's PolicyEngine.evaluate makes, on a request built ahead of time. */
export function cedarCall(req: CedarRequest, set: LoadedPolicySet) {
  return {
    principal: req.principal,
    action: { type: 'Writ::Action', id: 'call' },
    resource: req.resource,
    context: req.context as cedar.Context,
    entities: req.entities as cedar.Entities,
    preparsedPolicySetId: set.version,
    validateRequest: false,
  };
}

/**
 * The floor of one authorize in this process: Cedar `statefulIsAuthorized` with exactly
 * the call the engine makes (PolicyEngine.statefulCall: the preparsed part of the set,
 * the sliced entities, the context attributes read), built ahead of time, plus one
 * Ed25519 compact JWS sign (KeyRing.signJwt, node:crypto).
 */
export function measureRaw(writ: Writ, set: LoadedPolicySet, requests: CedarRequest[], n: number, warmup: number, componentN = n) {
  const calls = requests.map((r) => PolicyEngine.statefulCall(r, set));
  const iat = Math.floor(Date.now() / 1000);
  const claims = (i: number) => ({
    iss: BENCH_ISSUER, sub: BENCH_AGENT.id, aud: 'https://tools.example/github', iat, exp: iat + 30, jti: `act_${i}`,
    txn: 'task_bench', decision_id: `dec_${i}`, tool: 'github.create_issue', args_digest: 'x'.repeat(43),
  });
  let allows = 0;
  const op = (i: number) => {
    const a = cedar.statefulIsAuthorized(calls[i % calls.length]!);
    if (a.type === 'success' && a.response.decision === 'allow') allows += 1;
    writ.tokens.keys.signJwt(ACTION_TOKEN_TYP, claims(i));
  };
  timeSync(warmup, op);
  allows = 0;
  const total = timeSync(n, op).summary();
  const allowed = allows;
  const cedarOnly = timeSync(componentN, (i) => cedar.statefulIsAuthorized(calls[i % calls.length]!)).summary();
  const signOnly = timeSync(componentN, (i) => writ.tokens.keys.signJwt(ACTION_TOKEN_TYP, claims(i))).summary();
  return { total, cedarOnly, signOnly, allowed };
}

export async function rawLimit(opts: RunOptions): Promise<BenchOutput & { p50: number }> {
  const n = opts.smoke ? 100 : opts.quick ? 500 : 5000;
  const warmup = opts.smoke ? 50 : opts.quick ? 200 : 1000;
  const componentN = opts.smoke ? 50 : opts.quick ? 300 : 2000;
  const data = freshData('sqlite', opts.dataRoot);
  const ip = await startInProcess(data.spec, POLICIES_20);
  try {
    const set = ip.writ.policy.engine.active();
    const agent = fakeAgent(BENCH_AGENT.id, BENCH_AGENT.labels);
    const task = fakeTask(agent.id);
    const build = (i: number) => {
      const action = benchAction(i);
      return buildCedarRequest({
        agent, task, action, argsDigest: digestArguments(action.arguments), now: Date.now(), withArgs: set.readsArgs,
        argReads: { numeric: set.numericTagsRead, strings: set.stringTagsRead },
      });
    };
    const requests = Array.from({ length: 64 }, (_, i) => build(i));
    const raw = measureRaw(ip.writ, set, requests, n, warmup, componentN);
    // What Writ adds around Cedar before it: the argument digest, building the request, the engine wrapper.
    const digest = timeSync(componentN, (i) => digestArguments(benchAction(i).arguments)).summary();
    const buildOnly = timeSync(componentN, (i) => build(i)).summary();
    // Cedar asked every time (memo off): what the target compares with the bare call
    const engine = timeSync(componentN, (i) => ip.writ.policy.engine.evaluate(requests[i % requests.length]!, set, { memo: false })).summary();
    // and a decision the engine remembers (src/policy/engine.ts: the memo), as the service asks
    const remembered = timeSync(componentN, (i) => ip.writ.policy.engine.evaluate(requests[i % requests.length]!, set)).summary();
    const bare = bareTen(requests);
    const r = requests[0]!;
    const ratioVsBare = Math.round((engine.p50 / bare.latency.p50) * 100) / 100;
    const result = {
      params: {
        iterations: n,
        warmup,
        component_iterations: componentN,
        policies: set.policyIds.length,
        entities_passed: r.entities.length,
        reads_args: set.readsArgs,
        context_keys: Object.keys(r.context).length,
        request_variants: requests.length,
        sign: 'KeyRing.signJwt (Ed25519 compact JWS, node:crypto)',
      },
      latency_us: raw.total,
      allowed: raw.allowed,
      components_us: {
        cedar_stateful_is_authorized: raw.cedarOnly,
        ed25519_sign: raw.signOnly,
        digest_arguments: digest,
        build_cedar_request: buildOnly,
        policy_engine_evaluate: engine,
        policy_engine_evaluate_remembered: remembered,
        bare_10_policies_sliced: bare.latency,
      } satisfies Record<string, LatencySummary>,
      bare_10_policies: { policies: bare.policies, context_keys: bare.contextKeys, entities_passed: 2 },
      policy_engine_evaluate_vs_bare_10_p50: ratioVsBare,
      engine_call: { preparsed_set: set.partitions ? 'the part for the tool (split set)' : 'whole set', context_keys_passed: set.contextKeys ? [...set.contextKeys].sort() : 'all', tags_passed: { strings: tagList(set.stringTagsRead), numeric: tagList(set.numericTagsRead) } },
    };
    opts.log(`raw_limit: policy_engine_evaluate p50 ${engine.p50} us (memo off; ${remembered.p50} us remembered) vs bare 10-policy sliced call p50 ${bare.latency.p50} us (${ratioVsBare}x)`);
    opts.log(`raw_limit: p50 ${raw.total.p50} us, p99 ${raw.total.p99} us (cedar p50 ${raw.cedarOnly.p50}, sign p50 ${raw.signOnly.p50})`);
    return {
      result,
      p50: raw.total.p50,
      targets: {
        'raw_limit.policy_engine_evaluate_vs_bare_10': {
          ...atMost('PolicyEngine.evaluate on the 20-policy set / a bare preparsed call with sliced entities on a 10-policy set (p50)', ratioVsBare, 1.5),
          figures: { policy_engine_evaluate_p50_us: engine.p50, bare_10_policies_p50_us: bare.latency.p50 },
        },
      },
    };
  } finally {
    await ip.close();
    await data.destroy();
  }
}

function tagList(read: Set<string> | null | false): string[] | 'all' | 'none' {
  return read === null ? 'all' : read === false ? 'none' : [...read].sort();
}

/**
 * The reference of the Cedar target (issue 12): a bare `statefulIsAuthorized` on a
 * preparsed 10-policy set (the first ten of POLICIES_20), handed only the principal and
 * the tool (no argument entities) and the context attributes those ten read.
 */
function bareTen(requests: CedarRequest[]) {
  const ten = POLICIES_20.split(/\n(?=@id\()/).filter((p) => p.trim()).slice(0, 10).join('\n');
  const checked = checkPolicyText(ten);
  const keys = [...(contextAttributesRead(Object.values(checked.json)) ?? [])];
  const id = 'bench-bare-10';
  const pre = cedar.preparsePolicySet(id, { staticPolicies: checked.parts });
  if (pre.type !== 'success') throw new Error('the 10-policy reference set does not preparse');
  const calls = requests.map((r) => {
    const context: Record<string, unknown> = {};
    for (const k of keys) if (k in r.context) context[k] = r.context[k];
    return {
      principal: r.principal, action: { type: 'Writ::Action', id: 'call' }, resource: r.resource,
      context: context as cedar.Context, entities: r.entities.slice(0, 2) as cedar.Entities, preparsedPolicySetId: id, validateRequest: false,
    };
  });
  const n = calls.length;
  timeSync(500, (i) => cedar.statefulIsAuthorized(calls[i % n]!));
  const latency = timeSync(3000, (i) => cedar.statefulIsAuthorized(calls[i % n]!)).summary();
  return { latency, policies: checked.ids.length, contextKeys: keys.sort() };
}
