// The process entry of `coffer-fields` (bin/coffer-fields.mjs runs it): wires the real streams,
// environment and signals to main(). Everything else lives in cli.ts, which tests call directly.
import { EXIT, main } from './cli.js';

const controller = new AbortController();
const onSignal = () => {
  // First Ctrl-C: stop after the current row and save the checkpoint. Second: stop now.
  if (controller.signal.aborted) process.exit(EXIT.interrupted);
  controller.abort();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// A closed pipe (`coffer-fields --help | head`) is not an error.
process.stdout.on('error', (err: { code?: unknown }) => {
  if (err.code !== 'EPIPE') throw err;
});

process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
});
process.off('SIGINT', onSignal);
process.off('SIGTERM', onSignal);
