// Case 2: blind-index computations (normalise, HMAC-SHA256, truncate to 32 bits, hex) over
// 10,000 distinct emails, against the same hashing written by hand with node:crypto.
import * as nc from 'node:crypto';
import { assertEqual, assertTrue, type CaseFactory, cycle } from '@coffer/bench-kit';
import type { BlindIndexSpec } from '../src/index.js';
import { makeEmails, setupOurs } from './data.js';

const NAME = 'blind-index/email-21B/32bit/node-hmac';

const SPEC: BlindIndexSpec = {
  table: 'customers',
  column: 'email',
  name: 'email_eq',
  bits: 32,
  normalize: ['trim', 'casefold'],
};

function lp(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

/** The index's key, derived from the index root key as spec §6 says, independently of our code. */
function indexKeyByHand(root: Uint8Array): Buffer {
  const info = Buffer.concat([
    Buffer.from('coffer/v1/blind-index\0'),
    lp(SPEC.table),
    lp(SPEC.column),
    lp(SPEC.name),
  ]);
  return Buffer.from(nc.hkdfSync('sha256', root, Buffer.alloc(0), info, 32));
}

/** Spec §6's full message for one string value with no tenant, then HMAC, 32 bits, hex. */
function specIndexByHand(key: Buffer, value: string): string {
  const encoded = Buffer.concat([Buffer.of(0x01, 0x00), Buffer.from(value, 'utf8')]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(encoded.length);
  const message = Buffer.concat([Buffer.of(0x00), len, encoded]);
  return nc.createHmac('sha256', key).update(message).digest().toString('hex', 0, 4);
}

export function blindIndexCases(): CaseFactory[] {
  return [false, true].map((async) => ({
    name: async ? `${NAME}/async` : NAME,
    async build() {
      const ours = await setupOurs();
      const emails = makeEmails();
      const key = indexKeyByHand(await ours.fields.keyBytes('index', 1));
      // What a developer writes by hand: normalise, HMAC the UTF-8, keep 4 bytes as hex.
      const raw = (email: string) =>
        nc
          .createHmac('sha256', key)
          .update(email.trim().toLowerCase())
          .digest()
          .toString('hex', 0, 4);
      const nextOurs = cycle(emails);
      const nextRaw = cycle(emails);
      await ours.indexer.preload([SPEC]);
      return {
        name: async ? `${NAME}/async` : NAME,
        unit: 'indexes/s',
        ours: async
          ? {
              label: "createBlindIndexer compute (bits 32, normalize ['trim','casefold'])",
              op: () => ours.indexer.compute(nextOurs(), SPEC),
            }
          : {
              label: "createBlindIndexer computeSync (bits 32, normalize ['trim','casefold'])",
              op: () => ours.indexer.computeSync(nextOurs(), SPEC),
            },
        baseline: {
          label: "node:crypto createHmac('sha256') of trim().toLowerCase(), 4 bytes hex",
          op: () => raw(nextRaw()),
        },
        seconds: 0.5,
        ...(async ? {} : { goal: { value: 300_000 } }),
        async check() {
          const seen = new Set<string>();
          for (const email of emails) {
            const index = await ours.indexer.compute(email, SPEC);
            assertTrue('ours is 32 bits of hex', /^[0-9a-f]{8}$/.test(index));
            assertEqual('sync equals async', ours.indexer.computeSync(email, SPEC), index);
            seen.add(index);
            assertEqual(
              `ours equals spec §6 by hand for ${email}`,
              index,
              specIndexByHand(key, email.toLowerCase()),
            );
            assertTrue('baseline is 32 bits of hex', /^[0-9a-f]{8}$/.test(raw(email)));
          }
          // 10,000 values in 2^32: a collision is possible but very unlikely (p ~ 1%).
          assertTrue('distinct emails give (almost all) distinct indexes', seen.size > 9_990);
          const messy = `  ${emails[1]!.toUpperCase()}\t`;
          assertEqual(
            'ours normalises',
            await ours.indexer.compute(messy, SPEC),
            await ours.indexer.compute(emails[1]!, SPEC),
          );
          assertEqual('baseline normalises', raw(messy), raw(emails[1]!));
        },
      };
    },
  }));
}
