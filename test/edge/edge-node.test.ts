import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import { LevelCloudLog } from '../../cloud/level-cloud-log.ts';
import { Ingress } from '../../cloud/ingress.ts';
import { edgeConfigSchema } from '../../edge/config.ts';
import { EdgeNode } from '../../edge/edge-node.ts';
import { NORMAL } from '../../edge/lanes.ts';
import { parseConfig } from '../../shared/config.ts';
import { Logger } from '../../shared/logger.ts';
import { Metrics } from '../../shared/metrics.ts';
import type { RunningMqttServer } from '../../shared/mqtt-server.ts';
import { startMqttServer } from '../../shared/mqtt-server.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const logger = new Logger({ level: 'silent' });

/** A cloud uplink listener over a real LevelDB log, without the HTTP API. */
async function startCloud(dir: string, port = 0): Promise<{ log: LevelCloudLog; server: RunningMqttServer; stop(): Promise<void> }> {
  const log = await LevelCloudLog.open({ path: dir, durability: 'crash-safe' });
  const ingress = new Ingress(log, new Metrics(), logger);
  const server = await startMqttServer({ host: '127.0.0.1', port, wsPort: null, hooks: { authorizePublish: ingress.authorizePublish }, logger });
  return {
    log,
    server,
    async stop() {
      await server.close();
      await log.close();
    },
  };
}

function edgeConfig(dataDir: string, cloudPort: number, overrides: Record<string, unknown> = {}) {
  return parseConfig(edgeConfigSchema, {
    // dev-3 may publish outside the topic mapping, to show what becomes of a message no rule maps.
    auth: { allowAnonymous: true, acl: [{ devices: 'dev-3', publish: ['no/#'] }] },
    edgeId: 'edge-t',
    dataDir,
    mqtt: { host: '127.0.0.1', port: 0, wsPort: 0 },
    http: { port: 0 },
    uplink: { url: `mqtt://127.0.0.1:${cloudPort}`, reconnectInitialMs: 50, reconnectMaxMs: 200 },
    statusIntervalMs: 0,
    ...overrides,
  });
}

