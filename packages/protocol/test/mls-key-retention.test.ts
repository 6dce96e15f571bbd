// ts-mls keeps the secret trees of the last epochs for late messages (keyRetentionConfig, 4 by
// default). An epoch pushed out of that window is consumed: ts-mls 2.0.0-rc.10 collected its
// secrets and then returned none, so nothing wiped them. Patched (patches/), the evicted epoch's
// secret tree, sender-data secret and resumption PSK are reported consumed, and the engine wipes
// what the new state no longer holds. This test fails on the unpatched file.
import { utf8Encode } from '@coffer/crypto';
import { type ClientState, clientStateDecoder, decode } from 'ts-mls';
import { describe, expect, test } from 'vitest';
import { defaultClientConfig } from '../../../node_modules/ts-mls/dist/src/clientConfig.js';
// Not exported by ts-mls; imported by path to test the patched function itself.
import { addHistoricalReceiverData } from '../../../node_modules/ts-mls/dist/src/clientState.js';
import { createTsMlsEngine } from '../src/index.js';

describe('key retention', () => {
  test('an epoch that leaves the retention window is reported consumed, and the engine runs on', async () => {
    const engine = await createTsMlsEngine({ validateCredential: async () => true });
    const a = await engine.createKeyPackage({ identity: utf8Encode('a') });
    const b = await engine.createKeyPackage({ identity: utf8Encode('b') });
    let alice = await engine.createGroup(utf8Encode('retention'), a);
    const added = await engine.addMembers(alice, [b.publicKeyPackage]);
    alice = added.group;
    let bob = await engine.joinFromWelcome(added.welcome, b);
    // Six commits: bob's state holds the last four epochs; earlier ones were evicted on the way
    // (the engine wiped them as it went, and carries on).
    for (let i = 0; i < 6; i++) {
      const update = await engine.selfUpdate(alice);
      alice = update.group;
      bob = (await engine.process(bob, update.commit)).group;
    }
    const late = await engine.encrypt(alice, utf8Encode('still readable'));
    const read = await engine.process(bob, late.message);
    expect(read.result.kind).toBe('application');
    bob = read.group;

    const state = decode(clientStateDecoder, engine.exportState(bob).subarray(1)) as ClientState;
    const retain = defaultClientConfig.keyRetentionConfig.retainKeysForEpochs;
    expect(state.historicalReceiverData.size).toBe(retain);
    const oldest = [...state.historicalReceiverData.keys()].sort((x, y) => (x < y ? -1 : 1))[0]!;
    const evicted = state.historicalReceiverData.get(oldest)!;
    const [kept, consumed] = addHistoricalReceiverData(state, defaultClientConfig);
    expect(kept.has(oldest)).toBe(false);
    expect(kept.size).toBe(retain);
    expect(consumed).toContain(evicted.senderDataSecret);
    expect(consumed).toContain(evicted.resumptionPsk);
    expect(consumed.length).toBeGreaterThan(2);
    expect(consumed.every((v) => v instanceof Uint8Array)).toBe(true);
  });
});
