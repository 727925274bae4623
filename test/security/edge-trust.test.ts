/**
 * Edge trust over real loopback: a real CloudNode (LevelDB in a temp dir, uplink listener and HTTP API on port 0),
 * real mqtt.js clients acting as edges, and a real EdgeNode whose token comes from `uplink.tokenFile`.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { CloudNode } from '../../cloud/cloud-node.ts';
import { cloudConfigSchema } from '../../cloud/config.ts';
import { EdgeCredentials } from '../../cloud/edge-credentials.ts';
import { edgeConfigSchema } from '../../edge/config.ts';
import { EdgeNode } from '../../edge/edge-node.ts';
import { encode } from '../../shared/codec.ts';
import { parseConfig } from '../../shared/config.ts';
import { ConfigError } from '../../shared/errors.ts';
import { Logger } from '../../shared/logger.ts';
import { encodeBatch, uplinkTopic } from '../../shared/uplink-wire.ts';
import { connackCode } from '../helpers/connack.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

/** A logger whose lines the test can read. */
function capture(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { lines, logger: new Logger({ level: 'debug', sink: { write: (line) => void lines.push(line) } }) };
}

function event(source: string, n: number): Uint8Array {
  return encode({ specversion: '1.0', id: `evt-${n}`, source, type: 'io.tributary.telemetry.test', time: new Date(0).toISOString(), data: { n } });
}

