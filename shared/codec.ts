/**
 * The binary codec for events at rest and on the edge-cloud link: standard MessagePack (no msgpackr record
 * extension, so any MessagePack reader can decode the buffer and the log).
 */
import { Packr, Unpackr } from 'msgpackr';
import { WireError } from './errors.ts';

const packr = new Packr({ useRecords: false, structuredClone: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, mapsAsObjects: true });

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Bytes of the MessagePack bin header for `length` bytes (bin 8, 16 or 32). */
export function binHeaderLength(length: number): 2 | 3 | 5 {
  return length < 0x100 ? 2 : length < 0x10000 ? 3 : 5;
}

/** Writes the bin header for `length` bytes at `at`; returns the offset after it. */
export function writeBinHeader(out: Uint8Array, at: number, length: number): number {
  if (length < 0x100) {
    out[at] = 0xc4;
    out[at + 1] = length;
    return at + 2;
  }
  if (length < 0x10000) {
    out[at] = 0xc5;
    out[at + 1] = length >> 8;
    out[at + 2] = length & 0xff;
    return at + 3;
  }
  out[at] = 0xc6;
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(at + 1, length);
  return at + 5;
}

export function decode<T = unknown>(bytes: Uint8Array): T {
  try {
    return unpackr.unpack(bytes) as T;
  } catch (err) {
    throw new WireError(`cannot decode MessagePack value of ${bytes.byteLength} bytes`, { cause: err });
  }
}
