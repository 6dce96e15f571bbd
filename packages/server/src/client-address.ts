import { BlockList, isIP, isIPv6 } from 'node:net';
import type { AppContext } from './http/_env.js';

/**
 * The key throttling counts a client under: an IPv4 address as is, an IPv6 address by its /64
 * prefix (one host is usually given a whole /64 and can rotate through it), an IPv4-mapped IPv6
 * address as the IPv4 address.
 *
 * @example addressKey('2001:db8:1:2:3:4:5:6') // "2001:db8:1:2::/64"
 */
export function addressKey(text: string): string {
  const address = unmapped(text);
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
 * in-process (where tests pass their own). No forwarding header is trusted.
 *
 * @example createApp({ ...deps, clientAddress: socketAddress });
 */
export function socketAddress(c: AppContext): string {
  const remote = c.env?.incoming?.socket?.remoteAddress;
  return remote ? addressKey(remote) : 'unknown';
}

/** An IPv4-mapped IPv6 address as the IPv4 address; any other text as is. */
function unmapped(address: string): string {
  return /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] ?? address;
}

/**
 * Parses the reverse proxies whose `X-Forwarded-For` the server believes: addresses and CIDR
 * ranges (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`).
 *
 * @throws {TypeError} naming the first entry that is neither.
 * @example trustedProxies(['127.0.0.1', '10.0.0.0/8'])
 */
export function trustedProxies(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', bits, extra] = entry.split('/');
    const family = isIP(address);
    const max = family === 4 ? 32 : 128;
    if (
      family === 0 ||
      extra !== undefined ||
      (bits !== undefined && (!/^[0-9]{1,3}$/.test(bits) || Number(bits) > max))
    )
      throw new TypeError(`"${entry}" is not an IP address or CIDR range`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return list;
}

/**
 * The client address of a request behind trusted reverse proxies: starting from the socket
 * peer, while the address at hand is a trusted proxy, the next one to the left in
 * `X-Forwarded-For` (which each proxy appends its own peer to) takes its place. The first
 * untrusted address is the client; entries further left were written by the client and are
 * never read. A peer that is no trusted proxy is taken as is, header or not.
 *
 * @example createApp({ ...deps, clientAddress: forwardedAddress(trustedProxies(['127.0.0.1'])) });
 */
export function forwardedAddress(trusted: BlockList): (c: AppContext) => string {
  const isTrusted = (address: string) => {
    const family = isIP(address);
    return family !== 0 && trusted.check(address, family === 4 ? 'ipv4' : 'ipv6');
  };
  return (c) => {
    const remote = c.env?.incoming?.socket?.remoteAddress;
    if (!remote) return 'unknown';
    let address = unmapped(remote);
    if (!isTrusted(address)) return addressKey(address);
    const hops = (c.req.header('x-forwarded-for') ?? '').split(',');
    while (isTrusted(address) && hops.length > 0) {
      const next = unmapped(hops.pop()!.trim());
      // Not an address (a proxy that writes something else): stop at the last one known.
      if (isIP(next) === 0) break;
      address = next;
    }
    return addressKey(address);
  };
}
