import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as sdk from '@writ/sdk';
import * as wire from '../src/wire/index.js';

/**
 * `@writ/sdk` carries no zod: it declares the wire's types by hand. These type-level
 * checks (run by `npm run typecheck` / `tsc --noEmit`) fail when the two drift; the
 * runtime checks parse SDK-shaped values with the wire schemas.
 */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assignable<A, B> = [A] extends [B] ? true : false;
const holds = <T extends true>(): T => true as T;

// requests: what the SDK sends is what the server parses, and the reverse
holds<Assignable<sdk.ActionInput, wire.AuthorizeRequest>>();
holds<Equal<keyof sdk.ActionInput, keyof wire.AuthorizeRequest>>();
// responses: every wire answer fits the SDK's type
holds<Assignable<wire.AuthorizeResponse, sdk.AuthorizeResponse>>();
holds<Equal<sdk.AuthorizeResponse['decision'], wire.AuthorizeResponse['decision']>>();
holds<Assignable<wire.ApprovalResponse, sdk.ApprovalResponse>>();
holds<Equal<sdk.ApprovalResponse['status'], wire.ApprovalResponse['status']>>();
// the action token's claims: the same keys, the same types (`break_glass` is `true` in both)
holds<Equal<sdk.ActionClaims, wire.ActionClaims>>();

test('SDK-shaped values parse with the wire schemas', () => {
  const action: sdk.ActionInput = { tool: 'billing.refund', arguments: { amount: 5 }, audience: 'billing' };
  assert.equal(wire.authorizeSchema.safeParse(action).success, true);
  const allow: sdk.AuthorizeResponse = { decision: 'allow', decision_id: 'dec_1', action_token: 'x.y.z', expires_in: 60, args_digest: 'sha-256=:a:' };
  assert.equal(wire.authorizeResponseSchema.safeParse(allow).success, true);
  // near variants the wire refuses
  assert.equal(wire.actionClaimsSchema.shape.break_glass.safeParse(false).success, false);
  assert.equal(wire.authorizeResponseSchema.safeParse({ ...allow, decision: 'Allow' }).success, false);
  assert.equal(wire.authorizeSchema.safeParse({ ...action, arguments: [action.arguments] }).success, false);
});
