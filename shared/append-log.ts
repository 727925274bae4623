/**
 * An append-only log over a `LevelStore`: keys are a one-byte namespace followed by the sequence number as 8
 * bytes big-endian (so LevelDB's byte order is sequence order), values are opaque bytes (MessagePack events).
 * Sequence numbers start at 1, never repeat and never go backwards, even after the log is emptied and the
 * process restarts (the next sequence is kept under a meta key). The cloud log and the dead letters are built on
 * it; the edge buffer on its variant that stores the entries of a commit together (segment-log.ts).
 */
import { CommitListeners } from './commit-listeners.ts';
import type { LevelStore, WriteCallback } from './level-store.ts';
import { textKey } from './text-key.ts';

export interface LogEntry {
  seq: number;
  value: Uint8Array;
}

const TWO_32 = 0x1_0000_0000;

export function seqKey(namespace: number, seq: number): Uint8Array {
  const key = new Uint8Array(9);
  key[0] = namespace;
  const view = new DataView(key.buffer);
  view.setUint32(1, Math.floor(seq / TWO_32));
  view.setUint32(5, seq >>> 0);
  return key;
}

export function keySeq(key: Uint8Array): number {
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  return view.getUint32(1) * TWO_32 + view.getUint32(5);
}

/** Namespace byte of the meta keyspace, shared by every log and component of one store. */
export const META_NAMESPACE = 0x00;

/** The key range holding every entry of `namespace`. */
function namespaceRange(namespace: number): { gte: Uint8Array; lt: Uint8Array } {
  // Every key of the namespace is 9 bytes starting with its byte; the next byte alone sorts after all of them
  // (for 255, a 10-byte key of 0xff does).
  return { gte: seqKey(namespace, 0), lt: namespace < 0xff ? Uint8Array.of(namespace + 1) : new Uint8Array(10).fill(0xff) };
}

export function metaKey(name: string): Uint8Array {
  return textKey(META_NAMESPACE, name);
}

export class AppendLog {
  readonly store: LevelStore;
  readonly namespace: number;
  /** Highest sequence handed out. */
  #lastSeq: number;
  /** Highest sequence whose commit has completed (every lower one is committed or failed too). */
  #committedSeq: number;
  /** Lowest sequence that may still be in the log. */
  #firstSeq: number;
  #count: number;
  #bytes: number;
  readonly #listeners = new CommitListeners();

  private constructor(store: LevelStore, namespace: number, firstSeq: number, lastSeq: number, count: number, bytes: number) {
    this.store = store;
    this.namespace = namespace;
    this.#firstSeq = firstSeq;
    this.#lastSeq = lastSeq;
    this.#committedSeq = lastSeq;
    this.#count = count;
    this.#bytes = bytes;
  }

