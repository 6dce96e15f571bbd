// Over a real socket (the global fetch, no test hooks), with a Node home on disk and the
// default password hashing (Argon2id 64 MiB, t = 3, p = 4): the one test that pays full cost.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, SdkError } from '../src/index.js';
import { openNodeHome } from '../src/node.js';
import { FAST_HASHING, type TestServer, testServer, username } from './_server.js';

let server: TestServer;
let url: string;
let dir: string;
beforeAll(async () => {
  server = await testServer();
  url = await server.listen();
  dir = await mkdtemp(join(tmpdir(), 'coffer-sdk-socket-'));
});
afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('over a real socket with default password hashing', () => {
  it('signs up, survives a restart from its home, logs out and in again', async () => {
    const name = username('sock');
    const home = join(dir, 'home');
    const first = await openNodeHome(home);
    const a = createClient({ server: url, ...first });
    await a.open();
    const { account } = await a.signup(name, 'a long passphrase', { deviceName: 'terminal' });
    await a.close();

    const again = createClient({ server: url, ...(await openNodeHome(home)) });
    await again.open();
    expect(await again.whoami()).toEqual(account);
    await again.logout();
    expect(await again.login(name, 'a long passphrase')).toEqual(account);
    expect((await again.devices.list()).length).toBe(1);
    await again.close();

    // Other stretching parameters derive other keys: no login (why they are a constant).
    const cheap = createClient({
      server: url,
      ...(await openNodeHome(join(dir, 'cheap'))),
      opaque: { keyStretching: FAST_HASHING },
    });
    await cheap.open();
    await expect(cheap.login(name, 'a long passphrase')).rejects.toSatisfy((e) =>
      SdkError.is(e, 'INVALID_CREDENTIALS'),
    );
    await cheap.close();
  }, 60_000);
});
