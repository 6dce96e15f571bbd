import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import {
  type CheckpointStore,
  parseCheckpoint,
  type ReencryptCheckpoint,
  serializeCheckpoint,
} from './reencrypt.js';

/**
 * Replaces `path` with `text` all at once (a temporary file beside it, then rename), so a crash
 * mid-write never leaves a truncated keyring or checkpoint.
 */
export async function replaceFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, text, { flag: 'wx' });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Writes `text` to a new file, refusing to replace one. */
export async function createFile(path: string, text: string): Promise<void> {
  await writeFile(path, text, { flag: 'wx' });
}

/** A {@link CheckpointStore} in a JSON file; no file yet means no checkpoint. */
export function fileCheckpointStore(path: string): CheckpointStore {
  return {
    async load(): Promise<ReencryptCheckpoint | undefined> {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
        throw err;
      }
      return parseCheckpoint(text);
    },
    save: (checkpoint) => replaceFile(path, serializeCheckpoint(checkpoint)),
  };
}
