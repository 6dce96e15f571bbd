// The KeyPackage directory (spec/http-api-v1.md "KeyPackages"): upload, count, claim-once (under
// concurrency, across two storage instances), last resort, revocation, rate limits and bad
// input, in-process, on every database.
import { randomBytes } from 'node:crypto';
import { toBase64url } from '@coffer/crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLAIM_WINDOW_MS,
  CLAIMS_PER_CLAIMER,
  CLAIMS_PER_TARGET,
  createClaimLimiter,
} from '../src/claim-limiter.js';
import { ServerError } from '../src/errors.js';
import {
  MAX_KEY_PACKAGE_LENGTH,
  MAX_KEY_PACKAGES_PER_DEVICE,
  MAX_KEY_PACKAGES_PER_UPLOAD,
} from '../src/http/key-packages.js';
import {
  type Account,
  addDevice,
  call,
  type Device,
  login,
  makeDevice,
  signup,
  successor,
  wire,
} from './_client.js';
import { testDialects } from './_db.js';
import { createHarness, type Harness } from './_harness.js';

const dialects = await testDialects();

/** A fake KeyPackage: random bytes (the server never looks inside). */
const kp = (n = 64) => new Uint8Array(randomBytes(n));
const b64 = (bytes: Uint8Array) => toBase64url(bytes);

