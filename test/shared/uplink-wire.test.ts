import { describe, expect, it } from 'vitest';
import { decode, encode } from '../../shared/codec.ts';
import { WireError } from '../../shared/errors.ts';
import type { UplinkBatch, WireLane } from '../../shared/uplink-wire.ts';
import { decodeBatch, edgeOfUplinkTopic, encodeBatch, encodeEntries, UPLINK_TOPIC_PREFIX, uplinkTopic, WIRE_VERSION } from '../../shared/uplink-wire.ts';

const event = (n: number) => ({ specversion: '1.0', id: `id-${n}`, source: '/edges/e1/devices/d', type: 'io.tributary.telemetry.t', data: n });

function batchOf(seqs: number[], lane: WireLane = 1): UplinkBatch {
  return { v: WIRE_VERSION, edge: 'e1', lane, seqs, events: seqs.map((s) => encode(event(s))) };
}

function wireError(raw: unknown): WireError {
  try {
    decodeBatch(encode(raw));
  } catch (err) {
    expect(err).toBeInstanceOf(WireError);
    return err as WireError;
  }
  throw new Error(`expected ${JSON.stringify(raw)} to be rejected`);
}

describe('encodeBatch and decodeBatch', () => {
  it('round-trip a batch, with each event still decodable to the original', () => {
    const batch = batchOf([5, 6, 9]);
    const out = decodeBatch(encodeBatch(batch));
    expect(out.v).toBe(WIRE_VERSION);
    expect(out.edge).toBe('e1');
    expect(out.seqs).toEqual([5, 6, 9]);
    expect(out.events).toHaveLength(3);
    out.events.forEach((bytes, i) => {
      expect(bytes).toBeInstanceOf(Uint8Array);
      expect(Array.from(bytes)).toEqual(Array.from(batch.events[i]));
      expect(decode(bytes)).toEqual(event(batch.seqs[i]));
    });
  });

  it('carries sequence numbers up to 2^53-1 and an empty batch', () => {
    expect(decodeBatch(encodeBatch(batchOf([2 ** 32, 2 ** 53 - 1]))).seqs).toEqual([2 ** 32, 2 ** 53 - 1]);
    expect(decodeBatch(encodeBatch(batchOf([]))).seqs).toEqual([]);
  });

  it('round-trip the lane of a batch', () => {
    for (const lane of [0, 1, 2] as const) {
      const out = decodeBatch(encodeBatch(batchOf([1, 2], lane)));
      expect(out.lane).toBe(lane);
      expect(out.seqs).toEqual([1, 2]);
    }
  });

  it('reads a version 1 batch, from an edge older than lanes, as the normal lane', () => {
    const { lane: _lane, ...old } = batchOf([3, 4]);
    const out = decodeBatch(encode({ ...old, v: 1 }));
    expect(out.lane).toBe(1);
    expect(out.seqs).toEqual([3, 4]);
    expect(wireError({ ...batchOf([1]), v: 1, lane: 0 }).message).toBe('a version 1 uplink batch has no lane; lanes came with version 2');
  });

  it('refuses a version 2 batch without a lane (a version 1 cloud refuses every version 2 batch: no lane is deduplicated against another)', () => {
    const { lane: _lane, ...noLane } = batchOf([3]);
    expect(wireError(noLane).message).toBe('a version 2 uplink batch must name its lane: 0 (high), 1 (normal) or 2 (low)');
    expect(WIRE_VERSION).toBe(2);
  });

  it('rejects a lane that is not 0, 1 or 2, naming the value', () => {
    const cases: [unknown, string][] = [[3, '3'], [-1, '-1'], [1.5, '1.5'], ['1', '"1"'], [null, 'null'], [true, 'true'], [[1], '[1]']];
    for (const [lane, shown] of cases) {
      expect(wireError({ ...batchOf([1]), lane }).message).toBe(`uplink batch lane must be 0 (high), 1 (normal) or 2 (low), not ${shown}`);
    }
  });

  it('writes the same bytes as a MessagePack encoder would for the batch object', () => {
    const sizes = [0, 1, 200, 255, 256, 300, 65_535, 65_536, 70_000];
    const seqs = [1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1];
    for (const n of [0, 1, 15, 16, sizes.length]) {
      for (const edge of ['e1', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(64), 'gw-é']) {
        const entries = Array.from({ length: n }, (_, i) => ({ seq: seqs[i % seqs.length] + (i >= seqs.length ? i : 0), value: new Uint8Array(sizes[i % sizes.length]).fill(i) }));
        entries.sort((a, b) => a.seq - b.seq);
        const expected = encode({ v: WIRE_VERSION, edge, lane: 2, seqs: entries.map((e) => e.seq), events: entries.map((e) => e.value) });
        const bytes = encodeEntries(edge, 2, entries);
        expect(Buffer.from(bytes).equals(Buffer.from(expected)), `${n} entries, edge ${edge}`).toBe(true);
      }
    }
    const many = Array.from({ length: 70_000 }, (_, i) => ({ seq: i + 1, value: new Uint8Array([i & 0xff]) }));
    const out = decodeBatch(encodeEntries('e1', 0, many));
    expect(out.seqs).toHaveLength(70_000);
    expect(out.seqs[69_999]).toBe(70_000);
    expect([...out.events[300]]).toEqual([300 & 0xff]);
  });

  it('rejects bytes that are not MessagePack', () => {
    expect(() => decodeBatch(new Uint8Array([0x81]))).toThrow(WireError);
  });

  it('rejects a value that is not a map', () => {
    expect(wireError(42).message).toBe('uplink batch is not a map');
    expect(wireError(null).message).toBe('uplink batch is not a map');
    expect(() => decodeBatch(encode([1, 2]))).toThrow(WireError);
  });

  it('rejects another wire version, naming both versions', () => {
    const other = WIRE_VERSION + 1;
    const err = wireError({ ...batchOf([1]), v: other });
    expect(err.message).toContain(`wire version ${other}`);
    expect(err.message).toContain(`speaks 1 and ${WIRE_VERSION}`);
    expect(wireError({ ...batchOf([1]), v: undefined }).message).toContain('wire version undefined');
  });

  it('rejects a batch without an edge id', () => {
    const { edge: _edge, ...noEdge } = batchOf([1]);
    expect(wireError(noEdge).message).toBe('uplink batch has no edge id');
    expect(wireError({ ...batchOf([1]), edge: '' }).message).toBe('uplink batch has no edge id');
    expect(wireError({ ...batchOf([1]), edge: 7 }).message).toBe('uplink batch has no edge id');
  });

  it('rejects a batch whose sequence numbers and events do not pair up', () => {
    const msg = 'uplink batch must carry as many sequence numbers as events';
    expect(wireError({ ...batchOf([1, 2]), seqs: [1] }).message).toBe(msg);
    expect(wireError({ ...batchOf([1]), seqs: undefined }).message).toBe(msg);
    expect(wireError({ ...batchOf([1]), events: 'x' }).message).toBe(msg);
  });

  it('rejects sequence numbers that are not increasing positive integers, giving the index', () => {
    const cases: [number[], number][] = [[[3, 3], 1], [[3, 2], 1], [[1, 2, 5, 4], 3], [[0, 1], 0], [[-1], 0], [[1.5], 0], [[1, 2 ** 53], 1]];
    for (const [seqs, index] of cases) {
      const err = wireError(batchOf(seqs));
      expect(err.message).toBe(`uplink batch sequence numbers must be increasing positive integers (index ${index})`);
    }
  });

  it('rejects an event that is not binary, giving its index', () => {
    const batch = { ...batchOf([1, 2]), events: [encode(event(1)), event(2)] };
    expect(wireError(batch).message).toBe('uplink batch event 1 is not binary');
    expect(wireError({ ...batchOf([1]), events: ['text'] }).message).toBe('uplink batch event 0 is not binary');
  });
});

describe('uplinkTopic and edgeOfUplinkTopic', () => {
  it('round-trip an edge id through the batch topic', () => {
    for (const edge of ['e1', 'edge-7', 'plant.north_gw', 'gw 2']) {
      const topic = uplinkTopic(edge);
      expect(topic.startsWith(UPLINK_TOPIC_PREFIX)).toBe(true);
      expect(topic.endsWith('/batches')).toBe(true);
      expect(edgeOfUplinkTopic(topic)).toBe(edge);
    }
    expect(uplinkTopic('e1')).toBe('tributary/v1/edges/e1/batches');
  });

  it('returns undefined for topics that are not uplink batch topics', () => {
    for (const topic of [
      'telemetry/dev1/temperature',
      'tributary/v1/edges/e1/commands',
      'tributary/v2/edges/e1/batches',
      'tributary/v1/edges//batches',
      'tributary/v1/edges/batches',
      'tributary/v1/edges/a/b/batches',
      'x/tributary/v1/edges/e1/batches',
      'tributary/v1/edges/e1/batches/extra',
      '',
    ]) {
      expect(edgeOfUplinkTopic(topic)).toBeUndefined();
    }
  });
});
