// Case 1: one record's field encrypted and decrypted again (what a write then a read of the row
// costs), over 10,000 records with a 200-byte string each, against the same job done by hand with
// node:crypto and by the field-encryption libraries people use today.
import * as nc from 'node:crypto';
import {
  assertEqual,
  assertTrue,
  type Case,
  type CaseFactory,
  cycle,
  loadPeer,
  type Side,
} from '@coffer/bench-kit';
import type { FieldContext } from '../src/index.js';
import { type BenchRecord, COLUMN, makeRecords, type Ours, setupOurs, TABLE } from './data.js';

const TAG = 16;
const SECONDS = 0.5;
const PREFIX = 'roundtrip/string-200B';

/** AES-256-GCM as a developer writes it with node:crypto: iv || ct || tag, in a Buffer. */
function rawAesGcm(key: Buffer) {
  const seal = (value: string): Buffer => {
    const iv = nc.randomBytes(12);
    const c = nc.createCipheriv('aes-256-gcm', key, iv);
    return Buffer.concat([iv, c.update(value, 'utf8'), c.final(), c.getAuthTag()]);
  };
  const open = (sealed: Buffer): string => {
    const d = nc.createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    const plaintext = d.update(sealed.subarray(12, sealed.length - TAG));
    d.final();
    return plaintext.toString('utf8');
  };
  return {
    seal,
    open,
    /** Text storage: the same bytes as standard base64. */
    sealText: (value: string): string => seal(value).toString('base64'),
    openText: (text: string): string => open(Buffer.from(text, 'base64')),
  };
}