describe.each(dialects)('key packages (%s)', (dialect) => {
  let h: Harness;
  let n = 0;
  const fresh = () => signup(h.fetch, `kp${n++}`, 'pw');
  const upload = (token: string, body: unknown) =>
    call(h.fetch, 'POST', '/v1/key-packages', body, token);
  const count = (token: string) => call(h.fetch, 'GET', '/v1/key-packages/count', undefined, token);
  const claim = (token: string, accountId: string) =>
    call(h.fetch, 'POST', `/v1/accounts/${accountId}/key-packages/claim`, undefined, token);
  /** A session on `account` for `device` (a listed one, which proves its key, or an unlisted id). */
  const sessionFor = async (account: Account, device?: string | Device) => {
    const r = await login(h.fetch, account.username, account.password, device);
    expect(r.finish?.status).toBe(200);
    return r.finish!.json.token as string;
  };
  const rawCount = async (accountId: string, deviceId?: string) => {
    let q = h.db
      .raw()
      .selectFrom('key_packages')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('account_id', '=', accountId);
    if (deviceId) q = q.where('device_id', '=', deviceId);
    return Number((await q.executeTakeFirstOrThrow()).n);
  };

  beforeAll(async () => {
    h = await createHarness(dialect, 'keypkgs');
  });
  afterAll(() => h.dispose());

  it('stores, counts and hands out one-time packages, then the last-resort one', async () => {
    const a = await fresh();
    const b = await fresh();
    expect((await count(a.token)).json).toEqual({ available: 0, lastResort: false });
    const packages = [kp(), kp(), kp()];
    const last = kp(100);
    const up = await upload(a.token, { keyPackages: packages.map(b64), lastResort: b64(last) });
    expect(up.status).toBe(201);
    expect(up.json).toEqual({ available: 3 });
    expect((await count(a.token)).json).toEqual({ available: 3, lastResort: true });

    const handed = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const r = await claim(b.token, a.accountId);
      expect(r.status).toBe(200);
      expect(r.json.keyPackages).toHaveLength(1);
      const [got] = r.json.keyPackages;
      expect(got.deviceId).toBe(a.device.id);
      expect(got.lastResort).toBe(false);
      handed.add(got.keyPackage);
    }
    expect(handed).toEqual(new Set(packages.map(b64)));
    expect((await count(a.token)).json).toEqual({ available: 0, lastResort: true });
    // None left: the last-resort package, kept and handed out again.
    for (let i = 0; i < 2; i++) {
      const r = await claim(b.token, a.accountId);
      expect(r.json.keyPackages).toEqual([
        { deviceId: a.device.id, keyPackage: b64(last), lastResort: true },
      ]);
    }
    // Replacing the last-resort package.
    const last2 = kp(90);
    const up2 = await upload(a.token, { keyPackages: [b64(kp())], lastResort: b64(last2) });
    expect(up2.json).toEqual({ available: 1 });
    expect((await claim(b.token, a.accountId)).json.keyPackages[0].lastResort).toBe(false);
    expect((await claim(b.token, a.accountId)).json.keyPackages[0].keyPackage).toBe(b64(last2));
    expect(await rawCount(a.accountId)).toBe(1);
  });

  it('replaces the one-time packages a device holds when asked (rotation)', async () => {
    const a = await fresh();
    const b = await fresh();
    const old = [kp(), kp(), kp()];
    await upload(a.token, { keyPackages: old.map(b64), lastResort: b64(kp()) });
    const fresh2 = [kp(), kp()];
    const up = await upload(a.token, { keyPackages: fresh2.map(b64), replace: true });
    expect(up.status).toBe(201);
    expect(up.json).toEqual({ available: 2 });
    // Only the new ones are handed out, then the (kept) last-resort package.
    const handed = new Set<string>();
    for (let i = 0; i < 2; i++)
      handed.add((await claim(b.token, a.accountId)).json.keyPackages[0].keyPackage);
    expect(handed).toEqual(new Set(fresh2.map(b64)));
    expect((await claim(b.token, a.accountId)).json.keyPackages[0].lastResort).toBe(true);
    // Without `replace`, an upload adds to what is held.
    await upload(a.token, { keyPackages: [b64(kp())], replace: false });
    await upload(a.token, { keyPackages: [b64(kp())] });
    expect((await count(a.token)).json).toEqual({ available: 2, lastResort: true });
  });

  it('answers one package per listed device, leaves out devices with none and oneself', async () => {
    const a = await fresh();
    const b = await fresh();
    const phone = await makeDevice('phone');
    const tablet = await makeDevice('tablet');
    expect((await addDevice(h.fetch, a, phone)).status).toBe(200);
    expect((await addDevice(h.fetch, a, tablet)).status).toBe(200);
    const phoneToken = await sessionFor(a, phone);
    const phonePackage = kp();
    const laptopPackage = kp();
    expect((await upload(phoneToken, { keyPackages: [b64(phonePackage)] })).status).toBe(201);
    expect((await upload(a.token, { keyPackages: [b64(laptopPackage)] })).status).toBe(201);
    // The tablet uploaded nothing: absent. Order: the manifest's.
    const order = a.body.devices.map((d) => d.id).filter((id) => id !== tablet.id);
    const r = await claim(b.token, a.accountId);
    expect(r.status).toBe(200);
    expect(r.json.keyPackages.map((k: { deviceId: string }) => k.deviceId)).toEqual(order);
    const byDevice = Object.fromEntries(
      r.json.keyPackages.map((k: { deviceId: string; keyPackage: string }) => [
        k.deviceId,
        k.keyPackage,
      ]),
    );
    expect(byDevice).toEqual({ [phone.id]: b64(phonePackage), [a.device.id]: b64(laptopPackage) });
    // Claiming one's own account leaves out one's own device.
    expect((await upload(phoneToken, { keyPackages: [b64(kp())] })).status).toBe(201);
    expect((await upload(a.token, { keyPackages: [b64(kp())] })).status).toBe(201);
    const own = await claim(a.token, a.accountId);
    expect(own.json.keyPackages.map((k: { deviceId: string }) => k.deviceId)).toEqual([phone.id]);
    expect((await count(a.token)).json.available).toBe(1);
  });

  it('stores a KeyPackage once, however often it is uploaded', async () => {
    const a = await fresh();
    const one = kp();
    const two = kp();
    let r = await upload(a.token, { keyPackages: [b64(one), b64(one), b64(two)] });
    expect(r.json).toEqual({ available: 2 });
    r = await upload(a.token, { keyPackages: [b64(two), b64(one)] });
    expect(r.status).toBe(201);
    expect(r.json).toEqual({ available: 2 });
    // The last-resort package is another slot: re-sending it is a no-op too.
    const last = kp();
    await upload(a.token, { keyPackages: [b64(one)], lastResort: b64(last) });
    r = await upload(a.token, { keyPackages: [b64(one)], lastResort: b64(last) });
    expect(r.json).toEqual({ available: 2 });
    expect(await rawCount(a.accountId)).toBe(3);
  });

  it('caps what one device holds (409, nothing stored)', async () => {
    const a = await fresh();
    const batch = () => Array.from({ length: MAX_KEY_PACKAGES_PER_UPLOAD }, () => b64(kp(32)));
    const first = batch();
    for (let i = 0; i < MAX_KEY_PACKAGES_PER_DEVICE / MAX_KEY_PACKAGES_PER_UPLOAD; i++) {
      const r = await upload(a.token, { keyPackages: i === 0 ? first : batch() });
      expect(r.status).toBe(201);
    }
    expect((await count(a.token)).json.available).toBe(MAX_KEY_PACKAGES_PER_DEVICE);
    const last = kp();
    const over = await upload(a.token, { keyPackages: [b64(kp())], lastResort: b64(last) });
    expect(over.status).toBe(409);
    expect(over.json.error.code).toBe('CONFLICT');
    expect((await count(a.token)).json).toEqual({
      available: MAX_KEY_PACKAGES_PER_DEVICE,
      lastResort: false,
    });
    // A re-upload of held packages adds nothing, so it is fine at the cap (with a last resort).
    const again = await upload(a.token, { keyPackages: first.slice(0, 3), lastResort: b64(last) });
    expect(again.status).toBe(201);
    expect((await count(a.token)).json).toEqual({
      available: MAX_KEY_PACKAGES_PER_DEVICE,
      lastResort: true,
    });
  });

  it('hands each one-time package out once under concurrent claims (two server instances)', async () => {
    const a = await fresh();
    const claimers = await Promise.all([fresh(), fresh(), fresh()]);
    const packages = Array.from({ length: 12 }, () => b64(kp()));
    const last = b64(kp());
    expect((await upload(a.token, { keyPackages: packages, lastResort: last })).status).toBe(201);
    // 3 claimers × 6 concurrent HTTP claims = 18 claims for 12 packages.
    const replies = await Promise.all(
      claimers.flatMap((c) => Array.from({ length: 6 }, () => claim(c.token, a.accountId))),
    );
    for (const r of replies) expect(r.status).toBe(200);
    const got = replies.map((r) => r.json.keyPackages[0]);
    const oneTime = got.filter((k) => !k.lastResort).map((k) => k.keyPackage);
    expect(oneTime).toHaveLength(12);
    expect(new Set(oneTime)).toEqual(new Set(packages));
    expect(got.filter((k) => k.lastResort).every((k) => k.keyPackage === last)).toBe(true);

    // Storage level: two Storage instances on one database, as two server processes.
    const other = await h.db.open();
    const more = Array.from({ length: 20 }, () => kp());
    await h.storage.keyPackages.add(
      a.accountId,
      a.device.id,
      { keyPackages: more },
      {
        cap: 500,
        manifestSeq: a.body.seq,
      },
    );
    const claims = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        (i % 2 ? other : h.storage).keyPackages.claim(a.accountId, [a.device.id]),
      ),
    );
    const taken = claims.flat().filter((k) => !k.lastResort);
    expect(taken).toHaveLength(20);
    expect(new Set(taken.map((k) => b64(k.keyPackage)))).toEqual(new Set(more.map(b64)));
    expect(claims.every((c) => c.length === 1)).toBe(true);
    expect(await h.storage.keyPackages.count(a.accountId, a.device.id)).toEqual({
      available: 0,
      lastResort: true,
    });
  });

  it("deletes a removed device's packages with its revocation, and all with the account", async () => {
    const a = await fresh();
    const b = await fresh();
    const phone = await makeDevice('phone');
    expect((await addDevice(h.fetch, a, phone)).status).toBe(200);
    const phoneToken = await sessionFor(a, phone);
    const up = await upload(phoneToken, {
      keyPackages: [b64(kp()), b64(kp())],
      lastResort: b64(kp()),
    });
    expect(up.status).toBe(201);
    await upload(a.token, { keyPackages: [b64(kp())] });
    expect(await rawCount(a.accountId, phone.id)).toBe(3);
    const next = await successor(a, { devices: a.body.devices.filter((d) => d.id !== phone.id) });
    const put = await call(
      h.fetch,
      'PUT',
      '/v1/manifest',
      { manifest: wire(next.manifest) },
      a.token,
    );
    expect(put.status).toBe(200);
    expect(await rawCount(a.accountId, phone.id)).toBe(0);
    // An upload that checked the old manifest and writes after the revocation stores nothing.
    const late = h.storage.keyPackages.add(
      a.accountId,
      phone.id,
      { keyPackages: [kp()] },
      { cap: 500, manifestSeq: next.body.seq - 1 },
    );
    await expect(late).rejects.toMatchObject({ name: 'StorageConflictError', what: 'manifestSeq' });
    expect(await rawCount(a.accountId, phone.id)).toBe(0);
    expect((await upload(phoneToken, { keyPackages: [b64(kp())] })).status).toBe(401);
    const r = await claim(b.token, a.accountId);
    expect(r.json.keyPackages.map((k: { deviceId: string }) => k.deviceId)).toEqual([a.device.id]);
    // Deleting the account deletes the rest.
    await upload(a.token, { keyPackages: [b64(kp())], lastResort: b64(kp()) });
    expect(await rawCount(a.accountId)).toBe(2);
    expect((await call(h.fetch, 'DELETE', '/v1/account', undefined, a.token)).status).toBe(204);
    expect(await rawCount(a.accountId)).toBe(0);
    expect((await claim(b.token, a.accountId)).status).toBe(404);
  });

  it('rate-limits claims per target and per claimer, with retry-after', async () => {
    const a = await fresh();
    const c = await fresh();
    const b = await fresh();
    await upload(a.token, { keyPackages: [b64(kp())], lastResort: b64(kp()) });
    for (let i = 0; i < CLAIMS_PER_TARGET; i++)
      expect((await claim(b.token, a.accountId)).status).toBe(200);
    const limited = await claim(b.token, a.accountId);
    expect(limited.status).toBe(429);
    expect(limited.json.error.code).toBe('RATE_LIMITED');
    const retry = Number(limited.headers.get('retry-after'));
    expect(retry).toBeGreaterThan(0);
    expect(retry).toBeLessThanOrEqual(CLAIM_WINDOW_MS / 1000);
    // Other pairs are not affected.
    expect((await claim(b.token, c.accountId)).status).toBe(200);
    expect((await claim(c.token, a.accountId)).status).toBe(200);
    // An account's claims of itself (adding its new device everywhere) pass the pair limit.
    for (let i = 0; i <= CLAIMS_PER_TARGET; i++)
      expect((await claim(a.token, a.accountId)).status).toBe(200);
    // The window ends.
    h.clock.now += CLAIM_WINDOW_MS + 1;
    expect((await claim(b.token, a.accountId)).status).toBe(200);

    // Per claimer over all targets (the limiter itself, on this database's throttle table).
    const limiter = createClaimLimiter(
      h.storage.throttle,
      h.secrets.throttleKey,
      () => h.clock.now,
    );
    const claimer = `claimer${n++}`.padEnd(22, 'x');
    for (let i = 0; i < CLAIMS_PER_CLAIMER; i++)
      await limiter.count(claimer, `target${i}`.padEnd(22, 'x'), 'test');
    const err = await limiter
      .count(claimer, 'fresh-target'.padEnd(22, 'x'), 'test')
      .catch((e) => e);
    expect(ServerError.is(err, 'RATE_LIMITED')).toBe(true);
    expect(err.retryAfter).toBeGreaterThan(0);
  });

  it('refuses bad input with 4xx, never 5xx', async () => {
    const a = await fresh();
    const ok = b64(kp());
    const bad: [unknown, number][] = [
      [{}, 400],
      [{ keyPackages: ok }, 400],
      [{ keyPackages: [] }, 400],
      [
        { keyPackages: Array.from({ length: MAX_KEY_PACKAGES_PER_UPLOAD + 1 }, () => b64(kp(8))) },
        400,
      ],
      [{ keyPackages: [b64(kp(MAX_KEY_PACKAGE_LENGTH + 1))] }, 400],
      [{ keyPackages: [''] }, 400],
      [{ keyPackages: ['not b64!'] }, 400],
      [{ keyPackages: [`${ok}==`] }, 400],
      [{ keyPackages: [Buffer.from(kp(10)).toString('base64')] }, 400],
      [{ keyPackages: [ok, 7] }, 400],
      [{ keyPackages: [ok], lastResort: 12 }, 400],
      [{ keyPackages: [ok], lastResort: b64(kp(MAX_KEY_PACKAGE_LENGTH + 1)) }, 400],
      [{ keyPackages: [ok], replace: 'yes' }, 400],
    ];
    for (const [body, status] of bad) {
      const r = await upload(a.token, body);
      expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(status);
      expect(r.json.error.code).toBe('BAD_REQUEST');
    }
    // Exactly the largest size is fine.
    expect((await upload(a.token, { keyPackages: [b64(kp(MAX_KEY_PACKAGE_LENGTH))] })).status).toBe(
      201,
    );
    // Not JSON, no token.
    const text = await h.fetch('/v1/key-packages', {
      method: 'POST',
      headers: { authorization: `Bearer ${a.token}`, 'content-type': 'text/plain' },
      body: 'x',
    });
    expect(text.status).toBe(415);
    expect((await upload('', { keyPackages: [ok] })).status).toBe(401);
    expect((await count('')).status).toBe(401);
    expect((await claim('', a.accountId)).status).toBe(401);
    // Unknown and malformed accounts.
    expect((await claim(a.token, 'A'.repeat(22))).status).toBe(404);
    expect((await claim(a.token, 'nope')).status).toBe(400);
    // A session naming no device may not upload or count; one naming an unlisted device may not
    // upload (it cannot put packages under another device, or another account).
    const noDevice = await sessionFor(a);
    expect((await upload(noDevice, { keyPackages: [ok] })).status).toBe(403);
    expect((await count(noDevice)).status).toBe(403);
    const b = await fresh();
    const posing = await sessionFor(a, b.device.id);
    const r = await upload(posing, { keyPackages: [ok] });
    expect(r.status).toBe(409);
    expect(await rawCount(a.accountId, b.device.id)).toBe(0);
    expect(await rawCount(b.accountId)).toBe(0);
  });

  it('keeps KeyPackages encrypted at rest, bound to their row', async () => {
    const a = await fresh();
    const secret = kp(200);
    await upload(a.token, { keyPackages: [b64(secret)] });
    const rows = await h.db
      .raw()
      .selectFrom('key_packages')
      .select(['data', 'hash', 'device_id', 'last_resort'])
      .where('account_id', '=', a.accountId)
      .execute();
    expect(rows).toHaveLength(1);
    expect(Buffer.from(rows[0]!.data).includes(Buffer.from(secret))).toBe(false);
    // Moved to the last-resort slot (another row id), the ciphertext no longer opens.
    await h.db
      .raw()
      .updateTable('key_packages')
      .set({ last_resort: 1 })
      .where('account_id', '=', a.accountId)
      .execute();
    await expect(h.storage.keyPackages.claim(a.accountId, [a.device.id])).rejects.toThrow();
  });
});
