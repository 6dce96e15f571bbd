// Coffer conversations over MLS (spec/conversation-v1.md): who a member is (the credential
// identity), what a conversation is (the group data every member agrees on), who may change it
// (the commit policy every client enforces, since the server is not trusted to), and what an
// application message holds (padded, versioned content). Sans-I/O: the SDK supplies what it has
// verified (device manifests) through callbacks.
import { fromBase64url, toBase64url, utf8Decode, utf8Encode } from '@coffer/crypto';
import { assertBytes, invalidArgument, ProtocolError } from './errors.js';
import { ID_LENGTH, isId } from './ids.js';
import type { MlsCommitChange, MlsMember } from './mls/group-engine.js';
import { normalizeUsername } from './username.js';

/** A member's MLS credential identity: account id bytes then device id bytes (spec §2). */
export const MEMBER_IDENTITY_LENGTH = 2 * ID_LENGTH;
/** Version byte of the group data and of message content. */
export const CONVERSATION_FORMAT = 0x01;
/** Longest conversation name, in UTF-8 bytes. */
export const MAX_CONVERSATION_NAME_LENGTH = 128;
/** Most admins a conversation lists. */
export const MAX_ADMINS = 64;
/** Largest encoded message content (before MLS): text and attachment references, not files. */
export const MAX_CONTENT_LENGTH = 256 * 1024;
/** Longest text of one message, in UTF-8 bytes. */
export const MAX_TEXT_LENGTH = 64 * 1024;

/** Who a leaf of a Coffer group is: one device of one account. */
export interface MemberId {
  readonly accountId: string;
  readonly deviceId: string;
}

/** `direct`: two accounts (1:1); `group`: named, with admins; `self`: one account's own devices. */
export type ConversationKind = 'direct' | 'group' | 'self';

/** What every member of a conversation agrees on (the MLS group data, spec §3). */
export interface ConversationData {
  readonly kind: ConversationKind;
  /** Empty for `direct` and `self`. */
  readonly name: string;
  /** Accounts that may add and remove others and rename; sorted, distinct, at least one. */
  readonly admins: readonly string[];
}

const KIND_CODES: Record<ConversationKind, number> = { direct: 1, group: 2, self: 3 };
const KINDS: Record<number, ConversationKind> = { 1: 'direct', 2: 'group', 3: 'self' };

/**
 * The credential identity of a device of an account.
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` for an id that is not b64url of 16 bytes.
 * @example const identity = memberIdentity(accountId, deviceId);
 */
export function memberIdentity(accountId: string, deviceId: string): Uint8Array {
  const op = 'conversation.memberIdentity';
  if (!isId(accountId)) throw invalidArgument(op, '"accountId" expected an id');
  if (!isId(deviceId)) throw invalidArgument(op, '"deviceId" expected an id');
  const out = new Uint8Array(MEMBER_IDENTITY_LENGTH);
  out.set(fromBase64url(accountId), 0);
  out.set(fromBase64url(deviceId), ID_LENGTH);
  return out;
}

/**
 * The account and device a credential identity names, or undefined when it is not one.
 *
 * @example const who = parseMemberIdentity(member.identity); // { accountId, deviceId }
 */
export function parseMemberIdentity(identity: Uint8Array): MemberId | undefined {
  if (!(identity instanceof Uint8Array) || identity.length !== MEMBER_IDENTITY_LENGTH) {
    return undefined;
  }
  return {
    accountId: toBase64url(identity.subarray(0, ID_LENGTH)),
    deviceId: toBase64url(identity.subarray(ID_LENGTH)),
  };
}

// Control characters (Cc) and, in a /u regex, lone surrogates (Cs): UTF-8 cannot hold those,
// and utf8Encode would silently write U+FFFD instead of the name it was given.
const NAME_FORBIDDEN = /[\p{Cc}\p{Cs}]/u;

function checkName(op: string, name: string): void {
  if (typeof name !== 'string' || NAME_FORBIDDEN.test(name) || name !== name.normalize('NFC')) {
    throw new ProtocolError(
      'INVALID_CONVERSATION',
      op,
      'name must be NFC text without control characters',
    );
  }
  if (utf8Encode(name).length > MAX_CONVERSATION_NAME_LENGTH) {
    throw new ProtocolError(
      'INVALID_CONVERSATION',
      op,
      `name longer than ${MAX_CONVERSATION_NAME_LENGTH} bytes`,
    );
  }
}

