/**
 * The edge's store-and-forward buffer: every accepted device message, as an encoded CloudEvent, in an
 * append-only LevelDB log until the cloud has acknowledged it. A QoS 1 publish is acknowledged to its device
 * only from the append's callback, i.e. after the group commit that made it durable. The events of one commit
 * are stored together, as one segment (see segment-log.ts).
 *
 * The buffer has three priority lanes (lanes.ts), each its own log with its own sequence numbers in its own key
 * namespace; all three join the same group commits. It is bounded (see docs/decisions/0004):
 * - by bytes (`maxBytes`, the events' encoded size): when full, `backpressure` holds QoS 1 acknowledgements
 *   until there is room (nothing acknowledged is ever dropped), `drop-oldest` drops the oldest committed events
 *   of the lowest non-empty lane;
 * - by age (`maxAgeSeconds`): events older than that are dropped and never forwarded.
 * Every drop is counted in `tributary_edge_events_dropped_total{reason, lane}` and logged (rate-limited).
 * After deletions the drained key range is compacted, so the disk space comes back.
 */
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import type { LevelStore, WriteCallback } from '../shared/level-store.ts';
import type { Removed } from '../shared/segment-log.ts';
import { SegmentLog } from '../shared/segment-log.ts';
import type { Lane, LaneName } from './lanes.ts';
import { HIGH, LANE_COUNT, LANE_NAMES, LOW, NORMAL } from './lanes.ts';

/**
 * Key namespace of each lane, by lane index (high, normal, low). `normal` keeps the namespace of the buffer
 * before lanes existed, so an existing buffer is read as the normal lane.
 */
export const LANE_NAMESPACES: readonly number[] = [0x11, 0x10, 0x12];

/** One buffered event, with the commit time of its segment (ms since the epoch). */
export interface BufferEntry {
  seq: number;
  value: Uint8Array;
  timeMs: number;
}

export interface LaneStats {
  lane: LaneName;
  events: number;
  bytes: number;
  /** Commit time of the lane's oldest event (ms since the epoch); null when the lane is empty. */
  oldestTimeMs: number | null;
}

export interface BufferStats {
  /** Events waiting for the cloud's acknowledgement, in all lanes (including ones still committing). */
  events: number;
  bytes: number;
  maxBytes: number;
  oldestTimeMs: number | null;
  /** By lane index: high, normal, low. */
  lanes: LaneStats[];
  overflow: OverflowPolicy;
  maxAgeSeconds: number;
}

export type OverflowPolicy = 'backpressure' | 'drop-oldest';

/**
 * Why events left the buffer without reaching the cloud: `overflow` (drop-oldest made room), `expired` (older
 * than maxAgeSeconds, or past their own `expirytime`), `full-qos0` (a QoS 0 message that arrived while the buffer
 * was full; it never entered the buffer).
 */
export type DropReason = 'overflow' | 'expired' | 'full-qos0';
const DROP_REASONS: readonly DropReason[] = ['overflow', 'expired', 'full-qos0'];

export interface EdgeBufferOptions {
  maxBytes: number;
  /** 0: events never expire. */
  maxAgeSeconds: number;
  overflow: OverflowPolicy;
  metrics: Metrics;
  logger: Logger;
  clock?: () => number;
}

const LANES: readonly Lane[] = [HIGH, NORMAL, LOW];
/** Lowest lane first: the order in which drop-oldest takes events. */
const DROP_ORDER: readonly Lane[] = [LOW, NORMAL, HIGH];
/** Compact a lane's range after this many bytes of its records were deleted... */
const COMPACT_AFTER_BYTES = 64 * 1024 * 1024;
/** ...or when it is empty after at least this many (a smaller drained range costs little disk). */
const COMPACT_DRAINED_BYTES = 4 * 1024 * 1024;
/** At most one drop warning per this interval; drops in between are summed into the next one. */
const DROP_LOG_INTERVAL_MS = 10_000;

