/// <reference types="vite/client" />
// Vite types for test files: `?raw` imports and import.meta.glob (errors.test.ts).
// `import.meta.env` in test files: vitest fills it from the project's `test.env`, under Node
// (where it mirrors process.env) and in the browser (where there is no process) alike.
interface ImportMetaEnv {
  /** The back end the running vitest project tests: 'node', 'web' or 'noble'. */
  readonly COFFER_BACKEND?: string;
  /** The node back end's Ed25519 implementation: 'libsodium' or 'node:crypto' ('' elsewhere). */
  readonly COFFER_ED25519?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
