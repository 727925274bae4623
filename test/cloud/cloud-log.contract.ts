/**
 * The contract every `CloudLog` implementation passes (embedded LevelDB now, NATS JetStream later), in the way
 * aedes-persistence ships one abstract suite for all its backends. An implementation's test file calls
 * `cloudLogContract` with a fixture factory.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CloudEvent } from '../../shared/cloud-event.ts';
import { encode } from '../../shared/codec.ts';
import type { CloudLog } from '../../cloud/cloud-log.ts';
import type { WireLane } from '../../shared/uplink-wire.ts';

export interface CloudLogFixture {
  /** A freshly opened, empty log. */
  log: CloudLog;
  /** Opens the same log again, as after a restart. The suite closes the previous instance first. */
  reopen(): Promise<CloudLog>;
  /** Closes whatever instance is still open and deletes the log's data. */
  cleanup(): Promise<void>;
}

export function event(n: number, overrides: Partial<CloudEvent> = {}): CloudEvent {
  return {
    specversion: '1.0',
    id: `ev-${n}`,
    source: '/edges/edge-1/devices/dev-1',
    type: 'io.tributary.telemetry.temperature',
    subject: 'dev-1',
    time: new Date(Date.UTC(2025, 0, 1, 0, 0, n % 60)).toISOString(),
    datacontenttype: 'application/json',
    data: { n },
    ...overrides,
  };
}

export const HIGH: WireLane = 0;
export const NORMAL: WireLane = 1;
export const LOW: WireLane = 2;

/**
 * A batch as the edge sends it: its lane (normal unless given), sequence numbers and MessagePack-encoded
 * events, to spread into `commitBatch` after the edge id.
 */
