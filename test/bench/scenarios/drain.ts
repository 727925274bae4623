/**
 * Drain after an outage: the cloud is down while devices fill the edge's buffer with a backlog, then the cloud
 * comes up and the edge forwards it. Measured: the drain rate (events/s into the cloud log), and, for live
 * traffic that keeps arriving at 1k events/s meanwhile, the edge's PUBACK latency and its end-to-end latency:
 * half of it in the high lane (alert-like events, which leave before the backlog) and half in the backlog's own
 * lane (which, to keep each lane's order, queue behind it). On the way, the edge's memory with the backlog
 * growing (it must not grow with it) and the disk bytes each buffered event costs.
 */
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { freePort } from '../../helpers/free-port.ts';
import type { Runtime } from '../../helpers/node-process.ts';
import { LoadGenerator } from '../loadgen.ts';
import { SseSink } from '../sse-sink.ts';
import type { Suite } from '../suite.ts';
import { round } from '../suite.ts';
import { diskBytes, startCloud, startEdge } from '../targets.ts';

const LIVE_RATE = 1000;

async function lastOffset(httpUrl: string): Promise<number> {
  const res = await fetch(`${httpUrl}/v1/events?limit=1`);
  if (!res.ok) throw new Error(`GET /v1/events: HTTP ${res.status}`);
  return ((await res.json()) as { lastOffset: number }).lastOffset;
}

/** Events in the edge's buffer, from its status endpoint. */
async function buffered(statusUrl: string): Promise<number> {
  const res = await fetch(`${statusUrl}/v1/status`);
  if (!res.ok) throw new Error(`GET /v1/status: HTTP ${res.status}`);
  return ((await res.json()) as { buffer: { events: number } }).buffer.events;
}

