import { OAuthError } from '../core/errors.js';

/** The scope that names a task: `task:<task id>` (RFC 6749 §3.3 scope token syntax). */
const TASK_SCOPE = /^task:([\x21\x23-\x5b\x5d-\x7e]{1,256})$/;

/**
 * The task a token request is for: `task_id`, or the `task:<id>` scope a stock OAuth
 * client sends (the MCP SDK's client-credentials providers send `scope` but no other
 * parameter of ours). Both may be given when they agree; any other scope value is refused
 * (`invalid_scope`, RFC 6749 §5.2), never ignored. A `resource` indicator (RFC 8707, which
 * MCP clients send) must be an absolute URI without a fragment (`invalid_target`); task
 * tokens are Writ's and its gateways', so it does not change the token's audience.
 */
export function taskOfTokenRequest<F extends { task_id?: string; scope?: string; resource?: string }>(form: F): F {
  if (form.resource !== undefined) {
    let u: URL | null = null;
    try {
      u = new URL(form.resource);
    } catch {
      /* not a URI */
    }
    if (!u || form.resource.includes('#')) throw new OAuthError('invalid_target', '`resource` must be an absolute URI without a fragment (RFC 8707 §2)');
  }
  if (form.scope === undefined || form.scope.trim() === '') return form;
  const values = form.scope.split(' ').filter((v) => v !== '');
  const tasks = values.map((v) => TASK_SCOPE.exec(v)?.[1]);
  const other = values.find((_v, i) => tasks[i] === undefined);
  if (other !== undefined) throw new OAuthError('invalid_scope', `scope \`${other.slice(0, 64)}\` is not known: the only scope is \`task:<task id>\``);
  const ids = [...new Set(tasks as string[])];
  if (ids.length > 1) throw new OAuthError('invalid_scope', 'a token is for one task: give one `task:<task id>` scope');
  if (form.task_id !== undefined && form.task_id !== ids[0]) throw new OAuthError('invalid_request', '`task_id` and the `task:` scope name different tasks');
  return { ...form, task_id: ids[0] };
}
