import { domainToASCII } from 'node:url';
import { InvalidRequestError } from './errors.js';
import { remembered } from './remembered.js';

/**
 * The canonical form of an action's `destination` (README, "Destinations and
 * resources"). A scope pattern such as `*.github.com` is matched character by
 * character, so a destination must have exactly one spelling: otherwise
 * `evil.example#.github.com`, `evil.example/.github.com` or `EVIL.example` would be
 * judged as one thing and connected to as another. Two forms, nothing else:
 *
 * - network: `host[:port]`. `host` is a DNS name in lowercase with IDNA A-labels
 *   (UTS #46 / RFC 5891: `xn--bcher-kva.de`, never `bücher.de`), no trailing dot, no
 *   empty label; or a dotted-decimal IPv4 address in its canonical form (`127.1`,
 *   `0x7f.0.0.1` are refused: WHATWG URL parsers read them as 127.0.0.1); or an IPv6
 *   address in brackets as the WHATWG URL serializer writes it (`[::1]`). `port` is
 *   1-65535 without leading zeros. No userinfo (`@`), path, query, fragment,
 *   backslash, percent-encoding or whitespace.
 * - non-network: `kind:name`, such as the gateway's `stdio:local`: `kind` is a
 *   lowercase letter then lowercase letters, digits, `+` or `-`; `name` is printable
 *   ASCII, lowercase, with none of `/ # ? \ @ %`.
 *
 * Anything else is refused with 400 `invalid_destination`; nothing is rewritten into
 * the canonical form, since the caller's tool would still act on its own spelling.
 */

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;
const PORT = /^[1-9][0-9]{0,4}$/;
const KIND = /^[a-z][a-z0-9+-]{0,31}$/;
const NAME = /^[\x21-\x7e]+$/;
const NAME_FORBIDDEN = /[A-Z/#?\\@%]/;

/**
 * Why `value` is not a canonical destination, or null when it is. A pure function of the
 * text, asked for every action at the edge and again in the pipeline: the answers for the
 * texts seen last are remembered (requests name a handful of destinations; the IDNA check
 * goes through ICU).
 */
export function destinationProblem(value: string): string | null {
  return remembered(destinationAnswers, value, computeDestinationProblem);
}

const destinationAnswers = new Map<string, string | null>();

function computeDestinationProblem(value: string): string | null {
  if (value.length === 0 || value.length > 1024) return 'a destination is 1 to 1024 characters';
  if (value.startsWith('[')) return networkProblem(value);
  const colon = value.lastIndexOf(':');
  // `host:port` when what follows the last `:` is digits; `kind:name` otherwise
  if (colon < 0 || /^[0-9]+$/.test(value.slice(colon + 1))) return networkProblem(value);
  const first = value.indexOf(':');
  const kind = value.slice(0, first);
  const name = value.slice(first + 1);
  if (!KIND.test(kind)) {
    return /[./#?\\@%]/.test(value) || /[A-Z]/.test(value)
      ? 'a destination is `host[:port]` (lowercase, no userinfo, path, query, fragment or backslash) or a lowercase `kind:name`'
      : 'the kind of a `kind:name` destination is lowercase letters, digits, `+` or `-`';
  }
  if (!NAME.test(name)) return 'the name of a `kind:name` destination is printable ASCII without whitespace';
  if (NAME_FORBIDDEN.test(name)) return 'the name of a `kind:name` destination is lowercase, with none of `/ # ? \\ @ %`';
  return null;
}

function networkProblem(value: string): string | null {
  let host = value;
  let port: string | null = null;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0) return 'an IPv6 destination is `[address]` or `[address]:port`';
    host = value.slice(0, close + 1);
    const rest = value.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return 'an IPv6 destination is `[address]` or `[address]:port`';
      port = rest.slice(1);
    }
    let canonical: string | null = null;
    try {
      canonical = new URL(`http://${host}/`).hostname;
    } catch {
      canonical = null;
    }
    if (canonical !== host) return `an IPv6 destination is written as the URL standard writes it${canonical ? ` (\`${canonical}\`)` : ''}`;
  } else {
    const colon = value.lastIndexOf(':');
    if (colon >= 0) {
      host = value.slice(0, colon);
      port = value.slice(colon + 1);
    }
    if (/[@/#?\\%\s]/.test(host)) return 'a network destination is `host[:port]`: no userinfo (`@`), path, query, fragment, backslash or percent-encoding';
    if (/[A-Z]/.test(host)) return 'a destination host is lowercase';
    if (host.endsWith('.')) return 'a destination host has no trailing dot';
    if (host.length > 253) return 'a destination host is at most 253 characters';
    const labels = host.split('.');
    if (!labels.every((l) => LABEL.test(l))) {
      return /[^\x21-\x7e]/.test(host)
        ? 'a destination host is written in IDNA A-labels (`xn--…`)'
        : 'a destination host is dot-separated labels of lowercase letters, digits, `-` and `_`';
    }
    // WHATWG URL host parsing (IDNA, IPv4 numbers): the host must already be its own canonical form
    if (domainToASCII(host) !== host) return 'a destination host must be in canonical form (valid A-labels; IPv4 as four decimal numbers)';
  }
  if (port !== null && (!PORT.test(port) || Number(port) > 65535)) return 'a destination port is 1 to 65535, without leading zeros';
  return null;
}

/**
 * Why `pattern` is not a destination pattern, or null: a pattern is a destination in
 * which `*` stands for any run of characters other than `:` (`*.github.com`,
 * `api.github.com:*`, `stdio:*`; `*` alone matches every destination).
 */
export function destinationPatternProblem(pattern: string): string | null {
  if (/^\*+$/.test(pattern)) return null;
  if (!pattern.includes('*')) return destinationProblem(pattern);
  // valid when some filling of its stars is a destination: a letter in a label or a name, a digit in a port
  const asLabel = destinationProblem(pattern.replace(/\*+/g, 'a'));
  if (asLabel === null) return null;
  const asPort = destinationProblem(pattern.replace(/\*+/g, '1'));
  return asPort === null ? null : asLabel;
}

/** Throws 400 `invalid_destination` unless `value` is a canonical destination. */
export function checkDestination(value: string): void {
  const p = destinationProblem(value);
  if (p) throw new InvalidRequestError(`destination \`${value.slice(0, 200)}\`: ${p}`, undefined, 'invalid_destination');
}
