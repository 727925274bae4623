import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LogEntry } from '../../shared/append-log.ts';
import { metaKey, seqKey } from '../../shared/append-log.ts';
import { decode } from '../../shared/codec.ts';
import { ClosedError, StorageError } from '../../shared/errors.ts';
import { LevelStore } from '../../shared/level-store.ts';
import { decodeSegment, encodeSegment, SEGMENT_MAX_BYTES, SEGMENT_MAX_ENTRIES, SegmentLog, segmentBounds, segmentKey, segmentTime } from '../../shared/segment-log.ts';
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

describe('segmentKey, segmentBounds and segmentTime', () => {
  it('round-trip the first and last sequence and the commit time, big-endian after the namespace byte', () => {
    const cases = [[1, 1, 0], [255, 256, 1_700_000_000_123], [2 ** 32 - 1, 2 ** 32 + 5, 2 ** 32 + 7], [2 ** 53 - 2, 2 ** 53 - 1, 2 ** 53 - 1]];
    for (const [first, last, time] of cases) {
      const key = segmentKey(0x10, first, last, time);
      expect(key).toHaveLength(25);
      expect(key[0]).toBe(0x10);
      expect(segmentBounds(key)).toEqual({ first, last });
      expect(segmentTime(key)).toBe(time);
    }
    expect(Array.from(segmentKey(7, 0x0102, 0x0304, 0x0506))).toEqual([7, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0, 5, 6]);
  });

  it('read the bounds of a 17-byte key written before keys carried a time, which has no time', () => {
    const old = segmentKey(7, 0x0102, 0x0304, 99).subarray(0, 17);
    expect(segmentBounds(old)).toEqual({ first: 0x0102, last: 0x0304 });
    expect(segmentTime(old)).toBeUndefined();
  });

  it('sorts by first sequence whatever the time, and every segment starting at or before n sorts below seqKey(n + 1)', () => {
    const a = Buffer.from(segmentKey(1, 5, 900, 2 ** 40));
    const b = Buffer.from(segmentKey(1, 6, 6, 1));
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
    expect(await log.release(3)).toEqual({ events: 3, bytes: 9 });
    expect({ count: log.count, bytes: log.bytes, first: log.firstSeq }).toEqual({ count: 2, bytes: 6, first: 4 });
    expect(texts(await log.read(1, 10))).toEqual(['ddddd', 'e']);
    const keys = await store.db.keys({ gte: seqKey(1, 0), lt: Uint8Array.of(2) }).all();
    expect(keys.map((k) => segmentBounds(k))).toEqual([{ first: 3, last: 5 }]);
    // After a reopen, the released part of the kept segment stays released.
    await reopen();
    const again = await SegmentLog.open(store, 1);
    expect({ count: again.count, bytes: again.bytes, first: again.firstSeq, last: again.lastSeq, committed: again.committedSeq }).toEqual({ count: 2, bytes: 6, first: 4, last: 5, committed: 5 });
    expect(texts(await again.read(1, 10))).toEqual(['ddddd', 'e']);
    expect(await again.release(5)).toEqual({ events: 2, bytes: 6 });
    expect(again.count).toBe(0);
    expect(await store.db.keys({ gte: seqKey(1, 0), lt: Uint8Array.of(2) }).all()).toEqual([]);
  });

  it('applies releases in the order they are made, even when not awaited', async () => {
    const log = await SegmentLog.open(store, 1);
    for (let i = 0; i < 10; i++) await appendTogether(log, [`${i}a`, `${i}b`, `${i}c`]);
    const released = await Promise.all([log.release(4), log.release(11), log.release(30)]);
    expect(released.map((r) => r.events)).toEqual([4, 7, 19]);
    expect(log.count).toBe(0);
    expect(log.firstSeq).toBe(31);
    expect(await store.db.keys({ gte: seqKey(1, 0), lt: Uint8Array.of(2) }).all()).toEqual([]);
  });

  it('never repeats a sequence after the log is emptied and reopened', async () => {
    let log = await SegmentLog.open(store, 1);
    await appendTogether(log, ['a', 'b', 'c', 'd', 'e']);
    await log.release(5);
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

  it('stamps each segment key with the commit time, and reads entries with the time of their segment', async () => {
    let now = 1_000;
    const log = await SegmentLog.open(store, 1, { clock: () => now });
    expect(log.oldestTimeMs).toBeNull();
    await appendTogether(log, ['a', 'b']);
    now = 2_500;
    await appendTogether(log, ['c']);
    const keys = await store.db.keys({ gte: seqKey(1, 0), lt: Uint8Array.of(2) }).all();
    expect(keys.map((k) => [k.length, segmentTime(k)])).toEqual([[25, 1_000], [25, 2_500]]);
    expect((await log.read(1, 10)).map((e) => [e.seq, e.timeMs])).toEqual([[1, 1_000], [2, 1_000], [3, 2_500]]);
    expect(log.oldestTimeMs).toBe(1_000);
    await log.release(2);
    expect(log.oldestTimeMs).toBe(2_500);
    await log.release(3);
    expect(log.oldestTimeMs).toBeNull();
    now = 4_000;
    await appendTogether(log, ['d']);
    expect(log.oldestTimeMs).toBe(4_000);
  });

  it('reads segments with 17-byte keys written before keys carried a time, as of the time it was opened', async () => {
    // Two segments as the earlier version wrote them, and how far it had released.
    await store.writeAsync([
      [segmentKey(1, 1, 3, 0).subarray(0, 17), encodeSegment(['o1', 'o2', 'o3'].map(bytes))],
      [segmentKey(1, 4, 4, 0).subarray(0, 17), encodeSegment([bytes('o4')])],
      [metaKey('log/1/released'), seqKey(0, 1)],
    ]);
    let now = 50_000;
    let log = await SegmentLog.open(store, 1, { clock: () => now });
    expect({ count: log.count, bytes: log.bytes, first: log.firstSeq, last: log.lastSeq, oldest: log.oldestTimeMs }).toEqual({ count: 3, bytes: 6, first: 2, last: 4, oldest: 50_000 });
    now = 60_000;
    await appendTogether(log, ['n5']);
    expect((await log.read(1, 10)).map((e) => [dec.decode(e.value), e.timeMs])).toEqual([['o2', 50_000], ['o3', 50_000], ['o4', 50_000], ['n5', 60_000]]);
    expect(await log.release(2)).toEqual({ events: 1, bytes: 2 });
    await reopen();
    now = 52_000; // the old segments take this open's time
    log = await SegmentLog.open(store, 1, { clock: () => now });
    expect(texts(await log.read(1, 10))).toEqual(['o3', 'o4', 'n5']);
    expect(await log.dropBefore(55_000)).toEqual({ events: 2, bytes: 4 });
    expect(texts(await log.read(1, 10))).toEqual(['n5']);
    const keys = await store.db.keys({ gte: seqKey(1, 0), lt: Uint8Array.of(2) }).all();
    expect(keys.map((k) => k.length)).toEqual([25]);
  });

  it('releases through a sequence idempotently: at or below what already left the log it does nothing', async () => {
    const log = await SegmentLog.open(store, 1);
    await appendTogether(log, ['aa', 'bbb']);
    await appendTogether(log, ['cccc']);
    expect(await log.release(2)).toEqual({ events: 2, bytes: 5 });
    const commits = store.stats.commits;
    expect(await log.release(2)).toEqual({ events: 0, bytes: 0 });
    expect(await log.release(1)).toEqual({ events: 0, bytes: 0 });
    expect(store.stats.commits).toBe(commits); // nothing written
    // Past the committed end it releases only what is committed.
    log.append(bytes('pending'), () => undefined);
    expect(await log.release(100)).toEqual({ events: 1, bytes: 4 });
    await store.flushed();
    expect({ count: log.count, bytes: log.bytes, first: log.firstSeq }).toEqual({ count: 1, bytes: 7, first: 4 });
    expect(texts(await log.read(1, 10))).toEqual(['pending']);
  });

  it('counts releases and drops exactly when they interleave, from the segments they remove', async () => {
    const log = await SegmentLog.open(store, 1);
    await appendTogether(log, ['a', 'bb', 'ccc']); // 1-3
    await appendTogether(log, ['dddd', 'eeeee']); // 4-5
    await appendTogether(log, ['ffffff']); // 6
    expect(await log.release(1)).toEqual({ events: 1, bytes: 1 }); // part of the first segment
    // The rest of the first segment and the whole second one: at least 6 bytes, whole segments.
    expect(await log.dropOldest(6)).toEqual({ events: 4, bytes: 14 });
    expect({ count: log.count, bytes: log.bytes, first: log.firstSeq }).toEqual({ count: 1, bytes: 6, first: 6 });
    // The cloud acknowledges a batch that was dropped meanwhile: nothing more leaves.
    expect(await log.release(5)).toEqual({ events: 0, bytes: 0 });
    expect(await log.release(6)).toEqual({ events: 1, bytes: 6 });
    expect({ count: log.count, bytes: log.bytes }).toEqual({ count: 0, bytes: 0 });
    await reopen();
    const again = await SegmentLog.open(store, 1);
    expect({ count: again.count, bytes: again.bytes, first: again.firstSeq, last: again.lastSeq }).toEqual({ count: 0, bytes: 0, first: 7, last: 6 });
  });

  it('drops the oldest whole segments until enough bytes are gone, and never what is still committing', async () => {
    const log = await SegmentLog.open(store, 1);
    for (let i = 0; i < 5; i++) await appendTogether(log, ['xxxxxxxxxx', 'yyyyyyyyyy']); // 5 segments of 20 bytes
    expect(await log.dropOldest(0)).toEqual({ events: 0, bytes: 0 });
    expect(await log.dropOldest(1)).toEqual({ events: 2, bytes: 20 });
    expect(await log.dropOldest(21)).toEqual({ events: 4, bytes: 40 });
    expect(log.firstSeq).toBe(7);
    log.append(bytes('committing'), () => undefined);
    expect(await log.dropOldest(10_000)).toEqual({ events: 4, bytes: 40 });
    expect({ count: log.count, bytes: log.bytes }).toEqual({ count: 1, bytes: 10 });
    await store.flushed();
    expect(texts(await log.read(1, 10))).toEqual(['committing']);
    expect(log.deletedBytes).toBeGreaterThan(100);
  });

  it('drops the segments committed before a time, stopping at the first that is not older', async () => {
    let now = 1_000;
    const log = await SegmentLog.open(store, 1, { clock: () => now });
    await appendTogether(log, ['t1000a', 't1000b']);
    now = 2_000;
    await appendTogether(log, ['t2000']);
    now = 3_000;
    await appendTogether(log, ['t3000']);
    now = 1_500; // the clock stepped back
    await appendTogether(log, ['t1500']);
    expect(await log.dropBefore(1_000)).toEqual({ events: 0, bytes: 0 });
    expect(await log.dropBefore(2_500)).toEqual({ events: 3, bytes: 17 });
    expect(log.oldestTimeMs).toBe(3_000);
    // The segment of 1500 comes after one of 3000: it stays while that one does.
    expect(await log.dropBefore(2_000)).toEqual({ events: 0, bytes: 0 });
    expect(await log.dropBefore(10_000)).toEqual({ events: 2, bytes: 10 });
    expect({ count: log.count, oldest: log.oldestTimeMs, first: log.firstSeq }).toEqual({ count: 0, oldest: null, first: 6 });
  });

  it('refuses to open a namespace whose keys are not segment keys, naming the store', async () => {
    await store.writeAsync([[seqKey(1, 1), bytes('an entry of another format')]]);
    await expect(SegmentLog.open(store, 1)).rejects.toThrow(StorageError);
    await expect(SegmentLog.open(store, 1)).rejects.toThrow(`of ${dbPath} has a key of 9 bytes`);
  });
});