export class EdgeBuffer {
  readonly #lanes: readonly SegmentLog[];
  readonly #maxBytes: number;
  /**
   * The most bytes appends may take the buffer to before `hasRoom` says no. Under drop-oldest, drops follow
   * commits (only committed events can be dropped), so the buffer runs over maxBytes by what is still committing
   * and what arrives while a drop is on its way to disk; past this, ingest holds publishes like backpressure does,
   * which bounds the overshoot.
   */
  readonly #limit: number;
  readonly #maxAgeMs: number;
  readonly #overflow: OverflowPolicy;
  readonly #logger: Logger;
  readonly #clock: () => number;
  /** Dropped-event counters by reason index, then lane. */
  readonly #dropCounters: Counter[][];
  readonly #roomListeners = new Set<() => void>();
  readonly #commitListeners = new Set<() => void>();
  readonly #unsubscribe: (() => void)[] = [];
  #shedding = false;
  #shedAgain = false;
  #closed = false;
  #expireTimer: ReturnType<typeof setInterval> | null = null;
  /** Lanes waiting for a compaction, the one running, and each lane's deleted bytes at its last compaction. */
  readonly #compactQueue = new Set<Lane>();
  #compactRunning = false;
  #compacting: Promise<void> = Promise.resolve();
  readonly #compactedAt: number[];
  /** Drop warnings: when the last was logged, and the drops since, by reason and lane. */
  #dropLoggedAt = -Infinity;
  #dropsSince: number[][] | null = null;
  #dropTimer: ReturnType<typeof setTimeout> | null = null;

