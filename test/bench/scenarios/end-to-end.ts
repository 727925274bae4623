/**
 * End to end: device → edge → cloud → live subscriber, at fixed rates and at the highest rate the pair
 * sustains; the same for Mosquitto bridging an edge broker to a cloud broker. 100 devices publish QoS 1
 * round-robin; the edge runs on one core, the cloud and the load generator (with the subscriber) on the other,
 * as an edge gateway and a cloud server would be separate machines.
 *
 * - edge latency: publish → PUBACK, i.e. until the event is durable on the edge (power-safe, the default);
 * - end-to-end latency: publish → the subscriber has it (the cloud's SSE stream, or a QoS 1 MQTT subscriber on
 *   the cloud Mosquitto).
 */
import type { Runtime } from '../../helpers/node-process.ts';
import type { DeliveryTracker } from '../delivery.ts';
import { LoadGenerator } from '../loadgen.ts';
import { MqttSink } from '../mqtt-sink.ts';
import { SseSink } from '../sse-sink.ts';
import type { Suite } from '../suite.ts';
import { median } from '../suite.ts';
import { CORES, startCloud, startEdge, startMosquitto } from '../targets.ts';

const DEVICES = 100;
/** A rate is sustained when the subscriber gets everything and its p99 stays under this. */
const SUSTAINED_P99_MS = 500;

/** A running edge+cloud pair with a way to subscribe at the cloud. */
interface Pair {
  name: string;
  runtime: Runtime | 'c';
  edgePort: number;
  subscribe(prefix: string): Promise<{ tracker: DeliveryTracker; close(): unknown }>;
  stop(): Promise<void>;
}

async function tributaryPair(suite: Suite, runtime: Runtime): Promise<Pair> {
  const dir = suite.tempDir('e2e');
  const cloud = await startCloud(runtime, `${dir}/cloud`);
  const edge = await startEdge({ runtime, durability: 'power-safe', dataDir: `${dir}/edge`, cloudUrl: cloud.uplinkUrl });
  return {
    name: 'tributary',
    runtime,
    edgePort: edge.port,
    subscribe: (prefix) => SseSink.open(cloud.httpUrl, prefix),
    async stop() {
      await edge.stop();
      await cloud.stop();
    },
  };
}

async function mosquittoPair(suite: Suite): Promise<Pair> {
  const dir = suite.tempDir('bridge');
  const cloud = await startMosquitto({ dir, cpu: CORES.cloud, name: 'mosquitto-cloud' });
  const edge = await startMosquitto({ dir, bridgeTo: cloud.port });
  // The bridge connects on its own schedule; wait until a message crosses it.
  const probe = await MqttSink.open(cloud.port, 'probe-', 1);
  const load = await LoadGenerator.connect({ port: edge.port, devices: 1, qos: 1, prefix: 'probe-' });
  for (let i = 0; i < 100 && probe.tracker.unique === 0; i++) {
    await load.paced(100, { durationMs: 100 });
  }
  await load.close();
  await probe.close();
  if (probe.tracker.unique === 0) throw new Error('the Mosquitto bridge did not carry a message within 10 s');
  return {
    name: 'mosquitto-bridge',
    runtime: 'c',
    edgePort: edge.port,
    subscribe: (prefix) => MqttSink.open(cloud.port, prefix, 1),
    async stop() {
      await edge.stop();
      await cloud.stop();
    },
  };
}

interface RateRun {
  offered: number;
  delivered: number;
  stalled: number;
  edge: ReturnType<DeliveryTracker['latency']['summary']> | null;
  e2e: ReturnType<DeliveryTracker['latency']['summary']>;
  lost: number;
  duplicates: number;
  loadgenCpuCores: number;
}

let runId = 0;

async function atRate(pair: Pair, rate: number, seconds: number): Promise<RateRun> {
  const prefix = `e${++runId}-`;
  const sink = await pair.subscribe(prefix);
  const load = await LoadGenerator.connect({ port: pair.edgePort, devices: DEVICES, qos: 1, prefix });
  try {
    const result = await load.paced(rate, { durationMs: seconds * 1000, maxInflightPerDevice: 1000 });
    await sink.tracker.reached(result.completed, 10_000);
    const report = sink.tracker.report(load.sentPerDevice);
    return {
      offered: rate,
      delivered: Math.round((sink.tracker.unique * 1000) / (seconds * 1000)),
      stalled: result.stalled,
      edge: result.ack,
      e2e: sink.tracker.latency.summary(),
      lost: report.lost,
      duplicates: report.duplicates,
      loadgenCpuCores: result.loadgenCpu.cores,
    };
  } finally {
    await load.close();
    sink.close();
  }
}

function sustained(run: RateRun): boolean {
  return run.stalled === 0 && run.lost === 0 && run.e2e.p99 < SUSTAINED_P99_MS;
}

/**
 * Each rate is measured on every pair in alternation, `runs` rounds (at most 3), each round in a new order; the
 * medians are reported. Both pairs stay up throughout (an idle pair costs next to nothing).
 */
