// Loads RFC 9420 working-group vectors from ../shared/vectors/mls (beside the repository), and
// ts-mls modules that the package's exports map does not expose (the labeled derivations and
// message protection), so the vectors run through exactly the code the engine runs, with our
// crypto provider plugged in. ts-mls is pinned exactly (package.json), so these paths are stable.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const VECTORS_DIR = process.env.COFFER_VECTORS_DIR ?? resolve(repoRoot, '../shared/vectors');
export const mlsVectorsAvailable = existsSync(resolve(VECTORS_DIR, 'mls'));

if (!mlsVectorsAvailable) {
  if (process.env.CI === 'true') throw new Error(`MLS test vectors missing at ${VECTORS_DIR}/mls`);
  console.warn(`NOTICE: MLS test vectors not found at ${VECTORS_DIR}/mls; vector tests skipped`);
}

/** One file of mls/, a JSON list with one entry per case. */
export function loadMlsVectors<T>(file: string): T[] {
  return JSON.parse(readFileSync(resolve(VECTORS_DIR, 'mls', file), 'utf8')) as T[];
}

const tsMlsIndex = createRequire(import.meta.url).resolve('ts-mls');

/** Imports `dist/src/<path>` of the installed ts-mls. The caller states the shape it uses. */
export async function tsMlsInternal<T>(path: string): Promise<T> {
  return (await import(pathToFileURL(resolve(dirname(tsMlsIndex), path)).href)) as T;
}
