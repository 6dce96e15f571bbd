// The web back end keeps private keys in non-extractable CryptoKeys. To learn an X25519 key's
// public half it used to import the private key a second time as extractable and export it as a
// JWK, whose `d` (the private scalar, base64url) then lay in the page's heap as a string nothing
// can wipe, for every X25519 key imported (HPKE and MLS keys included). WebCrypto computes the
// public key from the non-extractable key itself: X25519(k, 9) (RFC 7748 §6.1).
import { afterEach, expect, test, vi } from 'vitest';
import { backend } from '#backend';
import { fromHex, toHex } from '../src/encoding.js';
import { importKeyAgreementKey, x25519 } from '../src/key-agreement.js';

afterEach(() => {
  vi.restoreAllMocks();
});

// Every back end computes the RFC 7748 vector; on the web one, WebCrypto's calls are watched too
// (the other back ends never call it).
test('an X25519 private key gives its public key and shared secret, never extractable nor exported', async () => {
  const web = backend.name === 'web';
  const proto = web ? (Object.getPrototypeOf(globalThis.crypto.subtle) as SubtleCrypto) : undefined;
  const importKey = proto && vi.spyOn(proto, 'importKey');
  const exportKey = proto && vi.spyOn(proto, 'exportKey');
  // RFC 7748 §6.1: Alice's private key, her public key, Bob's public key and the shared secret.
  const alice = await importKeyAgreementKey(
    fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
  );
  expect(toHex(alice.publicKey)).toBe(
    '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
  );
  const shared = await x25519(
    alice,
    fromHex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f'),
  );
  expect(toHex(shared)).toBe('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
  if (!importKey || !exportKey) return;
  const pkcs8Imports = importKey.mock.calls.filter((call) => call[0] === 'pkcs8');
  expect(pkcs8Imports.length).toBeGreaterThan(0);
  expect(pkcs8Imports.map((call) => call[3])).not.toContain(true);
  expect(exportKey).not.toHaveBeenCalled();
});
