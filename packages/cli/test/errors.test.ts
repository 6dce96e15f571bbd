import { SDK_ERROR_CODES } from '@coffer/sdk';
import { expect, test } from 'vitest';
import { CLI_ERROR_CODES, hintFor } from '../src/_errors.js';
import { EXIT_STATUSES, exitStatusFor } from '../src/exit-status.js';

const known = new Set<string>([...SDK_ERROR_CODES, ...CLI_ERROR_CODES]);

test('the exit-status table names only codes the SDK or the CLI has, each once', () => {
  const listed = EXIT_STATUSES.flatMap((row) => [...row.codes]);
  expect(listed.filter((code) => !known.has(code))).toEqual([]);
  expect(new Set(listed).size).toBe(listed.length);
  expect(exitStatusFor('INVALID_CREDENTIALS')).toBe(3);
  expect(exitStatusFor('SOMETHING_NEW')).toBe(1);
});

test('every SDK error code gets a hint, but those whose message says it all', () => {
  // A new SDK code fails this test until the CLI decides what to tell the user about it.
  const context = { command: 'devices list', server: 'http://localhost:8080', home: '/h' };
  const silent = SDK_ERROR_CODES.filter((code) => hintFor(code, context) === undefined);
  expect(silent).toEqual(['INVALID_ARGUMENT', 'INVALID_USERNAME', 'ABORTED']);
});

test('hints name the server, the home and the user they are about', () => {
  const context = {
    command: 'login',
    server: 'https://coffer.example.com',
    home: '/home/a/.coffer',
    username: 'alice',
  };
  expect(hintFor('NETWORK', context)).toBe(
    'is the server at https://coffer.example.com running? start it with npm start, or pass --server URL',
  );
  expect(hintFor('NOT_LOGGED_IN', context)).toBe(
    'coffer login alice (or coffer signup alice for a new account)',
  );
  expect(hintFor('RATE_LIMITED', { ...context, retryAfter: 2.2 })).toBe('try again in 3 s');
  expect(hintFor('RATE_LIMITED', context)).toBe('too many attempts: try again later');
  expect(hintFor('STORE_CORRUPT', context)).toContain('/home/a/.coffer');
  // A conversation's CONFLICT is not a race on the account: running it again as is may not help.
  for (const command of ['send', 'groups add', 'groups create'])
    expect(hintFor('CONFLICT', { ...context, command })).not.toContain('changed the account');
  expect(hintFor('CONFLICT', context)).toContain('changed the account');
});
