// The `coffer-server` process (`npm start` at the repository root).
import { runServer } from './run.js';

await runServer(process.argv.slice(2), process.env);
