/**
 * The cloud log: an append-only, offset-addressed log of CloudEvents. One small interface, two
 * implementations: embedded LevelDB (the default) and NATS JetStream (several cloud nodes sharing one stream).
 * Every implementation passes the contract suite in `test/cloud/cloud-log.contract.ts`.
 */
import type { CloudEvent } from '../shared/cloud-event.ts';
import type { WireLane } from '../shared/uplink-wire.ts';

/** An event with its position in the log. Offsets start at 1 and increase by one per event. */
export interface LoggedEvent {
  offset: number;
  event: CloudEvent;
}

export interface CommitResult {
  /** Events newly written to the log. */
  appended: number;
  /** Events of the batch that the log already held (a re-sent batch), dropped. */
  duplicates: number;
}

export interface CloudLog {
  /**
   * Commits a batch from one lane of an edge's buffer exactly once: events whose sequence number is at or below
   * the (edge, lane) high-water mark are dropped as duplicates, the rest are appended, and the new mark is
   * stored atomically with them. Each lane numbers its events on its own, so each has its own mark; batches of
   * one (edge, lane) are committed one at a time, in the order the calls were made. Resolves only when the
   * batch is durable.
   */
  commitBatch(edgeId: string, lane: WireLane, seqs: readonly number[], events: readonly Uint8Array[]): Promise<CommitResult>;

  /** Appends events made in the cloud itself (API, alerts, functions). Resolves with their offsets. */
  append(events: readonly CloudEvent[]): Promise<{ first: number; last: number }>;

  /** Events from `fromOffset` on (inclusive), at most `limit`. */
  read(fromOffset: number, limit: number): Promise<LoggedEvent[]>;

  /** Offset of the newest committed event, 0 when the log is empty. */
  readonly lastOffset: number;

  /** Calls `listener` with the new last offset whenever events are committed. Returns the unsubscribe. */
  onAppend(listener: (lastOffset: number) => void): () => void;

  /** The highest sequence number committed from `lane` of `edgeId` (0 when none). */
  highWaterMark(edgeId: string, lane: WireLane): Promise<number>;

  /** A named durable cursor (a subscription's position): the last offset it has processed. */
  getCursor(name: string): Promise<number | undefined>;
  setCursor(name: string, offset: number): Promise<void>;

  stats(): CloudLogStats;

  close(): Promise<void>;
}

export interface CloudLogStats {
  events: number;
  bytes: number;
  lastOffset: number;
}
