/**
 * A TCP proxy for fault tests: listens on 127.0.0.1 and forwards each connection to a target. The test can cut
 * every open connection at once (`cut()`), cut at random moments (`flap()`), delay every chunk in both
 * directions (order is kept), and partition the link: while partitioned, connections are accepted but nothing
 * is forwarded (a black hole, as a dead route looks to the dialler); `heal()` drops them so clients redial.
 */
import { createConnection, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';

export interface TcpProxyOptions {
  target: { host?: string; port: number };
  /** Port to listen on (default 0: any free port). */
  port?: number;
  /** Delay of each chunk in ms; a function draws one per chunk (jitter). Default 0. */
  delayMs?: number | (() => number);
  /** Source of randomness for `flap()`; pass a seeded one so a failing run can be replayed. */
  random?: () => number;
}

export interface TcpProxyStats {
  /** Connections accepted from clients. */
  connections: number;
  /** Bytes forwarded client → target and target → client. */
  bytesUp: number;
  bytesDown: number;
  /** Calls of `cut()` (by hand or by `flap()`), and the connections they destroyed. */
  cuts: number;
  connectionsCut: number;
}

interface Pair {
  client: Socket;
  upstream: Socket | null;
}

export class TcpProxy {
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #random: () => number;
  readonly #pairs = new Set<Pair>();
  #delay: number | (() => number);
  #partitioned = false;
  #flapTimer: ReturnType<typeof setTimeout> | null = null;
  readonly stats: TcpProxyStats = { connections: 0, bytesUp: 0, bytesDown: 0, cuts: 0, connectionsCut: 0 };

  private constructor(server: Server, options: TcpProxyOptions) {
    this.#server = server;
    this.#target = { host: options.target.host ?? '127.0.0.1', port: options.target.port };
    this.#delay = options.delayMs ?? 0;
    this.#random = options.random ?? Math.random;
    server.on('connection', (client) => this.#accept(client));
  }

  static async start(options: TcpProxyOptions): Promise<TcpProxy> {
    const server = createServer({ noDelay: true, allowHalfOpen: true });
    const proxy = new TcpProxy(server, options);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** `mqtt://127.0.0.1:{port}`: what a client dials instead of the target. */
  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Connections open now. */
  get open(): number {
    return this.#pairs.size;
  }

  get partitioned(): boolean {
    return this.#partitioned;
  }

  set delayMs(delay: number | (() => number)) {
    this.#delay = delay;
  }

  /** Destroys every open connection, both sides; returns how many there were. */
  cut(): number {
    const n = this.#pairs.size;
    for (const pair of this.#pairs) this.#drop(pair);
    this.stats.cuts++;
    this.stats.connectionsCut += n;
    return n;
  }

  /**
   * Cuts at random moments, the gaps drawn uniformly from [minMs, maxMs], until `steady()`. `onCut` hears of each
   * cut (with the number of connections it destroyed), e.g. to log it.
   */
  flap(minMs: number, maxMs: number, onCut?: (connections: number) => void): void {
    this.steady();
    const next = () => {
      this.#flapTimer = setTimeout(() => {
        const n = this.cut();
        onCut?.(n);
        next();
      }, minMs + this.#random() * (maxMs - minMs));
    };
    next();
  }

  /** Stops `flap()`. */
  steady(): void {
    if (this.#flapTimer) clearTimeout(this.#flapTimer);
    this.#flapTimer = null;
  }

  /** Cuts every connection and from now on accepts connections without forwarding anything (a black hole). */
  partition(): void {
    this.#partitioned = true;
    this.cut();
  }

  /** Ends a partition: drops the connections held in the black hole (their clients redial) and forwards again. */
  heal(): void {
    this.#partitioned = false;
    for (const pair of this.#pairs) if (pair.upstream === null) this.#drop(pair);
  }

  async close(): Promise<void> {
    this.steady();
    for (const pair of this.#pairs) this.#drop(pair);
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: Socket): void {
    this.stats.connections++;
    const pair: Pair = { client, upstream: null };
    this.#pairs.add(pair);
    client.on('error', () => this.#drop(pair));
    client.on('close', () => this.#closed(pair, client, pair.upstream));
    if (this.#partitioned) {
      client.on('data', () => undefined); // swallowed: no route to the target
      return;
    }
    const upstream = createConnection({ host: this.#target.host, port: this.#target.port, noDelay: true, allowHalfOpen: true });
    pair.upstream = upstream;
    upstream.on('error', () => this.#drop(pair));
    upstream.on('close', () => this.#closed(pair, upstream, client));
    this.#forward(client, upstream, pair, (n) => (this.stats.bytesUp += n));
    this.#forward(upstream, client, pair, (n) => (this.stats.bytesDown += n));
  }

  /** Copies chunks from `from` to `to`, each after the configured delay, in order; nothing once the pair is dropped. */
  #forward(from: Socket, to: Socket, pair: Pair, count: (bytes: number) => void): void {
    // One queue and one timer per direction: a chunk never overtakes the one before it, as on a real link.
    const queue: { at: number; chunk: Buffer }[] = [];
    let timer: ReturnType<typeof setTimeout> | null = null;
    const write = (chunk: Buffer) => {
      if (!this.#pairs.has(pair) || to.destroyed) return;
      count(chunk.length);
      to.write(chunk);
    };
    let ended = false;
    const pump = () => {
      timer = null;
      const now = Date.now();
      while (queue.length > 0 && queue[0].at <= now) write(queue.shift()!.chunk);
      if (queue.length > 0) timer = setTimeout(pump, queue[0].at - now);
      else if (ended && !to.destroyed) to.end();
    };
    from.on('data', (chunk: Buffer) => {
      const delay = typeof this.#delay === 'function' ? this.#delay() : this.#delay;
      if (delay <= 0 && queue.length === 0) {
        write(chunk);
        return;
      }
      queue.push({ at: Date.now() + Math.max(0, delay), chunk });
      timer ??= setTimeout(pump, Math.max(0, delay));
    });
    // A FIN is passed on after the data before it (half-close, as TCP does).
    from.on('end', () => {
      ended = true;
      if (queue.length === 0 && !to.destroyed) to.end();
    });
  }

  /**
   * One side closed. After a clean close in both directions (FIN received and sent) the other side finishes on
   * its own: what is still queued for it goes out before its FIN. Anything else ends the pair at once.
   */
  #closed(pair: Pair, socket: Socket, other: Socket | null): void {
    const clean = socket.readableEnded && socket.writableFinished;
    if (clean && other && !other.closed) return;
    this.#drop(pair);
  }

  #drop(pair: Pair): void {
    if (!this.#pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream?.destroy();
  }
}
