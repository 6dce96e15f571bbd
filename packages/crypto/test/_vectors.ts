// Locates and loads the external test vectors in ../shared/vectors (beside the repository).
// Where they are absent (a newcomer's clone without shared/), vector tests skip with a notice
// naming them; under CI (CI=true) absence is a failure, since CI always has them.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const VECTORS_DIR = process.env.COFFER_VECTORS_DIR ?? resolve(repoRoot, '../shared/vectors');
export const vectorsAvailable = existsSync(VECTORS_DIR);

if (!vectorsAvailable) {
  if (process.env.CI === 'true') throw new Error(`external test vectors missing at ${VECTORS_DIR}`);
  console.warn(
    `NOTICE: external test vectors not found at ${VECTORS_DIR}; vector tests are skipped`,
  );
}

/** Parses one JSON file under the vectors directory, e.g. `wycheproof/x25519_test.json`. */
export function loadVectors<T = unknown>(relativePath: string): T {
  return JSON.parse(readFileSync(resolve(VECTORS_DIR, relativePath), 'utf8')) as T;
}

/** Hex to bytes for vector files (which may use either case). */
export function hex(text: string): Uint8Array {
  if (text.length % 2 !== 0) throw new Error('odd hex in vector file');
  return Uint8Array.from(text.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
}
