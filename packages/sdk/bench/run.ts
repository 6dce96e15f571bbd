// @coffer/sdk benchmarks: each case measures our API against a baseline doing the same job in the
// same run. Run with `npm run bench --workspace @coffer/sdk` (a table) or with `-- --json` (one
// JSON object per line on stdout, progress on stderr). Options and method: @coffer/bench-kit
// (--json, --filter <text>, --rounds <n>, --scale <x>, --verbose, --quick). What the rows mean
// and where the time goes: bench/README.md.
import { runBenchmarks } from '@coffer/bench-kit';
import { closeRelays, relayCases } from './relay.js';

try {
  await runBenchmarks(relayCases());
} finally {
  await closeRelays();
}
