// Timing harness (adapted from @coffer/crypto's bench harness): each case pits "ours" against a
// baseline doing the same job, measured in the same process, alternating sides round by round so
// that machine noise (frequency changes, GC, other load) falls on both sides alike. A case's value
// is the median of its rounds.

/** One operation; a returned promise is awaited (so async APIs pay for their promise). */
export type Op = () => unknown;

export interface Side {
  /** Shown in the report: what this side runs. */
  readonly label: string;
  readonly op: Op;
}

/** One op is one record's encrypt + decrypt, or one blind-index computation. */
export type Unit = 'records/s' | 'indexes/s';

/** What a case must reach; a case without one is an informational row. */
export interface Goal {
  /** At least this ratio (ours / baseline). */
  readonly ratio?: number;
  /** At least this absolute throughput, in the case's unit. */
  readonly value?: number;
}

export interface Case {
  /** Stable id, e.g. `roundtrip/string-200B/text/node-aes-gcm`. */
  readonly name: string;
  readonly unit: Unit;
  readonly ours: Side;
  readonly baseline: Side;
  /** Checks that both sides produce correct results; throws otherwise. Runs before timing. */
  readonly check: () => Promise<void>;
  /** Seconds per round per side. */
  readonly seconds: number;
  readonly goal?: Goal;
}

/** Something that builds a case on demand; undefined when its baseline is unavailable. */
export interface CaseFactory {
  readonly name: string;
  readonly build: () => Promise<Case | undefined>;
}

export interface Result {
  case: string;
  unit: Unit;
  value: number;
  baseline: string;
  baselineValue: number;
  ratio: number;
}

export interface RunOptions {
  rounds: number;
  /** Multiplies every case's round time (0.1 for a smoke run). */
  timeScale: number;
  /** Log every round's throughput to stderr. */
  verbose?: boolean;
}

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Runs `op` for about `ms` milliseconds (at least once); returns ops per second. */
async function timed(op: Op, ms: number): Promise<number> {
  let ops = 0;
  let batch = 1;
  const start = nowMs();
  let elapsed = 0;
  while (elapsed < ms || ops < 1) {
    for (let i = 0; i < batch; i++) {
      const r = op();
      if (r instanceof Promise) await r;
    }
    ops += batch;
    elapsed = nowMs() - start;
    // Grow batches while they are short, so reading the clock costs nothing measurable.
    if (elapsed * 50 < ms) batch *= 2;
  }
  return (ops * 1000) / elapsed;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Four significant digits: enough to compare, more than the noise supports. */
function round4(x: number): number {
  return Number.isFinite(x) && x !== 0 ? Number(x.toPrecision(4)) : x;
}

export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Checks, warms up, then times both sides in alternating rounds. */
export async function runCase(c: Case, options: RunOptions): Promise<Result> {
  await c.check();
  const ms = c.seconds * 1000 * options.timeScale;
  // Warm-up: let the JIT settle on both sides before anything is recorded.
  await timed(c.baseline.op, ms / 2);
  await timed(c.ours.op, ms / 2);
  const ours: number[] = [];
  const base: number[] = [];
  for (let r = 0; r < options.rounds; r++) {
    // Alternate which side goes first, so that neither always does.
    if (r % 2 === 0) {
      base.push(await timed(c.baseline.op, ms));
      ours.push(await timed(c.ours.op, ms));
    } else {
      ours.push(await timed(c.ours.op, ms));
      base.push(await timed(c.baseline.op, ms));
    }
  }
  if (options.verbose) {
    const show = (xs: number[]) => xs.map(round4).join(' ');
    log(`  ours:     ${show(ours)}\n  baseline: ${show(base)}`);
  }
  const value = round4(median(ours));
  const baselineValue = round4(median(base));
  return {
    case: c.name,
    unit: c.unit,
    value,
    baseline: c.baseline.label,
    baselineValue,
    ratio: Number((value / baselineValue).toFixed(3)),
  };
}

/** Whether a result meets its goal (true when there is none). */
export function meets(result: Result, goal: Goal | undefined): boolean {
  if (!goal) return true;
  return (
    (goal.ratio === undefined || result.ratio >= goal.ratio) &&
    (goal.value === undefined || result.value >= goal.value)
  );
}

export function assertTrue(what: string, condition: boolean): void {
  if (!condition) throw new Error(`bench check failed: ${what}`);
}

export function assertEqual<T>(what: string, actual: T, expected: T): void {
  if (actual !== expected) {
    throw new Error(
      `bench check failed: ${what}: got ${String(actual).slice(0, 80)}, expected ${String(expected).slice(0, 80)}`,
    );
  }
}

/** Throws unless `a` and `b` hold the same bytes. */
export function assertSameBytes(what: string, a: Uint8Array, b: Uint8Array): void {
  const x = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  if (!x.equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))) {
    throw new Error(`bench check failed: ${what}`);
  }
}

/**
 * Loads an optional comparison library from bench/node_modules (bench/package.json), or returns
 * undefined after a note on stderr: its rows are then skipped. `T` is the slice of its API the
 * bench uses; CommonJS modules are read from their `default` export.
 */
export async function loadPeer<T>(name: string, caseName: string): Promise<T | undefined> {
  try {
    // A variable, not a literal: the module may be absent, and typecheck must not need it.
    const specifier = name;
    const mod = (await import(specifier)) as { default?: unknown };
    return (mod.default ?? mod) as T;
  } catch (err) {
    log(
      `${caseName}: skipped, ${name} could not be loaded from bench/node_modules (${(err as Error).message.split('\n')[0]})`,
    );
    return undefined;
  }
}

/** Cycles through `items` one per call, so consecutive ops touch different records. */
export function cycle<T>(items: readonly T[]): () => T {
  if (items.length === 0) throw new Error('cycle over no items');
  let i = 0;
  return () => {
    const item = items[i]!;
    i = i + 1 === items.length ? 0 : i + 1;
    return item;
  };
}
