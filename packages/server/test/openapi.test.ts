// Every route the app serves is in the OpenAPI document, and every documented operation exists.
import { describe, expect, it } from 'vitest';
import { OPENAPI_DOCUMENT } from '../src/openapi.js';
import { createHarness } from './_harness.js';

describe('openapi', () => {
  it('documents exactly the routes of the app', async () => {
    const h = await createHarness('sqlite', 'openapi');
    try {
      const served = new Set(
        h.app.routes
          .filter((r) => r.method !== 'ALL')
          .map((r) => `${r.method} ${r.path.replace(/:([A-Za-z]+)/g, '{$1}')}`),
      );
      const documented = new Set<string>();
      for (const [path, item] of Object.entries(OPENAPI_DOCUMENT.paths)) {
        for (const method of Object.keys(item)) documented.add(`${method.toUpperCase()} ${path}`);
      }
      expect([...served].filter((r) => !documented.has(r))).toEqual([]);
      expect([...documented].filter((r) => !served.has(r))).toEqual([]);
      expect(served.size).toBe(36);

      const res = await h.fetch('/v1/openapi.json');
      expect(res.status).toBe(200);
      const doc = await res.json();
      expect(doc.openapi).toBe('3.1.0');
      expect(doc).toEqual(JSON.parse(JSON.stringify(OPENAPI_DOCUMENT)));
      // Every $ref resolves.
      const refs = JSON.stringify(doc).match(/#\/components\/schemas\/[A-Za-z]+/g) ?? [];
      for (const ref of refs)
        expect(doc.components.schemas[ref.split('/').pop()!], ref).toBeDefined();
    } finally {
      await h.dispose();
    }
  });
});
