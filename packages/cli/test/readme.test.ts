import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { CLI_ERROR_CODES } from '../src/_errors.js';
import { usageText } from '../src/_usage.js';
import { EXIT_STATUSES, exitStatusFor } from '../src/exit-status.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const section = (title: string) => readme.split(`\n## ${title}\n`)[1]?.split('\n## ')[0] ?? '';
const tableRows = (text: string) =>
  [...text.matchAll(/^\|(.+)\|$/gm)]
    .map((m) => m[1]!.split('|').map((cell) => cell.trim()))
    .filter((cells) => !/^-+$/.test(cells[0]!) && !/^[a-z]+$/.test(cells[0]!));
const codesIn = (cell: string) => [...cell.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1]);

test("the README's exit-status table is the code's", () => {
  const documented = tableRows(section('Exit status')).map(([status, meaning, codes]) => ({
    status: Number(status),
    meaning,
    codes: codesIn(codes ?? ''),
  }));
  expect(documented).toEqual(EXIT_STATUSES.map((row) => ({ ...row, codes: [...row.codes] })));
});

test("the README documents exactly the CLI's own error codes, with their statuses", () => {
  const documented = tableRows(section('Error codes')).map(([code, status]) => ({
    code: codesIn(code ?? '')[0],
    status: Number(status),
  }));
  expect(documented).toEqual(
    CLI_ERROR_CODES.map((code) => ({ code, status: exitStatusFor(code) })),
  );
});

test('the README shows the usage text as coffer help prints it', () => {
  const shown = section('Usage').split('```text\n')[1]?.split('\n```')[0];
  expect(`${shown}\n`).toBe(usageText());
});
