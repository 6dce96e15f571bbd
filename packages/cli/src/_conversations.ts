// coffer send, coffer messages, coffer groups …: end-to-end encrypted conversations through
// client.conversations, and files through the SDK's attachments.
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import {
  type AccountInfo,
  type AttachmentDescriptor,
  type CofferClient,
  type ConversationEvent,
  type ConversationInfo,
  type ConversationMessage,
  decodeAttachmentDescriptor,
  normalizeUsername,
  SdkError,
} from '@coffer/sdk';
import { saveAttachment } from '@coffer/sdk/node';
import { requireLogin } from './_account.js';
import { type Context, note, outputFailure, result, withClient, written } from './_context.js';
import { CliError, interrupted, usageError } from './_errors.js';
import { columns, formatSize, formatTime, printable, quoted } from './_format.js';
import { pathInside, safeFileName } from './_safe-file-name.js';
import { EXIT } from './exit-status.js';

/** How often messages --follow asks the server for more when no push wakes it. */
const FOLLOW_INTERVAL_MS = 1000;
/** The longest wait messages --follow takes from a server's retry-after (a hostile one could say days). */
const MAX_RETRY_WAIT_MS = 10 * 60 * 1000;
/** A message read from stdin longer than this is a file piped by mistake (the SDK caps text at 64 KiB). */
const MAX_STDIN_BYTES = 1024 * 1024;
/** Uploads from this size on get a progress bar (on a terminal). */
const PROGRESS_FROM_BYTES = 1024 * 1024;
/** Redraws of the progress bar are at least this far apart. */
const PROGRESS_EVERY_MS = 100;
const BAR_WIDTH = 30;
/** Messages coffer history shows without --limit. */
const DEFAULT_HISTORY_LIMIT = 20;

/**
 * `work` (a call that looks `users` up on the server), with the server's NOT_FOUND for a name it
 * does not know (the SDK's message names no one) reported as UNKNOWN_USER, naming them. In these
 * calls the server answers NOT_FOUND only for a user or account it does not have; the SDK's own
 * NOT_FOUNDs (no such conversation or member here) carry no HTTP status and pass unchanged.
 */
async function lookingUp<T>(users: readonly string[], work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (!SdkError.is(err, 'NOT_FOUND') || err.status !== 404 || users.length === 0) throw err;
    throw new CliError(
      'UNKNOWN_USER',
      users.length === 1
        ? `no account ${printable(users[0]!)} on this server`
        : // The SDK looks them up one by one and does not say which one failed.
          `no account on this server for one of: ${users.map(printable).join(', ')}`,
    );
  }
}

/** Whether `user` (a username or an account id, as USER arguments are) is this account. */
function isMe(user: string, me: AccountInfo): boolean {
  if (user === me.accountId) return true;
  try {
    return normalizeUsername(user) === me.username;
  } catch {
    return false;
  }
}

/** "1 member", "3 members": member accounts, as conversations are counted everywhere here. */
function memberCount(info: ConversationInfo): string {
  const n = membersOf(info);
  return `${n} ${n === 1 ? 'member' : 'members'}`;
}

/** Runs `fn` with the logged-in client; NOT_LOGGED_IN before anything else. */
function withChat<T>(
  ctx: Context,
  fn: (client: CofferClient, me: AccountInfo) => Promise<T>,
): Promise<T> {
  return withClient(ctx, async (client) => fn(client, await requireLogin(ctx, client)));
}

// ---- send ------------------------------------------------------------------------------------

/** All of stdin as text, one trailing newline removed. */
async function readMessage(ctx: Context): Promise<string> {
  const { stdin } = ctx.io;
  if (ctx.io.stdinIsTTY ?? stdin.isTTY === true)
    note(ctx, 'type the message, then Ctrl-D on a line of its own');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
    size += bytes.length;
    if (size > MAX_STDIN_BYTES)
      throw usageError(
        `the message on stdin is over ${formatSize(MAX_STDIN_BYTES)}`,
        'send a file with --file PATH',
      );
    chunks.push(bytes);
  }
  let text: string;
  try {
    // Not Buffer#toString, which would send U+FFFD in place of every byte it cannot read.
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw usageError(
      'the message on stdin is not UTF-8 text',
      'convert it first (iconv -t UTF-8), or send it as a file with --file PATH',
    );
  }
  return text.replace(/\r?\n$/, '');
}