/** lp(x) = uint16_be(len) || utf8(x) (spec/field-v1.md §1), written out independently. */
function lp(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

/**
 * Opens one of our envelopes with plain node:crypto, from the spec alone: evidence that ours does
 * the same AEAD job as the baseline, plus the binding to table, column and row (spec §2) and the
 * typed value encoding (spec §3).
 */
function openOursByHand(columnKey: Buffer, envelope: Uint8Array, ctx: FieldContext): string {
  const env = Buffer.from(envelope.buffer, envelope.byteOffset, envelope.byteLength);
  const h = 3 + env[2]!;
  const context = Buffer.concat([
    Buffer.of(0x01, 0x00),
    lp(ctx.table),
    lp(ctx.column),
    lp(String(ctx.rowId)),
  ]);
  const d = nc.createDecipheriv('aes-256-gcm', columnKey, env.subarray(h, h + 12));
  d.setAAD(Buffer.concat([env.subarray(0, h), context]));
  d.setAuthTag(env.subarray(env.length - TAG));
  const plaintext = Buffer.concat([d.update(env.subarray(h + 12, env.length - TAG)), d.final()]);
  assertTrue('our plaintext is a string without padding', plaintext[0] === 1 && plaintext[1] === 0);
  return plaintext.subarray(2).toString('utf8');
}

/** The column key, derived from the data key as spec §1 says, independently of our code. */
async function columnKeyByHand(ours: Ours): Promise<Buffer> {
  const dataKey = await ours.fields.keyBytes('data', 1);
  const info = Buffer.concat([Buffer.from('coffer/v1/field-key\0'), lp(TABLE), lp(COLUMN)]);
  return Buffer.from(nc.hkdfSync('sha256', dataKey, Buffer.alloc(0), info, 32));
}

/** Our round trip through the synchronous API (Node) or the async one (every platform). */
function oursSide(ours: Ours, records: BenchRecord[], format: 'text' | 'binary', api: Api): Side {
  const next = cycle(records);
  const { fields } = ours;
  const options = { format } as const;
  return {
    label:
      api === 'sync'
        ? `createFieldCipher encryptSync+decryptSync (${format})`
        : `createFieldCipher encrypt+decrypt, async (${format})`,
    op:
      api === 'sync'
        ? () => {
            const r = next();
            return fields.decryptSync(fields.encryptSync(r.value, r.context, options), r.context);
          }
        : async () => {
            const r = next();
            return fields.decrypt(await fields.encrypt(r.value, r.context, options), r.context);
          },
  };
}

type Api = 'sync' | 'async';

/** Round trips every record through `roundTrip` and checks each comes back equal. */
async function checkAll(
  what: string,
  records: BenchRecord[],
  roundTrip: (r: BenchRecord) => unknown,
): Promise<void> {
  for (const r of records) {
    const back = await roundTrip(r);
    assertEqual(`${what}: round trip of row ${String(r.context.rowId)}`, back, r.value);
  }
}

async function checkOurs(ours: Ours, records: BenchRecord[], format: 'text' | 'binary') {
  const { fields } = ours;
  const key = await columnKeyByHand(ours);
  await checkAll(`ours, sync (${format})`, records, (r) =>
    fields.decryptSync(fields.encryptSync(r.value, r.context, { format }), r.context),
  );
  await checkAll(`ours (${format})`, records, async (r) => {
    const stored =
      format === 'text'
        ? await fields.encrypt(r.value, r.context)
        : await fields.encrypt(r.value, r.context, { format: 'binary' });
    return fields.decrypt(stored, r.context);
  });
  // Spot checks: node:crypto opens what we store, and a value moved to another row does not open.
  for (const r of records.slice(0, 100)) {
    const stored =
      format === 'text'
        ? await fields.encrypt(r.value, r.context)
        : await fields.encrypt(r.value, r.context, { format: 'binary' });
    let envelope: Uint8Array;
    if (typeof stored === 'string') {
      assertTrue('text prefix cf1:', stored.startsWith('cf1:'));
      envelope = Buffer.from(stored.slice(4), 'base64url');
    } else {
      assertTrue('binary magic 0xcf 0x01', stored[0] === 0xcf && stored[1] === 1);
      envelope = stored.subarray(2);
    }
    assertEqual('node:crypto opens ours', openOursByHand(key, envelope, r.context), r.value);
    const moved = { ...r.context, rowId: Number(r.context.rowId) + 1 };
    const refused = await fields.decrypt(stored, moved).then(
      () => false,
      () => true,
    );
    assertTrue('a value moved to another row does not decrypt', refused);
  }
}

function rawCase(format: 'text' | 'binary', api: Api = 'sync'): CaseFactory {
  const name = `${PREFIX}/${format}/node-aes-gcm${api === 'async' ? '/async' : ''}`;
  return {
    name,
    async build(): Promise<Case> {
      const ours = await setupOurs();
      const records = makeRecords();
      const raw = rawAesGcm(nc.randomBytes(32));
      const next = cycle(records);
      const baseline: Side =
        format === 'text'
          ? {
              label: 'node:crypto aes-256-gcm, randomBytes(12) iv, base64(iv||ct||tag)',
              op: () => raw.openText(raw.sealText(next().value)),
            }
          : {
              label: 'node:crypto aes-256-gcm, randomBytes(12) iv, iv||ct||tag bytes',
              op: () => raw.open(raw.seal(next().value)),
            };
      return {
        name,
        unit: 'records/s',
        ours: oursSide(ours, records, format, api),
        baseline,
        seconds: SECONDS,
        // The async API (for WebCrypto too) pays for its promises: informational.
        goal: api === 'sync' ? { ratio: 0.9 } : undefined,
        async check() {
          await checkOurs(ours, records, format);
          await checkAll(`${name}: baseline`, records, (r) =>
            format === 'text' ? raw.openText(raw.sealText(r.value)) : raw.open(raw.seal(r.value)),
          );
        },
      };
    },
  };
}

/** A peer library's round trip, set up once; undefined when it is not installed. */
interface Peer {
  readonly label: string;
  readonly roundTrip: (r: BenchRecord) => unknown;
}

function peerCase(slug: string, setup: (name: string) => Promise<Peer | undefined>): CaseFactory {
  const name = `${PREFIX}/text/${slug}`;
  return {
    name,
    async build(): Promise<Case | undefined> {
      const peer = await setup(name);
      if (!peer) return undefined;
      const ours = await setupOurs();
      const records = makeRecords();
      const next = cycle(records);
      return {
        name,
        unit: 'records/s',
        ours: oursSide(ours, records, 'text', 'sync'),
        baseline: { label: peer.label, op: () => peer.roundTrip(next()) },
        seconds: SECONDS,
        goal: { ratio: 1 },
        async check() {
          await checkOurs(ours, records, 'text');
          await checkAll(`${name}: ${peer.label}`, records, peer.roundTrip);
        },
      };
    },
  };
}

// The slices of the peers' APIs used here (they are optional: bench/package.json).

interface CloakModule {
  generateKey(): string;
  parseKeySync(key: string): CloakParsedKey;
  makeKeychainSync(keys: string[]): object;
  findKeyForMessage(message: string, keychain: object): CloakParsedKey;
  encryptStringSync(input: string, key: CloakParsedKey): string;
  decryptStringSync(input: string, key: CloakParsedKey): string;
}
interface CloakParsedKey {
  readonly raw: unknown;
  readonly fingerprint: string;
}

/** @47ng/cloak as prisma-field-encryption drives it: sync calls, key found by fingerprint. */
async function cloakPeer(caseName: string): Promise<Peer | undefined> {
  const cloak = await loadPeer<CloakModule>('@47ng/cloak', caseName, import.meta.url);
  if (!cloak) return undefined;
  const serialized = cloak.generateKey();
  const key = cloak.parseKeySync(serialized);
  const keychain = cloak.makeKeychainSync([serialized]);
  return {
    label: '@47ng/cloak encryptStringSync + findKeyForMessage/decryptStringSync',
    roundTrip: (r) => {
      const stored = cloak.encryptStringSync(r.value, key);
      return cloak.decryptStringSync(stored, cloak.findKeyForMessage(stored, keychain));
    },
  };
}

interface CipherSweetModule {
  CipherSweet: new (provider: object, backend?: object) => object;
  StringProvider: new (hexKey: string) => object;
  FIPSCrypto: new () => object;
  EncryptedField: {
    build(engine: object, table: string, field: string): Promise<CipherSweetField>;
  };
}
interface CipherSweetField {
  encryptValue(plaintext: string, aad?: string): Promise<string>;
  decryptValue(ciphertext: string, aad?: string): Promise<Uint8Array>;
}

/**
 * ciphersweet-js's EncryptedField with a local (string) key provider, the row id as its AAD (its
 * way of binding a value to its row): default back end BoringCrypto (XChaCha20 + BLAKE2b-MAC),
 * or FIPSCrypto (AES-256-CTR + HMAC-SHA384 through node:crypto).
 */
function cipherSweetPeer(backend: 'default' | 'fips') {
  return async (caseName: string): Promise<Peer | undefined> => {
    const cs = await loadPeer<CipherSweetModule>('ciphersweet-js', caseName, import.meta.url);
    if (!cs) return undefined;
    const provider = new cs.StringProvider(nc.randomBytes(32).toString('hex'));
    const engine =
      backend === 'fips'
        ? new cs.CipherSweet(provider, new cs.FIPSCrypto())
        : new cs.CipherSweet(provider);
    const field = await cs.EncryptedField.build(engine, TABLE, COLUMN);
    const decoder = new TextDecoder();
    return {
      label: `ciphersweet-js EncryptedField encryptValue+decryptValue (${backend === 'fips' ? 'FIPSCrypto' : 'BoringCrypto, its default'}), row id as AAD`,
      roundTrip: async (r) => {
        const aad = String(r.context.rowId);
        return decoder.decode(
          await field.decryptValue(await field.encryptValue(r.value, aad), aad),
        );
      },
    };
  };
}

interface TypeormEncryptedModule {
  EncryptionTransformer: new (options: {
    key: string;
    algorithm: string;
    ivLength: number;
  }) => { to(value: string): string; from(value: string): string };
}

/** typeorm-encrypted's column transformer, called as TypeORM would (`to` on write, `from` on read). */
async function typeormEncryptedPeer(caseName: string): Promise<Peer | undefined> {
  const te = await loadPeer<TypeormEncryptedModule>('typeorm-encrypted', caseName, import.meta.url);
  if (!te) return undefined;
  const transformer = new te.EncryptionTransformer({
    key: nc.randomBytes(32).toString('hex'),
    algorithm: 'aes-256-gcm',
    ivLength: 12,
  });
  return {
    label: 'typeorm-encrypted EncryptionTransformer to+from (aes-256-gcm, 12-byte iv)',
    roundTrip: (r) => transformer.from(transformer.to(r.value)),
  };
}

export function roundTripCases(): CaseFactory[] {
  return [
    rawCase('text'),
    rawCase('binary'),
    rawCase('text', 'async'),
    rawCase('binary', 'async'),
    peerCase('cloak', cloakPeer),
    peerCase('ciphersweet', cipherSweetPeer('default')),
    peerCase('ciphersweet-fips', cipherSweetPeer('fips')),
    peerCase('typeorm-encrypted', typeormEncryptedPeer),
  ];
}
