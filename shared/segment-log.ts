/**
 * An append-only log that stores its entries in segments: all entries appended while one group commit gathers
 * make one LevelDB record. Each entry still has its own sequence number (1, 2, 3, ...; never repeated, even after
 * the log is emptied and reopened), is read one by one, and is acknowledged to its writer when its commit is
 * durable; but a commit costs one put however many entries it holds. On the edge, a put per event was most of
 * the storage cost of ingest (LevelDB's per-operation work, not the bytes).
 *
 * A segment's key is the namespace byte, then its first and last sequence numbers, each 8 bytes big-endian, so
 * LevelDB's byte order is sequence order and the bounds are known without reading the value. The value is a
 * MessagePack array of bin values, the entries in sequence order.
 */
import type { LogEntry } from './append-log.ts';
import { keySeq, META_NAMESPACE, metaKey, seqKey } from './append-log.ts';
import { binHeaderLength, writeBinHeader } from './codec.ts';
import { CommitListeners } from './commit-listeners.ts';
import { StorageError } from './errors.ts';
import type { LevelStore, WriteCallback } from './level-store.ts';

const TWO_32 = 0x1_0000_0000;
const SEGMENT_KEY_LENGTH = 17;
/** Most entries, and about the most bytes, in one segment. */
export const SEGMENT_MAX_ENTRIES = 1024;
export const SEGMENT_MAX_BYTES = 1024 * 1024;

export function segmentKey(namespace: number, first: number, last: number): Uint8Array {
  const key = new Uint8Array(SEGMENT_KEY_LENGTH);
  key[0] = namespace;
  const view = new DataView(key.buffer);
  view.setUint32(1, Math.floor(first / TWO_32));
  view.setUint32(5, first >>> 0);
  view.setUint32(9, Math.floor(last / TWO_32));
  view.setUint32(13, last >>> 0);
  return key;
}

/** First and last sequence number of a segment key. */
export function segmentBounds(key: Uint8Array): { first: number; last: number } {
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  return { first: view.getUint32(1) * TWO_32 + view.getUint32(5), last: view.getUint32(9) * TWO_32 + view.getUint32(13) };
}

