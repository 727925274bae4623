/**
 * An append-only log that stores its entries in segments: all entries appended while one group commit gathers
 * make one LevelDB record. Each entry still has its own sequence number (1, 2, 3, ...; never repeated, even after
 * the log is emptied and reopened), is read one by one, and is acknowledged to its writer when its commit is
 * durable; but a commit costs one put however many entries it holds. On the edge, a put per event was most of
 * the storage cost of ingest (LevelDB's per-operation work, not the bytes).
 *
 * A segment's key is the namespace byte, then its first and last sequence numbers and the time it was committed
 * (milliseconds since the epoch), each 8 bytes big-endian: LevelDB's byte order is sequence order, and the bounds
 * and the age are known without reading the value. Keys of 17 bytes (no time), written before the time was added,
 * are still read; their time is the time the log was opened. The value is a MessagePack array of bin values, the
 * entries in sequence order.
 *
 * Entries leave the log only from the front, so one mark ("released through") says what is gone: `release` (the
 * cloud acknowledged them; may end inside a segment) and the drops `dropOldest` and `dropBefore` (whole segments).
 * Counts and bytes removed are computed from the segments themselves, so they stay exact however the three
 * interleave.
 */
import type { LogEntry } from './append-log.ts';
import { keySeq, META_NAMESPACE, metaKey, seqKey } from './append-log.ts';
import { arrayHeaderLength, binHeaderLength, writeArrayHeader, writeBinHeader } from './codec.ts';
import { CommitListeners } from './commit-listeners.ts';
import { StorageError } from './errors.ts';
import type { LevelStore, WriteCallback } from './level-store.ts';

const TWO_32 = 0x1_0000_0000;
const SEGMENT_KEY_LENGTH = 25;
/** A key written before segments carried their time. */
const UNTIMED_KEY_LENGTH = 17;
/** Most entries, and about the most bytes, in one segment. */
export const SEGMENT_MAX_ENTRIES = 1024;
export const SEGMENT_MAX_BYTES = 1024 * 1024;

/** An entry with the commit time of its segment. */
export interface SegmentEntry extends LogEntry {
  timeMs: number;
}

/** What a release or drop removed: entries and their bytes. */
export interface Removed {
  events: number;
  bytes: number;
}

const NOTHING: Removed = Object.freeze({ events: 0, bytes: 0 });

export function segmentKey(namespace: number, first: number, last: number, timeMs: number): Uint8Array {
  const key = new Uint8Array(SEGMENT_KEY_LENGTH);
  key[0] = namespace;
  const view = new DataView(key.buffer);
  view.setUint32(1, Math.floor(first / TWO_32));
  view.setUint32(5, first >>> 0);
  view.setUint32(9, Math.floor(last / TWO_32));
  view.setUint32(13, last >>> 0);
  view.setUint32(17, Math.floor(timeMs / TWO_32));
  view.setUint32(21, timeMs >>> 0);
  return key;
}

/** First and last sequence number of a segment key (of either length). */
export function segmentBounds(key: Uint8Array): { first: number; last: number } {
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  return { first: view.getUint32(1) * TWO_32 + view.getUint32(5), last: view.getUint32(9) * TWO_32 + view.getUint32(13) };
}

/** The commit time of a segment key, undefined for a 17-byte key (written before keys carried it). */
export function segmentTime(key: Uint8Array): number | undefined {
  if (key.byteLength !== SEGMENT_KEY_LENGTH) return undefined;
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  return view.getUint32(17) * TWO_32 + view.getUint32(21);
}

/** A segment's value: a MessagePack array of bin values. */
export function encodeSegment(values: readonly Uint8Array[]): Uint8Array {
  let size = arrayHeaderLength(values.length);
  for (const v of values) size += binHeaderLength(v.length) + v.length;
  const out = new Uint8Array(size);
  let at = writeArrayHeader(out, 0, values.length);
  for (const v of values) {
    at = writeBinHeader(out, at, v.length);
    out.set(v, at);
    at += v.length;
  }
  return out;
}

