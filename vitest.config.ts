import { createReadStream, existsSync, statSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { playwright } from '@vitest/browser-playwright';
import { defaultClientConditions, defaultServerConditions, type Plugin } from 'vite';
import { configDefaults, defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';

const repoRoot = fileURLToPath(new URL('.', import.meta.url));
const cryptoSrc = resolve(repoRoot, 'packages/crypto/src/backend');
const cryptoTest = resolve(repoRoot, 'packages/crypto/test');

// Packages resolve each other (and `#backend`) to TypeScript sources through this condition.
const conditions = ['@coffer/source', ...defaultServerConditions];

// @coffer/crypto's suite runs once per back end: the one Node picks (node:crypto, with Ed25519 on
// libsodium), the same without libsodium (`node-openssl`: Ed25519 on node:crypto, as where
// sodium-native has no binary), and the browser back end (WebCrypto + @noble) and the pure-JS
// fallback (@noble), forced by alias.
function cryptoProject(
  backend: 'node' | 'node-openssl' | 'web' | 'noble',
): TestProjectInlineConfiguration {
  const alias =
    backend === 'node'
      ? []
      : backend === 'node-openssl'
        ? [{ find: /^\.\/_sodium\.js$/, replacement: resolve(cryptoSrc, '_sodium-absent.ts') }]
        : [{ find: '#backend', replacement: resolve(cryptoSrc, `${backend}.ts`) }];
  return {
    extends: true,
    resolve: { conditions, alias },
    ssr: { resolve: { conditions, externalConditions: conditions } },
    test: {
      name: `crypto:${backend}`,
      root: 'packages/crypto',
      include: ['test/**/*.test.ts'],
      // test/node/ holds tests of the node back end's own parts.
      exclude: [...configDefaults.exclude, ...(backend.startsWith('node') ? [] : ['test/node/**'])],
      env: {
        COFFER_BACKEND: backend === 'node-openssl' ? 'node' : backend,
        COFFER_ED25519:
          backend === 'node' ? 'libsodium' : backend === 'node-openssl' ? 'node:crypto' : '',
      },
    },
  };
}

// The same suite in headless Chromium, with no alias: `#backend` must resolve to the web back
// end through package.json's "imports" map exactly as a browser bundler would resolve it
// (browser conditions, never `node`); backend.test.ts asserts that it did. Chromium is the
// system one (Debian package `chromium`), never a Playwright download.
const chromiumPath = process.env.COFFER_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  // Without these Chromium keeps trying to reach Google's services (the test machine is offline).
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

function chromiumProject(): TestProjectInlineConfiguration {
  return {
    extends: true,
    resolve: { conditions: ['@coffer/source', ...defaultClientConditions] },
    plugins: [browserVectors()],
    test: {
      name: 'crypto:chromium',
      root: 'packages/crypto',
      include: ['test/**/*.test.ts'],
      exclude: [...configDefaults.exclude, 'test/node/**'],
      env: { COFFER_BACKEND: 'web' },
      browser: {
        enabled: true,
        headless: true,
        provider: playwright({
          launchOptions: { executablePath: chromiumPath, args: CHROMIUM_ARGS },
        }),
        instances: [{ browser: 'chromium' }],
        // Failures are reported as text; no PNGs written beside the tests.
        screenshotFailures: false,
      },
    },
  };
}

// Serves the external vectors directory to the browser, where test/_vectors.ts (node:fs) is
// replaced by test/_vectors.browser.ts: same API, reading these files over the test server.
function browserVectors(): Plugin {
  const nodeModule = resolve(cryptoTest, '_vectors.ts');
  const browserModule = resolve(cryptoTest, '_vectors.browser.ts');
  // Same location rule as _vectors.ts.
  const dir = resolve(process.env.COFFER_VECTORS_DIR ?? resolve(repoRoot, '../shared/vectors'));
  return {
    name: 'coffer:browser-vectors',
    enforce: 'pre',
    async resolveId(source, importer, options) {
      if (!source.includes('_vectors')) return null;
      const resolved = await this.resolve(source, importer, { ...options, skipSelf: true });
      return resolved?.id === nodeModule ? browserModule : null;
    },
    configureServer(server) {
      server.middlewares.use('/@coffer/vectors', (req, res) => {
        const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
        if (path === '/') {
          res.setHeader('content-type', 'application/json');
          const info = { dir, available: existsSync(dir), ci: process.env.CI === 'true' };
          res.end(JSON.stringify(info));
          return;
        }
        const file = resolve(dir, `.${path}`);
        if (!file.startsWith(dir + sep) || !existsSync(file) || !statSync(file).isFile()) {
          res.statusCode = 404;
          res.end(`no vector file ${file}`);
          return;
        }
        res.setHeader('content-type', 'application/json');
        createReadStream(file).pipe(res);
      });
    },
  };
}

// Server-side packages run under Node only (test/browser/ is for the browser projects).
function nodeProject(name: string): TestProjectInlineConfiguration {
  return {
    extends: true,
    resolve: { conditions },
    ssr: { resolve: { conditions, externalConditions: conditions } },
    test: {
      name,
      root: `packages/${name}`,
      include: ['test/**/*.test.ts'],
      exclude: ['test/browser/**'],
    },
  };
}

// The SDK in headless Chromium against a real server: globalSetup starts it (in Node) and the
// test page reaches it same-origin through the Vite dev server's proxy, as a web app would.
const sdkBrowserPort = Number(process.env.COFFER_BROWSER_TEST_PORT ?? 18480);
function sdkChromiumProject(): TestProjectInlineConfiguration {
  return {
    extends: true,
    resolve: { conditions: ['@coffer/source', ...defaultClientConditions] },
    // globalSetup runs in Node, through the server-side resolver.
    ssr: { resolve: { conditions, externalConditions: conditions } },
    server: {
      proxy: { '/v1': { target: `http://127.0.0.1:${sdkBrowserPort}`, changeOrigin: false } },
    },
    test: {
      name: 'sdk:chromium',
      root: 'packages/sdk',
      include: ['test/browser/**/*.test.ts'],
      globalSetup: ['test/browser/_global-server.ts'],
      browser: {
        enabled: true,
        headless: true,
        provider: playwright({
          launchOptions: { executablePath: chromiumPath, args: CHROMIUM_ARGS },
        }),
        instances: [{ browser: 'chromium' }],
        screenshotFailures: false,
      },
    },
  };
}

function browserProjects(): TestProjectInlineConfiguration[] {
  if (existsSync(chromiumPath)) return [chromiumProject(), sdkChromiumProject()];
  if (process.env.CI === 'true') {
    throw new Error(
      `Chromium not found at ${chromiumPath}: CI must run the browser tests ` +
        '(apt-get install -y chromium, or set COFFER_CHROMIUM to its path)',
    );
  }
  console.warn(
    `NOTICE: Chromium not found at ${chromiumPath}; browser tests skipped ` +
      '(apt-get install chromium, or set COFFER_CHROMIUM)',
  );
  return [];
}

// Projects set `extends: true` to inherit these (testTimeout included; without it they ran
// with vitest's 5 s default).
export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    projects: [
      cryptoProject('node'),
      cryptoProject('node-openssl'),
      cryptoProject('web'),
      cryptoProject('noble'),
      ...browserProjects(),
      nodeProject('bench-kit'),
      nodeProject('fields'),
      nodeProject('protocol'),
      nodeProject('server'),
      nodeProject('sdk'),
      nodeProject('cli'),
    ],
  },
});
