// Defects found in review, each with the test that failed before its fix: a secret typed as an
// argument echoed in the usage error, option values that look like ids replaced on the way,
// and Windows device names that safeFileName let through.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { parseCommandLine } from '../src/_args.js';
import { safeFileName } from '../src/_safe-file-name.js';
import { cli, json } from './_cli.js';

const home = mkdtempSync(join(tmpdir(), 'coffer-cli-review-'));
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe('an extra argument to a command that asks for a secret is never repeated', () => {
  const secret = 'hunter2-Corr3ct-Horse';
  const cases: [string[], string][] = [
    [['login', 'alice', secret], 'usage: coffer login USER'],
    [['signup', 'alice', secret], 'usage: coffer signup USER'],
    [['passwd', secret], 'usage: coffer passwd'],
    [['recover', 'alice', 'ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-6789'], 'usage: coffer recover USER'],
  ];
  test.each(cases)('coffer %j: status 2, the argument not shown', async (argv, usage) => {
    const run = await cli([...argv, '--home', home]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('coffer: error: unexpected argument');
    expect(run.stderr).toContain(usage);
    expect(run.stderr).not.toContain(argv.at(-1)!);
    expect(run.stderr).not.toContain(argv.at(-1)!.slice(0, 8));

    const asJson = await cli([...argv, '--home', home, '--json']);
    expect(asJson.code).toBe(2);
    expect(json(asJson.stderr)).toMatchObject({ error: { code: 'USAGE' } });
    expect(asJson.stderr).not.toContain(argv.at(-1)!.slice(0, 8));
  });

  test('other commands still name the argument they did not expect', async () => {
    const run = await cli(['whoami', 'really', '--home', home]);
    expect(run.stderr).toContain('unexpected argument really');
  });
});

describe('an option value that looks like an id beginning with "-" is kept as given', () => {
  const value = '-phone_of_alice_2025-11-27';
  test.each([
    ['--device-name', 'deviceName', ['login', 'alice']],
    ['--file', 'file', ['send', 'bob']],
    ['--save-files', 'saveFiles', ['messages']],
    ['--home', 'home', ['whoami']],
  ] as const)('%s', (flag, key, words) => {
    const line = parseCommandLine([...words, flag, value]);
    expect(line.options[key]).toBe(value);
    expect(line.words).toEqual(words);
  });
});

describe('safeFileName never yields a name Windows takes for a device', () => {
  test.each([
    'COM¹',
    'com².txt',
    'LPT³.tar.gz',
    'nul .txt',
    'CON  .log',
    'aux .',
    'CONIN$',
    'conout$.txt',
    'CLOCK$',
  ])('%j', (hostile) => {
    const safe = safeFileName(hostile);
    const base = safe.split('.')[0]!.trimEnd();
    expect(base).not.toMatch(
      /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$|clock\$)$/i,
    );
    expect(safe.startsWith('_')).toBe(true);
  });

  test('names that only resemble one are left alone', () => {
    for (const name of ['console.txt', 'com10', 'nullable', 'lpt.txt', 'auxiliary', 'report.con'])
      expect(safeFileName(name)).toBe(name);
  });
});
