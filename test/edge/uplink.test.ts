import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import type { Client, PublishPacket } from 'aedes';
import { CloudNode } from '../../cloud/cloud-node.ts';
import { cloudConfigSchema } from '../../cloud/config.ts';
import { Ingress } from '../../cloud/ingress.ts';
import { LevelCloudLog } from '../../cloud/level-cloud-log.ts';
import type { LoggedEvent } from '../../cloud/cloud-log.ts';
import { edgeConfigSchema } from '../../edge/config.ts';
import { EdgeBuffer } from '../../edge/edge-buffer.ts';
import { EdgeNode } from '../../edge/edge-node.ts';
import { HIGH, LOW, NORMAL } from '../../edge/lanes.ts';
import { Uplink } from '../../edge/uplink.ts';
import type { UplinkOptions } from '../../edge/uplink.ts';
import { Backoff } from '../../shared/backoff.ts';
import { encode } from '../../shared/codec.ts';
import { parseConfig } from '../../shared/config.ts';
import { LevelStore } from '../../shared/level-store.ts';
import { Logger } from '../../shared/logger.ts';
import { Metrics } from '../../shared/metrics.ts';
import type { RunningMqttServer } from '../../shared/mqtt-server.ts';
import { startMqttServer } from '../../shared/mqtt-server.ts';
import type { UplinkBatch } from '../../shared/uplink-wire.ts';
import { decodeBatch, edgeOfUplinkTopic } from '../../shared/uplink-wire.ts';
import { freePort } from '../helpers/free-port.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const logger = new Logger({ level: 'silent' });

/** Alarms travel in the high lane, bulk telemetry in the low one, everything else in the normal lane. */
const LANE_RULES = [
  { type: 'io.tributary.event.alarm', lane: 'high' },
  { type: 'io.tributary.telemetry.bulk', lane: 'low' },
];

type Held = { batch: UplinkBatch; release(): void };

/**
 * The cloud's real ingress and LevelDB log behind a gate: while `holding`, each batch waits (uncommitted) until
 * the test releases it; `dropAfterCommit` batches are committed and then the connection is closed instead of
 * acknowledging them, as when the cloud crashes between its commit and its PUBACK.
 */
async function gatedCloud(dir: string, port = 0) {
  const log = await LevelCloudLog.open({ path: dir, durability: 'crash-safe' });
  const metrics = new Metrics();
  const ingress = new Ingress(log, metrics, logger);
  const gate = { holding: false, dropAfterCommit: 0, held: [] as Held[], seen: [] as UplinkBatch[] };
  const dropped = new WeakSet<Client>();
  const pass = (client: Client, packet: PublishPacket, callback: (error?: Error | null) => void) =>
    ingress.authorizePublish(client, packet, (err) => {
      // Batches that were already on their way when the connection was dropped are committed, never acknowledged.
      if (dropped.has(client)) return;
      if (!err && gate.dropAfterCommit > 0) {
        gate.dropAfterCommit--;
        dropped.add(client);
        client.close();
        return;
      }
      callback(err);
    });
  const server: RunningMqttServer = await startMqttServer({
    host: '127.0.0.1',
    port,
    wsPort: null,
    logger,
    hooks: {
      authorizePublish: (client, packet, callback) => {
        // Control messages of cloud → edge commands share the connection; this cloud ignores them.
        if (!client || edgeOfUplinkTopic(packet.topic) === undefined) return callback(null);
        const batch = decodeBatch(packet.payload as Uint8Array);
        gate.seen.push(batch);
        if (gate.holding) gate.held.push({ batch, release: () => pass(client, packet, callback) });
        else pass(client, packet, callback);
      },
    },
  });
  let stopped = false;
  return {
    log,
    metrics,
    server,
    gate,
    /** Stops holding and lets every held batch through, oldest first. */
    open() {
      gate.holding = false;
      for (const h of gate.held.splice(0)) h.release();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      gate.holding = false;
      await server.close();
      await log.close();
    },
  };
}

