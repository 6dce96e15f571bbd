// spec/account-v1.md §7: a device's login proof, bound to one login.
import { randomBytes } from '@coffer/crypto';
import { describe, expect, it } from 'vitest';
import {
  generateKeyPair,
  LOGIN_PROOF_LENGTH,
  newDeviceId,
  ProtocolError,
  signLoginProof,
  verifyLoginProof,
} from '../src/index.js';

describe('login proof', () => {
  it('verifies only for the same login, device and key', async () => {
    const device = await generateKeyPair();
    const other = await generateKeyPair();
    const context = {
      loginId: newDeviceId(),
      deviceId: newDeviceId(),
      sessionKey: randomBytes(64),
    };
    const proof = await signLoginProof(device.signingKey, context);
    expect(proof.length).toBe(LOGIN_PROOF_LENGTH);
    expect(await verifyLoginProof(device.publicKey, proof, context)).toBe(true);
    expect(await verifyLoginProof(other.publicKey, proof, context)).toBe(false);
    for (const changed of [
      { ...context, loginId: newDeviceId() },
      { ...context, deviceId: newDeviceId() },
      { ...context, sessionKey: randomBytes(64) },
    ]) {
      expect(await verifyLoginProof(device.publicKey, proof, changed)).toBe(false);
    }
    const flipped = proof.slice();
    flipped[0]! ^= 1;
    expect(await verifyLoginProof(device.publicKey, flipped, context)).toBe(false);
  });

  it('answers false for malformed input and throws only for caller mistakes when signing', async () => {
    const device = await generateKeyPair();
    const context = {
      loginId: newDeviceId(),
      deviceId: newDeviceId(),
      sessionKey: randomBytes(64),
    };
    const proof = await signLoginProof(device.signingKey, context);
    expect(await verifyLoginProof(device.publicKey, proof.subarray(1), context)).toBe(false);
    expect(await verifyLoginProof(new Uint8Array(31), proof, context)).toBe(false);
    expect(
      await verifyLoginProof(device.publicKey, proof, { ...context, loginId: 'not an id' }),
    ).toBe(false);
    expect(
      await verifyLoginProof(device.publicKey, proof, { ...context, sessionKey: randomBytes(32) }),
    ).toBe(false);
    await expect(
      signLoginProof(device.signingKey, { ...context, sessionKey: randomBytes(32) }),
    ).rejects.toSatisfy((err) => ProtocolError.is(err, 'INVALID_ARGUMENT'));
    await expect(
      signLoginProof(device.signingKey, { ...context, deviceId: 'alice' }),
    ).rejects.toThrow(/"deviceId" expected an id/);
  });
});
