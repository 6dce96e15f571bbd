import { isIPv6 } from 'node:net';
import type { AppContext } from './http/_env.js';

/**
 * The key throttling counts a client under: an IPv4 address as is, an IPv6 address by its /64
 * prefix (one host is usually given a whole /64 and can rotate through it), an IPv4-mapped IPv6
 * address as the IPv4 address. Only the TCP peer is used; no forwarding header is trusted.
 *
 * @example addressKey('2001:db8:1:2:3:4:5:6') // "2001:db8:1:2::/64"
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = address.includes('::') && tail ? tail.split(':') : [];
  const groups = address.includes('::')
    ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
    : left;
  const prefix = groups.slice(0, 4).map((g) => (Number.parseInt(g, 16) || 0).toString(16));
  return `${prefix.join(':')}::/64`;
}

/**
 * The default client address of a request: the socket peer's {@link addressKey}, or `unknown`
 * in-process (where tests pass their own).
 *
 * @example createApp({ ...deps, clientAddress: socketAddress });
 */
export function socketAddress(c: AppContext): string {
  const remote = c.env?.incoming?.socket?.remoteAddress;
  return remote ? addressKey(remote) : 'unknown';
}
