/**
 * Device identity and ACL on a real edge node: real Aedes, real LevelDB buffer, real mqtt.js devices over
 * 127.0.0.1. No cloud: what a device got in is read from the edge's buffer, metrics and dead letters.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient, Packet } from 'mqtt';
import { edgeConfigSchema } from '../../edge/config.ts';
import { DeviceCredentials } from '../../edge/device-credentials.ts';
import { EdgeNode } from '../../edge/edge-node.ts';
import { writeDevCertificates } from '../../shared/cli/certs.ts';
import { parseConfig } from '../../shared/config.ts';
import { Logger } from '../../shared/logger.ts';
import { connackCode } from '../helpers/connack.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

/** Distinctive, so that any log line that holds one is found. */
const PASSWORDS: Record<string, string> = { 'dev-1': 'pw-dev-1-Zq8xK2mWv4', 'dev-2': 'pw-dev-2-Lr5tY9nBc3', 'gateway-1': 'pw-gateway-1-Hs7uJ1' };

describe('device identity and ACL at the edge', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function startEdge(overrides: Record<string, unknown> = {}) {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    // The devices are on file before the edge starts, where the edge looks by default (<dataDir>/devices.json).
    const credentials = await DeviceCredentials.open(join(dir.path, 'devices.json'), { hashParams: { logN: 10 } });
    for (const [id, password] of Object.entries(PASSWORDS)) await credentials.add(id, password);
    const lines: string[] = [];
    const logger = new Logger({ level: 'debug', sink: { write: (line) => void lines.push(line) } });
    const config = parseConfig(edgeConfigSchema, {
      edgeId: 'edge-s',
      dataDir: dir.path,
      mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
      http: { port: null },
      // Nothing listens there: events stay in the buffer, where the test looks for them.
      uplink: { url: 'mqtt://127.0.0.1:1', reconnectInitialMs: 5000, reconnectMaxMs: 10_000 },
      statusIntervalMs: 0,
      ...overrides,
    });
    const node = new EdgeNode(config, logger);
    await node.start();
    cleanups.push(() => node.stop());
    const url = `mqtt://127.0.0.1:${node.ports.mqtt}`;
    const records = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    return { node, credentials, url, lines, records };
  }

  async function device(url: string, id: string, options: IClientOptions = { username: id, password: PASSWORDS[id] }): Promise<MqttClient> {
    const client = await mqtt.connectAsync(url, { clientId: id, protocolVersion: 4, reconnectPeriod: 0, ...options });
    client.on('error', () => undefined);
    cleanups.push(() => client.endAsync(true));
    return client;
  }

  /** Publishes at QoS 1 and resolves when the edge closes the connection; fails at once if a PUBACK comes instead. */
  function publishAndBeClosed(client: MqttClient, topic: string, payload: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      client.once('close', () => resolve());
      client.publish(topic, payload, { qos: 1 }, (err) => err || reject(new Error(`the edge acknowledged a publish to "${topic}"`)));
    });
  }

  /** Subscribes at QoS 1 and resolves with the SUBACK's return codes, one per filter (0x80: refused). */
  function suback(client: MqttClient, filters: string[]): Promise<number[]> {
    return new Promise<number[]>((resolve) => {
      const onPacket = (packet: Packet) => {
        if (packet.cmd !== 'suback') return;
        client.off('packetreceive', onPacket);
        resolve(packet.granted as number[]);
      };
      client.on('packetreceive', onPacket);
      client.subscribe(filters, { qos: 1 }, () => undefined);
    });
  }

  it('answers bad CONNECTs with return codes 4, 4, 2 and 5, counting each reason', async () => {
    const { node, url } = await startEdge();
    expect(await connackCode(url, { clientId: 'dev-1', username: 'dev-1', password: 'not-the-password' })).toBe(4);
    expect(await connackCode(url, { clientId: 'dev-7', username: 'dev-7', password: PASSWORDS['dev-1'] })).toBe(4);
    expect(await connackCode(url, { clientId: 'dev-2', username: 'dev-1', password: PASSWORDS['dev-1'] })).toBe(2);
    expect(await connackCode(url, { clientId: 'dev-1' })).toBe(5);
    expect(await connackCode(url, { clientId: 'dev-1', username: 'dev-1', password: PASSWORDS['dev-1'] })).toBe(0);
    expect(node.metrics.byLabel('tributary_edge_connections_refused_total', 'reason')).toMatchObject({ 'bad-credentials': 1, 'unknown-device': 1, 'client-id': 1, anonymous: 1 });
    expect(node.metrics.total('tributary_edge_connections_refused_total')).toBe(4);
  });

  it('refuses a client id longer than limits.maxClientIdLength with return code 2, on MQTT 3.1 and 3.1.1 alike', async () => {
    const { node, url } = await startEdge({ auth: { allowAnonymous: true }, limits: { maxClientIdLength: 30 } });
    const long = 'd'.repeat(31);
    expect(await connackCode(url, { clientId: long })).toBe(2);
    expect(await connackCode(url, { clientId: long, protocolId: 'MQIsdp', protocolVersion: 3 })).toBe(2);
    expect(await connackCode(url, { clientId: 'd'.repeat(30), protocolId: 'MQIsdp', protocolVersion: 3 })).toBe(0);
    expect(node.metrics.byLabel('tributary_edge_connections_refused_total', 'reason')).toMatchObject({ 'client-id': 2 });
  });

  it('never writes a password to the log', async () => {
    const { url, lines } = await startEdge();
    expect(await connackCode(url, { clientId: 'dev-1', username: 'dev-1', password: PASSWORDS['dev-2'] })).toBe(4);
    expect(await connackCode(url, { clientId: 'dev-2', username: 'dev-1', password: PASSWORDS['dev-1'] })).toBe(2);
    const dev = await device(url, 'dev-1');
    await dev.publishAsync('telemetry/dev-1/t', '{"v":1}', { qos: 1 });
    await publishAndBeClosed(dev, 'telemetry/dev-2/t', '{"v":1}');
    expect(lines.some((l) => l.includes('"connection refused"'))).toBe(true);
    for (const password of Object.values(PASSWORDS)) expect(lines.filter((l) => l.includes(password))).toEqual([]);
  });

  it('closes the connection of a device that publishes to another device\'s topic, and buffers nothing of it', async () => {
    const { node, url, records } = await startEdge();
    const dev = await device(url, 'dev-1');
    await dev.publishAsync('telemetry/dev-1/temperature', '{"celsius":21}', { qos: 1 });
    expect(node.buffer.stats().events).toBe(1);
    await publishAndBeClosed(dev, 'telemetry/dev-2/temperature', '{"celsius":99}');
    expect(node.buffer.stats().events).toBe(1);
    expect(node.status().deadLetters).toBe(0);
    expect(node.metrics.byLabel('tributary_edge_acl_denied_total', 'action')).toMatchObject({ publish: 1 });
    expect(records().find((r) => r.action === 'publish')).toMatchObject({ level: 'warn', clientId: 'dev-1', topic: 'telemetry/dev-2/temperature', address: '127.0.0.1' });
  });

  it('refuses subscriptions to "#" and to another device\'s command topic with SUBACK 0x80, and grants its own', async () => {
    const { node, url } = await startEdge();
    const dev = await device(url, 'dev-1');
    expect(await suback(dev, ['#', 'commands/dev-2', 'commands/+', '$SYS/#', 'commands/dev-1'])).toEqual([0x80, 0x80, 0x80, 0x80, 1]);
    expect(dev.connected).toBe(true);
    expect(node.metrics.byLabel('tributary_edge_acl_denied_total', 'action')).toMatchObject({ subscribe: 4 });
  });

  it('applies a grant from auth.acl to the devices it names only', async () => {
    const { node, url } = await startEdge({ auth: { acl: [{ devices: 'gateway-*', publish: ['telemetry/+/+'], subscribe: ['commands/+'] }] } });
    const gateway = await device(url, 'gateway-1');
    await gateway.publishAsync('telemetry/child-7/temperature', '{"celsius":20}', { qos: 1 });
    expect(node.buffer.stats().events).toBe(1);
    expect(await suback(gateway, ['commands/+', 'commands/#'])).toEqual([1, 0x80]);
    const dev = await device(url, 'dev-1');
    await publishAndBeClosed(dev, 'telemetry/child-7/temperature', '{"celsius":20}');
    expect(node.buffer.stats().events).toBe(1);
  });

  it('lets anonymous devices in with auth.allowAnonymous, warns about it, and still holds them to their client id\'s topics', async () => {
    const { node, url, records } = await startEdge({ auth: { allowAnonymous: true } });
    expect(records().find((r) => r.level === 'warn' && String(r.msg).startsWith('anonymous devices are allowed'))).toBeDefined();
    const anon = await device(url, 'free-1', {});
    await anon.publishAsync('telemetry/free-1/t', '{"v":1}', { qos: 1 });
    expect(node.buffer.stats().events).toBe(1);
    await publishAndBeClosed(anon, 'telemetry/dev-1/t', '{"v":2}');
    expect(node.buffer.stats().events).toBe(1);
    // A device with credentials cannot be impersonated anonymously.
    expect(await connackCode(url, { clientId: 'dev-1' })).toBe(5);
  });

  it('disconnects a device removed from the credentials file while connected, and refuses it afterwards', async () => {
    const { node, credentials, url } = await startEdge();
    const dev1 = await device(url, 'dev-1');
    const dev2 = await device(url, 'dev-2');
    await credentials.remove('dev-1');
    // The edge looks at the file about once a second.
    await waitFor('dev-1 to be disconnected', () => !dev1.connected, 5000);
    expect(dev2.connected).toBe(true);
    expect(await connackCode(url, { clientId: 'dev-1', username: 'dev-1', password: PASSWORDS['dev-1'] })).toBe(4);
    expect(node.metrics.byLabel('tributary_edge_connections_refused_total', 'reason')).toMatchObject({ 'unknown-device': 1 });
  });

  it('refuses connections from 127.0.0.1 beyond limits.maxConnectionsPerIp with return code 3', async () => {
    const { node, url } = await startEdge({ limits: { maxConnectionsPerIp: 2 } });
    await device(url, 'dev-1');
    await device(url, 'dev-2');
    expect(await connackCode(url, { clientId: 'gateway-1', username: 'gateway-1', password: PASSWORDS['gateway-1'] })).toBe(3);
    expect(node.metrics.byLabel('tributary_edge_connections_refused_total', 'reason')).toMatchObject({ 'too-many-connections': 1 });
  });

  it('takes a verified client certificate\'s CN as the device id, bound to the client id, without a password', async () => {
    const certs = tempDir();
    cleanups.push(() => certs.remove());
    await writeDevCertificates({ dir: certs.path, hosts: ['127.0.0.1'], devices: ['cert-dev-1'], edges: [], days: 1, force: false });
    const pem = (name: string) => readFileSync(join(certs.path, name), 'utf8');
    const tls = { port: 0, certFile: join(certs.path, 'server.pem'), keyFile: join(certs.path, 'server-key.pem'), caFile: join(certs.path, 'ca.pem') };
    const { node, url } = await startEdge({ mqtt: { host: '127.0.0.1', port: 0, wsPort: null, tls: { ...tls, clientCertificates: 'optional' } } });
    const mqtts = `mqtts://127.0.0.1:${node.ports.tls}`;
    const withCertificate = { ca: pem('ca.pem'), cert: pem('device-cert-dev-1.pem'), key: pem('device-cert-dev-1-key.pem') };
    const dev = await device(mqtts, 'cert-dev-1', withCertificate);
    await dev.publishAsync('telemetry/cert-dev-1/t', '{"v":1}', { qos: 1 });
    expect(node.buffer.stats().events).toBe(1);
    // The certificate names cert-dev-1: it cannot be used for another client id, nor with another user name.
    expect(await connackCode(mqtts, { clientId: 'dev-1', ...withCertificate })).toBe(2);
    expect(await connackCode(mqtts, { clientId: 'cert-dev-1', username: 'dev-1', password: PASSWORDS['dev-1'], ...withCertificate })).toBe(4);
    // With "optional", a device without a certificate still needs credentials.
    expect(await connackCode(mqtts, { clientId: 'dev-1', ca: pem('ca.pem') })).toBe(5);
    expect(await connackCode(mqtts, { clientId: 'dev-1', username: 'dev-1', password: PASSWORDS['dev-1'], ca: pem('ca.pem') })).toBe(0);
    expect(await connackCode(url, { clientId: 'cert-dev-1' })).toBe(5);
    expect(node.metrics.byLabel('tributary_edge_connections_refused_total', 'reason')).toMatchObject({ 'client-id': 1, certificate: 1, anonymous: 2 });

    // With "required", a password is not enough, on any listener.
    const strict = await startEdge({ mqtt: { host: '127.0.0.1', port: 0, wsPort: null, tls: { ...tls, clientCertificates: 'required' } } });
    expect(await connackCode(strict.url, { clientId: 'dev-1', username: 'dev-1', password: PASSWORDS['dev-1'] })).toBe(5);
    expect(await connackCode(`mqtts://127.0.0.1:${strict.node.ports.tls}`, { clientId: 'cert-dev-1', ...withCertificate })).toBe(0);
    expect(strict.node.metrics.byLabel('tributary_edge_connections_refused_total', 'reason')).toMatchObject({ certificate: 1 });
  });

  it('keeps a structured-mode event whose source is not the device\'s as a dead letter "foreign-source"', async () => {
    const { node, url } = await startEdge();
    const dev = await device(url, 'dev-1');
    const event = (source: string, id: string) => JSON.stringify({ specversion: '1.0', id, source, type: 'com.example.door' });
    await dev.publishAsync('events/dev-1/door', event('/edges/edge-s/devices/dev-2', 'e-1'), { qos: 1 });
    await dev.publishAsync('events/dev-1/door', event('/edges/edge-s/devices/dev-1/door-3', 'e-2'), { qos: 1 });
    expect(node.buffer.stats().events).toBe(1);
    expect(node.status().deadLetters).toBe(1);
    expect(node.metrics.total('tributary_edge_messages_rejected_total')).toBe(1);
    expect(node.metrics.byLabel('tributary_edge_messages_rejected_total', 'reason')).toMatchObject({ 'foreign-source': 1 });
    await waitFor('the device to stay connected', () => dev.connected);
  });
});
