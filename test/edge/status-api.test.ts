import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import { CloudNode } from '../../cloud/cloud-node.ts';
import { cloudConfigSchema } from '../../cloud/config.ts';
import { edgeConfigSchema } from '../../edge/config.ts';
import type { EdgeBuffer } from '../../edge/edge-buffer.ts';
import { EdgeNode } from '../../edge/edge-node.ts';
import { EdgeStatusReporter } from '../../edge/edge-status.ts';
import { createStatusApi, PROMETHEUS_CONTENT_TYPE } from '../../edge/status-api.ts';
import type { Uplink } from '../../edge/uplink.ts';
import { parseConfig } from '../../shared/config.ts';
import type { EdgeStatusReport } from '../../shared/edge-status-report.ts';
import { parseEdgeStatusReport } from '../../shared/edge-status-report.ts';
import { Logger } from '../../shared/logger.ts';
import { Metrics } from '../../shared/metrics.ts';
import { freePort } from '../helpers/free-port.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const logger = new Logger({ level: 'silent' });

/** Prometheus text format 0.0.4 sample line: name, optional {labels}, value. */
const SAMPLE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")*\})? -?[0-9.e+]+$/;

type Stats = ReturnType<EdgeBuffer['stats']>;
type LinkInfo = ReturnType<Uplink['linkInfo']>;

/** A reporter over hand-set buffer stats and link info (the unit under test is the report), with a clock the test moves. */
function fixture() {
  const clock = { now: Date.parse('2025-06-01T12:00:00Z') };
  const metrics = new Metrics();
  const accepted = metrics.counter('tributary_edge_events_accepted_total', 'Accepted.');
  const forwarded = metrics.counter('tributary_edge_events_forwarded_total', 'Forwarded.');
  const stats: Stats = {
    events: 0,
    bytes: 0,
    maxBytes: 1_000_000,
    oldestTimeMs: null,
    overflow: 'drop-oldest',
    maxAgeSeconds: 3600,
    lanes: [
      { lane: 'high', events: 0, bytes: 0, oldestTimeMs: null },
      { lane: 'normal', events: 0, bytes: 0, oldestTimeMs: null },
      { lane: 'low', events: 0, bytes: 0, oldestTimeMs: null },
    ],
  } as Stats;
  const link: LinkInfo = { state: 'waiting', url: 'mqtt://127.0.0.1:1884', sinceMs: clock.now, connects: 0, lastError: 'connect ECONNREFUSED 127.0.0.1:1884', inflightBatches: 0 };
  const reporter = new EdgeStatusReporter({
    edgeId: 'edge-s',
    durability: 'crash-safe',
    metrics,
    buffer: { stats: () => stats },
    uplink: { linkInfo: () => link },
    devicesConnected: () => 3,
    deadLetters: () => 1,
    version: '9.9.9',
    clock: () => clock.now,
    rateWindowMs: 10_000,
  });
  reporter.registerGauges();
  const app = createStatusApi({ report: () => reporter.report(), metrics, logger });
  const get = async (path: string) => {
    const res = await app.request(path);
    return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
  };
  const status = async () => parseEdgeStatusReport(JSON.parse((await get('/v1/status')).text));
  /** One second passes: `a` more accepted, `f` more forwarded, the buffer moves by the difference; the rates are sampled. */
  const second = (a: number, f: number) => {
    clock.now += 1_000;
    accepted.inc(a);
    forwarded.inc(f);
    stats.events += a - f;
    stats.lanes[1].events += a - f;
    reporter.sample();
  };
  return { clock, metrics, stats, link, reporter, get, status, second };
}

