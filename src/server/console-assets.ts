import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { ServerResponse } from 'node:http';
import { NotFoundError, WritError } from '../core/errors.js';

/**
 * The console's built files (`npm run build` bundles console/ into dist/console/ with
 * esbuild, scripts/build-console.mjs). Served from that one folder by name from a fixed
 * list, never by a path the client chose; read once and kept.
 */
const DIR = fileURLToPath(new URL('../../dist/console/', import.meta.url));
const TYPES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
};

/**
 * The console's CSP: scripts and styles from this origin only (no inline script or style,
 * no eval), `fetch`/EventSource to this origin only, no framing, no plugins; and Trusted
 * Types with no policy, so no script of ours can reach an HTML sink such as innerHTML at all.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

export const CONSOLE_HEADERS: Record<string, string> = {
  'content-security-policy': CONSOLE_CSP,
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=()',
  'x-content-type-options': 'nosniff',
};

const cache = new Map<string, Buffer>();

export async function sendConsoleFile(res: ServerResponse, name: string, method: string): Promise<void> {
  const type = TYPES[name];
  if (!type) throw new NotFoundError(`no console file \`${name.slice(0, 80)}\``);
  let body = cache.get(name);
  if (!body) {
    try {
      body = await readFile(DIR + name);
    } catch {
      throw new WritError('console_not_built', 'the console is not built: run `npm run build`', 503);
    }
    cache.set(name, body);
  }
  // the HTML names the bundle by a fixed path: it is revalidated each time; the bundle is small
  res.writeHead(200, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-cache', ...CONSOLE_HEADERS });
  res.end(method === 'HEAD' ? undefined : body);
}
