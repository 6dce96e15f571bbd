// Generates field-v1.json from spec/field-v1.md with node:crypto only, independently of src/.
// Deterministic (keys and nonces from SHA-256 of labels). Kept forever: add, never change.
//
//   npx tsx packages/fields/test/vectors/generate.ts
import { createCipheriv, createHash, hkdfSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const det = (label: string, n: number) =>
  createHash('sha256').update(`coffer-field-vectors/${label}`).digest().subarray(0, n);
const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const lp = (s: string) => Buffer.concat([u16(Buffer.byteLength(s)), Buffer.from(s, 'utf8')]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

interface Ctx {
  tenant?: string;
  table: string;
  column: string;
  rowId: string;
}
const context = (c: Ctx) =>
  Buffer.concat([
    Buffer.from([1]),
    c.tenant === undefined ? Buffer.from([0]) : Buffer.concat([Buffer.from([1]), lp(c.tenant)]),
    lp(c.table),
    lp(c.column),
    lp(c.rowId),
  ]);

function columnKey(dataKey: Buffer, table: string, column: string): Buffer {
  const info = Buffer.concat([Buffer.from('coffer/v1/field-key\0'), lp(table), lp(column)]);
  return Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), info, 32));
}

function seal(
  dataKey: Buffer,
  version: number,
  c: Ctx,
  plaintext: Buffer,
  nonceLabel: string,
): Buffer {
  const kid = u32(version);
  const header = Buffer.concat([Buffer.from([0x01, 0x01, kid.length]), kid]); // envelope-v1 header
  const nonce = det(nonceLabel, 12);
  const cipher = createCipheriv('aes-256-gcm', columnKey(dataKey, c.table, c.column), nonce);
  cipher.setAAD(Buffer.concat([header, context(c)]));
  return Buffer.concat([
    header,
    nonce,
    cipher.update(plaintext),
    cipher.final(),
    cipher.getAuthTag(),
  ]);
}

const text = (envelope: Buffer) => `cf1:${envelope.toString('base64url')}`;
const binary = (envelope: Buffer) =>
  Buffer.concat([Buffer.from([0xcf, 0x01]), envelope]).toString('hex');
const f64 = (x: number) => {
  const b = Buffer.alloc(8);
  b.writeDoubleBE(x);
  return b;
};
const i64 = (x: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(x);
  return b;
};
const plain = (type: number, body: Buffer, pad?: number) => {
  if (pad === undefined) return Buffer.concat([Buffer.from([type, 0]), body]);
  const n = Math.ceil((body.length + 3) / pad) * pad;
  const out = Buffer.alloc(n);
  out[0] = type;
  out[1] = 1;
  body.copy(out, 2);
  out[2 + body.length] = 0x80;
  return out;
};

const keys = { 1: det('data-key-1', 32), 2: det('data-key-2', 32) };
const users: Ctx = { table: 'users', column: 'email', rowId: '42' };
const vectors: object[] = [];
type Expect = { value: { type: string; json: unknown } } | { error: string };
const add = (id: string, stored: string, form: 'text' | 'binary', ctx: Ctx, expect: Expect) =>
  vectors.push({ id, form, stored, context: ctx, ...expect });

const cases: [string, number, Buffer, { type: string; json: unknown }, number?][] = [
  ['string', 0x01, Buffer.from('alice@example.com'), { type: 'string', json: 'alice@example.com' }],
  ['string-empty', 0x01, Buffer.alloc(0), { type: 'string', json: '' }],
  ['number', 0x02, f64(-1.5), { type: 'number', json: -1.5 }],
  ['number-neg-zero', 0x02, f64(-0), { type: 'number', json: '-0' }],
  [
    'bigint',
    0x03,
    Buffer.from('-12345678901234567890'),
    { type: 'bigint', json: '-12345678901234567890' },
  ],
  ['boolean', 0x04, Buffer.from([1]), { type: 'boolean', json: true }],
  ['date', 0x05, i64(1795752000000n), { type: 'date', json: 1795752000000 }],
  [
    'json',
    0x06,
    Buffer.from('{"a":[1,2,{"b":null}]}'),
    { type: 'json', json: { a: [1, 2, { b: null }] } },
  ],
  ['bytes', 0x07, Buffer.from([0, 255, 7]), { type: 'bytes', json: '00ff07' }],
  ['padded', 0x01, Buffer.from('hi'), { type: 'string', json: 'hi' }, 32],
];
for (const [name, type, body, value, pad] of cases) {
  const env = seal(keys[1], 1, users, plain(type, body, pad), `nonce/${name}`);
  add(`${name}-text`, text(env), 'text', users, { value });
  add(`${name}-binary`, binary(env), 'binary', users, { value });
}
const tenantCtx: Ctx = { tenant: 'acme', table: 'users', column: 'email', rowId: '42' };
add(
  'tenant',
  text(seal(keys[1], 1, tenantCtx, plain(1, Buffer.from('t')), 'nonce/tenant')),
  'text',
  tenantCtx,
  { value: { type: 'string', json: 't' } },
);
add(
  'key-version-2',
  text(seal(keys[2], 2, users, plain(1, Buffer.from('v2')), 'nonce/v2')),
  'text',
  users,
  { value: { type: 'string', json: 'v2' } },
);

