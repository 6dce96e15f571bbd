import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { PROTOCOL_ERROR_CODES, ProtocolError, type ProtocolErrorCode } from '../src/index.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const srcDir = new URL('../src/', import.meta.url);
const sources = readdirSync(srcDir, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.ts'))
  .map((f) => readFileSync(new URL(f, srcDir), 'utf8'));

describe('error codes', () => {
  test('the README documents exactly the codes the package has', () => {
    const section = readme.split('## Error codes')[1]?.split('\n## ')[0] ?? '';
    const documented = [...section.matchAll(/^\|\s*`([A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual([...PROTOCOL_ERROR_CODES].sort());
  });

  test('every code is thrown somewhere in src/, and only known codes are', () => {
    const used = new Set<string>();
    for (const text of sources) {
      for (const m of text.matchAll(/ProtocolError\(\s*'([A-Z_]+)'/g)) used.add(m[1]!);
    }
    used.add('INVALID_ARGUMENT'); // through invalidArgument()
    for (const code of used) expect(PROTOCOL_ERROR_CODES).toContain(code);
    expect([...used].sort()).toEqual([...PROTOCOL_ERROR_CODES].sort());
  });

  test('the type and the list agree', () => {
    const all: Record<ProtocolErrorCode, true> = Object.fromEntries(
      PROTOCOL_ERROR_CODES.map((c) => [c, true]),
    ) as Record<ProtocolErrorCode, true>;
    expect(Object.keys(all)).toHaveLength(21);
  });

  test('ProtocolError is a real Error with code, operation and is()', () => {
    const err = new ProtocolError('MANIFEST_FORK', 'manifest.verify', 'another manifest at seq 3');
    expect(err).toBeInstanceOf(Error);
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.name).toBe('ProtocolError');
    expect(err.code).toBe('MANIFEST_FORK');
    expect(err.operation).toBe('manifest.verify');
    expect(err.message).toBe('manifest.verify: another manifest at seq 3');
    expect(ProtocolError.is(err)).toBe(true);
    expect(ProtocolError.is(err, 'MANIFEST_FORK')).toBe(true);
    expect(ProtocolError.is(err, 'MANIFEST_GAP')).toBe(false);
    const foreign = { name: 'ProtocolError', code: 'BAD_SIGNATURE', operation: 'x', message: 'm' };
    expect(ProtocolError.is(foreign, 'BAD_SIGNATURE')).toBe(true);
    for (const other of [
      new Error('x'),
      null,
      undefined,
      'MANIFEST_FORK',
      { name: 'ProtocolError', code: 'NOPE', operation: 'x' },
      { name: 'CryptoError', code: 'DECRYPTION_FAILED', operation: 'x' },
    ]) {
      expect(ProtocolError.is(other)).toBe(false);
    }
  });

  test('messages are lowercase after the operation', () => {
    for (const text of sources) {
      for (const m of text.matchAll(/ProtocolError\(\s*'[A-Z_]+',\s*\w+,\s*[`'"]([^`'"]*)/g)) {
        expect(m[1]![0], m[1]).not.toMatch(/[A-Z]/);
      }
    }
  });
});