export function batch(seqs: readonly number[], make: (seq: number) => CloudEvent = (s) => event(s), lane: WireLane = NORMAL): [WireLane, number[], Uint8Array[]] {
  return [lane, [...seqs], seqs.map((s) => encode(make(s)))];
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

export function cloudLogContract(name: string, open: () => Promise<CloudLogFixture>): void {
  describe(`${name} (CloudLog contract)`, () => {
    let fixture: CloudLogFixture;
    let log: CloudLog;

    beforeEach(async () => {
      fixture = await open();
      log = fixture.log;
    });

    afterEach(async () => {
      await fixture.cleanup();
    });

    async function restart(): Promise<CloudLog> {
      await log.close();
      log = await fixture.reopen();
      return log;
    }

    it('starts empty', async () => {
      expect(log.lastOffset).toBe(0);
      expect(await log.read(1, 10)).toEqual([]);
      expect(log.stats()).toMatchObject({ events: 0, lastOffset: 0 });
      expect(await log.highWaterMark('edge-1', NORMAL)).toBe(0);
    });

    it('appends a committed batch at consecutive offsets from 1, in batch order', async () => {
      const result = await log.commitBatch('edge-1', ...batch([1, 2, 3]));
      expect(result).toEqual({ appended: 3, duplicates: 0 });
      expect(log.lastOffset).toBe(3);
      const read = await log.read(1, 10);
      expect(read.map((e) => e.offset)).toEqual([1, 2, 3]);
      expect(read.map((e) => e.event)).toEqual([event(1), event(2), event(3)]);
      expect(await log.highWaterMark('edge-1', NORMAL)).toBe(3);
    });

    it('drops a re-sent batch as duplicates', async () => {
      await log.commitBatch('edge-1', ...batch([1, 2, 3]));
      const again = await log.commitBatch('edge-1', ...batch([1, 2, 3]));
      expect(again).toEqual({ appended: 0, duplicates: 3 });
      expect(log.lastOffset).toBe(3);
      expect(await log.read(1, 10)).toHaveLength(3);
    });

    it('appends only the new part of a partially overlapping batch', async () => {
      await log.commitBatch('edge-1', ...batch([1, 2, 3]));
      const overlap = await log.commitBatch('edge-1', ...batch([2, 3, 4, 5]));
      expect(overlap).toEqual({ appended: 2, duplicates: 2 });
      const read = await log.read(1, 10);
      expect(read.map((e) => e.offset)).toEqual([1, 2, 3, 4, 5]);
      expect(read.map((e) => e.event.id)).toEqual(['ev-1', 'ev-2', 'ev-3', 'ev-4', 'ev-5']);
      expect(await log.highWaterMark('edge-1', NORMAL)).toBe(5);
    });

    it('accepts a batch that skips sequence numbers (events the edge dropped on overflow)', async () => {
      await log.commitBatch('edge-1', ...batch([1, 2]));
      expect(await log.commitBatch('edge-1', ...batch([7, 8]))).toEqual({ appended: 2, duplicates: 0 });
      expect(await log.highWaterMark('edge-1', NORMAL)).toBe(8);
      expect(await log.commitBatch('edge-1', ...batch([5, 6]))).toEqual({ appended: 0, duplicates: 2 });
    });

    it('keeps a separate high-water mark for each edge', async () => {
      const a = await log.commitBatch('edge-a', ...batch([1, 2, 3], (s) => event(s, { id: `a-${s}` })));
      const b = await log.commitBatch('edge-b', ...batch([1, 2], (s) => event(s, { id: `b-${s}` })));
      expect(a.appended).toBe(3);
      expect(b).toEqual({ appended: 2, duplicates: 0 });
      expect(await log.highWaterMark('edge-a', NORMAL)).toBe(3);
      expect(await log.highWaterMark('edge-b', NORMAL)).toBe(2);
      expect(await log.highWaterMark('edge-c', NORMAL)).toBe(0);
      expect((await log.read(1, 10)).map((e) => e.event.id)).toEqual(['a-1', 'a-2', 'a-3', 'b-1', 'b-2']);
    });

    it('keeps a separate high-water mark for each lane of an edge: each lane numbers its events from 1', async () => {
      const id = (lane: WireLane) => (s: number) => event(s, { id: `l${lane}-${s}` });
      expect(await log.commitBatch('edge-1', ...batch([1, 2, 3], id(HIGH), HIGH))).toEqual({ appended: 3, duplicates: 0 });
      expect(await log.commitBatch('edge-1', ...batch([1, 2], id(NORMAL), NORMAL))).toEqual({ appended: 2, duplicates: 0 });
      expect(await log.commitBatch('edge-1', ...batch([1, 2, 3, 4], id(LOW), LOW))).toEqual({ appended: 4, duplicates: 0 });
      expect([await log.highWaterMark('edge-1', HIGH), await log.highWaterMark('edge-1', NORMAL), await log.highWaterMark('edge-1', LOW)]).toEqual([3, 2, 4]);
      expect(await log.highWaterMark('edge-2', HIGH)).toBe(0);
      // A re-sent batch is a duplicate in its own lane only.
      expect(await log.commitBatch('edge-1', ...batch([1, 2, 3], id(HIGH), HIGH))).toEqual({ appended: 0, duplicates: 3 });
      expect(await log.commitBatch('edge-1', ...batch([3, 4, 5], id(LOW), LOW))).toEqual({ appended: 1, duplicates: 2 });
      expect(await log.commitBatch('edge-1', ...batch([3, 4, 5], id(NORMAL), NORMAL))).toEqual({ appended: 3, duplicates: 0 });
      expect((await log.read(1, 20)).map((e) => e.event.id)).toEqual(['l0-1', 'l0-2', 'l0-3', 'l1-1', 'l1-2', 'l2-1', 'l2-2', 'l2-3', 'l2-4', 'l2-5', 'l1-3', 'l1-4', 'l1-5']);
    });

    it('commits the batches of one edge and lane one at a time, in call order, and the lanes independently', async () => {
      const id = (lane: WireLane) => (s: number) => event(s, { id: `l${lane}-${s}` });
      const results = await Promise.all([
        log.commitBatch('edge-1', ...batch(range(1, 30), id(LOW), LOW)),
        log.commitBatch('edge-1', ...batch(range(1, 20), id(HIGH), HIGH)),
        log.commitBatch('edge-1', ...batch(range(1, 30), id(LOW), LOW)),
        log.commitBatch('edge-1', ...batch(range(11, 40), id(HIGH), HIGH)),
        log.commitBatch('edge-1', ...batch(range(31, 35), id(LOW), LOW)),
      ]);
      expect(results).toEqual([
        { appended: 30, duplicates: 0 },
        { appended: 20, duplicates: 0 },
        { appended: 0, duplicates: 30 },
        { appended: 20, duplicates: 10 },
        { appended: 5, duplicates: 0 },
      ]);
      const ids = (await log.read(1, 200)).map((e) => e.event.id);
      expect(ids).toHaveLength(75);
      expect(ids.filter((i) => i.startsWith('l0-'))).toEqual(range(1, 40).map((n) => `l0-${n}`));
      expect(ids.filter((i) => i.startsWith('l2-'))).toEqual(range(1, 35).map((n) => `l2-${n}`));
      expect([await log.highWaterMark('edge-1', HIGH), await log.highWaterMark('edge-1', NORMAL), await log.highWaterMark('edge-1', LOW)]).toEqual([40, 0, 35]);
    });

    it('keeps the high-water mark of every lane across close and reopen', async () => {
      await log.commitBatch('edge-1', ...batch([1, 2], (s) => event(s, { id: `h-${s}` }), HIGH));
      await log.commitBatch('edge-1', ...batch([1, 2, 3]));
      await log.commitBatch('edge-1', ...batch([7], (s) => event(s, { id: `l-${s}` }), LOW));
      await restart();
      expect([await log.highWaterMark('edge-1', HIGH), await log.highWaterMark('edge-1', NORMAL), await log.highWaterMark('edge-1', LOW)]).toEqual([2, 3, 7]);
      expect(await log.commitBatch('edge-1', ...batch([2, 3], (s) => event(s, { id: `h-${s}` }), HIGH))).toEqual({ appended: 1, duplicates: 1 });
      expect(await log.commitBatch('edge-1', ...batch([7, 8], (s) => event(s, { id: `l-${s}` }), LOW))).toEqual({ appended: 1, duplicates: 1 });
      expect((await log.read(7, 10)).map((e) => e.event.id)).toEqual(['h-3', 'l-8']);
    });

    it('commits a batch exactly once when it is re-sent while the first copy is still committing', async () => {
      const results = await Promise.all([
        log.commitBatch('edge-1', ...batch(range(1, 50))),
        log.commitBatch('edge-1', ...batch(range(1, 50))),
        log.commitBatch('edge-1', ...batch(range(26, 75))),
      ]);
      expect(results.reduce((sum, r) => sum + r.appended, 0)).toBe(75);
      expect(log.lastOffset).toBe(75);
      const ids = (await log.read(1, 100)).map((e) => e.event.id);
      expect(ids).toEqual(range(1, 75).map((n) => `ev-${n}`));
    });

    it('gives concurrent batches of different edges distinct consecutive offsets', async () => {
      const edges = ['edge-a', 'edge-b', 'edge-c'];
      await Promise.all(edges.map((edge) => log.commitBatch(edge, ...batch(range(1, 20), (s) => event(s, { id: `${edge}-${s}` })))));
      const read = await log.read(1, 100);
      expect(read.map((e) => e.offset)).toEqual(range(1, 60));
      expect(new Set(read.map((e) => e.event.id)).size).toBe(60);
    });

    it('keeps events, offsets and high-water marks across close and reopen', async () => {
      await log.commitBatch('edge-1', ...batch([1, 2, 3]));
      await log.commitBatch('edge-2', ...batch([10, 11], (s) => event(s, { id: `e2-${s}` })));
      await restart();
      expect(log.lastOffset).toBe(5);
      expect((await log.read(1, 10)).map((e) => e.event.id)).toEqual(['ev-1', 'ev-2', 'ev-3', 'e2-10', 'e2-11']);
      expect(await log.highWaterMark('edge-1', NORMAL)).toBe(3);
      expect(await log.highWaterMark('edge-2', NORMAL)).toBe(11);
      expect(await log.commitBatch('edge-1', ...batch([2, 3, 4]))).toEqual({ appended: 1, duplicates: 2 });
      expect(log.lastOffset).toBe(6);
      expect((await log.read(6, 1))[0]).toEqual({ offset: 6, event: event(4) });
    });

    it('reads in pages: from an offset (inclusive), at most limit events', async () => {
      await log.commitBatch('edge-1', ...batch(range(1, 25)));
      const offsets = async (from: number, limit: number) => (await log.read(from, limit)).map((e) => e.offset);
      expect(await offsets(1, 10)).toEqual(range(1, 10));
      expect(await offsets(11, 10)).toEqual(range(11, 20));
      expect(await offsets(21, 10)).toEqual(range(21, 25));
      expect(await offsets(26, 10)).toEqual([]);
      expect(await offsets(1000, 10)).toEqual([]);
      expect(await offsets(7, 1)).toEqual([7]);
      expect(await offsets(1, 0)).toEqual([]);
      expect(await offsets(0, 3)).toEqual([1, 2, 3]);
      expect(await offsets(1, 1000)).toEqual(range(1, 25));
    });

    it('round-trips events: binary data, extension attributes and absent optional attributes', async () => {
      const bytes = new Uint8Array([0, 1, 2, 250, 255]);
      const binary = event(1, { datacontenttype: 'application/octet-stream', data: bytes, edgeid: 'edge-1', priority: 3 });
      const minimal: CloudEvent = { specversion: '1.0', id: 'm-1', source: '/cloud', type: 'io.tributary.alert' };
      await log.commitBatch('edge-1', NORMAL, [1], [encode(binary)]);
      await log.append([minimal]);
      const [first, second] = await log.read(1, 2);
      expect(first.event.data).toBeInstanceOf(Uint8Array);
      expect([...(first.event.data as Uint8Array)]).toEqual([...bytes]);
      expect(first.event).toMatchObject({ edgeid: 'edge-1', priority: 3, id: 'ev-1' });
      expect(second.event).toEqual(minimal);
    });

    it('calls onAppend with the new last offset once the events are readable, until unsubscribed', async () => {
      const seen: number[] = [];
      const readable: number[] = [];
      const unsubscribe = log.onAppend((last) => {
        seen.push(last);
        void log.read(last, 1).then((e) => readable.push(e[0]?.offset ?? -1));
      });
      await log.commitBatch('edge-1', ...batch([1, 2, 3]));
      await log.append([event(100)]);
      await log.commitBatch('edge-1', ...batch([1, 2, 3]));
      expect(seen).toEqual([3, 4]);
      await expect.poll(() => readable).toEqual([3, 4]);
      unsubscribe();
      await log.append([event(101)]);
      expect(seen).toEqual([3, 4]);
    });

    it('isolates a listener that throws: the commit still resolves and the other listeners still run', async () => {
      const seen: number[] = [];
      log.onAppend(() => {
        throw new Error('a broken subscriber');
      });
      log.onAppend((last) => seen.push(last));
      const timeout = new Promise<'timed out'>((resolve) => setTimeout(() => resolve('timed out'), 2_000));
      expect(await Promise.race([log.commitBatch('edge-1', ...batch([1, 2])), timeout])).toEqual({ appended: 2, duplicates: 0 });
      expect(await Promise.race([log.append([event(3)]), timeout])).toEqual({ first: 3, last: 3 });
      expect(seen).toEqual([2, 3]);
    });

    it('appends events made in the cloud after the committed ones and reports their offsets', async () => {
      await log.commitBatch('edge-1', ...batch([1, 2]));
      const offsets = await log.append([event(10, { source: '/cloud/alerts' }), event(11, { source: '/cloud/alerts' })]);
      expect(offsets).toEqual({ first: 3, last: 4 });
      expect(log.lastOffset).toBe(4);
      expect((await log.read(3, 10)).map((e) => e.event)).toEqual([event(10, { source: '/cloud/alerts' }), event(11, { source: '/cloud/alerts' })]);
      // Cloud-made events do not touch an edge's high-water mark.
      expect(await log.highWaterMark('edge-1', NORMAL)).toBe(2);
      expect(await log.commitBatch('edge-1', ...batch([3]))).toEqual({ appended: 1, duplicates: 0 });
      expect(log.lastOffset).toBe(5);
    });

    it('stores named cursors that survive close and reopen', async () => {
      expect(await log.getCursor('dashboard')).toBeUndefined();
      await log.setCursor('dashboard', 0);
      await log.setCursor('alerts', 41);
      await log.setCursor('alerts', 42);
      await log.setCursor('webhook/a b', 7);
      expect(await log.getCursor('dashboard')).toBe(0);
      expect(await log.getCursor('alerts')).toBe(42);
      await restart();
      expect(await log.getCursor('dashboard')).toBe(0);
      expect(await log.getCursor('alerts')).toBe(42);
      expect(await log.getCursor('webhook/a b')).toBe(7);
      expect(await log.getCursor('webhook/a')).toBeUndefined();
    });

    it('keeps cursors apart from edge high-water marks of the same name', async () => {
      await log.setCursor('edge-1', 99);
      expect(await log.highWaterMark('edge-1', NORMAL)).toBe(0);
      await log.commitBatch('edge-1', ...batch([1]));
      expect(await log.getCursor('edge-1')).toBe(99);
    });

    it('reports stats: events, bytes and last offset, also after reopen', async () => {
      await log.commitBatch('edge-1', ...batch(range(1, 10)));
      await log.append([event(11)]);
      const stats = log.stats();
      expect(stats.events).toBe(11);
      expect(stats.lastOffset).toBe(11);
      expect(stats.bytes).toBeGreaterThan(11 * 50);
      await restart();
      expect(log.stats()).toEqual(stats);
    });
  });
}
