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

/**
 * Writes a MessagePack header: `small` (a fixed-size type with the length in its low bits) below `fixLimit`,
 * else the 8-bit (when `t8` is given), 16-bit or 32-bit form. Returns the offset after it.
 */
function writeHeader(out: Uint8Array, at: number, length: number, small: number, fixLimit: number, t8: number | null, t16: number, t32: number): number {
  if (length < fixLimit) {
    out[at] = small | length;
    return at + 1;
  }
  if (t8 !== null && length < 0x100) {
    out[at] = t8;
    out[at + 1] = length;
    return at + 2;
  }
  if (length < 0x10000) {
    out[at] = t16;
    out[at + 1] = length >> 8;
    out[at + 2] = length & 0xff;
    return at + 3;
  }
  out[at] = t32;
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(at + 1, length);
  return at + 5;
}

/** Bytes of the MessagePack array header for `n` elements (fixarray, array 16 or 32). */
export function arrayHeaderLength(n: number): 1 | 3 | 5 {
  return n < 0x10 ? 1 : n < 0x10000 ? 3 : 5;
}

/** Writes the array header for `n` elements at `at`; returns the offset after it. */
export function writeArrayHeader(out: Uint8Array, at: number, n: number): number {
  return writeHeader(out, at, n, 0x90, 0x10, null, 0xdc, 0xdd);
}

/** Bytes of the MessagePack str header for `length` UTF-8 bytes (fixstr, str 8, 16 or 32). */
export function strHeaderLength(length: number): 1 | 2 | 3 | 5 {
  return length < 0x20 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : 5;
}

/** Writes the str header for `length` UTF-8 bytes at `at`; returns the offset after it. */
export function writeStrHeader(out: Uint8Array, at: number, length: number): number {
  return writeHeader(out, at, length, 0xa0, 0x20, 0xd9, 0xda, 0xdb);
}

/** Bytes of the MessagePack bin header for `length` bytes (bin 8, 16 or 32). */
export function binHeaderLength(length: number): 2 | 3 | 5 {
  return length < 0x100 ? 2 : length < 0x10000 ? 3 : 5;
}

/** Writes the bin header for `length` bytes at `at`; returns the offset after it. */
export function writeBinHeader(out: Uint8Array, at: number, length: number): number {
  return writeHeader(out, at, length, 0, 0, 0xc4, 0xc5, 0xc6);
}

export function decode<T = unknown>(bytes: Uint8Array): T {
  try {
    return unpackr.unpack(bytes) as T;
  } catch (err) {
    throw new WireError(`cannot decode MessagePack value of ${bytes.byteLength} bytes`, { cause: err });
  }
}
