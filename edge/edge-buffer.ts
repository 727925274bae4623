/**
 * The edge's store-and-forward buffer: every accepted device message, as an encoded CloudEvent, in an
 * append-only LevelDB log until the cloud has acknowledged it. A QoS 1 publish is acknowledged to its device
 * only from the append's callback, i.e. after the group commit that made it durable. The events of one commit
 * are stored together, as one segment (see segment-log.ts).
 */
import type { LogEntry } from '../shared/append-log.ts';
import type { LevelStore, WriteCallback } from '../shared/level-store.ts';
import { SegmentLog } from '../shared/segment-log.ts';

export const BUFFER_NAMESPACE = 0x10;

export interface BufferStats {
  /** Events waiting for the cloud's acknowledgement. */
  depth: number;
  bytes: number;
  /** Highest sequence number assigned. */
  lastSeq: number;
}

export class EdgeBuffer {
  readonly #log: SegmentLog;

  private constructor(log: SegmentLog) {
    this.#log = log;
  }

  static async open(store: LevelStore): Promise<EdgeBuffer> {
    return new EdgeBuffer(await SegmentLog.open(store, BUFFER_NAMESPACE));
  }

  /**
   * Buffers one encoded event; `done` runs when it is durable. Writes that must commit atomically with the event
   * are added right after this call, in the same synchronous run (see `ResendGuard.remember`).
   */
  append(event: Uint8Array, done: WriteCallback): number {
    return this.#log.append(event, done);
  }

  /** Durable events from `fromSeq` on, oldest first. */
  read(fromSeq: number, maxEvents: number, maxBytes: number): Promise<LogEntry[]> {
    return this.#log.read(fromSeq, maxEvents, maxBytes);
  }

  /** Removes events the cloud has acknowledged (read from this buffer, oldest first). */
  release(entries: readonly LogEntry[]): Promise<void> {
    return this.#log.release(entries);
  }

  /** Lowest sequence still buffered (the next one the uplink must send after a reconnect). */
  get firstSeq(): number {
    return this.#log.firstSeq;
  }

  get committedSeq(): number {
    return this.#log.committedSeq;
  }

  onCommit(listener: (committedSeq: number) => void): () => void {
    return this.#log.onCommit(listener);
  }

  stats(): BufferStats {
    return { depth: this.#log.count, bytes: this.#log.bytes, lastSeq: this.#log.lastSeq };
  }
}
