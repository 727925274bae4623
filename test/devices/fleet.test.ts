import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Aedes } from 'aedes';
import type { AedesOptions, Client } from 'aedes';
import mqtt from 'mqtt';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { Fleet } from '../../devices/fleet.ts';
import type { FleetOptions } from '../../devices/fleet.ts';
import { PROFILE_NAMES } from '../../devices/profiles.ts';
import { waitFor } from '../helpers/wait.ts';

interface Arrival {
  clientId: string;
  topic: string;
  payload: string;
  qos: number;
  dup: boolean;
  messageId: number | undefined;
}

interface Broker {
  aedes: Aedes;
  port: number;
  url: string;
  arrivals: Arrival[];
  close(): Promise<void>;
}

type Hook = NonNullable<AedesOptions['authorizePublish']>;

/**
 * A real Aedes on 127.0.0.1 (port 0 unless given) that records every publish as it arrives, before its PUBACK.
 * `authorizePublish` may hold a publish back (no PUBACK until it calls `callback`); by default all pass.
 */
async function startBroker(options: { port?: number; ws?: boolean; authorizePublish?: Hook } = {}): Promise<Broker> {
  const arrivals: Arrival[] = [];
  const hook: Hook = options.authorizePublish ?? ((_client, _packet, callback) => callback(null));
  const aedes = await Aedes.createBroker({
    authorizePublish: (client, packet, callback) => {
      arrivals.push({
        clientId: client?.id ?? '',
        topic: packet.topic,
        payload: Buffer.from(packet.payload as Uint8Array).toString(),
        qos: packet.qos,
        dup: packet.dup,
        messageId: packet.messageId,
      });
      hook(client, packet, callback);
    },
  });
  const sockets = new Set<Socket>();
  let server: Server | ReturnType<typeof createHttpServer>;
  let wss: WebSocketServer | undefined;
  if (options.ws) {
    const http = createHttpServer();
    server = http;
    wss = new WebSocketServer({ server: http });
    wss.on('connection', (websocket) => aedes.handle(createWebSocketStream(websocket) as never));
  } else {
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      aedes.handle(socket);
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let closed = false;
  return {
    aedes,
    port,
    url: `${options.ws ? 'ws' : 'mqtt'}://127.0.0.1:${port}`,
    arrivals,
    async close() {
      if (closed) return;
      closed = true;
      for (const socket of sockets) socket.destroy();
      for (const client of wss?.clients ?? []) client.terminate();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}

/**
 * A minimal MQTT 3.1.1 server that accepts any CONNECT, reads every PUBLISH as soon as it arrives and sends one
 * PUBACK every `ackEveryMs` (oldest first). `maxUnacked` is the most QoS 1 publishes it held unacknowledged.
 */
async function slowEdge(ackEveryMs: number): Promise<{ url: string; received: number; maxUnacked: number; close(): Promise<void> }> {
  const state = { received: 0, maxUnacked: 0 };
  const sockets = new Set<Socket>();
  const timers: ReturnType<typeof setInterval>[] = [];
  const server = createServer((socket) => {
    sockets.add(socket);
    const unacked: number[] = [];
    let buffer = Buffer.alloc(0);
    const timer = setInterval(() => {
      const id = unacked.shift();
      if (id !== undefined) socket.write(Buffer.from([0x40, 0x02, id >> 8, id & 0xff])); // PUBACK
    }, ackEveryMs);
    timers.push(timer);
    socket.on('close', () => {
      clearInterval(timer);
      sockets.delete(socket);
    });
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        // Fixed header: type and flags, then the remaining length as a variable byte integer [MQTT-2.2.3].
        let length = 0;
        let multiplier = 1;
        let i = 1;
        for (; i < buffer.length && i <= 4; i++) {
          length += (buffer[i] & 0x7f) * multiplier;
          multiplier *= 128;
          if ((buffer[i] & 0x80) === 0) break;
        }
        if (i >= buffer.length || buffer.length < i + 1 + length) return;
        const type = buffer[0] >> 4;
        const body = buffer.subarray(i + 1, i + 1 + length);
        const qos = (buffer[0] >> 1) & 3;
        buffer = buffer.subarray(i + 1 + length);
        if (type === 1) socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00])); // CONNECT → CONNACK accepted
        if (type === 12) socket.write(Buffer.from([0xd0, 0x00])); // PINGREQ → PINGRESP
        if (type === 3) {
          state.received++;
          if (qos === 1) {
            const topicLength = body.readUInt16BE(0);
            unacked.push(body.readUInt16BE(2 + topicLength));
            state.maxUnacked = Math.max(state.maxUnacked, unacked.length);
          }
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get received() {
      return state.received;
    },
    get maxUnacked() {
      return state.maxUnacked;
    },
    async close() {
      for (const timer of timers) clearInterval(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Fails with `what` unless `promise` settles within `ms`. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The messages each device's arrivals carry, in arrival order. */
function byDevice(arrivals: Arrival[]): Map<string, (Arrival & { body: Record<string, number> })[]> {
  const out = new Map<string, (Arrival & { body: Record<string, number> })[]>();
  for (const a of arrivals) {
    const list = out.get(a.clientId) ?? [];
    list.push({ ...a, body: JSON.parse(a.payload) as Record<string, number> });
    out.set(a.clientId, list);
  }
  return out;
}

const READING_KEYS: Record<string, string[]> = {
  temperature: ['celsius'],
  humidity: ['percent'],
  vibration: ['rmsMmS', 'peakMmS'],
  battery: ['percent', 'volts'],
  gps: ['lat', 'lon', 'speedKmh', 'heading'],
};

describe('Fleet', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function broker(options: Parameters<typeof startBroker>[0] = {}): Promise<Broker> {
    const b = await startBroker(options);
    cleanups.push(() => b.close());
    return b;
  }

  function fleet(options: FleetOptions): Fleet {
    const f = new Fleet({ reconnectPeriodMs: 50, tickMs: 5, ...options });
    cleanups.push(() => f.stop());
    return f;
  }

  it('delivers every message of every device exactly once, in seq order, on its own topic, as JSON (QoS 1)', async () => {
    const b = await broker();
    const acks: string[] = [];
    const started = Date.now();
    const f = fleet({ url: b.url, devices: 5, rate: 100, qos: 1, messagesPerDevice: 20, ackLog: (id, seq) => acks.push(`${id} ${seq}`) });
    await f.start();
    await within(10_000, 'every message acknowledged', f.whenDone());

    const devices = byDevice(b.arrivals);
    expect([...devices.keys()].sort()).toEqual(['sim-0001', 'sim-0002', 'sim-0003', 'sim-0004', 'sim-0005']);
    for (const [i, metric] of PROFILE_NAMES.entries()) {
      const id = `sim-${String(i + 1).padStart(4, '0')}`;
      const messages = devices.get(id)!;
      expect(messages.map((m) => m.body.seq)).toEqual(Array.from({ length: 20 }, (_, seq) => seq));
      for (const m of messages) {
        expect(m.topic).toBe(`telemetry/${id}/${metric}`);
        expect(m.qos).toBe(1);
        expect(m.dup).toBe(false);
        expect(Object.keys(m.body).sort()).toEqual([...READING_KEYS[metric], 'seq', 'ts'].sort());
        expect(m.body.ts).toBeGreaterThanOrEqual(started);
        expect(m.body.ts).toBeLessThanOrEqual(Date.now());
      }
      const ts = messages.map((m) => m.body.ts);
      expect(ts).toEqual([...ts].sort((a, b) => a - b));
    }
    expect(acks.sort()).toEqual(b.arrivals.map((a) => `${a.clientId} ${JSON.parse(a.payload).seq}`).sort());
    expect(new Set(acks).size).toBe(100);
    expect(f.stats()).toMatchObject({ devices: 5, connected: 5, sent: 100, acked: 100, inflight: 0, resent: 0, finished: 5, done: true });
  });

  it('publishes at QoS 0 and reports done once everything is written, with nothing to acknowledge', async () => {
    const b = await broker();
    const acks: string[] = [];
    const f = fleet({ url: b.url, devices: 3, rate: 100, qos: 0, messagesPerDevice: 10, ackLog: (id, seq) => acks.push(`${id} ${seq}`) });
    await f.start();
    await within(10_000, 'every message sent', f.whenDone());
    await waitFor('30 arrivals', () => b.arrivals.length === 30, 5000);
    for (const messages of byDevice(b.arrivals).values()) {
      expect(messages.map((m) => m.body.seq)).toEqual(Array.from({ length: 10 }, (_, seq) => seq));
      expect(messages.every((m) => m.qos === 0 && !m.dup)).toBe(true);
    }
    expect(acks).toEqual([]);
    expect(f.stats()).toMatchObject({ sent: 30, acked: 0, inflight: 0, done: true });
  });

  it('works over MQTT over WebSocket', async () => {
    const b = await broker({ ws: true });
    const f = fleet({ url: b.url, devices: 2, rate: 100, messagesPerDevice: 5 });
    await f.start();
    await within(10_000, 'every message acknowledged', f.whenDone());
    expect(b.arrivals.map((a) => a.clientId).sort()).toEqual([...Array(5).fill('sim-0001'), ...Array(5).fill('sim-0002')]);
    expect(f.stats().acked).toBe(10);
  });

  it('sends the same readings for the same seed, and others for another seed', async () => {
    const b = await broker();
    const run = async (seed: number, prefix: string) => {
      const f = fleet({ url: b.url, devices: 5, rate: 200, seed, prefix, messagesPerDevice: 4 });
      await f.start();
      await within(10_000, 'every message acknowledged', f.whenDone());
      await f.stop();
      const readings = b.arrivals
        .filter((a) => a.clientId.startsWith(prefix))
        .map((a) => {
          const { ts: _ts, ...rest } = JSON.parse(a.payload) as Record<string, number>;
          return `${a.clientId.slice(prefix.length)} ${a.topic.split('/')[2]} ${JSON.stringify(rest)}`;
        });
      return readings.sort();
    };
    const first = await run(7, 'a-');
    expect(first).toHaveLength(20);
    expect(await run(7, 'b-')).toEqual(first);
    expect(await run(8, 'c-')).not.toEqual(first);
  });

  it('re-sends an unacknowledged publish after a reconnect with DUP=1, same packet id and same payload [MQTT-3.3.1-1]', async () => {
    let heldBack: Client | null = null;
    const b = await broker({
      authorizePublish: (client, packet, callback) => {
        if (heldBack === null && !packet.dup) {
          // No PUBACK for the first publish; drop the connection as a crashing edge would.
          heldBack = client;
          client!.conn.destroy();
          return;
        }
        callback(null);
      },
    });
    const acks: string[] = [];
    const f = fleet({ url: b.url, devices: 1, rate: 100, messagesPerDevice: 3, ackLog: (id, seq) => acks.push(`${id} ${seq}`) });
    await f.start();
    await within(10_000, 'every message acknowledged', f.whenDone());

    const arrivals = byDevice(b.arrivals).get('sim-0001')!;
    const first = arrivals[0];
    expect(first.body.seq).toBe(0);
    expect(first.dup).toBe(false);
    const resends = arrivals.slice(1).filter((a) => a.body.seq === 0);
    expect(resends.length).toBeGreaterThanOrEqual(1);
    for (const resend of resends) {
      expect(resend.dup).toBe(true);
      expect(resend.messageId).toBe(first.messageId);
      expect(resend.payload).toBe(first.payload);
    }
    // Whatever else was on the wire when the connection dropped comes again, also marked.
    const seen = new Set<number>();
    for (const a of arrivals) {
      if (seen.has(a.body.seq)) expect(a.dup).toBe(true);
      seen.add(a.body.seq);
    }
    expect([...seen].sort()).toEqual([0, 1, 2]);
    expect(acks.sort()).toEqual(['sim-0001 0', 'sim-0001 1', 'sim-0001 2']);
    expect(f.stats().resent).toBeGreaterThanOrEqual(1);
  });

  it("documents why: mqtt.js's default store re-sends without DUP", async () => {
    // If this starts failing, mqtt.js sets DUP itself and DupFlagStore may no longer be needed.
    let dropped = false;
    const b = await broker({
      authorizePublish: (client, _packet, callback) => {
        if (!dropped) {
          dropped = true;
          client!.conn.destroy();
          return;
        }
        callback(null);
      },
    });
    const client = mqtt.connect(b.url, { clientId: 'plain', protocolVersion: 4, clean: false, reconnectPeriod: 50 });
    cleanups.push(() => client.endAsync(true));
    await within(10_000, 'the PUBACK of the re-send', client.publishAsync('telemetry/plain/x', '{"seq":0}', { qos: 1 }));
    expect(b.arrivals.map((a) => a.dup)).toEqual([false, false]);
  });

  it('keeps at most `inflight` publishes per device unacknowledged while the edge is slow', async () => {
    // Aedes reads a client's next packets only once the previous batch is authorised, which would hide how many
    // the device has in flight; this edge reads everything and acknowledges 20 a second, against 500 sent.
    const edge = await slowEdge(50);
    cleanups.push(() => edge.close());
    const f = fleet({ url: edge.url, devices: 1, rate: 500, inflight: 4, messagesPerDevice: 16 });
    await f.start();
    await within(10_000, 'every message acknowledged', f.whenDone());
    // Received but not yet acknowledged by the edge can only be less than what the device has outstanding.
    expect(edge.maxUnacked).toBe(4);
    expect(edge.received).toBe(16);
    expect(f.stats()).toMatchObject({ sent: 16, acked: 16, inflight: 0 });
  });

  it('rides through an edge restart: every message arrives, re-sends carry DUP=1, each is acknowledged once', async () => {
    // The first edge stops acknowledging after 30 messages (as if its disk stalled), then goes away.
    const held: string[] = [];
    const first = await startBroker({
      authorizePublish: (client, packet, callback) => {
        if (first.arrivals.length <= 30) return callback(null);
        held.push(`${client!.id} ${JSON.parse(Buffer.from(packet.payload as Uint8Array).toString()).seq}`);
      },
    });
    cleanups.push(() => first.close());
    const port = first.port;
    const acks: string[] = [];
    const f = fleet({ url: first.url, devices: 3, rate: 100, messagesPerDevice: 60, ackLog: (id, seq) => acks.push(`${id} ${seq}`) });
    await f.start();
    await waitFor('a held-back message of every device', () => new Set(held.map((h) => h.split(' ')[0])).size === 3, 10_000);
    await first.close();
    await waitFor('the devices to notice', () => f.stats().connected === 0, 10_000);
    const second = await broker({ port });
    await within(20_000, 'every message acknowledged', f.whenDone());

    for (const [id, messages] of byDevice([...first.arrivals, ...second.arrivals])) {
      const seen = new Set<number>();
      for (const m of messages) {
        if (seen.has(m.body.seq)) expect(m.dup, `${id} seq ${m.body.seq} again`).toBe(true);
        seen.add(m.body.seq);
      }
      expect(seen.size).toBe(60);
    }
    const resentToSecond = new Set(second.arrivals.filter((a) => a.dup).map((a) => `${a.clientId} ${JSON.parse(a.payload).seq}`));
    for (const h of held) expect(resentToSecond.has(h), `${h} re-sent with DUP=1`).toBe(true);
    expect(acks).toHaveLength(180);
    expect(new Set(acks).size).toBe(180);
    expect(f.stats()).toMatchObject({ sent: 180, acked: 180, connected: 3 });
    expect(f.stats().resent).toBeGreaterThanOrEqual(held.length);
  });

  it('opens connections gradually at connectRate', async () => {
    const b = await broker();
    const connects: number[] = [];
    b.aedes.on('client', () => connects.push(Date.now()));
    const f = fleet({ url: b.url, devices: 20, rate: 1, connectRate: 100 });
    const begin = Date.now();
    await f.start();
    await waitFor('20 connections', () => f.stats().connected === 20, 10_000);
    // 20 connections at 100 a second take at least ~190 ms (the first opens at once).
    expect(Date.now() - begin).toBeGreaterThanOrEqual(150);
    expect(connects[19] - connects[0]).toBeGreaterThanOrEqual(150);
  });

  it('stop() closes every connection', async () => {
    const b = await broker();
    const f = fleet({ url: b.url, devices: 5, rate: 20 });
    await f.start();
    await waitFor('5 connections', () => f.stats().connected === 5 && b.aedes.connectedClients === 5, 10_000);
    await waitFor('some traffic', () => f.stats().acked >= 10, 10_000);
    await within(5000, 'stop', f.stop());
    expect(f.stats().connected).toBe(0);
    expect(f.stats().inflight).toBe(0);
    await waitFor('the broker to see every client go', () => b.aedes.connectedClients === 0, 5000);
  });

  it('stop() returns promptly while the devices are still trying to reach a down edge', async () => {
    const b = await startBroker();
    const url = b.url;
    await b.close();
    const f = fleet({ url, devices: 10, rate: 10 });
    await f.start();
    await waitFor('connection errors', () => f.stats().errors >= 10, 10_000);
    expect(f.stats().connected).toBe(0);
    expect(f.stats().sent).toBe(0);
    await within(3000, 'stop', f.stop());
  });

  it('rejects options that cannot work', () => {
    expect(() => new Fleet({ url: 'mqtt://x', devices: 0, rate: 1 })).toThrow(/devices/);
    expect(() => new Fleet({ url: 'mqtt://x', devices: 1, rate: 0 })).toThrow(/rate/);
    expect(() => new Fleet({ url: 'mqtt://x', devices: 1, rate: 1, qos: 2 as 1 })).toThrow(/qos/);
    expect(() => new Fleet({ url: 'mqtt://x', devices: 1, rate: 1, prefix: 'a/b' })).toThrow(/prefix/);
  });
});
