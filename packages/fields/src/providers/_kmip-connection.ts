import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { wipe } from '@coffer/crypto';
import { FieldsError } from '../errors.js';
import { ttlvMessageSize } from './_kmip-ttlv.js';

/**
 * One mutually authenticated TLS connection to a KMIP server, carrying one request at a time
 * (KMIP answers in order; a queue is simpler than matching pipelined replies and is plenty for
 * key wrapping). The connection opens on first use, stays open between requests, and reopens
 * after it breaks. It does not keep the process alive while idle.
 */

export type KmipTlsOptions = {
  readonly host: string;
  readonly port: number;
  readonly ca: string | Uint8Array;
  readonly cert: string | Uint8Array;
  readonly key: string | Uint8Array;
  readonly serverName: string | undefined;
  readonly timeoutMs: number;
};

const OPERATION = 'provider.kmip';

function unavailable(message: string, cause?: unknown): FieldsError {
  return new FieldsError('PROVIDER_UNAVAILABLE', OPERATION, message, { cause });
}

function describe(err: unknown): string {
  if (typeof err !== 'object' || err === null) return 'connection failed';
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code === 'string') return code.toLowerCase().replaceAll('_', ' ');
  return typeof message === 'string' ? message.toLowerCase() : 'connection failed';
}

const toTlsInput = (v: string | Uint8Array): string | Buffer =>
  typeof v === 'string' ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);

// A request fails this way when the server closed an idle connection before reading it: nothing
// was answered, so an idempotent request may go again on a new connection.
class ClosedBeforeReply extends Error {}

export class KmipConnection {
  readonly #options: KmipTlsOptions;
  #socket: TLSSocket | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(options: KmipTlsOptions) {
    this.#options = options;
  }

  /** Opens the connection now (to fail fast on a bad address or certificate). */
  async open(): Promise<void> {
    await this.#enqueue(async () => {
      await this.#connected();
    });
  }

  /**
   * Sends one encoded request and returns the encoded reply (the caller wipes both). An
   * `idempotent` request is sent once more on a new connection if the server had closed the old
   * one without answering.
   *
   * @throws {FieldsError} `PROVIDER_UNAVAILABLE` when the server cannot be reached, the TLS
   *   handshake fails, or no reply comes within `timeoutMs`; `PROVIDER_ERROR` when the reply
   *   is oversized or malformed at the framing level.
   */
  send(request: Uint8Array, idempotent: boolean): Promise<Uint8Array> {
    return this.#enqueue(async () => {
      const reused = this.#socket !== undefined;
      try {
        return await this.#exchange(await this.#connected(), request);
      } catch (err) {
        if (!(err instanceof ClosedBeforeReply)) throw err;
        if (!(reused && idempotent)) throw unavailable('connection closed before a reply', err);
        try {
          return await this.#exchange(await this.#connected(), request);
        } catch (again) {
          if (again instanceof ClosedBeforeReply) {
            throw unavailable('connection closed before a reply', again);
          }
          throw again;
        }
      }
    });
  }

  /** Closes the connection; later requests fail. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#queue.catch(() => {});
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket === undefined || socket.destroyed) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => socket.destroy(), this.#options.timeoutMs);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.end();
    });
  }

  #enqueue<T>(task: () => Promise<T>): Promise<T> {
    if (this.#closed) {
      return Promise.reject(new FieldsError('PROVIDER_ERROR', OPERATION, 'provider is closed'));
    }
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => {});
    return run;
  }

  #connected(): Promise<TLSSocket> {
    const current = this.#socket;
    if (current !== undefined && !current.destroyed && current.writable) {
      return Promise.resolve(current);
    }
    this.#socket = undefined;
    const { host, port, ca, cert, key, serverName, timeoutMs } = this.#options;
    return new Promise((resolve, reject) => {
      let socket: TLSSocket;
      try {
        socket = connect({
          host,
          port,
          ca: toTlsInput(ca),
          cert: toTlsInput(cert),
          key: toTlsInput(key),
          // SNI must not carry an IP address (RFC 6066); the certificate is then checked
          // against the IP itself.
          ...(serverName !== undefined
            ? { servername: serverName }
            : isIP(host) === 0
              ? { servername: host }
              : {}),
          minVersion: 'TLSv1.2',
        });
      } catch (err) {
        // Node builds the TLS context synchronously: unreadable PEM is the caller's mistake.
        reject(
          new FieldsError('INVALID_ARGUMENT', OPERATION, `tls options rejected: ${describe(err)}`, {
            cause: err,
          }),
        );
        return;
      }
      const timer = setTimeout(() => {
        socket.destroy();
        reject(unavailable(`timed out after ${timeoutMs} ms connecting to ${host}:${port}`));
      }, timeoutMs);
      const onError = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(unavailable(`cannot connect to ${host}:${port}: ${describe(err)}`, err));
      };
      socket.once('error', onError);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        // Idle errors (a reset while nobody is waiting) only mark the socket dead.
        socket.on('error', () => socket.destroy());
        socket.on('close', () => {
          if (this.#socket === socket) this.#socket = undefined;
        });
        socket.unref();
        this.#socket = socket;
        resolve(socket);
      });
    });
  }

  #exchange(socket: TLSSocket, request: Uint8Array): Promise<Uint8Array> {
    const { timeoutMs } = this.#options;
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let received = 0;
      let expected: number | undefined;

      const finish = (err: Error | undefined, reply?: Uint8Array) => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
        socket.unref();
        for (const chunk of chunks) wipe(chunk);
        if (err !== undefined) {
          socket.destroy();
          reject(err);
        } else {
          resolve(reply as Uint8Array);
        }
      };
      const onData = (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        try {
          if (expected === undefined && received >= 8) {
            expected = ttlvMessageSize(Buffer.concat(chunks, 8));
          }
        } catch (err) {
          finish(err as Error);
          return;
        }
        if (expected === undefined || received < expected) return;
        if (received > expected) {
          finish(
            new FieldsError('PROVIDER_ERROR', OPERATION, 'server sent bytes nobody asked for'),
          );
          return;
        }
        const reply = Buffer.concat(chunks, expected);
        finish(undefined, new Uint8Array(reply.buffer, reply.byteOffset, reply.length));
      };
      const onError = (err: Error) =>
        finish(
          received === 0 ? new ClosedBeforeReply(describe(err)) : unavailable(describe(err), err),
        );
      const onClose = () =>
        finish(
          received === 0
            ? new ClosedBeforeReply('closed')
            : unavailable('connection closed in the middle of a reply'),
        );
      const timer = setTimeout(
        () => finish(unavailable(`no reply within ${timeoutMs} ms`)),
        timeoutMs,
      );

      socket.ref();
      socket.on('data', onData);
      socket.once('error', onError);
      socket.once('close', onClose);
      socket.write(request);
    });
  }
}
