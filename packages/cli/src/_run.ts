// The process entry of `coffer` (bin/coffer.mjs runs it): wires the real streams, environment
// and Ctrl-C to main(). Everything else lives in cli.ts, which tests call directly.
import { main } from './cli.js';
import { EXIT } from './exit-status.js';

const controller = new AbortController();
const onSignal = () => {
  // First Ctrl-C: stop waiting and say so. Second: stop now.
  if (controller.signal.aborted) process.exit(EXIT.interrupted);
  controller.abort();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// A closed pipe (`coffer help | head`) is not an error.
process.stdout.on('error', (err: { code?: unknown }) => {
  if (err.code !== 'EPIPE') throw err;
});

const status = await main(process.argv.slice(2), {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
});
process.off('SIGINT', onSignal);
process.off('SIGTERM', onSignal);
// --password-stdin reads only the lines it needs; a pipe left open must not keep us waiting.
process.stdin.destroy();
// An interrupted command may leave a request in flight; nothing of it is wanted any more.
if (status === EXIT.interrupted) process.exit(status);
process.exitCode = status;