  /** Opens the log stored under `namespace` (1-255), scanning it once to learn its bounds and size. */
  static async open(store: LevelStore, namespace: number): Promise<AppendLog> {
    if (namespace <= META_NAMESPACE || namespace > 0xff) throw new RangeError(`log namespace must be 1-255, got ${namespace}`);
    const range = namespaceRange(namespace);
    let first = 0;
    let last = 0;
    let count = 0;
    let bytes = 0;
    for await (const [key, value] of store.db.iterator(range)) {
      const seq = keySeq(key);
      if (count === 0) first = seq;
      last = seq;
      count++;
      bytes += value.byteLength;
    }
    const mark = await store.db.get(metaKey(`log/${namespace}/next`));
    const next = mark ? keySeq(mark) : 1;
    const lastSeq = Math.max(last, next - 1);
    return new AppendLog(store, namespace, count ? first : lastSeq + 1, lastSeq, count, bytes);
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
  /** Entries in the log (appended and not deleted), including ones still committing. */
  get count(): number {
    return this.#count;
  }
  /** Bytes of values in the log. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Appends one value; returns its sequence number at once and calls `done` when it is durable. Entries are
   * committed in sequence order. `extra` puts are committed atomically with the entry.
   */
  append(value: Uint8Array, done: WriteCallback, extra?: readonly (readonly [Uint8Array, Uint8Array])[]): number {
    const seq = ++this.#lastSeq;
    this.#count++;
    this.#bytes += value.byteLength;
    const key = seqKey(this.namespace, seq);
    const onCommit: WriteCallback = (err) => {
      if (err) {
        this.#count--;
        this.#bytes -= value.byteLength;
      }
      this.#committed(seq, err);
      done(err);
    };
    if (extra && extra.length) this.store.write([[key, value], ...extra], [], onCommit);
    else this.store.put(key, value, onCommit);
    return seq;
  }

  /** Appends several values atomically (with `extra` puts); resolves with the first and last sequence. */
  appendMany(values: readonly Uint8Array[], extra: readonly (readonly [Uint8Array, Uint8Array])[] = []): Promise<{ first: number; last: number }> {
    const first = this.#lastSeq + 1;
    const puts: (readonly [Uint8Array, Uint8Array])[] = [];
    for (const value of values) {
      puts.push([seqKey(this.namespace, ++this.#lastSeq), value]);
      this.#count++;
      this.#bytes += value.byteLength;
    }
    const last = this.#lastSeq;
    const size = puts.reduce((sum, [, v]) => sum + v.byteLength, 0);
    // The next sequence after a restart comes from the last key, or (once everything is deleted) from the
    // mark `deleteEntries` keeps.
    puts.push(...extra);
    return new Promise((resolve, reject) =>
      this.store.write(puts, [], (err) => {
        if (err) {
          this.#count -= values.length;
          this.#bytes -= size;
        }
        this.#committed(last, err);
        if (err) reject(err);
        else resolve({ first, last });
      }),
    );
  }

  #committed(seq: number, err: Error | null): void {
    if (err || seq <= this.#committedSeq) return;
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
    if (fromSeq > to || limit <= 0) return [];
    const out: LogEntry[] = [];
    let bytes = 0;
    const it = this.store.db.iterator({ gte: seqKey(this.namespace, Math.max(fromSeq, 0)), lte: seqKey(this.namespace, to), limit });
    try {
      while (true) {
        const page = await it.nextv(Math.min(limit - out.length, 1000));
        if (page.length === 0) break;
        let full = false;
        for (const [key, value] of page) {
          // At least one entry, however large; then no more than maxBytes.
          if (out.length > 0 && bytes + value.byteLength > maxBytes) {
            full = true;
            break;
          }
          out.push({ seq: keySeq(key), value });
          bytes += value.byteLength;
        }
        if (full || out.length >= limit) break;
      }
    } finally {
      await it.close();
    }
    return out;
  }

  /**
   * Deletes the given committed entries, oldest first, from the front of the log (e.g. a batch the cloud
   * acknowledged). `sizes` are their value sizes,
   * for the byte count. Resolves when the delete is durable.
   */
  deleteEntries(seqs: readonly number[], sizes: readonly number[]): Promise<void> {
    const dels = seqs.map((s) => seqKey(this.namespace, s));
    // Keep the next sequence in case this empties the log.
    const puts = [[metaKey(`log/${this.namespace}/next`), seqKey(0, this.#lastSeq + 1)] as const];
    return new Promise((resolve, reject) =>
      this.store.write(puts, dels, (err) => {
        if (err) return reject(err);
        this.#count -= seqs.length;
        for (const size of sizes) this.#bytes -= size;
        if (seqs.length) this.#firstSeq = Math.max(this.#firstSeq, seqs[seqs.length - 1] + 1);
        resolve();
      }),
    );
  }

  /** Lowest sequence in the log, read from disk (the in-memory bound can lag behind out-of-order deletes). */
  async oldestSeq(): Promise<number | undefined> {
    for await (const key of this.store.db.keys({ ...namespaceRange(this.namespace), limit: 1 })) {
      return keySeq(key);
    }
    return undefined;
  }
}
