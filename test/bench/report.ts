/**
 * The Markdown report (`docs/benchmarks.md`): the machine, the targets and whether this run met them, and one
 * table per scenario, all from the same results the run printed as JSON lines.
 */
import type { BenchResult } from './suite.ts';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  deno: string | null;
  mosquitto: string | null;
}

/** The last JSON line of a run: how and where it ran. */
export interface RunSummary extends BenchResult {
  bench: 'run';
  machine: Machine;
  mode: 'quick' | 'full';
  date: string;
  durationSeconds: number;
  command: string;
}

export interface ReportInput {
  machine: Machine;
  mode: 'quick' | 'full';
  date: string;
  durationSeconds: number;
  command: string;
  results: readonly BenchResult[];
}

interface Goal {
  what: string;
  goal: string;
  /** The measured value as text and whether it meets the goal; null when not measured in this run. */
  check(results: readonly BenchResult[]): { value: string; met: boolean | null } | null;
}

const find = (results: readonly BenchResult[], match: Record<string, unknown>) =>
  results.find((r) => Object.entries(match).every(([k, v]) => r[k] === v));

export const GOALS: Goal[] = [
  {
    what: 'Edge ingest, QoS 1, crash-safe (Node)',
    goal: '≥ 0.75 × plain Aedes',
    check: (rs) => ratio(find(rs, { bench: 'ingest', runtime: 'node', qos: 1, target: 'edge crash-safe' }), 0.75),
  },
  {
    what: 'Edge ingest, QoS 1, power-safe (Node)',
    goal: '≥ 0.65 × plain Aedes',
    check: (rs) => ratio(find(rs, { bench: 'ingest', runtime: 'node', qos: 1, target: 'edge power-safe' }), 0.65),
  },
  {
    what: 'Edge latency at 5k events/s, p99 (publish → PUBACK)',
    goal: '< 15 ms',
    check: (rs) => below(find(rs, { bench: 'end-to-end', system: 'tributary', runtime: 'node', rate: 5000 })?.edgeP99Ms, 15, 'ms'),
  },
  {
    what: 'End-to-end latency at 5k events/s, p99 (device → cloud subscriber)',
    goal: '< 50 ms',
    check: (rs) => below(find(rs, { bench: 'end-to-end', system: 'tributary', runtime: 'node', rate: 5000 })?.e2eP99Ms, 50, 'ms'),
  },
  {
    what: 'Drain of the backlog',
    goal: '≥ 50,000 events/s',
    check: (rs) => {
      const r = find(rs, { bench: 'drain', runtime: 'node' });
      return r ? { value: `${fmt(r.drainRate)}/s (${fmt(r.backlog)} events)`, met: Number(r.drainRate) >= 50_000 } : null;
    },
  },
  {
    what: 'Live end-to-end p99 during the drain (high lane)',
    goal: '< 250 ms',
    check: (rs) => below(find(rs, { bench: 'drain', runtime: 'node' })?.liveE2eP99Ms, 250, 'ms'),
  },
  {
    what: 'Dispatch with 10,000 subscriptions',
    goal: '≥ 0.5 × one subscription',
    check: (rs) => (find(rs, { bench: 'fan-out' }) ? { value: 'not measured yet (no subscriptions API)', met: null } : null),
  },
  {
    what: 'Edge RSS from 10% to 100% of the backlog',
    goal: 'within 10%',
    check: (rs) => {
      const r = find(rs, { bench: 'footprint-backlog', runtime: 'node' });
      return r ? { value: `× ${r.growthTenthToFull}`, met: Number(r.growthTenthToFull) <= 1.1 } : null;
    },
  },
  {
    what: 'Edge memory per idle connected device (Node)',
    goal: '≤ 10 KiB',
    check: (rs) => {
      const all = rs.filter((r) => r.bench === 'footprint' && r.target === 'edge' && r.runtime === 'node');
      const r = all[all.length - 1];
      return r ? { value: `${r.kibPerDevice} KiB (${fmt(r.devices)} devices)`, met: Number(r.kibPerDevice) <= 10 } : null;
    },
  },
];

function ratio(r: BenchResult | undefined, min: number): { value: string; met: boolean } | null {
  if (!r) return null;
  return { value: `${r.ratio} × (${fmt(r.rate)}/s)`, met: Number(r.ratio) >= min };
}

function below(v: unknown, max: number, unit: string): { value: string; met: boolean } | null {
  if (v === undefined || v === null) return null;
  return { value: `${v} ${unit}`, met: Number(v) < max };
}