/** A progress bar on a terminal; nothing otherwise (the caller prints a final line). */
function progressBar(ctx: Context, total: number): ((done: number) => void) & { end(): void } {
  const live = ctx.io.stderr.isTTY === true && !ctx.json && total >= PROGRESS_FROM_BYTES;
  let last = 0;
  let drawn = false;
  const draw = (done: number) => {
    const ratio = total === 0 ? 1 : Math.min(1, done / total);
    const filled = Math.round(ratio * BAR_WIDTH);
    ctx.io.stderr.write(
      `\r[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${String(Math.floor(ratio * 100)).padStart(3)}% ${formatSize(done)} of ${formatSize(total)}`,
    );
    drawn = true;
  };
  const update = (done: number) => {
    if (!live) return;
    const now = Date.now();
    if (now - last < PROGRESS_EVERY_MS && done < total) return;
    last = now;
    draw(done);
  };
  return Object.assign(update, {
    end() {
      if (drawn) ctx.io.stderr.write('\n');
    },
  });
}

/** The size of the regular file at `path`; a usage error when there is none to read. */
async function fileSize(path: string): Promise<number> {
  try {
    const info = await stat(path);
    if (!info.isFile()) throw usageError(`${printable(path)} is not a file`);
    return info.size;
  } catch (err) {
    if (CliError.is(err)) throw err;
    const code = (err as { code?: unknown }).code;
    throw usageError(
      `cannot read ${printable(path)} (${typeof code === 'string' ? code : 'i/o error'})`,
    );
  }
}

/**
 * Encrypts the file at `path` (read from disk as it goes), uploads it, and sends its reference
 * with the optional caption to the conversation.
 */
async function sendFile(
  ctx: Context,
  client: CofferClient,
  conversationId: string,
  path: string,
  size: number,
  text: string | undefined,
): Promise<{ message: ConversationMessage; descriptor: AttachmentDescriptor }> {
  const name = safeFileName(basename(path), 'file');
  const progress = progressBar(ctx, size);
  let message: ConversationMessage;
  try {
    message = await client.conversations.sendFile(conversationId, createReadStream(path), {
      name,
      onProgress: (done) => progress(done),
      ...(text === undefined ? {} : { text }),
    });
  } finally {
    progress.end();
  }
  const descriptor = decodeAttachmentDescriptor(message.attachment ?? {});
  note(ctx, `encrypted and uploaded ${quoted(name)} (${formatSize(descriptor.size)})`);
  return { message, descriptor };
}

/**
 * How a conversation is named in output: a group's name, the other account of a direct one
 * (its id once the other has left it).
 */
function labelOf(info: ConversationInfo | undefined, id: string, me: AccountInfo): string {
  if (!info) return id;
  if (info.kind === 'direct') {
    const other = otherOf(info, me);
    return other ? printable(other.username ?? other.accountId) : id;
  }
  return info.name === '' ? id : printable(info.name);
}

/** The other account of a direct conversation; undefined once it has left. */
function otherOf(info: ConversationInfo, me: AccountInfo) {
  return info.members.find((m) => m.accountId !== me.accountId);
}

/** A conversation in a sentence: the group "team" (ID), the conversation with bob (ID). */
function describe(info: ConversationInfo, me: AccountInfo): string {
  if (info.kind !== 'direct') return `the group ${quoted(info.name)} (${info.id})`;
  // Left by the other account: "with <its own id>" would read as if that were someone.
  return otherOf(info, me)
    ? `the conversation with ${labelOf(info, info.id, me)} (${info.id})`
    : `the conversation ${info.id}`;
}

