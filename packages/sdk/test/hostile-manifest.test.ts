// Manifest checks against a scripted hostile server: a client with local state (written
// directly, as a logged-in device would have it) meets manifests that roll back, fork, skip,
// change identity or drop it. No real server: only GET /v1/manifest and its history are played.
import { randomBytes, toBase64url } from '@coffer/crypto';
import {
  type Ed25519KeyPair,
  generateKeyPair,
  MAX_MANIFEST_CHAIN,
  type ManifestBody,
  manifestToJson,
  newAccountId,
  newDeviceId,
  nextManifestBody,
  type SignedManifest,
  signManifest,
  sortDevices,
} from '@coffer/protocol';
import { beforeAll, describe, expect, it } from 'vitest';
import { createClient, type FetchLike, memoryStore, SdkError } from '../src/index.js';
import { openLocalState } from '../src/local-state.js';
import { acceptChain, acceptLatest, requireInChain } from '../src/manifest-state.js';

interface Account {
  accountId: string;
  identity: Ed25519KeyPair;
  device: Ed25519KeyPair;
  deviceId: string;
  chain: SignedManifest[];
}

async function first(
  identity: Ed25519KeyPair,
  accountId: string,
  devices: ManifestBody['devices'],
) {
  return signManifest(identity.signingKey, {
    accountId,
    seq: 1,
    prev: new Uint8Array(32),
    identityKey: identity.publicKey,
    backupVersion: 0,
    backupHash: new Uint8Array(32),
    issuedAt: 1000,
    devices: sortDevices(devices),
  });
}

async function next(
  identity: Ed25519KeyPair,
  previous: SignedManifest,
  devices: ManifestBody['devices'],
  issuedAt = 2000,
) {
  return signManifest(
    identity.signingKey,
    await nextManifestBody(previous, { devices: sortDevices(devices), issuedAt }),
  );
}

let alice: Account;
let other: Ed25519KeyPair;
beforeAll(async () => {
  const identity = await generateKeyPair();
  const device = await generateKeyPair();
  const deviceId = newDeviceId();
  const accountId = newAccountId();
  const me = { id: deviceId, signingKey: device.publicKey, name: 'me', addedAt: 1000 };
  const m1 = await first(identity, accountId, [me]);
  const friend = {
    id: newDeviceId(),
    signingKey: (await generateKeyPair()).publicKey,
    name: 'b',
    addedAt: 2000,
  };
  const m2 = await next(identity, m1, [me, friend]);
  const m3 = await next(
    identity,
    m2,
    [
      me,
      friend,
      {
        id: newDeviceId(),
        signingKey: (await generateKeyPair()).publicKey,
        name: 'c',
        addedAt: 3000,
      },
    ],
    3000,
  );
  alice = { accountId, identity, device, deviceId, chain: [m1, m2, m3] };
  other = await generateKeyPair();
});

/** A client logged in as alice that trusts manifest `trustedSeq`, served by `serve`. */
async function aliceClient(trustedSeq: number, serve: (path: string) => unknown) {
  const store = memoryStore();
  const storeKey = randomBytes(32);
  const state = await openLocalState(store, storeKey);
  await state.writeAccount({
    accountId: alice.accountId,
    username: 'alice',
    deviceId: alice.deviceId,
    deviceSeed: alice.device.seed,
    manifest: alice.chain[trustedSeq - 1]!,
  });
  await state.writeSession({
    accountId: alice.accountId,
    token: toBase64url(randomBytes(32)),
    expiresAt: Date.now() + 1e9,
    identitySeed: alice.identity.seed,
  });
  const requests: string[] = [];
  const fetch: FetchLike = async (url) => {
    const path = new URL(url).pathname + new URL(url).search;
    requests.push(path);
    const body = serve(path);
    return body === undefined
      ? new Response(JSON.stringify({ error: { code: 'NOT_FOUND', message: '' } }), { status: 404 })
      : new Response(JSON.stringify(body), { status: 200 });
  };
  const client = createClient({ server: 'http://hostile.test', store, storeKey, fetch });
  await client.open();
  return { client, requests, state };
}

const wire = (m: SignedManifest) => ({ manifest: manifestToJson(m) });

async function detail(p: Promise<unknown>): Promise<string | undefined> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!SdkError.is(err, 'PROTOCOL_VIOLATION'))
    throw err ?? new Error('expected a PROTOCOL_VIOLATION');
  return err.detail;
}

