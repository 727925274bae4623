/**
 * Serves a fetch-style app (a Hono app) over HTTP/1.1 on Node.js and Deno alike: the cloud's API and the edge's
 * status endpoint. Both runtimes go through `@hono/node-server` on `node:http`: Deno's Node compatibility runs
 * it unchanged, including streamed responses with backpressure and client-disconnect detection (checked by
 * `test/cloud/http-api.test.ts`, which serves from a Deno child process), so no runtime switch is needed.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TlsOptions } from 'node:tls';
import { createAdaptorServer } from '@hono/node-server';
import { ConfigError, errorMessage } from './errors.ts';

/** What the server hands the app with every request (Hono's `c.env`). */
export interface ServerBindings {
  /** Aborted when the server starts closing: long-lived responses (event streams) end on it. */
  shutdown: AbortSignal;
}

export interface FetchApp {
  fetch(request: Request, env: ServerBindings): Response | Promise<Response>;
}

export interface HttpServerOptions {
  /** Default `127.0.0.1`. */
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** How long `close()` lets requests in flight finish before it cuts their connections. Default 1 s. */
  closeGraceMs?: number;
  /** Serve HTTPS with these loaded options (shared/tls-config.ts `loadTlsServerOptions`); absent for plain HTTP. */
  tls?: TlsOptions;
}

export interface RunningHttpServer {
  /** The port actually listened on. */
  readonly port: number;
  /** Base URL of the server, e.g. `http://127.0.0.1:8080` (`https://` with `tls`). */
  readonly url: string;
  /** Stops accepting, ends event streams, and resolves when every connection is closed. */
  close(): Promise<void>;
}

export async function startHttpServer(app: FetchApp, options: HttpServerOptions = {}): Promise<RunningHttpServer> {
  const host = options.host ?? '127.0.0.1';
  const graceMs = options.closeGraceMs ?? 1_000;
  const shutdown = new AbortController();
  const bindings: ServerBindings = { shutdown: shutdown.signal };
  const server = createAdaptorServer({
    fetch: (request) => app.fetch(request, bindings),
    // Keep the runtime's own Request and Response: replacing the globals would change them for the whole process.
    overrideGlobalObjects: false,
    // Nagle's algorithm delays small writes such as single events by up to 40 ms (DESIGN.md, "facts measured").
    ...(options.tls ? { createServer: createHttpsServer, serverOptions: { ...options.tls, noDelay: true } } : { serverOptions: { noDelay: true } }),
  }) as Server;

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(new ConfigError(`cannot listen for ${options.tls ? 'HTTPS' : 'HTTP'} on ${host}:${options.port ?? 0}: ${errorMessage(err)}. Choose another host or port.`, {}, { cause: err }));
    };
    server.once('error', onError);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', onError);
      resolve();
    });
  });

  const connections = trackConnections(server, options.tls !== undefined);
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    port,
    url: `${options.tls ? 'https' : 'http'}://${urlHost(host)}:${port}`,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        const cutOff = setTimeout(() => {
          server.closeAllConnections();
          connections.closeAll();
        }, graceMs);
        server.close((err) => {
          clearTimeout(cutOff);
          if (err) reject(err);
          else resolve();
        });
        // Event streams end on this; like every other response, their connection closes once it is done.
        shutdown.abort();
        connections.closeWhenIdle();
      });
      return closing;
    },
  };
}

/**
 * Follows which connections are serving a request, so that `close()` can close the others at once. Node's
 * `closeIdleConnections()` is not enough: it leaves a connection that has not sent a request yet (`fetch`
 * opens a spare one when a request is aborted) to the header timeout, a minute away.
 *
 * Over TLS a connection serves requests once its handshake is done ('secureConnection', the socket requests
 * come on); one still in its handshake ('connection', the TCP socket under it) is only cut by `closeAll()`.
 */
function trackConnections(server: Server, secure: boolean): { closeWhenIdle(): void; closeAll(): void } {
  const sockets = new Set<Socket>();
  const busy = new Map<Socket, number>();
  const handshaking = new Set<Socket>();
  let closing = false;
  if (secure) {
    server.on('connection', (socket: Socket) => {
      handshaking.add(socket);
      socket.once('close', () => handshaking.delete(socket));
    });
  }
  server.on(secure ? 'secureConnection' : 'connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      busy.delete(socket);
    });
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    busy.set(socket, (busy.get(socket) ?? 0) + 1);
    let done = false;
    const finished = (): void => {
      if (done) return;
      done = true;
      const left = (busy.get(socket) ?? 1) - 1;
      if (left > 0) busy.set(socket, left);
      else busy.delete(socket);
      if (closing && left <= 0) socket.destroy();
    };
    res.once('finish', finished);
    res.once('close', finished);
  });
  return {
    closeWhenIdle() {
      closing = true;
      for (const socket of sockets) if (!busy.has(socket)) socket.destroy();
    },
    closeAll() {
      for (const socket of [...sockets, ...handshaking]) socket.destroy();
    },
  };
}

/** The host as a client should write it in a URL: wildcard addresses become loopback, IPv6 gets brackets. */
function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
