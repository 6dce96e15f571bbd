// The browser twin of _vectors.ts, with the same API and behaviour, for the crypto:chromium
// project (vitest.config.ts swaps it in for every import of _vectors.ts). A browser has no
// file system: the config's `coffer:browser-vectors` plugin serves the vectors directory from
// the test server, and this module reads it with synchronous requests so that loadVectors
// stays synchronous, as test files call it while collecting tests.
import type * as NodeVectors from './_vectors.js';

const ENDPOINT = '/@coffer/vectors/';

function get(path: string): string {
  const xhr = new XMLHttpRequest();
  xhr.open('GET', ENDPOINT + path, false);
  xhr.send();
  if (xhr.status !== 200) {
    throw new Error(`vector file request ${path} failed: ${xhr.status} ${xhr.responseText}`);
  }
  return xhr.responseText;
}

const info = JSON.parse(get('')) as { dir: string; available: boolean; ci: boolean };

export const VECTORS_DIR: typeof NodeVectors.VECTORS_DIR = info.dir;
export const vectorsAvailable: typeof NodeVectors.vectorsAvailable = info.available;

if (!vectorsAvailable) {
  if (info.ci) throw new Error(`external test vectors missing at ${VECTORS_DIR}`);
  console.warn(
    `NOTICE: external test vectors not found at ${VECTORS_DIR}; vector tests are skipped`,
  );
}

/** Parses one JSON file under the vectors directory, e.g. `wycheproof/x25519_test.json`. */
export const loadVectors: typeof NodeVectors.loadVectors = <T>(relativePath: string) =>
  JSON.parse(get(relativePath.split('/').map(encodeURIComponent).join('/'))) as T;

/** Hex to bytes for vector files (which may use either case). */
export function hex(text: string): Uint8Array {
  if (text.length % 2 !== 0) throw new Error('odd hex in vector file');
  return Uint8Array.from(text.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
}

// Fails type checking when _vectors.ts gains an export this twin lacks.
({ VECTORS_DIR, vectorsAvailable, loadVectors, hex }) satisfies typeof NodeVectors;
