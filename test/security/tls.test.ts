/**
 * Issue 5, TLS: devices reach the edge over MQTT over TLS and prove who they are with a client certificate; the
 * uplink and the cloud's API run over TLS. Real nodes, real certificates (`tributary certs dev`), real handshakes
 * on 127.0.0.1, on Node and (the edge) on Deno.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, get as httpsGet } from 'node:https';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { CloudNode } from '../../cloud/cloud-node.ts';
import { cloudConfigSchema } from '../../cloud/config.ts';
import { edgeConfigSchema } from '../../edge/config.ts';
import { EdgeNode } from '../../edge/edge-node.ts';
import { writeDevCertificates } from '../../shared/cli/certs.ts';
import { parseConfig } from '../../shared/config.ts';
import { startHttpServer } from '../../shared/http-server.ts';
import { Logger } from '../../shared/logger.ts';
import type { LogFields } from '../../shared/logger.ts';
import { loadTlsServerOptions } from '../../shared/tls-config.ts';
import { freePort } from '../helpers/free-port.ts';
import { NodeProcess } from '../helpers/node-process.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const logger = new Logger({ level: 'silent' });

/** A logger that keeps its records, to wait for what a node reports. */
function recordingLogger(): { logger: Logger; records: LogFields[] } {
  const records: LogFields[] = [];
  return { logger: new Logger({ level: 'debug', sink: { write: (line) => void records.push(JSON.parse(line) as LogFields) } }), records };
}

/** The outcome of an MQTT connection attempt: connected, refused with a CONNACK code, or failed (TLS). */
type Outcome = { connected: true; client: MqttClient } | { connected: false; returnCode?: number; error: string };

function attempt(url: string, options: IClientOptions): Promise<Outcome> {
  const client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...options });
  return new Promise((resolve) => {
    client.once('connect', () => resolve({ connected: true, client }));
    client.once('error', (err: Error & { code?: number | string }) => {
      client.end(true);
      resolve({ connected: false, returnCode: typeof err.code === 'number' ? err.code : undefined, error: err.message });
    });
    client.once('close', () => {
      client.end(true);
      resolve({ connected: false, error: 'connection closed' });
    });
  });
}

/** GET over HTTPS, trusting `ca` (or only the system's roots). */
function httpsStatus(url: string, ca?: string): Promise<{ status: number } | { error: string }> {
  return new Promise((resolve) => {
    const req = httpsGet(url, { ca, agent: false }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
    });
    req.on('error', (err) => resolve({ error: err.message }));
  });
}

