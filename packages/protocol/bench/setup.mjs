// Installs this benchmark's comparison libraries (bench/package.json) on the first run; see
// @coffer/bench-kit/setup.
import { installPeers } from '@coffer/bench-kit/setup';

installPeers(import.meta.url);
