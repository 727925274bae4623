import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import type { Client } from 'aedes';
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { edgeConfigSchema } from '../../edge/config.ts';
import { DeviceAuth } from '../../edge/device-auth.ts';
import { DeviceCredentials } from '../../edge/device-credentials.ts';
import { parseConfig } from '../../shared/config.ts';
import { Logger } from '../../shared/logger.ts';
import { Metrics } from '../../shared/metrics.ts';
import type { RunningMqttServer } from '../../shared/mqtt-server.ts';
import { startMqttServer } from '../../shared/mqtt-server.ts';
import { connackCode } from '../helpers/connack.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const PASSWORD = 'correct-horse-battery-staple';
const silent = new Logger({ level: 'silent' });

interface Broker {
  auth: DeviceAuth;
  server: RunningMqttServer;
  credentials: DeviceCredentials;
  metrics: Metrics;
  lines: Record<string, unknown>[];
  text: string[];
  url: string;
  wsUrl: string;
}

describe('DeviceAuth', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A real Aedes on 127.0.0.1 whose only hook is DeviceAuth, with device "dev-1" (password PASSWORD) on file. */
  async function start(overrides: Record<string, unknown> = {}, devices: string[] = ['dev-1']): Promise<Broker> {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const config = parseConfig(edgeConfigSchema, { dataDir: dir.path, ...overrides });
    // Cheap scrypt for the test's own entries; the edge verifies with the parameters stored in each hash.
    const credentials = await DeviceCredentials.open(join(dir.path, 'devices.json'), { hashParams: { logN: 10 } });
    for (const id of devices) await credentials.add(id, PASSWORD);
    const text: string[] = [];
    const lines: Record<string, unknown>[] = [];
    const logger = new Logger({ level: 'debug', sink: { write: (line) => void (text.push(line), lines.push(JSON.parse(line))) } });
    const metrics = new Metrics();
    const auth = await DeviceAuth.open({ config, dataDir: dir.path, metrics, logger, refreshIntervalMs: 50 });
    cleanups.push(() => auth.close());
    const server = await startMqttServer({ host: '127.0.0.1', port: 0, wsPort: 0, hooks: { authenticate: auth.authenticate }, logger: silent });
    cleanups.push(() => server.close());
    auth.attach(server.aedes);
    return { auth, server, credentials, metrics, lines, text, url: `mqtt://127.0.0.1:${server.port}`, wsUrl: `ws://127.0.0.1:${server.wsPort}` };
  }

  async function connected(url: string, options: IClientOptions): Promise<MqttClient> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, ...options });
    cleanups.push(() => client.endAsync(true));
    return client;
  }

  const refused = (b: Broker) => Object.fromEntries(Object.entries(b.metrics.byLabel('tributary_edge_connections_refused_total', 'reason')).filter(([, n]) => n > 0));

  it('lets a device in with its id as user name and client id and its password', async () => {
    const b = await start();
    expect(await connackCode(b.url, { clientId: 'dev-1', username: 'dev-1', password: PASSWORD })).toBe(0);
    expect(await connackCode(b.wsUrl, { clientId: 'dev-1', username: 'dev-1', password: PASSWORD })).toBe(0);
    expect(refused(b)).toEqual({});
  });

  it('answers each kind of bad CONNECT with its MQTT 3.1.1 return code, logs and counts it', async () => {
    const b = await start();
    expect(await connackCode(b.url, { clientId: 'dev-1', username: 'dev-1', password: 'wrong-password-123' })).toBe(4);
    expect(await connackCode(b.url, { clientId: 'dev-9', username: 'dev-9', password: PASSWORD })).toBe(4);
    expect(await connackCode(b.url, { clientId: 'dev-2', username: 'dev-1', password: PASSWORD })).toBe(2);
    expect(await connackCode(b.url, { clientId: 'dev-1' })).toBe(5);
    expect(await connackCode(b.url, { clientId: 'x'.repeat(129), username: 'dev-1', password: PASSWORD })).toBe(2);
    expect(refused(b)).toEqual({ 'bad-credentials': 1, 'unknown-device': 1, 'client-id': 2, anonymous: 1 });
    const warnings = b.lines.filter((l) => l.msg === 'connection refused');
    expect(warnings.map((l) => l.reason)).toEqual(['bad-credentials', 'unknown-device', 'client-id', 'anonymous', 'client-id']);
    expect(warnings[0]).toMatchObject({ level: 'warn', clientId: 'dev-1', address: '127.0.0.1', returnCode: 4 });
    expect(warnings[1].error).toContain('tributary devices add dev-9');
    for (const line of b.text) expect(line).not.toContain(PASSWORD);
    expect(b.text.join('')).not.toContain('wrong-password-123');
  });

  it('lets anonymous devices in only with auth.allowAnonymous, never under the id of a device with credentials', async () => {
    const b = await start({ auth: { allowAnonymous: true } });
    const warning = b.lines.find((l) => l.level === 'warn' && String(l.msg).startsWith('anonymous devices are allowed'));
    expect(warning?.msg).toContain('mqtt://127.0.0.1:1883');
    await connected(b.url, { clientId: 'free-1' });
    const aedesClients = (b.server.aedes as unknown as { clients: Record<string, Client> }).clients;
    expect(b.auth.identityOf(aedesClients['free-1'])).toBe('anonymous');
    expect(await connackCode(b.url, { clientId: 'dev-1' })).toBe(5);
    expect(await connackCode(b.url, { clientId: 'a/#' })).toBe(2);
    expect(await connackCode(b.url, { clientId: 'dev-1', username: 'dev-1', password: PASSWORD })).toBe(0);
    expect(refused(b)).toEqual({ anonymous: 1, 'client-id': 1 });
  });

  it('warns at start-up when no device can connect yet, and says how to add one', async () => {
    const b = await start({}, []);
    const warning = b.lines.find((l) => l.level === 'warn');
    expect(warning?.msg).toContain('no device can connect yet');
    expect(warning?.msg).toContain('tributary devices add <id>');
    const quiet = await start();
    expect(quiet.lines.filter((l) => l.level === 'warn')).toEqual([]);
  });

  it('refuses a connection without a verified certificate when mqtt.tls.clientCertificates is required', async () => {
    const b = await start({ mqtt: { tls: { certFile: 'server.pem', keyFile: 'server-key.pem', caFile: 'ca.pem', clientCertificates: 'required' } } });
    expect(await connackCode(b.url, { clientId: 'dev-1', username: 'dev-1', password: PASSWORD })).toBe(5);
    expect(refused(b)).toEqual({ certificate: 1 });
  });

  it('refuses connections from an address over limits.maxConnectionsPerIp, and counts a closed one out', async () => {
    const b = await start({ auth: { allowAnonymous: true }, limits: { maxConnectionsPerIp: 2 } });
    const first = await connected(b.url, { clientId: 'a-1' });
    const second = await connected(b.wsUrl, { clientId: 'a-2' });
    expect(b.auth.connectionsFrom('127.0.0.1')).toBe(2);
    expect(await connackCode(b.url, { clientId: 'a-3' })).toBe(3);
    expect(refused(b)).toEqual({ 'too-many-connections': 1 });
    await first.endAsync(true);
    await waitFor('the closed connection to be counted out', () => b.auth.connectionsFrom('127.0.0.1') === 1);
    expect(await connackCode(b.url, { clientId: 'a-4' })).toBe(0);
    await second.endAsync(true);
    await waitFor('the WebSocket connection to be counted out', () => b.auth.connectionsFrom('127.0.0.1') === 0);
  });

  it('disconnects a device removed from the credentials file, which then cannot reconnect', async () => {
    const b = await start({}, ['dev-1', 'dev-2']);
    const dev1 = await connected(b.url, { clientId: 'dev-1', username: 'dev-1', password: PASSWORD });
    const dev2 = await connected(b.url, { clientId: 'dev-2', username: 'dev-2', password: PASSWORD });
    await b.credentials.remove('dev-1');
    // The edge looks at the file about once a second.
    await waitFor('dev-1 to be disconnected', () => !dev1.connected, 5000);
    expect(dev2.connected).toBe(true);
    expect(b.lines.some((l) => String(l.msg).startsWith('device removed from the credentials file') && l.clientId === 'dev-1')).toBe(true);
    expect(await connackCode(b.url, { clientId: 'dev-1', username: 'dev-1', password: PASSWORD })).toBe(4);
  });
});
