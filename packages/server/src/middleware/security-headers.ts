import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../http/_env.js';

/** spec/http-api-v1.md "Conventions": on every response. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
};

/** Two years, the usual HSTS preload floor. */
const HSTS = 'max-age=63072000; includeSubDomains';

/**
 * Sets the security headers on every response, and `strict-transport-security` when the request
 * came over TLS (its URL is https).
 *
 * @example app.use(securityHeaders());
 */
export function securityHeaders(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    await next();
    const headers = c.res.headers;
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) headers.set(name, value);
    if (c.req.url.startsWith('https:')) headers.set('strict-transport-security', HSTS);
  };
}
