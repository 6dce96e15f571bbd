// Vitest globalSetup of the `sdk:chromium` project: the real Coffer server process (as `npm
// start` runs it, on a throwaway data directory) on 127.0.0.1, which the browser page reaches
// same-origin through Vite's proxy (vitest.config.ts), as a web app served beside its API would.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const port = Number(process.env.COFFER_BROWSER_TEST_PORT ?? 18480);
const main = fileURLToPath(new URL('../../../server/src/main.ts', import.meta.url));
let child: ChildProcess | undefined;
let dataDir: string | undefined;

export async function setup(): Promise<void> {
  dataDir = mkdtempSync(join(tmpdir(), 'coffer-browser-'));
  const tsx = createRequire(import.meta.url).resolve('tsx');
  child = spawn(
    process.execPath,
    [
      '--conditions=@coffer/source',
      '--import',
      tsx,
      main,
      '--port',
      String(port),
      '--data-dir',
      dataDir,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LOG_LEVEL: 'warn' } },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the test server exited: ${stderr.slice(0, 500)}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`the test server did not start on port ${port}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function teardown(): Promise<void> {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child?.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}
