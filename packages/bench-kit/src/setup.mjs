// Installs a benchmark's comparison libraries (its bench/package.json) into bench/node_modules
// the first time the bench runs, so that the repository's own `npm install` stays lean. A failed
// install is not fatal: the rows that need a missing baseline are skipped with a note.
// Everything goes to stderr: stdout belongs to the benchmark's results.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Installs what `benchUrl`'s directory's package.json lists, if missing; call with import.meta.url. */
export function installPeers(benchUrl) {
  const here = dirname(fileURLToPath(benchUrl));
  const { dependencies = {} } = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
  const missing = Object.keys(dependencies).filter(
    (name) => !existsSync(join(here, 'node_modules', name, 'package.json')),
  );
  if (missing.length === 0) return;
  process.stderr.write(
    `bench: installing comparison baselines into bench/: ${missing.join(', ')}\n`,
  );
  const args = [
    'install',
    '--prefix',
    here,
    '--no-save',
    '--no-package-lock',
    '--no-audit',
    '--no-fund',
    '--loglevel=error',
  ];
  // Under `npm run`, reuse the npm that runs us; otherwise the one on PATH.
  const execPath = process.env.npm_execpath;
  const [command, commandArgs] =
    execPath && /\.[cm]?js$/.test(execPath)
      ? [process.execPath, [execPath, ...args]]
      : ['npm', args];
  // Settings npm exports to scripts (the workspace we run in, its prefix) must not steer this
  // separate install into the workspace root.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !/^npm_config_(workspaces?|local_prefix|prefix|global)$/i.test(k),
    ),
  );
  const result = spawnSync(command, commandArgs, {
    cwd: here,
    env,
    stdio: ['ignore', process.stderr, process.stderr],
    shell: process.platform === 'win32' && command === 'npm',
  });
  if (result.status !== 0) {
    process.stderr.write(
      `bench: could not install ${missing.join(', ')} (${result.error?.message ?? `exit ${result.status}`}); their rows are skipped\n`,
    );
  }
}
