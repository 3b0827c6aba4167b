import { remembered } from './remembered.js';
import { InvalidRequestError } from './errors.js';

/**
 * The form of an action's `resource` (README, "Destinations and resources"). Scope
 * patterns match resources character by character (`repo:acme/*`), so a resource must
 * not name one thing to the pattern and another to the tool: `repo:acme/../other/secrets`
 * matches `repo:acme/*` and resolves to `repo:other/secrets`. A resource is printable
 * ASCII (no whitespace), without backslash (a path separator on some systems), and none
 * of its segments (split at `/` and `:`) is `.` or `..`, also not before a `;` (`..;`,
 * which servlet containers read as `..`) or a `?` or `#` (`..?x`, which a URL parser
 * resolves as `..`), and not percent-encoded: `%2e`, `%2f`, `%5c`,
 * `%3a`, `%3b`, `%25` (a second round of decoding) and encoded control characters are
 * refused. Anything else is 400 `invalid_resource`.
 */

const PRINTABLE = /^[\x21-\x7e]+$/;
// `.` `/` `\` `:` `;` `%` and controls, percent-encoded (RFC 3986 §2.1: hex digits in either case)
const ENCODED_SPECIAL = /%(2e|2f|5c|3a|3b|25|[01][0-9a-f]|7f)/i;
// where a segment's name ends for some reader: path parameters, query, fragment
const SEGMENT_END = /[;?#]|%3f|%23/i;

/** Why `value` is not a resource, or null (remembered for the texts seen last, as `destinationProblem`). */
export function resourceProblem(value: string): string | null {
  return remembered(resourceAnswers, value, computeResourceProblem);
}

const resourceAnswers = new Map<string, string | null>();

function computeResourceProblem(value: string): string | null {
  if (value.length === 0 || value.length > 1024) return 'a resource is 1 to 1024 characters';
  if (!PRINTABLE.test(value)) return 'a resource is printable ASCII without whitespace';
  if (value.includes('\\')) return 'a resource has no backslash';
  if (ENCODED_SPECIAL.test(value)) return 'a resource has no percent-encoded `.`, `/`, `\\`, `:`, `;`, `%` or control character';
  for (const seg of value.split(/[/:]/)) {
    // what a reader keeps of the segment: `;` ends it for servlet containers, and `?` or
    // `#` (also encoded, for a reader that decodes once first) end a URL's path, so a
    // URL parser resolves `/acme/..?x` to `/?x` (RFC 3986 §3.3, §5.2.4)
    const end = seg.search(SEGMENT_END);
    const bare = end < 0 ? seg : seg.slice(0, end);
    if (bare === '.' || bare === '..') return 'a resource has no `.` or `..` segment';
  }
  return null;
}

/** Throws 400 `invalid_resource` unless `value` is a resource. */
export function checkResource(value: string): void {
  const p = resourceProblem(value);
  if (p) throw new InvalidRequestError(`resource \`${value.slice(0, 200)}\`: ${p}`, undefined, 'invalid_resource');
}
