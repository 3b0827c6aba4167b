import type { z } from 'zod';
import { InvalidRequestError, isErrorCode } from '../core/errors.js';

/**
 * Parses external input with a wire schema: the value, or 400 with a stable code (a
 * refinement may name its own, e.g. `invalid_destination`; otherwise `invalid_request`).
 */
export function parse<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message, code: i.code }));
  const first = issues[0]!;
  const where = first.path ? `\`${first.path}\`: ` : '';
  // a refinement may name its own error code (`invalid_destination`, …); otherwise `invalid_request`
  const raw = r.error.issues[0] as { params?: { writ_code?: unknown } };
  const code = isErrorCode(raw.params?.writ_code) ? raw.params.writ_code : 'invalid_request';
  // our own refinements' messages are lowercase already and quote user input as given
  const message = code === 'invalid_request' ? `${where}${first.message}`.toLowerCase() : `${where}${first.message}`;
  throw new InvalidRequestError(message, { issues }, code);
}
