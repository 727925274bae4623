/**
 * The edge's status: buffer depth per lane, bytes, oldest age, forward and drain rates, drops per reason and the
 * state of the link, gathered from the buffer, the uplink and the node's metrics into one report (its fields are
 * documented in shared/edge-status-report.ts), and registered as Prometheus gauges.
 *
 * Rates come from counters sampled each second over a 10-second window (shared/rate-window.ts), so a status
 * request costs no more than reading a few numbers, however often it comes.
 */
import type { EdgeStatusReport, LaneStatus } from '../shared/edge-status-report.ts';
import { LINK_STATES } from '../shared/edge-status-report.ts';
import type { Metrics } from '../shared/metrics.ts';
import { RateWindow } from '../shared/rate-window.ts';
import { tributaryVersion } from '../shared/version.ts';
import type { EdgeBuffer } from './edge-buffer.ts';
import type { Uplink } from './uplink.ts';

/** Counter families the report reads; the buffer, ingest and uplink own them. */
export const STATUS_COUNTERS = {
  accepted: 'tributary_edge_events_accepted_total',
  forwarded: 'tributary_edge_events_forwarded_total',
  rejected: 'tributary_edge_messages_rejected_total',
  dropped: 'tributary_edge_events_dropped_total',
  resendsDeduplicated: 'tributary_edge_resends_deduplicated_total',
  /** A gauge, when the edge handles commands. */
  pendingCommands: 'tributary_edge_commands_pending',
} as const;

export interface EdgeStatusOptions {
  edgeId: string;
  durability: string;
  metrics: Metrics;
  buffer: Pick<EdgeBuffer, 'stats'>;
  uplink: Pick<Uplink, 'linkInfo'>;
  devicesConnected: () => number;
  deadLetters: () => number;
  /** Default: the version in package.json. */
  version?: string;
  /** Milliseconds since the epoch. Default `Date.now`. */
  clock?: () => number;
  /** The span rates are averaged over. Default 10 s. */
  rateWindowMs?: number;
}

export class EdgeStatusReporter {
  readonly #o: EdgeStatusOptions;
  readonly #clock: () => number;
  readonly #startedAtMs: number;
  readonly #version: string;
  readonly #rates: RateWindow<'accepted' | 'forwarded'>;

  constructor(options: EdgeStatusOptions) {
    this.#o = options;
    this.#clock = options.clock ?? Date.now;
    this.#startedAtMs = this.#clock();
    this.#version = options.version ?? tributaryVersion();
    const { metrics } = options;
    this.#rates = new RateWindow(
      () => ({ accepted: metrics.total(STATUS_COUNTERS.accepted), forwarded: metrics.total(STATUS_COUNTERS.forwarded) }),
      { windowMs: options.rateWindowMs ?? 10_000, clock: this.#clock },
    );
  }

  /** Starts sampling the rate counters each second. */
  start(): void {
    this.#rates.start(1_000);
  }

  stop(): void {
    this.#rates.stop();
  }

  /** Samples the rate counters now (the timer started by `start()` does so each second). */
  sample(): void {
    this.#rates.sample();
  }

