// Coffer's benchmark harness, shared by every package's bench/: each case pits "ours" against a
// baseline doing the same job, measured in the same process, alternating sides in short slices so
// that machine noise (frequency changes, GC, other load) falls on both alike. A case's value is
// the median of its rounds; values are throughputs, so a higher ratio (ours / baseline) is better.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

/** One operation; a returned promise is awaited (so async APIs pay for their promise). */
export type Op = () => unknown;

export interface Side {
  /** Shown in the report: what this side runs. */
  readonly label: string;
  readonly op: Op;
}

/** What a case must reach: a ratio, an absolute throughput, or both. A bare number is a ratio. */
export type Goal = number | { readonly ratio?: number; readonly value?: number };

export interface Case {
  /** Stable id, e.g. `aead-seal-open/aes-256-gcm/1KiB`. */
  readonly name: string;
  /** `ops/s`, `records/s`, …; `MiB/s` converts with `bytesPerOp`. */
  readonly unit: string;
  /** Bytes one op processes, for `MiB/s`. */
  readonly bytesPerOp?: number;
  readonly ours: Side;
  readonly baseline: Side;
  /** Checks that both sides produce correct results; throws otherwise. Runs before timing. */
  readonly check: () => Promise<void>;
  /** Seconds per round per side. */
  readonly seconds: number;
  /** At least this many ops per round (slow ops such as Argon2id). Default 1. */
  readonly minOps?: number;
  /** Undefined for an informational row. */
  readonly goal?: Goal;
}

/** Builds a case on demand (so its buffers exist only while it runs); undefined to skip it. */
export interface CaseFactory {
  readonly name: string;
  readonly build: () => Promise<Case | undefined>;
  /**
   * Runs each side in a worker thread of its own, so each has its own heap and garbage
   * collector. For a baseline whose garbage would otherwise be collected in our time (or ours in
   * its): libsignal's native wrappers grow one shared heap to ~130 MB, and its 80 ms
   * mark-compacts then fall in whichever side is running, which cut ours by a quarter. Each
   * worker loads the bench's entry script again and builds the whole case there (so `build`
   * runs twice and `check` in both); timing happens inside the worker.
   */
  readonly isolate?: boolean;
}

