// @coffer/protocol benchmarks: each case measures our API against a baseline doing the same job
// in the same run. Run with `npm run bench --workspace @coffer/protocol` (a table) or with
// `-- --json` (one JSON object per line on stdout, progress on stderr). Options and method:
// @coffer/bench-kit (--json, --filter <text>, --rounds <n>, --scale <x>, --verbose, --quick).
import { runBenchmarks } from '@coffer/bench-kit';
import { conversationCases } from './conversation.js';
import { groupCases } from './group.js';

await runBenchmarks([...conversationCases(), ...groupCases()]);
