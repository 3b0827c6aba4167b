import assert from 'node:assert/strict';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { AgentRecord, TaskRecord } from '../../src/core/types.js';
import { checkPolicyText, type CedarRequest, type Evaluation } from '../../src/policy/engine.js';

/** The policies of `text` as Cedar's JSON, one per policy (what the engine's readers walk). */
export const policyJson = (text: string) => Object.values(checkPolicyText(text).json);

/** The agent and task the slicing and memo tests decide for. */
export const testAgent = (labels: string[]): AgentRecord => ({ id: 'a1', name: 'a1', jwks: { keys: [] }, labels, status: 'active', createdAt: 0, createdBy: 'op' });
export const testTask: TaskRecord = {
  id: 't1', agentId: 'a1', owner: 'op', intent: 'x', scope: { tools: ['*'], resources: [], destinations: [] }, status: 'active',
  createdAt: 0, expiresAt: 1e15, endedAt: null, maxActions: 100, actionsUsed: 3, actionsReserved: 0, parentId: null, rootId: 't1', depth: 0,
};

/**
 * The reference for the slicing and memo tests: Cedar given every policy of `text` (one
 * preparsed set under `id`) and, in `assertDecidesAsWhole`, the whole request.
 */
export function preparseWhole(id: string, text: string): string {
  assert.equal(cedar.preparsePolicySet(id, { staticPolicies: checkPolicyText(text).parts }).type, 'success');
  return id;
}

/**
 * Asserts that the engine's answer `got` is what Cedar answers for the whole request
 * `whole` against the reference set `refId` (decision and determining policies), with no
 * error; returns the decision.
 */
export function assertDecidesAsWhole(got: Evaluation, whole: CedarRequest, refId: string, what: string): 'allow' | 'deny' {
  const ref = cedar.statefulIsAuthorized({
    principal: whole.principal, action: { type: 'Writ::Action', id: 'call' }, resource: whole.resource,
    context: whole.context as never, entities: whole.entities as never, preparsedPolicySetId: refId, validateRequest: false,
  });
  assert.equal(ref.type, 'success', what);
  if (ref.type !== 'success') throw new Error('unreachable');
  assert.deepEqual(got.errors, [], what);
  assert.equal(got.decision, ref.response.decision, what);
  assert.deepEqual([...got.policies].sort(), [...ref.response.diagnostics.reason].sort(), what);
  return got.decision;
}
