import { parseArgs } from 'node:util';
import { usageError } from './_errors.js';

/** The options of the command line; every one may stand anywhere, before or after the words. */
export interface Options {
  readonly server?: string;
  readonly home?: string;
  readonly json: boolean;
  readonly passwordStdin: boolean;
  readonly deviceName?: string;
  /** send: a group conversation id instead of a user. */
  readonly group?: string;
  /** send: a file to attach. */
  readonly file?: string;
  /** messages: keep syncing until interrupted. */
  readonly follow: boolean;
  /** messages, history: where received attachments are saved. */
  readonly saveFiles?: string;
  /** history: how many of the newest messages (the text as given; checked by the command). */
  readonly limit?: string;
  readonly help: boolean;
  readonly version: boolean;
}

export interface CommandLine {
  /** Command, subcommand and arguments, in order. */
  readonly words: string[];
  readonly options: Options;
  /** The long names of the options given ("password-stdin"), to check what a command takes. */
  readonly given: ReadonlySet<string>;
}

const OPTIONS = {
  server: { type: 'string' },
  home: { type: 'string' },
  json: { type: 'boolean' },
  'password-stdin': { type: 'boolean' },
  'device-name': { type: 'string' },
  group: { type: 'string' },
  file: { type: 'string' },
  follow: { type: 'boolean' },
  'save-files': { type: 'string' },
  limit: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    options: OPTIONS,
    strict: true,
    allowPositionals: true,
    tokens: true,
  });
}

/** Whether --json is on the line, for reporting an error found before parsing succeeded. */
export function wantsJson(argv: readonly string[]): boolean {
  for (const arg of argv) {
    if (arg === '--') return false;
    if (arg === '--json') return true;
  }
  return false;
}

/**
 * Splits `argv` into words and options. Unknown options, a missing value, a value given to a
 * flag and an option given twice are usage errors (exit status 2).
 */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  // Ids are b64url and 1 in 64 begins with "-": one the user pastes (a device or conversation
  // id, 22 to 86 characters of the alphabet) is a word, not an unknown option. Every value
  // comes back as given: a device name or a path of that shape is an option's value.
  const ids = new Map<string, string>();
  const line = argv.map((arg) => {
    if (!/^-[A-Za-z0-9_-]{21,85}$/.test(arg) || arg.startsWith('--')) return arg;
    const stand = `\u0000id${ids.size}`;
    ids.set(stand, arg);
    return stand;
  });
  const back = <T extends string | undefined>(value: T): T =>
    (value !== undefined && ids.has(value) ? ids.get(value) : value) as T;
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(line);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const message = err instanceof Error ? err.message : String(err);
    const flag = /'(--?[^' <=]+)/.exec(message)?.[1] ?? '';
    const name = flag.replace(/^-+/, '');
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')
      throw usageError(
        `unknown option ${flag}`,
        'see coffer help; an argument that begins with "-" goes after "--"',
      );
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const isFlag =
        Object.hasOwn(OPTIONS, name) && OPTIONS[name as keyof typeof OPTIONS].type === 'boolean';
      throw usageError(
        isFlag ? `${flag} takes no value` : `${flag} needs a value`,
        isFlag
          ? 'see coffer help'
          : `write ${flag} VALUE, or ${flag}=VALUE for a value beginning with "-"`,
      );
    }
    throw usageError(message.replace(/\.$/, '').toLowerCase(), 'see coffer help');
  }

  const given = new Set<string>();
  for (const token of parsed.tokens) {
    if (token.kind !== 'option') continue;
    if (given.has(token.name)) throw usageError(`--${token.name} given twice`);
    given.add(token.name);
  }
  const v = parsed.values;
  for (const name of [
    'server',
    'home',
    'device-name',
    'group',
    'file',
    'save-files',
    'limit',
  ] as const) {
    if (v[name] === '') throw usageError(`--${name} needs a value`);
  }
  return {
    words: parsed.positionals.map(back),
    given,
    options: {
      ...(v.server === undefined ? {} : { server: back(v.server) }),
      ...(v.home === undefined ? {} : { home: back(v.home) }),
      ...(v['device-name'] === undefined ? {} : { deviceName: back(v['device-name']) }),
      ...(v.group === undefined ? {} : { group: back(v.group) }),
      ...(v.file === undefined ? {} : { file: back(v.file) }),
      ...(v['save-files'] === undefined ? {} : { saveFiles: back(v['save-files']) }),
      ...(v.limit === undefined ? {} : { limit: back(v.limit) }),
      follow: v.follow === true,
      json: v.json === true,
      passwordStdin: v['password-stdin'] === true,
      help: v.help === true,
      version: v.version === true,
    },
  };
}
