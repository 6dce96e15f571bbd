// Timing harness: each case pits "ours" against a baseline doing the same job, measured in the
// same process, alternating sides round by round so that machine noise (frequency changes, GC,
// other load) falls on both sides alike. A case's value is the median of its rounds.

/** One operation; a returned promise is awaited (so async APIs pay for their promise). */
export type Op = () => unknown;

export interface Side {
  /** Shown in the report: what this side runs. */
  readonly label: string;
  readonly op: Op;
}

export type Unit = 'ops/s' | 'MiB/s';

export interface Case {
  /** Stable id, e.g. `aead/aes-256-gcm/1KiB`. */
  readonly name: string;
  readonly unit: Unit;
  /** Bytes one op processes, for MiB/s. */
  readonly bytesPerOp?: number;
  readonly ours: Side;
  readonly baseline: Side;
  /** Checks that both sides produce correct results; throws otherwise. Runs before timing. */
  readonly check: () => Promise<void>;
  /** Seconds per round per side. */
  readonly seconds: number;
  /** At least this many ops per round (slow ops: Argon2id). Default 1. */
  readonly minOps?: number;
  /** Ratio goal, or undefined for an informational row. */
  readonly goal?: number;
}

/** Something that builds a case on demand (so its buffers exist only while it runs). */
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

/** Runs `op` for about `ms` milliseconds and at least `minOps` times; returns ops per second. */
async function timed(op: Op, ms: number, minOps: number): Promise<number> {
  let ops = 0;
  let batch = 1;
  const start = nowMs();
  let elapsed = 0;
  while (elapsed < ms || ops < minOps) {
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
  const minOps = c.minOps ?? 1;
  // Warm-up: let the JIT settle on both sides before anything is recorded.
  await timed(c.baseline.op, ms / 2, 1);
  await timed(c.ours.op, ms / 2, 1);
  const ours: number[] = [];
  const base: number[] = [];
  for (let r = 0; r < options.rounds; r++) {
    // Alternate which side goes first, so that neither always does.
    if (r % 2 === 0) {
      base.push(await timed(c.baseline.op, ms, minOps));
      ours.push(await timed(c.ours.op, ms, minOps));
    } else {
      ours.push(await timed(c.ours.op, ms, minOps));
      base.push(await timed(c.baseline.op, ms, minOps));
    }
  }
  const scale = c.unit === 'MiB/s' ? (c.bytesPerOp ?? 0) / 2 ** 20 : 1;
  if (options.verbose) {
    const show = (xs: number[]) => xs.map((x) => round4(x * scale)).join(' ');
    log(`  ours:     ${show(ours)}\n  baseline: ${show(base)}`);
  }
  const value = round4(median(ours) * scale);
  const baselineValue = round4(median(base) * scale);
  return {
    case: c.name,
    unit: c.unit,
    value,
    baseline: c.baseline.label,
    baselineValue,
    ratio: Number((value / baselineValue).toFixed(3)),
  };
}

/** Throws unless `a` and `b` hold the same bytes. */
export function assertSameBytes(what: string, a: Uint8Array, b: Uint8Array): void {
  const x = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  if (!x.equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))) {
    throw new Error(`bench check failed: ${what}`);
  }
}

export function assertTrue(what: string, condition: boolean): void {
  if (!condition) throw new Error(`bench check failed: ${what}`);
}

/** Deterministic filler bytes (content does not affect these primitives' speed). */
export function filler(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 131 + seed) & 0xff;
  return out;
}

export const KiB = 1024;
export const MiB = 1024 * 1024;

export function sizeLabel(bytes: number): string {
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB}MiB`;
  if (bytes >= KiB && bytes % KiB === 0) return `${bytes / KiB}KiB`;
  return `${bytes}B`;
}
