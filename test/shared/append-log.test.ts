import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LogEntry } from '../../shared/append-log.ts';
import { AppendLog, keySeq, META_NAMESPACE, metaKey, seqKey } from '../../shared/append-log.ts';
import { ClosedError } from '../../shared/errors.ts';
import { LevelStore } from '../../shared/level-store.ts';
import { tempDir } from '../helpers/temp-dir.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();
const bytes = (s: string) => enc.encode(s);
const texts = (entries: LogEntry[]) => entries.map((e) => dec.decode(e.value));

function appendAsync(log: AppendLog, value: Uint8Array, extra?: readonly (readonly [Uint8Array, Uint8Array])[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const seq = log.append(value, (err) => (err ? reject(err) : resolve(seq)), extra);
  });
}

async function deleteAll(log: AppendLog): Promise<void> {
  const entries = await log.read(0, Number.MAX_SAFE_INTEGER);
  await log.deleteEntries(entries.map((e) => e.seq), entries.map((e) => e.value.byteLength));
}

describe('seqKey and keySeq', () => {
  const seqs = [0, 1, 2, 255, 256, 65_535, 65_536, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 12_345, 2 ** 52 + 3, 2 ** 53 - 2, 2 ** 53 - 1];

  it('round-trips sequence numbers up to 2^53-1 with the namespace as the first byte', () => {
    for (const seq of seqs) {
      const key = seqKey(0x10, seq);
      expect(key).toHaveLength(9);
      expect(key[0]).toBe(0x10);
      expect(keySeq(key)).toBe(seq);
    }
  });

  it('writes the sequence big-endian so byte order is sequence order', () => {
    expect(Array.from(seqKey(7, 0x0102_0304_0506))).toEqual([7, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06]);
    const keys = [...seqs].reverse().map((s) => Buffer.from(seqKey(3, s)));
    keys.sort(Buffer.compare);
    expect(keys.map((k) => keySeq(k))).toEqual(seqs);
  });

  it('reads a key that is a window on a larger buffer', () => {
    const backing = new Uint8Array(20);
    backing.set(seqKey(1, 2 ** 40 + 9), 5);
    expect(keySeq(backing.subarray(5, 14))).toBe(2 ** 40 + 9);
  });
});

describe('metaKey', () => {
  it('puts the name after the meta namespace byte, below every log key', () => {
    const key = metaKey('log/16/next');
    expect(key[0]).toBe(META_NAMESPACE);
    expect(dec.decode(key.subarray(1))).toBe('log/16/next');
    expect(Buffer.compare(Buffer.from(key), Buffer.from(seqKey(1, 0)))).toBeLessThan(0);
  });
});