/** The entries of a segment's value, as views of it. Throws when the value is not a segment. */
export function decodeSegment(value: Uint8Array): Uint8Array[] {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  let at = 0;
  const head = value[at++];
  let n: number;
  if ((head & 0xf0) === 0x90) n = head & 0x0f;
  else if (head === 0xdc) {
    n = view.getUint16(at);
    at += 2;
  } else if (head === 0xdd) {
    n = view.getUint32(at);
    at += 4;
  } else throw new RangeError(`a segment starts with a MessagePack array, not 0x${head?.toString(16)}`);
  const out: Uint8Array[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const type = value[at++];
    let length: number;
    if (type === 0xc4) length = value[at++];
    else if (type === 0xc5) {
      length = view.getUint16(at);
      at += 2;
    } else if (type === 0xc6) {
      length = view.getUint32(at);
      at += 4;
    } else throw new RangeError(`segment entry ${i} is not a MessagePack bin`);
    if (at + length > value.length) throw new RangeError(`segment entry ${i} runs past the end of the segment`);
    out[i] = value.subarray(at, at + length);
    at += length;
  }
  return out;
}

export interface SegmentLogOptions {
  /** Commit times of segments; injectable for tests. */
  clock?: () => number;
}

export class SegmentLog {
  readonly store: LevelStore;
  readonly namespace: number;
  readonly #clock: () => number;
  /** The time given to segments whose key carries none. */
  readonly #openTimeMs: number;
  #lastSeq: number;
  #committedSeq: number;
  #firstSeq: number;
  /** Every entry at or below this sequence has left the log (released or dropped). */
  #releasedThrough: number;
  #count: number;
  #bytes: number;
  /** Commit time of the oldest committed segment still in the log; null when there is none. */
  #oldestTimeMs: number | null;
  /** Successful commits so far (tells a removal whether a segment may have committed while it ran). */
  #commits = 0;
  /** Bytes of segment records deleted so far (for compaction). */
  #deletedBytes = 0;
  /** Entries appended since the current batch began, and the first one's sequence number. */
  #pending: Uint8Array[] = [];
  #pendingFirst = 0;
  #pendingBytes = 0;
  /** Every live segment starts at or after this sequence (keeps scans clear of deleted segments' tombstones). */
  #scanFrom: number;
  /** Releases and drops, one at a time, in the order they were asked for. */
  #removing: Promise<unknown> = Promise.resolve();
  readonly #listeners = new CommitListeners();

