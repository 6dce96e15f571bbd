// coffer messages --follow against the real server when the server asks it to slow down.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { cli, type RunOptions } from './_cli.js';
import { startServer, type TestServer } from './_server.js';

const dir = mkdtempSync(join(tmpdir(), 'coffer-cli-follow-'));
let server: TestServer;

function coffer(argv: string[], options: RunOptions = {}) {
  return cli([...argv, '--home', join(dir, 'bob'), '--server', server.url], options);
}

beforeAll(async () => {
  server = await startServer();
  const run = await coffer(['signup', 'bob', '--password-stdin'], { stdin: 'bob Passw0rd two\n' });
  expect(run.code).toBe(0);
}, 60_000);
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('messages --follow waits as long as a RATE_LIMITED answer says before asking again', async () => {
  const RETRY_AFTER_S = 4;
  let limitedUntil = 0;
  let asked = 0;
  const limited: typeof fetch = async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (new URL(url).pathname.endsWith('/v1/queue') && (init?.method ?? 'GET') === 'GET') {
      asked += 1;
      if (limitedUntil === 0) limitedUntil = Date.now() + RETRY_AFTER_S * 1000;
      if (Date.now() < limitedUntil)
        return new Response(JSON.stringify({ error: { code: 'RATE_LIMITED' } }), {
          status: 429,
          headers: { 'content-type': 'application/json', 'retry-after': String(RETRY_AFTER_S) },
        });
    }
    return fetch(input, init);
  };
  const stop = new AbortController();
  const following = coffer(['messages', '--follow'], { fetch: limited, signal: stop.signal });
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const askedWhileLimited = asked;
  stop.abort();
  const run = await following;
  expect(run.code).toBe(0);
  // Asked once, told to wait 4 s: not asked again (each second) before then.
  expect(askedWhileLimited).toBe(1);
  expect(run.stderr.match(/RATE_LIMITED/g) ?? []).toHaveLength(1);
}, 30_000);
