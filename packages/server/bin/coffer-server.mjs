#!/usr/bin/env node
// Launcher for the Coffer server. An installed package runs its build (dist/); a source checkout
// of the Coffer monorepo runs the TypeScript source through tsx, so no build is needed and a
// stale dist/ is never run by mistake.
import { spawn } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { constants } from 'node:os';
import { sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = realpathSync(fileURLToPath(import.meta.url));
const source = fileURLToPath(new URL('../src/main.ts', `file://${here}`));
const built = new URL('../dist/main.js', `file://${here}`);
const checkout = !here.includes(`${sep}node_modules${sep}`) && existsSync(source);

if (!checkout) {
  await import(built.href);
} else {
  let tsx;
  try {
    tsx = import.meta.resolve('tsx');
  } catch {
    process.stderr.write('coffer-server: error: running from source needs tsx\n');
    process.stderr.write('coffer-server: hint: npm install (from the repository root)\n');
    process.exit(1);
  }
  const child = spawn(
    process.execPath,
    ['--conditions=@coffer/source', '--import', tsx, source, ...process.argv.slice(2)],
    { stdio: 'inherit' },
  );
  // The terminal sends Ctrl-C to the child too, and a supervisor's SIGTERM is passed on: the
  // server drains in-flight requests before it exits.
  const forward = (signal) => {
    if (child.exitCode === null) child.kill(signal);
  };
  const onTerm = () => forward('SIGTERM');
  const onInt = () => {};
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  child.on('exit', (code, signal) => {
    process.exitCode = code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  });
}
