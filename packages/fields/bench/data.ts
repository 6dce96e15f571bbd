// The data every case runs over, and our field cipher set up as an application would have it:
// a local provider, a keyring wrapped by it, keys already unwrapped (warm).
import { generateAeadKey } from '@coffer/crypto';
import {
  createBlindIndexer,
  createFieldCipher,
  createKeyring,
  createLocalProvider,
  type FieldCipher,
  type FieldContext,
  type Keyring,
} from '../src/index.js';

/** Records per data set: every op takes the next one, round-robin. */
export const RECORDS = 10_000;
/** Bytes of the string field each record carries (ASCII, so also its UTF-8 length). */
export const FIELD_BYTES = 200;

export const TABLE = 'customers';
export const COLUMN = 'notes';

export interface BenchRecord {
  readonly value: string;
  readonly context: FieldContext;
}

/** 10,000 records, each with its own row id and a distinct 200-byte string in one column. */
export function makeRecords(): BenchRecord[] {
  const filler = 'The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs. ';
  const out: BenchRecord[] = [];
  for (let i = 0; i < RECORDS; i++) {
    const head = `record ${i + 1}: `;
    const value = (head + filler.repeat(3)).slice(0, FIELD_BYTES);
    out.push({ value, context: { table: TABLE, column: COLUMN, rowId: i + 1 } });
  }
  return out;
}

/** 10,000 distinct emails of 21 bytes, mixed case so that casefolding has work to do. */
export function makeEmails(): string[] {
  const out: string[] = [];
  for (let i = 0; i < RECORDS; i++) out.push(`User${String(i).padStart(5, '0')}@Example.com`);
  return out;
}

export interface Ours {
  readonly fields: FieldCipher;
  readonly keyring: Keyring;
  readonly indexer: ReturnType<typeof createBlindIndexer>;
}

/** Our field cipher and blind indexer over a fresh keyring, with every key already unwrapped. */
export async function setupOurs(): Promise<Ours> {
  const provider = await createLocalProvider({ 'bench-kek': generateAeadKey() });
  const keyring = await createKeyring(provider, 'bench-kek');
  const fields = createFieldCipher(keyring, provider);
  const indexer = createBlindIndexer(keyring, fields);
  // Warm: unwrap both keys and derive the column key once, as a running application has.
  const context = { table: TABLE, column: COLUMN, rowId: 0 };
  await fields.decrypt(await fields.encrypt('warm', context), context);
  await fields.keyBytes('index', 1);
  await fields.preload([{ table: TABLE, column: COLUMN }]); // for encryptSync/decryptSync

  return { fields, keyring, indexer };
}
