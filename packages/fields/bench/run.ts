// @coffer/fields benchmarks: each case measures our API against a baseline doing the same job in
// the same run. Run with `npm run bench --workspace @coffer/fields` (a table) or with `-- --json`
// (one JSON object per line on stdout, progress on stderr). See bench/README.md.
//
//   --json            machine-readable output only on stdout
//   --filter <text>   run only cases whose name contains <text> (repeatable)
//   --rounds <n>      alternating rounds per side (default 9; the median is reported)
//   --scale <x>       multiply every round's duration by x (default 1)
//   --verbose         log every round's result to stderr
//   --quick           a tenth of the time per round: a smoke test, not a measurement
import { parseArgs } from 'node:util';
import { blindIndexCases } from './blind-index.js';
import { type CaseFactory, type Goal, log, meets, type Result, runCase } from './harness.js';
import { roundTripCases } from './roundtrip.js';

const { values } = parseArgs({
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
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds expects a positive integer');
const filters = values.filter ?? [];

const all: CaseFactory[] = [...roundTripCases(), ...blindIndexCases()];
const selected = all.filter((c) => filters.length === 0 || filters.some((f) => c.name.includes(f)));
if (selected.length === 0) throw new Error(`no case matches ${filters.join(', ')}`);

const results: { result: Result; goal: Goal | undefined }[] = [];
const started = performance.now();
for (const factory of selected) {
  const c = await factory.build();
  if (!c) continue;
  log(`${c.name} ...`);
  const result = await runCase(c, { rounds, timeScale, verbose: values.verbose });
  results.push({ result, goal: c.goal });
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else
    log(`  ${fmt(result.value)} ${result.unit} vs ${fmt(result.baselineValue)}: ${result.ratio}`);
}
log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s (node ${process.version})`);

if (!values.json) printTable();

function fmt(x: number): string {
  return x >= 100 ? Math.round(x).toLocaleString('en-US') : String(x);
}

function goalText(result: Result, goal: Goal | undefined): string {
  if (!goal) return 'info';
  const parts: string[] = [];
  if (goal.ratio !== undefined) parts.push(`ratio >= ${goal.ratio}`);
  if (goal.value !== undefined) parts.push(`>= ${fmt(goal.value)} ${result.unit}`);
  return `${parts.join(', ')} ${meets(result, goal) ? 'ok' : 'MISSED'}`;
}

function printTable(): void {
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
