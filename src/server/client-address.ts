import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';

/**
 * The address a request comes from, for the failure limiter. The socket's peer address,
 * unless that peer is a trusted proxy (`WRIT_TRUSTED_PROXIES`): then the client is read
 * from `X-Forwarded-For`, right to left, skipping trusted proxies, and the first address
 * that is not one is the client. Only the right end of the header can be trusted (each
 * proxy appends the address it saw; everything left of the nearest untrusted hop is the
 * client's own text), and a peer that is not a trusted proxy never has its
 * `X-Forwarded-For` read at all: otherwise any client could pick its own address, and
 * so its own limit, or someone else's.
 */
export class ClientAddresses {
  private readonly trusted = new BlockList();
  private readonly any: boolean;

  /** `trusted`: addresses and CIDR ranges, IPv4 or IPv6 (`10.0.0.0/8`, `::1`, `fd00::/8`). */
  constructor(trusted: string[] = []) {
    for (const entry of trusted) {
      const [addr, bits, ...rest] = entry.trim().split('/');
      const family = isIP(addr ?? '');
      if (rest.length > 0 || family === 0) throw new TypeError(`trusted proxy \`${entry}\` is not an IP address or CIDR range`);
      const type = family === 4 ? 'ipv4' : 'ipv6';
      if (bits === undefined) {
        this.trusted.addAddress(addr!, type);
      } else {
        const prefix = Number(bits);
        if (!/^\d+$/.test(bits) || prefix > (family === 4 ? 32 : 128)) throw new TypeError(`trusted proxy \`${entry}\` has a bad prefix length`);
        this.trusted.addSubnet(addr!, prefix, type);
      }
    }
    this.any = trusted.length > 0;
  }

  isTrusted(address: string): boolean {
    const a = normalize(address);
    const family = isIP(a);
    if (family === 0) return false;
    return this.trusted.check(a, family === 4 ? 'ipv4' : 'ipv6');
  }

  of(req: IncomingMessage): string {
    const peer = normalize(req.socket.remoteAddress ?? 'unknown');
    if (!this.any || !this.isTrusted(peer)) return peer;
    const header = req.headers['x-forwarded-for'];
    const hops = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').map((h) => h.trim()).filter((h) => h !== '');
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normalize(hops[i]!);
      if (isIP(hop) === 0) return `invalid:${hop.slice(0, 64)}`; // a proxy we trust appended garbage: key on it as given
      if (!this.isTrusted(hop)) return hop;
    }
    // every hop is a trusted proxy (or there is none): the request started at the proxy
    return peer;
  }
}

/** `::ffff:192.0.2.1` is 192.0.2.1; IPv6 in one spelling. */
function normalize(address: string): string {
  const a = address.trim();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped) return mapped[1]!;
  return isIP(a) === 6 ? a.toLowerCase() : a;
}

/**
 * The failure limiter's key for a client address. An IPv6 client is counted per /64: one
 * host is usually given a whole /64 (RFC 6177), and could otherwise take a fresh address
 * for every request and never reach its limit. IPv4 addresses count one by one.
 */
export function limiterKey(address: string): string {
  if (isIP(address) !== 6) return address;
  const groups = expandIPv6(address);
  return groups ? `${groups.slice(0, 4).join(':')}::/64` : address;
}

/** The eight 16-bit groups of an IPv6 address, as lowercase hex without leading zeros; null when it does not parse. */
function expandIPv6(address: string): string[] | null {
  let a = address.toLowerCase().split('%')[0]!;
  // an embedded IPv4 tail (`64:ff9b::192.0.2.1`) is two groups
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (v4) {
    const [b1, b2, b3, b4] = v4.slice(1).map(Number) as [number, number, number, number];
    a = `${a.slice(0, v4.index)}${((b1 << 8) | b2).toString(16)}:${((b3 << 8) | b4).toString(16)}`;
  }
  const halves = a.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const groups = [...head, ...Array(Math.max(0, fill)).fill('0'), ...tail];
  if (groups.length !== 8) return null;
  return groups.map((g) => parseInt(g, 16).toString(16));
}
