import { usageError } from './_errors.js';

/** Options a command may take beyond the ones every command takes (--server, --home, --json). */
export type CommandOption =
  | 'password-stdin'
  | 'device-name'
  | 'group'
  | 'file'
  | 'follow'
  | 'save-files'
  | 'limit';

/** Every option that only some commands take. */
export const COMMAND_OPTIONS: readonly CommandOption[] = [
  'password-stdin',
  'device-name',
  'group',
  'file',
  'follow',
  'save-files',
  'limit',
];

/** What the command line of one command looks like, and its help. */
export interface CommandSpec {
  /** "signup", "devices link". */
  readonly name: string;
  /** Usage lines, without the leading "coffer ". */
  readonly synopsis: readonly string[];
  /** One line for the command list. */
  readonly summary: string;
  readonly minArgs: number;
  readonly maxArgs: number;
  readonly options: readonly CommandOption[];
  /** A paragraph for `coffer help COMMAND`. */
  readonly details: string;
}

const ID_NOTE = `ID is a device id as coffer devices lists it, or a unique beginning of one
(4 characters or more).`;

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'signup',
    synopsis: ['signup USER'],
    summary: 'create an account; prints its recovery code once',
    minArgs: 1,
    maxArgs: 1,
    options: ['password-stdin', 'device-name'],
    details: `Creates the account USER and logs this device in to it. Asks for a new password twice
(with --password-stdin: reads it from the first line of stdin). The password never leaves this
machine; the server stores only an OPAQUE record of it.

Prints the account's recovery code, once. Write it down and keep it offline: it is the only way
back into the account when the password is forgotten (coffer recover), and nobody, the server's
operators included, can reset the password for you.`,
  },
  {
    name: 'login',
    synopsis: ['login USER'],
    summary: 'log this device in to an account',
    minArgs: 1,
    maxArgs: 1,
    options: ['password-stdin', 'device-name'],
    details: `Logs this device in to the account USER: asks for the password (with --password-stdin:
reads the first line of stdin). A device new to the account is added to its device list, named
by --device-name (default: this computer's host name).`,
  },
  {
    name: 'logout',
    synopsis: ['logout'],
    summary: "end this device's session",
    minArgs: 0,
    maxArgs: 0,
    options: [],
    details: `Ends this device's session here and on the server. It works without the server too: the
server's copy of the session then expires on its own. The device stays on the account's device
list until it is revoked (coffer devices revoke ID, from another device). Logging out when not
logged in is not an error.`,
  },
  {
    name: 'whoami',
    synopsis: ['whoami'],
    summary: 'show the account and device this home is logged in as',
    minArgs: 0,
    maxArgs: 0,
    options: [],
    details: `Shows the username, account id and this device's name and id. When this home is not
logged in, says so on stderr and exits with status 1 (error code NOT_LOGGED_IN).`,
  },
  {
    name: 'devices list',
    synopsis: ['devices [list]'],
    summary: "list the account's devices",
    minArgs: 0,
    maxArgs: 0,
    options: [],
    details: `Lists the devices of the account, as the account's signed device list names them; "*"
marks this one.`,
  },
  {
    name: 'devices link',
    synopsis: ['devices link'],
    summary: 'on a logged-in device: show a code to add a new device',
    minArgs: 0,
    maxArgs: 0,
    options: [],
    details: `Adds a new device to the account without typing the password on it. It takes two
terminals, one on each device:

  1. On a device that is already logged in:
       $ coffer devices link
     It prints a one-time code (and the same code as a QR payload, coffer-link:1:...) and waits.

  2. On the new device:
       $ coffer devices join [--device-name NAME]
     It asks for the code without echoing it (without a terminal: reads it from stdin).

The code is never given on the command line, where the process list would show it to other
users of the machine while the command waits, and the shell history would keep it.

When a device has used the code, the first device shows its name and asks whether to add it
(y/N). Say y only if it is the device you are adding: anyone who saw the code could have used it
first. Any other answer adds nothing, sends nothing, and spends the code (error LINK_REFUSED).
Without a terminal the answer is read as one line of stdin, after the question (on stderr, or as
a JSON line on stdout with --json); stdin ending is no.

Both commands finish when the new device has joined: the first prints the device it added, the
second the account it joined. A code works once, for 10 minutes; the server relays the two
devices' messages but cannot read them, and nobody without the code can join. The new device's
name comes from --device-name (default: its host name). Ctrl-C on either device cancels.

With --json the first device prints three JSON lines: {"link":{"code","qr","expiresAt"}} as soon
as the code exists, {"request":{"deviceName","deviceId"}} when a device used it (without a
terminal: answer on stdin), then {"device":{...}} when the new device has joined.`,
  },
  {
    name: 'devices join',
    synopsis: ['devices join'],
    summary: 'on the new device: join an account with the code devices link shows',
    minArgs: 0,
    maxArgs: 0,
    options: ['device-name'],
    details: `Joins the account of a device that runs coffer devices link, and logs this device in to
it, without the password. Asks for the code that device shows, without echoing it; the QR
payload (coffer-link:1:...) and a code typed with spaces are accepted. Without a terminal it
reads the code from the first line of stdin:

  $ printf '%s\\n' "$CODE" | coffer devices join --device-name phone --json

The other device then asks its user to confirm this device's name (--device-name, default: the
host name). See coffer help devices link.`,
  },
  {
    name: 'devices rename',
    synopsis: ['devices rename ID NAME', 'devices rename NAME'],
    summary: 'rename a device (this one, when ID is left out)',
    minArgs: 1,
    maxArgs: 2,
    options: [],
    details: `Renames the device ID to NAME, or this device when only NAME is given. A lone NAME that
is also a device id is refused as ambiguous: give both.

${ID_NOTE}`,
  },
  {
    name: 'devices revoke',
    synopsis: ['devices revoke ID'],
    summary: 'remove a device from the account',
    minArgs: 1,
    maxArgs: 1,
    options: [],
    details: `Removes the device ID from the account's signed device list and ends its session at once.
It can come back only by logging in again with the password, or by being linked. Revoke a lost
or sold device from one you still have; a device cannot revoke itself (coffer logout ends its
session).

${ID_NOTE}`,
  },
  {
    name: 'send',
    synopsis: ['send USER [TEXT]', 'send --group ID [TEXT]', 'send USER --file PATH [TEXT]'],
    summary: 'send a message (or a file) to a user or a group, end-to-end encrypted',
    minArgs: 0,
    maxArgs: 2,
    options: ['group', 'file'],
    details: `Sends TEXT to USER (a username) in your one-to-one conversation with them, started the
first time; with --group ID, to the group conversation ID (coffer groups lists them). Without
TEXT, the message is all of stdin (one trailing newline removed); an empty message is refused.

With --file PATH the file is encrypted on this device under a fresh key and uploaded as it is
read (files larger than memory work), then a message carrying its name, size and key is sent,
with TEXT as a caption when given. A progress bar shows on a terminal.

The server sees who the conversation's members are and when a message is sent, never what it
says nor what a file holds. USER must have logged in once since conversations exist (that is
when a device publishes the keys others add it with).`,
  },
  {
    name: 'messages',
    synopsis: ['messages [--follow] [--save-files DIR]'],
    summary: 'fetch and show new messages and conversation changes',
    minArgs: 0,
    maxArgs: 0,
    options: ['follow', 'save-files'],
    details: `Fetches what arrived for this device, checks and decrypts it, and prints each new event
once, one line each:

  2025-11-27 06:14 UTC CONVERSATION SENDER: TEXT       a message
  ... SENDER: [file NAME SIZE] TEXT                     a message with a file
  joined CONVERSATION / changed ... / removed from ...  conversation changes

CONVERSATION is a group's name, or the other account of a one-to-one conversation; accounts
show as their usernames once known (a sender's message states it, and the server's directory
must confirm it), else as their ids. Messages that could not be used (forged, undecryptable, out of order) are
reported on stderr with their error code, never skipped silently; the rest is still shown, and
the status is then 1 (as when a file could not be saved).

--follow keeps going until Ctrl-C (or SIGTERM), then exits with status 0: the server's event
socket wakes it as soon as something arrives, and it also asks every second while that socket
is down.
--save-files DIR downloads the files of received messages into DIR, verified before they
appear under their final name; a name already taken gets a suffix (" (1)"), and names are made
safe first (no directories, no "..", no control characters), whatever the sender wrote.

With --json every event is one JSON object on its own line of stdout ({"type":"message",...});
errors are JSON lines on stderr. File keys are never printed.`,
  },
  {
    name: 'history',
    synopsis: ['history USER', 'history --group ID'],
    summary: 'show the messages this device stored for a conversation',
    minArgs: 0,
    maxArgs: 1,
    options: ['group', 'limit', 'save-files'],
    details: `Shows the newest messages (20, or N with --limit, at most 10000) of your one-to-one
conversation with USER, or of the conversation ID with --group, oldest first, in the format of
coffer messages. They come from this device's encrypted local history (the server is only asked
who USER is): what coffer messages showed, and older messages another of your devices handed
this one when it joined.

--save-files DIR downloads the files of those messages (yours too) into DIR, as coffer
messages --save-files does: a file a message announced is kept on the server for its
retention period, so one missed when it arrived can be saved later.`,
  },
  {
    name: 'groups list',
    synopsis: ['groups [list]'],
    summary: 'list the conversations of this device',
    minArgs: 0,
    maxArgs: 0,
    options: [],
    details: `Lists the conversations this device is in or was in: id, kind (group or direct), name,
number of member accounts, and whether this device is still in it.`,
  },
  {
    name: 'groups create',
    synopsis: ['groups create NAME [USER...]'],
    summary: 'start a group conversation, with you as its admin',
    minArgs: 1,
    maxArgs: Number.POSITIVE_INFINITY,
    options: [],
    details: `Starts the group conversation NAME with you as its admin, and adds each USER. Prints
its id, which the other groups commands and send --group take.`,
  },
  {
    name: 'groups add',
    synopsis: ['groups add ID USER...'],
    summary: 'add users to a group (admins only)',
    minArgs: 2,
    maxArgs: Number.POSITIVE_INFINITY,
    options: [],
    details: `Adds each USER (with all of their devices) to the group ID. Only an admin of the group
may; the others' devices refuse the change otherwise.`,
  },
  {
    name: 'groups remove',
    synopsis: ['groups remove ID USER...'],
    summary: 'remove users from a group (admins only)',
    minArgs: 2,
    maxArgs: Number.POSITIVE_INFINITY,
    options: [],
    details: `Removes each USER (all of their devices) from the group ID: they cannot read what is
sent after. Only an admin of the group may. To leave a group yourself: coffer groups leave ID.`,
  },
  {
    name: 'groups leave',
    synopsis: ['groups leave ID'],
    summary: 'leave a group',
    minArgs: 1,
    maxArgs: 1,
    options: [],
    details: `Asks the other members to remove this account from the group ID. The removal takes
effect when another member's device next fetches messages.`,
  },
  {
    name: 'groups rename',
    synopsis: ['groups rename ID NAME'],
    summary: 'rename a group (admins only)',
    minArgs: 2,
    maxArgs: 2,
    options: [],
    details: 'Renames the group ID to NAME. Only an admin of the group may.',
  },
  {
    name: 'passwd',
    synopsis: ['passwd'],
    summary: 'change the password',
    minArgs: 0,
    maxArgs: 0,
    options: ['password-stdin'],
    details: `Changes the account's password: asks for the current one, then the new one twice (with
--password-stdin: two lines on stdin, the current password then the new one). The recovery code
stays valid.`,
  },
  {
    name: 'recover',
    synopsis: ['recover USER'],
    summary: 'forgot the password: set a new one with the recovery code',
    minArgs: 1,
    maxArgs: 1,
    options: ['password-stdin', 'device-name'],
    details: `Sets a new password for the account USER with its recovery code, on this device (which must
not be logged in), and logs it in. Asks for the recovery code, then the new password twice (with
--password-stdin: two lines on stdin, the recovery code then the new password). The recovery
code stays valid: keep it as safe as before.`,
  },
  {
    name: 'help',
    synopsis: ['help [COMMAND]'],
    summary: 'this text, or the help of one command',
    minArgs: 0,
    maxArgs: 2,
    options: [],
    details: 'Prints the usage text, or the help of COMMAND (e.g. coffer help devices link).',
  },
];

