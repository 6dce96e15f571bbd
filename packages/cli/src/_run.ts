// The process entry of `coffer` (bin/coffer.mjs runs it): wires the real streams, environment
// and Ctrl-C to main(). Everything else lives in cli.ts, which tests call directly.
import { wantsJson } from './_args.js';
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
// A write that fails also reaches its callback, where `coffer messages` stops on it; here it
// must not be thrown (a stack trace, and an exit before the home is closed). A closed pipe
// (`coffer help | head`) is not an error; another failure (a full disk) is, once main is done.
let stdoutFailed: string | undefined;
process.stdout.on('error', (err: { code?: unknown }) => {
  if (err.code !== 'EPIPE') stdoutFailed ??= typeof err.code === 'string' ? err.code : 'i/o error';
});
// Nothing more can be said on a stderr that fails.
process.stderr.on('error', () => {});

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
if (status === EXIT.ok && stdoutFailed !== undefined) {
  const message = `cannot write to stdout (${stdoutFailed})`;
  process.stderr.write(
    wantsJson(process.argv.slice(2))
      ? `${JSON.stringify({ error: { code: 'OUTPUT_FAILED', message } })}\n`
      : `coffer: error: ${message}\n`,
  );
  process.exitCode = EXIT.error;
} else process.exitCode = status;
