/**
 * The embedded cloud log: an `AppendLog` in LevelDB. Each edge's high-water mark is a meta key written in the
 * same LevelDB batch as the events it covers, so a crash leaves either both or neither: a re-sent batch is
 * recognised after any crash, and every event lands exactly once.
 */
import { AppendLog, keySeq, metaKey, seqKey } from '../shared/append-log.ts';
import type { CloudEvent } from '../shared/cloud-event.ts';
import { decode, encode } from '../shared/codec.ts';
import type { Durability } from '../shared/level-store.ts';
import { LevelStore } from '../shared/level-store.ts';
import type { CloudLog, CloudLogStats, CommitResult, LoggedEvent } from './cloud-log.ts';

const EVENTS_NAMESPACE = 0x40;

export interface LevelCloudLogOptions {
  path: string;
  durability?: Durability;
}

export class LevelCloudLog implements CloudLog {
  readonly #store: LevelStore;
  readonly #log: AppendLog;
  /** Per-edge high-water marks, mirrored in memory; each edge's batches are committed one at a time. */
  readonly #marks = new Map<string, number>();
  readonly #edgeQueues = new Map<string, Promise<unknown>>();

  private constructor(store: LevelStore, log: AppendLog) {
    this.#store = store;
    this.#log = log;
  }

  static async open(options: LevelCloudLogOptions): Promise<LevelCloudLog> {
    const store = await LevelStore.open(options.path, { durability: options.durability });
    const log = await AppendLog.open(store, EVENTS_NAMESPACE);
    return new LevelCloudLog(store, log);
  }

  get lastOffset(): number {
    return this.#log.committedSeq;
  }

  commitBatch(edgeId: string, seqs: readonly number[], events: readonly Uint8Array[]): Promise<CommitResult> {
    // Batches of one edge are serialised so the mark check and the write cannot interleave.
    const previous = this.#edgeQueues.get(edgeId) ?? Promise.resolve();
    const next = previous.then(() => this.#commit(edgeId, seqs, events));
    const settled = next.catch(() => undefined);
    this.#edgeQueues.set(edgeId, settled);
    void settled.then(() => {
      if (this.#edgeQueues.get(edgeId) === settled) this.#edgeQueues.delete(edgeId);
    });
    return next;
  }

  async #commit(edgeId: string, seqs: readonly number[], events: readonly Uint8Array[]): Promise<CommitResult> {
    const mark = await this.highWaterMark(edgeId);
    let start = 0;
    while (start < seqs.length && seqs[start] <= mark) start++;
    if (start === seqs.length) return { appended: 0, duplicates: seqs.length };
    const fresh = start === 0 ? events : events.slice(start);
    const newMark = seqs[seqs.length - 1];
    await this.#log.appendMany(fresh, [[markKey(edgeId), seqKey(0, newMark)]]);
    this.#marks.set(edgeId, newMark);
    return { appended: fresh.length, duplicates: start };
  }

  async append(events: readonly CloudEvent[]): Promise<{ first: number; last: number }> {
    return this.#log.appendMany(events.map((e) => encode(e)));
  }

  async read(fromOffset: number, limit: number): Promise<LoggedEvent[]> {
    const entries = await this.#log.read(Math.max(1, fromOffset), limit);
    return entries.map((e) => ({ offset: e.seq, event: decode<CloudEvent>(e.value) }));
  }

  onAppend(listener: (lastOffset: number) => void): () => void {
    return this.#log.onCommit(listener);
  }

  async highWaterMark(edgeId: string): Promise<number> {
    const cached = this.#marks.get(edgeId);
    if (cached !== undefined) return cached;
    const value = await this.#store.db.get(markKey(edgeId));
    const mark = value ? keySeq(value) : 0;
    this.#marks.set(edgeId, mark);
    return mark;
  }

  async getCursor(name: string): Promise<number | undefined> {
    const value = await this.#store.db.get(cursorKey(name));
    return value ? keySeq(value) : undefined;
  }

  setCursor(name: string, offset: number): Promise<void> {
    return this.#store.writeAsync([[cursorKey(name), seqKey(0, offset)]]);
  }

  stats(): CloudLogStats {
    return { events: this.#log.count, bytes: this.#log.bytes, lastOffset: this.lastOffset };
  }

  async close(): Promise<void> {
    await this.#store.close();
  }
}

function markKey(edgeId: string): Uint8Array {
  return metaKey(`hwm/${edgeId}`);
}

function cursorKey(name: string): Uint8Array {
  return metaKey(`cursor/${name}`);
}