describe('edge status endpoint', () => {
  it('reports the buffer per lane with ages, the link and the counters', async () => {
    const f = fixture();
    f.stats.events = 7;
    f.stats.bytes = 250_000;
    f.stats.oldestTimeMs = f.clock.now - 90_000;
    f.stats.lanes[0] = { lane: 'high', events: 2, bytes: 1_000, oldestTimeMs: f.clock.now - 1_500 };
    f.stats.lanes[1] = { lane: 'normal', events: 5, bytes: 249_000, oldestTimeMs: f.clock.now - 90_000 };
    f.metrics.counter('tributary_edge_messages_rejected_total', 'Rejected.', { reason: 'invalid-json' }).inc(2);
    f.metrics.counter('tributary_edge_resends_deduplicated_total', 'Resends.').inc(4);
    f.clock.now += 12_000;
    const r = await f.status();
    expect(r).toMatchObject({
      edgeId: 'edge-s',
      version: '9.9.9',
      uptimeSeconds: 12,
      time: '2025-06-01T12:00:12.000Z',
      devices: { connected: 3 },
      link: { state: 'waiting', url: 'mqtt://127.0.0.1:1884', sinceSeconds: 12, connects: 0, lastError: 'connect ECONNREFUSED 127.0.0.1:1884', inflightBatches: 0 },
      buffer: {
        events: 7,
        bytes: 250_000,
        maxBytes: 1_000_000,
        usedRatio: 0.25,
        oldestAgeSeconds: 102,
        durability: 'crash-safe',
        overflow: 'drop-oldest',
        maxAgeSeconds: 3600,
        lanes: {
          high: { events: 2, bytes: 1_000, oldestAgeSeconds: 13.5 },
          normal: { events: 5, bytes: 249_000, oldestAgeSeconds: 102 },
          low: { events: 0, bytes: 0, oldestAgeSeconds: null },
        },
      },
      dropped: { overflow: 0, expired: 0, total: 0 },
      counters: { accepted: 0, rejected: 2, forwarded: 0, deadLetters: 1, resendsDeduplicated: 4 },
    });
    expect(Object.keys(r.buffer.lanes)).toEqual(['high', 'normal', 'low']);
    expect(r.commands).toBeUndefined();
  });

  it('counts drops per reason, with every reason the buffer uses and their total', async () => {
    const f = fixture();
    const dropped = (reason: string, lane: string) => f.metrics.counter('tributary_edge_events_dropped_total', 'Dropped.', { reason, lane });
    dropped('overflow', 'low').inc(10);
    dropped('overflow', 'normal').inc(5);
    dropped('expired', 'normal').inc(2);
    dropped('full-qos0', 'normal').inc(1);
    expect((await f.status()).dropped).toEqual({ overflow: 15, expired: 2, 'full-qos0': 1, total: 18 });
  });

  it('derives accept, forward and drain rates and the time to empty from counters sampled each second', async () => {
    const f = fixture();
    f.reporter.sample();
    for (let i = 0; i < 5; i++) f.second(100, 0); // link down: the backlog grows by 100 a second
    let r = await f.status();
    expect(r.buffer.events).toBe(500);
    expect(r.rates).toEqual({ acceptedPerSecond: 100, forwardedPerSecond: 0, drainPerSecond: 0, drainEtaSeconds: null });

    for (let i = 0; i < 10; i++) f.second(100, 150); // link up: 50 a second more leave than arrive
    r = await f.status();
    expect(r.buffer.events).toBe(0);
    expect(r.rates).toEqual({ acceptedPerSecond: 100, forwardedPerSecond: 150, drainPerSecond: 50, drainEtaSeconds: 0 });

    f.stats.events = 1_000; // a backlog still to drain at the same pace
    expect((await f.status()).rates.drainEtaSeconds).toBe(20);
  });

  it('serves the node\'s metrics and the status gauges in the Prometheus text format 0.0.4', async () => {
    const f = fixture();
    f.metrics.counter('tributary_edge_events_dropped_total', 'Dropped.', { reason: 'overflow', lane: 'low' }).inc(3);
    f.stats.lanes[2] = { lane: 'low', events: 4, bytes: 800, oldestTimeMs: f.clock.now - 30_000 };
    f.reporter.sample();
    f.second(60, 20);
    const res = await f.get('/metrics');
    expect(res.status).toBe(200);
    expect(res.type).toBe(PROMETHEUS_CONTENT_TYPE);
    const lines = res.text.trimEnd().split('\n');
    for (const line of lines) {
      if (line.startsWith('#')) expect(line).toMatch(/^# (HELP|TYPE) [a-z_]+ .+$/);
      else expect(line).toMatch(SAMPLE);
    }
    // Every family's TYPE line is there once: no family is registered twice under different names or kinds.
    const types = lines.filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
    expect(new Set(types).size).toBe(types.length);
    expect(lines).toEqual(
      expect.arrayContaining([
        'tributary_edge_info{edge_id="edge-s",version="9.9.9"} 1',
        'tributary_edge_lane_events{lane="low"} 4',
        'tributary_edge_lane_events{lane="normal"} 40',
        'tributary_edge_lane_bytes{lane="low"} 800',
        'tributary_edge_lane_oldest_age_seconds{lane="low"} 31',
        'tributary_edge_lane_oldest_age_seconds{lane="high"} 0',
        'tributary_edge_link_state{state="waiting"} 1',
        'tributary_edge_link_state{state="connected"} 0',
        'tributary_edge_events_accepted_per_second 60',
        'tributary_edge_events_forwarded_per_second 20',
        'tributary_edge_buffer_drain_per_second 0',
        'tributary_edge_events_dropped_total{reason="overflow",lane="low"} 3',
        'tributary_edge_buffer_max_bytes 1000000',
        '# TYPE tributary_edge_events_accepted_total counter',
      ]),
    );
  });

  it('follows the link state', async () => {
    const f = fixture();
    Object.assign(f.link, { state: 'connected', sinceMs: f.clock.now, connects: 1, lastError: null, inflightBatches: 3 });
    f.clock.now += 65_000;
    expect((await f.status()).link).toEqual({ state: 'connected', url: 'mqtt://127.0.0.1:1884', sinceSeconds: 65, connects: 1, lastError: null, inflightBatches: 3 });
    expect((await f.get('/metrics')).text).toContain('tributary_edge_link_state{state="connected"} 1\n');
    expect(JSON.parse((await f.get('/healthz')).text)).toEqual({ status: 'ok', edgeId: 'edge-s', link: 'connected' });
  });

  it('includes pending commands once the node counts them', async () => {
    const f = fixture();
    f.metrics.gauge('tributary_edge_commands_pending', 'Pending commands.', () => 2);
    expect((await f.status()).commands).toEqual({ pending: 2 });
  });

  it('answers an unknown route with 404 and a failure with 500, both as JSON errors', async () => {
    const f = fixture();
    const missing = await f.get('/v1/events');
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.text)).toEqual({ error: { code: 'ERR_NOT_FOUND', message: 'no route for GET /v1/events; the edge serves GET /v1/status, /metrics and /healthz' } });
    f.stats.lanes = undefined as unknown as Stats['lanes'];
    const failed = await f.get('/v1/status');
    expect(failed.status).toBe(500);
    expect(JSON.parse(failed.text).error.code).toBe('ERR_INTERNAL');
  });
});

