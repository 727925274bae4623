import { describe, expect, it } from 'vitest';
import { decode, encode } from '../../shared/codec.ts';
import { eventSource, locateSource, sourceIsWithin } from '../../shared/event-source.ts';
import type { SourceFound } from '../../shared/event-source.ts';
import { TopicMapper } from '../../shared/topic-mapping.ts';

const utf8 = new TextEncoder();

/** A str header in the given form (MessagePack spec, "str format family"), then the text. */
function str(text: string, form: 'fix' | 8 | 16 | 32 = 'fix'): number[] {
  const b = [...utf8.encode(text)];
  const n = b.length;
  if (form === 'fix') return [0xa0 | n, ...b];
  if (form === 8) return [0xd9, n, ...b];
  if (form === 16) return [0xda, n >> 8, n & 0xff, ...b];
  return [0xdb, 0, 0, n >> 8, n & 0xff, ...b];
}

function bytes(...parts: number[][]): Uint8Array {
  return Uint8Array.from(parts.flat());
}

/** A pseudo-random MessagePack-able value of every kind, nested up to `depth`. */
function randomValue(next: () => number, depth: number): unknown {
  const kind = Math.floor(next() * (depth > 0 ? 12 : 9));
  switch (kind) {
    case 0:
      return null;
    case 1:
      return next() < 0.5;
    case 2:
      return Math.floor(next() * 300) - 150;
    case 3:
      return Math.floor(next() * 2 ** 40);
    case 4:
      return -Math.floor(next() * 2 ** 33);
    case 5:
      return next() * 1e6;
    case 6:
      return 'x'.repeat(Math.floor(next() * 300));
    case 7:
      return new Uint8Array(Math.floor(next() * 70_000 * (next() < 0.1 ? 1 : 0.001)));
    case 8:
      return new Date(Math.floor(next() * 2 ** 41));
    case 9:
    case 10: {
      const out: Record<string, unknown> = {};
      const n = Math.floor(next() * 20);
      for (let i = 0; i < n; i++) out[`k${i}${'y'.repeat(Math.floor(next() * 40))}`] = randomValue(next, depth - 1);
      return out;
    }
    default:
      return Array.from({ length: Math.floor(next() * 20) }, () => randomValue(next, depth - 1));
  }
}

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('locateSource', () => {
  it('finds the source of an event as the edge writes it, from its per-topic template', () => {
    const mapper = new TopicMapper({ edgeId: 'edge-1', rules: [{ topic: 'telemetry/{deviceId}/{metric}', type: 'io.tributary.telemetry.{metric}' }] });
    for (const payload of ['{"celsius": 21.5, "tags": ["a", "b"]}', 'not json \u0000\u0001']) {
      const result = mapper.mapEncoded('telemetry/dev-7/temperature', utf8.encode(payload));
      expect(result.ok).toBe(true);
      if (!result.ok) return;
      expect(eventSource(result.bytes)).toBe('/edges/edge-1/devices/dev-7');
    }
  });

  it('agrees with a full decode for events of every shape (seeded random values, source in any position)', () => {
    const next = prng(5);
    for (let i = 0; i < 300; i++) {
      const event: Record<string, unknown> = {};
      const n = Math.floor(next() * 10);
      const position = Math.floor(next() * (n + 1));
      for (let k = 0; k <= n; k++) {
        if (k === position) event.source = `/edges/e${i}/devices/${'d'.repeat(Math.floor(next() * 300))}`;
        else event[`attr${k}`] = randomValue(next, 3);
      }
      const encoded = encode(event);
      expect(eventSource(encoded)).toBe((decode(encoded) as { source: string }).source);
    }
  });

  it('reads keys and the source in every str form, and maps with 16- and 32-bit headers', () => {
    for (const form of ['fix', 8, 16, 32] as const) {
      const event = bytes([0xde, 0, 2], str('id', form), str('1', form), str('source', form), str('/edges/a', form));
      expect(eventSource(event)).toBe('/edges/a');
      const event32 = bytes([0xdf, 0, 0, 0, 2], str('source', form), str('/edges/b', form), str('data', form), [0xc0]);
      expect(eventSource(event32)).toBe('/edges/b');
    }
  });

  it('skips values of every MessagePack type to reach a source after them', () => {
    const values: number[][] = [
      [0x7f], [0xe0], [0xc0], [0xc2], [0xc3], [0xcc, 1], [0xcd, 1, 2], [0xce, 1, 2, 3, 4], [0xcf, 1, 2, 3, 4, 5, 6, 7, 8],
      [0xd0, 1], [0xd1, 1, 2], [0xd2, 1, 2, 3, 4], [0xd3, 1, 2, 3, 4, 5, 6, 7, 8], [0xca, 1, 2, 3, 4], [0xcb, 1, 2, 3, 4, 5, 6, 7, 8],
      [0xc4, 2, 0xa6, 0xa6], [0xc5, 0, 1, 0x81], [0xc6, 0, 0, 0, 1, 0xa6],
      // Timestamps (extension type -1) of 32, 64 and 96 bits: dates.
      [0xd6, 0xff, 1, 2, 3, 4], [0xd7, 0xff, 0, 0, 0, 0, 1, 2, 3, 4], [0xc7, 12, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
      [0x92, 0x01, 0x91, 0x81, 0xa1, 0x61, 0xc0], [0xdc, 0, 1, 0x01], [0xdd, 0, 0, 0, 1, 0x01],
      // Nested maps whose keys are "source" do not count: only the event's own attributes do.
      [0x81, ...str('source'), ...str('/edges/forged')], [0xde, 0, 1, ...str('source'), 0x01], [0xdf, 0, 0, 0, 1, 0x01, 0x02],
    ];
    for (const value of values) {
      const event = bytes([0x82], str('data'), value, str('source'), str('/edges/real'));
      expect(eventSource(event), `after ${value.map((b) => b.toString(16)).join(' ')}`).toBe('/edges/real');
      expect(decode<{ source: string }>(event).source).toBe('/edges/real');
    }
  });

  it('says "missing" for an event without a source or with a source that is not a string', () => {
    expect(locateSource(encode({ id: '1', type: 't' }))).toMatchObject({ found: false, reason: 'missing', message: 'the event has no "source"' });
    expect(locateSource(encode({ id: '1', source: 42 }))).toMatchObject({ found: false, reason: 'missing', message: 'the event\'s "source" is not a string' });
    expect(locateSource(encode({ source: { nested: '/edges/a' } }))).toMatchObject({ found: false, reason: 'missing' });
    expect(locateSource(encode({}))).toMatchObject({ found: false, reason: 'missing' });
  });

  it('refuses an event that names "source" twice, whichever comes first (a decoder keeps the last)', () => {
    const twice = bytes([0x82], str('source'), str('/edges/a'), str('source', 8), str('/edges/b'));
    expect(decode<{ source: string }>(twice).source).toBe('/edges/b');
    expect(locateSource(twice)).toMatchObject({ found: false, reason: 'malformed', message: 'the event names "source" twice' });
    const firstNotString = bytes([0x82], str('source'), [0x01], str('source'), str('/edges/b'));
    expect(locateSource(firstNotString)).toMatchObject({ found: false, reason: 'malformed' });
  });

  it.each([
    ['empty bytes', []],
    ['a map that is not one (an array)', [0x91, 0xa1, 0x61]],
    ['a string', str('/edges/a')],
    ['a map cut short in its header', [0xde, 0]],
    ['a map with fewer pairs than it says', [0x82, ...str('source'), ...str('/edges/a')]],
    ['a key that is not a string', [0x81, 0x01, ...str('/edges/a')]],
    ['a binary key', [0x81, 0xc4, 6, ...utf8.encode('source'), ...str('/edges/a')]],
    ['a source cut short', [0x81, ...str('source'), 0xa8, 0x2f, 0x65]],
    ['a value cut short', [0x82, ...str('data'), 0xc5, 0xff, 0xff, 1, ...str('source'), ...str('/edges/a')]],
    ['an array claiming more elements than there are bytes', [0x82, ...str('data'), 0xdd, 0xff, 0xff, 0xff, 0xff, ...str('source'), ...str('/edges/a')]],
    ['the never-used byte 0xc1', [0x82, ...str('data'), 0xc1, ...str('source'), ...str('/edges/a')]],
    ['an extension type that readers do not know', [0x82, ...str('data'), 0xd4, 1, 0xa6, ...str('source'), ...str('/edges/a')]],
    ['an extension of 16 bits', [0x82, ...str('data'), 0xc8, 0, 1, 0xff, 0xa6, ...str('source'), ...str('/edges/a')]],
    ['bytes after the map', [0x81, ...str('source'), ...str('/edges/a'), 0xc0]],
  ])('says "malformed" for %s', (_name, input) => {
    const at = locateSource(Uint8Array.from(input));
    expect(at).toMatchObject({ found: false, reason: 'malformed' });
  });

  it('never throws on any cut or bit flip of a valid event, and never reports a source a decoder would not see', () => {
    const next = prng(9);
    const event = encode({ specversion: '1.0', id: 'x', source: '/edges/e/devices/d', type: 't', data: { a: [1, 2.5, 'three', null, true], b: new Uint8Array(40) } });
    for (let cut = 0; cut < event.length; cut++) {
      expect(locateSource(event.subarray(0, cut)).found).toBe(false);
    }
    for (let i = 0; i < 3000; i++) {
      const flipped = Uint8Array.from(event);
      flipped[Math.floor(next() * flipped.length)] ^= 1 << Math.floor(next() * 8);
      const at = locateSource(flipped);
      if (!at.found) continue;
      let decoded: unknown;
      try {
        decoded = decode(flipped);
      } catch {
        continue; // msgpackr is stricter about UTF-8 and timestamps than a walk of the headers
      }
      expect((decoded as { source: unknown }).source).toBe(eventSource(flipped));
    }
  });

  it('reads an event that is a window on a larger buffer', () => {
    const event = encode({ source: '/edges/w' });
    const backing = new Uint8Array(event.length + 10).fill(0xc1);
    backing.set(event, 5);
    expect(eventSource(backing.subarray(5, 5 + event.length))).toBe('/edges/w');
  });
});

describe('sourceIsWithin', () => {
  const root = utf8.encode('/edges/edge-1');
  const within = (source: string): boolean => {
    const event = encode({ id: '1', source });
    const at = locateSource(event);
    expect(at.found).toBe(true);
    return sourceIsWithin(event, at as SourceFound, root);
  };

  it('holds the root itself and every path under it', () => {
    expect(within('/edges/edge-1')).toBe(true);
    expect(within('/edges/edge-1/')).toBe(true);
    expect(within('/edges/edge-1/devices/sensor-9')).toBe(true);
  });

  it('does not hold another edge, an edge whose name starts the same, or the root without its slash', () => {
    expect(within('/edges/edge-2/devices/d')).toBe(false);
    expect(within('/edges/edge-10')).toBe(false);
    expect(within('/edges/edge-1x/devices/d')).toBe(false);
    expect(within('/edges/edge-')).toBe(false);
    expect(within('edges/edge-1')).toBe(false);
    expect(within('/EDGES/edge-1')).toBe(false);
    expect(within('')).toBe(false);
  });
});
