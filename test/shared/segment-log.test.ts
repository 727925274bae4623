import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LogEntry } from '../../shared/append-log.ts';
import { seqKey } from '../../shared/append-log.ts';
import { decode } from '../../shared/codec.ts';
import { ClosedError, StorageError } from '../../shared/errors.ts';
import { LevelStore } from '../../shared/level-store.ts';
import { decodeSegment, encodeSegment, SEGMENT_MAX_BYTES, SEGMENT_MAX_ENTRIES, SegmentLog, segmentBounds, segmentKey } from '../../shared/segment-log.ts';
import { tempDir } from '../helpers/temp-dir.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (s: string) => enc.encode(s);
const texts = (entries: LogEntry[]) => entries.map((e) => dec.decode(e.value));

function appendAsync(log: SegmentLog, value: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    const seq = log.append(value, (err) => (err ? reject(err) : resolve(seq)));
  });
}

/** Appends the values in one tick, so they share a commit (and a segment). */
async function appendTogether(log: SegmentLog, values: string[]): Promise<number[]> {
  return Promise.all(values.map((v) => appendAsync(log, bytes(v))));
}

describe('segmentKey and segmentBounds', () => {
  it('round-trip the first and last sequence, big-endian after the namespace byte', () => {
    for (const [first, last] of [[1, 1], [255, 256], [2 ** 32 - 1, 2 ** 32 + 5], [2 ** 53 - 2, 2 ** 53 - 1]]) {
      const key = segmentKey(0x10, first, last);
      expect(key).toHaveLength(17);
      expect(key[0]).toBe(0x10);
      expect(segmentBounds(key)).toEqual({ first, last });
    }
    expect(Array.from(segmentKey(7, 0x0102, 0x0304))).toEqual([7, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 3, 4]);
  });

  it('sorts by first sequence, and every segment starting at or before n sorts below seqKey(n + 1)', () => {
    const a = Buffer.from(segmentKey(1, 5, 900));
    const b = Buffer.from(segmentKey(1, 6, 6));
    expect(Buffer.compare(a, b)).toBeLessThan(0);
    expect(Buffer.compare(a, Buffer.from(seqKey(1, 6)))).toBeLessThan(0);
    expect(Buffer.compare(b, Buffer.from(seqKey(1, 6)))).toBeGreaterThan(0);
  });
});

describe('encodeSegment and decodeSegment', () => {
  it('write a standard MessagePack array of bin values and read the same entries back', () => {
    const values = [new Uint8Array(0), bytes('a'), new Uint8Array(300).fill(7), new Uint8Array(70_000).fill(9)];
    const segment = encodeSegment(values);
    expect(decode<Uint8Array[]>(segment).map((v) => Array.from(v))).toEqual(values.map((v) => Array.from(v)));
    expect(decodeSegment(segment).map((v) => Array.from(v))).toEqual(values.map((v) => Array.from(v)));
  });

  it('handles the array header sizes of 16 and 65,536 entries', () => {
    for (const n of [15, 16, 65_535, 65_536]) {
      const values = Array.from({ length: n }, (_, i) => Uint8Array.of(i & 0xff));
      const back = decodeSegment(encodeSegment(values));
      expect(back).toHaveLength(n);
      expect(back[n - 1][0]).toBe((n - 1) & 0xff);
    }
  });

  it('refuses a value that is not a segment', () => {
    expect(() => decodeSegment(Uint8Array.of(0x81, 0xa1, 0x61, 0x01))).toThrow(RangeError);
    expect(() => decodeSegment(Uint8Array.of(0x91, 0xa1, 0x61))).toThrow('is not a MessagePack bin');
    expect(() => decodeSegment(Uint8Array.of(0x91, 0xc4, 0x05, 0x01))).toThrow('runs past the end');
  });
});

