import { PassThrough, Readable } from 'node:stream';
import { type CliIo, main } from '../src/cli.js';

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Piped stdin (not a terminal), e.g. for --password-stdin. Default: empty. */
  readonly stdin?: string | Uint8Array;
  /** stdin is a terminal: prompts are answered from `answers`. */
  readonly tty?: boolean;
  readonly answers?: string[];
  /** Filled with the questions prompted, in order. */
  readonly questions?: string[];
  readonly env?: Record<string, string>;
  readonly fetch?: typeof fetch;
  readonly signal?: AbortSignal;
  /**
   * Writes to stdout that succeed; later ones fail with EPIPE, as when the reader of a pipe
   * has gone (`| head -1`). Default: all succeed.
   */
  readonly stdoutWrites?: number;
  /** Called with every stdout write as it happens (devices link prints its code early). */
  readonly onStdout?: (chunk: string) => void;
}

/** Everything every run printed, to check that no secret was ever shown. */
export const transcript: string[] = [];

/** Runs `coffer` in-process with collecting streams. */
export async function cli(argv: readonly string[], options: RunOptions = {}): Promise<Run> {
  let stdout = '';
  let writes = 0;
  let stderr = '';
  const answers = [...(options.answers ?? [])];
  let stdin: CliIo['stdin'];
  if (options.tty) {
    // A terminal that nobody types into: prompts go through io.prompt.
    stdin = Object.assign(new PassThrough(), { isTTY: true });
  } else {
    stdin = Readable.from(options.stdin === undefined ? [] : [Buffer.from(options.stdin)]);
  }
  const io: CliIo = {
    stdin,
    stdinIsTTY: options.tty ?? false,
    stdout: {
      // As a Node stream: the callback says when the chunk is written, or why it was not.
      write: (s: string, callback?: (err?: Error | null) => void) => {
        writes += 1;
        if (options.stdoutWrites !== undefined && writes > options.stdoutWrites) {
          const err = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
          setImmediate(() => callback?.(err));
          return false;
        }
        stdout += s;
        options.onStdout?.(s);
        setImmediate(() => callback?.(null));
        return true;
      },
    },
    stderr: { write: (s: string) => (stderr += s) },
    env: options.env ?? {},
    prompt: async (question) => {
      options.questions?.push(question);
      stderr += question;
      const answer = answers.shift();
      if (answer === undefined) throw new Error(`no answer left for ${question}`);
      stderr += '\n';
      return answer;
    },
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const code = await main(argv, io);
  transcript.push(stdout, stderr);
  return { code, stdout, stderr };
}

/** The one JSON object a --json run printed on `stream`. */
export function json(text: string): Record<string, unknown> {
  const lines = text.split('\n').filter((l) => l !== '');
  if (lines.length !== 1) throw new Error(`expected one JSON line, got ${lines.length}: ${text}`);
  return JSON.parse(lines[0]!) as Record<string, unknown>;
}

/**
 * The global fetch, adding every bearer token a request carries to `secrets` (the e2e tests
 * check that none of them is ever printed).
 */
export function tokenCollectingFetch(secrets: Set<string>): typeof fetch {
  return async (input, init) => {
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : {}));
    const auth = headers.get('authorization');
    if (auth) secrets.add(auth.replace(/^Bearer /i, ''));
    return fetch(input, init);
  };
}