describe('a client with local state and a hostile server', () => {
  it('accepts the next manifest and catches up through the history over a gap', async () => {
    const { client, requests } = await aliceClient(1, (path) => {
      if (path === '/v1/manifest') return wire(alice.chain[2]!);
      if (path === '/v1/manifest/history?after=1')
        return { manifests: alice.chain.slice(1).map(manifestToJson) };
      return undefined;
    });
    expect((await client.devices.list()).map((d) => d.name)).toEqual(['me', 'b', 'c']);
    expect(requests).toEqual(['/v1/manifest', '/v1/manifest/history?after=1']);
  });

  it('refuses a rollback', async () => {
    const { client } = await aliceClient(2, () => wire(alice.chain[0]!));
    expect(await detail(client.devices.list())).toBe('MANIFEST_ROLLBACK');
    // Still logged in: a hostile answer does not end the session.
    expect((await client.devices.startLink().catch((e: unknown) => e)) instanceof SdkError).toBe(
      true,
    );
  });

  it('refuses a fork at the same seq and at the next one', async () => {
    const forked2 = await next(
      alice.identity,
      alice.chain[0]!,
      [{ id: alice.deviceId, signingKey: alice.device.publicKey, name: 'me', addedAt: 1000 }],
      9999,
    );
    const same = await aliceClient(2, () => wire(forked2));
    expect(await detail(same.client.devices.list())).toBe('MANIFEST_FORK');
    const following = await aliceClient(1, () => wire(alice.chain[1]!));
    expect((await following.client.devices.list()).length).toBe(2);
    const forked3 = await next(alice.identity, forked2, [
      { id: alice.deviceId, signingKey: alice.device.publicKey, name: 'renamed', addedAt: 1000 },
    ]);
    const nextSeq = await aliceClient(2, () => wire(forked3));
    expect(await detail(nextSeq.client.devices.list())).toBe('MANIFEST_FORK');
  });

  it('refuses a history with a hole or a foreign link', async () => {
    const { client } = await aliceClient(1, (path) => {
      if (path === '/v1/manifest') return wire(alice.chain[2]!);
      return { manifests: [manifestToJson(alice.chain[2]!)] }; // seq 2 left out
    });
    expect(await detail(client.devices.list())).toBe('MANIFEST_GAP');
  });

  it("refuses another identity's manifest for the account", async () => {
    const impostor = await first(other, alice.accountId, [
      { id: alice.deviceId, signingKey: alice.device.publicKey, name: 'me', addedAt: 1000 },
    ]);
    const forged = await next(other, impostor, [
      { id: alice.deviceId, signingKey: alice.device.publicKey, name: 'me', addedAt: 1000 },
    ]);
    const { client } = await aliceClient(1, () => wire(forged));
    expect(await detail(client.devices.list())).toBe('IDENTITY_MISMATCH');
  });

  it('refuses a tampered signature', async () => {
    const m = alice.chain[1]!;
    const bad = { body: m.body, signature: m.signature.slice() };
    bad.signature[0] = bad.signature[0]! ^ 1;
    const { client } = await aliceClient(1, () => wire(bad));
    expect(await detail(client.devices.list())).toBe('BAD_SIGNATURE');
  });

  it('ends the session with DEVICE_REVOKED when a verified manifest leaves this device out', async () => {
    const friend = {
      id: newDeviceId(),
      signingKey: (await generateKeyPair()).publicKey,
      name: 'b',
      addedAt: 2000,
    };
    const without = await next(alice.identity, alice.chain[0]!, [friend]);
    const { client, state } = await aliceClient(1, () => wire(without));
    await expect(client.devices.list()).rejects.toSatisfy((e) => SdkError.is(e, 'DEVICE_REVOKED'));
    expect(await client.whoami()).toBeUndefined();
    expect(await state.readSession()).toBeUndefined();
    // The newer manifest is remembered: a later rollback to one that lists us is caught.
    expect((await state.readAccount(alice.accountId))?.manifest).toEqual(without);
  });
});

describe('manifest-state core', () => {
  it('acceptLatest asks for the history when nothing is trusted or pinned', async () => {
    expect(await acceptLatest({ accountId: alice.accountId }, alice.chain[1]!, 'op')).toBe('gap');
    const pinned = await acceptLatest(
      { accountId: alice.accountId, identityKey: alice.identity.publicKey },
      alice.chain[1]!,
      'op',
    );
    expect(pinned !== 'gap' && pinned.body.seq).toBe(2);
  });

  it('acceptChain verifies from seq 1 and refuses a chain that starts later', async () => {
    const v = await acceptChain({ accountId: alice.accountId }, alice.chain, 'op');
    expect(v.body.seq).toBe(3);
    await expect(
      acceptChain({ accountId: alice.accountId }, alice.chain.slice(1), 'op'),
    ).rejects.toSatisfy((e) => SdkError.is(e, 'PROTOCOL_VIOLATION') && e.detail === 'MANIFEST_GAP');
    await expect(acceptChain({ accountId: newAccountId() }, alice.chain, 'op')).rejects.toSatisfy(
      (e) => SdkError.is(e, 'PROTOCOL_VIOLATION') && e.detail === 'ACCOUNT_MISMATCH',
    );
    await expect(acceptChain({ accountId: alice.accountId }, [], 'op')).rejects.toSatisfy((e) =>
      SdkError.is(e, 'PROTOCOL_VIOLATION'),
    );
  });

  it('acceptChain pages through a history longer than one verifyManifestChain call takes', async () => {
    const chain = [...alice.chain];
    while (chain.length < MAX_MANIFEST_CHAIN + 2) {
      const devices = (await acceptChain({ accountId: alice.accountId }, alice.chain, 'op')).body
        .devices;
      chain.push(await next(alice.identity, chain.at(-1)!, [...devices], 3000 + chain.length));
    }
    const v = await acceptChain({ accountId: alice.accountId }, chain, 'op');
    expect(v.body.seq).toBe(MAX_MANIFEST_CHAIN + 2);
    // A break past the first page is still found.
    const broken = [...chain];
    broken[MAX_MANIFEST_CHAIN + 1] = chain[MAX_MANIFEST_CHAIN - 1]!;
    await expect(acceptChain({ accountId: alice.accountId }, broken, 'op')).rejects.toSatisfy((e) =>
      SdkError.is(e, 'PROTOCOL_VIOLATION'),
    );
  }, 60_000);

  it('requireInChain finds rollbacks and forks', async () => {
    const all = await Promise.all(
      alice.chain.map(async (manifest, i) => ({
        manifest,
        body: (await acceptChain({ accountId: alice.accountId }, alice.chain.slice(0, i + 1), 'op'))
          .body,
      })),
    );
    requireInChain(all, all[1]!, 'op');
    expect(() => requireInChain(all.slice(0, 1), all[2]!, 'op')).toThrow(/older manifest/);
    expect(() => requireInChain(all, { ...all[1]!, manifest: alice.chain[0]! }, 'op')).toThrow(
      /disagrees/,
    );
  });
});
