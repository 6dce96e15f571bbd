import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { SdkError } from '@coffer/sdk';
import { login, logout, passwd, recover, signup, whoami } from './_account.js';
import { parseCommandLine, wantsJson } from './_args.js';
import { COMMAND_OPTIONS, type CommandSpec, helpTopic, resolveCommand } from './_commands.js';
import { type CliIo, type Context, note, untilAborted } from './_context.js';
import {
  groupsAdd,
  groupsCreate,
  groupsLeave,
  groupsList,
  groupsRemove,
  groupsRename,
  history,
  messages,
  send,
} from './_conversations.js';
import { joinLink, link, list, rename, revoke } from './_devices.js';
import { CliError, type HintContext, hintFor, usageError } from './_errors.js';
import { printable } from './_format.js';
import { commandHelp, DEFAULT_SERVER, usageText } from './_usage.js';
import { EXIT, exitStatusFor } from './exit-status.js';

export type { CliIo } from './_context.js';
export type { CliReader, CliWriter, Prompt } from './_secrets.js';

const RUN: Readonly<Record<string, (ctx: Context) => Promise<number>>> = {
  signup,
  login,
  logout,
  whoami,
  passwd,
  recover,
  'devices list': list,
  'devices link': link,
  'devices join': joinLink,
  'devices rename': rename,
  'devices revoke': revoke,
  send,
  messages,
  history,
  'groups list': groupsList,
  'groups create': groupsCreate,
  'groups add': groupsAdd,
  'groups remove': groupsRemove,
  'groups leave': groupsLeave,
  'groups rename': groupsRename,
};

/** What a COMMIT_NOT_ALLOWED refusal stopped, by command. */
const ADMIN_ACTIONS: Readonly<Record<string, string>> = {
  'groups add': 'add members',
  'groups remove': 'remove members',
  'groups rename': 'rename it',
};

/** The secrets a command asks for (never an argument), by command. */
const SECRET_ASKED: Readonly<Record<string, string>> = {
  signup: 'password',
  login: 'password',
  passwd: 'password',
  recover: 'recovery code or password',
};

/** The usage lines of a command, as a hint. */
const usageHint = (spec: CommandSpec) =>
  `usage: ${spec.synopsis.map((s) => `coffer ${s}`).join(' | ')}`;

/** The word of the synopsis an argument is missing for: "NAME", "USER...". */
function missingWord(spec: CommandSpec, given: number): string {
  if (spec.name === 'devices rename') return 'NAME';
  const words = (spec.synopsis[0] ?? '').split(' ').filter((w) => /^[A-Z]/.test(w));
  return words[given] ?? words.at(-1) ?? 'argument';
}

/** Messages coffer history may show at once (the SDK's limit). */
const MAX_HISTORY_LIMIT = 10_000;

function historyLimit(text: string): number {
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && n <= MAX_HISTORY_LIMIT))
    throw usageError(`--limit expected a whole number from 1 to ${MAX_HISTORY_LIMIT}`);
  return n;
}

/** Hosts where plain http stays on this machine. */
const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

