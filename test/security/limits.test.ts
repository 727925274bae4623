/**
 * The edge's limits against abuse, each breached on a real edge node (real Aedes, real LevelDB, real sockets on
 * 127.0.0.1) by a raw socket or an mqtt.js client: the outcome, the counter and the log line; and a well-behaved
 * device on the same edge keeps working throughout.
 */
import { Buffer } from 'node:buffer';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import { edgeConfigSchema } from '../../edge/config.ts';
import { DeadLetters } from '../../edge/dead-letters.ts';
import { EdgeNode } from '../../edge/edge-node.ts';
import { parseConfig } from '../../shared/config.ts';
import { LevelStore } from '../../shared/level-store.ts';
import { Logger } from '../../shared/logger.ts';
import { freePort } from '../helpers/free-port.ts';
import { RawMqtt, publishPacket, subscribePacket } from '../helpers/raw-mqtt.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

interface TestEdge {
  edge: EdgeNode;
  dir: ReturnType<typeof tempDir>;
  port: number;
  lines: Record<string, unknown>[];
  /** Breaches so far, by limit. */
  breaches(): Record<string, number>;
  /** The "limit exceeded" log lines so far. */
  warnings(): Record<string, unknown>[];
  stop(): Promise<void>;
}

async function startEdge(config: Record<string, unknown>): Promise<TestEdge> {
  const dir = tempDir('tributary-limits-');
  const lines: Record<string, unknown>[] = [];
  const logger = new Logger({ level: 'warn', sink: { write: (line) => void lines.push(JSON.parse(line)) } });
  const edge = new EdgeNode(
    parseConfig(edgeConfigSchema, {
      edgeId: 'edge-limits',
      dataDir: dir.path,
      mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
      http: { port: null },
      auth: { allowAnonymous: true },
      buffer: { durability: 'crash-safe' },
      // No cloud: the edge buffers.
      uplink: { url: `mqtt://127.0.0.1:${await freePort()}`, reconnectInitialMs: 1000, reconnectMaxMs: 5000 },
      statusIntervalMs: 0,
      ...config,
    }),
    logger,
  );
  await edge.start();
  return {
    edge,
    dir,
    port: edge.ports.mqtt!,
    lines,
    breaches: () => edge.metrics.byLabel('tributary_edge_limit_breaches_total', 'limit'),
    warnings: () => lines.filter((l) => l.msg === 'limit exceeded'),
    async stop() {
      await edge.stop();
      dir.remove();
    },
  };
}

async function device(port: number, clientId: string): Promise<MqttClient> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000 });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

/** The well-behaved device publishes once more, QoS 1, and gets its PUBACK. */
async function stillWorks(good: MqttClient, t: TestEdge): Promise<void> {
  const accepted = t.edge.metrics.total('tributary_edge_events_accepted_total');
  await good.publishAsync('telemetry/good/temperature', JSON.stringify({ celsius: 21.5 }), { qos: 1 });
  expect(good.connected).toBe(true);
  // (Others' publishes may be committed meanwhile: at least this one was.)
  expect(t.edge.metrics.total('tributary_edge_events_accepted_total')).toBeGreaterThan(accepted);
}

function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).filter(([k, v]) => v !== (before[k] ?? 0)).map(([k, v]) => [k, v - (before[k] ?? 0)]));
}

