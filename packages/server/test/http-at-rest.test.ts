// What a stolen database shows after real use of the API: users sign up, log in (and fail),
// change passwords, recover, link devices. Then the SQLite data directory is copied as it lies
// on disk (WAL included), and PostgreSQL's tables are dumped, and both are searched for every
// username, password, token and recovery secret in UTF-8, UTF-16, hex and base64. Account ids,
// stored in the clear, must be found by the same search: it looks in the right place.
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes, sha256, toBase64url } from '@coffer/crypto';
import {
  generateLinkCode,
  recoveryProof,
  sealLinkRequest,
  sealLinkResponse,
} from '@coffer/protocol';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Account,
  addDevice,
  call,
  changePassword,
  login,
  makeDevice,
  signup,
} from './_client.js';
import { testDialects } from './_db.js';
import { foundIn } from './_dump-search.js';
import { createHarness, type Harness } from './_harness.js';

const dialects = await testDialects();
const utf8 = (s: string) => Buffer.from(s, 'utf8');

describe.each(dialects)('a stolen database after real use (%s)', (dialect) => {
  let h: Harness;
  const secrets: string[] = [];
  const accountIds: string[] = [];

  beforeAll(async () => {
    h = await createHarness(dialect, 'atrest');
    const users: Account[] = [];
    for (const [name, password] of [
      ['Zanzibar-Quokka', 'Correct-Horse-Battery-Staple-1'],
      ['mallory.wombat_77', 'hunter2-but-much-longer-9'],
      ['xylophone-otter', 'P@ssw0rd-Trombone-Ledger'],
    ] as const) {
      const a = await signup(h.fetch, name, password);
      users.push(a);
      accountIds.push(a.accountId);
      secrets.push(name, name.toLowerCase(), password, a.token, a.recoveryCode.text);
      secrets.push(toBase64url(await recoveryProof(a.recoveryCode)));
    }
    const [u0, u1, u2] = users as [Account, Account, Account];
    // Logins, some failing (throttle rows), one left half-done (a stored login state).
    const ok = await login(h.fetch, u0.username, u0.password);
    secrets.push(ok.finish?.json.token);
    await login(h.fetch, u1.username, 'Wrong-Password-Guess-42');
    await login(h.fetch, 'Nonexistent-Snowflake', 'Another-Wrong-Guess-43');
    secrets.push('Wrong-Password-Guess-42', 'Nonexistent-Snowflake', 'Another-Wrong-Guess-43');
    await call(h.fetch, 'POST', '/v1/login/start', {
      username: u2.username,
      startLoginRequest: toBase64url(new Uint8Array(96).fill(0)),
    });
    // A password change and a recovery.
    expect(
      (
        await changePassword(h.fetch, u0, 'Second-Password-Marmalade', u0.token, {
          exportKey: u0.exportKey,
        })
      ).status,
    ).toBe(200);
    secrets.push('Second-Password-Marmalade');
    const rec = await call(h.fetch, 'POST', '/v1/recover/start', {
      username: u1.username,
      proof: toBase64url(await recoveryProof(u1.recoveryCode)),
    });
    secrets.push(rec.json.recoveryToken);
    const recovered = await changePassword(
      h.fetch,
      u1,
      'Recovered-Password-Pelican',
      rec.json.recoveryToken,
      { recoveryCode: u1.recoveryCode },
      u1.device.id,
    );
    expect(recovered.status).toBe(200);
    secrets.push('Recovered-Password-Pelican', recovered.json.token);
    // A link approved but not picked up: its token waits in the database.
    const code = generateLinkCode();
    await call(h.fetch, 'POST', '/v1/links', { linkId: code.linkId }, u2.token);
    const b = await makeDevice('tablet');
    const pickup = randomBytes(32);
    await call(h.fetch, 'PUT', `/v1/links/${code.linkId}/request`, {
      sealed: toBase64url(
        await sealLinkRequest(code, {
          deviceId: b.id,
          signingKey: b.keys.publicKey,
          name: 'tablet',
        }),
      ),
      pickupHash: toBase64url(await sha256(pickup)),
    });
    await addDevice(h.fetch, u2, b);
    const sealed = await sealLinkResponse(code, {
      accountId: u2.accountId,
      username: u2.username,
      identitySeed: u2.identity.seed,
      manifestSeq: 2,
    });
    expect(
      (
        await call(
          h.fetch,
          'POST',
          `/v1/links/${code.linkId}/approve`,
          { sealed: toBase64url(sealed), deviceId: b.id },
          u2.token,
        )
      ).status,
    ).toBe(204);
    secrets.push(toBase64url(pickup));
    // The link's token is only in the database: take it from there through the storage API.
    const link = await h.storage.links.get(code.linkId, h.clock.now);
    secrets.push(link!.response!.token);
    // MLS traffic the server stores: KeyPackages, a group's messages and GroupInfo. Real ones are
    // ciphertexts already; these markers stand in for bytes the server must still not keep in
    // the clear (the storage encrypts them again, bound to their rows).
    const marker = (name: string) => `Marker-${name}-${toBase64url(randomBytes(6))}`;
    const kp = marker('KeyPackage');
    const lastResort = marker('LastResort');
    const uploaded = await call(
      h.fetch,
      'POST',
      '/v1/key-packages',
      {
        keyPackages: [toBase64url(new TextEncoder().encode(kp))],
        lastResort: toBase64url(new TextEncoder().encode(lastResort)),
      },
      u0.token,
    );
    expect(uploaded.status).toBe(201);
    const groupId = toBase64url(randomBytes(16));
    const commit = marker('Commit');
    const info = marker('GroupInfo');
    const created = await call(
      h.fetch,
      'POST',
      `/v1/groups/${groupId}/messages`,
      {
        epoch: 0,
        kind: 'commit',
        message: toBase64url(new TextEncoder().encode(commit)),
        recipients: [],
        groupInfo: toBase64url(new TextEncoder().encode(info)),
      },
      u0.token,
    );
    expect(created.status).toBe(201);
    secrets.push(kp, lastResort, commit, info);
  });
  afterAll(() => h.dispose());

  it('holds no username, password, token or recovery secret in any form', async () => {
    let haystack: Buffer;
    if (dialect === 'sqlite') {
      const copy = mkdtempSync(join(tmpdir(), 'coffer-stolen-'));
      try {
        cpSync(dirname(h.db.sqlitePath!), copy, { recursive: true });
        const files = readdirSync(copy);
        expect(files.some((f) => f.endsWith('-wal'))).toBe(true);
        haystack = Buffer.concat(files.map((f) => readFileSync(join(copy, f))));
      } finally {
        rmSync(copy, { recursive: true, force: true });
      }
    } else {
      const raw = h.db.raw();
      const tables = await sql<{ table_name: string }>`
        select table_name from information_schema.tables where table_schema = ${h.db.pgSchema!}`.execute(
        raw,
      );
      expect(tables.rows.length).toBeGreaterThan(5);
      const parts: Buffer[] = [];
      for (const { table_name } of tables.rows) {
        const rows = await sql<
          Record<string, unknown>
        >`select * from ${sql.table(table_name)}`.execute(raw);
        for (const row of rows.rows)
          for (const v of Object.values(row))
            parts.push(
              v instanceof Uint8Array
                ? Buffer.from(v)
                : utf8(typeof v === 'string' ? v : (JSON.stringify(v) ?? '')),
            );
        // The text form a pg_dump would write: bytea as \x hex.
        const text = await sql<{
          t: string;
        }>`select row_to_json(x)::text as t from ${sql.table(table_name)} x`.execute(raw);
        for (const r of text.rows) parts.push(utf8(r.t));
      }
      haystack = Buffer.concat(parts);
    }
    expect(secrets.length).toBeGreaterThan(20);
    expect(foundIn(haystack, secrets)).toEqual([]);
    // The control: account ids are stored in the clear, and the scan finds them.
    for (const id of accountIds) expect(foundIn(haystack, [id]).length).toBeGreaterThan(0);
  });
});