async function device(url: string, clientId: string): Promise<MqttClient> {
  const client = mqtt.connect(url, { clientId, protocolVersion: 4, clean: false, reconnectPeriod: 100 });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

describe('EdgeNode', () => {
  let edgeDir: ReturnType<typeof tempDir>;
  let cloudDir: ReturnType<typeof tempDir>;
  let cloud: Awaited<ReturnType<typeof startCloud>>;
  let edge: EdgeNode;
  const clients: MqttClient[] = [];

  beforeEach(async () => {
    edgeDir = tempDir();
    cloudDir = tempDir();
    cloud = await startCloud(cloudDir.path);
    edge = new EdgeNode(edgeConfig(edgeDir.path, cloud.server.port!), logger);
    await edge.start();
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true);
    await edge.stop();
    await cloud.stop();
    edgeDir.remove();
    cloudDir.remove();
  });

  it('turns each QoS 1 publish into one CloudEvent in the cloud log, in order, with the design attributes', async () => {
    const dev = await device(`mqtt://127.0.0.1:${edge.ports.mqtt!}`, 'dev-1');
    clients.push(dev);
    for (let i = 0; i < 50; i++) await dev.publishAsync('telemetry/dev-1/temperature', JSON.stringify({ celsius: 20 + i / 10, seq: i }), { qos: 1 });
    await waitFor('50 events in the cloud', () => cloud.log.lastOffset >= 50);
    const events = await cloud.log.read(1, 100);
    expect(events.map((e) => (e.event.data as { seq: number }).seq)).toEqual([...Array(50).keys()]);
    const first = events[0].event;
    expect(first).toMatchObject({
      specversion: '1.0',
      source: '/edges/edge-t/devices/dev-1',
      type: 'io.tributary.telemetry.temperature',
      subject: 'dev-1',
      datacontenttype: 'application/json',
    });
    expect(first.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(events.map((e) => e.event.id)).size).toBe(50);
    await waitFor('the buffer to drain', () => edge.buffer.stats().events === 0);
  });

  it('acknowledges a QoS 1 publish only once the event is in the buffer on disk', async () => {
    await cloud.stop(); // no uplink: events stay in the buffer
    const dev = await device(`mqtt://127.0.0.1:${edge.ports.mqtt!}`, 'dev-2');
    clients.push(dev);
    await dev.publishAsync('telemetry/dev-2/humidity', '{"rh":41}', { qos: 1 });
    // The PUBACK has arrived: the event must be readable from the buffer's committed entries.
    expect(edge.buffer.stats().events).toBe(1);
    const entries = await edge.buffer.read(NORMAL, 1, 10, Infinity);
    expect(entries).toHaveLength(1);
    cloud = await startCloud(cloudDir.path); // for afterEach
  });

  it('keeps an invalid message as a dead letter, counts it and stays up', async () => {
    const dev = await device(`mqtt://127.0.0.1:${edge.ports.mqtt!}`, 'dev-3');
    clients.push(dev);
    await dev.publishAsync('telemetry/dev-3/temperature', '{"celsius": 2', { qos: 1 });
    await dev.publishAsync('no/mapping/for/this/topic', '1', { qos: 1 });
    await dev.publishAsync('events/dev-3/cloudevent', JSON.stringify({ specversion: '1.0', id: '', source: '/x', type: 't' }), { qos: 1 });
    await dev.publishAsync('telemetry/dev-3/temperature', '{"celsius": 21}', { qos: 1 });
    expect(edge.metrics.snapshot().tributary_edge_messages_rejected_total).toEqual({ 'reason=invalid-json': 1, 'reason=unmapped-topic': 1, 'reason=id': 1 });
    expect(edge.status().deadLetters).toBe(3);
    await waitFor('the valid event in the cloud', () => cloud.log.lastOffset === 1);
    expect((await cloud.log.read(1, 1))[0].event.data).toEqual({ celsius: 21 });
  });

  it('passes a valid structured-mode CloudEvent through unchanged', async () => {
    const dev = await device(`mqtt://127.0.0.1:${edge.ports.mqtt!}`, 'dev-4');
    clients.push(dev);
    const ce = { specversion: '1.0', id: 'abc-1', source: '/edges/edge-t/devices/dev-4/door/3', type: 'com.example.door.opened', time: '2026-11-27T10:00:00Z', datacontenttype: 'application/json', data: { door: 3 } };
    await dev.publishAsync('events/dev-4/door', JSON.stringify(ce), { qos: 1 });
    await waitFor('the event in the cloud', () => cloud.log.lastOffset === 1);
    expect((await cloud.log.read(1, 1))[0].event).toEqual(ce);
  });

  it('does not make a second event from a DUP re-send of a buffered publish', async () => {
    const dev = await device(`mqtt://127.0.0.1:${edge.ports.mqtt!}`, 'dev-5');
    clients.push(dev);
    await dev.publishAsync('telemetry/dev-5/temperature', '{"celsius":1}', { qos: 1 });
    const pid = 4242;
    const send = (payload: string, dup: boolean) =>
      new Promise<void>((resolve) => {
        dev.once('packetreceive', (p) => p.cmd === 'puback' && resolve());
        // The raw packet, as a client re-delivering after a reconnect would send it [MQTT-3.3.1-1].
        (dev as unknown as { _sendPacket(p: object): void })._sendPacket({ cmd: 'publish', topic: 'telemetry/dev-5/temperature', payload: Buffer.from(payload), qos: 1, messageId: pid, dup, retain: false });
      });
    await send('{"celsius":2}', false);
    await send('{"celsius":2}', true); // re-send: same id, same message
    await send('{"celsius":3}', true); // DUP but a different message: new
    await waitFor('three events in the cloud', () => cloud.log.lastOffset >= 3);
    await new Promise((r) => setTimeout(r, 200));
    const data = (await cloud.log.read(1, 10)).map((e) => e.event.data);
    expect(data).toEqual([{ celsius: 1 }, { celsius: 2 }, { celsius: 3 }]);
    expect(edge.metrics.total('tributary_edge_resends_deduplicated_total')).toBe(1);
  });

  it('buffers while the cloud is down and forwards everything exactly once after it returns', async () => {
    const port = cloud.server.port!;
    await cloud.stop();
    const dev = await device(`mqtt://127.0.0.1:${edge.ports.mqtt!}`, 'dev-6');
    clients.push(dev);
    for (let i = 0; i < 200; i++) await dev.publishAsync('telemetry/dev-6/vibration', JSON.stringify({ seq: i }), { qos: 1 });
    expect(edge.buffer.stats().events).toBe(200);
    cloud = await startCloud(cloudDir.path, port);
    await waitFor('200 events in the cloud', () => cloud.log.lastOffset >= 200, 15_000);
    await waitFor('the buffer to drain', () => edge.buffer.stats().events === 0);
    const seqs = (await cloud.log.read(1, 1000)).map((e) => (e.event.data as { seq: number }).seq);
    expect(seqs).toEqual([...Array(200).keys()]);
  });

  it('buffers QoS 0 publishes too, and keeps the buffer and the re-send records across a restart', async () => {
    const port = cloud.server.port!;
    await cloud.stop();
    let dev = await device(`mqtt://127.0.0.1:${edge.ports.mqtt!}`, 'dev-7');
    const sendRaw = (client: MqttClient, dup: boolean) =>
      new Promise<void>((resolve) => {
        client.once('packetreceive', (p) => p.cmd === 'puback' && resolve());
        (client as unknown as { _sendPacket(p: object): void })._sendPacket({ cmd: 'publish', topic: 'telemetry/dev-7/t', payload: Buffer.from('{"n":"raw"}'), qos: 1, messageId: 777, dup, retain: false });
      });
    for (let i = 0; i < 20; i++) await dev.publishAsync('telemetry/dev-7/t', JSON.stringify({ n: i }), { qos: 0 });
    await sendRaw(dev, false);
    await waitFor('21 events in the buffer', () => edge.buffer.stats().events === 21);
    await dev.endAsync(true);
    await edge.stop();

    edge = new EdgeNode(edgeConfig(edgeDir.path, port), logger);
    await edge.start();
    expect(edge.buffer.stats().events).toBe(21);
    dev = await device(`mqtt://127.0.0.1:${edge.ports.mqtt!}`, 'dev-7');
    clients.push(dev);
    await sendRaw(dev, true); // the PUBACK was lost in the restart: the device re-sends
    expect(edge.metrics.total('tributary_edge_resends_deduplicated_total')).toBe(1);
    expect(edge.buffer.stats().events).toBe(21);

    cloud = await startCloud(cloudDir.path, port);
    await waitFor('21 events in the cloud', () => cloud.log.lastOffset >= 21, 15_000);
    await waitFor('the buffer to drain', () => edge.buffer.stats().events === 0);
    const data = (await cloud.log.read(1, 100)).map((e) => (e.event.data as { n: number | string }).n);
    expect(data).toEqual([...Array(20).keys(), 'raw']);
  });
});