export async function endToEnd(suite: Suite, runtime: Runtime, rates: readonly number[], withBridge: boolean): Promise<void> {
  const pairs: Pair[] = [];
  try {
    pairs.push(await tributaryPair(suite, runtime));
    if (withBridge && suite.options.mosquitto) pairs.push(await mosquittoPair(suite));
    // Steady state: the first seconds of a fresh process (JIT compilation, heap growth) are warm-up.
    for (const pair of pairs) {
      suite.progress(`end-to-end ${pair.name} (${pair.runtime}): warming up`);
      await atRate(pair, 5000, suite.options.quick ? 1 : 2);
    }
    const rounds = Math.min(3, suite.options.runs);
    for (const rate of rates) {
      const runs = new Map<Pair, RateRun[]>(pairs.map((p) => [p, []]));
      for (let r = 0; r < rounds; r++) {
        for (const pair of pairs.map((_, i) => pairs[(i + r) % pairs.length])) {
          suite.progress(`end-to-end ${pair.name} (${pair.runtime}) at ${rate}/s for ${suite.options.seconds} s, round ${r + 1}/${rounds}`);
          runs.get(pair)!.push(await atRate(pair, rate, suite.options.seconds));
        }
      }
      for (const pair of pairs) {
        suite.emit({ bench: 'end-to-end', system: pair.name, runtime: pair.runtime, ...medianRun(runs.get(pair)!), rounds, seconds: suite.options.seconds, devices: DEVICES });
      }
    }
  } finally {
    for (const pair of pairs) await pair.stop();
    suite.cleanup();
  }
}

/** Medians of the latency figures over rounds; loss, duplicates and stalls summed. */
function medianRun(runs: readonly RateRun[]): Record<string, unknown> {
  const flat = runs.map(flatten);
  const out: Record<string, unknown> = { ...flat[0] };
  for (const key of ['delivered', 'edgeP50Ms', 'edgeP99Ms', 'edgeMaxMs', 'e2eP50Ms', 'e2eP99Ms', 'e2eMaxMs', 'loadgenCpuCores']) {
    const values = flat.map((f) => f[key]).filter((v): v is number => typeof v === 'number');
    out[key] = values.length ? median(values) : null;
  }
  for (const key of ['lost', 'duplicates', 'stalled']) out[key] = flat.reduce((n, f) => n + Number(f[key]), 0);
  return out;
}

/** The highest rate each pair sustains: doubling from 5k/s (10k/s in a quick run) until it fails, then bisecting. */
export async function maxRate(suite: Suite, runtime: Runtime, withBridge: boolean): Promise<void> {
  const pairs: (() => Promise<Pair>)[] = [() => tributaryPair(suite, runtime)];
  if (withBridge && suite.options.mosquitto) pairs.push(() => mosquittoPair(suite));
  const seconds = suite.options.quick ? 2 : 4;
  for (const makePair of pairs) {
    const pair = await makePair();
    try {
      await atRate(pair, 5000, suite.options.quick ? 1 : 2);
      let good: RateRun | null = null;
      let bad: RateRun | null = null;
      let rate = suite.options.quick ? 10_000 : 5000;
      while (!bad && rate <= 400_000) {
        suite.progress(`max-rate ${pair.name} (${pair.runtime}): trying ${rate}/s`);
        const run = await atRate(pair, rate, seconds);
        if (sustained(run)) good = run;
        else bad = run;
        rate *= 2;
      }
      for (let i = 0; i < (suite.options.quick ? 1 : 3) && good && bad; i++) {
        const mid = Math.round((good.offered + bad.offered) / 2 / 1000) * 1000;
        if (mid === good.offered || mid === bad.offered) break;
        suite.progress(`max-rate ${pair.name} (${pair.runtime}): trying ${mid}/s`);
        const run = await atRate(pair, mid, seconds);
        if (sustained(run)) good = run;
        else bad = run;
      }
      suite.emit({
        bench: 'max-rate',
        system: pair.name,
        runtime: pair.runtime,
        sustained: good?.offered ?? 0,
        failedAt: bad?.offered ?? null,
        failure: bad ? describeFailure(bad) : null,
        at: good ? flatten(good) : null,
        criterion: `every event delivered, no publisher stalled, end-to-end p99 < ${SUSTAINED_P99_MS} ms over ${seconds} s`,
      });
    } finally {
      await pair.stop();
      suite.cleanup();
    }
  }
}

function describeFailure(run: RateRun): string {
  const reasons: string[] = [];
  if (run.stalled) reasons.push(`${run.stalled} publishes stalled (1000 unacknowledged per device)`);
  if (run.lost) reasons.push(`${run.lost} not delivered within 10 s`);
  if (run.e2e.p99 >= SUSTAINED_P99_MS) reasons.push(`end-to-end p99 ${run.e2e.p99} ms`);
  return reasons.join('; ');
}

function flatten(run: RateRun): Record<string, unknown> {
  return {
    rate: run.offered,
    delivered: run.delivered,
    edgeP50Ms: run.edge?.p50 ?? null,
    edgeP99Ms: run.edge?.p99 ?? null,
    edgeMaxMs: run.edge?.max ?? null,
    e2eP50Ms: run.e2e.p50,
    e2eP99Ms: run.e2e.p99,
    e2eMaxMs: run.e2e.max,
    lost: run.lost,
    duplicates: run.duplicates,
    stalled: run.stalled,
    loadgenCpuCores: run.loadgenCpuCores,
  };
}
