// Stands in for _sodium.ts in the `crypto:node-openssl` test project (root vitest.config.ts):
// the node back end as it runs where sodium-native has no binary, Ed25519 on node:crypto.
import type { Sodium } from './_sodium.js';

export const sodium: Sodium | undefined = undefined;
