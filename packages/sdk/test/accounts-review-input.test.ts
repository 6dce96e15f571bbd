// Bad input from callers (JavaScript callers, or TypeScript casting) fails with a typed SdkError,
// never a TypeError from deep inside: the public API's contract is one error class.
import { randomBytes } from '@coffer/crypto';
import { generateLinkCode } from '@coffer/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type FetchLike, memoryStore, SdkError } from '../src/index.js';
import { saveAttachment } from '../src/node.js';
import { FAST_HASHING, type TestServer, tap, testClient, testServer, username } from './_server.js';

const never: FetchLike = async () => {
  throw new Error('no request expected');
};

function invalidArgument(err: unknown): true {
  if (!SdkError.is(err, 'INVALID_ARGUMENT')) throw err;
  return true;
}

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server?.close();
});

describe('caller mistakes are INVALID_ARGUMENT, never an untyped error', () => {
  it('options that are null or not an object', async () => {
    const c = createClient({
      server: 'http://coffer.test',
      store: memoryStore(),
      storeKey: randomBytes(32),
      fetch: never,
      opaque: { keyStretching: FAST_HASHING },
    });
    await c.open();
    const code = 'ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-6789';
    // null is "no options" (the defaults): the call goes on to the server (none here).
    const network = (err: unknown) => {
      if (!SdkError.is(err, 'NETWORK')) throw err;
      return true;
    };
    await expect(c.signup('alice', 'pw', null as never)).rejects.toSatisfy(network);
    await expect(c.login('alice', 'pw', null as never)).rejects.toSatisfy(network);
    await expect(c.recover('alice', code, 'pw', null as never)).rejects.toSatisfy(network);
    await expect(c.signup('alice', 'pw', 'laptop' as never)).rejects.toSatisfy(invalidArgument);
    await expect(c.login('alice', 'pw', 'laptop' as never)).rejects.toSatisfy(invalidArgument);
    await expect(c.recover('alice', code, 'pw', 5 as never)).rejects.toSatisfy(invalidArgument);
    await expect(c.devices.joinByLink(generateLinkCode().text, 'phone' as never)).rejects.toSatisfy(
      invalidArgument,
    );
    await c.close();
  });

  it('a signal that is not an AbortSignal, in joinByLink and LinkOffer.wait', async () => {
    const c = createClient({
      server: 'http://coffer.test',
      store: memoryStore(),
      storeKey: randomBytes(32),
      fetch: never,
      opaque: { keyStretching: FAST_HASHING },
    });
    await c.open();
    await expect(
      c.devices.joinByLink(generateLinkCode().text, { signal: {} as never }),
    ).rejects.toSatisfy(invalidArgument);
    await c.close();

    const a = await testClient(server);
    await a.signup(username('in'), 'pw', { deviceName: 'a' });
    const offer = await a.devices.startLink();
    await expect(
      offer.wait({ onRequest: () => true, signal: 'soon' as never, pollMs: 5 }),
    ).rejects.toSatisfy(invalidArgument);
    // The mistake did not use up the offer: a proper wait still runs (and is stopped here).
    const controller = new AbortController();
    const waiting = offer.wait({ onRequest: () => true, signal: controller.signal, pollMs: 5 });
    controller.abort();
    await expect(waiting).rejects.toSatisfy((err: unknown) => SdkError.is(err, 'ABORTED'));
    await a.close();
  });

  it('saveAttachment with options that are not an object', async () => {
    const descriptor = {} as never;
    await expect(saveAttachment(descriptor, '/tmp/x', 'fast' as never)).rejects.toSatisfy(
      invalidArgument,
    );
  });
});

describe('LinkOffer.wait does not wait on the server’s word alone', () => {
  it('ends with LINK_EXPIRED after the link’s lifetime even if the server names a later expiry', async () => {
    let skew = 0;
    const now = () => Date.now() + skew;
    const { fetch } = tap(server.fetch, (req) =>
      req.method === 'POST' && req.path === '/v1/links'
        ? { expiresAt: Number.MAX_SAFE_INTEGER }
        : undefined,
    );
    const a = await testClient(server, { fetch, now });
    await a.signup(username('lw'), 'pw', { deviceName: 'a' });
    const offer = await a.devices.startLink();
    const waiting = offer.wait({ onRequest: () => true, pollMs: 5 });
    // Nobody uses the code; 12 minutes pass (a link lives 10).
    await new Promise((r) => setTimeout(r, 30));
    skew = 12 * 60 * 1000;
    const outcome = await Promise.race([
      waiting.then(
        () => 'approved',
        (err: unknown) => (SdkError.is(err, 'LINK_EXPIRED') ? 'expired' : err),
      ),
      new Promise((r) => setTimeout(() => r('still waiting'), 1500)),
    ]);
    expect(outcome).toBe('expired');
    await a.close();
    await waiting.catch(() => {});
  });
});
