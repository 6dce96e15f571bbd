// Which client the per-address rate limits count: the TCP peer, or, behind reverse proxies the
// operator names (--trust-proxy), the address those proxies wrote into X-Forwarded-For.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forwardedAddress, trustedProxies } from '../src/client-address.js';
import type { AppContext } from '../src/http/_env.js';
import { createHarness, type Harness } from './_harness.js';

/** A request context as the Node adapter gives it: a socket peer and headers. */
const request = (peer: string | undefined, forwardedFor?: string) =>
  ({
    env: { incoming: { socket: { remoteAddress: peer } } },
    req: { header: (name: string) => (name === 'x-forwarded-for' ? forwardedFor : undefined) },
  }) as unknown as AppContext;

describe('forwardedAddress', () => {
  const behind = forwardedAddress(trustedProxies(['127.0.0.1', '10.0.0.0/8', 'fd00::/8']));

  it('walks X-Forwarded-For from the right while the address is a trusted proxy', () => {
    expect(behind(request('127.0.0.1', '203.0.113.7'))).toBe('203.0.113.7');
    // Two proxies: the client is the first address neither wrote.
    expect(behind(request('127.0.0.1', '203.0.113.7, 10.1.2.3'))).toBe('203.0.113.7');
    expect(behind(request('::ffff:127.0.0.1', '203.0.113.7,10.1.2.3'))).toBe('203.0.113.7');
    // What the client wrote itself, left of its own address, is never read.
    expect(behind(request('127.0.0.1', '10.9.9.9, 198.51.100.1, 203.0.113.7'))).toBe('203.0.113.7');
    // IPv6 clients are counted by /64, as without a proxy.
    expect(behind(request('fd00::1', '2001:db8:1:2::9'))).toBe('2001:db8:1:2::/64');
    // All trusted: the leftmost, the nearest thing to a client there is.
    expect(behind(request('127.0.0.1', '10.0.0.1'))).toBe('10.0.0.1');
  });

  it('ignores the header from a peer that is no trusted proxy, and stops at non-addresses', () => {
    expect(behind(request('198.51.100.1', '203.0.113.7'))).toBe('198.51.100.1');
    expect(behind(request('127.0.0.1'))).toBe('127.0.0.1');
    expect(behind(request('127.0.0.1', 'unknown'))).toBe('127.0.0.1');
    expect(behind(request('127.0.0.1', '203.0.113.7, 10.1.2.3:8080'))).toBe('127.0.0.1');
    expect(behind(request(undefined, '203.0.113.7'))).toBe('unknown');
  });

  it('parses addresses and CIDR ranges, and names a bad entry', () => {
    expect(trustedProxies([]).check('127.0.0.1')).toBe(false);
    const list = trustedProxies(['192.0.2.0/24', '2001:db8::/32', '::1']);
    expect(list.check('192.0.2.200')).toBe(true);
    expect(list.check('192.0.3.1')).toBe(false);
    expect(list.check('2001:db8:ffff::1', 'ipv6')).toBe(true);
    expect(list.check('::1', 'ipv6')).toBe(true);
    for (const bad of ['', 'localhost', '10.0.0.0/33', '::/129', '10.0.0.0/8/8', '10.0.0.0/x'])
      expect(() => trustedProxies([bad]), bad).toThrow(`"${bad}" is not an IP address`);
  });
});

describe('rate limits behind a reverse proxy (a real server on loopback)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness('sqlite', 'proxy');
  });
  afterAll(() => h.dispose());

  /** signup/start calls (malformed ones count too) until one is refused; how many passed. */
  const startsUntilLimited = async (fetch: Harness['fetch'], forwardedFor: string) => {
    for (let n = 0; n < 5; n++) {
      const r = await fetch('/v1/signup/start', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor },
        body: '{}',
      });
      if (r.status === 429) return n;
      expect(r.status).toBe(400);
    }
    return Infinity;
  };
  const signupLimits = { starts: 2, finishes: 2 };

  it('counts each forwarded client apart when the peer is trusted', async () => {
    const server = await h.listen({
      signupLimits,
      clientAddress: forwardedAddress(trustedProxies(['127.0.0.1'])),
    });
    expect(await startsUntilLimited(server.fetch, '203.0.113.1')).toBe(2);
    expect(await startsUntilLimited(server.fetch, '203.0.113.2')).toBe(2);
    // A client that forges the header gains nothing: the proxy appends the real address.
    expect(await startsUntilLimited(server.fetch, '198.51.100.9, 203.0.113.1')).toBe(0);
  });

  it('counts the peer, whatever the header says, by default', async () => {
    const server = await h.listen({ signupLimits });
    expect(await startsUntilLimited(server.fetch, '203.0.113.3')).toBe(2);
    expect(await startsUntilLimited(server.fetch, '203.0.113.4')).toBe(0);
  });
});
