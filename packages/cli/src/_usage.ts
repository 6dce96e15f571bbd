import { COMMANDS, type CommandOption, type CommandSpec } from './_commands.js';
import { EXIT_STATUSES } from './exit-status.js';

export const DEFAULT_SERVER = 'http://localhost:8080';

function commandList(): string {
  const lines: [string, string][] = [];
  for (const c of COMMANDS) lines.push([c.synopsis[0] ?? c.name, c.summary]);
  const width = Math.max(...lines.map(([s]) => s.length)) + 2;
  return lines.map(([s, summary]) => `  coffer ${s.padEnd(width)}${summary}`).join('\n');
}

/** The exit-status table, as `coffer help` prints it. */
export function exitStatusText(): string {
  return EXIT_STATUSES.map((row) => {
    const codes = row.codes.length ? `\n         error codes ${row.codes.join(', ')}` : '';
    return `  ${String(row.status).padStart(3)}    ${row.meaning}${codes}`;
  }).join('\n');
}

const OPTIONS = `Options (anywhere on the line; "--" ends them):
  --server URL         the Coffer server (env COFFER_SERVER; default ${DEFAULT_SERVER})
  --home DIR           where this device keeps its state, encrypted (env COFFER_HOME;
                       default ~/.coffer). One home is one device, logged in to one account.
  --json               print the result as one JSON object on stdout, and errors as
                       {"error":{"code","message"}} on stderr
  --password-stdin     read the password from stdin instead of asking, one per line:
                       signup, login: PASSWORD; passwd: CURRENT then NEW;
                       recover: RECOVERY-CODE then NEW
  --device-name NAME   this device's name on the account (signup, login, recover,
                       devices join; default: the host name)
  --group ID           send: to the group conversation ID instead of a user
  --file PATH          send: attach the file PATH (encrypted, uploaded as it is read)
  --follow             messages: keep fetching until Ctrl-C
  --save-files DIR     messages, history: save received files in DIR (never overwriting)
  --limit N            history: show the N newest messages (default 20)
  -h, --help           help (coffer COMMAND --help: that command's)
  --version            the version`;

/** The whole usage text: `coffer help`, `coffer --help`. */
export function usageText(): string {
  return `coffer: an end-to-end encrypted account from a terminal, with a username and a password

Usage:
${commandList()}

Adding a device: run "coffer devices link" on a device that is logged in; it prints a code.
Then run "coffer devices join" on the new device and type the code; the first device asks you
to confirm the new device's name. See coffer help devices link.

Messages are end-to-end encrypted: "coffer send bob hello" starts (or continues) the
conversation with bob; "coffer messages" shows what arrived, "coffer history bob" what this
device stored. Groups have an admin, who adds,
removes and renames. See coffer help send, coffer help messages, coffer help groups.

${OPTIONS}

Passwords, recovery codes and link codes are asked on the terminal without echo, new
passwords twice. Without a terminal (scripts), pass --password-stdin (devices join reads the
code from stdin). Nothing is ever printed that holds a password, token or key; the recovery
code is printed once, by signup.

Errors go to stderr as "coffer: error: ..." and, where the likely fix is known,
"coffer: hint: ...".

Exit status:
${exitStatusText()}

Examples:
  $ coffer signup alice
  $ coffer whoami
  $ coffer devices
  $ coffer devices rename laptop
  $ coffer login alice --server https://coffer.example.com --home ~/.coffer-work
  $ printf '%s\\n' "$PASSWORD" | coffer login alice --password-stdin --json
  $ coffer devices revoke 3q2-7wEj
  $ coffer recover alice
  $ coffer send bob 'see you at 6'
  $ coffer send bob --file report.pdf 'the report'
  $ coffer messages --follow --save-files ~/Downloads/coffer
  $ coffer history bob --limit 100
  $ coffer groups create team bob carol
  $ echo 'hello team' | coffer send --group 9x1TcV2kQk6f0bq3wYc0Aw
`;
}

/** The value an option takes, as help shows it. */
const OPTION_VALUES: Partial<Record<CommandOption, string>> = {
  'device-name': ' NAME',
  group: ' ID',
  file: ' PATH',
  'save-files': ' DIR',
  limit: ' N',
};

/** The options line of a command's help: its own options, then the ones every command takes. */
function optionsLine(c: CommandSpec): string {
  if (c.name === 'help') return '';
  const own = c.options.map((o) => `--${o}${OPTION_VALUES[o] ?? ''}`);
  return `\n\nOptions: ${[...own, '--server URL', '--home DIR', '--json'].join(', ')} (see coffer help).`;
}

/** The help of one command (or of the devices family). */
export function commandHelp(specs: readonly CommandSpec[]): string {
  return specs
    .map(
      (c) =>
        `Usage:\n${c.synopsis.map((s) => `  coffer ${s}`).join('\n')}\n\n${c.details}${optionsLine(c)}\n`,
    )
    .join('\n');
}