function checkData(op: string, data: ConversationData): void {
  // Own keys only: `in` also finds "toString", "constructor"… on Object.prototype.
  if (
    typeof data !== 'object' ||
    data === null ||
    typeof data.kind !== 'string' ||
    !Object.hasOwn(KIND_CODES, data.kind)
  ) {
    throw new ProtocolError('INVALID_CONVERSATION', op, 'unknown conversation kind');
  }
  checkName(op, data.name);
  if (data.kind !== 'group' && data.name !== '') {
    throw new ProtocolError('INVALID_CONVERSATION', op, `a ${data.kind} conversation has no name`);
  }
  const { admins } = data;
  if (!Array.isArray(admins) || admins.length === 0 || admins.length > MAX_ADMINS) {
    throw new ProtocolError('INVALID_CONVERSATION', op, `1 to ${MAX_ADMINS} admins expected`);
  }
  for (let i = 0; i < admins.length; i++) {
    if (!isId(admins[i])) throw new ProtocolError('INVALID_CONVERSATION', op, 'admin is not an id');
    if (i > 0 && !((admins[i - 1] as string) < (admins[i] as string))) {
      throw new ProtocolError('INVALID_CONVERSATION', op, 'admins must be sorted and distinct');
    }
  }
  const expected = data.kind === 'direct' ? 2 : data.kind === 'self' ? 1 : undefined;
  if (expected !== undefined && admins.length !== expected) {
    throw new ProtocolError(
      'INVALID_CONVERSATION',
      op,
      `a ${data.kind} conversation lists exactly ${expected} account(s)`,
    );
  }
}

/**
 * Encodes conversation data for the MLS group data (spec §3): format, kind, name, admins.
 *
 * @throws {ProtocolError} `INVALID_CONVERSATION` when a rule of spec §3 is broken.
 * @example const bytes = encodeConversationData({ kind: 'group', name: 'Team', admins: [me] });
 */
export function encodeConversationData(data: ConversationData): Uint8Array {
  const op = 'conversation.encodeData';
  const sorted = { ...data, admins: [...(data?.admins ?? [])].sort() };
  checkData(op, sorted);
  const name = utf8Encode(sorted.name);
  const out = new Uint8Array(3 + name.length + 1 + sorted.admins.length * ID_LENGTH);
  out[0] = CONVERSATION_FORMAT;
  out[1] = KIND_CODES[sorted.kind];
  out[2] = name.length;
  out.set(name, 3);
  let at = 3 + name.length;
  out[at++] = sorted.admins.length;
  for (const admin of sorted.admins) {
    out.set(fromBase64url(admin), at);
    at += ID_LENGTH;
  }
  return out;
}

/**
 * Decodes and checks conversation data.
 *
 * @throws {ProtocolError} `UNSUPPORTED_VERSION`, `INVALID_CONVERSATION`.
 * @example const { kind, name, admins } = decodeConversationData(engine.groupData(group)!);
 */
export function decodeConversationData(bytes: Uint8Array): ConversationData {
  const op = 'conversation.decodeData';
  assertBytes(op, 'bytes', bytes, 1, 4 + MAX_CONVERSATION_NAME_LENGTH + MAX_ADMINS * ID_LENGTH);
  if (bytes[0] !== CONVERSATION_FORMAT) {
    throw new ProtocolError('UNSUPPORTED_VERSION', op, `conversation data format ${bytes[0]}`);
  }
  const bad = () => new ProtocolError('INVALID_CONVERSATION', op, 'malformed conversation data');
  if (bytes.length < 4) throw bad();
  const kind = KINDS[bytes[1] as number];
  const nameLength = bytes[2] as number;
  if (!kind || bytes.length < 4 + nameLength) throw bad();
  let name: string;
  try {
    name = utf8Decode(bytes.subarray(3, 3 + nameLength));
  } catch {
    throw bad();
  }
  const count = bytes[3 + nameLength] as number;
  const start = 4 + nameLength;
  if (bytes.length !== start + count * ID_LENGTH) throw bad();
  const admins: string[] = [];
  for (let i = 0; i < count; i++) {
    admins.push(toBase64url(bytes.subarray(start + i * ID_LENGTH, start + (i + 1) * ID_LENGTH)));
  }
  const data: ConversationData = { kind, name, admins };
  checkData(op, data);
  return data;
}

