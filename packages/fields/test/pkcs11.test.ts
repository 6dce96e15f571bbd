import { createDecipheriv, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import pkcs11js from 'pkcs11js';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import { FieldsError } from '../src/errors.js';
import {
  createPkcs11Provider,
  MAX_KEK_ID_BYTES,
  PKCS11_WRAP_VERSION,
  type Pkcs11Provider,
  type Pkcs11ProviderOptions,
} from '../src/providers/pkcs11.js';
import { createSoftHsm, findSoftHsm, openInspector, type SoftHsm } from './_softhsm.js';

const setup = findSoftHsm();
const ci = process.env.CI === 'true';
const WRAPPED_BYTES = 61;

if (!setup.available && !ci) {
  console.warn(
    `NOTICE: ${setup.missing} not found; PKCS#11 provider tests against SoftHSM2 skipped ` +
      '(apt-get install softhsm2, or set COFFER_SOFTHSM2_LIB to libsofthsm2.so)',
  );
}

test.runIf(ci)('SoftHSM2 is installed (required when CI=true)', () => {
  if (!setup.available) {
    throw new Error(
      `${setup.missing} not found: CI must run the PKCS#11 tests (apt-get install -y softhsm2)`,
    );
  }
  expect(setup.available).toBe(true);
});

/** The FieldsError a promise rejects with (fails the test if it resolves or throws another). */
async function rejection(promise: Promise<unknown>): Promise<FieldsError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!FieldsError.is(err)) throw new Error(`expected a FieldsError, got ${String(err)}`);
  return err;
}

const dataKey = (): Uint8Array => new Uint8Array(randomBytes(32));
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('pkcs11 provider without a token', () => {
  test('a missing library is PROVIDER_UNAVAILABLE, retryable, naming the path', async () => {
    const library = '/nonexistent/coffer/libnothing.so';
    const err = await rejection(createPkcs11Provider({ library, pin: '1234' }));
    expect(err.code).toBe('PROVIDER_UNAVAILABLE');
    expect(err.retryable).toBe(true);
    expect(err.operation).toBe('provider.pkcs11.create');
    expect(err.message).toContain(library);
  });

  test('malformed options are INVALID_ARGUMENT, naming the option', async () => {
    const bad: [Partial<Pkcs11ProviderOptions>, string][] = [
      [{ pin: '1' }, '"library"'],
      [{ library: '/x.so' }, '"pin"'],
      [{ library: '/x.so', pin: '1', slot: -1 }, '"slot"'],
      [{ library: '/x.so', pin: '1', slot: 1.5 }, '"slot"'],
    ];
    for (const [options, name] of bad) {
      const err = await rejection(createPkcs11Provider(options as Pkcs11ProviderOptions));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toContain(name);
    }
  });
});