async function startCloudNode(dataDir: string, port: number): Promise<CloudNode> {
  const config = parseConfig(cloudConfigSchema, { auth: { allowAnonymous: true }, dataDir, store: { durability: 'crash-safe' }, uplink: { host: '127.0.0.1', port }, http: { host: '127.0.0.1', port: 0 }, statusIntervalMs: 0 });
  const cloud = new CloudNode(config, logger);
  await cloud.start();
  return cloud;
}

function edgeConfig(dataDir: string, cloudPort: number, uplink: Record<string, unknown> = {}) {
  return parseConfig(edgeConfigSchema, { auth: { allowAnonymous: true },
    edgeId: 'edge-u',
    dataDir,
    mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
    http: { port: null },
    buffer: { durability: 'crash-safe', lanes: LANE_RULES },
    uplink: { url: `mqtt://127.0.0.1:${cloudPort}`, reconnectInitialMs: 20, reconnectMaxMs: 100, ...uplink },
    statusIntervalMs: 0,
  });
}

/** Publishes `count` QoS 1 messages `{seq}` on `topic`, 100 at a time; resolves when all are acknowledged. */
async function publishMany(device: MqttClient, topic: string, count: number, firstSeq = 1): Promise<void> {
  for (let i = 0; i < count; i += 100) {
    const n = Math.min(100, count - i);
    await Promise.all(Array.from({ length: n }, (_, k) => device.publishAsync(topic, JSON.stringify({ seq: firstSeq + i + k }), { qos: 1 })));
  }
}

const seqOf = (e: LoggedEvent) => (e.event.data as { seq: number }).seq;