describe('limits on a real edge', () => {
  let t: TestEdge;
  let good: MqttClient;
  const raws: RawMqtt[] = [];
  let before: Record<string, number>;

  beforeAll(async () => {
    t = await startEdge({
      limits: {
        maxPacketBytes: 4096,
        maxPayloadBytes: 1024,
        maxTopicLength: 64,
        maxTopicLevels: 5,
        publishRatePerSecond: 20,
        publishBurst: 10,
        maxInflight: 50,
        connectTimeoutMs: 300,
      },
    });
    good = await device(t.port, 'good');
  });

  afterAll(async () => {
    await good?.endAsync(true);
    await t?.stop();
  });

  afterEach(async () => {
    for (const raw of raws.splice(0)) raw.destroy();
    await stillWorks(good, t);
  });

  function track(raw: RawMqtt): RawMqtt {
    raws.push(raw);
    return raw;
  }

  async function connected(clientId: string): Promise<RawMqtt> {
    before = t.breaches();
    return track(await RawMqtt.connect(t.port, clientId));
  }

  it('closes a connection that announces a packet over maxPacketBytes, without waiting for its body', async () => {
    const raw = await connected('big-packet');
    // A PUBLISH announcing 1 MiB, and only its first bytes.
    raw.write(Buffer.concat([Buffer.from([0x32, 0x80, 0x80, 0x40]), Buffer.alloc(100)]));
    expect(await raw.closesWithin(5_000)).toBe(true);
    expect(delta(before, t.breaches())).toEqual({ 'packet-size': 1 });
    expect(t.warnings().at(-1)).toMatchObject({ level: 'warn', limit: 'packet-size', action: 'disconnected', clientId: 'big-packet', remoteAddress: '127.0.0.1' });
  });

  it('closes a connection whose CONNECT is over maxPacketBytes', async () => {
    before = t.breaches();
    const raw = track(await RawMqtt.open(t.port));
    raw.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]));
    expect(await raw.closesWithin(5_000)).toBe(true);
    expect(delta(before, t.breaches())).toEqual({ 'packet-size': 1 });
    expect(t.warnings().at(-1)).toMatchObject({ limit: 'packet-size', clientId: null, remoteAddress: '127.0.0.1' });
  });

  it('closes the connection of a publish to a topic over maxTopicLength, with no PUBACK', async () => {
    const raw = await connected('long-topic');
    raw.write(publishPacket({ topic: `telemetry/long-topic/${'x'.repeat(60)}`, qos: 1, messageId: 7, payload: '{}' }));
    expect(await raw.closesWithin(5_000)).toBe(true);
    expect(raw.pubacks()).toEqual([]);
    expect(delta(before, t.breaches())).toEqual({ 'topic-length': 1 });
    expect(t.warnings().at(-1)).toMatchObject({ limit: 'topic-length', action: 'disconnected', clientId: 'long-topic' });
  });

  it('closes the connection of a publish to a topic with more than maxTopicLevels levels', async () => {
    const raw = await connected('deep-topic');
    raw.write(publishPacket({ topic: 'telemetry/deep-topic/a/b/c/d', qos: 0, payload: '{}' }));
    expect(await raw.closesWithin(5_000)).toBe(true);
    expect(delta(before, t.breaches())).toEqual({ 'topic-levels': 1 });
  });

  it('closes the connection of a publish whose topic is not well-formed UTF-8, or holds U+0000 [MQTT-1.5.3-1, -2]', async () => {
    for (const [id, topic] of [
      ['bad-utf8', Buffer.concat([Buffer.from('telemetry/bad-utf8/'), Buffer.from([0xc3, 0x28])])],
      ['nul-topic', Buffer.from('telemetry/nul-topic/t\u0000x')],
    ] as const) {
      const raw = await connected(id);
      raw.write(publishPacket({ topic, qos: 1, messageId: 3, payload: '{}' }));
      expect(await raw.closesWithin(5_000)).toBe(true);
      expect(raw.pubacks()).toEqual([]);
      expect(delta(before, t.breaches())).toEqual({ 'topic-encoding': 1 });
    }
  });

  it('refuses a subscription over the topic limits with SUBACK 0x80, and keeps the connection', async () => {
    const raw = await connected('subscriber');
    raw.write(subscribePacket(1, [{ topic: 'commands/subscriber/a/b/c/#', qos: 1 }]));
    expect(await raw.suback(1)).toEqual([0x80]);
    raw.write(subscribePacket(2, [{ topic: `commands/${'y'.repeat(80)}`, qos: 0 }]));
    expect(await raw.suback(2)).toEqual([0x80]);
    await raw.ping();
    expect(raw.isClosed).toBe(false);
    expect(delta(before, t.breaches())).toEqual({ 'topic-levels': 1, 'topic-length': 1 });
    // One line for the client in 10 s: the second refusal is counted, not logged.
    expect(t.warnings().filter((l) => l.clientId === 'subscriber')).toEqual([expect.objectContaining({ limit: 'topic-levels', action: 'refused' })]);
  });

  it('drops QoS 0 publishes over the publish rate and counts them', async () => {
    const raw = await connected('chatty');
    const accepted = t.edge.metrics.total('tributary_edge_events_accepted_total');
    const dropped = () => t.edge.metrics.byLabel('tributary_edge_messages_dropped_total', 'reason')['publish-rate'] ?? 0;
    const droppedBefore = dropped();
    const SENT = 200;
    raw.write(Buffer.concat(Array.from({ length: SENT }, (_, i) => publishPacket({ topic: 'telemetry/chatty/t', qos: 0, payload: JSON.stringify({ i }) }))));
    await waitFor('every publish accepted or dropped', () => t.edge.metrics.total('tributary_edge_events_accepted_total') - accepted + dropped() - droppedBefore >= SENT);
    // The burst (10) and what the rate refilled meanwhile went through; the rest was dropped.
    expect(dropped() - droppedBefore).toBeGreaterThan(SENT / 2);
    expect(delta(before, t.breaches())).toEqual({ 'publish-rate': dropped() - droppedBefore });
    expect(t.warnings().at(-1)).toMatchObject({ limit: 'publish-rate', action: 'dropped', clientId: 'chatty' });
    expect(raw.isClosed).toBe(false);
  });

  it('slows QoS 1 publishes over the publish rate down and acknowledges every one', async () => {
    const dev = await device(t.port, 'steady');
    try {
      before = t.breaches();
      const accepted = t.edge.metrics.total('tributary_edge_events_accepted_total');
      const dropped = t.edge.metrics.total('tributary_edge_messages_dropped_total');
      const SENT = 25;
      await Promise.all(Array.from({ length: SENT }, (_, seq) => dev.publishAsync('telemetry/steady/t', JSON.stringify({ seq }), { qos: 1 })));
      expect(t.edge.metrics.total('tributary_edge_events_accepted_total') - accepted).toBe(SENT);
      expect(t.breaches()['publish-rate'] - before['publish-rate']).toBeGreaterThan(0);
      expect(t.edge.metrics.total('tributary_edge_messages_dropped_total')).toBe(dropped);
      expect(t.warnings().at(-1)).toMatchObject({ limit: 'publish-rate', action: 'slowed', clientId: 'steady' });
    } finally {
      await dev.endAsync(true);
    }
  });

  it('closes the connection of a client with more than maxInflight QoS 1 publishes unacknowledged', async () => {
    const raw = await connected('flood');
    // One write: Aedes hands every publish of a read to the hooks at once; past the burst they wait for tokens.
    raw.write(Buffer.concat(Array.from({ length: 200 }, (_, i) => publishPacket({ topic: 'telemetry/flood/t', qos: 1, messageId: i + 1, payload: '{}' }))));
    expect(await raw.closesWithin(5_000)).toBe(true);
    expect(raw.pubacks().length).toBeLessThanOrEqual(50);
    expect(delta(before, t.breaches())).toMatchObject({ inflight: 1 });
    expect(t.warnings().filter((l) => l.clientId === 'flood').map((l) => l.limit)).toContain('publish-rate');
  });

  it('closes a connection that sends no CONNECT within connectTimeoutMs', async () => {
    before = t.breaches();
    // From another loopback address: before CONNECT, log lines are limited per address, and 127.0.0.1 had its line.
    const raw = track(await RawMqtt.open(t.port, { localAddress: '127.0.0.2' }));
    expect(await raw.closesWithin(5_000)).toBe(true);
    expect(delta(before, t.breaches())).toEqual({ 'connect-timeout': 1 });
    expect(t.warnings().at(-1)).toMatchObject({ limit: 'connect-timeout', action: 'disconnected', clientId: null, remoteAddress: '127.0.0.2' });
  });
});

