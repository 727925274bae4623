import { describe, expect, it } from 'vitest';
import { decode, encode } from '../../shared/codec.ts';
import { EventIdGenerator } from '../../shared/event-id.ts';
import { DataKind, EventTemplate } from '../../shared/event-template.ts';

const attributes = { source: '/edges/e/devices/d-1', type: 'io.tributary.telemetry.t', subject: 'd-1' };
const time = '2024-05-01T12:00:00.123Z';

describe('EventTemplate', () => {
  it('writes the bytes encode() writes for the same event, with JSON data or bytes of every bin size', () => {
    const template = new EventTemplate(attributes);
    const ids = new EventIdGenerator(() => Date.UTC(2024, 4, 1));
    for (const [kind, data] of [
      [DataKind.Json, { celsius: 21.5, tags: ['a'] }],
      [DataKind.Bytes, new Uint8Array([1, 2, 3])],
      [DataKind.Bytes, new Uint8Array(300).fill(7)],
      [DataKind.Bytes, new Uint8Array(70_000).fill(9)],
    ] as const) {
      const bytes = template.write(ids, encode(time), kind, kind === DataKind.Json ? encode(data) : (data as Uint8Array));
      const event = decode<Record<string, unknown>>(bytes);
      const expected = {
        specversion: '1.0',
        id: event.id,
        ...attributes,
        time,
        datacontenttype: kind === DataKind.Json ? 'application/json' : 'application/octet-stream',
        data,
      };
      expect(Buffer.from(bytes).equals(Buffer.from(encode(expected)))).toBe(true);
      expect(Object.keys(event)).toEqual(['specversion', 'id', 'source', 'type', 'subject', 'time', 'datacontenttype', 'data']);
    }
  });

  it('gives each event bytes of its own that later events do not overwrite', () => {
    const template = new EventTemplate(attributes);
    const ids = new EventIdGenerator();
    const first = template.write(ids, encode(time), DataKind.Json, encode({ n: 0 }));
    const copy = Uint8Array.from(first);
    // Enough events to fill several of the shared chunks the bytes are carved from.
    let last = first;
    for (let n = 1; n < 5000; n++) last = template.write(ids, encode(time), DataKind.Json, encode({ n, pad: 'x'.repeat(50) }));
    expect(Array.from(first)).toEqual(Array.from(copy));
    expect(decode<{ data: { n: number } }>(last).data.n).toBe(4999);
  });
});
