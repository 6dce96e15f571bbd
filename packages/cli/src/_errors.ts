import { exitStatusFor } from './exit-status.js';

/**
 * The CLI's own error codes, beside the SDK's (README "Error codes"). Each maps to an exit
 * status through exit-status.ts. A CliError may also carry an SDK code (NOT_LOGGED_IN,
 * ALREADY_LOGGED_IN) when the CLI finds that state itself, before asking for a password.
 */
export const CLI_ERROR_CODES = [
  'USAGE',
  'PASSWORD_MISMATCH',
  'UNKNOWN_DEVICE',
  'UNKNOWN_USER',
  'COMMIT_NOT_ALLOWED',
  'INTERRUPTED',
  'OUTPUT_FAILED',
  'ERROR',
] as const;
export type CliErrorCode = (typeof CLI_ERROR_CODES)[number];

/** A failure the CLI reports itself: a code, a message and, where the fix is known, a hint. */
export class CliError extends Error {
  readonly exitStatus: number;

  constructor(
    readonly code: CliErrorCode | 'NOT_LOGGED_IN' | 'ALREADY_LOGGED_IN',
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'CliError';
    this.exitStatus = exitStatusFor(code);
  }

  static is(err: unknown, code?: CliError['code']): err is CliError {
    return err instanceof CliError && (code === undefined || err.code === code);
  }
}

/** A mistake on the command line (exit status 2), with the usage line as the default hint. */
export function usageError(message: string, hint?: string): CliError {
  return new CliError('USAGE', message, hint);
}

export function interrupted(): CliError {
  return new CliError('INTERRUPTED', 'interrupted');
}

/** What a hint may mention about the command that failed. */
export interface HintContext {
  readonly command: string;
  readonly server: string;
  readonly home: string;
  readonly username?: string;
  readonly retryAfter?: number;
}

/**
 * The likely fix for an SDK error code, where we know it. Hints name commands and options,
 * never secrets.
 */
export function hintFor(code: string, context: HintContext): string | undefined {
  const user = context.username ?? 'USER';
  switch (code) {
    case 'NETWORK':
      return `is the server at ${context.server} running? start it with npm start, or pass --server URL`;
    case 'INVALID_CREDENTIALS':
      if (context.command === 'recover') return 'check the username and the recovery code';
      // passwd is asked no username: the current password is what was wrong.
      if (context.command === 'passwd') return 'check the current password';
      return 'check the username and password';
    case 'REAUTH_REQUIRED':
      return `log in again (coffer logout, then coffer login ${user}) and retry`;
    case 'RATE_LIMITED':
      return context.retryAfter === undefined
        ? 'too many attempts: try again later'
        : `try again in ${Math.max(1, Math.ceil(context.retryAfter))} s`;
    case 'NOT_LOGGED_IN':
      return `coffer login ${user} (or coffer signup ${user} for a new account)`;
    case 'ALREADY_LOGGED_IN':
      return `this home (${context.home}) is already logged in: coffer logout first, or pass --home DIR`;
    case 'USERNAME_TAKEN':
      return `choose another username, or coffer login ${user} if the account is yours`;
    case 'DEVICE_REVOKED':
      return `another device removed this one from the account; coffer login ${user} adds it back`;
    case 'INVALID_RECOVERY_CODE':
      return 'the recovery code is the 32 characters (8 groups of 4) printed at signup';
    case 'INVALID_LINK_CODE':
      return 'type the code that coffer devices link shows on the device already logged in';
    case 'LINK_REFUSED':
      return 'nothing was added; to add your device, run coffer devices link again and enter the new code only on that device';
    case 'LINK_EXPIRED':
      return 'a code works once, for 10 minutes: run coffer devices link again on the other device';
    case 'NOT_FOUND':
      if (context.command.startsWith('devices'))
        return 'coffer devices lists the devices of the account';
      if (context.command.startsWith('groups') || context.command === 'send')
        return 'coffer groups lists the conversations of this device';
      return undefined;
    case 'OUTPUT_FAILED':
      // Only coffer messages acknowledges what it fetched; coffer history's is stored here.
      return context.command === 'messages'
        ? 'a command reading coffer messages must read all of it: what was fetched and not shown is not fetched again'
        : undefined;
    case 'COMMIT_NOT_ALLOWED':
      return 'ask an admin of the conversation (the one who created it)';
    case 'ATTACHMENT_CORRUPT':
      return 'the file on the server is not the one the message names: nothing of it was kept';
    case 'INVALID_ATTACHMENT':
      return 'the message names its file in a form this coffer cannot read';
    case 'QUOTA_EXCEEDED':
      return "the account's stored files reached the server's quota";
    case 'UNKNOWN_DEVICE':
      return 'coffer devices lists the devices of the account';
    case 'UNKNOWN_USER':
      return `check the spelling, and that they signed up on ${context.server}`;
    case 'TOO_MANY_DEVICES':
      return 'an account holds at most 64 devices: revoke one you no longer use (coffer devices revoke ID)';
    case 'CONFLICT':
      if (context.command === 'devices join')
        return 'that code was used already: run coffer devices link again on the other device';
      // In conversations the message says what collided: a user with no device to add yet, one
      // already in the group, a Welcome to a device holding too many unread ones, a busy group.
      if (context.command === 'send' || context.command.startsWith('groups '))
        return 'a user with no device yet must log in (or run coffer messages) once first; anything else: try again later';
      return 'another device changed the account at the same moment: run the command again';
    case 'STORE_CORRUPT':
      return `the state in ${context.home} cannot be read: move it away and log in again (your account keys are backed up on the server)`;
    case 'STORE_UNAVAILABLE':
      return `cannot read or write ${context.home}: check that it is a directory you may write to`;
    case 'PROTOCOL_VIOLATION':
      return 'nothing from that answer was used; if it happens again, the server is broken or not the one you trust';
    case 'SERVER_ERROR':
      return 'the server failed; its log says why (it never includes your data)';
    case 'NOT_READY':
      return 'this is a bug in coffer; please report it';
    default:
      return undefined;
  }
}
