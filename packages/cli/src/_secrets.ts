import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { CliError, interrupted, usageError } from './_errors.js';

/** Where the CLI writes: process.stdout/stderr, or a collector in tests. */
export interface CliWriter {
  /**
   * A writer that takes `callback` (a Node stream does) calls it once the chunk is written, or
   * with the error that stopped it (a closed pipe): `coffer messages` waits for it before it
   * fetches, and so acknowledges, anything more.
   */
  write(chunk: string, callback?: (err?: Error | null) => void): unknown;
  readonly isTTY?: boolean;
}

/** Where the CLI reads passwords from: process.stdin, or a stream in tests. */
export type CliReader = NodeJS.ReadableStream & {
  readonly isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
};

/** Asks one question and answers it; `hidden` answers must not be echoed. */
export type Prompt = (question: string, options: { readonly hidden: boolean }) => Promise<string>;

/** A line of --password-stdin input longer than this is a mistake (a file piped in), not a password. */
export const MAX_LINE_BYTES = 4096;

/**
 * Asks `question` on `output` and reads one line from the terminal `input` without echoing it:
 * readline drives the terminal (raw mode, line editing) but writes into a muted stream, so the
 * typed characters never reach the screen. Ctrl-C rejects with INTERRUPTED, Ctrl-D with USAGE.
 */
export function promptHidden(
  question: string,
  input: CliReader,
  output: CliWriter,
  signal?: AbortSignal,
): Promise<string> {
  return promptLine(question, input, output, true, signal);
}

/** As {@link promptHidden}, but the answer is echoed: for questions that are not secrets (y/N). */
export function promptVisible(
  question: string,
  input: CliReader,
  output: CliWriter,
  signal?: AbortSignal,
): Promise<string> {
  return promptLine(question, input, output, false, signal);
}

function promptLine(
  question: string,
  input: CliReader,
  output: CliWriter,
  hidden: boolean,
  signal?: AbortSignal,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const screen = new Writable({
      write(chunk, _encoding, callback) {
        if (!hidden) output.write(String(chunk));
        callback();
      },
    });
    const rl = createInterface({ input, output: screen, terminal: true, historySize: 0 });
    let settled = false;
    const settle = (error: CliError | undefined, answer = '') => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      rl.close();
      // A hidden answer's Enter was not echoed either.
      if (hidden || error) output.write('\n');
      if (error) reject(error);
      else resolve(answer);
    };
    const onAbort = () => settle(interrupted());
    if (signal?.aborted) return settle(interrupted());
    signal?.addEventListener('abort', onAbort);
    rl.on('SIGINT', onAbort);
    rl.on('close', () =>
      settle(usageError('no answer: the input ended', 'run the command again and type the answer')),
    );
    // A visible prompt is readline's own, which redraws it with the line as it is edited.
    if (hidden) output.write(question);
    rl.question(hidden ? '' : question, (answer) => settle(undefined, answer));
  });
}

/**
 * Reads `count` lines from `input` (--password-stdin) and stops there, so a terminal or a pipe
 * that stays open is not read to its end. A last line without a newline counts; "\r\n" endings
 * are accepted. Lines are returned exactly, spaces included: they are passwords.
 */
export function readLines(input: CliReader, count: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    // Fatal: a password that is not UTF-8 must fail, not become U+FFFD (and match others).
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const notUtf8 = () =>
      finish(
        usageError('stdin is not UTF-8 text', 'write the secrets on stdin as UTF-8, one per line'),
      );
    const lines: string[] = [];
    let pending = '';
    let done = false;
    const finish = (error?: CliError) => {
      if (done) return;
      done = true;
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
      input.pause();
      if (error) reject(error);
      else resolve(lines.slice(0, count).map((line) => line.replace(/\r$/, '')));
    };
    const take = () => {
      let at = pending.indexOf('\n');
      while (at !== -1 && lines.length < count) {
        lines.push(pending.slice(0, at));
        pending = pending.slice(at + 1);
        at = pending.indexOf('\n');
      }
      if (lines.length >= count) return finish();
      if (Buffer.byteLength(pending) > MAX_LINE_BYTES)
        finish(usageError(`a line on stdin is longer than ${MAX_LINE_BYTES} bytes`));
    };
    const onData = (chunk: Buffer | string) => {
      try {
        pending += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
      } catch {
        return notUtf8();
      }
      take();
    };
    const onEnd = () => {
      try {
        pending += decoder.decode();
      } catch {
        return notUtf8();
      }
      if (pending !== '') lines.push(pending);
      pending = '';
      if (lines.length < count)
        return finish(
          usageError(
            `--password-stdin expected ${count} line${count === 1 ? '' : 's'} on stdin, got ${lines.length}`,
          ),
        );
      finish();
    };
    const onError = () => finish(new CliError('ERROR', 'cannot read stdin'));
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('error', onError);
    input.resume();
  });
}