export interface Result {
  case: string;
  unit: string;
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

/** Ops run and milliseconds spent by one side of a round, summed over its slices. */
interface Tally {
  ops: number;
  ms: number;
}

/** Runs `op` for about `ms` milliseconds and at least `minOps` times, adding to `tally`. */
async function timed(op: Op, ms: number, minOps: number, tally: Tally): Promise<void> {
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
  tally.ops += ops;
  tally.ms += elapsed;
}

/**
 * Milliseconds of one slice: a round runs the two sides in alternating slices of about this
 * long, so that load that comes and goes on a shared machine (a neighbour's burst lasts seconds)
 * falls on both sides alike instead of on whichever had the round's first half. Long enough that
 * the garbage one side leaves and the next side's slice collects is a small share of it.
 */
const SLICE_MS = 100;

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

/** Times one side for about `ms` milliseconds and at least `minOps` ops, adding to `tally`. */
type Runner = (ms: number, minOps: number, tally: Tally) => Promise<void>;

/** What a case is, without its sides: all the timing loop needs besides two runners. */
interface CaseInfo {
  readonly name: string;
  readonly unit: string;
  readonly bytesPerOp?: number;
  readonly seconds: number;
  readonly minOps?: number;
  readonly baselineLabel: string;
}

/** Checks, warms up, then times both sides in alternating rounds. */
export async function runCase(c: Case, options: RunOptions): Promise<Result> {
  await c.check();
  return measure(
    { ...c, baselineLabel: c.baseline.label },
    (ms, minOps, tally) => timed(c.ours.op, ms, minOps, tally),
    (ms, minOps, tally) => timed(c.baseline.op, ms, minOps, tally),
    options,
  );
}

async function measure(
  c: CaseInfo,
  runOurs: Runner,
  runBase: Runner,
  options: RunOptions,
): Promise<Result> {
  const ms = c.seconds * 1000 * options.timeScale;
  const minOps = c.minOps ?? 1;
  const warmBase: Tally = { ops: 0, ms: 0 };
  const warmOurs: Tally = { ops: 0, ms: 0 };
  await runBase(ms / 2, 1, warmBase);
  await runOurs(ms / 2, 1, warmOurs);
  // Slices of at least one op each: a slow op (a 200 ms join) gets fewer, longer slices.
  const opMs = Math.max(warmBase.ms / warmBase.ops, warmOurs.ms / warmOurs.ops);
  const slices = Math.max(1, Math.min(Math.round(ms / SLICE_MS), Math.floor(ms / opMs)));
  const ours: number[] = [];
  const base: number[] = [];
  for (let r = 0; r < options.rounds; r++) {
    const o: Tally = { ops: 0, ms: 0 };
    const b: Tally = { ops: 0, ms: 0 };
    for (let i = 0; i < slices; i++) {
      // Alternate which side goes first, so that neither always does.
      const minOpsNow = i === slices - 1 ? minOps : 1;
      if ((r + i) % 2 === 0) {
        await runBase(ms / slices, minOpsNow, b);
        await runOurs(ms / slices, minOpsNow, o);
      } else {
        await runOurs(ms / slices, minOpsNow, o);
        await runBase(ms / slices, minOpsNow, b);
      }
    }
    ours.push((o.ops * 1000) / o.ms);
    base.push((b.ops * 1000) / b.ms);
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
    baseline: c.baselineLabel,
    baselineValue,
    ratio: Number((value / baselineValue).toFixed(3)),
  };
}

// --- isolated sides ----------------------------------------------------------------------------

/** Marks the workerData of a worker that serves one side of one case. */
const SIDE_WORKER = 'coffer-bench-side';

interface SideWorkerData {
  readonly [SIDE_WORKER]: { readonly caseName: string; readonly side: 'ours' | 'baseline' };
}

type FromSide =
  | { readonly kind: 'skip' }
  | { readonly kind: 'ready'; readonly info: CaseInfo; readonly goal: Goal | undefined }
  | { readonly kind: 'tally'; readonly tally: Tally }
  | { readonly kind: 'failed'; readonly message: string };

type ToSide = { readonly kind: 'slice'; readonly ms: number; readonly minOps: number };

function sideRequest(): SideWorkerData[typeof SIDE_WORKER] | undefined {
  if (isMainThread || typeof workerData !== 'object' || workerData === null) return undefined;
  return (workerData as Partial<SideWorkerData>)[SIDE_WORKER];
}

/** In a side worker: builds the case, checks it, then times its side on request. */
async function serveSide(
  factories: readonly CaseFactory[],
  request: SideWorkerData[typeof SIDE_WORKER],
): Promise<void> {
  const port = parentPort!;
  const post = (m: FromSide) => port.postMessage(m);
  try {
    const factory = factories.find((f) => f.name === request.caseName);
    if (!factory) throw new Error(`no case named ${request.caseName} in this worker`);
    const c = await factory.build();
    if (!c) return post({ kind: 'skip' });
    await c.check();
    const { name, unit, bytesPerOp, seconds, minOps, goal } = c;
    const info = { name, unit, bytesPerOp, seconds, minOps, baselineLabel: c.baseline.label };
    const op = c[request.side].op;
    port.on('message', (m: ToSide) => {
      const tally: Tally = { ops: 0, ms: 0 };
      timed(op, m.ms, m.minOps, tally).then(
        () => post({ kind: 'tally', tally }),
        (err: unknown) => post({ kind: 'failed', message: (err as Error).message }),
      );
    });
    post({ kind: 'ready', info, goal });
  } catch (err) {
    post({ kind: 'failed', message: (err as Error).message });
  }
}

/** One side of a case in a worker thread: the runner that times it there. */
class SideWorker {
  readonly #worker: Worker;
  #waiting: { resolve(m: FromSide): void; reject(e: Error): void } | undefined;
  #early: FromSide[] = [];
  #failure: Error | undefined;

