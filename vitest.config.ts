import { fileURLToPath } from 'node:url';
import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// Packages resolve each other (and `#backend`) to TypeScript sources through this condition.
const conditions = ['@coffer/source', ...defaultServerConditions];
const cryptoSrc = fileURLToPath(new URL('./packages/crypto/src/backend/', import.meta.url));

// @coffer/crypto's suite runs once per back end: the one Node picks (node:crypto), and the
// browser back end (WebCrypto + @noble) and the pure-JS fallback (@noble), forced by alias.
function cryptoProject(backend: 'node' | 'web' | 'noble') {
  return {
    resolve: {
      conditions,
      alias:
        backend === 'node' ? [] : [{ find: '#backend', replacement: `${cryptoSrc}${backend}.ts` }],
    },
    ssr: { resolve: { conditions, externalConditions: conditions } },
    test: {
      name: `crypto:${backend}`,
      root: 'packages/crypto',
      include: ['test/**/*.test.ts'],
      env: { COFFER_BACKEND: backend },
    },
  };
}

export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    projects: [cryptoProject('node'), cryptoProject('web'), cryptoProject('noble')],
  },
});