export function send(ctx: Context): Promise<number> {
  const byGroup = ctx.group !== undefined;
  const [first, second] = ctx.args;
  if (!byGroup && first === undefined)
    throw usageError('missing USER (or --group ID)', 'usage: coffer send USER [TEXT]');
  if (byGroup && second !== undefined)
    // Not echoed: the words are most likely the message itself, typed without quotes.
    throw usageError(
      'unexpected argument (not shown): with --group the group is the recipient, and TEXT is one argument',
      'usage: coffer send --group ID [TEXT] (quote a text with spaces)',
    );
  const user = byGroup ? undefined : first;
  const text = byGroup ? first : second;
  return withChat(ctx, async (client, me) => {
    // What this machine can check comes first: a file that is not there, or an empty message,
    // must not start a conversation (the other side would see it appear) before it fails.
    let size: number | undefined;
    let body: string | undefined;
    if (ctx.file !== undefined) {
      if (text === '') throw usageError('the caption is empty', 'leave TEXT out, or write some');
      size = await fileSize(ctx.file);
    } else {
      body = text ?? (await readMessage(ctx));
      if (body === '') throw usageError('the message is empty', 'write TEXT, or pipe it on stdin');
    }
    // Then the conversation: an unknown user fails before a large upload.
    const conversation =
      user === undefined
        ? await client.conversations.get(ctx.group!)
        : await lookingUp([user], client.conversations.direct(user));
    let message: ConversationMessage;
    let descriptor: AttachmentDescriptor | undefined;
    if (ctx.file !== undefined) {
      // The descriptor (it holds the file's key) travels inside the end-to-end encrypted message.
      ({ message, descriptor } = await sendFile(
        ctx,
        client,
        conversation.id,
        ctx.file,
        size!,
        text,
      ));
    } else {
      message = await client.conversations.send(conversation.id, body!);
    }
    const to =
      conversation.kind === 'direct'
        ? printable(user ?? labelOf(conversation, conversation.id, me))
        : `the group ${quoted(conversation.name)} (${conversation.id})`;
    result(
      ctx,
      {
        sent: {
          conversationId: conversation.id,
          id: message.id,
          sentAt: message.sentAt,
          type: message.type,
          ...(descriptor ? { attachment: fileSummary(descriptor) } : {}),
        },
      },
      descriptor
        ? `sent ${quoted(descriptor.name ?? 'file')} (${formatSize(descriptor.size)}) to ${to}`
        : `sent to ${to}`,
    );
    return EXIT.ok;
  });
}

/** What may be shown of a descriptor: never its key, blob id or hash. */
function fileSummary(d: AttachmentDescriptor): { name?: string; size: number; mediaType?: string } {
  return {
    ...(d.name === undefined ? {} : { name: d.name }),
    size: d.size,
    ...(d.mediaType === undefined ? {} : { mediaType: d.mediaType }),
  };
}

// ---- messages --------------------------------------------------------------------------------

function errorLine(ctx: Context, conversationId: string, err: SdkError | CliError): void {
  const detail = SdkError.is(err) ? err.detail : undefined;
  const message =
    SdkError.is(err) && err.message.startsWith(`${err.operation}: `)
      ? err.message.slice(err.operation.length + 2)
      : err.message;
  if (ctx.json) {
    ctx.io.stderr.write(
      `${JSON.stringify({
        type: 'error',
        conversationId,
        error: { code: err.code, ...(detail === undefined ? {} : { detail }), message },
      })}\n`,
    );
  } else {
    ctx.io.stderr.write(
      // The id may be the server's word (a malformed one is reported as it came): printable.
      `coffer: error: in conversation ${printable(conversationId)}: ${printable(message)} (${printable(err.code)}${detail === undefined ? '' : `, ${printable(detail)}`})\n`,
    );
  }
}

function membersOf(info: ConversationInfo): number {
  return new Set(info.members.map((m) => m.accountId)).size;
}

