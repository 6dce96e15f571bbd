import { readFile } from 'node:fs/promises';
import { writeFileDurably } from './_durable-file.js';
import {
  type CheckpointStore,
  parseCheckpoint,
  type ReencryptCheckpoint,
  serializeCheckpoint,
} from './reencrypt.js';

/** Replaces `path` with `text` all at once and durably (see {@link writeFileDurably}). */
export async function replaceFile(path: string, text: string): Promise<void> {
  await writeFileDurably(path, text, { replace: true });
}

/** Writes `text` to a new file, refusing to replace one (EEXIST), all at once and durably. */
export async function createFile(path: string, text: string): Promise<void> {
  await writeFileDurably(path, text, { replace: false });
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