// Negative cases.
const good = seal(keys[1], 1, users, plain(1, Buffer.from('secret')), 'nonce/neg');
add('moved-row', text(good), 'text', { ...users, rowId: '43' }, { error: 'DECRYPTION_FAILED' });
add(
  'moved-column',
  text(good),
  'text',
  { ...users, column: 'phone' },
  { error: 'DECRYPTION_FAILED' },
);
add('moved-tenant', text(good), 'text', tenantCtx, { error: 'DECRYPTION_FAILED' });
add(
  'tag-flipped',
  text(Buffer.concat([good.subarray(0, -1), Buffer.from([good.at(-1)! ^ 1])])),
  'text',
  users,
  { error: 'DECRYPTION_FAILED' },
);
add('truncated', text(good.subarray(0, good.length - 1)), 'text', users, {
  error: 'DECRYPTION_FAILED',
});
add('bad-base64url', `cf1:${good.toString('base64')}+/`, 'text', users, {
  error: 'DECRYPTION_FAILED',
});
add('text-version-2', `cf2:${good.toString('base64url')}`, 'text', users, {
  error: 'UNSUPPORTED_VERSION',
});
add('binary-version-2', `cf02${good.toString('hex')}`, 'binary', users, {
  error: 'UNSUPPORTED_VERSION',
});
add('plaintext-text', 'alice@example.com', 'text', users, { error: 'PLAINTEXT_VALUE' });
add('plaintext-binary', '0102', 'binary', users, { error: 'PLAINTEXT_VALUE' });
add(
  'unknown-key-version',
  text(seal(keys[1], 3, users, plain(1, Buffer.from('x')), 'nonce/v3')),
  'text',
  users,
  { error: 'UNKNOWN_KEY' },
);
add(
  'bad-type',
  text(seal(keys[1], 1, users, plain(0x09, Buffer.from('x')), 'nonce/type')),
  'text',
  users,
  { error: 'DECRYPTION_FAILED' },
);
add(
  'bad-boolean',
  text(seal(keys[1], 1, users, plain(0x04, Buffer.from([2])), 'nonce/bool')),
  'text',
  users,
  { error: 'DECRYPTION_FAILED' },
);
add(
  'non-canonical-bigint',
  text(seal(keys[1], 1, users, plain(0x03, Buffer.from('007')), 'nonce/big')),
  'text',
  users,
  { error: 'DECRYPTION_FAILED' },
);
add(
  'bad-padding',
  text(seal(keys[1], 1, users, Buffer.from([1, 1, 0x68, 0x69, 0, 0]), 'nonce/pad')),
  'text',
  users,
  { error: 'DECRYPTION_FAILED' },
);
add(
  'bad-utf8',
  text(seal(keys[1], 1, users, plain(1, Buffer.from([0xc0, 0xaf])), 'nonce/utf8')),
  'text',
  users,
  { error: 'DECRYPTION_FAILED' },
);
add(
  'kid-length-3',
  text(
    (() => {
      const kid = Buffer.from([0, 0, 1]);
      const header = Buffer.concat([Buffer.from([1, 1, 3]), kid]);
      const nonce = det('n3', 12);
      const c = createCipheriv('aes-256-gcm', columnKey(keys[1], 'users', 'email'), nonce);
      c.setAAD(Buffer.concat([header, context(users)]));
      return Buffer.concat([
        header,
        nonce,
        c.update(plain(1, Buffer.from('x'))),
        c.final(),
        c.getAuthTag(),
      ]);
    })(),
  ),
  'text',
  users,
  { error: 'DECRYPTION_FAILED' },
);

const doc = {
  format: 'coffer field v1 (spec/field-v1.md)',
  generator: 'packages/fields/test/vectors/generate.ts',
  dataKeys: { 1: keys[1].toString('hex'), 2: keys[2].toString('hex') },
  notes:
    'binary-form values are hex; expected values: number "-0" is negative zero, date is epoch ms, bytes is hex',
  vectors,
};
writeFileSync(
  join(dirname(fileURLToPath(import.meta.url)), 'field-v1.json'),
  `${JSON.stringify(doc, null, 2)}\n`,
);
console.log(`field-v1.json: ${vectors.length} vectors`);
