// The MLS group engine: Coffer's own small, sans-I/O interface over an MLS implementation, so the
// implementation can be replaced without touching callers. Every method takes a group state and
// input bytes and returns a new state plus the bytes to send; nothing is sent, stored or timed
// here. States are immutable handles: keep the newest one, persist it with exportState (it holds
// private keys, so store it encrypted and bound to its record id). An operation that returns a
// new handle spends the old one (its consumed secrets are wiped): using it again is refused.
//
// createTsMlsEngine implements it over ts-mls (RFC 9420) with Coffer's crypto provider
// (crypto-provider.ts) for MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.
import { constantTimeEqual, importSigningKey, toBase64url, wipe } from '@coffer/crypto';
import {
  type CiphersuiteImpl,
  type ClientState,
  type Credential,
  type CryptoProvider,
  clientStateDecoder,
  clientStateEncoder,
  contentTypes,
  createApplicationMessage,
  createCommit,
  createGroupInfoWithExternalPubAndRatchetTree,
  createProposal,
  defaultCapabilities,
  defaultCredentialTypes,
  defaultProposalTypes,
  encode,
  type GroupContextExtension,
  generateKeyPackage,
  generateKeyPackageWithKey,
  joinGroupExternal,
  joinGroupWithExtensions,
  type KeyPackage,
  leafNodeSources,
  type MlsContext,
  type MlsMessage,
  makeCustomExtension,
  mlsExporter,
  mlsMessageDecoder,
  mlsMessageEncoder,
  nodeTypes,
  type PrivateKeyPackage,
  type Proposal,
  type ProposalWithSender,
  privateKeyPackageDecoder,
  privateKeyPackageEncoder,
  processMessage,
  protocolVersions,
  createGroup as tsCreateGroup,
  wireformats,
} from 'ts-mls';
import { assertBytes, invalidArgument, ProtocolError } from '../errors.js';
import { createCofferCryptoProvider, MLS_DEFAULT_CIPHERSUITE } from './crypto-provider.js';

/** Version byte in front of exported group states and private key packages. */
export const MLS_STATE_VERSION = 1;
/** Largest MLS message accepted: a Welcome carries the whole ratchet tree of a MAX_GROUP_SIZE group. */
export const MAX_MLS_MESSAGE_LENGTH = 4 * 1024 * 1024;
/** Largest exported state accepted: the tree, the secret tree and retained past-epoch keys. */
export const MAX_GROUP_STATE_LENGTH = 16 * 1024 * 1024;
/** Most members a group may have: Coffer groups are the devices of a few accounts; bounds tree size. */
export const MAX_GROUP_SIZE = 1024;
/**
 * Most ratchet-tree nodes a group's tree may have. Adds fill the leftmost blank leaf first and a
 * group never holds more than MAX_GROUP_SIZE members, so a real tree has at most that many
 * leaves (2·MAX_GROUP_SIZE − 1 nodes); twice that leaves room. A tree from a GroupInfo is what
 * its signer made: millions of blank nodes fit in a 4 MiB Welcome, and every later operation
 * would walk them.
 */
export const MAX_TREE_NODES = 4 * MAX_GROUP_SIZE - 1;
/** Group ids name conversations; they are not data. */
export const MAX_GROUP_ID_LENGTH = 256;
/** Credential identities (device or account ids), not data. */
export const MAX_IDENTITY_LENGTH = 256;
/**
 * The GroupContext extension (private-use range, RFC 9420 §17.3) that carries the application's
 * group data: for Coffer, the conversation's kind, name and admins. Being in the GroupContext,
 * every member agrees on it in every epoch (a different view is a different epoch, a fork), and
 * only a commit changes it. Every key package advertises support for it.
 */
export const GROUP_DATA_EXTENSION_TYPE = 0xf0c1;
/**
 * The GroupInfo extension (private use) that carries application data inside a Welcome, where
 * only the joiners can read it (the Welcome's GroupInfo is encrypted to them): for Coffer, the
 * conversation key that seals the GroupInfo the server keeps for resync.
 */
export const WELCOME_DATA_EXTENSION_TYPE = 0xf0c2;
/** Largest group data: a name and a list of admins, not content. */
export const MAX_GROUP_DATA_LENGTH = 16 * 1024;

/** An immutable handle on one member's view of a group at one epoch. */
export interface MlsGroup {
  readonly groupId: Uint8Array;
  readonly epoch: bigint;
  readonly ownLeafIndex: number;
  /** False once this member has been removed: it can read nothing new and send nothing. */
  readonly active: boolean;
}

/** One member of a group, from the ratchet tree. */
export interface MlsMember {
  readonly leafIndex: number;
  /** The identity of a basic credential (what createKeyPackage was given). */
  readonly identity: Uint8Array;
  readonly signaturePublicKey: Uint8Array;
}

/** A key package: publish `publicKeyPackage`; keep `privateKeyPackage` secret and use it once. */
export interface MlsKeyPackage {
  /** MLSMessage-encoded KeyPackage (RFC 9420 §10), for others to add this client. */
  readonly publicKeyPackage: Uint8Array;
  /** Versioned private keys (init, leaf HPKE and signature keys). Secret: store it encrypted. */
  readonly privateKeyPackage: Uint8Array;
}

export interface CreateKeyPackageOptions {
  /** The credential identity (for Coffer, the device id), 1 to 256 bytes. */
  identity: Uint8Array;
  /** Reuse an Ed25519 key (the device's signing key: 32-byte seed and public key). Default fresh. */
  signatureKey?: { secretKey: Uint8Array; publicKey: Uint8Array };
}

/** The result of processing one incoming message. */
export type ProcessedMessage =
  | {
      kind: 'application';
      plaintext: Uint8Array;
      authenticatedData: Uint8Array;
      /** The member whose leaf sent it (its signature verified under that leaf's key). */
      sender: MlsMember;
    }
  | { kind: 'commit'; epoch: bigint; removed: boolean }
  | { kind: 'proposal' };

