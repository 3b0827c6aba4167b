import { ForbiddenError } from './errors.js';
import type { OperatorRecord, OperatorRole } from './types.js';

/** Roles from the most to the least powerful (listings). */
export const ROLE_ORDER: OperatorRole[] = ['admin', 'approver', 'auditor', 'requester'];

/** An admin holds every role. */
export function hasRole(op: OperatorRecord, ...roles: OperatorRole[]): boolean {
  return op.roles.includes('admin') || roles.some((r) => op.roles.includes(r));
}

export function requireRole(op: OperatorRecord, ...roles: OperatorRole[]): void {
  if (!hasRole(op, ...roles)) {
    throw new ForbiddenError(`this needs the role ${roles.map((r) => `\`${r}\``).join(' or ')}`, 'insufficient_role');
  }
}
