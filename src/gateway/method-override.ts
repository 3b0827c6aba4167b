/**
 * Method override parameters. Frameworks let a `POST` act as another method when it
 * carries `_method`: Rails (Rack::MethodOverride, in its default middleware, reads it from
 * a form body, and Rack reads a `POST` without a `Content-Type` as a form), Laravel and
 * Symfony (`_method` in the body, JSON included, or the query), Express's method-override
 * (commonly the query). Policy judges the request's method, so `POST /items/1` with
 * `_method=DELETE` would be judged as a `POST` and run as a `DELETE`: the parameter is
 * refused, as the method-override headers are never forwarded (forward-headers.ts).
 * Names are read decoded, with PHP's mangling of a leading `.` or space into `_`, any
 * case, and with or without `[...]`.
 */

const OVERRIDE = /^[_. ]method(?:\[.*)?$/i;

/** Where the request carries a method override parameter (`query`, `body`), or null. */
export function methodOverrideIn(input: { queryNames: string[]; json: boolean; body: unknown; raw: Buffer | undefined; contentType: string | undefined }): 'query' | 'body' | null {
  if (input.queryNames.some((n) => OVERRIDE.test(n))) return 'query';
  if (input.json) {
    const b = input.body;
    return b !== null && typeof b === 'object' && !Array.isArray(b) && Object.keys(b).some((n) => OVERRIDE.test(n)) ? 'body' : null;
  }
  if (!input.raw || input.raw.length === 0) return null;
  const type = (input.contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (type === '' || type === 'application/x-www-form-urlencoded') {
    for (const name of new URLSearchParams(input.raw.toString('utf8')).keys()) if (OVERRIDE.test(name)) return 'body';
  } else if (type === 'multipart/form-data') {
    // each part's `Content-Disposition: form-data; name="..."` (RFC 7578 §4.2)
    const parts = /content-disposition\s*:[^\r\n]*?;\s*name\s*=\s*(?:"([^"\r\n]*)"|([^;\s]*))/gi;
    for (const m of input.raw.toString('latin1').matchAll(parts)) if (OVERRIDE.test(m[1] ?? m[2] ?? '')) return 'body';
  }
  return null;
}
