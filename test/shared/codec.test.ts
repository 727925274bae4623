import { describe, expect, it } from 'vitest';
import { decode, encode } from '../../shared/codec.ts';
import { WireError } from '../../shared/errors.ts';

describe('encode and decode', () => {
  it('round-trip plain objects, nested objects and arrays', () => {
    const value = {
      specversion: '1.0',
      id: '018f2b1e-0000-7000-8000-000000000000',
      data: { temperature: 23.5, tags: ['a', 'b'], nested: { deep: { deeper: [1, [2, [3]]] } }, ok: true, none: null },
      text: 'grüße 🌡️',
    };
    expect(decode(encode(value))).toEqual(value);
  });

  it('round-trip numbers of every size and sign', () => {
    const numbers = [0, 1, -1, 127, 128, -33, 255, 65_536, 2 ** 32, -(2 ** 31), 2 ** 53 - 1, -(2 ** 53 - 1), 23.5, -0.125, 1e-300, Number.MAX_VALUE];
    expect(decode(encode(numbers))).toEqual(numbers);
  });

  it('round-trips binary data as bytes with the same content', () => {
    const bytes = new Uint8Array([0, 1, 2, 0x7f, 0x80, 0xfe, 0xff]);
    const out = decode<{ payload: Uint8Array }>(encode({ payload: bytes }));
    expect(out.payload).toBeInstanceOf(Uint8Array);
    expect(Array.from(out.payload)).toEqual(Array.from(bytes));
  });

  it('encodes only the viewed bytes of a Uint8Array that is a window on a larger buffer', () => {
    const backing = new Uint8Array([9, 9, 1, 2, 3, 9, 9]);
    const view = backing.subarray(2, 5);
    const out = decode<Uint8Array>(encode(view));
    expect(Array.from(out)).toEqual([1, 2, 3]);
  });

  it('writes standard MessagePack that any reader can decode (no msgpackr record extension)', () => {
    // MessagePack spec: fixmap(1) 0x81, fixstr(1) 0xa1 'a', positive fixint 1.
    expect(Array.from(encode({ a: 1 }))).toEqual([0x81, 0xa1, 0x61, 0x01]);
    // Repeated object shapes stay plain maps: fixarray(2), then two fixmaps.
    expect(Array.from(encode([{ a: 1 }, { a: 2 }]))).toEqual([0x92, 0x81, 0xa1, 0x61, 0x01, 0x81, 0xa1, 0x61, 0x02]);
    // A bin 8 value written by another MessagePack writer decodes to the bytes.
    expect(Array.from(decode<Uint8Array>(new Uint8Array([0xc4, 0x02, 0xca, 0xfe])))).toEqual([0xca, 0xfe]);
  });

  it('decodes MessagePack maps as plain objects', () => {
    const out = decode(new Uint8Array([0x82, 0xa1, 0x78, 0x01, 0xa1, 0x79, 0xc3]));
    expect(out).toEqual({ x: 1, y: true });
    expect(out).not.toBeInstanceOf(Map);
  });
});

describe('decode of bytes that are not MessagePack', () => {
  it('throws a WireError that says how many bytes it could not decode', () => {
    const garbage = [
      encode({ name: 'a long string value' }).subarray(0, 5), // truncated
      new Uint8Array([0x81]), // a map header with no entries after it
      new Uint8Array([0x01, 0x02]), // one value and trailing bytes
    ];
    for (const bytes of garbage) {
      let caught: unknown;
      try {
        decode(bytes);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(WireError);
      expect((caught as WireError).code).toBe('ERR_WIRE');
      expect((caught as WireError).message).toContain(`cannot decode MessagePack value of ${bytes.byteLength} bytes`);
      expect((caught as WireError).cause).toBeInstanceOf(Error);
    }
  });

  it('throws a WireError for an empty buffer', () => {
    expect(() => decode(new Uint8Array(0))).toThrow(WireError);
  });
});
