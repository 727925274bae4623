/**
 * The embedded cloud log: an `AppendLog` in LevelDB. The high-water mark of each (edge, lane) is a meta key
 * written in the same LevelDB batch as the events it covers, so a crash leaves either both or neither: a re-sent
 * batch is recognised after any crash, and every event lands exactly once.
 */
import { AppendLog, keySeq, metaKey, seqKey } from '../shared/append-log.ts';
import type { CloudEvent } from '../shared/cloud-event.ts';
import { decode, encode } from '../shared/codec.ts';
import type { Durability } from '../shared/level-store.ts';
import { LevelStore } from '../shared/level-store.ts';
import type { WireLane } from '../shared/uplink-wire.ts';
import { DEFAULT_WIRE_LANE } from '../shared/uplink-wire.ts';
import type { CloudLog, CloudLogStats, CommitResult, LoggedEvent } from './cloud-log.ts';

const EVENTS_NAMESPACE = 0x40;

export interface LevelCloudLogOptions {
  path: string;
  durability?: Durability;
}

export class LevelCloudLog implements CloudLog {
  readonly #store: LevelStore;
  readonly #log: AppendLog;
  /** High-water marks per (edge, lane), mirrored in memory; each one's batches are committed one at a time. */
  readonly #marks = new Map<string, number>();
  readonly #queues = new Map<string, Promise<unknown>>();

  private constructor(store: LevelStore, log: AppendLog) {
    this.#store = store;
    this.#log = log;
  }

  static async open(options: LevelCloudLogOptions): Promise<LevelCloudLog> {
    const store = await LevelStore.open(options.path, { durability: options.durability });
    const log = await AppendLog.open(store, EVENTS_NAMESPACE);
    return new LevelCloudLog(store, log);
  }

  /** The LevelDB store under the log, for components that keep their own records beside it (commands: 0x5x). */
  get store(): LevelStore {
    return this.#store;
  }

  get lastOffset(): number {
    return this.#log.committedSeq;
  }

  commitBatch(edgeId: string, lane: WireLane, seqs: readonly number[], events: readonly Uint8Array[]): Promise<CommitResult> {
    // Batches of one (edge, lane) are serialised so the mark check and the write cannot interleave; lanes of
    // one edge are independent (their sequence numbers are), so one lane's commit never waits for another's.
    const id = markId(edgeId, lane);
    const previous = this.#queues.get(id) ?? Promise.resolve();
    const next = previous.then(() => this.#commit(edgeId, lane, seqs, events));
    const settled = next.catch(() => undefined);
    this.#queues.set(id, settled);
    void settled.then(() => {
      if (this.#queues.get(id) === settled) this.#queues.delete(id);
    });
    return next;
  }

  async #commit(edgeId: string, lane: WireLane, seqs: readonly number[], events: readonly Uint8Array[]): Promise<CommitResult> {
    const mark = await this.highWaterMark(edgeId, lane);
    let start = 0;
    while (start < seqs.length && seqs[start] <= mark) start++;
    if (start === seqs.length) return { appended: 0, duplicates: seqs.length };
    const fresh = start === 0 ? events : events.slice(start);
    const newMark = seqs[seqs.length - 1];
    await this.#log.appendMany(fresh, [[markKey(edgeId, lane), seqKey(0, newMark)]]);
    this.#marks.set(markId(edgeId, lane), newMark);
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

  async highWaterMark(edgeId: string, lane: WireLane): Promise<number> {
    const id = markId(edgeId, lane);
    const cached = this.#marks.get(id);
    if (cached !== undefined) return cached;
    const value = await this.#store.db.get(markKey(edgeId, lane));
    const mark = value ? keySeq(value) : 0;
    this.#marks.set(id, mark);
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

/**
 * The name of an (edge, lane) mark. The normal lane keeps the name every edge had before lanes
 * (`hwm/{edgeId}`), so a cloud log written then keeps its marks; the other lanes add theirs. An edge id never
 * holds a "/" (the uplink topic refuses one), so `hwm/{edgeId}/{lane}` cannot be another edge's mark.
 */
function markId(edgeId: string, lane: WireLane): string {
  return lane === DEFAULT_WIRE_LANE ? `hwm/${edgeId}` : `hwm/${edgeId}/${lane}`;
}

function markKey(edgeId: string, lane: WireLane): Uint8Array {
  return metaKey(markId(edgeId, lane));
}

function cursorKey(name: string): Uint8Array {
  return metaKey(`cursor/${name}`);
}
