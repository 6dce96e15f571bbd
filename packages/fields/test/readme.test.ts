import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { FIELDS_ERROR_CODES } from '../src/index.js';

test('the README documents exactly the codes FieldsError has', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const section = readme.split('## Error codes')[1]?.split('\n## ')[0] ?? '';
  const documented = [...section.matchAll(/^\|\s*`([A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
  expect(documented.sort()).toEqual([...FIELDS_ERROR_CODES].sort());
});
