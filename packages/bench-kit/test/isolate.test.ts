import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('./fixtures/isolated-bench.ts', import.meta.url));

function bench(...args: string[]) {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--conditions=@coffer/source', script, '--json', ...args],
    { encoding: 'utf8', timeout: 60_000 },
  );
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('{'));
  return { status: r.status, stderr: r.stderr, results: lines.map((l) => JSON.parse(l)) };
}

describe('isolated cases', () => {
  it('time each side in a worker thread of its own and report one result', () => {
    const r = bench('--filter', 'own-threads', '--rounds', '2');
    expect(r.stderr).toContain('own-threads ... (each side in its own worker thread)');
    expect(r.status).toBe(0);
    expect(r.results).toHaveLength(1);
    expect(r.results[0]).toMatchObject({
      case: 'own-threads',
      unit: 'ops/s',
      baseline: 'baseline',
    });
    expect(r.results[0].value).toBeGreaterThan(0);
    expect(r.results[0].baselineValue).toBeGreaterThan(0);
  });

  it('the fixture detects sides sharing a thread (a case without isolate fails)', () => {
    const r = bench('--filter', 'shared-thread', '--rounds', '1');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('ran on the main thread');
  });

  it('a case that fails to build in its worker fails the run with its message', () => {
    const r = bench('--filter', 'build-fails', '--rounds', '1');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('build failed on purpose');
    expect(r.results).toHaveLength(0);
  });

  it('a case that skips itself in its worker prints no result', () => {
    const r = bench('--filter', 'skipped', '--rounds', '1');
    expect(r.status).toBe(0);
    expect(r.results).toHaveLength(0);
  });
});