/** A segment's value: a MessagePack array of bin values. */
export function encodeSegment(values: readonly Uint8Array[]): Uint8Array {
  let size = values.length < 0x10 ? 1 : values.length < 0x10000 ? 3 : 5;
  for (const v of values) size += binHeaderLength(v.length) + v.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  const n = values.length;
  if (n < 0x10) out[at++] = 0x90 | n;
  else if (n < 0x10000) {
    out[at++] = 0xdc;
    view.setUint16(at, n);
    at += 2;
  } else {
    out[at++] = 0xdd;
    view.setUint32(at, n);
    at += 4;
  }
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

export class SegmentLog {
  readonly store: LevelStore;
  readonly namespace: number;
  #lastSeq: number;
  #committedSeq: number;
  #firstSeq: number;
  #count: number;
  #bytes: number;
  /** Entries appended since the current batch began, and the first one's sequence number. */
  #pending: Uint8Array[] = [];
  #pendingFirst = 0;
  #pendingBytes = 0;
  /** Every live segment starts at or after this sequence (keeps scans clear of deleted segments' tombstones). */
  #scanFrom: number;
  #releasing: Promise<void> = Promise.resolve();
  readonly #listeners = new CommitListeners();

  private constructor(store: LevelStore, namespace: number, bounds: { first: number; last: number; count: number; bytes: number; scanFrom: number }) {
    this.store = store;
    this.namespace = namespace;
    this.#firstSeq = bounds.first;
    this.#lastSeq = bounds.last;
    this.#committedSeq = bounds.last;
    this.#count = bounds.count;
    this.#bytes = bounds.bytes;
    this.#scanFrom = bounds.scanFrom;
    store.addSealHook((put) => this.#seal(put));
  }

  /** Opens the log stored under `namespace` (1-255), scanning it once to learn its bounds and size. */
  static async open(store: LevelStore, namespace: number): Promise<SegmentLog> {
    if (namespace <= META_NAMESPACE || namespace > 0xff) throw new RangeError(`log namespace must be 1-255, got ${namespace}`);
    const releasedMark = await store.db.get(metaKey(`log/${namespace}/released`));
    const released = releasedMark ? keySeq(releasedMark) : 0;
    const nextMark = await store.db.get(metaKey(`log/${namespace}/next`));
    let first = 0;
    let last = 0;
    let count = 0;
    let bytes = 0;
    let scanFrom = 0;
    for await (const [key, value] of store.db.iterator(namespaceRange(namespace))) {
      if (key.length !== SEGMENT_KEY_LENGTH) {
        throw new StorageError(`the log in namespace 0x${namespace.toString(16)} of ${store.path} has a key of ${key.length} bytes, not a segment key: it was written by another version of Tributary`);
      }
      const bounds = segmentBounds(key);
      if (count === 0 && scanFrom === 0) scanFrom = bounds.first;
      let seq = bounds.first;
      for (const entry of decodeSegment(value)) {
        if (seq > released) {
          if (count === 0) first = seq;
          count++;
          bytes += entry.byteLength;
        }
        seq++;
      }
      last = bounds.last;
    }
    const lastSeq = Math.max(last, nextMark ? keySeq(nextMark) - 1 : 0, released);
    return new SegmentLog(store, namespace, { first: count ? first : lastSeq + 1, last: lastSeq, count, bytes, scanFrom: scanFrom || lastSeq + 1 });
  }

  get lastSeq(): number {
    return this.#lastSeq;
  }
  get committedSeq(): number {
    return this.#committedSeq;
  }
  get firstSeq(): number {
    return this.#firstSeq;
  }
  /** Entries in the log (appended and not released), including ones still committing. */
  get count(): number {
    return this.#count;
  }
  /** Bytes of entries in the log. */
  get bytes(): number {
    return this.#bytes;
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
      put(segmentKey(this.namespace, first + start, first + end - 1), encodeSegment(chunk));
      start = end;
    }
    return (err) => {
      if (err) {
        this.#count -= values.length;
        this.#bytes -= size;
        return;
      }
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
  async read(fromSeq: number, limit: number, maxBytes = Infinity): Promise<LogEntry[]> {
    const to = this.#committedSeq;
    const from = Math.max(fromSeq, this.#firstSeq);
    if (from > to || limit <= 0) return [];
    const out: LogEntry[] = [];
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
          for (const entry of decodeSegment(value)) {
            if (seq >= from && seq <= to) {
              // At least one entry, however large; then no more than maxBytes.
              if (out.length > 0 && bytes + entry.byteLength > maxBytes) return out;
              out.push({ seq, value: entry });
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
   * Removes entries read from the log, oldest first (e.g. a batch the cloud acknowledged): every segment they
   * complete is deleted, and a mark records how far a partly released segment is released. Resolves when that is
   * durable. Calls are applied in order.
   */
  release(entries: readonly LogEntry[]): Promise<void> {
    const next = this.#releasing.then(() => this.#release(entries));
    this.#releasing = next.catch(() => undefined);
    return next;
  }

  async #release(entries: readonly LogEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const through = entries[entries.length - 1].seq;
    const ns = this.namespace;
    const dels: Uint8Array[] = [];
    let scanFrom = through + 1;
    for await (const key of this.store.db.keys({ gte: seqKey(ns, this.#scanFrom), lt: seqKey(ns, through + 1) })) {
      const { first, last } = segmentBounds(key);
      if (last <= through) dels.push(key);
      else scanFrom = first;
    }
    const puts = [
      // Keep the next sequence in case this empties the log, and how far a partly released segment is released.
      [metaKey(`log/${ns}/next`), seqKey(0, this.#lastSeq + 1)],
      [metaKey(`log/${ns}/released`), seqKey(0, through)],
    ] as const;
    await this.store.writeAsync(puts, dels);
    this.#scanFrom = scanFrom;
    this.#count -= entries.length;
    for (const e of entries) this.#bytes -= e.value.byteLength;
    this.#firstSeq = Math.max(this.#firstSeq, through + 1);
  }
}

/** The key range holding every segment of `namespace`. */
function namespaceRange(namespace: number): { gte: Uint8Array; lt: Uint8Array } {
  return { gte: seqKey(namespace, 0), lt: namespace < 0xff ? Uint8Array.of(namespace + 1) : new Uint8Array(SEGMENT_KEY_LENGTH + 1).fill(0xff) };
}
