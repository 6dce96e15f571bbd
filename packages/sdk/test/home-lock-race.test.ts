// One interleaving of two takers of a stale home lock, forced step by step (file operations
// paused until the other taker has reached a point), as two processes could run it: a taker died
// holding the takeover lock, both judge that stale, and one has already replaced it with its own
// (live) takeover lock when the other moves the file away.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test, vi } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'coffer-lock-race-'));
const file = join(dir, 'lock');
const takeover = `${file}.takeover`;
const dead = spawnSync(process.execPath, [
  '-e',
  'process.stdout.write(String(process.pid))',
]).stdout.toString();
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const read = (path: string) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};
const isLive = (text: string | undefined) => text?.startsWith(`${process.pid} `) === true;
const until = async (done: () => boolean) => {
  for (let i = 0; i < 5000 && !done(); i++) await new Promise((r) => setTimeout(r, 1));
};

let takeoverRenames = 0;
let firstRenameDone = false;
/** Live takeover locks deleted while their holder still held them. */
const lost: string[] = [];

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    async rename(from: string, to: string) {
      if (from === takeover) {
        // The first taker to move the dead takeover lock waits until the second has moved it
        // and made its own; then it moves that one.
        const n = ++takeoverRenames;
        if (n === 1) await until(() => isLive(read(takeover)));
        try {
          return await real.rename(from, to);
        } finally {
          if (n === 1) firstRenameDone = true;
        }
      }
      return real.rename(from, to);
    },
    async unlink(path: string) {
      // The second taker holds the takeover lock until the first has moved it.
      if (path === file && isLive(read(takeover))) await until(() => firstRenameDone);
      const text = read(path);
      if (path.endsWith('.stale') && isLive(text) && read(takeover) !== text) lost.push(text!);
      return real.unlink(path);
    },
  };
});

test('a live takeover lock moved by another taker is put back, never deleted', async () => {
  const { fileStore } = await import('../src/node.js');
  const one = fileStore(dir);
  await one.put('x', new Uint8Array([1]));
  writeFileSync(file, `${dead} deadbeef`);
  writeFileSync(takeover, `${dead} cafe`);
  let inside = 0;
  let overlaps = 0;
  const take = async () => {
    const release = await fileStore(dir).lock?.('test');
    if (++inside > 1) overlaps++;
    await new Promise((r) => setTimeout(r, 20));
    inside--;
    await release?.();
  };
  await Promise.all([take(), take()]);
  expect(takeoverRenames).toBe(2);
  expect(firstRenameDone).toBe(true);
  expect(lost).toEqual([]);
  expect(overlaps).toBe(0);
});
