// @coffer/fields benchmarks: each case measures our API against a baseline doing the same job in
// the same run. Run with `npm run bench --workspace @coffer/fields` (a table) or with `-- --json`
// (one JSON object per line on stdout, progress on stderr). Options and method: @coffer/bench-kit
// (--json, --filter <text>, --rounds <n>, --scale <x>, --verbose, --quick); see bench/README.md.
import { type CaseFactory, runBenchmarks } from '@coffer/bench-kit';
import { blindIndexCases } from './blind-index.js';
import { roundTripCases } from './roundtrip.js';

const all: CaseFactory[] = [...roundTripCases(), ...blindIndexCases()];

await runBenchmarks(all);
