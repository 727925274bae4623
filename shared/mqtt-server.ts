/**
 * An MQTT server: Aedes behind a TCP listener (Nagle off: it adds about 40 ms to the QoS 0 tail) and, when asked,
 * an MQTT-over-WebSocket listener. The edge's device broker and the cloud's uplink listener are both one of
 * these; hooks are passed in, and the server itself knows nothing of events or logs.
 */
import { createServer as createHttpServer } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { Buffer } from 'node:buffer';
import { Aedes } from 'aedes';
import type { AedesOptions } from 'aedes';
import { createWebSocketStream, WebSocketServer } from 'ws';
import type { Logger } from '../shared/logger.ts';
import { runtimeKey } from './runtime.ts';

export interface MqttServerOptions {
  host: string;
  port: number;
  /** MQTT over WebSocket; null for none. */
  wsPort: number | null;
  hooks: Pick<AedesOptions, 'authorizePublish' | 'authenticate' | 'authorizeSubscribe'>;
  logger: Logger;
}

export interface RunningMqttServer {
  aedes: Aedes;
  port: number;
  wsPort: number | null;
  close(): Promise<void>;
}

export async function startMqttServer(options: MqttServerOptions): Promise<RunningMqttServer> {
  const { logger } = options;
  const aedes = await Aedes.createBroker({ ...options.hooks, drainTimeout: 30_000 });
  aedes.on('clientError', (client, err) => logger.debug('client error', { clientId: client.id, error: err.message }));
  aedes.on('connectionError', (client, err) => logger.warn('connection error', { clientId: client?.id, error: err.message }));

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
    aedes.handle(wholeReads ? readWholeBuffer(socket) : socket);
  });
  const port = await listen(tcp, options.host, options.port, 'MQTT');

  let http: HttpServer | undefined;
  let wss: WebSocketServer | undefined;
  let wsPort: number | null = null;
  if (options.wsPort !== null) {
    http = createHttpServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket: connect with the "mqtt" subprotocol\n');
    });
    wss = new WebSocketServer({ server: http });
    wss.on('connection', (websocket, req) => {
      const stream = createWebSocketStream(websocket);
      stream.on('error', () => websocket.terminate());
      aedes.handle(stream as never, req as never);
    });
    wsPort = await listen(http, options.host, options.wsPort, 'MQTT over WebSocket');
  }

  return {
    aedes,
    port,
    wsPort,
    async close() {
      tcp.close();
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