/** What the policy may ask the caller about accounts (answered from verified manifests). */
export interface PolicyContext {
  /**
   * Whether the newest verified manifest of `accountId` still lists `deviceId`. A device that is
   * no longer listed (revoked) may be removed by any member.
   */
  deviceListed(accountId: string, deviceId: string): Promise<boolean>;
}

/**
 * Coffer's commit policy (spec §4), for `authorizeCommit`: `true`, or why the commit is refused.
 * Admins add and remove anyone and change the conversation data; any member adds or removes its
 * own account's devices, adds a new device of an account already in the conversation, removes a
 * device its account no longer lists, and commits another member's request to leave. An
 * external commit only brings back a device of an account already in the conversation. A
 * `direct` conversation never holds a third account; a `self` one only its owner's devices.
 *
 * @example
 * const engine = await createTsMlsEngine({
 *   validateCredential,
 *   authorizeCommit: (change) => conversationPolicy(change, { deviceListed }),
 * });
 */
export async function conversationPolicy(
  change: MlsCommitChange,
  context: PolicyContext,
): Promise<true | string> {
  const who = (m: MlsMember) => parseMemberIdentity(m.identity);
  let before: ConversationData;
  let after: ConversationData;
  try {
    if (!change.groupDataBefore || !change.groupDataAfter) return 'the group is not a conversation';
    before = decodeConversationData(change.groupDataBefore);
    after = decodeConversationData(change.groupDataAfter);
  } catch {
    return 'the conversation data does not decode';
  }
  const beforeAccounts = new Set<string>();
  for (const m of change.before) {
    const id = who(m);
    if (!id) return 'a member has no coffer identity';
    beforeAccounts.add(id.accountId);
  }
  const added: MemberId[] = [];
  for (const m of change.added) {
    const id = who(m);
    if (!id) return 'an added member has no coffer identity';
    added.push(id);
  }
  const committer = change.committer ? who(change.committer) : undefined;
  if (change.committer && !committer) return 'the committer has no coffer identity';
  const isAdmin = committer !== undefined && before.admins.includes(committer.accountId);

  // Only what Coffer clients make: adds, updates, removes, the group data, and the
  // ExternalInit of a rejoin. A PSK or ReInit (which would end the group for everyone) or a
  // change to another GroupContext extension is refused, whoever commits it.
  for (const type of change.proposalTypes) {
    if (!ALLOWED_PROPOSALS.has(type) || (type === EXTERNAL_INIT && !change.external)) {
      return `proposal type ${type} is not allowed in a conversation`;
    }
  }
  if (change.otherExtensionsChanged) return 'only the conversation data may change';
  const dataChanged = !sameData(before, after);
  if (dataChanged) {
    if (after.kind !== before.kind) return 'the conversation kind cannot change';
    if (before.kind !== 'group') return `a ${before.kind} conversation cannot be changed`;
    if (!isAdmin) return 'only an admin may change the conversation';
  }
  // Who may be in it at all.
  for (const id of added) {
    if (after.kind !== 'group' && !after.admins.includes(id.accountId)) {
      return `a ${after.kind} conversation cannot hold another account`;
    }
  }
  if (change.external) {
    // Only a rejoin: a device still in the conversation replaces its own old leaf (a resync
    // may put it back at the same leaf: then it shows as renewed, not added). A device that
    // was removed has no leaf to replace and cannot come back by itself.
    const joined = [...added, ...change.renewed.map(who)];
    if (joined.length !== 1 || !joined[0]) return 'an external commit adds exactly one member';
    const joiner = joined[0];
    const replaced = change.removed.map(({ member }) => who(member));
    const rejoin =
      replaced.length === 1 &&
      replaced[0]?.accountId === joiner.accountId &&
      replaced[0].deviceId === joiner.deviceId;
    const inPlace =
      added.length === 0 &&
      replaced.length === 0 &&
      change.before.some((m) => {
        const id = who(m);
        return id?.accountId === joiner.accountId && id.deviceId === joiner.deviceId;
      });
    if (!rejoin && !inPlace) return "an external commit may only replace the joiner's own leaf";
    return true;
  }
  if (!committer) return 'the commit has no committer';
  // The conversation key changes with every removal (spec §4.6), and joiners get it from their
  // adder: a commit that removed and added at once would hand them the key it retires.
  if (change.added.length > 0 && change.removed.length > 0)
    return 'a commit may not both add and remove members';
  for (const id of added) {
    const allowed =
      isAdmin || id.accountId === committer.accountId || beforeAccounts.has(id.accountId);
    if (!allowed) return 'only an admin may add another account';
  }
  for (const { member, proposedBy } of change.removed) {
    const id = who(member);
    if (!id) return 'a removed member has no coffer identity';
    if (isAdmin || id.accountId === committer.accountId) continue;
    if (proposedBy === member.leafIndex) continue; // the member asked to leave
    if (!(await context.deviceListed(id.accountId, id.deviceId))) continue; // revoked device
    return "only an admin may remove another account's device";
  }
  return true;
}

