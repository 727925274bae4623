/**
 * An MQTT server: Aedes behind a TCP listener (Nagle off: it adds about 40 ms to the QoS 0 tail) and, when asked,
 * an MQTT-over-WebSocket listener and an MQTT-over-TLS listener. The edge's device broker and the cloud's uplink
 * listener are both one of these; hooks are passed in, and the server itself knows nothing of events or logs.
 */
import { createServer as createHttpServer } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { Buffer } from 'node:buffer';
import { Aedes } from 'aedes';
import type { AedesOptions, Client } from 'aedes';
import { createServer as createTlsServer } from 'node:tls';
import type { Server as TlsServer, TlsOptions } from 'node:tls';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { Logger } from '../shared/logger.ts';
import { LogThrottle } from './log-throttle.ts';
import { runtimeKey } from './runtime.ts';

export interface MqttServerOptions {
  host: string;
  /** Plain MQTT over TCP; null for none (a TLS-only server). */
  port: number | null;
  /** MQTT over WebSocket; null for none. */
  wsPort: number | null;
  /** MQTT over TLS: its port and the loaded `node:tls` options (shared/tls-config.ts); null or absent for none. */
  tls?: { port: number; options: TlsOptions } | null;
  hooks: Pick<AedesOptions, 'authorizePublish' | 'authenticate' | 'authorizeSubscribe' | 'preConnect'>;
  /** Broker settings: the slow-consumer drain timeout and the time a connection has to send CONNECT. */
  broker?: Pick<AedesOptions, 'drainTimeout' | 'connectTimeout' | 'maxClientsIdLength'>;
  /** Largest WebSocket message accepted (an MQTT packet travels in one or more); default 100 MiB, the `ws` default. */
  maxWebSocketBytes?: number;
  /** Called with the Aedes client of every new connection, on every listener, before it has sent anything. */
  onConnection?: (client: Client) => void;
  logger: Logger;
}

export interface RunningMqttServer {
  aedes: Aedes;
  /** The plain MQTT port, or null when there is no plain listener. */
  port: number | null;
  wsPort: number | null;
  /** The MQTT over TLS port, or null when there is no TLS listener. */
  tlsPort: number | null;
  close(): Promise<void>;
}

export async function startMqttServer(options: MqttServerOptions): Promise<RunningMqttServer> {
  const { logger } = options;
  const aedes = await Aedes.createBroker({ drainTimeout: 30_000, ...options.broker, ...options.hooks });
  const onConnection = options.onConnection;
  aedes.on('clientError', (client, err) => logger.debug('client error', { clientId: client.id, error: err.message }));
  // A connection that fails before CONNECT (garbage, a port scanner) is anyone's to cause at will: a few lines per
  // address and window, the rest counted.
  const connectionErrors = new LogThrottle();
  aedes.on('connectionError', (client, err) => {
    const remoteAddress = (client?.conn as Partial<Socket> | undefined)?.remoteAddress;
    const suppressed = connectionErrors.admit(remoteAddress ?? 'unknown');
    if (suppressed === undefined) return;
    logger.warn('connection error', { clientId: client?.id, remoteAddress, error: err.message, ...(suppressed > 0 ? { suppressed } : {}) });
  });

  // Open sockets, so that close() also ends those that never sent CONNECT (Aedes knows only connected clients).
  // One shared 'close' listener, not a closure per socket: about 100 bytes less for each idle device.
  const sockets = new Set<Socket>();
  function forget(this: Socket): void {
    sockets.delete(this);
  }
  const wholeReads = runtimeKey() === 'deno';
  const tcp = createServer((socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', forget);
    const client = aedes.handle(wholeReads ? readWholeBuffer(socket) : socket);
    onConnection?.(client);
  });
  const port = options.port === null ? null : await listen(tcp, options.host, options.port, 'MQTT');

  let http: HttpServer | undefined;
  let wss: WebSocketServer | undefined;
  let wsPort: number | null = null;
  if (options.wsPort !== null) {
    http = createHttpServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket: connect with the "mqtt" subprotocol\n');
    });
    wss = new WebSocketServer({ server: http, maxPayload: options.maxWebSocketBytes ?? 100 * 1024 * 1024 });
    wss.on('connection', (websocket, req) => {
      const stream = createWebSocketStream(websocket);
      stream.on('error', () => websocket.terminate());
      const client = aedes.handle(stream as never, req as never);
      onConnection?.(client);
    });
    wsPort = await listen(http, options.host, options.wsPort, 'MQTT over WebSocket');
  }

  let closing = false;
  let tls: TlsServer | undefined;
  let tlsPort: number | null = null;
  if (options.tls) {
    tls = createTlsServer({ ...options.tls.options, noDelay: true }, (socket) => {
      socket.setNoDelay(true);
      sockets.add(socket);
      socket.on('close', forget);
      // The TLS socket is the client's `conn`, so hooks can ask it for the verified peer certificate.
      const client = aedes.handle(wholeReads ? (readWholeBuffer(socket) as typeof socket) : socket);
      onConnection?.(client);
    });
    // A connection still in its handshake is not a client yet, but close() must end it too.
    tls.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.on('close', forget);
    });
    // Anyone can fail a handshake at will (port scanners, clients that do not trust this server): a few lines per
    // address and window, the rest counted.
    const throttle = new LogThrottle();
    tls.on('tlsClientError', (err: Error, socket: Socket) => {
      // close() cutting a handshake short is no failure of the client's.
      if (closing) return;
      const suppressed = throttle.admit(socket.remoteAddress ?? 'unknown');
      if (suppressed === undefined) return;
      logger.warn('TLS handshake failed', { remoteAddress: socket.remoteAddress, error: err.message, ...(suppressed > 0 ? { suppressed } : {}) });
    });
    tlsPort = await listen(tls, options.host, options.tls.port, 'MQTT over TLS');
  }

  return {
    aedes,
    port,
    wsPort,
    tlsPort,
    async close() {
      closing = true;
      if (port !== null) tcp.close();
      tls?.close();
      for (const socket of sockets) socket.destroy();
      if (wss) {
        for (const client of wss.clients) client.terminate();
        wss.close();
      }
      http?.close();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}

function listen(server: Server | HttpServer, host: string, port: number, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'EADDRINUSE' ? `: port ${port} is in use; stop the other process or choose another port` : '';
      reject(new Error(`cannot listen for ${what} on ${host}:${port}${hint} (${err.code ?? err.message})`, { cause: err }));
    });
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

/**
 * Makes `socket.read()` return everything buffered, as Node's does. Aedes reads a connection with one
 * `read(null)` per 'readable' event. Deno's `node:net` returns only the first buffered chunk there, and since
 * the buffer is then not empty no further 'readable' event comes: a packet larger than a chunk or two (such as a
 * full uplink batch of about 200 KB) was left half-read until the next packet arrived, the edge's PINGREQ 30 s
 * later (test/fault/large-batch.test.ts). Used on Deno only.
 */
export function readWholeBuffer(socket: Socket): Socket {
  const read = socket.read.bind(socket);
  socket.read = function readAll(size?: number) {
    if (size !== undefined && size !== null) return read(size);
    const first = read();
    if (first === null) return null;
    const second = read();
    if (second === null) return first;
    const chunks: Buffer[] = [first, second];
    for (let chunk = read(); chunk !== null; chunk = read()) chunks.push(chunk);
    return Buffer.concat(chunks);
  } as Socket['read'];
  return socket;
}
