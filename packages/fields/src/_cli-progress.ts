/** Where the CLI writes: process.stdout/stderr, or a collector in tests. */
export interface CliWriter {
  write(chunk: string): unknown;
  /** A terminal: progress is drawn as a bar, redrawn in place. */
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/** Plain progress lines (stderr not a terminal, as in CI logs) are this far apart at least. */
const PLAIN_INTERVAL_MS = 5_000;
/** A terminal bar is redrawn at most this often. */
const BAR_INTERVAL_MS = 100;
const BAR_WIDTH = 30;

export interface Progress {
  /** `done` of `total` rows (total unknown: undefined), with a short note after the count. */
  update(done: number, note: string): void;
  /** Final redraw; ends the bar's line. */
  end(): void;
}

/**
 * Progress on stderr: a bar on a terminal, a plain line now and then otherwise, so logs stay
 * readable. Never writes to stdout, which belongs to the result.
 */
export function createProgress(
  stderr: CliWriter,
  label: string,
  total: number | undefined,
  now: () => number = Date.now,
): Progress {
  let last = Number.NEGATIVE_INFINITY;
  let drawn = false;
  let pending: { done: number; note: string } | undefined;
  const count = (done: number) => (total === undefined ? `${done}` : `${done}/${total}`);

  function draw(done: number, note: string): void {
    if (stderr.isTTY) {
      const fraction = total ? Math.min(1, done / total) : 0;
      const width = Math.max(10, Math.min(BAR_WIDTH, (stderr.columns ?? 80) - 60));
      const filled = Math.round(fraction * width);
      const bar = total
        ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}% `
        : '';
      stderr.write(`\r\x1b[K${label} ${bar}${count(done)} rows${note ? `, ${note}` : ''}`);
      drawn = true;
    } else {
      stderr.write(`coffer-fields: ${label}: ${count(done)} rows${note ? `, ${note}` : ''}\n`);
    }
  }

  return {
    update(done, note) {
      pending = { done, note };
      const t = now();
      if (t - last < (stderr.isTTY ? BAR_INTERVAL_MS : PLAIN_INTERVAL_MS)) return;
      last = t;
      draw(done, note);
      pending = undefined;
    },
    end() {
      if (!stderr.isTTY) return;
      if (pending) draw(pending.done, pending.note);
      if (drawn) stderr.write('\n');
    },
  };
}
