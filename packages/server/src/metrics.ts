import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/** How a login attempt ended, as counted by `coffer_logins_total{outcome}`. */
export type LoginOutcome = 'success' | 'failure' | 'throttled';

/** The server's Prometheus metrics, on a registry of their own (never prom-client's global one). */
export interface Metrics {
  readonly registry: Registry;
  readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly httpDuration: Histogram<'route' | 'method' | 'status'>;
  readonly logins: Counter<'outcome'>;
  readonly rateLimited: Counter;
}

/**
 * Creates the server's metrics on a new registry: `http_requests_total{route,method,status}`,
 * `http_request_duration_seconds`, `coffer_logins_total{outcome}`, `coffer_rate_limited_total`,
 * and (unless `processMetrics` is false) Node's process metrics.
 *
 * @example const metrics = createMetrics(); const text = await metrics.registry.metrics();
 */
export function createMetrics(options: { readonly processMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry });
  const labelNames = ['route', 'method', 'status'] as const;
  return {
    registry,
    httpRequests: new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests by route pattern, method and status',
      labelNames,
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by route pattern, method and status',
      labelNames,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    logins: new Counter({
      name: 'coffer_logins_total',
      help: 'Login attempts by outcome (success, failure, throttled)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'coffer_rate_limited_total',
      help: 'Attempts refused by throttling (login and recovery)',
      registers: [registry],
    }),
  };
}