describe('payloads over the limit on a real edge', () => {
  it('acknowledges the publish and keeps it as a dead letter without its payload', async () => {
    const t = await startEdge({ limits: { maxPayloadBytes: 1024 } });
    let running = true;
    const dev = await device(t.port, 'big-payload');
    const good = await device(t.port, 'good');
    try {
      await dev.publishAsync('telemetry/big-payload/t', Buffer.alloc(2000, 'x'), { qos: 1 });
      await dev.publishAsync('telemetry/big-payload/t', Buffer.alloc(3000, 'y'), { qos: 0 });
      await waitFor('the QoS 0 dead letter', () => t.edge.status().deadLetters === 2);
      expect(dev.connected).toBe(true);
      await stillWorks(good, t);
      expect(t.edge.metrics.total('tributary_edge_events_accepted_total')).toBe(1);
      expect(t.breaches()['payload-size']).toBe(2);
      expect(t.edge.metrics.byLabel('tributary_edge_messages_rejected_total', 'reason')['payload-too-large']).toBe(2);
      expect(t.warnings()).toEqual([expect.objectContaining({ limit: 'payload-size', action: 'dead-lettered', clientId: 'big-payload', topic: 'telemetry/big-payload/t' })]);
      await dev.endAsync(true);
      await good.endAsync(true);
      await t.edge.stop();
      running = false;
      const store = await LevelStore.open(t.dir.path);
      try {
        const letters = await (await DeadLetters.open(store)).recent(10);
        expect(letters).toEqual([
          expect.objectContaining({ clientId: 'big-payload', topic: 'telemetry/big-payload/t', reason: 'payload-too-large', message: expect.stringContaining('2000 bytes') }),
          expect.objectContaining({ reason: 'payload-too-large', message: expect.stringContaining('3000 bytes') }),
        ]);
        expect(letters.map((l) => l.payload.byteLength)).toEqual([0, 0]);
      } finally {
        await store.close();
      }
    } finally {
      dev.end(true);
      good.end(true);
      if (running) await t.edge.stop();
      t.dir.remove();
    }
  });
});