describe('edge node status endpoint', () => {
  let dir: ReturnType<typeof tempDir>;
  let edge: EdgeNode;
  let cloud: CloudNode | null = null;
  const clients: MqttClient[] = [];

  beforeEach(async () => {
    dir = tempDir();
    const uplinkPort = await freePort();
    edge = new EdgeNode(
      parseConfig(edgeConfigSchema, { auth: { allowAnonymous: true },
        edgeId: 'edge-http',
        dataDir: `${dir.path}/edge`,
        mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
        http: { host: '127.0.0.1', port: 0 },
        buffer: { durability: 'crash-safe' },
        uplink: { url: `mqtt://127.0.0.1:${uplinkPort}`, reconnectInitialMs: 50, reconnectMaxMs: 200 },
        statusIntervalMs: 0,
      }),
      logger,
    );
    await edge.start();
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true);
    await edge.stop();
    await cloud?.stop();
    cloud = null;
    dir.remove();
  });

  const status = async (): Promise<EdgeStatusReport> => {
    const res = await fetch(`http://127.0.0.1:${edge.ports.http}/v1/status`);
    expect(res.status).toBe(200);
    return parseEdgeStatusReport(await res.json());
  };

  it('shows a backlog building while the cloud is away, then draining once it is back', async () => {
    const device = mqtt.connect(`mqtt://127.0.0.1:${edge.ports.mqtt}`, { clientId: 'dev-s', protocolVersion: 4, reconnectPeriod: 100 });
    clients.push(device);
    await new Promise<void>((resolve) => device.once('connect', () => resolve()));
    for (let i = 0; i < 20; i++) await device.publishAsync('telemetry/dev-s/temperature', JSON.stringify({ celsius: 20, seq: i }), { qos: 1 });

    const offline = await status();
    expect(offline.edgeId).toBe('edge-http');
    expect(offline.devices.connected).toBe(1);
    expect(offline.link.state).not.toBe('connected');
    expect(offline.link.lastError).not.toBeNull();
    expect(offline.buffer.events).toBe(20);
    expect(offline.buffer.lanes.normal.events).toBe(20);
    expect(offline.buffer.lanes.normal.oldestAgeSeconds).not.toBeNull();
    expect(offline.counters).toMatchObject({ accepted: 20, forwarded: 0 });
    const metrics = await fetch(`http://127.0.0.1:${edge.ports.http}/metrics`);
    expect(metrics.headers.get('content-type')).toBe(PROMETHEUS_CONTENT_TYPE);
    expect(await metrics.text()).toContain('tributary_edge_lane_events{lane="normal"} 20\n');

    cloud = new CloudNode(
      parseConfig(cloudConfigSchema, { auth: { allowAnonymous: true },
        dataDir: `${dir.path}/cloud`,
        store: { durability: 'crash-safe' },
        uplink: { host: '127.0.0.1', port: Number(new URL(edge.config.uplink.url).port) },
        http: { host: '127.0.0.1', port: 0 },
        statusIntervalMs: 0,
      }),
      logger,
    );
    await cloud.start();
    const drained = await waitFor('the backlog forwarded', async () => {
      const s = await status();
      return s.counters.forwarded === 20 && s.buffer.events === 0 ? s : undefined;
    });
    expect(drained.link).toMatchObject({ state: 'connected', connects: 1 });
    expect(drained.buffer.oldestAgeSeconds).toBeNull();
    expect((await (await fetch(`http://127.0.0.1:${edge.ports.http}/healthz`)).json())).toEqual({ status: 'ok', edgeId: 'edge-http', link: 'connected' });
  });

  it('starts without its status endpoint, and says so, when the port is taken: devices can still deliver', async () => {
    const lines: string[] = [];
    const second = new EdgeNode(
      parseConfig(edgeConfigSchema, { auth: { allowAnonymous: true },
        edgeId: 'edge-second',
        dataDir: `${dir.path}/second`,
        mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
        http: { host: '127.0.0.1', port: edge.ports.http },
        uplink: { url: edge.config.uplink.url },
        statusIntervalMs: 0,
      }),
      new Logger({ level: 'warn', sink: { write: (line) => lines.push(line) } }),
    );
    await second.start();
    try {
      expect(second.ports.http).toBeNull();
      const warning = lines.map((l) => JSON.parse(l) as { level: string; msg: string }).find((r) => r.msg.startsWith('status endpoint off'));
      expect(warning?.level).toBe('warn');
      expect(warning?.msg).toContain(`cannot listen for HTTP on 127.0.0.1:${edge.ports.http}`);
      expect(warning?.msg).toContain('(config http.port, flag --http-port)');
      const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${second.ports.mqtt}`, { clientId: 'dev-second', protocolVersion: 4 });
      clients.push(device);
      await device.publishAsync('telemetry/dev-second/temperature', '{"celsius": 20}', { qos: 1 });
      expect(second.buffer.stats().events).toBe(1);
    } finally {
      await second.stop();
    }
  });

  it('serves no status endpoint when http.port is null', async () => {
    const off = new EdgeNode(
      parseConfig(edgeConfigSchema, { auth: { allowAnonymous: true },
        edgeId: 'edge-off',
        dataDir: `${dir.path}/off`,
        mqtt: { host: '127.0.0.1', port: 0, wsPort: null },
        http: { port: null },
        uplink: { url: edge.config.uplink.url },
        statusIntervalMs: 0,
      }),
      logger,
    );
    await off.start();
    expect(off.ports.http).toBeNull();
    await off.stop();
  });
});
