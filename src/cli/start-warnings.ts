import { isIP } from 'node:net';

/** Is `host` a loopback listen address (only this machine can connect)? */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === '::1') return true;
  // IPv4 loopback is all of 127.0.0.0/8 (RFC 1122 §3.2.1.3), also written IPv4-mapped (RFC 4291 §2.5.5.2)
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/**
 * What `writ serve` says on stderr at start about how exposed it is. It cannot see a TLS
 * terminator in front of it; an `https://` issuer (the public URL agents use) is taken to
 * mean there is one. With `--tls-cert`/`--tls-key` it speaks TLS itself (`tls`).
 */
export function startWarnings(options: { host: string; issuer: string; keysSealed: boolean; tls?: boolean }): string[] {
  const out: string[] = [];
  if (!options.keysSealed) {
    out.push(
      'writ: warning: signing keys are stored unsealed (WRIT_KEY_ENCRYPTION_KEY is not set): anyone who can read the store can sign tokens. ' +
        'Set WRIT_KEY_ENCRYPTION_KEY to a secret of at least 32 characters (`openssl rand -base64 32`).',
    );
  }
  if (!isLoopbackHost(options.host) && !options.tls && !options.issuer.startsWith('https://')) {
    out.push(
      `writ: warning: listening on \`${options.host}\` beyond loopback without TLS in front (the issuer is \`${options.issuer}\`): ` +
        'tokens would cross the network in clear. Serve TLS with --tls-cert/--tls-key, or put a TLS-terminating proxy in front and set WRIT_ISSUER to its https:// URL (README, Operations).',
    );
  }
  return out;
}
