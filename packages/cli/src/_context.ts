import { hostname } from 'node:os';
import {
  type ClientOptions,
  type CofferClient,
  createClient,
  normalizeDeviceName,
} from '@coffer/sdk';
import { openNodeHome } from '@coffer/sdk/node';
import { CliError, interrupted, usageError } from './_errors.js';
import {
  type CliReader,
  type CliWriter,
  type Prompt,
  promptHidden,
  promptVisible,
  readLines,
} from './_secrets.js';

/** What `main` reads and writes: the process's own, or stand-ins in tests. */
export interface CliIo {
  /** Passwords come from here: typed on a terminal, or lines with --password-stdin. */
  readonly stdin: CliReader;
  /** Results (one JSON object with --json). */
  readonly stdout: CliWriter;
  /** Prompts, progress, errors and hints. */
  readonly stderr: CliWriter;
  /** COFFER_SERVER, COFFER_HOME and HOME are read from here. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Whether stdin is a terminal, where passwords may be asked (default: `stdin.isTTY`). */
  readonly stdinIsTTY?: boolean;
  /**
   * Answers prompts instead of the terminal (tests, embedding). Asked only where the terminal
   * would be: when stdin is a terminal and --password-stdin is not given.
   */
  readonly prompt?: Prompt;
  /** Aborted on Ctrl-C: a waiting command stops with status 130. */
  readonly signal?: AbortSignal;
  /** The fetch the SDK calls (default: the global one). */
  readonly fetch?: typeof fetch;
}

/** One run of one command: the parsed line, resolved settings and where to write. */
export interface Context {
  readonly io: CliIo;
  readonly args: readonly string[];
  readonly json: boolean;
  readonly server: string;
  /** The --server text to repeat in a suggested command ("" when the default is in use). */
  readonly serverOption: string;
  readonly home: string;
  readonly deviceName: string | undefined;
  readonly passwordStdin: boolean;
  /** --group, --file, --follow, --save-files (send, messages). */
  readonly group?: string;
  readonly file?: string;
  readonly follow: boolean;
  readonly saveFiles?: string;
  /** --limit (history): checked, 1 to 10000. */
  readonly limit?: number;
  /** The username the command is about, once known: hints name it. */
  username?: string;
}

/** Writes the command's result: `value` as one line of JSON with --json, `text` otherwise. */
export function result(ctx: Context, value: object, text: string): void {
  ctx.io.stdout.write(
    ctx.json ? `${JSON.stringify(value)}\n` : text.endsWith('\n') ? text : `${text}\n`,
  );
}

/**
 * As {@link result}, and resolves once stdout has taken the line (for a writer that says so,
 * see CliWriter). Rejects with OUTPUT_FAILED when it cannot: a pipe closed by its reader
 * (`| head -1`), a full disk.
 */
export function written(ctx: Context, value: object, text: string): Promise<void> {
  const out = ctx.io.stdout;
  const line = ctx.json ? `${JSON.stringify(value)}\n` : text.endsWith('\n') ? text : `${text}\n`;
  // A writer without a callback parameter (a plain function collecting text) never calls one.
  if (out.write.length < 2) {
    out.write(line);
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    out.write(line, (err) => {
      if (!err) return resolve();
      const code = (err as { code?: unknown }).code;
      const reason = typeof code === 'string' ? code : 'i/o error';
      const failed = new CliError(
        'OUTPUT_FAILED',
        `cannot write to stdout (${reason}): stopped before fetching more`,
      );
      outputFailures.set(failed, reason);
      reject(failed);
    });
  });
}

/** Why stdout refused a line, per OUTPUT_FAILED error of {@link written}. */
const outputFailures = new WeakMap<Error, string>();

/**
 * The system's code for a write {@link written} could not make (`EPIPE`: the reader of the
 * pipe has gone, as with `| head -1`; `ENOSPC`, …), or undefined for any other error.
 */
export function outputFailure(err: unknown): string | undefined {
  return err instanceof Error ? outputFailures.get(err) : undefined;
}

/** Progress for a person, on stderr; nothing with --json, where stderr carries only errors. */
export function note(ctx: Context, text: string): void {
  if (!ctx.json) ctx.io.stderr.write(`coffer: ${text}\n`);
}

/**
 * The options of a device joining an account (signup, login, recover, devices join): its
 * name, from --device-name, else the host name. Called before any secret is asked: a
 * --device-name the SDK would refuse (INVALID_ARGUMENT) fails here, not after the password.
 */
export function joinOptions(ctx: Context): { deviceName?: string } {
  if (ctx.deviceName !== undefined) {
    normalizeDeviceName(ctx.deviceName, 'device name');
    return { deviceName: ctx.deviceName };
  }
  const host = hostname().trim();
  // spec account-v1 §3.1: a name is 1 to 64 bytes; for anything else the SDK's default stands.
  return host !== '' && Buffer.byteLength(host) <= 64 ? { deviceName: host } : {};
}

