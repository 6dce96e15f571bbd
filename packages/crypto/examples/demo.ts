// A short tour of @coffer/crypto: `npm start` at the repository root runs it.
import {
  argon2id,
  CryptoError,
  createHpkeRecipient,
  createHpkeSender,
  decrypt,
  encrypt,
  generateAeadKey,
  generateKeyAgreementKeyPair,
  generateSigningKeyPair,
  importAeadKey,
  importSigningKey,
  randomBytes,
  readEnvelopeHeader,
  sign,
  streamDecrypt,
  streamEncrypt,
  toBase64url,
  toHex,
  utf8Decode,
  utf8Encode,
  verify,
} from '../src/index.js';

function step(title: string, detail: string): void {
  console.log(`\n▸ ${title}\n  ${detail.replaceAll('\n', '\n  ')}`);
}

async function main(): Promise<void> {
  console.log('Coffer crypto core demo');

  // 1. An envelope bound to where it is stored.
  const key = await importAeadKey(generateAeadKey(), { id: 'demo-key-1' });
  const context = utf8Encode('users/42/email');
  const envelope = await encrypt(key, utf8Encode('alice@example.com'), { context });
  const header = readEnvelopeHeader(envelope);
  step(
    'Envelope (AES-256-GCM, bound to users/42/email)',
    `${envelope.length} bytes: ${toBase64url(envelope).slice(0, 48)}…\n` +
      `header: suite ${header.suite}, key id "${utf8Decode(header.keyId)}"\n` +
      `opens to: ${utf8Decode(await decrypt(key, envelope, { context }))}`,
  );

  // 2. Moved to another row, or tampered with: one opaque error.
  for (const [what, attempt] of [
    [
      'copied to users/43/email',
      () => decrypt(key, envelope, { context: utf8Encode('users/43/email') }),
    ],
    ['one bit flipped', () => decrypt(key, flip(envelope, envelope.length - 1), { context })],
  ] as const) {
    try {
      await attempt();
      throw new Error('unreachable: tampering went unnoticed');
    } catch (err) {
      if (!CryptoError.is(err, 'DECRYPTION_FAILED')) throw err;
      step(`Envelope ${what}`, `rejected: ${err.code}`);
    }
  }

  // 3. Signatures.
  const signer = await importSigningKey((await generateSigningKeyPair()).secretKey);
  const message = utf8Encode('device manifest v1');
  const signature = await sign(signer, message);
  step(
    'Ed25519 signature',
    `public key ${toHex(signer.publicKey)}\n` +
      `valid: ${await verify(signer.publicKey, message, signature)}, ` +
      `after tampering: ${await verify(signer.publicKey, flip(message, 0), signature)}`,
  );

  // 4. Sealing to someone's public key (HPKE, RFC 9180).
  const bob = await generateKeyAgreementKeyPair();
  const info = utf8Encode('coffer/v1/demo');
  const sender = await createHpkeSender(bob.publicKey, { info });
  const sealed = await sender.seal(utf8Encode('for Bob only'));
  const recipient = await createHpkeRecipient(bob.secretKey, sender.enc, { info });
  step(
    'HPKE to Bob',
    `enc ${toHex(sender.enc).slice(0, 16)}…, Bob reads: ${utf8Decode(await recipient.open(sealed))}`,
  );

  // 5. A large payload in authenticated chunks.
  const file = randomBytes(16 * 1024 * 1024);
  const t0 = performance.now();
  const stream = await streamEncrypt(key, file);
  const back = await streamDecrypt(key, stream);
  const ms = performance.now() - t0;
  const ok = back.length === file.length && back.every((b, i) => b === file[i]);
  step(
    'Chunked stream (16 MiB, 64 KiB chunks)',
    `round trip ${ok ? 'ok' : 'FAILED'} in ${ms.toFixed(0)} ms`,
  );
  await expectRejected('Stream truncated by its last chunk', () =>
    streamDecrypt(key, stream.subarray(0, stream.length - (65_536 + 16))),
  );

  // 6. A key from a password.
  const t1 = performance.now();
  const derived = await argon2id(utf8Encode('correct horse battery staple'), randomBytes(16));
  step(
    'Argon2id (64 MiB, 3 passes, 4 lanes)',
    `${derived.length}-byte key in ${(performance.now() - t1).toFixed(0)} ms`,
  );
  console.log('\nDone. Run `npm test` for the full suite.');
}

async function expectRejected(what: string, attempt: () => Promise<unknown>): Promise<void> {
  try {
    await attempt();
  } catch (err) {
    if (!CryptoError.is(err, 'DECRYPTION_FAILED')) throw err;
    step(what, `rejected: ${err.code}`);
    return;
  }
  throw new Error(`${what}: tampering went unnoticed`);
}

function flip(bytes: Uint8Array, index: number): Uint8Array {
  const copy = bytes.slice();
  copy[index]! ^= 1;
  return copy;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
