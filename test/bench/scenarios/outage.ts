/**
 * A cloud outage of minutes under a steady fleet: devices keep publishing (QoS 1) at a fixed rate while the cloud
 * is down, the edge buffers, then the cloud comes back on the same data and port. Measured: the backlog the
 * outage built, how long the edge took to see the cloud again and to drain, the drain rate, and what a
 * subscriber on the cloud's stream received: every event exactly once (lost and duplicated are counted per
 * device), and the end-to-end latency of the whole run, outage included.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../helpers/free-port.ts';
import type { Runtime } from '../../helpers/node-process.ts';
import { LoadGenerator } from '../loadgen.ts';
import { SseSink } from '../sse-sink.ts';
import type { Suite } from '../suite.ts';
import { round } from '../suite.ts';
import { startCloud, startEdge } from '../targets.ts';

const RATE = 1000;
const DEVICES = 50;

async function buffered(statusUrl: string): Promise<{ events: number; link: string }> {
  const res = await fetch(`${statusUrl}/v1/status`);
  if (!res.ok) throw new Error(`GET /v1/status: HTTP ${res.status}`);
  const status = (await res.json()) as { buffer: { events: number }; link: { state: string } };
  return { events: status.buffer.events, link: status.link.state };
}

export async function outage(suite: Suite, runtime: Runtime, outageSeconds: number): Promise<void> {
  // Traffic before the outage, to have the mesh in its steady state.
  const warmMs = suite.options.quick ? 1500 : 5000;
  const dir = suite.tempDir('outage');
  const uplinkPort = await freePort();
  let cloud = await startCloud(runtime, `${dir}/cloud`, uplinkPort);
  const edge = await startEdge({ runtime, durability: 'power-safe', dataDir: `${dir}/edge`, cloudUrl: `mqtt://127.0.0.1:${uplinkPort}` });
  try {
    const fleet = await LoadGenerator.connect({ port: edge.port, devices: DEVICES, qos: 1, prefix: 'out-', metric: 'outage' });
    let phase: 'warm' | 'down' | 'draining' | 'done' = 'warm';
    let peak = 0;
    let downAt = 0;
    let upAt = 0;
    let reconnectedAt = 0;
    let drainedAt = 0;
    const t0 = performance.now();
    const running = fleet.paced(RATE, { durationMs: (outageSeconds + 600) * 1000, until: () => phase === 'done' });
    const watch = (async () => {
      await sleep(warmMs);
      suite.progress(`outage: stopping the cloud for ${outageSeconds} s`);
      await cloud.stop();
      downAt = performance.now();
      phase = 'down';
      while (performance.now() - downAt < outageSeconds * 1000) {
        await sleep(1000);
        const { events } = await buffered(edge.statusUrl);
        peak = Math.max(peak, events);
        suite.progress(`outage: cloud down ${Math.round((performance.now() - downAt) / 1000)}/${outageSeconds} s, ${events} events buffered`);
      }
      cloud = await startCloud(runtime, `${dir}/cloud`, uplinkPort);
      upAt = performance.now();
      phase = 'draining';
      for (;;) {
        await sleep(100);
        const { events, link } = await buffered(edge.statusUrl);
        peak = Math.max(peak, events);
        if (!reconnectedAt && link === 'connected') reconnectedAt = performance.now();
        // Drained: the edge holds no more than a tenth of a second of live traffic.
        if (reconnectedAt && events <= RATE / 10) {
          drainedAt = performance.now();
          break;
        }
      }
      await sleep(1000); // live traffic after the drain, in the steady state again
      phase = 'done';
    })();
    await Promise.all([running, watch]);
    // Everything the fleet sent, read back from the whole log.
    const replay = await SseSink.open(cloud.httpUrl, 'out-', 'from=1&type=io.tributary.telemetry.outage');
    const complete = await replay.tracker.reached(fleet.sent, 60_000);
    const report = replay.tracker.report(fleet.sentPerDevice);
    replay.close();
    await fleet.close();
    const drainSeconds = (drainedAt - reconnectedAt) / 1000;
    suite.emit({
      bench: 'outage',
      runtime,
      outageSeconds,
      devices: DEVICES,
      rate: RATE,
      sent: fleet.sent,
      backlogPeak: peak,
      reconnectSeconds: round((reconnectedAt - upAt) / 1000, 2),
      drainSeconds: round(drainSeconds, 2),
      drainRate: Math.round(peak / Math.max(drainSeconds, 0.001)),
      complete,
      lost: report.lost,
      duplicates: report.duplicates,
      durationSeconds: round((performance.now() - t0) / 1000, 1),
    });
  } finally {
    await edge.stop();
    await cloud.stop();
    suite.cleanup();
  }
}