function infoJson(info: ConversationInfo) {
  return { ...info, memberCount: membersOf(info) };
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Writes messages out as coffer messages shows them (a line each, or JSON lines), saving their
 * files into --save-files when given (`saveOwn`: this account's own files too). `failures()`
 * counts the messages whose file could not be read or saved.
 */
function messagePrinter(
  ctx: Context,
  client: CofferClient,
  me: AccountInfo,
  infos: Map<string, ConversationInfo>,
  saveOwn: boolean,
) {
  let failures = 0;
  const infoOf = async (id: string) => {
    let info = infos.get(id);
    if (!info) {
      info = await client.conversations.get(id).catch(() => undefined);
      if (info) infos.set(id, info);
    }
    return info;
  };
  const senderOf = (m: ConversationMessage) =>
    m.own ? printable(me.username) : printable(m.sender.username ?? m.sender.accountId);

  /** Downloads a message's file into --save-files; the path, or undefined when it failed. */
  const save = async (m: ConversationMessage, d: AttachmentDescriptor) => {
    let path: string;
    try {
      // Written under a hidden name until verified, then given the first free name of
      // "name", "name (1)", …: nothing existing is replaced, and an interrupted save leaves
      // no file that looks complete.
      path = await saveAttachment(
        await client.conversations.download(m),
        pathInside(ctx.saveFiles!, safeFileName(d.name)),
        { ifExists: 'keep-both' },
      );
    } catch (err) {
      failures += 1;
      errorLine(
        ctx,
        m.conversationId,
        SdkError.is(err)
          ? err
          : new CliError('ERROR', err instanceof Error ? err.message : String(err)),
      );
      return undefined;
    }
    note(ctx, `saved ${printable(path)}`);
    return path;
  };

  const onMessage = async (m: ConversationMessage) => {
    let info = await infoOf(m.conversationId);
    if (
      info?.kind === 'direct' &&
      m.sender.username !== undefined &&
      info.members.some((x) => x.accountId === m.sender.accountId && x.username === undefined)
    ) {
      // The message made the sender's name known (confirmed by the directory): name it.
      infos.delete(m.conversationId);
      info = (await infoOf(m.conversationId)) ?? info;
    }
    const label = labelOf(info, m.conversationId, me);
    let file: { name?: string; size: number; mediaType?: string; savedTo?: string } | undefined;
    let fileText = '';
    if (m.type === 'attachment') {
      let d: AttachmentDescriptor | undefined;
      try {
        d = decodeAttachmentDescriptor(m.attachment ?? {});
      } catch (err) {
        failures += 1;
        if (SdkError.is(err)) errorLine(ctx, m.conversationId, err);
        else throw err;
      }
      if (d) {
        file = fileSummary(d);
        const savedTo =
          ctx.saveFiles !== undefined && (saveOwn || !m.own) ? await save(m, d) : undefined;
        if (savedTo !== undefined) file = { ...file, savedTo };
        fileText = `[file ${printable(d.name ?? '(no name)')} ${formatSize(d.size)}]`;
      } else fileText = '[file that cannot be read]';
    }
    const body = [fileText, m.text === undefined ? '' : printable(m.text)]
      .filter((part) => part !== '')
      .join(' ');
    await written(
      ctx,
      {
        type: 'message',
        conversation: label,
        message: {
          conversationId: m.conversationId,
          id: m.id,
          sender: m.sender,
          own: m.own,
          sentAt: m.sentAt,
          receivedAt: m.receivedAt,
          type: m.type,
          ...(m.text === undefined ? {} : { text: m.text }),
          ...(file === undefined ? {} : { attachment: file }),
        },
      },
      `${formatTime(m.sentAt)} ${label} ${senderOf(m)}: ${body}`,
    );
  };
  return { onMessage, failures: () => failures };
}

/** Makes the --save-files directory (mode 0700) when given. */
async function saveFilesDir(ctx: Context): Promise<void> {
  if (ctx.saveFiles === undefined) return;
  try {
    await mkdir(ctx.saveFiles, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw usageError(
      `cannot make the directory ${printable(ctx.saveFiles)} (${typeof code === 'string' ? code : 'i/o error'})`,
    );
  }
}

export function messages(ctx: Context): Promise<number> {
  const signal = ctx.io.signal;
  return withChat(ctx, async (client, me) => {
    const infos = new Map<string, ConversationInfo>();
    await saveFilesDir(ctx);
    const printer = messagePrinter(ctx, client, me, infos, false);
    const onMessage = printer.onMessage;
    /** Events that reported a message or change that could not be used. */
    let unusable = 0;

    const onEvent = async (event: ConversationEvent) => {
      switch (event.type) {
        case 'message':
          return onMessage(event.message);
        case 'joined':
        case 'changed': {
          const info = event.conversation;
          // The account's own conversation, which carries history to its new devices, is the
          // SDK's business: never listed (groups), so never reported either.
          if (info.kind === 'self') return;
          infos.set(info.id, info);
          const what = describe(info, me);
          await written(
            ctx,
            { type: event.type, conversation: infoJson(info) },
            event.type === 'joined'
              ? `joined ${what}, ${memberCount(info)}`
              : `${what} changed: ${memberCount(info)}${info.active ? '' : ', this device is no longer in it'}`,
          );
          return;
        }
        case 'removed': {
          const label = labelOf(infos.get(event.conversationId), event.conversationId, me);
          await written(
            ctx,
            { type: 'removed', conversationId: event.conversationId },
            label === event.conversationId
              ? `removed from the conversation ${label}`
              : `removed from ${label} (${event.conversationId})`,
          );
          return;
        }
        case 'error':
          unusable += 1;
          errorLine(ctx, event.conversationId, event.error);
          return;
      }
    };

    /** Writes out the events a failed sync kept (acknowledged, so never fetched again). */
    const writeKept = async () => {
      const kept = await client.conversations.unreported().catch(() => []);
      for (const event of kept) await onEvent(event);
    };

    if (!ctx.follow) {
      // Ctrl-C neither cuts the fetch short nor the writing of what it brought: once the
      // server has taken the acknowledgement (possibly before the last request of the sync),
      // those entries do not come again and their events exist only in this sync's result.
      // A second Ctrl-C quits at once (_run.ts).
      const onAbort = () => note(ctx, 'interrupted: finishing the fetch in progress');
      signal?.addEventListener('abort', onAbort, { once: true });
      let events: ConversationEvent[];
      try {
        events = await client.conversations.sync();
      } catch (err) {
        // What the sync handled before it failed was acknowledged: written out before the error.
        await writeKept();
        if (signal?.aborted) throw interrupted();
        throw err;
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
      for (const event of events) await onEvent(event);
      if (signal?.aborted) throw interrupted();
      // Status 1 when something arrived that could not be used, or a file was not saved: a
      // script notices without reading stderr.
      return printer.failures() + unusable > 0 ? EXIT.error : EXIT.ok;
    }
    // Each event is written out (await) before the next is asked for, and the SDK's follow
    // fetches (and acknowledges) more only when this batch is through: a stdout that fails
    // (| head -1 done reading) stops it with OUTPUT_FAILED before anything more is taken.
    // Following: woken by the server's push over its event socket, with the interval as the
    // fallback; a server that went away for a moment is waited for, not fatal.
    // A server that cannot be reached (or says to slow down) is said once, not at every retry:
    // `failing` holds that error's code until a fetch works again.
    let failing: string | undefined;
    while (!signal?.aborted) {
      try {
        if (failing !== undefined) {
          // Still failing? One plain fetch tells, quietly; following resumes once it works.
          for (const event of await client.conversations.sync()) await onEvent(event);
          failing = undefined;
          note(ctx, 'fetching messages again');
        }
        const events = client.conversations.follow({
          intervalMs: FOLLOW_INTERVAL_MS,
          ...(signal ? { signal } : {}),
        });
        for await (const event of events) await onEvent(event);
      } catch (err) {
        if (!SdkError.is(err) || !err.retryable || signal?.aborted) {
          if (!CliError.is(err, 'OUTPUT_FAILED')) await writeKept();
          throw err;
        }
        // A server that says when to come back (RATE_LIMITED) is not asked again before then.
        const wait = Math.min(
          MAX_RETRY_WAIT_MS,
          Math.max(FOLLOW_INTERVAL_MS, (err.retryAfter ?? 0) * 1000),
        );
        if (err.code !== failing)
          note(
            ctx,
            `warning: could not fetch messages (${err.code}); trying again${wait > FOLLOW_INTERVAL_MS ? ` in ${Math.ceil(wait / 1000)} s` : ' every second'}`,
          );
        failing = err.code;
        await sleep(wait, signal);
      }
    }
    return EXIT.ok;
  });
}

// ---- history ---------------------------------------------------------------------------------

/**
 * Shows the stored messages of one conversation, oldest first, from this device's encrypted
 * local history (the server is asked only to look USER up, and for the files of --save-files).
 */
export function history(ctx: Context): Promise<number> {
  const byGroup = ctx.group !== undefined;
  const [user] = ctx.args;
  if (byGroup && user !== undefined)
    throw usageError(
      `unexpected argument ${printable(user)}`,
      'usage: coffer history USER | coffer history --group ID',
    );
  if (!byGroup && user === undefined)
    throw usageError('missing USER (or --group ID)', 'usage: coffer history USER');
  return withChat(ctx, async (client, me) => {
    const conversation = byGroup
      ? await client.conversations.get(ctx.group!)
      : await lookingUp([user!], client.conversations.find(user!));
    if (!conversation)
      throw new SdkError(
        'NOT_FOUND',
        'history',
        `this device has no conversation with ${printable(user!)}`,
        {},
      );
    await saveFilesDir(ctx);
    const infos = new Map([[conversation.id, conversation]]);
    const printer = messagePrinter(ctx, client, me, infos, true);
    const stored = await client.conversations.history(conversation.id, {
      limit: ctx.limit ?? DEFAULT_HISTORY_LIMIT,
    });
    for (const m of stored) {
      if (ctx.io.signal?.aborted) throw interrupted();
      try {
        await printer.onMessage(m);
      } catch (err) {
        const reason = outputFailure(err);
        // The reader has gone (| head -1): it has what it wanted, and nothing is lost (the
        // history stays stored, and nothing was fetched), so not an error.
        if (reason === 'EPIPE') break;
        if (reason !== undefined)
          throw new CliError('OUTPUT_FAILED', `cannot write to stdout (${reason})`);
        throw err;
      }
    }
    return printer.failures() > 0 ? EXIT.error : EXIT.ok;
  });
}

// ---- groups ----------------------------------------------------------------------------------

function groupLine(info: ConversationInfo): string {
  return `${quoted(info.name)} (${info.id}), ${memberCount(info)}`;
}

export function groupsList(ctx: Context): Promise<number> {
  return withChat(ctx, async (client, me) => {
    const list = await client.conversations.list();
    const rows = list.map((c) => [
      c.id,
      c.kind,
      c.kind !== 'direct'
        ? printable(c.name)
        : otherOf(c, me)
          ? `(with ${labelOf(c, c.id, me)})`
          : '(with no one now)',
      String(membersOf(c)),
      c.active ? 'yes' : 'no',
    ]);
    result(
      ctx,
      { conversations: list.map(infoJson) },
      list.length === 0
        ? 'no conversations yet (coffer groups create NAME, or coffer send USER)'
        : columns([['ID', 'KIND', 'NAME', 'MEMBERS', 'ACTIVE'], ...rows]),
    );
    return EXIT.ok;
  });
}

export function groupsCreate(ctx: Context): Promise<number> {
  const [name, ...users] = ctx.args;
  return withChat(ctx, async (client) => {
    const info = await lookingUp(
      users,
      client.conversations.create({ name: name!, members: users }),
    );
    result(ctx, { conversation: infoJson(info) }, `created the group ${groupLine(info)}`);
    return EXIT.ok;
  });
}

export function groupsAdd(ctx: Context): Promise<number> {
  const [id, ...users] = ctx.args;
  return withChat(ctx, async (client) => {
    const info = await lookingUp(users, client.conversations.add(id!, users));
    result(ctx, { conversation: infoJson(info) }, `added to the group ${groupLine(info)}`);
    return EXIT.ok;
  });
}

export function groupsRemove(ctx: Context): Promise<number> {
  const [id, ...users] = ctx.args;
  return withChat(ctx, async (client, me) => {
    // The SDK's refusal names its own API ("use leave()"): say it in commands.
    if (users.some((u) => isMe(u, me)))
      throw usageError(
        'groups remove takes other members: you leave a group yourself',
        `coffer groups leave ${printable(id!)}`,
      );
    const info = await lookingUp(users, client.conversations.remove(id!, users));
    result(ctx, { conversation: infoJson(info) }, `removed from the group ${groupLine(info)}`);
    return EXIT.ok;
  });
}

export function groupsRename(ctx: Context): Promise<number> {
  const [id, name] = ctx.args;
  return withChat(ctx, async (client) => {
    const before = await client.conversations.get(id!);
    const info = await client.conversations.rename(id!, name!);
    result(
      ctx,
      { conversation: infoJson(info) },
      `renamed the group ${info.id}: ${quoted(before.name)} -> ${quoted(info.name)}`,
    );
    return EXIT.ok;
  });
}

export function groupsLeave(ctx: Context): Promise<number> {
  const [id] = ctx.args;
  return withChat(ctx, async (client, me) => {
    const info = await client.conversations.get(id!);
    await client.conversations.leave(id!);
    // A conversation nobody else was in is dropped at once; otherwise another member commits.
    const gone = (await client.conversations.list()).every((c) => c.id !== info.id);
    result(
      ctx,
      { left: { conversationId: info.id } },
      gone
        ? `left ${describe(info, me)}`
        : `asked to leave ${describe(info, me)}; the others' devices carry it out`,
    );
    return EXIT.ok;
  });
}