/** One secret to ask for: the prompt, and for a new password the prompt that confirms it. */
export interface SecretQuestion {
  readonly prompt: string;
  readonly confirm?: string;
  /** What the secret is, for messages ("password", "recovery code"). */
  readonly what: string;
}

/**
 * The secrets a command needs, in order: lines of stdin with --password-stdin, else hidden
 * prompts on the terminal (new passwords twice). Refuses to prompt without a terminal.
 */
export async function askSecrets(
  ctx: Context,
  questions: readonly SecretQuestion[],
): Promise<string[]> {
  const { io } = ctx;
  const tty = io.stdinIsTTY ?? io.stdin.isTTY === true;
  if (ctx.passwordStdin) {
    if (tty)
      throw usageError(
        '--password-stdin reads a pipe or a file, and stdin is a terminal',
        'leave --password-stdin out to be asked without echo',
      );
    const lines = await readLines(io.stdin, questions.length);
    lines.forEach((line, i) => {
      if (line === '')
        throw usageError(
          `line ${i + 1} of stdin is empty: expected the ${questions[i]?.what ?? 'password'}`,
        );
    });
    return lines;
  }
  if (!tty)
    throw usageError(
      `cannot ask for the ${questions[0]?.what ?? 'password'}: stdin is not a terminal`,
      `pass --password-stdin and write ${questions.map((q) => `the ${q.what}`).join(', then ')} on stdin, one per line`,
    );
  const prompt: Prompt =
    io.prompt ?? ((question) => promptHidden(question, io.stdin, io.stderr, io.signal));
  const answers: string[] = [];
  for (const q of questions) {
    const answer = await prompt(q.prompt, { hidden: true });
    if (answer === '') throw usageError(`the ${q.what} is empty`, 'run the command again');
    if (q.confirm !== undefined) {
      const again = await prompt(q.confirm, { hidden: true });
      if (again !== answer)
        throw new CliError(
          'PASSWORD_MISMATCH',
          `the two ${q.what}s differ`,
          'run the command again and type the same one twice',
        );
    }
    answers.push(answer);
  }
  return answers;
}

/**
 * Asks a yes/no question whose default is no: on the terminal (stderr, the answer echoed), else
 * as one line of stdin, the question shown first (on stderr, or as `value`, one JSON line on
 * stdout, with --json) so that a script can read it and answer. Only "y" or "yes" is yes; an
 * empty answer, or stdin ending, is no.
 */
export async function confirm(ctx: Context, question: string, value: object): Promise<boolean> {
  const { io } = ctx;
  const tty = io.stdinIsTTY ?? io.stdin.isTTY === true;
  let answer: string;
  if (tty) {
    const prompt: Prompt = io.prompt ?? ((q) => promptVisible(q, io.stdin, io.stderr, io.signal));
    answer = await prompt(`${question} [y/N] `, { hidden: false });
  } else {
    if (ctx.json) io.stdout.write(`${JSON.stringify(value)}\n`);
    else io.stderr.write(`coffer: ${question} (answer y or n on stdin)\n`);
    answer = await readLines(io.stdin, 1).then(
      ([line]) => line ?? '',
      () => '',
    );
  }
  return /^y(es)?$/i.test(answer.trim());
}

/**
 * Opens this home's client, runs `fn` with it and closes it, also when `fn` fails. `fetch`
 * replaces the fetch the client calls (default: `io.fetch`, else the global one).
 */
export async function withClient<T>(
  ctx: Context,
  fn: (client: CofferClient) => Promise<T>,
  fetch: typeof globalThis.fetch | undefined = ctx.io.fetch,
): Promise<T> {
  const { store, storeKey } = await openNodeHome(ctx.home);
  // Following, the server's event socket wakes the client at once; Node 20 has no global
  // WebSocket, so the `ws` package provides one (loaded only then).
  const webSocket =
    ctx.follow && (globalThis as { WebSocket?: unknown }).WebSocket === undefined
      ? ((await import('ws')).WebSocket as unknown as ClientOptions['webSocket'])
      : undefined;
  const client = createClient({
    server: ctx.server,
    store,
    storeKey,
    ...(fetch ? { fetch } : {}),
    ...(webSocket ? { webSocket } : {}),
  });
  await client.open();
  let value: T;
  try {
    value = await fn(client);
  } catch (err) {
    await client.close().catch(() => {});
    throw err;
  }
  await client.close();
  return value;
}

/** Rejects with INTERRUPTED as soon as `signal` aborts, without waiting for `work`. */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(interrupted());
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