describe('AppendLog', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dir: string;
  let dbPath: string;
  let store: LevelStore;

  beforeEach(async () => {
    tmp = tempDir();
    dir = tmp.path;
    dbPath = path.join(dir, 'db');
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
    await expect(AppendLog.open(store, 0)).rejects.toThrow(RangeError);
    await expect(AppendLog.open(store, 256)).rejects.toThrow('log namespace must be 1-255, got 256');
  });

  it('starts empty, at sequence 1', async () => {
    const log = await AppendLog.open(store, 1);
    expect(log.count).toBe(0);
    expect(log.bytes).toBe(0);
    expect(log.lastSeq).toBe(0);
    expect(log.committedSeq).toBe(0);
    expect(log.firstSeq).toBe(1);
    expect(await log.read(1, 10)).toEqual([]);
    expect(await log.oldestSeq()).toBeUndefined();
  });

  it('returns each sequence synchronously, from 1 up, before the entry is durable', async () => {
    const log = await AppendLog.open(store, 1);
    const calls: number[] = [];
    const seqs = ['a', 'b', 'c'].map((v, i) => log.append(bytes(v), () => calls.push(i)));
    expect(seqs).toEqual([1, 2, 3]);
    expect(calls).toEqual([]);
    expect(log.lastSeq).toBe(3);
    expect(log.committedSeq).toBe(0);
    expect(log.count).toBe(3);
    expect(log.bytes).toBe(3);
    await store.flushed();
    expect(calls).toEqual([0, 1, 2]);
    expect(log.committedSeq).toBe(3);
  });

  it('reads committed entries in order, from a sequence, up to a limit', async () => {
    const log = await AppendLog.open(store, 1);
    for (let i = 1; i <= 10; i++) await appendAsync(log, bytes(`v${i}`));
    expect(texts(await log.read(1, 100))).toEqual(Array.from({ length: 10 }, (_, i) => `v${i + 1}`));
    const page = await log.read(4, 3);
    expect(page.map((e) => e.seq)).toEqual([4, 5, 6]);
    expect(texts(page)).toEqual(['v4', 'v5', 'v6']);
    expect(await log.read(11, 5)).toEqual([]);
    expect(await log.read(1, 0)).toEqual([]);
  });

  it('reads more entries than one iterator page', async () => {
    const log = await AppendLog.open(store, 1);
    await log.appendMany(Array.from({ length: 2500 }, (_, i) => bytes(String(i))));
    const all = await log.read(1, 10_000);
    expect(all).toHaveLength(2500);
    expect(all[2499].seq).toBe(2500);
    expect(await log.read(1, 1234)).toHaveLength(1234);
  });

  it('does not read entries whose commit has not completed', async () => {
    const log = await AppendLog.open(store, 1);
    for (let i = 1; i <= 3; i++) await appendAsync(log, bytes(`c${i}`));
    log.append(bytes('pending1'), () => undefined);
    log.append(bytes('pending2'), () => undefined);
    const entries = await log.read(1, 100);
    expect(texts(entries)).toEqual(['c1', 'c2', 'c3']);
    await store.flushed();
    expect(texts(await log.read(4, 100))).toEqual(['pending1', 'pending2']);
  });

  it('stops reading at about maxBytes', async () => {
    const log = await AppendLog.open(store, 1);
    await log.appendMany(Array.from({ length: 20 }, () => new Uint8Array(100)));
    const entries = await log.read(1, 1000, 350);
    const total = entries.reduce((sum, e) => sum + e.value.byteLength, 0);
    // Stops at the first entry that reaches the limit: 4 entries, 400 bytes.
    expect(entries.length).toBeGreaterThanOrEqual(3);
    expect(entries.length).toBeLessThanOrEqual(4);
    expect(total).toBeLessThan(350 + 100);
  });

  it('reads at least one entry even when it alone is larger than maxBytes', async () => {
    const log = await AppendLog.open(store, 1);
    await log.appendMany([new Uint8Array(500), new Uint8Array(500)]);
    const entries = await log.read(1, 10, 100);
    expect(entries.map((e) => e.seq)).toEqual([1]);
  });

  it('deletes entries and updates count, bytes and the first sequence', async () => {
    const log = await AppendLog.open(store, 1);
    await log.appendMany(['aa', 'bbb', 'cccc', 'ddddd'].map(bytes));
    expect(log.count).toBe(4);
    expect(log.bytes).toBe(14);
    await log.deleteEntries([1, 2], [2, 3]);
    expect(log.count).toBe(2);
    expect(log.bytes).toBe(9);
    expect(log.firstSeq).toBe(3);
    expect(await log.oldestSeq()).toBe(3);
    expect(texts(await log.read(1, 10))).toEqual(['cccc', 'ddddd']);
  });

  it('reports the same bounds and sizes after a reopen', async () => {
    const log = await AppendLog.open(store, 1);
    await log.appendMany(['aa', 'bbb', 'cccc', 'ddddd'].map(bytes));
    await log.deleteEntries([1], [2]);
    const before = { first: log.firstSeq, last: log.lastSeq, committed: log.committedSeq, count: log.count, bytes: log.bytes };
    await reopen();
    const again = await AppendLog.open(store, 1);
    expect({ first: again.firstSeq, last: again.lastSeq, committed: again.committedSeq, count: again.count, bytes: again.bytes }).toEqual(before);
    expect(before).toEqual({ first: 2, last: 4, committed: 4, count: 3, bytes: 12 });
  });

  it('never repeats a sequence after the log is emptied and reopened', async () => {
    let log = await AppendLog.open(store, 1);
    for (let i = 0; i < 5; i++) await appendAsync(log, bytes(`first-${i}`));
    await deleteAll(log);
    expect(log.count).toBe(0);
    expect(log.bytes).toBe(0);
    await reopen();
    log = await AppendLog.open(store, 1);
    expect(log.count).toBe(0);
    expect(log.lastSeq).toBe(5);
    expect(await appendAsync(log, bytes('second'))).toBe(6);

    // Again, this time written with appendMany, and twice in a row.
    await deleteAll(log);
    await reopen();
    log = await AppendLog.open(store, 1);
    expect(await log.appendMany([bytes('x'), bytes('y')])).toEqual({ first: 7, last: 8 });
    await deleteAll(log);
    await reopen();
    // Opening an empty log and closing it again without a write must not lose the next sequence.
    expect((await AppendLog.open(store, 1)).lastSeq).toBe(8);
    await reopen();
    log = await AppendLog.open(store, 1);
    expect(await appendAsync(log, bytes('z'))).toBe(9);
    expect(texts(await log.read(1, 10))).toEqual(['z']);
  });

  it('continues the sequence after a reopen without deletes', async () => {
    let log = await AppendLog.open(store, 1);
    for (let i = 0; i < 3; i++) await appendAsync(log, bytes(`${i}`));
    await reopen();
    log = await AppendLog.open(store, 1);
    expect(await appendAsync(log, bytes('next'))).toBe(4);
    expect(texts(await log.read(1, 10))).toEqual(['0', '1', '2', 'next']);
  });

  it('keeps the entries of namespace 255 across a reopen', async () => {
    let log = await AppendLog.open(store, 255);
    for (let i = 0; i < 3; i++) await appendAsync(log, bytes(`old-${i}`));
    await reopen();
    log = await AppendLog.open(store, 255);
    // The sequence must continue: reusing 1 would overwrite the oldest entry.
    expect(await appendAsync(log, bytes('new'))).toBe(4);
    expect(texts(await log.read(1, 10))).toEqual(['old-0', 'old-1', 'old-2', 'new']);
    expect(log.count).toBe(4);
    expect(await log.oldestSeq()).toBe(1);
  });

  it('commits appendMany values and its extra puts atomically in one commit', async () => {
    const log = await AppendLog.open(store, 1);
    await appendAsync(log, bytes('before'));
    const commitsBefore = store.stats.commits;
    const mark = metaKey('test/high-water');
    const range = await log.appendMany([bytes('a'), bytes('b'), bytes('c')], [[mark, bytes('edge-1:42')]]);
    expect(range).toEqual({ first: 2, last: 4 });
    expect(store.stats.commits).toBe(commitsBefore + 1);
    expect(log.committedSeq).toBe(4);
    await reopen();
    const again = await AppendLog.open(store, 1);
    expect(texts(await again.read(2, 10))).toEqual(['a', 'b', 'c']);
    expect(dec.decode((await store.db.get(mark))!)).toBe('edge-1:42');
  });

  it('writes neither the values nor the extra puts of an appendMany that fails', async () => {
    const log = await AppendLog.open(store, 1);
    const mark = metaKey('test/mark');
    await store.close();
    await expect(log.appendMany([bytes('a')], [[mark, bytes('x')]])).rejects.toBeInstanceOf(ClosedError);
    store = await LevelStore.open(dbPath);
    const again = await AppendLog.open(store, 1);
    expect(again.count).toBe(0);
    expect(await store.db.get(mark)).toBeUndefined();
  });

  it('commits append extra puts with the entry', async () => {
    const log = await AppendLog.open(store, 1);
    const mark = metaKey('test/extra');
    await appendAsync(log, bytes('v'), [[mark, bytes('m')]]);
    await reopen();
    expect(dec.decode((await store.db.get(mark))!)).toBe('m');
  });

  it('does not count a failed append in count and bytes', async () => {
    const log = await AppendLog.open(store, 1);
    await appendAsync(log, bytes('ok'));
    await store.close();
    await expect(appendAsync(log, bytes('lost'))).rejects.toBeInstanceOf(ClosedError);
    await expect(log.appendMany([bytes('lost too')])).rejects.toBeInstanceOf(ClosedError);
    expect(log.committedSeq).toBe(1);
    expect(log.count).toBe(1);
    expect(log.bytes).toBe(2);
    store = await LevelStore.open(dbPath);
  });

  it('calls onCommit listeners with each new committed sequence until unsubscribed', async () => {
    const log = await AppendLog.open(store, 1);
    const seen: number[] = [];
    const unsubscribe = log.onCommit((seq) => seen.push(seq));
    for (let i = 0; i < 5; i++) log.append(bytes('x'), () => undefined);
    await store.flushed();
    expect(seen.length).toBeGreaterThan(0);
    expect(seen[seen.length - 1]).toBe(5);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]);
    await log.appendMany([bytes('y'), bytes('z')]);
    expect(seen[seen.length - 1]).toBe(7);
    unsubscribe();
    const count = seen.length;
    await appendAsync(log, bytes('after'));
    expect(seen).toHaveLength(count);
  });

  it('gives every append and appendMany a distinct sequence when they interleave', async () => {
    const log = await AppendLog.open(store, 1);
    const a = log.append(bytes('a'), () => undefined);
    const many = log.appendMany([bytes('b'), bytes('c')]);
    const d = log.append(bytes('d'), () => undefined);
    expect(await many).toEqual({ first: 2, last: 3 });
    expect([a, d]).toEqual([1, 4]);
    await store.flushed();
    expect(texts(await log.read(1, 10))).toEqual(['a', 'b', 'c', 'd']);
  });

  it('keeps two logs with different namespaces in one store independent', async () => {
    let buffer = await AppendLog.open(store, 0x10);
    let dead = await AppendLog.open(store, 0x20);
    await buffer.appendMany([bytes('b1'), bytes('b2'), bytes('b3')]);
    await appendAsync(dead, bytes('d1'));
    expect(texts(await buffer.read(1, 10))).toEqual(['b1', 'b2', 'b3']);
    expect(texts(await dead.read(1, 10))).toEqual(['d1']);
    await deleteAll(buffer);
    await reopen();
    buffer = await AppendLog.open(store, 0x10);
    dead = await AppendLog.open(store, 0x20);
    expect(buffer.count).toBe(0);
    expect(dead.count).toBe(1);
    expect(await appendAsync(buffer, bytes('b4'))).toBe(4);
    expect(await appendAsync(dead, bytes('d2'))).toBe(2);
    expect(texts(await dead.read(1, 10))).toEqual(['d1', 'd2']);
    expect(await dead.oldestSeq()).toBe(1);
    expect(await buffer.oldestSeq()).toBe(4);
  });
});