  private constructor(lanes: SegmentLog[], options: EdgeBufferOptions, clock: () => number) {
    this.#lanes = lanes;
    this.#maxBytes = options.maxBytes;
    this.#overflow = options.overflow;
    this.#limit = options.overflow === 'drop-oldest' ? options.maxBytes + Math.max(256 * 1024, Math.floor(options.maxBytes / 8)) : options.maxBytes;
    this.#maxAgeMs = options.maxAgeSeconds * 1000;
    this.#logger = options.logger;
    this.#clock = clock;
    this.#compactedAt = lanes.map(() => 0);
    this.#dropCounters = DROP_REASONS.map((reason) =>
      LANE_NAMES.map((lane) =>
        options.metrics.counter('tributary_edge_events_dropped_total', 'Events dropped by the buffer without reaching the cloud, by reason (overflow, expired, full-qos0) and lane.', { reason, lane }),
      ),
    );
    for (const log of lanes) this.#unsubscribe.push(log.onCommit(() => this.#laneCommitted()));
  }

  static async open(store: LevelStore, options: EdgeBufferOptions): Promise<EdgeBuffer> {
    const clock = options.clock ?? Date.now;
    const lanes: SegmentLog[] = [];
    for (let lane = 0; lane < LANE_COUNT; lane++) lanes.push(await SegmentLog.open(store, LANE_NAMESPACES[lane], { clock }));
    const buffer = new EdgeBuffer(lanes, options, clock);
    if (buffer.#maxAgeMs > 0) {
      await buffer.expire();
      // Reads expire what is due before they return (see `read`), so this only keeps the counts and the disk
      // current while the link is down.
      const every = Math.min(60_000, Math.max(1000, buffer.#maxAgeMs / 10));
      buffer.#expireTimer = setInterval(() => void buffer.expire().catch((err: unknown) => buffer.#removalFailed('expire', err)), every);
      buffer.#expireTimer.unref?.();
    }
    return buffer;
  }

  /**
   * Buffers one encoded event in `lane`; returns its sequence number (of that lane) and calls `done` when it is
   * durable. Writes that must commit atomically with the event are added right after this call, in the same
   * synchronous run (see `ResendGuard.remember`).
   */
  append(lane: Lane, event: Uint8Array, done: WriteCallback): number {
    return this.#lanes[lane].append(event, done);
  }

  /**
   * Backpressure: true when `bytes` more fit under maxBytes (counting appends not yet committed). An empty buffer
   * always has room, so that an event larger than maxBytes does not wait forever. Under drop-oldest the limit is
   * maxBytes plus the bounded overshoot (room is made by dropping, see `#limit`).
   */
  hasRoom(bytes: number): boolean {
    const used = this.#usedBytes();
    return used === 0 || used + bytes <= this.#limit;
  }

  /** Calls listener whenever space is freed (release, drop, expiry). Returns unsubscribe. */
  onRoom(listener: () => void): () => void {
    this.#roomListeners.add(listener);
    return () => this.#roomListeners.delete(listener);
  }

  /**
   * Durable events of `lane` from `fromSeq` on, oldest first, each with the commit time of its segment. Events
   * older than maxAgeSeconds are dropped first, so they are never returned.
   */
  async read(lane: Lane, fromSeq: number, maxEvents: number, maxBytes: number): Promise<BufferEntry[]> {
    const log = this.#lanes[lane];
    const oldest = log.oldestTimeMs;
    if (this.#maxAgeMs > 0 && oldest !== null) {
      const before = this.#clock() - this.#maxAgeMs;
      if (oldest < before) await this.#expireLane(lane, before);
    }
    return log.read(fromSeq, maxEvents, maxBytes);
  }

  /** The cloud acknowledged everything of `lane` through `throughSeq`. Idempotent. */
  async release(lane: Lane, throughSeq: number): Promise<void> {
    const removed = await this.#lanes[lane].release(throughSeq);
    this.#removed(lane, removed);
  }

  /** Counts events the uplink skipped (e.g. past their `expirytime`); they are released with the batch around them. */
  countDropped(reason: DropReason, lane: Lane, n: number): void {
    if (n <= 0) return;
    this.#dropCounters[DROP_REASONS.indexOf(reason)][lane].inc(n);
    this.#logDrop(reason, lane, n);
  }

  /** Lowest sequence of `lane` still buffered (the next one the uplink must send after a reconnect). */
  firstSeq(lane: Lane): number {
    return this.#lanes[lane].firstSeq;
  }

  committedSeq(lane: Lane): number {
    return this.#lanes[lane].committedSeq;
  }

  /** Any lane committed; listener gets no arguments. Returns unsubscribe. */
  onCommit(listener: () => void): () => void {
    this.#commitListeners.add(listener);
    return () => this.#commitListeners.delete(listener);
  }

  /** Drops segments older than maxAgeSeconds; also run by a timer started in open() and stopped in close(). */
  async expire(): Promise<number> {
    if (this.#maxAgeMs <= 0) return 0;
    const before = this.#clock() - this.#maxAgeMs;
    let events = 0;
    for (const lane of LANES) events += await this.#expireLane(lane, before);
    return events;
  }

  stats(): BufferStats {
    let events = 0;
    let bytes = 0;
    let oldestTimeMs: number | null = null;
    const lanes = this.#lanes.map((log, i): LaneStats => {
      events += log.count;
      bytes += log.bytes;
      const oldest = log.oldestTimeMs;
      if (oldest !== null && (oldestTimeMs === null || oldest < oldestTimeMs)) oldestTimeMs = oldest;
      return { lane: LANE_NAMES[i], events: log.count, bytes: log.bytes, oldestTimeMs: oldest };
    });
    return { events, bytes, maxBytes: this.#maxBytes, oldestTimeMs, lanes, overflow: this.#overflow, maxAgeSeconds: this.#maxAgeMs / 1000 };
  }

  /** Stops timers (and logs the drops not yet reported); the LevelStore is closed by the node. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#expireTimer) clearInterval(this.#expireTimer);
    this.#expireTimer = null;
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    this.#roomListeners.clear();
    this.#commitListeners.clear();
    this.#compactQueue.clear();
    this.#logDropSummary();
  }

  /** Resolves when the compactions asked for so far have run (for tests and an orderly stop). */
  async compacted(): Promise<void> {
    while (this.#compactRunning) await this.#compacting;
  }

  async #expireLane(lane: Lane, before: number): Promise<number> {
    const removed = await this.#lanes[lane].dropBefore(before);
    if (removed.events > 0) this.countDropped('expired', lane, removed.events);
    this.#removed(lane, removed);
    return removed.events;
  }

  #laneCommitted(): void {
    if (this.#overflow === 'drop-oldest' && this.#usedBytes() > this.#maxBytes) {
      // A commit while a shed runs may bring what it found nothing of: it goes round once more.
      if (this.#shedding) this.#shedAgain = true;
      else void this.#shed();
    }
    this.#notify(this.#commitListeners, 'commit');
  }

  /**
   * Drop-oldest: drops committed segments, oldest first, of the lowest non-empty lane first, until the buffer is
   * within maxBytes again. A lane is only touched once every lower lane is empty. Events still committing are
   * never dropped (their devices are about to get their PUBACK): when the lowest non-empty lane has nothing
   * committed left, the buffer stays over maxBytes until its next commit (which sheds again), by at most the
   * bounded overshoot (`#limit`), past which ingest holds new publishes.
   */
  async #shed(): Promise<void> {
    this.#shedding = true;
    try {
      for (;;) {
        this.#shedAgain = false;
        let freed = 0;
        for (const lane of DROP_ORDER) {
          const log = this.#lanes[lane];
          const excess = this.#usedBytes() - this.#maxBytes;
          if (excess <= 0 || this.#closed) return;
          if (log.count === 0) continue;
          const removed = await log.dropOldest(excess);
          if (removed.events > 0) this.countDropped('overflow', lane, removed.events);
          this.#removed(lane, removed);
          freed += removed.bytes;
          // Events of this lane are still committing: the higher lanes wait for them to be dropped first.
          if (log.count > 0) break;
        }
        if (freed === 0 && !this.#shedAgain) return;
      }
    } catch (err) {
      this.#removalFailed('drop', err);
    } finally {
      this.#shedding = false;
    }
  }

  #usedBytes(): number {
    return this.#lanes[0].bytes + this.#lanes[1].bytes + this.#lanes[2].bytes;
  }

  /** After a release or a drop: wakes whoever waits for room, and compacts the lane when enough was deleted. */
  #removed(lane: Lane, removed: Removed): void {
    if (removed.events === 0 || this.#closed) return;
    const log = this.#lanes[lane];
    const deleted = log.deletedBytes - this.#compactedAt[lane];
    if (deleted >= COMPACT_AFTER_BYTES || (deleted >= COMPACT_DRAINED_BYTES && log.count === 0)) this.#compactSoon(lane);
    this.#notify(this.#roomListeners, 'room');
  }

  /** A listener that throws is logged and does not stop the others (nor the commit's acknowledgements). */
  #notify(listeners: Set<() => void>, what: 'commit' | 'room'): void {
    for (const listener of listeners) {
      try {
        listener();
      } catch (err) {
        this.#logger.error(`a buffer ${what} listener threw`, { err });
      }
    }
  }

  /** Compactions run in the background, one at a time: each rewrites LevelDB files and would compete for the disk. */
  #compactSoon(lane: Lane): void {
    this.#compactQueue.add(lane);
    if (this.#compactRunning) return;
    this.#compactRunning = true;
    this.#compacting = this.#runCompactions();
  }

  async #runCompactions(): Promise<void> {
    try {
      // A lane queued while one is compacting is visited by this same loop.
      for (const lane of this.#compactQueue) {
        this.#compactQueue.delete(lane);
        const log = this.#lanes[lane];
        this.#compactedAt[lane] = log.deletedBytes;
        try {
          await log.compact();
          this.#logger.debug('buffer lane compacted', { lane: LANE_NAMES[lane] });
        } catch (err) {
          if (!this.#closed) this.#logger.warn('buffer compaction failed; its disk space is reclaimed later', { lane: LANE_NAMES[lane], err });
        }
      }
    } finally {
      this.#compactRunning = false;
    }
  }

  #removalFailed(what: 'drop' | 'expire', err: unknown): void {
    if (this.#closed) return;
    this.#logger.error(what === 'drop' ? 'could not drop events from the full buffer' : 'could not drop expired events from the buffer', { err });
  }

  /** The first drop is logged at once; later ones are summed and logged at most every DROP_LOG_INTERVAL_MS. */
  #logDrop(reason: DropReason, lane: Lane, n: number): void {
    const now = this.#clock();
    if (this.#dropsSince === null && now - this.#dropLoggedAt >= DROP_LOG_INTERVAL_MS) {
      this.#dropLoggedAt = now;
      this.#logger.warn('buffer dropped events', { reason, lane: LANE_NAMES[lane], events: n, ...this.#policy() });
      return;
    }
    const since = (this.#dropsSince ??= DROP_REASONS.map(() => LANE_NAMES.map(() => 0)));
    since[DROP_REASONS.indexOf(reason)][lane] += n;
    if (this.#dropTimer === null && !this.#closed) {
      this.#dropTimer = setTimeout(() => this.#logDropSummary(), Math.max(0, this.#dropLoggedAt + DROP_LOG_INTERVAL_MS - now));
      this.#dropTimer.unref?.();
    }
  }

  #logDropSummary(): void {
    if (this.#dropTimer) clearTimeout(this.#dropTimer);
    this.#dropTimer = null;
    const since = this.#dropsSince;
    if (since === null) return;
    this.#dropsSince = null;
    const dropped: Record<string, Record<string, number>> = {};
    let events = 0;
    since.forEach((byLane, r) =>
      byLane.forEach((n, lane) => {
        if (n === 0) return;
        (dropped[DROP_REASONS[r]] ??= {})[LANE_NAMES[lane]] = n;
        events += n;
      }),
    );
    this.#logger.warn('buffer dropped events', { events, dropped, sinceMs: this.#clock() - this.#dropLoggedAt, ...this.#policy() });
    this.#dropLoggedAt = this.#clock();
  }

  #policy(): { overflow: OverflowPolicy; maxBytes: number; maxAgeSeconds: number } {
    return { overflow: this.#overflow, maxBytes: this.#maxBytes, maxAgeSeconds: this.#maxAgeMs / 1000 };
  }
}