/**
 * What one commit changes, as every member sees it, for {@link TsMlsEngineOptions.authorizeCommit}:
 * members compared leaf by leaf before and after, and the group data before and after.
 */
export interface MlsCommitChange {
  /** The committing member, from the tree before the commit; undefined for an external commit. */
  readonly committer: MlsMember | undefined;
  /** True for an external commit (a joiner adding itself from the GroupInfo). */
  readonly external: boolean;
  /** Members of the group before the commit. */
  readonly before: readonly MlsMember[];
  /** Leaves that hold a member after the commit and held none, or another identity, before. */
  readonly added: readonly MlsMember[];
  /** Members gone after the commit; `proposedBy` is the leaf index of the Remove's proposer. */
  readonly removed: readonly { member: MlsMember; proposedBy: number | undefined }[];
  /** Members whose leaf kept its identity but changed its signature key. */
  readonly rekeyed: readonly MlsMember[];
  /**
   * Members whose leaf kept its identity but got a new leaf node (fresh encryption key): the
   * committer of a commit with a path, the sender of an Update, a device that rejoined in place.
   */
  readonly renewed: readonly MlsMember[];
  readonly groupDataBefore: Uint8Array | undefined;
  readonly groupDataAfter: Uint8Array | undefined;
  /** The type of every proposal the commit carries (by value or reference), in order. */
  readonly proposalTypes: readonly number[];
  /** True when a GroupContext extension other than the group data changed. */
  readonly otherExtensionsChanged: boolean;
}

/** What a commit produces: the committer's new state, the commit for the group, a Welcome for new members. */
export interface CommitResult {
  group: MlsGroup;
  commit: Uint8Array;
}

/** Coffer's MLS interface. Errors are ProtocolError; see the README's error table. */
export interface GroupEngine {
  readonly cipherSuite: number;
  createKeyPackage(options: CreateKeyPackageOptions): Promise<MlsKeyPackage>;
  /** A new group with this client as its only member, and its group data (see GROUP_DATA_EXTENSION_TYPE). */
  createGroup(
    groupId: Uint8Array,
    keyPackage: MlsKeyPackage,
    groupData?: Uint8Array,
  ): Promise<MlsGroup>;
  /** Adds members by their public key packages: one commit for the group, one Welcome for them. */
  addMembers(
    group: MlsGroup,
    publicKeyPackages: readonly Uint8Array[],
    options?: { welcomeData?: Uint8Array },
  ): Promise<CommitResult & { welcome: Uint8Array }>;
  /** Joins from a Welcome sealed to `keyPackage`. */
  joinFromWelcome(welcome: Uint8Array, keyPackage: MlsKeyPackage): Promise<MlsGroup>;
  /** Joins from a Welcome, and returns the `welcomeData` the adder put in it (if any). */
  joinFromWelcomeWithData(
    welcome: Uint8Array,
    keyPackage: MlsKeyPackage,
  ): Promise<{ group: MlsGroup; welcomeData: Uint8Array | undefined }>;
  /** Encrypts an application message to the group. */
  encrypt(
    group: MlsGroup,
    plaintext: Uint8Array,
    authenticatedData?: Uint8Array,
  ): Promise<{ group: MlsGroup; message: Uint8Array }>;
  /** Processes an incoming application message, proposal or commit of another member. */
  process(
    group: MlsGroup,
    message: Uint8Array,
  ): Promise<{ group: MlsGroup; result: ProcessedMessage }>;
  /**
   * A commit with fresh leaf and path keys (post-compromise security); it also commits the
   * proposals received and not yet committed (a member's request to leave).
   */
  selfUpdate(group: MlsGroup): Promise<CommitResult>;
  removeMembers(group: MlsGroup, leafIndices: readonly number[]): Promise<CommitResult>;
  /** A commit replacing the group data (admins only, for Coffer: see authorizeCommit). */
  updateGroupData(group: MlsGroup, groupData: Uint8Array): Promise<CommitResult>;
  /** A proposal to remove this member (leaving): another member commits it. */
  proposeLeave(group: MlsGroup): Promise<{ group: MlsGroup; message: Uint8Array }>;
  /**
   * This member's own removal proposals taken back, for a proposal nobody received (the server
   * refused it). The ratchet keys they used stay spent. Replaces `group` like an operation.
   */
  withdrawLeave(group: MlsGroup): MlsGroup;
  /** Leaf indices of members whose removal has been proposed and not yet committed. */
  pendingRemovals(group: MlsGroup): number[];
  members(group: MlsGroup): MlsMember[];
  /**
   * The credential identity and signature key a public key package carries, so that a caller
   * can match it to the device it was claimed for. Nothing is verified here: adding the same
   * bytes (addMembers) checks the package's signature, credential and lifetime.
   */
  inspectKeyPackage(
    publicKeyPackage: Uint8Array,
  ): Promise<Omit<MlsMember, 'leafIndex'> & { readonly notAfter: Date }>;
  /** The group data of the current epoch, or undefined when the group has none. */
  groupData(group: MlsGroup): Uint8Array | undefined;
  /**
   * The epoch and confirmed transcript hash a group state is at, and those a GroupInfo names:
   * two members (or a member and the GroupInfo) at one epoch with different transcript hashes
   * are on different branches — a fork.
   */
  epochOf(group: MlsGroup): { epoch: bigint; transcriptHash: Uint8Array };
  /**
   * MLS-Exporter(label, context, length) of the group's current epoch (RFC 9420 §8.5): a secret
   * every member of this epoch derives alike and nobody outside it can.
   */
  exportSecret(
    group: MlsGroup,
    label: string,
    context: Uint8Array,
    length: number,
  ): Promise<Uint8Array>;
  epochOfGroupInfo(groupInfo: Uint8Array): { epoch: bigint; transcriptHash: Uint8Array };
  /**
   * The current epoch's GroupInfo (MLSMessage, with the external public key and the ratchet
   * tree), for the server to keep so that a member that lost its state can rejoin.
   */
  groupInfo(group: MlsGroup): Promise<Uint8Array>;
  /**
   * Joins (or, with `resync`, rejoins in place of this identity's old leaf) by an external
   * commit from a GroupInfo; the commit goes to the group.
   */
  joinExternal(
    groupInfo: Uint8Array,
    keyPackage: MlsKeyPackage,
    options?: { resync?: boolean },
  ): Promise<CommitResult>;
  /** Versioned bytes of the whole state, private keys included: store encrypted. */
  exportState(group: MlsGroup): Uint8Array;
  importState(bytes: Uint8Array): MlsGroup;
}

