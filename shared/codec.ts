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

export function decode<T = unknown>(bytes: Uint8Array): T {
  try {
    return unpackr.unpack(bytes) as T;
  } catch (err) {
    throw new WireError(`cannot decode MessagePack value of ${bytes.byteLength} bytes`, { cause: err });
  }
}