function fmt(v: unknown): string {
  if (typeof v !== 'number') return v === null || v === undefined ? '–' : String(v);
  return Number.isInteger(v) ? v.toLocaleString('en-US') : String(v);
}

function table(headers: string[], rows: unknown[][]): string {
  const lines = [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`];
  for (const row of rows) lines.push(`| ${row.map(fmt).join(' | ')} |`);
  return lines.join('\n');
}

export function renderReport(input: ReportInput): string {
  const { machine, results } = input;
  const of = (bench: string) => results.filter((r) => r.bench === bench);
  const out: string[] = [];
  out.push('# Benchmarks', '');
  out.push(
    `Measured by \`${input.command}\` (${input.mode} run, ${input.durationSeconds} s) on ${input.date}. Regenerate with`,
    '`npm run bench` (about 16 minutes) or `npm run bench -- --quick` (under 2 minutes); every result is also',
    'printed as one JSON line. Numbers from a quick run are single, short runs: read them as rough.',
    '',
  );
  out.push(
    table(
      ['Machine', ''],
      [
        ['CPU', `${machine.cpu} (${machine.cores} cores)`],
        ['Memory', `${machine.memoryGiB} GiB`],
        ['OS', machine.os],
        ['Node.js', machine.node],
        ['Deno', machine.deno ?? 'not run'],
        ['Mosquitto', machine.mosquitto ?? 'not installed (its baselines are skipped)'],
      ],
    ),
    '',
  );
  out.push(
    '## How',
    '',
    '- The system under test runs pinned to core 0; the load generator (`test/bench/loadgen.ts`, raw MQTT 3.1.1 on',
    '  one connection per device) runs on core 1 and reports its own CPU use, so a reader can see it was not the',
    '  limit. Where two nodes run (edge and cloud, or two bridged Mosquittos), the edge is on core 0 and the cloud',
    '  shares core 1 with the load generator at nice 10, so the instrument keeps its timing.',
    '- Payloads are 200 bytes of JSON carrying the device sequence number and the send time. Subscribers check',
    '  every sequence number, so loss and duplicates are counted, not assumed.',
    '- Baselines run in the same process tree and the same run, alternated with the edge round by round, each',
    '  measurement on a fresh process; ratios are taken within a round and the median is reported.',
    '- `aedes+sub` is plain Aedes 1.x (our own MQTT server set-up, no hooks) delivering every message to one QoS 0',
    '  subscriber; `aedes` the same with no subscriber, the bare ceiling of the stack.',
    '',
  );

  out.push('## Targets', '');
  out.push(
    table(
      ['What', 'Goal', 'Measured', 'Met'],
      GOALS.map((g) => {
        const c = g.check(results);
        return [g.what, g.goal, c?.value ?? 'not measured in this run', c === null || c.met === null ? '–' : c.met ? 'yes' : '**no**'];
      }),
    ),
    '',
  );

  out.push('## Edge ingest', '');
  out.push(
    table(
      ['Runtime', 'QoS', 'Target', 'Messages/s', '× aedes+sub', '× bare aedes', 'PUBACK p99 (ms)', 'Load generator (cores)', 'Lost'],
      of('ingest').map((r) => [r.runtime, r.qos, r.target, r.loadgenBound ? `≥ ${fmt(r.rate)}` : r.rate, r.ratio, r.ratioToBareAedes, r.ackP99Ms, r.loadgenCpuCores, r.lost]),
    ),
    '',
    '"≥": the load generator used ≥ 0.9 of its core in some round, so it may have been the limit.',
    '',
  );

  out.push('## End to end (device → edge → cloud → subscriber)', '');
  out.push(
    table(
      ['System', 'Runtime', 'Rate/s', 'Edge p50', 'Edge p99', 'E2E p50', 'E2E p99', 'E2E max', 'Lost', 'Dup'],
      of('end-to-end').map((r) => [r.system, r.runtime, r.rate, r.edgeP50Ms, r.edgeP99Ms, r.e2eP50Ms, r.e2eP99Ms, r.e2eMaxMs, r.lost, r.duplicates]),
    ),
    '',
    'Latencies in ms. Edge: publish → PUBACK (for Tributary, the event is durable at the edge). E2E: publish →',
    'the cloud subscriber has it (Tributary: the SSE stream; Mosquitto: a QoS 1 subscriber on the cloud broker).',
    '',
  );
  const max = of('max-rate');
  if (max.length) {
    out.push('### Highest sustained rate', '');
    out.push(
      table(
        ['System', 'Runtime', 'Sustained/s', 'E2E p99 there (ms)', 'Failed at/s', 'Why'],
        max.map((r) => [r.system, r.runtime, r.sustained, (r.at as Record<string, unknown> | null)?.e2eP99Ms, r.failedAt, r.failure]),
      ),
      '',
      String(max[0].criterion),
      '',
    );
  }

  out.push('## Drain after an outage', '');
  out.push(
    table(
      ['Runtime', 'Backlog', 'Filled at/s', 'Reconnect s', 'Drain s', 'Drain/s', 'Steady/s', 'High lane: edge p99', 'E2E p50', 'E2E p99', 'Same lane: E2E p50', 'E2E p99', 'Live lost'],
      of('drain').map((r) => [r.runtime, r.backlog, r.fillRate, r.reconnectSeconds, r.drainSeconds, r.drainRate, r.steadyDrainRate, r.liveEdgeP99Ms, r.liveE2eP50Ms, r.liveE2eP99Ms, r.sameLaneE2eP50Ms ?? '', r.sameLaneE2eP99Ms ?? '', r.liveLost]),
    ),
    '',
    'Reconnect: from the cloud starting to its first event (the edge\'s reconnect backoff). Drain: from then until',
    'the cloud holds the whole backlog; steady: the rate between 10% and 90% of it.',
    'Live traffic: 1,000 events/s from 10 other devices while the backlog drains; half of it is in the high lane',
    '(like alerts and command results), which leaves before the backlog, half in the backlog\'s own lane, where it',
    'queues behind the backlog so that the lane (and each device) keeps its order. End-to-end latency is measured',
    'on the cloud\'s SSE stream filtered by type, and such a stream reads every event of the log, backlog included',
    '(about 140k events/s on an idle core, sharing it here with the cloud\'s commits): during the drain it runs',
    'seconds behind the log whatever the lane. Live dispatch from the commit path (the subscriptions work) is what',
    'removes that; the order in which lanes reach the log is checked by test/edge/uplink.test.ts.',
    '',
  );

  if (of('outage').length > 0) {
    out.push('## A cloud outage', '');
    out.push(
      table(
        ['Runtime', 'Outage s', 'Devices', 'Rate/s', 'Sent', 'Backlog peak', 'Reconnect s', 'Drain s', 'Drain/s', 'Lost', 'Duplicates'],
        of('outage').map((r) => [r.runtime, r.outageSeconds, r.devices, r.rate, r.sent, r.backlogPeak, r.reconnectSeconds, r.drainSeconds, r.drainRate, r.lost, r.duplicates]),
      ),
      '',
      'A fleet publishes at QoS 1 at a steady rate while the cloud is stopped, then started again on the same data.',
      'Reconnect: from the cloud listening again to the edge connected (its backoff). Drain: from then until the edge',
      'holds no more than 0.1 s of live traffic. Lost and duplicates: every event the fleet sent, read back from the',
      'cloud log.',
      '',
    );
  }

  out.push('## Footprint', '');
  out.push(
    table(
      ['Target', 'Runtime', 'Devices', 'RSS idle (KiB)', 'RSS, a tenth connected', 'RSS, all connected', 'KiB per device'],
      of('footprint').map((r) => [r.target, r.runtime, r.devices, r.rssIdleKiB, r.rssAtTenthKiB, r.rssConnectedKiB, r.kibPerDevice]),
    ),
    '',
    'KiB per device: the slope from a tenth of the devices to all of them (leaves out the runtime\'s fixed',
    'growth under a burst of connects). RSS is what the process holds, uncollected garbage included: on Node the',
    'old generation keeps some of each CONNECT\'s garbage until its next full collection, which may come tens of',
    'seconds later, so the figure varies from run to run.',
    '',
  );
  const backlog = of('footprint-backlog');
  if (backlog.length) {
    out.push(
      table(
        ['Runtime', 'Backlog', 'RSS empty', 'RSS at 10%', 'RSS full', 'RSS peak draining', 'Growth 10%→100%', 'Disk bytes/event'],
        backlog.map((r) => [r.runtime, r.backlog, r.rssEmptyKiB, r.rssAtTenthKiB, r.rssFullKiB, r.rssDrainPeakKiB, r.growthTenthToFull, r.diskBytesPerEvent]),
      ),
      '',
    );
  }

  out.push('## Fan-out', '');
  for (const r of of('fan-out')) out.push(`${r.status}: ${r.reason}.`, '');
  return out.join('\n');
}
