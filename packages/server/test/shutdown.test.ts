// Graceful shutdown: in-flight requests finish, new connections are refused, WebSockets get
// 1001; and the real process does the same on SIGTERM, exits 0, and exits at once on a second
// signal. Bad configuration: one line on stderr, exit 2.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as opaque from '@serenity-kit/opaque';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SIGNUP_STARTS_PER_ADDRESS } from '../src/signup-limiter.js';
import { createHarness, type Harness } from './_harness.js';

const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));
const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

/** A POST whose body is sent in two halves, the second when `finish` is called. */
async function slowSignupStart(base: string) {
  await opaque.ready;
  const { registrationRequest } = opaque.client.startRegistration({ password: 'x' });
  const body = Buffer.from(JSON.stringify({ username: `slow-${Date.now()}`, registrationRequest }));
  const half = Math.floor(body.length / 2);
  const url = new URL('/v1/signup/start', base);
  let resolveResponse!: (r: { status: number; body: string }) => void;
  const response = new Promise<{ status: number; body: string }>((r) => {
    resolveResponse = r;
  });
  const req = httpRequest(
    url,
    {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': body.length },
    },
    (res) => {
      let text = '';
      res.on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolveResponse({ status: res.statusCode ?? 0, body: text }));
    },
  );
  req.on('error', (err) => resolveResponse({ status: -1, body: String(err) }));
  req.write(body.subarray(0, half));
  await new Promise((r) => setTimeout(r, 200));
  return {
    response,
    finish: () => req.end(body.subarray(half)),
  };
}

describe('graceful shutdown in process', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness('sqlite', 'shutdown');
  });
  afterAll(() => h.dispose());

  it('finishes an in-flight request, refuses new ones and closes sockets with 1001', async () => {
    const running = await h.listen();
    const ws = new WebSocket(`${running.url.replace('http', 'ws')}/v1/events`);
    await new Promise((r) => ws.once('open', r));
    const wsClosed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
    const slow = await slowSignupStart(running.url);
    let closed = false;
    const closing = running.close().then(() => {
      closed = true;
    });
    expect(await wsClosed).toBe(1001);
    await expect(fetch(`${running.url}/healthz`)).rejects.toThrow();
    expect(closed).toBe(false);
    slow.finish();
    const res = await slow.response;
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).accountId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    await closing;
    expect(closed).toBe(true);
  });
});

function startProcess(
  args: string[],
  dataDir: string,
): {
  child: ChildProcess;
  stderr: () => string;
  exit: Promise<number | null>;
  listening: Promise<string>;
} {
  const child = spawn(
    process.execPath,
    ['--conditions=@coffer/source', '--import', 'tsx', main, ...args],
    {
      cwd: repoRoot,
      env: {
        ...process.env,
        COFFER_DATA_DIR: dataDir,
        PORT: '0',
        LOG_LEVEL: 'info',
        DATABASE_URL: '',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  let onLine: (() => void) | undefined;
  child.stderr!.on('data', (d) => {
    stderr += d;
    onLine?.();
  });
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const listening = new Promise<string>((resolve, reject) => {
    onLine = () => {
      const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(stderr);
      if (m) resolve(m[1]!);
    };
    void exit.then(() => reject(new Error(`exited before listening: ${stderr}`)));
  });
  listening.catch(() => {}); // awaited by the tests that expect it; others let it fail
  return { child, stderr: () => stderr, exit, listening };
}

describe('the server process', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'coffer-process-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('drains an in-flight request on SIGTERM and exits 0', { timeout: 60_000 }, async () => {
    const p = startProcess([], dir);
    const url = await p.listening;
    expect(p.stderr()).toMatch(
      /coffer server listening on http:\/\/127\.0\.0\.1:\d+ \(sqlite .*coffer\.sqlite\)/,
    );
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const slow = await slowSignupStart(url);
    p.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    expect(p.child.exitCode).toBeNull();
    slow.finish();
    expect((await slow.response).status).toBe(200);
    expect(await p.exit).toBe(0);
    expect(p.stderr()).toContain('stopped');
  });

  it('exits at once on a second signal', { timeout: 60_000 }, async () => {
    const p = startProcess([], dir);
    const url = await p.listening;
    const slow = await slowSignupStart(url);
    p.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    p.child.kill('SIGINT');
    expect(await p.exit).toBe(1);
    slow.finish();
  });

  it('counts clients behind the proxies --trust-proxy names', { timeout: 60_000 }, async () => {
    const p = startProcess(['--trust-proxy', '127.0.0.1'], join(dir, 'proxied'));
    const url = await p.listening;
    const start = (forwardedFor: string) =>
      fetch(`${url}/v1/signup/start`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor },
        body: '{}',
      }).then((r) => r.status);
    for (let i = 0; i < SIGNUP_STARTS_PER_ADDRESS; i++)
      expect(await start('203.0.113.1')).toBe(400);
    expect(await start('203.0.113.1')).toBe(429);
    expect(await start('203.0.113.2')).toBe(400);
    p.child.kill('SIGTERM');
    expect(await p.exit).toBe(0);
  });

  it('prints one line and exits 2 on bad configuration', { timeout: 60_000 }, async () => {
    const p = startProcess(['--port', 'abc'], dir);
    expect(await p.exit).toBe(2);
    expect(p.stderr()).toBe(
      'coffer-server: error: --port expected a port number from 0 to 65535, got "abc"\n',
    );
  });
});