export async function drain(suite: Suite, runtime: Runtime, backlog: number): Promise<void> {
  const dir = suite.tempDir('drain');
  const uplinkPort = await freePort();
  const configFile = `${dir}/edge.json`;
  // The default lane rules plus one: the live "alert" metric travels in the high lane. Room for the whole backlog
  // (the default 256 MiB holds about 650k of these events).
  writeFileSync(configFile, JSON.stringify({ buffer: { maxBytes: 1024 * 1024 * 1024, lanes: [{ type: 'io.tributary.alert.', lane: 'high' }, { type: 'io.tributary.telemetry.alert', lane: 'high' }] } }));
  const edge = await startEdge({ runtime, durability: 'power-safe', dataDir: `${dir}/edge`, cloudUrl: `mqtt://127.0.0.1:${uplinkPort}`, configFile });
  let cloud: Awaited<ReturnType<typeof startCloud>> | undefined;
  try {
    const rssEmpty = edge.rssKiB();
    const fill = await LoadGenerator.connect({ port: edge.port, devices: 8, qos: 1, prefix: 'backlog-', window: 64 });
    let rssTenth = 0;
    const filled = await fill.publishCount(backlog, (done) => {
      if (!rssTenth && done >= backlog / 10) rssTenth = edge.rssKiB();
      suite.progress(`drain: filling the backlog ${done}/${backlog}`);
    });
    await fill.close();
    const rssFull = edge.rssKiB();
    if (!rssTenth) rssTenth = rssFull;
    const bytes = diskBytes(`${dir}/edge`);
    suite.progress(`drain: ${backlog} events buffered (${filled.rate}/s); starting the cloud`);

    const live = await LoadGenerator.connect({ port: edge.port, devices: 5, qos: 1, prefix: 'live-', metric: 'live' });
    const alerts = await LoadGenerator.connect({ port: edge.port, devices: 5, qos: 1, prefix: 'alert-', metric: 'alert' });
    const t0 = performance.now();
    cloud = await startCloud(runtime, `${dir}/cloud`, uplinkPort);
    const sink = await SseSink.open(cloud.httpUrl, 'live-', 'type=io.tributary.telemetry.live');
    const alertSink = await SseSink.open(cloud.httpUrl, 'alert-', 'type=io.tributary.telemetry.alert');
    const httpUrl = cloud.httpUrl;
    const samples: { t: number; offset: number }[] = [];
    let drainedAt = 0;
    let firstAt = 0;
    let rssPeak = 0;
    let polling = false;
    const poller = setInterval(() => {
      if (polling || drainedAt) return;
      polling = true;
      rssPeak = Math.max(rssPeak, edge.rssKiB());
      void Promise.all([lastOffset(httpUrl), buffered(edge.statusUrl)])
        .then(([offset, depth]) => {
          const t = performance.now() - t0;
          samples.push({ t, offset });
          if (!firstAt && offset > 0) firstAt = t;
          // Drained: the backlog is in the cloud and the edge holds no more than a second of live traffic.
          if (offset >= backlog && depth <= LIVE_RATE) drainedAt = t;
          if (samples.length % 8 === 0) suite.progress(`drain: ${offset}/${backlog} in the cloud after ${(t / 1000).toFixed(1)} s`);
        })
        .catch(() => undefined)
        .finally(() => (polling = false));
    }, 125);
    const [liveRun, alertRun] = await Promise.all([
      live.paced(LIVE_RATE / 2, { durationMs: 15 * 60_000, until: () => drainedAt > 0 }),
      alerts.paced(LIVE_RATE / 2, { durationMs: 15 * 60_000, until: () => drainedAt > 0 }),
    ]);
    clearInterval(poller);
    // The streams may run well behind the log (each scans the backlog for its type): give them time to catch up
    // before anything is counted as lost.
    await sink.tracker.reached(live.sent, 120_000);
    await alertSink.tracker.reached(alerts.sent, 120_000);
    const liveReport = sink.tracker.report(live.sentPerDevice);
    const alertReport = alertSink.tracker.report(alerts.sentPerDevice);
    await live.close();
    await alerts.close();
    sink.close();
    alertSink.close();

    // The steady rate, between 10% and 90% of the backlog, leaves out connection set-up and the tail.
    const at = (fraction: number) => samples.find((s) => s.offset >= backlog * fraction) ?? samples[samples.length - 1];
    const a = at(0.1);
    const b = at(0.9);
    const steady = b.t > a.t ? ((b.offset - a.offset) * 1000) / (b.t - a.t) : NaN;
    suite.emit({
      bench: 'drain',
      runtime,
      backlog,
      fillRate: filled.rate,
      reconnectSeconds: round(firstAt / 1000, 2),
      drainSeconds: round((drainedAt - firstAt) / 1000, 2),
      drainRate: Math.round((backlog * 1000) / (drainedAt - firstAt)),
      steadyDrainRate: Math.round(steady),
      liveRate: LIVE_RATE,
      // High lane: live events that leave before the backlog.
      liveEdgeP99Ms: alertRun.ack?.p99 ?? null,
      liveEdgeMaxMs: alertRun.ack?.max ?? null,
      liveE2eP50Ms: alertSink.tracker.latency.summary().p50,
      liveE2eP99Ms: alertSink.tracker.latency.summary().p99,
      // The backlog's lane: live events queue behind it, to keep the lane's order.
      sameLaneEdgeP99Ms: liveRun.ack?.p99 ?? null,
      sameLaneE2eP50Ms: sink.tracker.latency.summary().p50,
      sameLaneE2eP99Ms: sink.tracker.latency.summary().p99,
      liveLost: liveReport.lost + alertReport.lost,
      liveDuplicates: liveReport.duplicates + alertReport.duplicates,
    });
    suite.emit({
      bench: 'footprint-backlog',
      runtime,
      backlog,
      rssEmptyKiB: rssEmpty,
      rssAtTenthKiB: rssTenth,
      rssFullKiB: rssFull,
      rssDrainPeakKiB: rssPeak,
      growthTenthToFull: round(rssFull / rssTenth, 3),
      diskBytesPerEvent: Math.round(bytes / backlog),
    });
  } finally {
    await edge.stop();
    await cloud?.stop();
    suite.cleanup();
  }
}
