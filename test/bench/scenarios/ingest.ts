/**
 * Edge ingest: how many device publishes per second the edge turns into durable CloudEvents, next to plain
 * brokers on the same load (4 publishers, 200-byte JSON, QoS 1 with 64 in flight per publisher, or QoS 0 as
 * fast as the socket takes it). The targets run in alternation, each round in a new order and each run on a
 * fresh process; ratios are taken within a round and the medians reported.
 *
 * Baselines: `aedes+sub` is plain Aedes delivering each message to one QoS 0 subscriber — a broker doing
 * something with every message, as the edge does with its buffer; the targets are ratios to it. `aedes` alone
 * (publish, nothing else) is the bare ceiling of our stack, reported for reference.
 */
import type { Runtime } from '../../helpers/node-process.ts';
import { LoadGenerator } from '../loadgen.ts';
import type { LoadResult } from '../loadgen.ts';
import { MqttSink } from '../mqtt-sink.ts';
import type { Suite } from '../suite.ts';
import { median, round } from '../suite.ts';
import type { Target } from '../targets.ts';
import { startAedes, startEdge, startMosquitto } from '../targets.ts';

const PUBLISHERS = 4;
const WINDOW = 64;

interface IngestTarget {
  name: string;
  subscriber: boolean;
  start(suite: Suite): Promise<Target>;
}

function targetsFor(runtime: Runtime, qos: 0 | 1, suite: Suite): IngestTarget[] {
  const edge = (durability: 'crash-safe' | 'power-safe'): IngestTarget => ({
    name: `edge ${durability}`,
    subscriber: false,
    start: (s) => startEdge({ runtime, durability, dataDir: `${s.tempDir('ingest')}/edge`, cloudUrl: 'mqtt://127.0.0.1:9' }),
  });
  const { quick, mosquitto } = suite.options;
  // A quick run keeps the baseline and the headline targets: crash-safe everywhere, power-safe at QoS 1 on Node.
  const list: IngestTarget[] = [{ name: 'aedes+sub', subscriber: true, start: () => startAedes(runtime) }, edge('crash-safe')];
  if (!quick || (runtime === 'node' && qos === 1)) list.push(edge('power-safe'));
  if (!quick) list.push({ name: 'aedes', subscriber: false, start: () => startAedes(runtime) });
  if (runtime === 'node' && mosquitto && (!quick || qos === 1)) {
    list.push({ name: 'mosquitto+sub', subscriber: true, start: (s) => startMosquitto({ dir: s.tempDir('mosquitto') }) });
  }
  return list;
}

interface Run {
  result: LoadResult;
  lost: number;
  duplicates: number;
}

async function measure(suite: Suite, t: IngestTarget, qos: 0 | 1, round: number): Promise<Run> {
  const target = await t.start(suite);
  try {
    const prefix = `r${round}-`;
    const sink = t.subscriber ? await MqttSink.open(target.port, prefix, 0) : null;
    const warm = await LoadGenerator.connect({ port: target.port, devices: PUBLISHERS, qos, prefix: `w${round}-`, window: WINDOW });
    await warm.saturate(500);
    await warm.close();
    const load = await LoadGenerator.connect({ port: target.port, devices: PUBLISHERS, qos, prefix, window: WINDOW });
    const result = await load.saturate(suite.options.seconds * 1000);
    let lost = 0;
    let duplicates = 0;
    if (sink) {
      // QoS 0 delivery may lag the publishers; give the subscriber a moment to catch up before counting.
      await sink.tracker.reached(load.sent, 5000);
      ({ lost, duplicates } = sink.tracker.report(load.sentPerDevice));
      await sink.close();
    }
    await load.close();
    return { result, lost, duplicates };
  } finally {
    await target.stop();
  }
}

export async function ingest(suite: Suite, runtime: Runtime, qosLevels: readonly (0 | 1)[]): Promise<void> {
  for (const qos of qosLevels) {
    const targets = targetsFor(runtime, qos, suite);
    const runs = new Map<string, Run[]>(targets.map((t) => [t.name, []]));
    for (let r = 0; r < suite.options.runs; r++) {
      // Rotate the order each round so no target always runs first (or on a warmer machine).
      const order = targets.map((_, i) => targets[(i + r) % targets.length]);
      for (const t of order) {
        suite.progress(`ingest ${runtime} QoS ${qos} round ${r + 1}/${suite.options.runs}: ${t.name}`);
        const run = await measure(suite, t, qos, r);
        runs.get(t.name)!.push(run);
        suite.progress(`  ${t.name}: ${run.result.rate} msg/s (load generator ${run.result.loadgenCpu.cores} cores)`);
      }
      suite.cleanup();
    }
    const baseline = runs.get('aedes+sub')!;
    const ceiling = runs.get('aedes');
    for (const t of targets) {
      const list = runs.get(t.name)!;
      const rates = list.map((x) => x.result.rate);
      suite.emit({
        bench: 'ingest',
        runtime,
        qos,
        target: t.name,
        rate: Math.round(median(rates)),
        rates,
        ratio: round(median(list.map((x, i) => x.result.rate / baseline[i].result.rate)), 3),
        ratioToBareAedes: ceiling ? round(median(list.map((x, i) => x.result.rate / ceiling[i].result.rate)), 3) : null,
        ackP99Ms: qos === 1 ? median(list.map((x) => x.result.ack!.p99)) : null,
        loadgenCpuCores: Math.max(...list.map((x) => x.result.loadgenCpu.cores)),
        // A load generator near a whole core may have been the limit: the rate is then a lower bound.
        loadgenBound: list.some((x) => x.result.loadgenCpu.cores >= 0.9),
        unacked: list.reduce((n, x) => n + x.result.unacked, 0),
        lost: t.subscriber ? list.reduce((n, x) => n + x.lost, 0) : null,
        duplicates: t.subscriber ? list.reduce((n, x) => n + x.duplicates, 0) : null,
        publishers: PUBLISHERS,
        window: qos === 1 ? WINDOW : null,
        seconds: suite.options.seconds,
      });
    }
  }
}
