export { CLI_ERROR_CODES, type CliErrorCode } from './_errors.js';
export { type CliIo, type CliReader, type CliWriter, main, type Prompt } from './cli.js';
export { EXIT, EXIT_STATUSES, exitStatusFor } from './exit-status.js';
