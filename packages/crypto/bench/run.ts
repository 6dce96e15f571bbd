// @coffer/crypto benchmarks: each case measures our API against a baseline doing the same job in
// the same run. Run with `npm run bench --workspace @coffer/crypto` (a table) or with `-- --json`
// (one JSON object per line on stdout, progress on stderr). Options and method: @coffer/bench-kit
// (--json, --filter <text>, --rounds <n>, --scale <x>, --verbose, --quick); see bench/README.md.
import { type CaseFactory, runBenchmarks } from '@coffer/bench-kit';
import { aeadCases } from './aead.js';
import { argon2Cases } from './argon2.js';
import { curveCases } from './curves.js';
import { hpkeCases } from './hpke.js';
import { kdfCases } from './kdf.js';
import { streamCases } from './stream.js';

const all: CaseFactory[] = [
  ...aeadCases(),
  ...streamCases(),
  ...curveCases(),
  ...hpkeCases(),
  ...argon2Cases(),
  ...kdfCases(),
];

await runBenchmarks(all);
