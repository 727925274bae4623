import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import { cloudConfigSchema } from '../../cloud/config.ts';
import { CloudNode } from '../../cloud/cloud-node.ts';
import { edgeConfigSchema } from '../../edge/config.ts';
import { EdgeNode } from '../../edge/edge-node.ts';
import { HIGH, NORMAL } from '../../edge/lanes.ts';
import type { CloudEvent } from '../../shared/cloud-event.ts';
import { decode } from '../../shared/codec.ts';
import { parseConfig } from '../../shared/config.ts';
import { Logger } from '../../shared/logger.ts';
import { freePort } from '../helpers/free-port.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const logger = new Logger({ level: 'silent' });
const MAX_BYTES = 1024 * 1024;
/** About 1 KiB of JSON per reading: an event of about 1.2 KiB. */
const PAD = 'x'.repeat(1000);

function edgeConfig(dataDir: string, cloudPort: number, overflow: 'backpressure' | 'drop-oldest') {
  return parseConfig(edgeConfigSchema, { auth: { allowAnonymous: true },
    // One device fills the buffer as fast as it can: no publish rate limit.
    limits: { publishRatePerSecond: 0 },
    edgeId: 'edge-limits',
    dataDir,
    mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
    http: { port: null },
    buffer: { durability: 'crash-safe', maxBytes: MAX_BYTES, overflow },
    uplink: { url: `mqtt://127.0.0.1:${cloudPort}`, reconnectInitialMs: 50, reconnectMaxMs: 200 },
    statusIntervalMs: 0,
  });
}

async function device(port: number, clientId: string, reconnect = false): Promise<MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId, protocolVersion: 4, clean: !reconnect, reconnectPeriod: reconnect ? 100 : 0 });
}

/** Publishes readings `from` to `to - 1` at QoS 1 without waiting for each PUBACK; counts the PUBACKs. */
function publishAll(client: MqttClient, from: number, to: number, acked: { n: number }): Promise<void> {
  const all: Promise<void>[] = [];
  for (let seq = from; seq < to; seq++) {
    all.push(
      new Promise((resolve, reject) =>
        client.publish('telemetry/dev-1/vibration', JSON.stringify({ seq, pad: PAD }), { qos: 1 }, (err) => {
          if (err) return reject(err);
          acked.n++;
          resolve();
        }),
      ),
    );
  }
  return Promise.all(all).then(() => undefined);
}

function droppedTotal(edge: EdgeNode): Record<string, number> {
  return (edge.metrics.snapshot().tributary_edge_events_dropped_total ?? {}) as Record<string, number>;
}

