/**
 * One reading of a request path, shared by Writ's HTTP proxy (which routes by it, shows
 * it to policy and forwards it) and a tool server's guard (which checks the action token
 * against the path it received): both must read `/api/caf%C3%A9` as `/api/café`, or a
 * token the proxy obtained would not match at the tool server.
 */

/** A path the upstream could read differently from policy: 400 `invalid_path`. */
export class InvalidPathError extends Error {
  readonly code = 'invalid_path';
  readonly status = 400;
  constructor(message: string) {
    super(message);
    this.name = 'InvalidPathError';
  }
}

const invalidPath = (message: string) => new InvalidPathError(message);

/**
 * The one form of a request path that everything uses: route matching, the `path` that
 * policy sees, and (re-encoded) the path the upstream receives. Each segment is
 * percent-decoded exactly once. Anything whose meaning could differ between the proxy,
 * policy and the upstream is refused (400 `invalid_path`): bad percent-encoding or
 * UTF-8, an encoded `/` (a separator policy would not see), `\`, `.` and `..` segments
 * (the upstream would resolve them), `;` in a segment (RFC 3986 §3.3 path parameters,
 * which servlet containers strip: `..;`), control characters and NUL, and double encoding
 * (`%25xx`, which an upstream that decodes again would read as another path).
 */
export function canonicalPath(rawPath: string): { segments: string[]; path: string } {
  if (!rawPath.startsWith('/')) throw invalidPath('the request target must be a path');
  if (rawPath.includes('//')) throw invalidPath('the path has an empty segment');
  const segments = rawPath
    .split('/')
    .slice(1)
    .map((s) => {
      let d: string;
      try {
        d = decodeURIComponent(s);
      } catch {
        throw invalidPath('the path is not valid percent-encoding (or not UTF-8)');
      }
      if (d === '.' || d === '..') throw invalidPath('the path has dot segments');
      // servlet containers (Tomcat, Jetty) strip `;params` from each segment, so `/a/..;/b`
      // is `/b` to them and `/a/..;/b` to policy: a segment with `;` is refused outright
      if (d.includes(';')) throw invalidPath('a path segment has `;` (path parameters, which some upstreams strip)');
      if (/[/\\]/.test(d)) throw invalidPath('the path has an encoded separator (`/` or `\\`)');
      // eslint-disable-next-line no-control-regex
      if (/[\x00-\x1f\x7f]/.test(d)) throw invalidPath('the path has control characters or NUL');
      if (/%[0-9A-Fa-f]{2}/.test(d)) throw invalidPath('the path is percent-encoded twice (`%25xx`)');
      return d;
    });
  return { segments, path: `/${segments.join('/')}` };
}

/**
 * Percent-encodes a canonical (decoded) path for the upstream: every byte outside
 * RFC 3986 `pchar` (unreserved, sub-delims, `:`, `@`) is encoded, so one decoded path
 * always goes out as the same bytes, whatever encoding the agent chose.
 */
export function encodePath(path: string): string {
  return path
    .split('/')
    .map((s) => encodeURIComponent(s).replace(/%(24|26|2B|2C|3D|3A|40)/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))))
    .join('/');
}