/**
 * Whether a conversation joined from a Welcome is one this client may be in (spec §4): every
 * member has a Coffer identity, this device is one of them, and a `direct` conversation holds
 * only its two accounts, a `self` one only this account. The adder's own policy check cannot be
 * relied on: it is the adder's client.
 *
 * @example const ok = checkJoinedConversation(data, engine.members(group), me); // true or why not
 */
export function checkJoinedConversation(
  data: ConversationData,
  members: readonly MlsMember[],
  self: MemberId,
): true | string {
  let found = false;
  for (const m of members) {
    const id = parseMemberIdentity(m.identity);
    if (!id) return 'a member has no coffer identity';
    if (id.accountId === self.accountId && id.deviceId === self.deviceId) found = true;
    if (data.kind !== 'group' && !data.admins.includes(id.accountId)) {
      return `a ${data.kind} conversation holds another account`;
    }
  }
  if (data.kind === 'self' && data.admins[0] !== self.accountId) {
    return "another account's own conversation";
  }
  if (data.kind === 'direct' && !data.admins.includes(self.accountId)) {
    return 'a direct conversation of other accounts';
  }
  return found ? true : 'this device is not a member';
}

/** Add, Update, Remove, ExternalInit (external commits only), GroupContextExtensions. */
const EXTERNAL_INIT = 6;
const ALLOWED_PROPOSALS = new Set([1, 2, 3, EXTERNAL_INIT, 7]);

function sameData(a: ConversationData, b: ConversationData): boolean {
  return (
    a.kind === b.kind &&
    a.name === b.name &&
    a.admins.length === b.admins.length &&
    a.admins.every((x, i) => x === b.admins[i])
  );
}

/** A reference to an encrypted file, as the SDK makes it (checked by the SDK, spec §5.2). */
export type AttachmentReference = Readonly<Record<string, unknown>>;

/** What one application message holds (spec §5). */
export type MessageBody =
  | { readonly type: 'text'; readonly text: string }
  | {
      readonly type: 'attachment';
      readonly attachment: AttachmentReference;
      readonly text?: string;
    }
  | { readonly type: 'history'; readonly attachment: AttachmentReference };

/** A decoded application message: a random id, the sender's clock, and the body. */
export type MessageContent = MessageBody & {
  /** 16 random bytes, b64url: how receivers deduplicate and how replies refer to it. */
  readonly id: string;
  /** The sender's clock in ms since the Unix epoch; informational, never trusted for order. */
  readonly sentAt: number;
  /**
   * How many application messages the sending device has sent to this conversation, this one
   * included (1, 2, …). Inside the encryption, so the server cannot change it: a receiver that
   * sees a jump knows messages of that sender were dropped on the way.
   */
  readonly n?: number;
  /**
   * The sending account's username, as the sender states it: a receiver that does not know the
   * account's name uses it only once the server's directory maps it to that account.
   */
  readonly username?: string;
};

const PAD_MARK = 0x80;

/** spec §5.1: the keys each content type may hold, and no others. */
const CONTENT_FIELDS: Readonly<Record<MessageBody['type'], readonly string[]>> = {
  text: ['type', 'id', 'sentAt', 'n', 'username', 'text'],
  attachment: ['type', 'id', 'sentAt', 'n', 'username', 'attachment', 'text'],
  history: ['type', 'id', 'sentAt', 'n', 'username', 'attachment'],
};

