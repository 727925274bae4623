import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BufferEntry, EdgeBufferOptions } from '../../edge/edge-buffer.ts';
import { EdgeBuffer, LANE_NAMESPACES } from '../../edge/edge-buffer.ts';
import type { Lane } from '../../edge/lanes.ts';
import { HIGH, LOW, NORMAL } from '../../edge/lanes.ts';
import { LevelStore } from '../../shared/level-store.ts';
import { Logger } from '../../shared/logger.ts';
import { Metrics } from '../../shared/metrics.ts';
import { SegmentLog } from '../../shared/segment-log.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();
const silent = new Logger({ level: 'silent' });
const texts = (entries: BufferEntry[]) => entries.map((e) => dec.decode(e.value));

function appendAsync(buffer: EdgeBuffer, lane: Lane, value: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    const seq = buffer.append(lane, value, (err) => (err ? reject(err) : resolve(seq)));
  });
}

/** Appends the values to `lane` in one tick: one commit, one segment. */
function appendTogether(buffer: EdgeBuffer, lane: Lane, values: (string | Uint8Array)[]): Promise<number[]> {
  return Promise.all(values.map((v) => appendAsync(buffer, lane, typeof v === 'string' ? enc.encode(v) : v)));
}

/** Bytes of the files of a LevelDB directory. */
function dirSize(dir: string): number {
  return readdirSync(dir).reduce((sum, name) => sum + statSync(path.join(dir, name)).size, 0);
}

function dropped(metrics: Metrics): Record<string, number> {
  return (metrics.snapshot().tributary_edge_events_dropped_total ?? {}) as Record<string, number>;
}