describe('SegmentLog', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dbPath: string;
  let store: LevelStore;

  beforeEach(async () => {
    tmp = tempDir();
    dbPath = path.join(tmp.path, 'db');
    store = await LevelStore.open(dbPath);
  });

  afterEach(async () => {
    await store.close();
    tmp.remove();
  });

  async function reopen(): Promise<void> {
    await store.close();
    store = await LevelStore.open(dbPath);
  }

  it('refuses namespaces outside 1-255', async () => {
    await expect(SegmentLog.open(store, 0)).rejects.toThrow(RangeError);
    await expect(SegmentLog.open(store, 256)).rejects.toThrow('log namespace must be 1-255, got 256');
  });

  it('starts empty, at sequence 1', async () => {
    const log = await SegmentLog.open(store, 1);
    expect({ count: log.count, bytes: log.bytes, last: log.lastSeq, committed: log.committedSeq, first: log.firstSeq }).toEqual({ count: 0, bytes: 0, last: 0, committed: 0, first: 1 });
    expect(await log.read(1, 10)).toEqual([]);
  });

  it('returns each sequence synchronously and acknowledges each entry once its commit is durable', async () => {
    const log = await SegmentLog.open(store, 1);
    const calls: number[] = [];
    const seqs = ['a', 'b', 'c'].map((v, i) => log.append(bytes(v), () => calls.push(i)));
    expect(seqs).toEqual([1, 2, 3]);
    expect(calls).toEqual([]);
    expect({ last: log.lastSeq, committed: log.committedSeq, count: log.count, bytes: log.bytes }).toEqual({ last: 3, committed: 0, count: 3, bytes: 3 });
    await store.flushed();
    expect(calls).toEqual([0, 1, 2]);
    expect(log.committedSeq).toBe(3);
  });

  it('writes the entries of one commit as one record', async () => {
    const log = await SegmentLog.open(store, 1);
    await appendTogether(log, ['a', 'b', 'c']);
    await appendTogether(log, ['d']);
    const keys = await store.db.keys({ gte: seqKey(1, 0), lt: Uint8Array.of(2) }).all();
    expect(keys.map((k) => segmentBounds(k))).toEqual([{ first: 1, last: 3 }, { first: 4, last: 4 }]);
  });

  it('cuts a large commit into segments of at most SEGMENT_MAX_ENTRIES entries and about SEGMENT_MAX_BYTES', async () => {
    const log = await SegmentLog.open(store, 1);
    const n = SEGMENT_MAX_ENTRIES * 2 + 10;
    await Promise.all(Array.from({ length: n }, (_, i) => appendAsync(log, bytes(String(i)))));
    await Promise.all([appendAsync(log, new Uint8Array(SEGMENT_MAX_BYTES - 10)), appendAsync(log, new Uint8Array(20)), appendAsync(log, new Uint8Array(SEGMENT_MAX_BYTES * 2))]);
    const keys = await store.db.keys({ gte: seqKey(1, 0), lt: Uint8Array.of(2) }).all();
    expect(keys.map((k) => segmentBounds(k))).toEqual([
      { first: 1, last: SEGMENT_MAX_ENTRIES },
      { first: SEGMENT_MAX_ENTRIES + 1, last: 2 * SEGMENT_MAX_ENTRIES },
      { first: 2 * SEGMENT_MAX_ENTRIES + 1, last: n },
      // Each of these would take the one before it past SEGMENT_MAX_BYTES; an entry larger than that is alone.
      { first: n + 1, last: n + 1 },
      { first: n + 2, last: n + 2 },
      { first: n + 3, last: n + 3 },
    ]);
    const all = await log.read(1, n + 10, Infinity);
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: n + 3 }, (_, i) => i + 1));
    expect(texts(all.slice(0, n))).toEqual(Array.from({ length: n }, (_, i) => String(i)));
  });

  it('is committed before the commit callbacks of its entries run', async () => {
    const log = await SegmentLog.open(store, 1);
    let seen = -1;
    log.append(bytes('x'), () => (seen = log.committedSeq));
    await store.flushed();
    expect(seen).toBe(1);
  });

  it('reads committed entries in order, from any sequence, across and inside segments, up to a limit', async () => {
    const log = await SegmentLog.open(store, 1);
    await appendTogether(log, ['v1', 'v2', 'v3']);
    await appendTogether(log, ['v4']);
    await appendTogether(log, ['v5', 'v6', 'v7', 'v8', 'v9', 'v10']);
    expect(texts(await log.read(1, 100))).toEqual(Array.from({ length: 10 }, (_, i) => `v${i + 1}`));
    const page = await log.read(2, 3);
    expect(page.map((e) => e.seq)).toEqual([2, 3, 4]);
    expect(texts(page)).toEqual(['v2', 'v3', 'v4']);
    expect(texts(await log.read(7, 2))).toEqual(['v7', 'v8']);
    expect(await log.read(11, 5)).toEqual([]);
    expect(await log.read(1, 0)).toEqual([]);
  });

  it('reads past many segments', async () => {
    const log = await SegmentLog.open(store, 1);
    for (let i = 0; i < 60; i++) await appendTogether(log, [`${i}a`, `${i}b`]);
    const all = await log.read(1, 10_000);
    expect(all).toHaveLength(120);
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
    expect(texts(await log.read(50, 3))).toEqual(['24b', '25a', '25b']);
  });

  it('does not read entries whose commit has not completed', async () => {
    const log = await SegmentLog.open(store, 1);
    await appendTogether(log, ['c1', 'c2', 'c3']);
    log.append(bytes('pending1'), () => undefined);
    log.append(bytes('pending2'), () => undefined);
    expect(texts(await log.read(1, 100))).toEqual(['c1', 'c2', 'c3']);
    await store.flushed();
    expect(texts(await log.read(4, 100))).toEqual(['pending1', 'pending2']);
  });

  it('stops reading at about maxBytes, but reads at least one entry', async () => {
    const log = await SegmentLog.open(store, 1);
    await Promise.all(Array.from({ length: 20 }, () => appendAsync(log, new Uint8Array(100))));
    const entries = await log.read(1, 1000, 350);
    expect(entries.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect((await log.read(1, 10, 10)).map((e) => e.seq)).toEqual([1]);
  });

  it('releases entries: deletes the segments they complete and remembers a partly released one', async () => {
    const log = await SegmentLog.open(store, 1);
    await appendTogether(log, ['aa', 'bbb']);
    await appendTogether(log, ['cccc', 'ddddd', 'e']);
    expect({ count: log.count, bytes: log.bytes }).toEqual({ count: 5, bytes: 15 });
    await log.release(await log.read(1, 3));
    expect({ count: log.count, bytes: log.bytes, first: log.firstSeq }).toEqual({ count: 2, bytes: 6, first: 4 });
    expect(texts(await log.read(1, 10))).toEqual(['ddddd', 'e']);
    const keys = await store.db.keys({ gte: seqKey(1, 0), lt: Uint8Array.of(2) }).all();
    expect(keys.map((k) => segmentBounds(k))).toEqual([{ first: 3, last: 5 }]);
    // After a reopen, the released part of the kept segment stays released.
    await reopen();
    const again = await SegmentLog.open(store, 1);
    expect({ count: again.count, bytes: again.bytes, first: again.firstSeq, last: again.lastSeq, committed: again.committedSeq }).toEqual({ count: 2, bytes: 6, first: 4, last: 5, committed: 5 });
    expect(texts(await again.read(1, 10))).toEqual(['ddddd', 'e']);
    await again.release(await again.read(1, 10));
    expect(again.count).toBe(0);
    expect(await store.db.keys({ gte: seqKey(1, 0), lt: Uint8Array.of(2) }).all()).toEqual([]);
  });

  it('applies releases in the order they are made, even when not awaited', async () => {
    const log = await SegmentLog.open(store, 1);
    for (let i = 0; i < 10; i++) await appendTogether(log, [`${i}a`, `${i}b`, `${i}c`]);
    const all = await log.read(1, 100);
    await Promise.all([log.release(all.slice(0, 4)), log.release(all.slice(4, 11)), log.release(all.slice(11, 30))]);
    expect(log.count).toBe(0);
    expect(log.firstSeq).toBe(31);
    expect(await store.db.keys({ gte: seqKey(1, 0), lt: Uint8Array.of(2) }).all()).toEqual([]);
  });

  it('never repeats a sequence after the log is emptied and reopened', async () => {
    let log = await SegmentLog.open(store, 1);
    await appendTogether(log, ['a', 'b', 'c', 'd', 'e']);
    await log.release(await log.read(1, 10));
    await reopen();
    log = await SegmentLog.open(store, 1);
    expect({ count: log.count, last: log.lastSeq, first: log.firstSeq }).toEqual({ count: 0, last: 5, first: 6 });
    expect(await appendAsync(log, bytes('next'))).toBe(6);
    await reopen();
    log = await SegmentLog.open(store, 1);
    expect(await appendAsync(log, bytes('after'))).toBe(7);
    expect(texts(await log.read(1, 10))).toEqual(['next', 'after']);
  });

  it('does not count an append the closed store refused', async () => {
    const log = await SegmentLog.open(store, 1);
    await appendAsync(log, bytes('ok'));
    await store.close();
    await expect(appendAsync(log, bytes('lost'))).rejects.toBeInstanceOf(ClosedError);
    expect({ committed: log.committedSeq, count: log.count, bytes: log.bytes }).toEqual({ committed: 1, count: 1, bytes: 2 });
    store = await LevelStore.open(dbPath);
  });

  it('does not count the entries of a commit that failed, and does not advance past them', async () => {
    const log = await SegmentLog.open(store, 1);
    await appendAsync(log, bytes('ok'));
    const errors: (Error | null)[] = [];
    log.append(bytes('x'), (err) => errors.push(err));
    log.append(bytes('y'), (err) => errors.push(err));
    // The database goes away under the store before the group commit runs.
    await store.db.close();
    await store.flushed();
    expect(errors).toHaveLength(2);
    for (const err of errors) expect(err).toBeInstanceOf(StorageError);
    expect({ committed: log.committedSeq, count: log.count, bytes: log.bytes }).toEqual({ committed: 1, count: 1, bytes: 2 });
    store = await LevelStore.open(dbPath);
  });

  it('calls onCommit listeners with each new committed sequence until unsubscribed', async () => {
    const log = await SegmentLog.open(store, 1);
    const seen: number[] = [];
    const unsubscribe = log.onCommit((seq) => seen.push(seq));
    await appendTogether(log, ['a', 'b', 'c']);
    await appendTogether(log, ['d']);
    expect(seen).toEqual([3, 4]);
    unsubscribe();
    await appendAsync(log, bytes('after'));
    expect(seen).toEqual([3, 4]);
  });

  it('keeps two logs with different namespaces in one store independent, with one commit for both', async () => {
    const a = await SegmentLog.open(store, 0x10);
    const b = await SegmentLog.open(store, 0x11);
    const commits = store.stats.commits;
    await Promise.all([appendAsync(a, bytes('a1')), appendAsync(b, bytes('b1')), appendAsync(a, bytes('a2'))]);
    expect(store.stats.commits).toBe(commits + 1);
    expect(texts(await a.read(1, 10))).toEqual(['a1', 'a2']);
    expect(texts(await b.read(1, 10))).toEqual(['b1']);
  });

  it('refuses to open a namespace whose keys are not segment keys, naming the store', async () => {
    await store.writeAsync([[seqKey(1, 1), bytes('an entry of another format')]]);
    await expect(SegmentLog.open(store, 1)).rejects.toThrow(StorageError);
    await expect(SegmentLog.open(store, 1)).rejects.toThrow(`of ${dbPath} has a key of 9 bytes`);
  });
});