export interface TsMlsEngineOptions {
  /** Default Coffer's provider (createCofferCryptoProvider()). */
  crypto?: CryptoProvider;
  /**
   * Decides whether a member's credential (its identity) may use `signaturePublicKey`: for Coffer,
   * whether a verified device manifest lists that key for that device. Required: without it any
   * key could claim any identity.
   */
  validateCredential(identity: Uint8Array, signaturePublicKey: Uint8Array): Promise<boolean>;
  /**
   * Decides whether a commit may change the group as it does: `true`, or a short reason (no
   * secrets) to refuse it. Asked for every commit this client processes and every commit it
   * makes, before anything is kept: a refused commit leaves the group state as it was and
   * throws `COMMIT_NOT_ALLOWED`. Default: every commit allowed.
   */
  authorizeCommit?(change: MlsCommitChange): Promise<true | string> | true | string;
}

/**
 * A {@link GroupEngine} over ts-mls for MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` when `validateCredential` is missing.
 * @example
 * const engine = await createTsMlsEngine({ validateCredential: (id, key) => manifestHas(id, key) });
 * const kp = await engine.createKeyPackage({ identity: deviceId });
 * let group = await engine.createGroup(conversationId, kp);
 */
export async function createTsMlsEngine(options: TsMlsEngineOptions): Promise<GroupEngine> {
  const op = 'mls.createEngine';
  if (typeof options?.validateCredential !== 'function') {
    throw invalidArgument(op, '"validateCredential" expected a function');
  }
  const provider = options.crypto ?? createCofferCryptoProvider();
  const cs: CiphersuiteImpl = await provider.getCiphersuiteImpl(MLS_DEFAULT_CIPHERSUITE);
  const validate = options.validateCredential;
  if (options.authorizeCommit !== undefined && typeof options.authorizeCommit !== 'function') {
    throw invalidArgument(op, '"authorizeCommit" expected a function');
  }
  const authorize = options.authorizeCommit ?? (() => true as const);
  const defaults = defaultCapabilities();
  const capabilities = {
    ...defaults,
    extensions: [...defaults.extensions, GROUP_DATA_EXTENSION_TYPE],
  };
  const context: MlsContext = {
    cipherSuite: cs,
    authService: {
      async validateCredential(credential: Credential, signaturePublicKey: Uint8Array) {
        if (credential.credentialType !== defaultCredentialTypes.basic) return false;
        if (!('identity' in credential)) return false;
        return validate(credential.identity, signaturePublicKey);
      },
    },
  };

  const states = new WeakMap<MlsGroup, ClientState>();
  // Handles an operation replaced: their states' consumed secrets may be wiped.
  const spent = new WeakSet<MlsGroup>();

  function handle(state: ClientState): MlsGroup {
    const group: MlsGroup = Object.freeze({
      groupId: state.groupContext.groupId.slice(),
      epoch: state.groupContext.epoch,
      ownLeafIndex: state.privatePath.leafIndex,
      active: state.groupActiveState.kind === 'active',
    });
    states.set(group, state);
    return group;
  }

  function stateOf(operation: string, group: MlsGroup): ClientState {
    const state = typeof group === 'object' && group !== null ? states.get(group) : undefined;
    if (state) return state;
    if (typeof group === 'object' && group !== null && spent.has(group)) {
      throw invalidArgument(
        operation,
        '"group" was replaced by the group an operation on it returned: continue from that one, or import the saved state',
      );
    }
    throw invalidArgument(operation, '"group" expected a group of this engine');
  }

  /**
   * Runs an operation that replaces a group's state. The handle is spent as the operation
   * starts, so no second operation (concurrent or later) can derive from the secrets this one
   * consumes and wipes; it is given back if the operation fails. `run` must end in `settle`.
   */
  async function replacing<T>(
    operation: string,
    group: MlsGroup,
    run: (state: ClientState) => Promise<T>,
  ): Promise<T> {
    const state = activeStateOf(operation, group);
    states.delete(group);
    spent.add(group);
    try {
      return await run(state);
    } catch (err) {
      spent.delete(group);
      states.set(group, state);
      throw err;
    }
  }

  /** An operation's last step, after every check: wipes what it consumed, returns the new handle. */
  function settle(consumed: readonly Uint8Array[], next: ClientState): MlsGroup {
    wipeConsumed(consumed, next);
    return handle(next);
  }

  function activeStateOf(operation: string, group: MlsGroup): ClientState {
    const state = stateOf(operation, group);
    if (state.groupActiveState.kind !== 'active') {
      throw new ProtocolError('GROUP_INACTIVE', operation, 'this member is no longer in the group');
    }
    return state;
  }

  function rejected(operation: string, what = 'message'): ProtocolError {
    return new ProtocolError('MLS_MESSAGE_REJECTED', operation, `${what} rejected`);
  }

  function decodeMessage(operation: string, bytes: Uint8Array, what: string): MlsMessage {
    assertBytes(operation, what, bytes, 1, MAX_MLS_MESSAGE_LENGTH);
    let msg: MlsMessage | undefined;
    try {
      // A copy: decoded fields are views of the bytes, and the state must not change when the
      // caller reuses its buffer.
      msg = decodeWhole(mlsMessageDecoder, bytes.slice());
    } catch {
      msg = undefined;
    }
    if (!msg) throw rejected(operation, what);
    return msg;
  }

  /** The value `bytes` encode, or undefined when they do not, or hold anything after it. */
  function decodeWhole<T>(
    decoder: (b: Uint8Array, offset: number) => [T, number] | undefined,
    bytes: Uint8Array,
  ): T | undefined {
    const out = decoder(bytes, 0);
    return out && out[1] === bytes.length ? out[0] : undefined;
  }

  /** More members than a group may have, or a tree wider than any such group's (see MAX_TREE_NODES). */
  function oversized(state: ClientState): boolean {
    return state.ratchetTree.length > MAX_TREE_NODES || memberCount(state) > MAX_GROUP_SIZE;
  }

  function memberCount(state: ClientState): number {
    let n = 0;
    for (let i = 0; i < state.ratchetTree.length; i += 2) {
      if (state.ratchetTree[i]?.nodeType === nodeTypes.leaf) n++;
    }
    return n;
  }

  /**
   * An outgoing message in its own buffer: ts-mls (patched) carves small encodings from shared
   * slabs that also hold other encodings (the plaintext content before encryption among them),
   * and a caller may hand `.buffer` on whole.
   */
  function encodeMessage(message: MlsMessage): Uint8Array {
    const out = encode(mlsMessageEncoder, message);
    return out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? out : out.slice();
  }

  /** The version byte, then `body` (a state or private key package: secrets), which is wiped. */
  function versioned(body: Uint8Array): Uint8Array {
    const out = new Uint8Array(body.length + 1);
    out[0] = MLS_STATE_VERSION;
    out.set(body, 1);
    // ts-mls (patched) may carve small encodings from a shared slab: leave no copy there.
    wipe(body);
    return out;
  }

  function decodeKeyPackage(
    operation: string,
    keyPackage: MlsKeyPackage,
  ): { publicPackage: KeyPackage; privatePackage: PrivateKeyPackage } {
    if (typeof keyPackage !== 'object' || keyPackage === null) {
      throw invalidArgument(operation, '"keyPackage" expected an object');
    }
    const publicPackage = decodePublicKeyPackage(operation, keyPackage.publicKeyPackage);
    const priv = keyPackage.privateKeyPackage;
    assertBytes(operation, 'privateKeyPackage', priv, 2, MAX_MLS_MESSAGE_LENGTH);
    if (priv[0] !== MLS_STATE_VERSION) {
      throw new ProtocolError(
        'UNSUPPORTED_VERSION',
        operation,
        `private key package version ${priv[0]}`,
      );
    }
    let privatePackage: PrivateKeyPackage | undefined;
    try {
      privatePackage = decodeWhole(privateKeyPackageDecoder, priv.slice(1));
    } catch {
      privatePackage = undefined;
    }
    if (!privatePackage) {
      throw invalidArgument(operation, '"privateKeyPackage" is not a private key package');
    }
    return { publicPackage, privatePackage };
  }

  function decodePublicKeyPackage(operation: string, bytes: Uint8Array): KeyPackage {
    const msg = decodeMessage(operation, bytes, 'key package');
    if (msg.wireformat !== wireformats.mls_key_package) throw rejected(operation, 'key package');
    if (msg.keyPackage.cipherSuite !== MLS_DEFAULT_CIPHERSUITE) {
      throw rejected(operation, 'key package');
    }
    return msg.keyPackage;
  }

  async function commit(
    operation: string,
    state: ClientState,
    proposals: Proposal[],
    welcomeData?: Uint8Array,
  ): Promise<{
    state: ClientState;
    consumed: readonly Uint8Array[];
    commit: Uint8Array;
    welcome?: Uint8Array;
  }> {
    const pending: ProposalWithSender[] = [
      ...Object.values(state.unappliedProposals),
      ...proposals.map((proposal) => ({ proposal, senderLeafIndex: state.privatePath.leafIndex })),
    ];
    let result: Awaited<ReturnType<typeof createCommit>>;
    try {
      result = await createCommit({
        context,
        state,
        extraProposals: proposals,
        // The Welcome carries the tree, so joiners need nothing out of band.
        ratchetTreeExtension: true,
        ...(welcomeData
          ? {
              groupInfoExtensions: [
                makeCustomExtension({
                  extensionType: WELCOME_DATA_EXTENSION_TYPE,
                  extensionData: welcomeData.slice(),
                }),
              ],
            }
          : {}),
      });
    } catch (err) {
      // Proposals built from untrusted key packages are what fails validation here.
      if (ProtocolError.is(err)) throw err;
      throw rejected(operation, 'commit');
    }
    await checkCommit(
      operation,
      commitChange(state, result.newState, state.privatePath.leafIndex, pending, false),
    );
    return {
      state: result.newState,
      consumed: result.consumed,
      commit: encodeMessage(result.commit),
      ...(result.welcome ? { welcome: encodeMessage(result.welcome) } : {}),
    };
  }

  /**
   * Wipes the secrets ts-mls reports consumed, except those the new state still holds. In
   * 2.0.0-rc.10 a commit keeps the previous epoch's secret tree for late messages
   * (historicalReceiverData) while also reporting some of that tree's values consumed; wiping
   * those made every late message of the previous epoch undecryptable.
   */
  function wipeConsumed(consumed: readonly Uint8Array[], state: ClientState): void {
    if (consumed.length === 0) return;
    const live = new Set<Uint8Array>();
    const keep = (tree: ClientState['secretTree']) => {
      for (const v of Object.values(tree.intermediateNodes)) live.add(v);
      for (const node of Object.values(tree.leafNodes)) {
        for (const g of [node.application, node.handshake]) {
          live.add(g.secret);
          for (const u of Object.values(g.unusedGenerations)) live.add(u);
        }
      }
    };
    keep(state.secretTree);
    for (const epoch of state.historicalReceiverData.values()) {
      keep(epoch.secretTree);
      live.add(epoch.senderDataSecret);
      live.add(epoch.resumptionPsk);
    }
    for (const secret of consumed) if (!live.has(secret)) wipe(secret);
  }

  async function checkCommit(operation: string, change: MlsCommitChange): Promise<void> {
    const verdict = await authorize(change);
    if (verdict === true) return;
    throw new ProtocolError(
      'COMMIT_NOT_ALLOWED',
      operation,
      typeof verdict === 'string' && verdict.length > 0 ? verdict : 'commit not allowed',
    );
  }

  function groupDataOf(state: ClientState): Uint8Array | undefined {
    for (const ext of state.groupContext.extensions) {
      if (ext.extensionType === GROUP_DATA_EXTENSION_TYPE) return ext.extensionData as Uint8Array;
    }
    return undefined;
  }

  function groupDataExtension(operation: string, data: Uint8Array): GroupContextExtension {
    assertBytes(operation, 'groupData', data, 1, MAX_GROUP_DATA_LENGTH);
    return makeCustomExtension({
      extensionType: GROUP_DATA_EXTENSION_TYPE,
      extensionData: data.slice(),
    });
  }

  function otherExtensions(state: ClientState): string {
    return JSON.stringify(
      state.groupContext.extensions.filter((e) => e.extensionType !== GROUP_DATA_EXTENSION_TYPE),
      (_key, value) => (value instanceof Uint8Array ? toBase64url(value) : value),
    );
  }

  function hpkeKeyAt(state: ClientState, leaf: number): string | undefined {
    const node = state.ratchetTree[leaf * 2];
    return node?.nodeType === nodeTypes.leaf ? toBase64url(node.leaf.hpkePublicKey) : undefined;
  }

  /** Compares the trees leaf by leaf (see MlsCommitChange). */
  function commitChange(
    before: ClientState,
    after: ClientState,
    committerLeaf: number | undefined,
    proposals: readonly ProposalWithSender[],
    external: boolean,
  ): MlsCommitChange {
    const proposer = new Map<number, number | undefined>();
    for (const p of proposals) {
      if (p.proposal.proposalType === defaultProposalTypes.remove && 'remove' in p.proposal) {
        proposer.set(p.proposal.remove.removed, p.senderLeafIndex);
      }
    }
    const added: MlsMember[] = [];
    const removed: { member: MlsMember; proposedBy: number | undefined }[] = [];
    const rekeyed: MlsMember[] = [];
    const renewed: MlsMember[] = [];
    const leaves = Math.max(before.ratchetTree.length, after.ratchetTree.length);
    for (let node = 0; node < leaves; node += 2) {
      // The same node object (or blank) in both trees compares equal in every respect below;
      // ts-mls shares the nodes a commit leaves alone, so this skips all but the changed leaves.
      if (before.ratchetTree[node] === after.ratchetTree[node]) continue;
      const leaf = node / 2;
      const was = memberIn(before.ratchetTree, leaf);
      const now = memberIn(after.ratchetTree, leaf);
      // A member commit's Remove always removes, even when an Add in the same commit puts the
      // same identity back on that leaf (that would hide a removal as a re-key). Only an
      // external commit replaces its own old leaf in place (a resync).
      const same =
        was &&
        now &&
        (external || !proposer.has(leaf)) &&
        constantTimeEqual(was.identity, now.identity);
      if (was && !same) removed.push({ member: was, proposedBy: proposer.get(leaf) });
      if (now && !same) added.push(now);
      if (same && !constantTimeEqual(was.signaturePublicKey, now.signaturePublicKey)) {
        rekeyed.push(now);
      }
      if (same && hpkeKeyAt(before, leaf) !== hpkeKeyAt(after, leaf)) renewed.push(now);
    }
    return {
      committer:
        committerLeaf === undefined ? undefined : memberIn(before.ratchetTree, committerLeaf),
      external,
      before: membersOf(before),
      added,
      removed,
      rekeyed,
      renewed,
      groupDataBefore: groupDataOf(before)?.slice(),
      groupDataAfter: groupDataOf(after)?.slice(),
      proposalTypes: proposals.map((p) => p.proposal.proposalType),
      otherExtensionsChanged: otherExtensions(before) !== otherExtensions(after),
    };
  }

  async function join(
    operation: string,
    welcome: Uint8Array,
    keyPackage: MlsKeyPackage,
  ): Promise<{ group: MlsGroup; welcomeData: Uint8Array | undefined }> {
    const { publicPackage, privatePackage } = decodeKeyPackage(operation, keyPackage);
    const msg = decodeMessage(operation, welcome, 'welcome');
    if (msg.wireformat !== wireformats.mls_welcome) throw rejected(operation, 'welcome');
    let joined: Awaited<ReturnType<typeof joinGroupWithExtensions>>;
    try {
      joined = await joinGroupWithExtensions({
        context,
        welcome: msg.welcome,
        keyPackage: publicPackage,
        privateKeys: privatePackage,
      });
    } catch {
      throw rejected(operation, 'welcome');
    }
    if (oversized(joined.state)) throw rejected(operation, 'welcome');
    const data = joined.groupInfoExtensions.find(
      (e) => e.extensionType === WELCOME_DATA_EXTENSION_TYPE,
    );
    return {
      group: handle(joined.state),
      welcomeData: data ? (data.extensionData as Uint8Array).slice() : undefined,
    };
  }

  // ts-mls 2.0.0-rc.10 does not return the sender of an application message. It updates the
  // secret tree immutably, and opening a message consumes a key of the sender's leaf ratchet
  // only (RFC 9420 §9.1), so the sender is the one leaf whose entry is a new object — in the
  // current epoch's tree, or, for a late message, in the tree kept for its epoch.
  function applicationSender(
    before: ClientState,
    after: ClientState,
  ): { leafIndex: number; tree: ClientState['ratchetTree'] } | undefined {
    const current = changedLeaf(before.secretTree, after.secretTree);
    if (current !== null)
      return current === undefined ? undefined : { leafIndex: current, tree: after.ratchetTree };
    for (const [epoch, data] of after.historicalReceiverData) {
      const old = before.historicalReceiverData.get(epoch);
      if (!old || old.secretTree === data.secretTree) continue;
      const leaf = changedLeaf(old.secretTree, data.secretTree);
      return leaf === null || leaf === undefined
        ? undefined
        : { leafIndex: leaf, tree: data.ratchetTree };
    }
    return undefined;
  }

  /** The one leaf whose ratchet moved between two trees; null when none did, undefined when several. */
  function changedLeaf(
    before: ClientState['secretTree'],
    after: ClientState['secretTree'],
  ): number | null | undefined {
    const old = before.leafNodes;
    let found: number | null = null;
    for (const [key, node] of Object.entries(after.leafNodes)) {
      if (old[Number(key)] === node) continue;
      if (found !== null) return undefined;
      found = Number(key) / 2; // keyed by node index; leaf i is node 2i
    }
    return found;
  }

  /** The member at one leaf (copies of its keys), or undefined for a blank or absent leaf. */
  function memberAt(state: ClientState, leafIndex: number): MlsMember | undefined {
    return memberIn(state.ratchetTree, leafIndex);
  }

  function memberIn(tree: ClientState['ratchetTree'], leafIndex: number): MlsMember | undefined {
    const node = tree[leafIndex * 2];
    if (node?.nodeType !== nodeTypes.leaf) return undefined;
    const { credential, signaturePublicKey } = node.leaf;
    return {
      leafIndex,
      identity: 'identity' in credential ? credential.identity.slice() : new Uint8Array(0),
      signaturePublicKey: signaturePublicKey.slice(),
    };
  }

  function membersOf(state: ClientState): MlsMember[] {
    const out: MlsMember[] = [];
    for (let i = 0; i < state.ratchetTree.length; i += 2) {
      const member = memberAt(state, i / 2);
      if (member) out.push(member);
    }
    return out;
  }

  return {
    cipherSuite: MLS_DEFAULT_CIPHERSUITE,

    async createKeyPackage(opts) {
      const operation = 'mls.createKeyPackage';
      if (typeof opts !== 'object' || opts === null) {
        throw invalidArgument(operation, '"options" expected an object');
      }
      assertBytes(operation, 'identity', opts.identity, 1, MAX_IDENTITY_LENGTH);
      const credential: Credential = {
        credentialType: defaultCredentialTypes.basic,
        identity: opts.identity.slice(),
      };
      let pair: Awaited<ReturnType<typeof generateKeyPackage>>;
      if (opts.signatureKey) {
        assertBytes(operation, 'signatureKey.secretKey', opts.signatureKey.secretKey, 32);
        assertBytes(operation, 'signatureKey.publicKey', opts.signatureKey.publicKey, 32);
        const derived = (await importSigningKey(opts.signatureKey.secretKey)).publicKey;
        if (!constantTimeEqual(derived, opts.signatureKey.publicKey)) {
          throw invalidArgument(operation, '"signatureKey.publicKey" is not the secret key\'s');
        }
        pair = await generateKeyPackageWithKey({
          credential,
          capabilities,
          cipherSuite: cs,
          signatureKeyPair: {
            signKey: opts.signatureKey.secretKey.slice(),
            publicKey: opts.signatureKey.publicKey.slice(),
          },
        });
      } else {
        pair = await generateKeyPackage({ credential, capabilities, cipherSuite: cs });
      }
      return Object.freeze({
        publicKeyPackage: encodeMessage({
          wireformat: wireformats.mls_key_package,
          version: protocolVersions.mls10,
          keyPackage: pair.publicPackage,
        }),
        privateKeyPackage: versioned(encode(privateKeyPackageEncoder, pair.privatePackage)),
      });
    },

    async createGroup(groupId, keyPackage, groupData) {
      const operation = 'mls.createGroup';
      assertBytes(operation, 'groupId', groupId, 1, MAX_GROUP_ID_LENGTH);
      const extensions = groupData === undefined ? [] : [groupDataExtension(operation, groupData)];
      const { publicPackage, privatePackage } = decodeKeyPackage(operation, keyPackage);
      const state = await tsCreateGroup({
        context,
        groupId: groupId.slice(),
        keyPackage: publicPackage,
        privateKeyPackage: privatePackage,
        extensions,
      });
      return handle(state);
    },

    addMembers(group, publicKeyPackages, addOptions = {}) {
      const operation = 'mls.addMembers';
      return replacing(operation, group, async (state) => {
        if (!Array.isArray(publicKeyPackages) || publicKeyPackages.length === 0) {
          throw invalidArgument(operation, '"publicKeyPackages" expected at least one key package');
        }
        if (memberCount(state) + publicKeyPackages.length > MAX_GROUP_SIZE) {
          throw invalidArgument(operation, `a group holds at most ${MAX_GROUP_SIZE} members`);
        }
        const proposals: Proposal[] = publicKeyPackages.map((bytes) => ({
          proposalType: defaultProposalTypes.add,
          add: { keyPackage: decodePublicKeyPackage(operation, bytes) },
        }));
        if (addOptions.welcomeData !== undefined) {
          assertBytes(operation, 'welcomeData', addOptions.welcomeData, 1, MAX_GROUP_DATA_LENGTH);
        }
        const out = await commit(operation, state, proposals, addOptions.welcomeData);
        if (!out.welcome) throw new Error('ts-mls made no welcome for an add commit');
        return { group: settle(out.consumed, out.state), commit: out.commit, welcome: out.welcome };
      });
    },

    async joinFromWelcome(welcome, keyPackage) {
      return (await join('mls.joinFromWelcome', welcome, keyPackage)).group;
    },

    joinFromWelcomeWithData(welcome, keyPackage) {
      return join('mls.joinFromWelcomeWithData', welcome, keyPackage);
    },

    encrypt(group, plaintext, authenticatedData = new Uint8Array(0)) {
      const operation = 'mls.encrypt';
      return replacing(operation, group, async (state) => {
        assertBytes(operation, 'plaintext', plaintext, 0, MAX_MLS_MESSAGE_LENGTH - 1024);
        assertBytes(operation, 'authenticatedData', authenticatedData, 0, 64 * 1024);
        if (Object.keys(state.unappliedProposals).length > 0) {
          // RFC 9420 §12.2: proposals of an epoch are committed before messages are sent in it.
          throw new ProtocolError(
            'PROPOSALS_PENDING',
            operation,
            'a member asked to leave: commit that (selfUpdate) before sending',
          );
        }
        const result = await createApplicationMessage({
          context,
          state,
          message: plaintext,
          authenticatedData,
        });
        const message = encodeMessage(result.message);
        return { group: settle(result.consumed, result.newState), message };
      });
    },

    process(group, message) {
      const operation = 'mls.process';
      return replacing(operation, group, async (state) => {
        const msg = decodeMessage(operation, message, 'message');
        if (
          msg.wireformat !== wireformats.mls_private_message &&
          msg.wireformat !== wireformats.mls_public_message
        ) {
          throw rejected(operation);
        }
        const contentType =
          msg.wireformat === wireformats.mls_private_message
            ? msg.privateMessage.contentType
            : msg.publicMessage.content.contentType;
        let result: Awaited<ReturnType<typeof processMessage>>;
        let committer: number | undefined;
        let committed: ProposalWithSender[] = [];
        let proposalRefused = false;
        try {
          result = await processMessage({
            context,
            state,
            message: msg,
            callback: (incoming) => {
              if (incoming.kind === 'commit') {
                committer = incoming.senderLeafIndex;
                committed = incoming.proposals;
                return 'accept';
              }
              // Coffer members propose only their own removal (leaving); everything else is
              // done by commits, which authorizeCommit sees whole.
              const { proposal, senderLeafIndex } = incoming.proposal;
              const ownRemoval =
                proposal.proposalType === defaultProposalTypes.remove &&
                'remove' in proposal &&
                senderLeafIndex !== undefined &&
                proposal.remove.removed === senderLeafIndex;
              if (ownRemoval) return 'accept';
              proposalRefused = true;
              return 'reject';
            },
          });
        } catch {
          // Tampered, replayed, from another group or epoch, or from a non-member: one answer.
          throw rejected(operation);
        }
        if (result.kind === 'newState' && result.actionTaken !== 'accept') {
          if (proposalRefused) {
            throw new ProtocolError(
              'COMMIT_NOT_ALLOWED',
              operation,
              'a member may only propose its own removal',
            );
          }
          throw rejected(operation);
        }
        if (result.kind === 'newState' && contentType === contentTypes.commit) {
          // Only an external commit (a new member's) has no sender leaf.
          await checkCommit(
            operation,
            commitChange(state, result.newState, committer, committed, committer === undefined),
          );
        }
        // An application message leaves the ratchet tree as it was; only commits change membership.
        if (result.kind !== 'applicationMessage' && oversized(result.newState)) {
          throw rejected(operation);
        }
        if (result.kind === 'applicationMessage') {
          const from = applicationSender(state, result.newState);
          const sender = from && memberIn(from.tree, from.leafIndex);
          if (!sender) throw new Error('ts-mls accepted an application message of no member');
          const next = settle(result.consumed, result.newState);
          return {
            group: next,
            result: {
              kind: 'application',
              plaintext: result.message,
              authenticatedData: result.aad,
              sender,
            },
          };
        }
        const next = settle(result.consumed, result.newState);
        if (contentType === contentTypes.commit) {
          return {
            group: next,
            result: { kind: 'commit', epoch: next.epoch, removed: !next.active },
          };
        }
        return { group: next, result: { kind: 'proposal' } };
      });
    },

    selfUpdate(group) {
      const operation = 'mls.selfUpdate';
      return replacing(operation, group, async (state) => {
        const out = await commit(operation, state, []);
        return { group: settle(out.consumed, out.state), commit: out.commit };
      });
    },

    removeMembers(group, leafIndices) {
      const operation = 'mls.removeMembers';
      return replacing(operation, group, async (state) => {
        if (!Array.isArray(leafIndices) || leafIndices.length === 0) {
          throw invalidArgument(operation, '"leafIndices" expected at least one leaf index');
        }
        const present = new Set(membersOf(state).map((m) => m.leafIndex));
        for (const index of leafIndices) {
          if (!Number.isSafeInteger(index) || !present.has(index)) {
            throw invalidArgument(operation, `"leafIndices" names no member at ${String(index)}`);
          }
          if (index === state.privatePath.leafIndex) {
            throw invalidArgument(operation, '"leafIndices" cannot remove this member itself');
          }
        }
        const proposals: Proposal[] = [...new Set(leafIndices)].map((removed) => ({
          proposalType: defaultProposalTypes.remove,
          remove: { removed },
        }));
        const out = await commit(operation, state, proposals);
        return { group: settle(out.consumed, out.state), commit: out.commit };
      });
    },

    updateGroupData(group, groupData) {
      const operation = 'mls.updateGroupData';
      return replacing(operation, group, async (state) => {
        const extension = groupDataExtension(operation, groupData);
        const others = state.groupContext.extensions.filter(
          (e) => e.extensionType !== GROUP_DATA_EXTENSION_TYPE,
        );
        const out = await commit(operation, state, [
          {
            proposalType: defaultProposalTypes.group_context_extensions,
            groupContextExtensions: { extensions: [...others, extension] },
          },
        ]);
        return { group: settle(out.consumed, out.state), commit: out.commit };
      });
    },

    proposeLeave(group) {
      const operation = 'mls.proposeLeave';
      return replacing(operation, group, async (state) => {
        let result: Awaited<ReturnType<typeof createProposal>>;
        try {
          result = await createProposal({
            context,
            state,
            proposal: {
              proposalType: defaultProposalTypes.remove,
              remove: { removed: state.privatePath.leafIndex },
            },
          });
        } catch {
          throw rejected(operation, 'leave proposal');
        }
        const message = encodeMessage(result.message);
        return { group: settle(result.consumed, result.newState), message };
      });
    },

    withdrawLeave(group) {
      const state = activeStateOf('mls.withdrawLeave', group);
      const own = state.privatePath.leafIndex;
      const kept: ClientState['unappliedProposals'] = {};
      for (const [ref, entry] of Object.entries(state.unappliedProposals)) {
        const { proposal, senderLeafIndex } = entry;
        const ownLeave =
          senderLeafIndex === own &&
          proposal.proposalType === defaultProposalTypes.remove &&
          'remove' in proposal &&
          proposal.remove.removed === own;
        if (!ownLeave) kept[ref] = entry;
      }
      states.delete(group);
      spent.add(group);
      return handle({ ...state, unappliedProposals: kept });
    },

    pendingRemovals(group) {
      const state = stateOf('mls.pendingRemovals', group);
      const out: number[] = [];
      for (const { proposal } of Object.values(state.unappliedProposals)) {
        if (proposal.proposalType === defaultProposalTypes.remove && 'remove' in proposal) {
          out.push(proposal.remove.removed);
        }
      }
      return out;
    },

    members(group) {
      return membersOf(stateOf('mls.members', group));
    },

    async inspectKeyPackage(publicKeyPackage) {
      const operation = 'mls.inspectKeyPackage';
      const kp = decodePublicKeyPackage(operation, publicKeyPackage);
      const { credential, signaturePublicKey } = kp.leafNode;
      if (!('identity' in credential)) throw rejected(operation, 'key package');
      // Adding it to a throwaway view is what validates it fully; here the identity is only
      // read, and the add that follows runs every check (signature, credential, lifetime).
      // When its MLS lifetime ends: after that, no member can add it (RFC 9420 §7.2).
      const { leafNode } = kp;
      const notAfter =
        leafNode.leafNodeSource === leafNodeSources.key_package
          ? new Date(Number(leafNode.lifetime.notAfter) * 1000)
          : new Date(0);
      return {
        identity: credential.identity.slice(),
        signaturePublicKey: signaturePublicKey.slice(),
        notAfter,
      };
    },

    groupData(group) {
      return groupDataOf(stateOf('mls.groupData', group))?.slice();
    },

    epochOf(group) {
      const { epoch, confirmedTranscriptHash } = stateOf('mls.epochOf', group).groupContext;
      return { epoch, transcriptHash: confirmedTranscriptHash.slice() };
    },

    exportSecret(group, label, context, length) {
      const operation = 'mls.exportSecret';
      const state = activeStateOf(operation, group);
      if (typeof label !== 'string' || label.length === 0 || label.length > 255)
        throw invalidArgument(operation, '"label" expected 1 to 255 characters');
      assertBytes(operation, 'context', context, 0, 64 * 1024);
      if (!Number.isSafeInteger(length) || length < 1 || length > 255)
        throw invalidArgument(operation, '"length" expected 1 to 255 bytes');
      return mlsExporter(state.keySchedule.exporterSecret, label, context, length, cs);
    },

    epochOfGroupInfo(groupInfo) {
      const operation = 'mls.epochOfGroupInfo';
      const msg = decodeMessage(operation, groupInfo, 'group info');
      if (msg.wireformat !== wireformats.mls_group_info) throw rejected(operation, 'group info');
      const { epoch, confirmedTranscriptHash } = msg.groupInfo.groupContext;
      return { epoch, transcriptHash: confirmedTranscriptHash.slice() };
    },

    async groupInfo(group) {
      const state = activeStateOf('mls.groupInfo', group);
      const info = await createGroupInfoWithExternalPubAndRatchetTree(state, [], cs);
      return encodeMessage({
        wireformat: wireformats.mls_group_info,
        version: protocolVersions.mls10,
        groupInfo: info,
      });
    },

    async joinExternal(groupInfo, keyPackage, joinOptions = {}) {
      const operation = 'mls.joinExternal';
      const { publicPackage, privatePackage } = decodeKeyPackage(operation, keyPackage);
      const msg = decodeMessage(operation, groupInfo, 'group info');
      if (msg.wireformat !== wireformats.mls_group_info) throw rejected(operation, 'group info');
      // conversation-v1 §1: suite 1 only. ts-mls checks a Welcome's GroupInfo against the key
      // package's suite, but not an external join's: the state would carry the other suite's
      // id in its GroupContext (and importState refuses such a state).
      if (msg.groupInfo.groupContext.cipherSuite !== MLS_DEFAULT_CIPHERSUITE) {
        throw rejected(operation, 'group info');
      }
      let out: Awaited<ReturnType<typeof joinGroupExternal>>;
      try {
        out = await joinGroupExternal({
          context,
          groupInfo: msg.groupInfo,
          keyPackage: publicPackage,
          privateKeys: privatePackage,
          resync: joinOptions.resync === true,
        });
      } catch {
        throw rejected(operation, 'group info');
      }
      if (oversized(out.newState)) throw rejected(operation, 'group info');
      return {
        group: handle(out.newState),
        commit: encodeMessage({
          wireformat: wireformats.mls_public_message,
          version: protocolVersions.mls10,
          publicMessage: out.publicMessage,
        }),
      };
    },

    exportState(group) {
      return versioned(encode(clientStateEncoder, stateOf('mls.exportState', group)));
    },

    importState(bytes) {
      const operation = 'mls.importState';
      assertBytes(operation, 'bytes', bytes, 1, MAX_GROUP_STATE_LENGTH);
      if (bytes[0] !== MLS_STATE_VERSION) {
        throw new ProtocolError(
          'UNSUPPORTED_VERSION',
          operation,
          `group state version ${bytes[0]}`,
        );
      }
      let state: ClientState | undefined;
      try {
        state = decodeWhole(clientStateDecoder, bytes.slice(1));
      } catch {
        state = undefined;
      }
      if (!state || state.groupContext.cipherSuite !== MLS_DEFAULT_CIPHERSUITE) {
        throw new ProtocolError('INVALID_GROUP_STATE', operation, 'not an mls group state');
      }
      return handle(state);
    },
  };
}
