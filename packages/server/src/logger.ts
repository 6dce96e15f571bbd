import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger } from 'pino';

/** Only these properties of an Error are logged: driver errors can carry values (PostgreSQL's `detail`). */
function serializeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { type: typeof err };
  const code = (err as { code?: unknown }).code;
  return {
    type: err.name,
    message: err.message,
    ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
    stack: err.stack,
  };
}

/**
 * The server's pino logger: JSON lines on stderr (or `destination`). The request logger only
 * ever passes it method, route pattern, status, duration and request id; as a second line of
 * defence, header and body properties are redacted wherever they appear.
 *
 * @example const logger = createLogger({ level: 'info' });
 */
export function createLogger(
  options: { readonly level?: string; readonly destination?: DestinationStream } = {},
): Logger {
  const config: LoggerOptions = {
    level: options.level ?? 'info',
    base: undefined,
    serializers: { err: serializeError },
    redact: {
      paths: [
        'authorization',
        'token',
        'password',
        'username',
        'body',
        'headers',
        '*.authorization',
        '*.token',
        '*.password',
        '*.username',
        '*.body',
        '*.headers',
      ],
      censor: '[redacted]',
    },
  };
  return pino(config, options.destination ?? pino.destination({ dest: 2, sync: false }));
}
