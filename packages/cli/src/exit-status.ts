/**
 * The exit statuses of `coffer`, as `coffer help` and the README document them (a test checks
 * that the README's table equals this one). Every SDK error code that has a status of its own
 * is listed beside it; any other failure is 1.
 */
export const EXIT_STATUSES = [
  { status: 0, meaning: 'success', codes: [] },
  { status: 1, meaning: 'an error not listed below', codes: [] },
  {
    status: 2,
    meaning: 'usage error: a wrong command, option, argument or input',
    codes: ['USAGE', 'INVALID_ARGUMENT', 'INVALID_USERNAME'],
  },
  {
    status: 3,
    meaning: 'authentication failed, or not allowed',
    codes: ['INVALID_CREDENTIALS', 'REAUTH_REQUIRED', 'COMMIT_NOT_ALLOWED'],
  },
  { status: 4, meaning: 'cannot reach the server', codes: ['NETWORK'] },
  {
    status: 5,
    meaning: 'the server failed, or what it sent did not verify',
    codes: ['PROTOCOL_VIOLATION', 'SERVER_ERROR'],
  },
  { status: 6, meaning: 'this device was revoked', codes: ['DEVICE_REVOKED'] },
  { status: 130, meaning: 'interrupted (Ctrl-C)', codes: ['INTERRUPTED', 'ABORTED'] },
] as const satisfies readonly {
  status: number;
  meaning: string;
  codes: readonly string[];
}[];

/** The statuses by name, for code that returns one. */
export const EXIT = {
  ok: 0,
  error: 1,
  usage: 2,
  auth: 3,
  network: 4,
  server: 5,
  revoked: 6,
  interrupted: 130,
} as const;

/** The exit status for an error code (the SDK's or the CLI's own): 1 unless listed above. */
export function exitStatusFor(code: string): number {
  for (const row of EXIT_STATUSES) {
    if ((row.codes as readonly string[]).includes(code)) return row.status;
  }
  return EXIT.error;
}