describe('edge trust (cloud uplink)', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** A cloud node whose edges file already holds edge-1 and edge-2; their tokens are returned. */
  async function startCloud(overrides: Record<string, unknown> = {}) {
    const dir = tempDir('tributary-edge-trust-');
    cleanups.push(() => dir.remove());
    const edges = await EdgeCredentials.open(join(dir.path, 'edges.json'));
    const tokens = { 'edge-1': (await edges.add('edge-1')).token, 'edge-2': (await edges.add('edge-2')).token };
    const config = parseConfig(cloudConfigSchema, { dataDir: dir.path, store: { durability: 'crash-safe' }, uplink: { port: 0 }, http: { port: 0 }, statusIntervalMs: 0, ...overrides });
    const { logger, lines } = capture();
    const node = new CloudNode(config, logger);
    await node.start();
    cleanups.push(() => node.stop());
    return { node, tokens, lines, dir: dir.path, url: `mqtt://127.0.0.1:${node.ports.uplink}` };
  }

  async function connect(url: string, options: IClientOptions): Promise<MqttClient> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, reconnectPeriod: 0, connectTimeout: 5_000, ...options });
    cleanups.push(() => client.endAsync(true));
    return client;
  }

  async function logSources(node: CloudNode): Promise<string[]> {
    return (await node.log.read(1, 1000)).map((e) => e.event.source);
  }

  it('refuses a wrong token, an unknown edge, a client id that is not the edge, and no credentials, with the MQTT 3.1.1 codes', async () => {
    const { node, tokens, url, lines } = await startCloud();
    // 4: bad user name or password. edge-2's token is a real token, just not edge-1's.
    expect(await connackCode(url, { clientId: 'edge-1', username: 'edge-1', password: tokens['edge-2'] })).toBe(4);
    expect(await connackCode(url, { clientId: 'edge-1', username: 'edge-1', password: 'not-a-token' })).toBe(4);
    expect(await connackCode(url, { clientId: 'edge-9', username: 'edge-9', password: tokens['edge-1'] })).toBe(4);
    // 2: identifier rejected: edge-1's valid credentials cannot take over edge-2's session.
    expect(await connackCode(url, { clientId: 'edge-2', username: 'edge-1', password: tokens['edge-1'] })).toBe(2);
    // 5: not authorised: no credentials, and anonymous edges are not allowed by default.
    expect(await connackCode(url, { clientId: 'edge-1' })).toBe(5);
    // The right credentials connect.
    expect(await connackCode(url, { clientId: 'edge-1', username: 'edge-1', password: tokens['edge-1'] })).toBe(0);

    expect(node.metrics.byLabel('tributary_cloud_edges_refused_total', 'reason')).toMatchObject({ 'bad-credentials': 2, 'unknown-edge': 1, 'client-id': 1, anonymous: 1 });
    const refusals = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'edge connection refused');
    expect(refusals.map((r) => r.reason)).toEqual(['bad-credentials', 'bad-credentials', 'unknown-edge', 'client-id', 'anonymous']);
    expect(refusals[0]).toMatchObject({ level: 'warn', clientId: 'edge-1', address: expect.stringMatching(/127\.0\.0\.1/) });
    // No token, not even a part of one, reaches a log line.
    const all = lines.join('\n');
    for (const token of Object.values(tokens)) expect(all).not.toContain(token.slice(-20));
  });

  it('commits a batch without its events of another edge\'s source, acknowledges it, and counts them', async () => {
    const { node, tokens, url, lines } = await startCloud();
    const edge = await connect(url, { clientId: 'edge-1', username: 'edge-1', password: tokens['edge-1'] });
    const events = [
      event('/edges/edge-1/devices/a', 1),
      event('/edges/edge-2/devices/a', 2), // another edge's
      event('/edges/edge-1', 3), // the edge itself
      event('/edges/edge-10/devices/x', 4), // a name that only starts the same
      event('/edges/edge-1/devices/b', 5),
      encode({ specversion: '1.0', id: 'no-source', type: 't' }), // no source at all
    ];
    // QoS 1: the promise resolves on the PUBACK, which the cloud sends only after the commit.
    await edge.publishAsync(uplinkTopic('edge-1'), Buffer.from(encodeBatch({ v: 2, edge: 'edge-1', lane: 1, seqs: [1, 2, 3, 4, 5, 6], events })), { qos: 1 });
    expect(await logSources(node)).toEqual(['/edges/edge-1/devices/a', '/edges/edge-1', '/edges/edge-1/devices/b']);
    expect(node.metrics.byLabel('tributary_cloud_events_rejected_total', 'reason')).toMatchObject({ 'foreign-source': 3, malformed: 0 });
    const warning = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => String(l.msg).startsWith('events left out of a batch'));
    expect(warning).toMatchObject({ level: 'warn', edgeId: 'edge-1', foreignSource: 3, kept: 3, example: 'source "/edges/edge-2/devices/a"' });

    // The batch moved the edge's mark on: sending it again commits nothing twice, and the next batch commits.
    await edge.publishAsync(uplinkTopic('edge-1'), Buffer.from(encodeBatch({ v: 2, edge: 'edge-1', lane: 1, seqs: [1, 2, 3, 4, 5, 6], events })), { qos: 1 });
    await edge.publishAsync(uplinkTopic('edge-1'), Buffer.from(encodeBatch({ v: 2, edge: 'edge-1', lane: 1, seqs: [7], events: [event('/edges/edge-1/devices/c', 7)] })), { qos: 1 });
    expect(await logSources(node)).toEqual(['/edges/edge-1/devices/a', '/edges/edge-1', '/edges/edge-1/devices/b', '/edges/edge-1/devices/c']);
  });

  it('acknowledges a batch of only forged events without committing any, so the edge is not stuck', async () => {
    const { node, tokens, url } = await startCloud();
    const edge = await connect(url, { clientId: 'edge-1', username: 'edge-1', password: tokens['edge-1'] });
    await edge.publishAsync(uplinkTopic('edge-1'), Buffer.from(encodeBatch({ v: 2, edge: 'edge-1', seqs: [1, 2], events: [event('/edges/edge-2', 1), Uint8Array.of(0xc1)] })), { qos: 1 });
    expect(node.log.lastOffset).toBe(0);
    expect(node.metrics.byLabel('tributary_cloud_events_rejected_total', 'reason')).toMatchObject({ 'foreign-source': 1, malformed: 1 });
  });

  it('closes the link of an edge that publishes to another edge\'s uplink topic, and commits nothing of it', async () => {
    const { node, tokens, url } = await startCloud();
    const edge = await connect(url, { clientId: 'edge-1', username: 'edge-1', password: tokens['edge-1'] });
    const closed = new Promise<void>((resolve) => edge.once('close', () => resolve()));
    edge.publish(uplinkTopic('edge-2'), Buffer.from(encodeBatch({ v: 2, edge: 'edge-2', seqs: [1], events: [event('/edges/edge-2', 1)] })), { qos: 1 });
    await closed;
    expect(node.log.lastOffset).toBe(0);
    expect(node.metrics.total('tributary_cloud_batches_rejected_total')).toBe(1);
  });

  it('disconnects an edge that is removed from the edges file, and refuses it from then on', async () => {
    const { tokens, url, dir } = await startCloud();
    const edge = await connect(url, { clientId: 'edge-1', username: 'edge-1', password: tokens['edge-1'] });
    const closed = new Promise<void>((resolve) => edge.once('close', () => resolve()));
    // Another process (the CLI) removes it.
    const cli = await EdgeCredentials.open(join(dir, 'edges.json'));
    await cli.remove('edge-1');
    await closed;
    expect(await connackCode(url, { clientId: 'edge-1', username: 'edge-1', password: tokens['edge-1'] })).toBe(4);
  });

  it('with allowAnonymous, accepts an edge without credentials but still refuses a wrong token', async () => {
    const { url, tokens, lines } = await startCloud({ auth: { allowAnonymous: true } });
    expect(await connackCode(url, { clientId: 'edge-7' })).toBe(0);
    expect(await connackCode(url, { clientId: 'edge-1', username: 'edge-1', password: tokens['edge-2'] })).toBe(4);
    expect(lines.some((l) => l.includes('"level":"warn"') && l.includes('auth.allowAnonymous is on'))).toBe(true);
  });

  it('warns at start-up how to add edges and tokens when there are none', async () => {
    const dir = tempDir('tributary-edge-trust-');
    cleanups.push(() => dir.remove());
    const { logger, lines } = capture();
    const node = new CloudNode(parseConfig(cloudConfigSchema, { dataDir: dir.path, uplink: { port: 0 }, http: { port: 0 }, statusIntervalMs: 0 }), logger);
    await node.start();
    cleanups.push(() => node.stop());
    const warnings = lines.filter((l) => l.includes('"level":"warn"')).join('\n');
    expect(warnings).toContain('tributary edges add <edgeId>');
    expect(warnings).toContain('tributary tokens add <name> --scopes');
  });

  describe('with a real edge node', () => {
    async function startEdge(cloudUrl: string, uplink: Record<string, unknown>) {
      const dir = tempDir('tributary-edge-trust-edge-');
      cleanups.push(() => dir.remove());
      const { logger, lines } = capture();
      const config = parseConfig(edgeConfigSchema, {
        edgeId: 'edge-1',
        dataDir: dir.path,
        auth: { allowAnonymous: true },
        mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
        http: { port: null },
        buffer: { durability: 'crash-safe' },
        uplink: { url: cloudUrl, reconnectInitialMs: 50, reconnectMaxMs: 200, ...uplink },
        statusIntervalMs: 0,
      });
      const node = new EdgeNode(config, logger, { configFile: 'edge.yaml' });
      return { node, lines, dir: dir.path };
    }

    async function publish(edge: EdgeNode, count: number): Promise<void> {
      const device = await connect(`mqtt://127.0.0.1:${edge.ports.mqtt}`, { clientId: 'dev-1' });
      for (let i = 0; i < count; i++) await device.publishAsync('telemetry/dev-1/temperature', JSON.stringify({ i }), { qos: 1 });
    }

    it('delivers events with the token from uplink.tokenFile', async () => {
      const cloud = await startCloud();
      const tokenFile = join(cloud.dir, 'edge-1.token');
      writeFileSync(tokenFile, `${cloud.tokens['edge-1']}\n`, { mode: 0o600 });
      const edge = await startEdge(cloud.url, { tokenFile });
      await edge.node.start();
      cleanups.push(() => edge.node.stop());
      await publish(edge.node, 3);
      await waitFor('the events in the cloud log', () => cloud.node.log.lastOffset === 3);
      expect(await logSources(cloud.node)).toEqual(Array(3).fill('/edges/edge-1/devices/dev-1'));
      for (const line of [...edge.lines, ...cloud.lines]) expect(line).not.toContain(cloud.tokens['edge-1'].slice(-20));
    });

    it('logs a clear error once and delivers nothing when the cloud refuses its token', async () => {
      const cloud = await startCloud();
      const tokenFile = join(cloud.dir, 'edge-1.token');
      writeFileSync(tokenFile, cloud.tokens['edge-2']); // a real token, but not edge-1's
      const edge = await startEdge(cloud.url, { tokenFile });
      await edge.node.start();
      cleanups.push(() => edge.node.stop());
      await publish(edge.node, 2);
      const refused = (): Record<string, unknown>[] => edge.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.level === 'error' && String(l.msg).includes('refused'));
      // Several attempts (backoff 50-200 ms), one error line.
      await waitFor('several refused attempts', () => cloud.node.metrics.byLabel('tributary_cloud_edges_refused_total', 'reason')['bad-credentials'] >= 3);
      expect(refused()).toHaveLength(1);
      expect(refused()[0].msg).toBe('the cloud refused this edge\'s token (bad user name or password): run "tributary edges add edge-1" on the cloud and put the token it prints in uplink.tokenFile');
      expect(cloud.node.log.lastOffset).toBe(0);
      expect(edge.node.buffer.stats().events).toBe(2);
    });

    it('does not start with a token file that is missing or empty, naming the key and the file', async () => {
      const cloud = await startCloud();
      const missing = await startEdge(cloud.url, { tokenFile: join(cloud.dir, 'nope.token') });
      await expect(missing.node.start()).rejects.toThrow(ConfigError);
      await expect(missing.node.start()).rejects.toThrow(/^edge\.yaml: uplink\.tokenFile: the token file ".*nope\.token" does not exist/);
      const emptyFile = join(cloud.dir, 'empty.token');
      writeFileSync(emptyFile, '\n');
      const empty = await startEdge(cloud.url, { tokenFile: emptyFile });
      await expect(empty.node.start()).rejects.toThrow(/uplink\.tokenFile: the token file ".*empty\.token" is empty/);
    });
  });
});