  constructor(caseName: string, side: 'ours' | 'baseline') {
    const entry = process.argv[1];
    if (!entry) throw new Error('an isolated case needs the bench entry script in process.argv');
    // Node 20 does not apply --import loader hooks (tsx) to a worker's entry module, so the
    // worker registers tsx itself before importing a TypeScript entry script.
    const url = pathToFileURL(entry).href;
    const load = /\.[mc]?ts$/.test(entry)
      ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((t) => { t.register(); return import(${JSON.stringify(url)}); })`
      : `import(${JSON.stringify(url)})`;
    const data: SideWorkerData = { [SIDE_WORKER]: { caseName, side } };
    this.#worker = new Worker(load, { eval: true, workerData: data });
    this.#worker.on('message', (m: FromSide) => this.#deliver(m));
    this.#worker.on('error', (err) => this.#fail(err));
    this.#worker.on('exit', (code) =>
      this.#fail(new Error(`the ${side} worker of ${caseName} exited (code ${code})`)),
    );
  }

  #deliver(m: FromSide): void {
    if (m.kind === 'failed') {
      this.#fail(new Error(m.message));
      return;
    }
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) waiting.resolve(m);
    else this.#early.push(m);
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(this.#failure);
  }

  next(): Promise<FromSide> {
    const early = this.#early.shift();
    if (early) return Promise.resolve(early);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
    });
  }

  readonly run: Runner = async (ms, minOps, tally) => {
    this.#worker.postMessage({ kind: 'slice', ms, minOps } satisfies ToSide);
    const m = await this.next();
    if (m.kind !== 'tally') throw new Error(`bench worker answered ${m.kind} to a slice`);
    tally.ops += m.tally.ops;
    tally.ms += m.tally.ms;
  };

  async stop(): Promise<void> {
    this.#failure ??= new Error('stopped');
    await this.#worker.terminate();
  }
}

/** Runs an isolated case: each side built, checked and timed in its own worker thread. */
async function runIsolated(
  factory: CaseFactory,
  options: RunOptions,
): Promise<{ result: Result; goal: Goal | undefined } | undefined> {
  const ours = new SideWorker(factory.name, 'ours');
  let base: SideWorker | undefined;
  try {
    // One at a time: building both at once would slow each for the other.
    const a = await ours.next();
    if (a.kind === 'skip') return undefined;
    base = new SideWorker(factory.name, 'baseline');
    const b = await base.next();
    if (b.kind === 'skip') return undefined;
    if (a.kind !== 'ready' || b.kind !== 'ready') throw new Error('bench worker not ready');
    log(`${a.info.name} ... (each side in its own worker thread)`);
    return { result: await measure(a.info, ours.run, base.run, options), goal: a.goal };
  } finally {
    await Promise.all([ours.stop(), base?.stop()]);
  }
}

/** Whether a result meets its goal (true when there is none). */
export function meets(result: Result, goal: Goal | undefined): boolean {
  if (goal === undefined) return true;
  const g = typeof goal === 'number' ? { ratio: goal } : goal;
  return (
    (g.ratio === undefined || result.ratio >= g.ratio) &&
    (g.value === undefined || result.value >= g.value)
  );
}

/**
 * The command line every package's bench/run.ts shares: runs the factories' cases, prints one
 * JSON object per line with `--json` (progress on stderr), or a table.
 *
 *   --json  --filter <text> (repeatable)  --rounds <n> (default 9)  --scale <x>  --verbose  --quick
 */
export async function runBenchmarks(
  factories: readonly CaseFactory[],
  argv = process.argv.slice(2),
): Promise<void> {
  const side = sideRequest();
  if (side) return serveSide(factories, side);
  const { values } = parseArgs({
    args: argv,
    options: {
      json: { type: 'boolean', default: false },
      filter: { type: 'string', multiple: true },
      rounds: { type: 'string', default: '9' },
      quick: { type: 'boolean', default: false },
      scale: { type: 'string', default: '1' },
      verbose: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const rounds = Number(values.rounds);
  const timeScale = Number(values.scale) * (values.quick ? 0.1 : 1);
  if (!(timeScale > 0)) throw new Error('--scale expects a positive number');
  if (!Number.isInteger(rounds) || rounds < 1)
    throw new Error('--rounds expects a positive integer');
  const filters = values.filter ?? [];
  const selected = factories.filter(
    (c) => filters.length === 0 || filters.some((f) => c.name.includes(f)),
  );
  if (selected.length === 0) throw new Error(`no case matches ${filters.join(', ')}`);

  const results: { result: Result; goal: Goal | undefined }[] = [];
  const started = performance.now();
  const options = { rounds, timeScale, verbose: values.verbose };
  for (const factory of selected) {
    let run: { result: Result; goal: Goal | undefined } | undefined;
    if (factory.isolate) run = await runIsolated(factory, options);
    else {
      const c = await factory.build();
      if (c) {
        log(`${c.name} ...`);
        run = { result: await runCase(c, options), goal: c.goal };
      }
    }
    if (!run) continue;
    const { result } = run;
    results.push(run);
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else
      log(`  ${fmt(result.value)} ${result.unit} vs ${fmt(result.baselineValue)}: ${result.ratio}`);
  }
  log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s (node ${process.version})`);
  if (!values.json) printTable(results);
}

function fmt(x: number): string {
  return x >= 100 ? Math.round(x).toLocaleString('en-US') : String(x);
}

function goalText(result: Result, goal: Goal | undefined): string {
  if (goal === undefined) return 'info';
  const g = typeof goal === 'number' ? { ratio: goal } : goal;
  const parts: string[] = [];
  if (g.ratio !== undefined) parts.push(`ratio >= ${g.ratio}`);
  if (g.value !== undefined) parts.push(`>= ${fmt(g.value)} ${result.unit}`);
  return `${parts.join(', ')} ${meets(result, goal) ? 'ok' : 'MISSED'}`;
}

function printTable(results: readonly { result: Result; goal: Goal | undefined }[]): void {
  const rows = results.map(({ result: r, goal }) => [
    r.case,
    `${fmt(r.value)} ${r.unit}`,
    `${fmt(r.baselineValue)} ${r.unit}`,
    r.ratio.toFixed(2),
    goalText(r, goal),
    r.baseline,
  ]);
  const header = ['case', 'ours', 'baseline', 'ratio', 'goal', 'baseline is'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) =>
        i === cells.length - 1
          ? cell
          : i >= 1 && i <= 3
            ? cell.padStart(widths[i]!)
            : cell.padEnd(widths[i]!),
      )
      .join('  ');
  const out = [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
  process.stdout.write(`${out.join('\n')}\n`);
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
  if (!x.equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)))
    throw new Error(`bench check failed: ${what}`);
}

/**
 * Loads an optional comparison library from the calling bench's node_modules (its
 * bench/package.json), or returns undefined after a note on stderr: its rows are then skipped.
 * `from` is the caller's `import.meta.url`. CommonJS modules are read from `default`.
 */
export async function loadPeer<T>(
  name: string,
  caseName: string,
  from: string,
): Promise<T | undefined> {
  try {
    const resolved = createRequire(from).resolve(name);
    const mod = (await import(pathToFileURL(resolved).href)) as { default?: unknown };
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