  private constructor(
    store: LevelStore,
    namespace: number,
    clock: () => number,
    openTimeMs: number,
    state: { first: number; last: number; released: number; count: number; bytes: number; scanFrom: number; oldestTimeMs: number | null },
  ) {
    this.store = store;
    this.namespace = namespace;
    this.#clock = clock;
    this.#openTimeMs = openTimeMs;
    this.#firstSeq = state.first;
    this.#lastSeq = state.last;
    this.#committedSeq = state.last;
    this.#releasedThrough = state.released;
    this.#count = state.count;
    this.#bytes = state.bytes;
    this.#scanFrom = state.scanFrom;
    this.#oldestTimeMs = state.oldestTimeMs;
    store.addSealHook((put) => this.#seal(put));
  }

  /** Opens the log stored under `namespace` (1-255), scanning it once to learn its bounds and size. */
  static async open(store: LevelStore, namespace: number, options: SegmentLogOptions = {}): Promise<SegmentLog> {
    if (namespace <= META_NAMESPACE || namespace > 0xff) throw new RangeError(`log namespace must be 1-255, got ${namespace}`);
    const clock = options.clock ?? Date.now;
    const openTimeMs = clock();
    const releasedMark = await store.db.get(metaKey(`log/${namespace}/released`));
    const released = releasedMark ? keySeq(releasedMark) : 0;
    const nextMark = await store.db.get(metaKey(`log/${namespace}/next`));
    let first = 0;
    let last = 0;
    let count = 0;
    let bytes = 0;
    let scanFrom = 0;
    let oldestTimeMs: number | null = null;
    for await (const [key, value] of store.db.iterator(namespaceRange(namespace))) {
      if (key.length !== SEGMENT_KEY_LENGTH && key.length !== UNTIMED_KEY_LENGTH) {
        throw new StorageError(`the log in namespace 0x${namespace.toString(16)} of ${store.path} has a key of ${key.length} bytes, not a segment key: it was written by another version of Tributary`);
      }
      const bounds = segmentBounds(key);
      if (count === 0 && scanFrom === 0) scanFrom = bounds.first;
      let seq = bounds.first;
      for (const entry of decodeSegment(value)) {
        if (seq > released) {
          if (count === 0) {
            first = seq;
            oldestTimeMs = segmentTime(key) ?? openTimeMs;
          }
          count++;
          bytes += entry.byteLength;
        }
        seq++;
      }
      last = bounds.last;
    }
    const lastSeq = Math.max(last, nextMark ? keySeq(nextMark) - 1 : 0, released);
    return new SegmentLog(store, namespace, clock, openTimeMs, {
      first: count ? first : lastSeq + 1,
      last: lastSeq,
      released,
      count,
      bytes,
      scanFrom: scanFrom || lastSeq + 1,
      oldestTimeMs,
    });
  }

  get lastSeq(): number {
    return this.#lastSeq;
  }
  get committedSeq(): number {
    return this.#committedSeq;
  }
  /** Lowest sequence that may still be in the log. */
  get firstSeq(): number {
    return this.#firstSeq;
  }
  /** Entries in the log (appended and not released or dropped), including ones still committing. */
  get count(): number {
    return this.#count;
  }
  /** Bytes of entries in the log, including ones still committing. */
  get bytes(): number {
    return this.#bytes;
  }
  /** Commit time of the oldest committed segment still in the log, null when none is. */
  get oldestTimeMs(): number | null {
    return this.#oldestTimeMs;
  }
  /** Bytes of segment records deleted since the log was opened (what a compaction can give back). */
  get deletedBytes(): number {
    return this.#deletedBytes;
  }

  /**
   * Appends one value; returns its sequence number at once and calls `done` when it is durable. Entries commit in
   * sequence order. `value` must not change afterwards (it is written when the batch is sealed).
   */
  append(value: Uint8Array, done: WriteCallback): number {
    const seq = ++this.#lastSeq;
    // Join first: joining may seal the current batch, and this entry belongs to the next one.
    if (!this.store.join(done)) return seq;
    if (this.#pending.length === 0) this.#pendingFirst = seq;
    this.#pending.push(value);
    this.#pendingBytes += value.byteLength;
    this.#count++;
    this.#bytes += value.byteLength;
    return seq;
  }

  /**
   * The seal hook: the pending entries become segments of the sealed batch, usually one. A segment is read whole,
   * so a large commit is cut into segments of at most `SEGMENT_MAX_ENTRIES` entries and about `SEGMENT_MAX_BYTES`.
   */
  #seal(put: (key: Uint8Array, value: Uint8Array) => void): WriteCallback | null {
    const values = this.#pending;
    if (values.length === 0) return null;
    const first = this.#pendingFirst;
    const last = first + values.length - 1;
    const size = this.#pendingBytes;
    const timeMs = this.#clock();
    this.#pending = [];
    this.#pendingBytes = 0;
    let start = 0;
    while (start < values.length) {
      let end = start;
      let bytes = 0;
      while (end < values.length && end - start < SEGMENT_MAX_ENTRIES && (end === start || bytes + values[end].byteLength <= SEGMENT_MAX_BYTES)) {
        bytes += values[end].byteLength;
        end++;
      }
      const chunk = start === 0 && end === values.length ? values : values.slice(start, end);
      put(segmentKey(this.namespace, first + start, first + end - 1, timeMs), encodeSegment(chunk));
      start = end;
    }
    return (err) => {
      if (err) {
        this.#count -= values.length;
        this.#bytes -= size;
        return;
      }
      this.#commits++;
      this.#oldestTimeMs ??= timeMs;
      this.#committed(last);
    };
  }

  #committed(seq: number): void {
    if (seq <= this.#committedSeq) return;
    this.#committedSeq = seq;
    this.#listeners.notify(seq);
  }

  /** Calls `listener` with the new committed sequence after each commit. Returns the unsubscribe function. */
  onCommit(listener: (committedSeq: number) => void): () => void {
    return this.#listeners.add(listener);
  }

  /** Committed entries from `fromSeq` on, at most `limit` of them and about `maxBytes` in all. */
  async read(fromSeq: number, limit: number, maxBytes = Infinity): Promise<SegmentEntry[]> {
    const to = this.#committedSeq;
    const from = Math.max(fromSeq, this.#firstSeq);
    if (from > to || limit <= 0) return [];
    const out: SegmentEntry[] = [];
    let bytes = 0;
    const ns = this.namespace;
    // The segment holding `from` is the last one that starts at or before it.
    const lowest = seqKey(ns, this.#scanFrom);
    const [holding] = await this.store.db.iterator({ gte: lowest, lt: seqKey(ns, from + 1), reverse: true, limit: 1 }).all();
    const it = this.store.db.iterator({ gte: holding ? holding[0] : seqKey(ns, from), lt: seqKey(ns, to + 1) });
    try {
      for (;;) {
        const page = await it.nextv(4);
        if (page.length === 0) break;
        for (const [key, value] of page) {
          let seq = segmentBounds(key).first;
          const timeMs = segmentTime(key) ?? this.#openTimeMs;
          for (const entry of decodeSegment(value)) {
            if (seq >= from && seq <= to) {
              // At least one entry, however large; then no more than maxBytes.
              if (out.length > 0 && bytes + entry.byteLength > maxBytes) return out;
              out.push({ seq, value: entry, timeMs });
              bytes += entry.byteLength;
              if (out.length >= limit) return out;
            }
            seq++;
          }
        }
      }
    } finally {
      await it.close();
    }
    return out;
  }

  /**
   * Removes every entry through `throughSeq` (e.g. a batch the cloud acknowledged): the segments this completes
   * are deleted, and the mark records how far a partly released one is released. Idempotent: a release at or
   * below what already left the log (released or dropped) does nothing. Resolves, once that is durable, with what
   * it removed. Releases and drops are applied in the order they are made.
   */
  release(throughSeq: number): Promise<Removed> {
    return this.#enqueue(() => this.#removeFront(Math.min(throughSeq, this.#committedSeq), false, NEVER));
  }

  /**
   * Drops the oldest committed segments, whole, until at least `bytes` bytes of entries are gone or no committed
   * segment is left (entries still committing are never dropped). Resolves with what it dropped.
   */
  dropOldest(bytes: number): Promise<Removed> {
    if (bytes <= 0) return Promise.resolve(NOTHING);
    return this.#enqueue(() => this.#removeFront(this.#committedSeq, true, (_, freed) => freed >= bytes));
  }

  /**
   * Drops the segments committed before `timeMs`, oldest first, whole; it stops at the first segment that is not
   * older (so a clock that stepped back keeps events rather than dropping newer ones). Resolves with what it
   * dropped.
   */
  dropBefore(timeMs: number): Promise<Removed> {
    if (this.#oldestTimeMs === null || this.#oldestTimeMs >= timeMs) return this.#enqueue(() => Promise.resolve(NOTHING));
    return this.#enqueue(() => this.#removeFront(this.#committedSeq, true, (segmentTimeMs) => segmentTimeMs >= timeMs));
  }

  /**
   * Compacts the namespace's key range (LevelDB `CompactRange`), so that the space of deleted segments goes back to
   * the file system: LevelDB drops a deleted record only when a compaction reaches it, and a drained buffer
   * receives no writes that would trigger one.
   */
  compact(): Promise<void> {
    const range = namespaceRange(this.namespace);
    return this.store.db.compactRange(range.gte, range.lt);
  }

  #enqueue(task: () => Promise<Removed>): Promise<Removed> {
    const next = this.#removing.then(task);
    this.#removing = next.catch(() => undefined);
    return next;
  }

  /**
   * Removes entries from the front through `through` at most: whole segments, and with `wholeOnly` false also the
   * front part of the segment that holds `through`. `stop` is asked before each segment is taken, with its time
   * and the bytes removed so far. Counts what it removes from the segments it reads: entries past the mark only.
   */
  async #removeFront(through: number, wholeOnly: boolean, stop: (segmentTimeMs: number, freedBytes: number) => boolean): Promise<Removed> {
    const mark = this.#releasedThrough;
    if (through <= mark) return NOTHING;
    const ns = this.namespace;
    const dels: Uint8Array[] = [];
    let events = 0;
    let bytes = 0;
    let deletedBytes = 0;
    let newMark = mark;
    /** The oldest segment that stays, as far as this scan saw. */
    let kept: { first: number; timeMs: number } | null = null;
    const commits = this.#commits;
    const it = this.store.db.iterator({ gte: seqKey(ns, this.#scanFrom), lt: namespaceRange(ns).lt });
    try {
      for (;;) {
        const item = await it.next();
        if (item === undefined) break;
        const [key, value] = item;
        const { first, last } = segmentBounds(key);
        const timeMs = segmentTime(key) ?? this.#openTimeMs;
        if (first > through || (wholeOnly && last > through) || stop(timeMs, bytes)) {
          kept = { first, timeMs };
          break;
        }
        const upTo = Math.min(last, through);
        let seq = first;
        for (const entry of decodeSegment(value)) {
          if (seq > upTo) break;
          if (seq > mark) {
            events++;
            bytes += entry.byteLength;
          }
          seq++;
        }
        newMark = upTo;
        if (last > through) {
          kept = { first, timeMs };
          break;
        }
        dels.push(key);
        deletedBytes += value.byteLength;
      }
    } finally {
      await it.close();
    }
    if (newMark === mark) return NOTHING;
    await this.store.writeAsync(
      [
        // Keep the next sequence in case this empties the log, and how far the log is released.
        [metaKey(`log/${ns}/next`), seqKey(0, this.#lastSeq + 1)],
        [metaKey(`log/${ns}/released`), seqKey(0, newMark)],
      ],
      dels,
    );
    this.#releasedThrough = newMark;
    this.#scanFrom = kept ? kept.first : newMark + 1;
    this.#firstSeq = Math.max(this.#firstSeq, newMark + 1);
    this.#count -= events;
    this.#bytes -= bytes;
    this.#deletedBytes += deletedBytes;
    if (kept) this.#oldestTimeMs = kept.timeMs;
    else await this.#findOldest(commits);
    return { events, bytes };
  }

  /**
   * After a removal that saw no segment left: the oldest segment's time, looked up again if a commit may have
   * added one the removal's scan did not see. (A commit that lands later sets it itself.)
   */
  async #findOldest(commits: number): Promise<void> {
    const ns = this.namespace;
    while (commits !== this.#commits) {
      commits = this.#commits;
      const [key] = await this.store.db.keys({ gte: seqKey(ns, this.#scanFrom), lt: namespaceRange(ns).lt, limit: 1 }).all();
      if (key) {
        this.#oldestTimeMs = segmentTime(key) ?? this.#openTimeMs;
        return;
      }
    }
    this.#oldestTimeMs = null;
  }
}

const NEVER = (): boolean => false;

/** The key range holding every segment of `namespace`. */
function namespaceRange(namespace: number): { gte: Uint8Array; lt: Uint8Array } {
  return { gte: seqKey(namespace, 0), lt: namespace < 0xff ? Uint8Array.of(namespace + 1) : new Uint8Array(SEGMENT_KEY_LENGTH + 1).fill(0xff) };
}