describe('edge buffer limits', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function startEdge(overflow: 'backpressure' | 'drop-oldest'): Promise<{ edge: EdgeNode; cloudPort: number }> {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const cloudPort = await freePort(); // nothing listens there yet: the uplink keeps retrying
    const edge = new EdgeNode(edgeConfig(dir.path, cloudPort, overflow), logger);
    await edge.start();
    cleanups.push(() => edge.stop());
    return { edge, cloudPort };
  }

  it('under drop-oldest, acknowledges every publish, holds at most maxBytes and counts every dropped event', async () => {
    const { edge } = await startEdge('drop-oldest');
    const dev = await device(edge.ports.mqtt!, 'dev-1');
    cleanups.push(() => dev.endAsync(true));
    // An alert first: it travels in the high lane, which is dropped from last.
    const alert = { specversion: '1.0', id: 'alert-1', source: '/edges/edge-limits/devices/dev-1', type: 'io.tributary.alert.vibration', data: { level: 9 } };
    await dev.publishAsync('events/dev-1/alert', JSON.stringify(alert), { qos: 1 });

    const published = 4000; // about 4.7 MiB of events into a 1 MiB buffer
    const acked = { n: 0 };
    for (let from = 0; from < published; from += 500) await publishAll(dev, from, from + 500, acked);
    expect(acked.n).toBe(published);

    await waitFor('the buffer within maxBytes', () => edge.buffer.stats().bytes <= MAX_BYTES);
    const stats = edge.buffer.stats();
    expect(stats.bytes).toBeGreaterThan(MAX_BYTES / 2);
    expect(stats.lanes[HIGH].events).toBe(1);
    const kept = stats.lanes[NORMAL].events;
    expect(edge.metrics.total('tributary_edge_events_accepted_total')).toBe(published + 1);
    expect(droppedTotal(edge)).toMatchObject({ 'lane=normal,reason=overflow': published - kept, 'lane=high,reason=overflow': 0, 'lane=low,reason=overflow': 0 });
    expect(edge.metrics.total('tributary_edge_events_dropped_total')).toBe(published - kept);

    // What is left is the newest readings, in order.
    const entries = await edge.buffer.read(NORMAL, 1, published, Infinity);
    const seqs = entries.map((e) => (decode<CloudEvent>(e.value).data as { seq: number }).seq);
    expect(seqs).toEqual(Array.from({ length: kept }, (_, i) => published - kept + i));
    expect((decode<CloudEvent>((await edge.buffer.read(HIGH, 1, 10, Infinity))[0].value) as CloudEvent).id).toBe('alert-1');
  });

  it('under backpressure, holds PUBACKs while the buffer is full and gives them once the cloud drains it, every event once', async () => {
    const { edge, cloudPort } = await startEdge('backpressure');
    const dev = await device(edge.ports.mqtt!, 'dev-1', true);
    cleanups.push(() => dev.endAsync(true));

    const published = 1500; // about 1.8 MiB of events into a 1 MiB buffer
    const acked = { n: 0 };
    const all = publishAll(dev, 0, published, acked);
    await waitFor('publishes held for room', () => edge.metrics.total('tributary_edge_publishes_waiting') > 0);
    await waitFor('the acknowledgements to stop', async () => {
      const before = acked.n;
      await new Promise((r) => setTimeout(r, 100));
      return acked.n === before;
    });
    const stats = edge.buffer.stats();
    expect(acked.n).toBeLessThan(published);
    // Every acknowledged publish is in the buffer, and the buffer is within its limit.
    expect(stats.events).toBe(acked.n);
    expect(stats.bytes).toBeLessThanOrEqual(MAX_BYTES);
    expect(edge.metrics.total('tributary_edge_events_dropped_total')).toBe(0);

    // QoS 0 messages have no PUBACK to hold back: while the buffer is full they are dropped, and counted.
    const other = await device(edge.ports.mqtt!, 'dev-2');
    cleanups.push(() => other.endAsync(true));
    for (let i = 0; i < 5; i++) await other.publishAsync('telemetry/dev-2/temperature', '{"celsius":20}', { qos: 0 });
    await waitFor('the QoS 0 messages counted', () => droppedTotal(edge)['lane=normal,reason=full-qos0'] === 5);

    // The device loses its connection while its publishes are held, and re-sends them on the next one (mqtt.js
    // does so before it reports the connection, and without DUP=1): the held copies of the old connection must not
    // become events as well.
    const heldBefore = edge.metrics.total('tributary_edge_publishes_held_total');
    dev.stream.destroy();
    await waitFor('re-sent publishes held', () => edge.metrics.total('tributary_edge_publishes_held_total') > heldBefore);
    expect(edge.buffer.stats().events).toBe(acked.n);

    const cloudDir = tempDir();
    cleanups.push(() => cloudDir.remove());
    const cloud = new CloudNode(
      parseConfig(cloudConfigSchema, { auth: { allowAnonymous: true }, dataDir: cloudDir.path, store: { durability: 'crash-safe' }, uplink: { host: '127.0.0.1', port: cloudPort }, http: { host: '127.0.0.1', port: 0 }, statusIntervalMs: 0 }),
      logger,
    );
    await cloud.start();
    cleanups.push(() => cloud.stop());

    await all;
    expect(acked.n).toBe(published);
    await waitFor('every event in the cloud', () => cloud.log.lastOffset >= published, 20_000);
    await waitFor('the buffer to drain', () => edge.buffer.stats().events === 0);
    const logged = await cloud.log.read(1, published + 10);
    const seqs = logged.map((e) => (e.event.data as { seq: number }).seq);
    expect(seqs).toEqual(Array.from({ length: published }, (_, i) => i));
    expect(edge.metrics.total('tributary_edge_events_dropped_total')).toBe(5);
    expect(edge.metrics.total('tributary_edge_publishes_held_total')).toBeGreaterThan(0);
  });
});
