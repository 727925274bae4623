import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { join } from 'node:path';
import type { Client } from 'aedes';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import { writeDevCertificates } from '../../shared/cli/certs.ts';
import { Logger } from '../../shared/logger.ts';
import type { RunningMqttServer } from '../../shared/mqtt-server.ts';
import { startMqttServer } from '../../shared/mqtt-server.ts';
import { loadTlsServerOptions, verifiedPeerName } from '../../shared/tls-config.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const logger = new Logger({ level: 'silent' });
/** The TLS listener's log records. */
const records: Record<string, unknown>[] = [];
const recording = new Logger({ level: 'warn', sink: { write: (line) => void records.push(JSON.parse(line) as Record<string, unknown>) } });

describe('startMqttServer with a TLS listener', () => {
  const dir = tempDir('tributary-mqtt-tls-');
  const pem = (name: string): string => readFileSync(join(dir.path, name), 'utf8');
  let server: RunningMqttServer;
  /** What the authenticate hook saw: client id → verified certificate name. */
  const identities = new Map<string, string | undefined>();
  const connections: Client[] = [];
  /** Topic → payload size of what clients published. */
  const published = new Map<string, number>();
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    await writeDevCertificates({ dir: dir.path, hosts: ['localhost', '127.0.0.1'], devices: ['sensor-1'], edges: [], days: 1, force: false });
    const options = await loadTlsServerOptions(
      { certFile: join(dir.path, 'server.pem'), keyFile: join(dir.path, 'server-key.pem'), caFile: join(dir.path, 'ca.pem'), clientCertificates: 'optional' },
      { key: 'mqtt.tls' },
    );
    server = await startMqttServer({
      host: '127.0.0.1',
      port: 0,
      wsPort: null,
      tls: { port: 0, options },
      onConnection: (client) => connections.push(client),
      hooks: {
        authenticate: (client, _username, _password, callback) => {
          identities.set(client.id, verifiedPeerName(client.conn));
          callback(null, true);
        },
      },
      logger: recording,
    });
    server.aedes.on('publish', (packet, client) => {
      if (client) published.set(packet.topic, packet.payload.length);
    });
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.endAsync(true)));
  });

  afterAll(async () => {
    await server?.close();
    dir.remove();
  });

  function tlsClient(clientId: string, tls: { ca?: string; cert?: string; key?: string }): MqttClient {
    const client = mqtt.connect(`mqtts://127.0.0.1:${server.tlsPort}`, { clientId, reconnectPeriod: 0, connectTimeout: 5000, ...tls });
    client.on('error', () => {});
    clients.push(client);
    return client;
  }

  it('listens on its own port and serves MQTT over it, with the client certificate available to the hooks', async () => {
    expect(server.tlsPort).toEqual(expect.any(Number));
    expect(server.tlsPort).not.toBe(server.port);
    const before = connections.length;
    const client = tlsClient('sensor-1', { ca: pem('ca.pem'), cert: pem('device-sensor-1.pem'), key: pem('device-sensor-1-key.pem') });
    await new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    // Resolves on the PUBACK.
    await client.publishAsync('telemetry/sensor-1/temperature', '21.5', { qos: 1 });
    expect(published.get('telemetry/sensor-1/temperature')).toBe(4);
    expect(identities.get('sensor-1')).toBe('sensor-1');
    expect(connections.length).toBe(before + 1);
  });

  it('gives no identity to a client without a certificate', async () => {
    const client = tlsClient('no-cert', { ca: pem('ca.pem') });
    await new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    expect(identities.has('no-cert')).toBe(true);
    expect(identities.get('no-cert')).toBeUndefined();
  });

  it('reads a publish larger than a TLS record whole', async () => {
    const client = tlsClient('bulk', { ca: pem('ca.pem') });
    await new Promise((resolve) => client.once('connect', resolve));
    await client.publishAsync('bulk/data', Buffer.alloc(200_000, 7), { qos: 1 });
    expect(published.get('bulk/data')).toBe(200_000);
  });

  it('fails the handshake for a client that does not trust the server', async () => {
    const client = tlsClient('distrustful', {});
    const error = await new Promise<Error>((resolve) => {
      client.once('error', resolve);
      client.once('connect', () => resolve(new Error('connected')));
    });
    expect(error.message).toMatch(/self[- ]signed|unable to (get|verify)/i);
    expect(identities.has('distrustful')).toBe(false);
    const logged = await waitFor('the failed handshake in the log', () => records.find((r) => r.msg === 'TLS handshake failed'));
    // Node's client hangs up without an alert; the address is gone with the socket by then.
    expect(logged).toMatchObject({ level: 'warn', error: expect.any(String) });
  });

  it('has no TLS port when none is asked for', async () => {
    const plain = await startMqttServer({ host: '127.0.0.1', port: 0, wsPort: null, hooks: {}, logger });
    expect(plain.tlsPort).toBeNull();
    await plain.close();
  });

  it('ends TLS connections on close, also one still in its handshake', async () => {
    const options = await loadTlsServerOptions({ certFile: join(dir.path, 'server.pem'), keyFile: join(dir.path, 'server-key.pem'), clientCertificates: 'none' }, { key: 'mqtt.tls' });
    const other = await startMqttServer({ host: '127.0.0.1', port: 0, wsPort: null, tls: { port: 0, options }, hooks: {}, logger });
    const connected = mqtt.connect(`mqtts://127.0.0.1:${other.tlsPort}`, { clientId: 'c1', reconnectPeriod: 0, ca: pem('ca.pem') });
    connected.on('error', () => {});
    await new Promise((resolve) => connected.once('connect', resolve));
    // A TCP connection that never sends a ClientHello.
    const silent = connectTcp(other.tlsPort!, '127.0.0.1');
    silent.on('error', () => {});
    let silentClosed = false;
    silent.once('close', () => (silentClosed = true));
    await new Promise((resolve) => silent.once('connect', resolve));
    // Half a TLS record header: the server has accepted the connection and waits in the handshake.
    silent.write(Buffer.from([0x16, 0x03]));
    await new Promise((r) => setTimeout(r, 100));

    await other.close();

    await waitFor('the silent connection to be closed', () => silentClosed, 5000);
    await waitFor('the MQTT client to be disconnected', () => !connected.connected, 5000);
    connected.end(true);
  });
});