const DEVICE_SUBCOMMANDS = ['list', 'link', 'join', 'rename', 'revoke'];
const GROUP_SUBCOMMANDS = ['list', 'create', 'add', 'remove', 'leave', 'rename'];

function spec(name: string): CommandSpec {
  const found = COMMANDS.find((c) => c.name === name);
  if (!found) throw new Error(`no command ${name}`);
  return found;
}

/**
 * The command named by the first words of the command line, and its arguments; undefined when
 * there are no words at all.
 */
export function resolveCommand(
  words: readonly string[],
): { spec: CommandSpec; args: string[] } | undefined {
  const [first, ...rest] = words;
  if (first === undefined) return undefined;
  if (first === 'devices' || first === 'device') {
    const [sub, ...args] = rest;
    if (sub === undefined) return { spec: spec('devices list'), args: [] };
    if (!DEVICE_SUBCOMMANDS.includes(sub))
      throw usageError(
        `unknown command devices ${sub}`,
        `devices commands: ${DEVICE_SUBCOMMANDS.join(', ')}; see coffer help devices`,
      );
    return { spec: spec(`devices ${sub}`), args };
  }
  if (first === 'groups' || first === 'group') {
    const [sub, ...args] = rest;
    if (sub === undefined) return { spec: spec('groups list'), args: [] };
    if (!GROUP_SUBCOMMANDS.includes(sub))
      throw usageError(
        `unknown command groups ${sub}`,
        `groups commands: ${GROUP_SUBCOMMANDS.join(', ')}; see coffer help groups`,
      );
    return { spec: spec(`groups ${sub}`), args };
  }
  const found = COMMANDS.find((c) => c.name === first && !c.name.includes(' '));
  if (!found)
    throw usageError(
      `unknown command ${first}`,
      `commands: ${[...new Set(COMMANDS.map((c) => c.name.split(' ')[0]))].join(', ')}; see coffer help`,
    );
  return { spec: found, args: rest };
}

/** The help topics `coffer help WORDS` may name: a command, or a family ("devices", "groups"). */
export function helpTopic(words: readonly string[]): CommandSpec[] {
  if ((words[0] === 'devices' || words[0] === 'device') && words.length === 1)
    return COMMANDS.filter((c) => c.name.startsWith('devices '));
  if ((words[0] === 'groups' || words[0] === 'group') && words.length === 1)
    return COMMANDS.filter((c) => c.name.startsWith('groups '));
  const resolved = resolveCommand(words);
  if (!resolved) return [];
  if (resolved.args.length > 0)
    throw usageError(`no help topic ${words.join(' ')}`, 'see coffer help');
  return [resolved.spec];
}