describe('Uplink', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  function temp(): string {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    return dir.path;
  }

  async function startEdge(cloudPort: number, uplink: Record<string, unknown> = {}): Promise<{ edge: EdgeNode; device: MqttClient }> {
    const edge = new EdgeNode(edgeConfig(temp(), cloudPort, uplink), logger);
    await edge.start();
    cleanups.push(() => edge.stop());
    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${edge.ports.mqtt}`, { clientId: 'dev-u', protocolVersion: 4 });
    cleanups.push(() => device.endAsync(true));
    return { edge, device };
  }

  it('keeps one partial batch in flight and sends what commits meanwhile together, once it is acknowledged', async () => {
    const cloud = await gatedCloud(temp());
    cleanups.push(() => cloud.stop());
    cloud.gate.holding = true;
    const { edge, device } = await startEdge(cloud.server.port!, { inflight: 4, batchMaxEvents: 1000 });

    await device.publishAsync('telemetry/dev-u/temperature', '{"seq":1}', { qos: 1 });
    await waitFor('the first batch', () => cloud.gate.held.length === 1);
    await publishMany(device, 'telemetry/dev-u/temperature', 20, 2);
    expect(edge.buffer.committedSeq(NORMAL)).toBe(21);
    // Twenty events committed while the first batch waits for its PUBACK: none of them has been sent yet.
    await new Promise((r) => setTimeout(r, 200));
    expect(cloud.gate.seen.map((b) => b.seqs)).toEqual([[1]]);

    cloud.gate.held.shift()!.release();
    await waitFor('the second batch', () => cloud.gate.held.length === 1);
    expect(cloud.gate.held[0].batch.lane).toBe(NORMAL);
    expect(cloud.gate.held[0].batch.seqs).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
  });

  it('sends the high lane first when the link comes up over a low-lane backlog', async () => {
    const port = await freePort();
    const { edge, device } = await startEdge(port, { batchMaxEvents: 100 });
    await publishMany(device, 'telemetry/dev-u/bulk', 1500);
    await publishMany(device, 'events/dev-u/alarm', 5);
    expect([edge.buffer.committedSeq(HIGH), edge.buffer.committedSeq(LOW)]).toEqual([5, 1500]);

    const cloud = await startCloudNode(temp(), port);
    cleanups.push(() => cloud.stop());
    await waitFor('every event in the cloud', () => cloud.log.lastOffset === 1505);
    const events = await cloud.log.read(1, 2000);
    const alarms = events.filter((e) => e.event.type === 'io.tributary.event.alarm');
    const bulk = events.filter((e) => e.event.type === 'io.tributary.telemetry.bulk');
    expect(alarms.map(seqOf)).toEqual([1, 2, 3, 4, 5]);
    expect(bulk.map(seqOf)).toEqual(Array.from({ length: 1500 }, (_, i) => i + 1));
    // The alarms' batch left first. The cloud may commit the low lane's first batch, which arrived with it,
    // before it (each lane's mark is looked up on its own), but never any later one.
    const lastAlarm = Math.max(...alarms.map((e) => e.offset));
    expect(bulk.filter((e) => seqOf(e) > 100).every((e) => e.offset > lastAlarm)).toBe(true);
    await waitFor('the buffer to drain', () => edge.buffer.stats().events === 0);
  });

  it('lets high-lane events overtake a low-lane backlog that is draining', async () => {
    const cloud = await gatedCloud(temp());
    cleanups.push(() => cloud.stop());
    cloud.gate.holding = true;
    const { edge, device } = await startEdge(cloud.server.port!, { inflight: 2, batchMaxEvents: 100 });
    await publishMany(device, 'telemetry/dev-u/bulk', 1000);
    // The window is full of low-lane batches, which the cloud holds; the alarms must wait for a free slot.
    await waitFor('a full window', () => cloud.gate.held.length === 2);
    const inWindow = cloud.gate.held.reduce((n, h) => n + h.batch.seqs.length, 0);
    await publishMany(device, 'events/dev-u/alarm', 3);
    expect(edge.buffer.committedSeq(HIGH)).toBe(3);
    expect(cloud.gate.seen).toHaveLength(2);

    cloud.open();
    await waitFor('every event in the cloud', () => cloud.log.lastOffset === 1003);
    // The first slot that came free went to the alarms, ahead of the 1000 - inWindow low events still waiting.
    expect(cloud.gate.seen[2].lane).toBe(HIGH);
    expect(cloud.gate.seen[2].seqs).toEqual([1, 2, 3]);
    const events = await cloud.log.read(1, 2000);
    const alarms = events.filter((e) => e.event.type === 'io.tributary.event.alarm');
    expect(alarms.map(seqOf)).toEqual([1, 2, 3]);
    const lastAlarm = Math.max(...alarms.map((e) => e.offset));
    // At most the low batch sent right after the alarms can be committed before them (see above).
    const behind = events.filter((e) => e.event.type === 'io.tributary.telemetry.bulk' && seqOf(e) > inWindow + 100);
    expect(behind.length).toBeGreaterThan(500);
    expect(behind.every((e) => e.offset > lastAlarm)).toBe(true);
    expect(events.filter((e) => e.event.type === 'io.tributary.telemetry.bulk').map(seqOf)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
  });

  it('never forwards an event whose expirytime has passed, counts it, and releases it with its batch', async () => {
    const port = await freePort();
    const cloud = await startCloudNode(temp(), port);
    cleanups.push(() => cloud.stop());
    const { edge, device } = await startEdge(port);
    const ce = (n: number, expirytime?: string) =>
      JSON.stringify({ specversion: '1.0', id: `ce-${n}`, source: '/edges/edge-u/devices/dev-u', type: 'com.example.reading', datacontenttype: 'application/json', data: { seq: n }, ...(expirytime ? { expirytime } : {}) });
    const past = '2001-01-01T00:00:00Z';
    const future = new Date(Date.now() + 3_600_000).toISOString();

    // Batches of expired events only: released without being sent.
    for (let n = 1; n <= 3; n++) await device.publishAsync('events/dev-u/reading', ce(n, past), { qos: 1 });
    await waitFor('the expired events to leave the buffer', () => edge.buffer.stats().events === 0);
    expect(edge.metrics.byLabel('tributary_edge_events_dropped_total', 'reason').expired).toBe(3);
    expect(cloud.log.lastOffset).toBe(0);

    // Expired events among live ones, read into the same batches.
    await cloud.stop();
    await waitFor('the link to go down', () => edge.status().link !== 'connected');
    const publishes = [];
    for (let n = 4; n <= 23; n++) publishes.push(device.publishAsync('events/dev-u/reading', ce(n, n % 2 === 0 ? past : n % 3 === 0 ? future : undefined), { qos: 1 }));
    await Promise.all(publishes);
    const again = await startCloudNode(cloud.config.dataDir, port);
    cleanups.push(() => again.stop());
    await waitFor('the buffer to drain', () => edge.buffer.stats().events === 0);
    const ids = (await again.log.read(1, 100)).map((e) => e.event.id);
    expect(ids).toEqual(Array.from({ length: 10 }, (_, i) => `ce-${5 + 2 * i}`));
    expect(edge.metrics.byLabel('tributary_edge_events_dropped_total', 'reason').expired).toBe(13);
    expect(edge.metrics.total('tributary_edge_events_forwarded_total')).toBe(10);
  });

  it('never forwards an event buffered longer than maxAgeSeconds, and counts each once', async () => {
    const port = await freePort();
    const cloud = await startCloudNode(temp(), port);
    cleanups.push(() => cloud.stop());
    const store = await LevelStore.open(temp(), { durability: 'crash-safe' });
    cleanups.push(() => store.close());
    const metrics = new Metrics();
    let bufferNow = Date.UTC(2026, 0, 1);
    const buffer = await EdgeBuffer.open(store, { maxBytes: 64 * 1024 * 1024, maxAgeSeconds: 60, overflow: 'backpressure', metrics, logger, clock: () => bufferNow });
    cleanups.push(() => buffer.close());
    const append = (lane: 0 | 1 | 2, id: string) =>
      new Promise<void>((resolve, reject) =>
        buffer.append(lane, encode({ specversion: '1.0', id, source: '/edges/edge-age', type: 't' }), (err) => (err ? reject(err) : resolve())),
      );
    for (let i = 1; i <= 4; i++) await append(NORMAL, `old-${i}`);
    await append(HIGH, 'old-high');
    bufferNow += 30_000;
    for (let i = 1; i <= 3; i++) await append(NORMAL, `new-${i}`);
    // 61 s past the first events when the uplink reads them.
    bufferNow += 31_000;
    const uplink = standaloneUplink(port, 'edge-age', buffer, metrics, { now: () => bufferNow });
    uplink.start();
    cleanups.push(() => uplink.stop());
    await waitFor('the buffer to drain', () => buffer.stats().events === 0);
    expect((await cloud.log.read(1, 100)).map((e) => e.event.id)).toEqual(['new-1', 'new-2', 'new-3']);
    expect(metrics.snapshot().tributary_edge_events_dropped_total).toMatchObject({ 'lane=high,reason=expired': 1, 'lane=normal,reason=expired': 4 });
  });

  it('resumes each lane after a reconnect and lands every event once', async () => {
    const port = await freePort();
    const cloudDir = temp();
    const { edge, device } = await startEdge(port, { batchMaxEvents: 50, inflight: 4 });
    await publishMany(device, 'telemetry/dev-u/bulk', 300);
    await publishMany(device, 'telemetry/dev-u/temperature', 200);
    await publishMany(device, 'events/dev-u/alarm', 60);

    // The cloud commits the first three batches it gets but crashes before acknowledging each.
    const cloud = await gatedCloud(cloudDir, port);
    cleanups.push(() => cloud.stop());
    cloud.gate.dropAfterCommit = 3;
    await waitFor('every event in the cloud', () => cloud.log.lastOffset >= 560);
    await waitFor('the buffer to drain', () => edge.buffer.stats().events === 0);

    const events = await cloud.log.read(1, 1000);
    expect(events).toHaveLength(560);
    expect(new Set(events.map((e) => e.event.id)).size).toBe(560);
    for (const [type, count] of [['io.tributary.event.alarm', 60], ['io.tributary.telemetry.temperature', 200], ['io.tributary.telemetry.bulk', 300]] as const) {
      expect(events.filter((e) => e.event.type === type).map(seqOf), type).toEqual(Array.from({ length: count }, (_, i) => i + 1));
    }
    expect([await cloud.log.highWaterMark('edge-u', HIGH), await cloud.log.highWaterMark('edge-u', NORMAL), await cloud.log.highWaterMark('edge-u', LOW)]).toEqual([60, 200, 300]);
    // The batches committed but not acknowledged were sent again and dropped by the cloud as duplicates.
    expect(cloud.metrics.total('tributary_cloud_events_duplicate_total')).toBeGreaterThan(0);
    expect(edge.metrics.total('tributary_edge_uplink_connects_total')).toBe(4);
  });

  it('reports the link, and calls onConnected before the first batch of every connection and onDisconnected when it drops', async () => {
    const port = await freePort();
    const cloudDir = temp();
    let cloud = await gatedCloud(cloudDir, port);
    const first = cloud;
    cleanups.push(() => first.stop());
    cloud.gate.holding = true;
    const store = await LevelStore.open(temp(), { durability: 'crash-safe' });
    cleanups.push(() => store.close());
    const metrics = new Metrics();
    const buffer = await EdgeBuffer.open(store, { maxBytes: 64 * 1024 * 1024, maxAgeSeconds: 0, overflow: 'backpressure', metrics, logger });
    cleanups.push(() => buffer.close());
    await new Promise<void>((resolve, reject) => buffer.append(NORMAL, encode({ specversion: '1.0', id: 'a', source: '/edges/edge-hooks', type: 't' }), (err) => (err ? reject(err) : resolve())));

    const calls: string[] = [];
    const commands: string[] = [];
    let subscribed = 0;
    let now = 1_000;
    const uplink = standaloneUplink(port, 'edge-hooks', buffer, metrics, {
      now: () => now,
      onConnected: (client) => {
        calls.push(`connected (${cloud.gate.seen.length} batches seen)`);
        client.on('message', (topic, payload) => commands.push(`${topic} ${payload.toString()}`));
        client.subscribe('tributary/v1/edges/edge-hooks/commands', { qos: 1 }, () => subscribed++);
      },
      onDisconnected: () => calls.push('disconnected'),
    });
    expect(uplink.linkInfo()).toEqual({ state: 'stopped', url: `mqtt://127.0.0.1:${port}`, sinceMs: 1_000, connects: 0, lastError: null, inflightBatches: 0 });
    now = 2_000;
    uplink.start();
    cleanups.push(() => uplink.stop());
    await waitFor('the batch', () => cloud.gate.held.length === 1);
    expect(calls).toEqual(['connected (0 batches seen)']);
    expect(uplink.linkInfo()).toMatchObject({ state: 'connected', sinceMs: 2_000, connects: 1, lastError: null, inflightBatches: 1 });

    // The connection is the uplink's own: the cloud can reach the edge on it.
    await waitFor('the subscription', () => subscribed === 1);
    cloud.server.aedes.publish({ cmd: 'publish', topic: 'tributary/v1/edges/edge-hooks/commands', payload: Buffer.from('reboot'), qos: 1, retain: false, dup: false }, () => undefined);
    await waitFor('the command', () => commands.length === 1);
    expect(commands).toEqual(['tributary/v1/edges/edge-hooks/commands reboot']);

    now = 3_000;
    await cloud.stop();
    await waitFor('the link to drop', () => calls.length === 2);
    expect(calls[1]).toBe('disconnected');
    const down = uplink.linkInfo();
    expect(down.state).not.toBe('connected');
    expect(down.lastError).toEqual(expect.any(String));
    expect(down).toMatchObject({ connects: 1, inflightBatches: 0, sinceMs: 3_000 });

    now = 4_000;
    cloud = await gatedCloud(cloudDir, port);
    const second = cloud;
    cleanups.push(() => second.stop());
    await waitFor('the batch again', () => cloud.log.lastOffset === 1);
    await waitFor('the release', () => buffer.stats().events === 0);
    expect(calls).toEqual(['connected (0 batches seen)', 'disconnected', 'connected (0 batches seen)']);
    expect(uplink.linkInfo()).toMatchObject({ state: 'connected', sinceMs: 4_000, connects: 2, inflightBatches: 0 });
    await uplink.stop();
    expect(calls.at(-1)).toBe('disconnected');
    expect(uplink.linkInfo().state).toBe('stopped');
  });
});