describe.skipIf(!setup.available)('pkcs11 provider against SoftHSM2', () => {
  const LABEL = 'coffer-a';
  let hsm: SoftHsm;
  const opened: Pkcs11Provider[] = [];

  beforeAll(() => {
    if (!setup.available) return;
    // Two tokens, so that choosing one by label or slot means something.
    hsm = createSoftHsm(setup, [LABEL, 'coffer-b']);
  });
  afterEach(async () => {
    for (const provider of opened.splice(0)) await provider.close();
    vi.restoreAllMocks();
  });
  afterAll(() => hsm?.cleanup());

  async function open(options: Partial<Pkcs11ProviderOptions> = {}): Promise<Pkcs11Provider> {
    const provider = await createPkcs11Provider({
      library: hsm.library,
      tokenLabel: LABEL,
      pin: hsm.pin,
      ...options,
    });
    opened.push(provider);
    return provider;
  }

  test('wraps and unwraps any data key under any context', async () => {
    const provider = await open();
    await provider.generateKek('round-trip');
    expect(provider.kind).toBe('pkcs11');
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ maxLength: 80 }),
        async (key, context) => {
          const wrapped = await provider.keyOperation({
            op: 'wrap',
            kekId: 'round-trip',
            key,
            context,
          });
          expect(wrapped.length).toBe(WRAPPED_BYTES);
          expect(wrapped[0]).toBe(PKCS11_WRAP_VERSION);
          const unwrapped = await provider.keyOperation({
            op: 'unwrap',
            kekId: 'round-trip',
            wrapped,
            context,
          });
          expect(unwrapped).toEqual(key);
        },
      ),
      { numRuns: 40 },
    );
    // A fresh IV per wrap: the same key and context never give the same bytes.
    const key = dataKey();
    const context = text('t/users/email');
    const one = await provider.keyOperation({ op: 'wrap', kekId: 'round-trip', key, context });
    const two = await provider.keyOperation({ op: 'wrap', kekId: 'round-trip', key, context });
    expect(one).not.toEqual(two);
  });

  test('the KEK is made inside the token and cannot be read or wrapped out', async () => {
    const provider = await open();
    await provider.generateKek('sealed');
    const key = dataKey();
    const context = text('ctx');
    const wrapped = await provider.keyOperation({ op: 'wrap', kekId: 'sealed', key, context });
    const inspector = openInspector(hsm, LABEL);
    try {
      const { p11, session } = inspector;
      const found = inspector.findByLabel('sealed');
      expect(found).toHaveLength(1);
      const kek = found[0]!;
      // The value itself is refused.
      expect(() => p11.C_GetAttributeValue(session, kek, [{ type: pkcs11js.CKA_VALUE }])).toThrow(
        'CKR_ATTRIBUTE_SENSITIVE',
      );
      // Generated in the token (CKA_LOCAL), never extractable, always sensitive.
      for (const [type, expected] of [
        [pkcs11js.CKA_SENSITIVE, true],
        [pkcs11js.CKA_ALWAYS_SENSITIVE, true],
        [pkcs11js.CKA_EXTRACTABLE, false],
        [pkcs11js.CKA_NEVER_EXTRACTABLE, true],
        [pkcs11js.CKA_LOCAL, true],
        [pkcs11js.CKA_TOKEN, true],
        [pkcs11js.CKA_PRIVATE, true],
        [pkcs11js.CKA_MODIFIABLE, false],
        [pkcs11js.CKA_ENCRYPT, true],
        [pkcs11js.CKA_DECRYPT, true],
        [pkcs11js.CKA_WRAP, false],
        [pkcs11js.CKA_UNWRAP, false],
      ] as const) {
        expect(inspector.bool(kek, type), `attribute 0x${type.toString(16)}`).toBe(expected);
      }
      expect(inspector.ulong(kek, pkcs11js.CKA_KEY_TYPE)).toBe(pkcs11js.CKK_AES);
      expect(inspector.ulong(kek, pkcs11js.CKA_VALUE_LEN)).toBe(32);
      const [id] = p11.C_GetAttributeValue(session, kek, [{ type: pkcs11js.CKA_ID }]);
      expect(id?.value.toString('utf8')).toBe('sealed');
      // Wrapping it out under a key the caller holds is refused too.
      const wrappingKey = p11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_WRAP, value: true },
      ]);
      for (const mechanism of [pkcs11js.CKM_AES_KEY_WRAP_PAD, pkcs11js.CKM_AES_KEY_WRAP]) {
        expect(() =>
          p11.C_WrapKey(session, { mechanism }, wrappingKey, kek, Buffer.alloc(64)),
        ).toThrow('CKR_KEY_UNEXTRACTABLE');
      }
      // And the flags cannot be turned back.
      expect(() =>
        p11.C_SetAttributeValue(session, kek, [{ type: pkcs11js.CKA_EXTRACTABLE, value: true }]),
      ).toThrow();
      expect(inspector.bool(kek, pkcs11js.CKA_EXTRACTABLE)).toBe(false);
    } finally {
      inspector.close();
    }
    // The inspector's session (and its session key) came and went; the provider carries on.
    expect(
      await provider.keyOperation({ op: 'unwrap', kekId: 'sealed', wrapped, context }),
    ).toEqual(key);
  });

  test('the format is plain AES-256-GCM: a fixed vector opens, node:crypto opens a new wrap', async () => {
    const kek = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    const key = new Uint8Array(Array.from({ length: 32 }, (_, i) => 32 + i));
    const context = text('coffer/v1/pkcs11-fixture');
    // version 01 || iv 000102…0b || AES-256-GCM(kek, iv, key, aad = context) || tag, made with
    // node:crypto. It must unwrap in every future release.
    const fixture = Buffer.from(
      '01000102030405060708090a0b6723f438e1c0e43ca568bda09dc45642b3e7b507c44e694b005edfbe2154' +
        '3e8d6a544126a48fdee24f4771fdd1b41193',
      'hex',
    );
    const provider = await open();
    // A KEK imported with a known value (an HSM would only ever generate its own), so that the
    // bytes can be checked outside the token.
    const inspector = openInspector(hsm, LABEL);
    try {
      inspector.p11.C_CreateObject(inspector.session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE, value: kek },
        { type: pkcs11js.CKA_LABEL, value: 'fixture' },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_ENCRYPT, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: true },
      ]);
    } finally {
      inspector.close();
    }
    const unwrap = { op: 'unwrap', kekId: 'fixture', context } as const;
    expect(await provider.keyOperation({ ...unwrap, wrapped: fixture })).toEqual(key);

    const wrapped = await provider.keyOperation({ op: 'wrap', kekId: 'fixture', key, context });
    const decipher = createDecipheriv('aes-256-gcm', kek, wrapped.subarray(1, 13));
    decipher.setAAD(context);
    decipher.setAuthTag(wrapped.subarray(45));
    const opened = Buffer.concat([decipher.update(wrapped.subarray(13, 45)), decipher.final()]);
    expect(new Uint8Array(opened)).toEqual(key);
  });

  test('another context or another KEK is DECRYPTION_FAILED', async () => {
    const provider = await open();
    await provider.generateKek('ctx-1');
    await provider.generateKek('ctx-2');
    const key = dataKey();
    const context = text('tenant-1/users/email/v3');
    const wrapped = await provider.keyOperation({ op: 'wrap', kekId: 'ctx-1', key, context });
    const cases: [string, Uint8Array][] = [
      ['ctx-1', text('tenant-2/users/email/v3')],
      ['ctx-1', text('tenant-1/users/email/v3 ')],
      ['ctx-1', new Uint8Array(0)],
      ['ctx-2', context],
    ];
    for (const [kekId, other] of cases) {
      const err = await rejection(
        provider.keyOperation({ op: 'unwrap', kekId, wrapped, context: other }),
      );
      expect(err.code).toBe('DECRYPTION_FAILED');
      expect(err.retryable).toBe(false);
      expect(err.operation).toBe('provider.pkcs11.unwrap');
    }
    // An empty context is a context like any other.
    const bare = await provider.keyOperation({
      op: 'wrap',
      kekId: 'ctx-1',
      key,
      context: new Uint8Array(0),
    });
    const back = await provider.keyOperation({
      op: 'unwrap',
      kekId: 'ctx-1',
      wrapped: bare,
      context: new Uint8Array(0),
    });
    expect(back).toEqual(key);
  });

  test('every flipped byte, truncation and extension is rejected', async () => {
    const provider = await open();
    await provider.generateKek('tamper');
    const key = dataKey();
    const context = text('users/42/ssn');
    const wrapped = await provider.keyOperation({ op: 'wrap', kekId: 'tamper', key, context });
    const unwrap = (bytes: Uint8Array) =>
      rejection(provider.keyOperation({ op: 'unwrap', kekId: 'tamper', wrapped: bytes, context }));
    const secretHex = [Buffer.from(key).toString('hex'), Buffer.from(wrapped).toString('hex')];
    for (let i = 0; i < wrapped.length; i++) {
      const tampered = wrapped.slice();
      tampered[i]! ^= 0xff;
      const err = await unwrap(tampered);
      expect(err.code, `byte ${i}`).toBe(i === 0 ? 'UNSUPPORTED_VERSION' : 'DECRYPTION_FAILED');
      for (const hex of secretHex) expect(err.message).not.toContain(hex);
    }
    for (let length = 0; length < wrapped.length; length++) {
      expect((await unwrap(wrapped.slice(0, length))).code, `length ${length}`).toBe(
        'DECRYPTION_FAILED',
      );
    }
    const longer = new Uint8Array(wrapped.length + 1);
    longer.set(wrapped);
    expect((await unwrap(longer)).code).toBe('DECRYPTION_FAILED');
    // Nothing above upset the session.
    expect(
      await provider.keyOperation({ op: 'unwrap', kekId: 'tamper', wrapped, context }),
    ).toEqual(key);
  });

  test('an unknown kekId is UNKNOWN_KEY; a taken one is refused by generateKek', async () => {
    const provider = await open();
    const key = dataKey();
    const context = text('c');
    for (const request of [
      { op: 'wrap', kekId: 'no-such-kek', key, context },
      {
        op: 'unwrap',
        kekId: 'no-such-kek',
        wrapped: new Uint8Array(WRAPPED_BYTES).fill(1),
        context,
      },
    ] as const) {
      const err = await rejection(provider.keyOperation(request));
      expect(err.code).toBe('UNKNOWN_KEY');
      expect(err.retryable).toBe(false);
      expect(err.message).toContain('no-such-kek');
    }
    await provider.generateKek('taken');
    const wrapped = await provider.keyOperation({ op: 'wrap', kekId: 'taken', key, context });
    const err = await rejection(provider.generateKek('taken'));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('taken');
    // The refusal left the original alone.
    expect(await provider.keyOperation({ op: 'unwrap', kekId: 'taken', wrapped, context })).toEqual(
      key,
    );
  });

  test('caller mistakes are INVALID_ARGUMENT, naming the argument', async () => {
    const provider = await open();
    const context = text('c');
    const cases: [Promise<unknown>, string][] = [
      [
        provider.keyOperation({ op: 'wrap', kekId: 'k', key: new Uint8Array(31), context }),
        '"key" expected 32 bytes, got 31',
      ],
      [provider.keyOperation({ op: 'wrap', kekId: '', key: dataKey(), context }), '"kekId"'],
      [provider.generateKek('x'.repeat(MAX_KEK_ID_BYTES + 1)), '"kekId"'],
      [
        provider.keyOperation({
          op: 'unwrap',
          kekId: 'k',
          wrapped: new Uint8Array(WRAPPED_BYTES),
          context: 'c' as unknown as Uint8Array,
        }),
        '"context"',
      ],
    ];
    for (const [promise, message] of cases) {
      const err = await rejection(promise);
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toContain(message);
    }
  });

  test('a wrong PIN is PROVIDER_ERROR, not retryable (retries lock HSM PINs), even while logged in', async () => {
    const first = await rejection(open({ pin: '000000' }));
    expect(first.code).toBe('PROVIDER_ERROR');
    expect(first.retryable).toBe(false);
    expect(first.message).toContain('CKR_PIN_INCORRECT');
    expect(first.message).not.toContain('000000');
    // PKCS#11 logins belong to the process, so the token itself would now say "already logged
    // in" to any PIN; the provider still refuses the wrong one.
    await open();
    const second = await rejection(open({ pin: '000000' }));
    expect(second.code).toBe('PROVIDER_ERROR');
    expect(second.message).toContain('CKR_PIN_INCORRECT');
  });

  test('choosing the token: by label, by slot, and refusing to guess', async () => {
    const slotA = hsm.slots.get(LABEL)!;
    const bySlot = await open({ tokenLabel: undefined, slot: slotA });
    await bySlot.generateKek('by-slot');
    const byLabel = await open();
    const key = dataKey();
    const context = text('c');
    const wrapped = await bySlot.keyOperation({ op: 'wrap', kekId: 'by-slot', key, context });
    expect(
      await byLabel.keyOperation({ op: 'unwrap', kekId: 'by-slot', wrapped, context }),
    ).toEqual(key);
    // The other token does not have it.
    const other = await open({ tokenLabel: 'coffer-b' });
    expect(
      (await rejection(other.keyOperation({ op: 'wrap', kekId: 'by-slot', key, context }))).code,
    ).toBe('UNKNOWN_KEY');

    const ambiguous = await rejection(open({ tokenLabel: undefined }));
    expect(ambiguous.code).toBe('INVALID_ARGUMENT');
    const absent = await rejection(open({ tokenLabel: 'no-such-token' }));
    expect(absent.code).toBe('PROVIDER_UNAVAILABLE');
    expect(absent.retryable).toBe(true);
    const mismatch = await rejection(open({ slot: slotA, tokenLabel: 'coffer-b' }));
    expect(mismatch.code).toBe('PROVIDER_UNAVAILABLE');
    const noSlot = await rejection(open({ tokenLabel: undefined, slot: 4_000_000_000 }));
    expect(noSlot.code).toBe('PROVIDER_UNAVAILABLE');
  });

  test('the KEK handle is looked up once, not once per record', async () => {
    const maker = await open();
    await maker.generateKek('cached');
    await maker.close();
    // No provider is open now, so the next one loads the module afresh and its pkcs11js object
    // picks up this spy.
    const findInit = vi.spyOn(pkcs11js.PKCS11.prototype, 'C_FindObjectsInit');
    const provider = await open();
    const key = dataKey();
    const context = text('users/email');
    const wrapped = await provider.keyOperation({ op: 'wrap', kekId: 'cached', key, context });
    expect(findInit).toHaveBeenCalledTimes(1);
    for (let i = 0; i < 1000; i++) {
      const unwrapped = await provider.keyOperation({
        op: 'unwrap',
        kekId: 'cached',
        wrapped,
        context,
      });
      expect(unwrapped).toEqual(key);
    }
    expect(findInit).toHaveBeenCalledTimes(1);
  });

  test('a cached handle whose key was destroyed is looked up again', async () => {
    const provider = await open();
    await provider.generateKek('replaced');
    const key = dataKey();
    const context = text('c');
    const old = await provider.keyOperation({ op: 'wrap', kekId: 'replaced', key, context });
    const inspector = openInspector(hsm, LABEL);
    try {
      for (const handle of inspector.findByLabel('replaced')) {
        inspector.p11.C_DestroyObject(inspector.session, handle);
      }
    } finally {
      inspector.close();
    }
    const gone = await rejection(
      provider.keyOperation({ op: 'wrap', kekId: 'replaced', key, context }),
    );
    expect(gone.code).toBe('UNKNOWN_KEY');
    // Recreated under the same label by someone else: the new key is found; the old wrap is not
    // its to open.
    const other = await open();
    await other.generateKek('replaced');
    const fresh = await provider.keyOperation({ op: 'wrap', kekId: 'replaced', key, context });
    expect(
      await other.keyOperation({ op: 'unwrap', kekId: 'replaced', wrapped: fresh, context }),
    ).toEqual(key);
    const stale = await rejection(
      provider.keyOperation({ op: 'unwrap', kekId: 'replaced', wrapped: old, context }),
    );
    expect(stale.code).toBe('DECRYPTION_FAILED');
  });

  test('two providers share one token, in parallel, and outlive each other', async () => {
    const a = await open();
    const b = await open();
    await a.generateKek('shared');
    const context = text('c');
    const keys = Array.from({ length: 40 }, dataKey);
    // Both providers at once, each with many operations in flight on its single session.
    const wrappedByA = await Promise.all(
      keys.map((key) => a.keyOperation({ op: 'wrap', kekId: 'shared', key, context })),
    );
    const [fromB, wrappedByB] = await Promise.all([
      Promise.all(
        wrappedByA.map((wrapped) =>
          b.keyOperation({ op: 'unwrap', kekId: 'shared', wrapped, context }),
        ),
      ),
      Promise.all(keys.map((key) => b.keyOperation({ op: 'wrap', kekId: 'shared', key, context }))),
    ]);
    expect(fromB).toEqual(keys);
    await a.close();
    // a's close neither logged b out nor finalized the module under it.
    const fromA = await Promise.all(
      wrappedByB.map((wrapped) =>
        b.keyOperation({ op: 'unwrap', kekId: 'shared', wrapped, context }),
      ),
    );
    expect(fromA).toEqual(keys);
  });

  test('a lost session is PROVIDER_UNAVAILABLE, and the retry reconnects', async () => {
    const provider = await open();
    await provider.generateKek('reconnect');
    const key = dataKey();
    const context = text('c');
    const wrapped = await provider.keyOperation({ op: 'wrap', kekId: 'reconnect', key, context });
    const inspector = openInspector(hsm, LABEL);
    // Every session of this process on the token goes, and the login with them.
    inspector.p11.C_CloseAllSessions(inspector.slot);
    inspector.close();
    const err = await rejection(
      provider.keyOperation({ op: 'unwrap', kekId: 'reconnect', wrapped, context }),
    );
    expect(err.code).toBe('PROVIDER_UNAVAILABLE');
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/CKR_SESSION_|CKR_USER_NOT_LOGGED_IN/);
    expect(
      await provider.keyOperation({ op: 'unwrap', kekId: 'reconnect', wrapped, context }),
    ).toEqual(key);
  });

  test('close() finishes what is in flight, then every call is a clear PROVIDER_ERROR', async () => {
    const provider = await open();
    await provider.generateKek('closing');
    const key = dataKey();
    const context = text('c');
    const inFlight = provider.keyOperation({ op: 'wrap', kekId: 'closing', key, context });
    await provider.close();
    expect((await inFlight).length).toBe(WRAPPED_BYTES);
    await provider.close();
    for (const call of [
      provider.keyOperation({ op: 'wrap', kekId: 'closing', key, context }),
      provider.generateKek('after-close'),
    ]) {
      const err = await rejection(call);
      expect(err.code).toBe('PROVIDER_ERROR');
      expect(err.retryable).toBe(false);
      expect(err.message).toContain('provider is closed');
    }
    // The token and module are fine for whoever comes next.
    const next = await open();
    const wrapped = await next.keyOperation({ op: 'wrap', kekId: 'closing', key, context });
    expect(await next.keyOperation({ op: 'unwrap', kekId: 'closing', wrapped, context })).toEqual(
      key,
    );
  });
});