describe('slow consumers on a real edge', () => {
  it('disconnects a subscriber that reads nothing for drainTimeoutMs, and counts it', { timeout: 20_000 }, async () => {
    const t = await startEdge({
      limits: { drainTimeoutMs: 300, publishRatePerSecond: 0, maxPayloadBytes: 0 },
      auth: { allowAnonymous: true, acl: [{ devices: 'slow', subscribe: ['telemetry/#'] }] },
    });
    const publisher = await device(t.port, 'publisher');
    const good = await device(t.port, 'good');
    const slow = await RawMqtt.connect(t.port, 'slow');
    try {
      slow.write(subscribePacket(1, [{ topic: 'telemetry/#', qos: 0 }]));
      expect(await slow.suback(1)).toEqual([0]);
      // It stops reading: the edge's writes to it back up until Aedes gives up on it.
      slow.socket.pause();
      const payload = Buffer.alloc(64 * 1024, 'z');
      for (let sent = 0; !t.breaches()['slow-consumer'] && sent < 2000; sent += 20) {
        await Promise.all(Array.from({ length: 20 }, () => publisher.publishAsync('telemetry/publisher/blob', payload, { qos: 0 })));
        await new Promise((r) => setTimeout(r, 10));
      }
      await waitFor('the slow consumer to be counted', () => t.breaches()['slow-consumer'] === 1);
      slow.socket.resume();
      expect(await slow.closesWithin(5_000)).toBe(true);
      expect(t.warnings()).toEqual([expect.objectContaining({ limit: 'slow-consumer', action: 'disconnected', clientId: 'slow', remoteAddress: '127.0.0.1' })]);
      await stillWorks(good, t);
    } finally {
      slow.destroy();
      await publisher.endAsync(true);
      await good.endAsync(true);
      await t.stop();
    }
  });
});