  report(): EdgeStatusReport {
    const { metrics } = this.#o;
    const now = this.#clock();
    const stats = this.#o.buffer.stats();
    const link = this.#o.uplink.linkInfo();
    const ageOf = (timeMs: number | null): number | null => (timeMs === null ? null : round(Math.max(0, now - timeMs) / 1000, 1));

    const lanes: Record<string, LaneStatus> = {};
    for (const lane of stats.lanes) lanes[lane.lane] = { events: lane.events, bytes: lane.bytes, oldestAgeSeconds: ageOf(lane.oldestTimeMs) };

    const accepted = this.#rates.rate('accepted');
    const forwarded = this.#rates.rate('forwarded');
    // Drops shrink the backlog too, but they are not progress: the ETA is for the cloud having the events.
    const drain = Math.max(0, forwarded - accepted);

    const byReason = metrics.byLabel(STATUS_COUNTERS.dropped, 'reason');
    const dropped: EdgeStatusReport['dropped'] = { overflow: 0, expired: 0, total: 0 };
    for (const [reason, n] of Object.entries(byReason)) {
      const key = reason === '' || reason === 'total' ? 'unknown' : reason;
      dropped[key] = (dropped[key] ?? 0) + n;
      dropped.total += n;
    }

    const report: EdgeStatusReport = {
      edgeId: this.#o.edgeId,
      version: this.#version,
      uptimeSeconds: Math.floor(Math.max(0, now - this.#startedAtMs) / 1000),
      time: new Date(now).toISOString(),
      devices: { connected: this.#o.devicesConnected() },
      link: {
        state: link.state,
        url: link.url,
        sinceSeconds: round(Math.max(0, now - link.sinceMs) / 1000, 1),
        connects: link.connects,
        lastError: link.lastError,
        inflightBatches: link.inflightBatches,
      },
      buffer: {
        events: stats.events,
        bytes: stats.bytes,
        maxBytes: stats.maxBytes,
        usedRatio: stats.maxBytes > 0 ? round(stats.bytes / stats.maxBytes, 4) : 0,
        oldestAgeSeconds: ageOf(stats.oldestTimeMs),
        durability: this.#o.durability,
        overflow: stats.overflow,
        maxAgeSeconds: stats.maxAgeSeconds,
        lanes,
      },
      rates: {
        acceptedPerSecond: round(accepted, 1),
        forwardedPerSecond: round(forwarded, 1),
        drainPerSecond: round(drain, 1),
        drainEtaSeconds: drain > 0 ? Math.ceil(stats.events / drain) : null,
      },
      dropped,
      counters: {
        accepted: metrics.total(STATUS_COUNTERS.accepted),
        rejected: metrics.total(STATUS_COUNTERS.rejected),
        forwarded: metrics.total(STATUS_COUNTERS.forwarded),
        deadLetters: this.#o.deadLetters(),
        resendsDeduplicated: metrics.total(STATUS_COUNTERS.resendsDeduplicated),
      },
    };
    if (metrics.has(STATUS_COUNTERS.pendingCommands)) report.commands = { pending: metrics.total(STATUS_COUNTERS.pendingCommands) };
    return report;
  }

  /**
   * Adds what Prometheus cannot derive from the node's counters: per-lane depth, bytes and oldest age, the link
   * state (one series per state, 1 for the current one), and the windowed rates.
   */
  registerGauges(): void {
    const { metrics, buffer, uplink } = this.#o;
    const lane = (name: string) => buffer.stats().lanes.find((l) => l.lane === name);
    const age = (timeMs: number | null | undefined): number => (timeMs == null ? 0 : Math.max(0, this.#clock() - timeMs) / 1000);
    metrics.gauge('tributary_edge_info', 'Always 1; labels name the edge and its version.', () => 1, { edge_id: this.#o.edgeId, version: this.#version });
    metrics.gauge('tributary_edge_buffer_max_bytes', 'Most bytes of events the buffer holds (buffer.maxBytes).', () => buffer.stats().maxBytes);
    metrics.gauge('tributary_edge_buffer_oldest_age_seconds', 'Age of the oldest buffered event; 0 when the buffer is empty.', () => age(buffer.stats().oldestTimeMs));
    for (const { lane: name } of buffer.stats().lanes) {
      const labels = { lane: name };
      metrics.gauge('tributary_edge_lane_events', 'Events in a buffer lane awaiting the cloud.', () => lane(name)?.events ?? 0, labels);
      metrics.gauge('tributary_edge_lane_bytes', 'Bytes of events in a buffer lane.', () => lane(name)?.bytes ?? 0, labels);
      metrics.gauge('tributary_edge_lane_oldest_age_seconds', 'Age of the oldest event of a buffer lane; 0 when the lane is empty.', () => age(lane(name)?.oldestTimeMs), labels);
    }
    for (const state of LINK_STATES) {
      metrics.gauge('tributary_edge_link_state', 'State of the uplink to the cloud: 1 for the current state.', () => (uplink.linkInfo().state === state ? 1 : 0), { state });
    }
    metrics.gauge('tributary_edge_link_inflight_batches', 'Batches sent and awaiting the cloud\'s acknowledgement.', () => uplink.linkInfo().inflightBatches);
    metrics.gauge('tributary_edge_events_accepted_per_second', 'Events accepted per second, over the last 10 s.', () => this.#rates.rate('accepted'));
    metrics.gauge('tributary_edge_events_forwarded_per_second', 'Events acknowledged by the cloud per second, over the last 10 s.', () => this.#rates.rate('forwarded'));
    metrics.gauge('tributary_edge_buffer_drain_per_second', 'How fast the backlog shrinks (forwarded minus accepted, at least 0), per second.', () =>
      Math.max(0, this.#rates.rate('forwarded') - this.#rates.rate('accepted')),
    );
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