describe('EdgeBuffer', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dbPath: string;
  let store: LevelStore;
  let metrics: Metrics;
  const buffers: EdgeBuffer[] = [];

  beforeEach(async () => {
    tmp = tempDir();
    dbPath = path.join(tmp.path, 'db');
    store = await LevelStore.open(dbPath, { durability: 'crash-safe' });
    metrics = new Metrics();
  });

  afterEach(async () => {
    for (const b of buffers.splice(0)) b.close();
    await store.close();
    tmp.remove();
  });

  async function open(options: Partial<EdgeBufferOptions> = {}): Promise<EdgeBuffer> {
    const buffer = await EdgeBuffer.open(store, { maxBytes: 64 * 1024 * 1024, maxAgeSeconds: 0, overflow: 'backpressure', metrics, logger: silent, ...options });
    buffers.push(buffer);
    return buffer;
  }

  it('keeps an independent sequence and order in each lane', async () => {
    const buffer = await open();
    let commits = 0;
    buffer.onCommit((...args: unknown[]) => {
      expect(args).toEqual([]);
      commits++;
    });
    expect(await appendTogether(buffer, NORMAL, ['n1', 'n2'])).toEqual([1, 2]);
    expect(await appendTogether(buffer, HIGH, ['h1'])).toEqual([1]);
    expect(await Promise.all([appendAsync(buffer, LOW, enc.encode('l1')), appendAsync(buffer, NORMAL, enc.encode('n3')), appendAsync(buffer, LOW, enc.encode('l2'))])).toEqual([1, 3, 2]);
    expect(commits).toBeGreaterThanOrEqual(3);
    expect(texts(await buffer.read(HIGH, 1, 10, Infinity))).toEqual(['h1']);
    expect(texts(await buffer.read(NORMAL, 1, 10, Infinity))).toEqual(['n1', 'n2', 'n3']);
    expect(texts(await buffer.read(LOW, 1, 10, Infinity))).toEqual(['l1', 'l2']);
    expect(texts(await buffer.read(NORMAL, 2, 1, Infinity))).toEqual(['n2']);
    expect([HIGH, NORMAL, LOW].map((l) => [buffer.firstSeq(l), buffer.committedSeq(l)])).toEqual([[1, 1], [1, 3], [1, 2]]);
    await buffer.release(NORMAL, 2);
    expect([buffer.firstSeq(NORMAL), buffer.firstSeq(HIGH)]).toEqual([3, 1]);
    expect(texts(await buffer.read(NORMAL, 1, 10, Infinity))).toEqual(['n3']);
  });

  it('reports events, bytes and the oldest commit time per lane and in all', async () => {
    let now = 1_000_000;
    const buffer = await open({ clock: () => now, maxBytes: 2 * 1024 * 1024, maxAgeSeconds: 3600 });
    await appendTogether(buffer, LOW, ['aaaa']);
    now += 5_000;
    await appendTogether(buffer, HIGH, ['bb', 'cc']);
    const entries = await buffer.read(HIGH, 1, 10, Infinity);
    expect(entries.map((e) => e.timeMs)).toEqual([now, now]);
    expect(buffer.stats()).toEqual({
      events: 3,
      bytes: 8,
      maxBytes: 2 * 1024 * 1024,
      oldestTimeMs: 1_000_000,
      lanes: [
        { lane: 'high', events: 2, bytes: 4, oldestTimeMs: 1_005_000 },
        { lane: 'normal', events: 0, bytes: 0, oldestTimeMs: null },
        { lane: 'low', events: 1, bytes: 4, oldestTimeMs: 1_000_000 },
      ],
      overflow: 'backpressure',
      maxAgeSeconds: 3600,
    });
  });

  it('reads a buffer written before lanes existed as the normal lane', async () => {
    const old = await SegmentLog.open(store, LANE_NAMESPACES[NORMAL]);
    await Promise.all(['e1', 'e2'].map((v) => new Promise((resolve) => old.append(enc.encode(v), resolve))));
    const buffer = await open();
    expect(texts(await buffer.read(NORMAL, 1, 10, Infinity))).toEqual(['e1', 'e2']);
    expect(buffer.stats().lanes.map((l) => l.events)).toEqual([0, 2, 0]);
  });

  it('under backpressure, says when there is no room, drops nothing, and tells when room is freed', async () => {
    const maxBytes = 1024 * 1024;
    const buffer = await open({ maxBytes });
    expect(buffer.hasRoom(10 * maxBytes)).toBe(true); // an empty buffer takes even an event larger than maxBytes
    const big = new Uint8Array(300 * 1024);
    await appendTogether(buffer, LOW, [big, big, big]);
    expect(buffer.hasRoom(100 * 1024)).toBe(true);
    expect(buffer.hasRoom(200 * 1024)).toBe(false);
    // Appends not yet committed count.
    buffer.append(NORMAL, new Uint8Array(150 * 1024), () => undefined);
    expect(buffer.hasRoom(1)).toBe(false);
    let rooms = 0;
    const unsubscribe = buffer.onRoom(() => rooms++);
    await appendTogether(buffer, LOW, [big]); // over maxBytes: accepted, and nothing is dropped
    await store.flushed();
    expect(buffer.stats().bytes).toBe(4 * big.byteLength + 150 * 1024);
    expect(Object.values(dropped(metrics)).every((n) => n === 0)).toBe(true);
    await buffer.release(LOW, 2);
    expect(rooms).toBe(1);
    expect(buffer.hasRoom(200 * 1024)).toBe(true);
    await buffer.release(LOW, 2); // nothing freed: nobody is woken
    expect(rooms).toBe(1);
    unsubscribe();
    await buffer.release(LOW, 4);
    expect(rooms).toBe(1);
  });

  it('under drop-oldest, drops the oldest events of the lowest non-empty lane first and counts them exactly', async () => {
    const maxBytes = 1024 * 1024;
    const buffer = await open({ maxBytes, overflow: 'drop-oldest' });
    const kib = (n: number, fill: number) => new Uint8Array(n * 1024).fill(fill);
    // 600 KiB in the high lane, 200 KiB normal, 2 x 100 KiB low: 1000 KiB, under the limit.
    await appendTogether(buffer, HIGH, [kib(300, 1), kib(300, 2)]);
    await appendTogether(buffer, NORMAL, [kib(100, 3), kib(100, 4)]);
    await appendTogether(buffer, LOW, [kib(100, 5)]);
    await appendTogether(buffer, LOW, [kib(100, 6)]);
    expect(buffer.stats().bytes).toBe(1000 * 1024);
    // 150 KiB more: 126 KiB over. The low lane's oldest segment (100 KiB) is not enough, so both go.
    await appendTogether(buffer, HIGH, [kib(150, 7)]);
    await waitFor('the buffer back under maxBytes', () => buffer.stats().bytes <= maxBytes);
    expect(buffer.stats().lanes.map((l) => l.events)).toEqual([3, 2, 0]);
    expect(dropped(metrics)).toMatchObject({ 'lane=low,reason=overflow': 2, 'lane=normal,reason=overflow': 0, 'lane=high,reason=overflow': 0 });
    // The low lane is empty: next, the normal lane's oldest segment (both its events) goes.
    await appendTogether(buffer, HIGH, [kib(100, 8)]);
    await waitFor('the buffer back under maxBytes', () => buffer.stats().bytes <= maxBytes);
    expect(buffer.stats().lanes.map((l) => l.events)).toEqual([4, 0, 0]);
    // Then the high lane's own oldest events.
    await appendTogether(buffer, HIGH, [kib(200, 9)]);
    await waitFor('the buffer back under maxBytes', () => buffer.stats().bytes <= maxBytes);
    const high = await buffer.read(HIGH, 1, 10, Infinity);
    expect(high.map((e) => [e.seq, e.value[0]])).toEqual([[3, 7], [4, 8], [5, 9]]);
    expect(buffer.firstSeq(HIGH)).toBe(3);
    expect(dropped(metrics)).toMatchObject({ 'lane=low,reason=overflow': 2, 'lane=normal,reason=overflow': 2, 'lane=high,reason=overflow': 2 });
    expect(buffer.stats().events).toBe(3);
  });

  it('drops events older than maxAgeSeconds, counts them, and never returns them from a read', async () => {
    let now = 10_000_000;
    const buffer = await open({ clock: () => now, maxAgeSeconds: 60 });
    await appendTogether(buffer, NORMAL, ['old1', 'old2']);
    await appendTogether(buffer, HIGH, ['old-alert']);
    now += 30_000;
    await appendTogether(buffer, NORMAL, ['young']);
    expect(await buffer.expire()).toBe(0);
    now += 31_000; // the first two commits are 61 s old, the last 31 s
    // A read drops what is due before it returns, without waiting for the timer.
    expect(texts(await buffer.read(NORMAL, 1, 10, Infinity))).toEqual(['young']);
    expect(dropped(metrics)).toMatchObject({ 'lane=normal,reason=expired': 2, 'lane=high,reason=expired': 0 });
    expect(await buffer.expire()).toBe(1);
    expect(dropped(metrics)).toMatchObject({ 'lane=normal,reason=expired': 2, 'lane=high,reason=expired': 1 });
    expect(buffer.stats()).toMatchObject({ events: 1, oldestTimeMs: 10_030_000 });
    expect(buffer.firstSeq(NORMAL)).toBe(3);
    now += 60_000;
    expect(await buffer.expire()).toBe(1);
    expect(buffer.stats()).toMatchObject({ events: 0, bytes: 0, oldestTimeMs: null });
  });

  it('keeps events forever with maxAgeSeconds 0', async () => {
    let now = 1_000;
    const buffer = await open({ clock: () => now, maxAgeSeconds: 0 });
    await appendTogether(buffer, NORMAL, ['kept']);
    now += 365 * 24 * 3600 * 1000;
    expect(await buffer.expire()).toBe(0);
    expect(texts(await buffer.read(NORMAL, 1, 10, Infinity))).toEqual(['kept']);
  });

  it('counts drops the uplink reports, and logs the first drop at once and the rest as one summary', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = new Logger({ level: 'warn', sink: { write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) } });
    const buffer = await open({ logger });
    buffer.countDropped('expired', NORMAL, 3);
    buffer.countDropped('expired', NORMAL, 2);
    buffer.countDropped('full-qos0', LOW, 1);
    buffer.countDropped('expired', HIGH, 0);
    expect(dropped(metrics)).toMatchObject({ 'lane=normal,reason=expired': 5, 'lane=low,reason=full-qos0': 1, 'lane=high,reason=expired': 0 });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', msg: 'buffer dropped events', reason: 'expired', lane: 'normal', events: 3 });
    buffer.close(); // reports what the next summary would have
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ msg: 'buffer dropped events', events: 3, dropped: { expired: { normal: 2 }, 'full-qos0': { low: 1 } } });
  });

  it('gives the disk space back after a backlog drains (compaction)', async () => {
    const buffer = await open();
    const empty = dirSize(dbPath);
    // About 30 MB in 300 commits, of random bytes (LevelDB compresses with Snappy).
    for (let i = 0; i < 300; i++) await appendTogether(buffer, NORMAL, Array.from({ length: 100 }, () => randomBytes(1000)));
    await store.flushed();
    const full = dirSize(dbPath);
    expect(full).toBeGreaterThan(25 * 1024 * 1024);
    for (let through = 1000; through <= 30_000; through += 1000) await buffer.release(NORMAL, through);
    expect(buffer.stats().events).toBe(0);
    await buffer.compacted();
    await waitFor('the buffer directory back near its empty size', () => dirSize(dbPath) < empty + 2 * 1024 * 1024, 10_000, 100);
  });
});
