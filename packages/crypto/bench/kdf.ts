// Case 7: the small symmetric ops an MLS provider makes many of: HMAC-SHA256 of 64 bytes and
// HKDF-SHA256 to 32 bytes, against node:crypto called directly.
import * as nc from 'node:crypto';
import { assertSameBytes, type CaseFactory, filler } from '@coffer/bench-kit';
import { hkdf, hmac, utf8Encode } from '../src/index.js';

export function kdfCases(): CaseFactory[] {
  return [
    {
      name: 'hmac-sha256/64B',
      async build() {
        const key = filler(32, 3);
        const data = filler(64, 5);
        const baseline = () => nc.createHmac('sha256', key).update(data).digest();
        return {
          name: 'hmac-sha256/64B',
          unit: 'ops/s',
          ours: { label: "hmac('SHA-256')", op: () => hmac('SHA-256', key, data) },
          baseline: { label: 'node:crypto createHmac sha256', op: baseline },
          seconds: 0.4,
          async check() {
            assertSameBytes('hmac', await hmac('SHA-256', key, data), baseline());
          },
        };
      },
    },
    {
      name: 'hkdf-sha256/32B',
      async build() {
        const ikm = filler(32, 3);
        const salt = filler(32, 4);
        const context = filler(16, 6);
        const label = 'coffer/v1/bench';
        // hkdf's info is label || 0x00 || context; the baseline passes the same bytes.
        const info = new Uint8Array([...utf8Encode(label), 0, ...context]);
        const options = { label, length: 32, salt, context };
        const baseline = () => nc.hkdfSync('sha256', ikm, salt, info, 32);
        return {
          name: 'hkdf-sha256/32B',
          unit: 'ops/s',
          ours: { label: 'hkdf (label + context, 32 B)', op: () => hkdf(ikm, options) },
          baseline: { label: 'node:crypto hkdfSync sha256', op: baseline },
          seconds: 0.4,
          async check() {
            assertSameBytes('hkdf', await hkdf(ikm, options), new Uint8Array(baseline()));
          },
        };
      },
    },
  ];
}