/** Length the content is padded to: multiples of 256 bytes, then of 1/16 of the power of two. */
export function paddedLength(length: number): number {
  const n = length + 1;
  if (n <= 8192) return Math.ceil(n / 256) * 256;
  const step = 2 ** (Math.ceil(Math.log2(n)) - 4);
  return Math.ceil(n / step) * step;
}

/**
 * Encodes message content as padded JSON (spec §5): JSON, a 0x80 byte, zero bytes up to
 * {@link paddedLength}, so that the MLS ciphertext shows a size class, not a length.
 *
 * @throws {ProtocolError} `INVALID_CONTENT` for an unknown type, a bad id, text too long.
 * @example const bytes = encodeContent({ type: 'text', text: 'hi', id: newMessageId(), sentAt: Date.now() });
 */
export function encodeContent(content: MessageContent): Uint8Array {
  const op = 'conversation.encodeContent';
  checkContent(op, content);
  const json = utf8Encode(JSON.stringify({ v: CONVERSATION_FORMAT, ...content }));
  const out = new Uint8Array(paddedLength(json.length));
  if (out.length > MAX_CONTENT_LENGTH) {
    throw new ProtocolError(
      'INVALID_CONTENT',
      op,
      `content longer than ${MAX_CONTENT_LENGTH} bytes`,
    );
  }
  out.set(json, 0);
  out[json.length] = PAD_MARK;
  return out;
}

/**
 * Decodes padded message content.
 *
 * @throws {ProtocolError} `UNSUPPORTED_VERSION`, `INVALID_CONTENT`.
 * @example const content = decodeContent(result.plaintext);
 */
export function decodeContent(bytes: Uint8Array): MessageContent {
  const op = 'conversation.decodeContent';
  assertBytes(op, 'bytes', bytes, 1, MAX_CONTENT_LENGTH);
  const bad = (why: string) => new ProtocolError('INVALID_CONTENT', op, why);
  let end = bytes.length - 1;
  while (end >= 0 && bytes[end] === 0) end--;
  if (end < 0 || bytes[end] !== PAD_MARK) throw bad('padding is malformed');
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8Decode(bytes.subarray(0, end)));
  } catch {
    throw bad('content is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw bad('content is not an object');
  }
  const { v, ...rest } = parsed as Record<string, unknown>;
  if (v !== CONVERSATION_FORMAT) {
    throw new ProtocolError('UNSUPPORTED_VERSION', op, `content format ${String(v)}`);
  }
  const content = rest as unknown as MessageContent;
  checkContent(op, content);
  return content;
}

function checkContent(op: string, c: MessageContent): void {
  const bad = (why: string) => new ProtocolError('INVALID_CONTENT', op, why);
  if (typeof c !== 'object' || c === null) throw bad('content expected an object');
  if (typeof c.id !== 'string' || !isId(c.id)) throw bad('"id" expected 16 bytes of b64url');
  if (!Number.isSafeInteger(c.sentAt) || c.sentAt < 0) throw bad('"sentAt" expected a time');
  if (c.n !== undefined && (!Number.isSafeInteger(c.n) || c.n < 1)) {
    throw bad('"n" expected a positive integer');
  }
  if (c.username !== undefined && normalizeUsername(c.username) !== c.username) {
    throw bad('"username" expected a username in its normal form');
  }
  const text = (value: unknown, required: boolean) => {
    if (value === undefined && !required) return;
    if (typeof value !== 'string' || utf8Encode(value).length > MAX_TEXT_LENGTH) {
      throw bad(`"text" expected a string of at most ${MAX_TEXT_LENGTH} bytes`);
    }
  };
  const object = (value: unknown) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw bad('"attachment" expected an object');
    }
  };
  // A string naming one of the three types, looked up among own keys only: a type such as
  // "constructor" (inherited from Object.prototype) or ["text"] (a key once coerced) is unknown.
  const keys =
    typeof c.type === 'string' && Object.hasOwn(CONTENT_FIELDS, c.type)
      ? CONTENT_FIELDS[c.type]
      : undefined;
  if (!keys) throw bad('unknown content type');
  for (const key of Object.keys(c)) if (!keys.includes(key)) throw bad(`unexpected "${key}"`);
  if (c.type === 'text') text(c.text, true);
  else if (c.type === 'attachment') {
    object(c.attachment);
    text(c.text, false);
  } else object(c.attachment);
}