function serverUrl(text: string, from: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usageError(`${from} expected a URL such as https://coffer.example.com`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw usageError(`${from} expected an http or https URL`);
  // A password in the URL would be sent to the server and might be echoed: refuse it unseen.
  if (url.username || url.password || url.search || url.hash)
    throw usageError(`${from} expected a URL without user, password, query or fragment`);
  return url.href.replace(/\/+$/, '');
}

async function version(): Promise<string> {
  // src/ and dist/ both sit one level below package.json.
  const text = await readFile(new URL('../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

/**
 * The `coffer` command line, in-process: parses `argv` (without node and the script), runs the
 * command and returns the exit status (see EXIT_STATUSES: 0 ok, 1 error, 2 usage, 3
 * authentication, 4 network, 5 server, 6 revoked, 130 interrupted). Results go to `io.stdout`;
 * prompts, progress and errors to `io.stderr`. Nothing calls process.exit.
 *
 * @example process.exitCode = await main(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env });
 */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const json = wantsJson(argv);
  const hints: { -readonly [K in keyof HintContext]: HintContext[K] } = {
    command: '',
    server: DEFAULT_SERVER,
    home: '~/.coffer',
  };
  let ctx: Context | undefined;
  try {
    const line = parseCommandLine(argv);
    const { options } = line;
    if (options.version) {
      const v = await version();
      io.stdout.write(json ? `${JSON.stringify({ version: v })}\n` : `coffer ${v}\n`);
      return EXIT.ok;
    }
    const resolved = resolveCommand(line.words);
    if (!resolved) {
      if (options.help) {
        io.stdout.write(usageText());
        return EXIT.ok;
      }
      io.stderr.write(usageText());
      return EXIT.usage;
    }
    const { spec, args } = resolved;
    hints.command = spec.name;
    if (spec.name === 'help' || options.help) {
      const topic = spec.name === 'help' ? helpTopic(args) : [spec];
      io.stdout.write(topic.length ? commandHelp(topic) : usageText());
      return EXIT.ok;
    }

    if ((spec.name === 'devices link' || spec.name === 'devices join') && args.length > 0)
      // Not echoed: it may be a link code, which argv shows to the machine's other users.
      throw usageError(
        `coffer ${spec.name} takes no code: a code on the command line shows in the process list and stays in the shell history`,
        'on the new device, run coffer devices join and type the code when asked',
      );
    if (spec.name === 'devices link' && line.given.has('device-name'))
      throw usageError(
        '--device-name names the new device: give it there, to coffer devices join',
        'coffer devices join --device-name NAME',
      );
    for (const option of COMMAND_OPTIONS) {
      if (line.given.has(option) && !spec.options.includes(option))
        throw usageError(`coffer ${spec.name} does not take --${option}`, usageHint(spec));
    }
    if (args.length < spec.minArgs)
      throw usageError(`missing ${missingWord(spec, args.length)}`, usageHint(spec));
    if (args.length > spec.maxArgs) {
      const secret = SECRET_ASKED[spec.name];
      // Not echoed: a word too many here is most likely the secret itself, typed on the line.
      if (secret !== undefined)
        throw usageError(
          `unexpected argument (not shown: coffer ${spec.name} takes no ${secret} on the command line, where the process list and the shell history would keep it)`,
          `${usageHint(spec)}; the ${secret} is asked for without echo, or read with --password-stdin`,
        );
      // Not echoed either: a word too many for send is most likely the message, unquoted.
      if (spec.name === 'send')
        throw usageError(
          'unexpected argument (not shown): TEXT is one argument',
          `${usageHint(spec)} (quote a text with spaces)`,
        );
      throw usageError(`unexpected argument ${printable(args[spec.maxArgs]!)}`, usageHint(spec));
    }

    const envServer = io.env.COFFER_SERVER || undefined;
    const server =
      options.server !== undefined
        ? serverUrl(options.server, '--server')
        : envServer !== undefined
          ? serverUrl(envServer, 'COFFER_SERVER')
          : DEFAULT_SERVER;
    const home = resolve(
      options.home ?? (io.env.COFFER_HOME || join(io.env.HOME || homedir(), '.coffer')),
    );
    hints.server = server;
    hints.home = home;
    ctx = {
      io,
      args,
      json,
      server,
      serverOption: server === DEFAULT_SERVER ? '' : ` --server ${server}`,
      home,
      deviceName: options.deviceName,
      passwordStdin: options.passwordStdin,
      ...(options.group === undefined ? {} : { group: options.group }),
      ...(options.file === undefined ? {} : { file: options.file }),
      ...(options.saveFiles === undefined ? {} : { saveFiles: options.saveFiles }),
      ...(options.limit === undefined ? {} : { limit: historyLimit(options.limit) }),
      follow: options.follow,
    };
    const url = new URL(server);
    if (url.protocol === 'http:' && !LOOPBACK.test(url.hostname))
      note(
        ctx,
        `warning: ${server} is plain http: session tokens cross the network readable (use https)`,
      );
    // messages stops on the signal itself: what it fetched (and so acknowledged) is written out
    // first; for --follow that is its normal end (status 0).
    if (spec.name === 'messages') return await RUN[spec.name]!(ctx);
    return await untilAborted(RUN[spec.name]!(ctx), io.signal);
  } catch (err) {
    if (ctx?.username !== undefined) hints.username = ctx.username;
    return report(err, io, json, hints);
  }
}

/** Writes the error (and the hint, where we know one) to stderr; returns the exit status. */
function report(err: unknown, io: CliIo, json: boolean, context: HintContext): number {
  let code: string;
  let message: string;
  let hint: string | undefined;
  let retryAfter: number | undefined;
  if (err instanceof CliError) {
    code = err.code;
    message = err.message;
    hint = err.hint ?? hintFor(code, context);
  } else if (SdkError.is(err)) {
    code = err.code;
    // "client.login: ..." — the operation is ours to know, not the user's.
    message = err.message.startsWith(`${err.operation}: `)
      ? err.message.slice(err.operation.length + 2)
      : err.message;
    retryAfter = err.retryAfter;
    if (code === 'INVALID_CREDENTIALS' && context.command === 'recover')
      // The SDK's "wrong username or password": what recover was given is a recovery code.
      message = 'wrong username or recovery code';
    if (err.detail === 'COMMIT_NOT_ALLOWED') {
      // The conversation's rules refused our own change: not a matter of logging in again.
      code = 'COMMIT_NOT_ALLOWED';
      message = `only an admin of the conversation may ${ADMIN_ACTIONS[context.command] ?? 'change it'}`;
    }
    hint =
      err.serverCode === 'FORBIDDEN'
        ? // Not a password matter (REAUTH_REQUIRED's hint): the device may have been removed.
          'coffer messages shows whether this device was removed from the conversation'
        : hintFor(code, { ...context, ...(retryAfter === undefined ? {} : { retryAfter }) });
  } else {
    // Our own messages and Node's (a file that cannot be read) hold no secrets.
    code = 'ERROR';
    message = err instanceof Error ? err.message : String(err);
  }
  if (json) {
    const error = {
      code,
      message,
      ...(hint === undefined ? {} : { hint }),
      ...(retryAfter === undefined ? {} : { retryAfter }),
    };
    io.stderr.write(`${JSON.stringify({ error })}\n`);
  } else {
    io.stderr.write(`coffer: error: ${printable(message)}\n`);
    if (hint !== undefined) io.stderr.write(`coffer: hint: ${printable(hint)}\n`);
  }
  return exitStatusFor(code);
}