describe('Ingress, the uplink at the cloud', () => {
  it('refuses a batch with an unknown lane, counts it, commits nothing, and commits the next good batch of that lane', async () => {
    const dir = tempDir();
    const log = await LevelCloudLog.open({ path: dir.path, durability: 'crash-safe' });
    const metrics = new Metrics();
    const lines: string[] = [];
    const ingress = new Ingress(log, metrics, new Logger({ level: 'warn', sink: { write: (line: string) => lines.push(line) } }));
    const server = await startMqttServer({ host: '127.0.0.1', port: 0, wsPort: null, logger, hooks: { authorizePublish: ingress.authorizePublish } });
    try {
      const edge = await mqtt.connectAsync(`mqtt://127.0.0.1:${server.port}`, { clientId: 'edge-x', protocolVersion: 4, reconnectPeriod: 0 });
      const closed = new Promise<void>((resolve) => edge.once('close', () => resolve()));
      const bad = encode({ v: 2, edge: 'edge-x', lane: 7, seqs: [1], events: [encode({ specversion: '1.0', id: 'a', source: '/edges/edge-x', type: 't' })] });
      void edge.publishAsync('tributary/v1/edges/edge-x/batches', Buffer.from(bad), { qos: 1 }).catch(() => undefined);
      await closed; // MQTT 3.1.1 has no negative PUBACK: the cloud closes the connection [MQTT-3.3.5-2]
      await edge.endAsync(true);
      expect(metrics.total('tributary_cloud_batches_rejected_total')).toBe(1);
      expect(lines.join('\n')).toContain('uplink batch lane must be 0 (high), 1 (normal) or 2 (low), not 7');
      expect(log.lastOffset).toBe(0);

      const again = await mqtt.connectAsync(`mqtt://127.0.0.1:${server.port}`, { clientId: 'edge-x', protocolVersion: 4, reconnectPeriod: 0 });
      const good = encode({ v: 2, edge: 'edge-x', lane: 2, seqs: [1], events: [encode({ specversion: '1.0', id: 'b', source: '/edges/edge-x', type: 't' })] });
      await again.publishAsync('tributary/v1/edges/edge-x/batches', Buffer.from(good), { qos: 1 });
      await again.endAsync(true);
      expect((await log.read(1, 10)).map((e) => e.event.id)).toEqual(['b']);
      expect([await log.highWaterMark('edge-x', LOW), await log.highWaterMark('edge-x', NORMAL)]).toEqual([1, 0]);
    } finally {
      await server.close();
      await log.close();
      dir.remove();
    }
  });
});

/** An uplink over a buffer of the test's own (no edge node around it), with small batches' defaults and a fast backoff. */
function standaloneUplink(port: number, edgeId: string, buffer: EdgeBuffer, metrics: Metrics, extra: Partial<UplinkOptions>): Uplink {
  return new Uplink({
    url: `mqtt://127.0.0.1:${port}`,
    edgeId,
    buffer,
    batchMaxEvents: 1000,
    batchMaxBytes: 1024 * 1024,
    inflight: 4,
    keepaliveSeconds: 30,
    backoff: new Backoff({ initialMs: 20, maxMs: 100 }),
    logger,
    metrics,
    ...extra,
  });
}