describe('TLS', () => {
  const certs = tempDir('tributary-tls-certs-');
  const others = tempDir('tributary-tls-other-');
  const file = (name: string): string => join(certs.path, name);
  const other = (name: string): string => join(others.path, name);
  const pem = (path: string): string => readFileSync(path, 'utf8');

  beforeAll(async () => {
    await writeDevCertificates({ dir: certs.path, hosts: ['localhost', '127.0.0.1'], devices: ['sensor-1'], edges: ['edge-tls'], days: 1, force: false });
    // Another CA, and a device certificate from it with the same name: a forgery as far as the edge is concerned.
    await writeDevCertificates({ dir: others.path, hosts: ['localhost', '127.0.0.1'], devices: ['sensor-1'], edges: [], days: 1, force: false });
  });

  afterAll(() => {
    certs.remove();
    others.remove();
  });

  describe('devices to the edge (MQTT over TLS, client certificates)', () => {
    const data = tempDir('tributary-tls-edge-');
    let edge: EdgeNode;
    let url: string;
    const clients: MqttClient[] = [];

    beforeAll(async () => {
      const config = parseConfig(edgeConfigSchema, {
        edgeId: 'edge-tls',
        dataDir: data.path,
        http: { port: null },
        mqtt: { host: '127.0.0.1', port: 0, wsPort: null, tls: { port: 0, certFile: file('server.pem'), keyFile: file('server-key.pem'), caFile: file('ca.pem'), clientCertificates: 'optional' } },
        auth: { allowAnonymous: false },
        // No cloud: what devices send stays in the buffer.
        uplink: { url: `mqtt://127.0.0.1:${await freePort()}`, reconnectInitialMs: 1000, reconnectMaxMs: 5000 },
        statusIntervalMs: 0,
      });
      edge = new EdgeNode(config, logger);
      await edge.start();
      url = `mqtts://127.0.0.1:${edge.ports.tls}`;
    });

    afterEach(async () => {
      await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    });

    afterAll(async () => {
      await edge?.stop();
      data.remove();
    });

    it('lets a device in whose certificate names its client id, and buffers what it publishes', async () => {
      const before = edge.buffer.stats().events;
      const outcome = await attempt(url, { clientId: 'sensor-1', ca: pem(file('ca.pem')), cert: pem(file('device-sensor-1.pem')), key: pem(file('device-sensor-1-key.pem')) });
      if (!outcome.connected) throw new Error(`the device was refused: ${outcome.error}`);
      clients.push(outcome.client);
      await outcome.client.publishAsync('telemetry/sensor-1/temperature', JSON.stringify({ celsius: 21.5 }), { qos: 1 });
      expect(edge.buffer.stats().events).toBe(before + 1);
    });

    it('refuses a certificate from another CA, even with the right name, and buffers nothing of it', async () => {
      const before = edge.buffer.stats().events;
      const outcome = await attempt(url, { clientId: 'sensor-1', ca: pem(file('ca.pem')), cert: pem(other('device-sensor-1.pem')), key: pem(other('device-sensor-1-key.pem')) });
      if (outcome.connected) {
        clients.push(outcome.client);
        await outcome.client.publishAsync('telemetry/sensor-1/temperature', '{"forged":true}', { qos: 1 }).catch(() => undefined);
      }
      expect(outcome.connected).toBe(false);
      // Either the handshake or the CONNECT fails; if it is the CONNECT, with 5 (not authorized).
      if (!outcome.connected && outcome.returnCode !== undefined) expect(outcome.returnCode).toBe(5);
      expect(edge.buffer.stats().events).toBe(before);
    });

    it('refuses a device with neither a certificate nor credentials (CONNACK 5)', async () => {
      const outcome = await attempt(url, { clientId: 'sensor-1', ca: pem(file('ca.pem')) });
      if (outcome.connected) clients.push(outcome.client);
      expect(outcome).toMatchObject({ connected: false, returnCode: 5 });
    });

    it('fails the handshake for a device that does not trust the edge CA', async () => {
      const outcome = await attempt(url, { clientId: 'sensor-1', ca: pem(other('ca.pem')), cert: pem(file('device-sensor-1.pem')), key: pem(file('device-sensor-1-key.pem')) });
      if (outcome.connected) clients.push(outcome.client);
      expect(outcome.connected).toBe(false);
      expect(outcome).not.toHaveProperty('returnCode', expect.any(Number));
      expect((outcome as { error: string }).error).toMatch(/certificate|unable to (get|verify)/i);
    });
  });

  describe('HTTPS', () => {
    it('serves an app over HTTPS to a client that trusts the CA, and to no other', async () => {
      const options = await loadTlsServerOptions({ certFile: file('server.pem'), keyFile: file('server-key.pem'), clientCertificates: 'none' }, { key: 'http.tls' });
      const server = await startHttpServer({ fetch: () => new Response('ok') }, { port: 0, tls: options });
      try {
        expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
        expect(await httpsStatus(`${server.url}/`, pem(file('ca.pem')))).toEqual({ status: 200 });
        expect(await httpsStatus(`${server.url}/`)).toEqual({ error: expect.stringMatching(/certificate/i) });
        expect(await httpsStatus(`${server.url}/`, pem(other('ca.pem')))).toEqual({ error: expect.stringMatching(/certificate/i) });
      } finally {
        await server.close();
      }
    });

    it('closes at once while an HTTPS client keeps an idle connection open', async () => {
      const options = await loadTlsServerOptions({ certFile: file('server.pem'), keyFile: file('server-key.pem'), clientCertificates: 'none' }, { key: 'http.tls' });
      // A grace period longer than the test's timeout: close() must not wait for it.
      const server = await startHttpServer({ fetch: () => new Response('ok') }, { port: 0, tls: options, closeGraceMs: 120_000 });
      const agent = new Agent({ keepAlive: true, ca: pem(file('ca.pem')) });
      try {
        const status = await new Promise<number>((resolve, reject) => {
          httpsGet(`${server.url}/`, { agent }, (res) => {
            res.resume();
            res.once('end', () => resolve(res.statusCode ?? 0));
          }).once('error', reject);
        });
        expect(status).toBe(200);
        await server.close();
      } finally {
        agent.destroy();
      }
    });

    it('lets an HTTPS request in flight finish when closing', async () => {
      const options = await loadTlsServerOptions({ certFile: file('server.pem'), keyFile: file('server-key.pem'), clientCertificates: 'none' }, { key: 'http.tls' });
      let arrived!: () => void;
      const requestArrived = new Promise<void>((resolve) => (arrived = resolve));
      let answer!: (response: Response) => void;
      const server = await startHttpServer(
        {
          fetch: () => {
            arrived();
            return new Promise<Response>((resolve) => (answer = resolve));
          },
        },
        { port: 0, tls: options, closeGraceMs: 120_000 },
      );
      const response = new Promise<{ status: number; body: string } | { error: string }>((resolve) => {
        httpsGet(`${server.url}/`, { ca: pem(file('ca.pem')), agent: false }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
          res.once('error', (err) => resolve({ error: err.message }));
        }).once('error', (err) => resolve({ error: err.message }));
      });
      await requestArrived;
      const closed = server.close();
      answer(new Response('finished'));
      expect(await response).toEqual({ status: 200, body: 'finished' });
      await closed;
    });

    it("serves the cloud's API over HTTPS with http.tls", async () => {
      const data = tempDir('tributary-tls-cloud-');
      const cloud = new CloudNode(
        parseConfig(cloudConfigSchema, {
          dataDir: data.path,
          store: { durability: 'crash-safe' },
          uplink: { port: 0 },
          http: { port: 0, tls: { certFile: file('server.pem'), keyFile: file('server-key.pem') } },
          statusIntervalMs: 0,
        }),
        logger,
      );
      await cloud.start();
      try {
        const base = `https://127.0.0.1:${cloud.ports.http}`;
        expect(await httpsStatus(`${base}/healthz`, pem(file('ca.pem')))).toEqual({ status: 200 });
        expect(await httpsStatus(`${base}/healthz`)).toEqual({ error: expect.stringMatching(/certificate/i) });
      } finally {
        await cloud.stop();
        data.remove();
      }
    });
  });

  describe('the uplink over TLS', () => {
    const cleanups: (() => Promise<unknown> | unknown)[] = [];

    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    });

    async function startCloud(): Promise<CloudNode> {
      const data = tempDir('tributary-tls-cloud-');
      const cloud = new CloudNode(
        parseConfig(cloudConfigSchema, {
          dataDir: data.path,
          store: { durability: 'crash-safe' },
          uplink: { host: '127.0.0.1', port: 0, tls: { certFile: file('server.pem'), keyFile: file('server-key.pem') } },
          http: { port: 0 },
          // Edge credentials are another test's subject: here only TLS.
          auth: { allowAnonymous: true },
          statusIntervalMs: 0,
        }),
        logger,
      );
      await cloud.start();
      cleanups.push(() => data.remove(), () => cloud.stop());
      return cloud;
    }

    async function startEdge(cloud: CloudNode, caFile: string, edgeLogger = logger): Promise<EdgeNode> {
      const data = tempDir('tributary-tls-edge-');
      const edge = new EdgeNode(
        parseConfig(edgeConfigSchema, {
          edgeId: 'edge-tls',
          dataDir: data.path,
          http: { port: null },
          mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
          auth: { allowAnonymous: true },
          uplink: { url: `mqtts://127.0.0.1:${cloud.ports.uplink}`, tls: { caFile }, reconnectInitialMs: 50, reconnectMaxMs: 200 },
          statusIntervalMs: 0,
        }),
        edgeLogger,
      );
      await edge.start();
      cleanups.push(() => data.remove(), () => edge.stop());
      return edge;
    }

    async function publish(edge: EdgeNode, count: number): Promise<void> {
      const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${edge.ports.mqtt}`, { clientId: 'sensor-9', protocolVersion: 4, reconnectPeriod: 0 });
      for (let i = 0; i < count; i++) await device.publishAsync('telemetry/sensor-9/temperature', JSON.stringify({ seq: i }), { qos: 1 });
      await device.endAsync();
    }

    it('delivers events from an edge that trusts the cloud CA', async () => {
      const cloud = await startCloud();
      const edge = await startEdge(cloud, file('ca.pem'));
      await publish(edge, 5);
      await waitFor('5 events in the cloud log', () => cloud.log.lastOffset >= 5);
      const events = await cloud.log.read(1, 10);
      expect(events.map((e) => (e.event.data as { seq: number }).seq)).toEqual([0, 1, 2, 3, 4]);
    });

    it('does not connect an edge that trusts another CA: the link stays down and nothing is committed', async () => {
      const cloud = await startCloud();
      const { logger: edgeLogger, records } = recordingLogger();
      const edge = await startEdge(cloud, other('ca.pem'), edgeLogger);
      await publish(edge, 3);
      const failure = await waitFor('a second failed uplink attempt', () => records.find((r) => r.msg === 'uplink down; reconnecting' && Number(r.attempt) >= 2));
      expect(String(failure.reason)).toMatch(/certificate|unable to (get|verify)/i);
      expect(records.some((r) => r.msg === 'uplink connected')).toBe(false);
      expect(edge.status().link).not.toBe('connected');
      expect(cloud.log.lastOffset).toBe(0);
      expect(edge.buffer.stats().events).toBe(3);
    });
  });

  describe('an edge on Deno', () => {
    const dir = tempDir('tributary-tls-deno-');
    let edge: NodeProcess;
    let started: Record<string, unknown>;

    beforeAll(async () => {
      const configFile = join(dir.path, 'edge.json');
      writeFileSync(
        configFile,
        JSON.stringify({
          edgeId: 'edge-deno',
          dataDir: join(dir.path, 'data'),
          mqtt: { host: '127.0.0.1', port: 0, wsPort: null, tls: { port: 0, certFile: file('server.pem'), keyFile: file('server-key.pem'), caFile: file('ca.pem'), clientCertificates: 'optional' } },
          http: { port: 0 },
          auth: { allowAnonymous: false },
          uplink: { url: `mqtt://127.0.0.1:${await freePort()}` },
          buffer: { durability: 'crash-safe' },
          statusIntervalMs: 0,
        }),
      );
      edge = new NodeProcess('deno', ['edge', '--config', configFile]);
      started = await edge.waitForLog('edge node started');
    }, 60_000);

    afterAll(async () => {
      await edge?.stop();
      dir.remove();
    });

    it('takes a device in by its certificate over TLS and buffers its publish', async () => {
      expect(String(started.mqtts)).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
      const outcome = await attempt(String(started.mqtts), { clientId: 'sensor-1', ca: pem(file('ca.pem')), cert: pem(file('device-sensor-1.pem')), key: pem(file('device-sensor-1-key.pem')) });
      if (!outcome.connected) throw new Error(`the device was refused by the Deno edge: ${outcome.error}\n${edge.output.slice(-20).join('\n')}`);
      await outcome.client.publishAsync('telemetry/sensor-1/temperature', JSON.stringify({ celsius: 19 }), { qos: 1 });
      await outcome.client.endAsync();
      const report = (await (await fetch(`${String(started.http)}/v1/status`)).json()) as { buffer: { events: number } };
      expect(report.buffer.events).toBe(1);
    });

    it('refuses a certificate from another CA, and a device without one or credentials', async () => {
      const forged = await attempt(String(started.mqtts), { clientId: 'sensor-1', ca: pem(file('ca.pem')), cert: pem(other('device-sensor-1.pem')), key: pem(other('device-sensor-1-key.pem')) });
      if (forged.connected) await forged.client.endAsync(true);
      expect(forged.connected).toBe(false);
      const bare = await attempt(String(started.mqtts), { clientId: 'sensor-1', ca: pem(file('ca.pem')) });
      if (bare.connected) await bare.client.endAsync(true);
      expect(bare).toMatchObject({ connected: false, returnCode: 5 });
    });
  });
});
