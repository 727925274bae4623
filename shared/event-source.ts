/**
 * The `source` attribute of an event held as MessagePack bytes (the edge buffer's values, the uplink's batch
 * entries), read without decoding the event. The cloud checks the source of every event it ingests (an edge may
 * only send events of its own, docs/security.md), tens of thousands a second, so this walks the event's top-level
 * map: each key is compared as bytes, each other value is skipped by its header alone, and nothing is allocated.
 *
 * The walk covers the whole map, not just up to the first `source`: a decoder keeps the last of two equal keys, so
 * an event that names `source` twice is refused rather than judged by its first. An event that is not one
 * well-formed MessagePack map with string keys, or that holds an extension type other than the timestamp, is
 * `malformed`: the log's readers could not decode it either.
 */

/** Where the source is: its UTF-8 bytes are `bytes[start, end)`. */
export interface SourceFound {
  found: true;
  start: number;
  end: number;
}

export interface SourceProblem {
  found: false;
  /** `missing`: a well-formed event without a string `source`; `malformed`: not a well-formed event map. */
  reason: 'missing' | 'malformed';
  /** What is wrong, for a log line (never the event's content). */
  message: string;
}

export type SourceLocation = SourceFound | SourceProblem;

/** `source` as UTF-8. */
const SOURCE = Uint8Array.from([0x73, 0x6f, 0x75, 0x72, 0x63, 0x65]);

const decoder = new TextDecoder();

const problem = (reason: SourceProblem['reason'], message: string): SourceProblem => ({ found: false, reason, message });

/** Where the `source` attribute of a MessagePack-encoded event is (see the module comment). */
export function locateSource(bytes: Uint8Array): SourceLocation {
  const end = bytes.length;
  if (end === 0) return problem('malformed', 'the event is empty');
  const head = bytes[0];
  let pairs: number;
  let at: number;
  if (head >= 0x80 && head <= 0x8f) {
    pairs = head & 0x0f;
    at = 1;
  } else if (head === 0xde && end >= 3) {
    pairs = (bytes[1] << 8) | bytes[2];
    at = 3;
  } else if (head === 0xdf && end >= 5) {
    pairs = uint32(bytes, 1);
    at = 5;
  } else {
    return problem('malformed', 'the event is not a MessagePack map');
  }
  let seen = false;
  let start = -1;
  let stop = -1;
  for (let i = 0; i < pairs; i++) {
    // The key: a str of any of its four forms (almost always a fixstr: the fast path).
    const k = bytes[at];
    const keyStart = k >= 0xa0 && k <= 0xbf ? at + 1 : at + strHeader(k);
    const key = k >= 0xa0 && k <= 0xbf ? keyStart + (k & 0x1f) : strAt(bytes, at);
    if (key < 0 || key > end) return problem('malformed', `key ${i} of the event is not a string`);
    at = key;
    const isSource = key - keyStart === SOURCE.length && bytes[keyStart] === 0x73 && equalsAt(bytes, keyStart, SOURCE);
    if (!isSource) {
      // Most attribute values are short strings: skipped here without a call.
      const v = bytes[at];
      at = v >= 0xa0 && v <= 0xbf ? at + 1 + (v & 0x1f) : v === 0xd9 && at + 2 <= end ? at + 2 + bytes[at + 1] : skip(bytes, at);
      if (at < 0 || at > end) return problem('malformed', `the value of key ${i} of the event is cut short or not MessagePack`);
      continue;
    }
    if (seen) return problem('malformed', 'the event names "source" twice');
    seen = true;
    const value = strAt(bytes, at);
    if (value < 0) {
      // Not a string: as bad as no source at all, once the rest of the map is known to be well-formed.
      at = skip(bytes, at);
      if (at < 0) return problem('malformed', `the value of key ${i} of the event is cut short or not MessagePack`);
      continue;
    }
    start = at + strHeader(bytes[at]);
    stop = value;
    at = value;
  }
  if (at !== end) return problem('malformed', `the event has ${end - at} bytes after its map`);
  if (start < 0) return problem('missing', seen ? 'the event\'s "source" is not a string' : 'the event has no "source"');
  return { found: true, start, end: stop };
}

/** The event's `source`, or undefined when it has none or is malformed. */
export function eventSource(bytes: Uint8Array): string | undefined {
  const at = locateSource(bytes);
  return at.found ? decoder.decode(bytes.subarray(at.start, at.end)) : undefined;
}

/**
 * Whether the source at `at` is `root` or below it (`root` followed by `/`), compared as UTF-8 bytes; e.g. root
 * `/edges/edge-1` holds `/edges/edge-1` and `/edges/edge-1/devices/d1`, but not `/edges/edge-10`.
 */
export function sourceIsWithin(bytes: Uint8Array, at: SourceFound, root: Uint8Array): boolean {
  const length = at.end - at.start;
  if (length < root.length || !equalsAt(bytes, at.start, root)) return false;
  return length === root.length || bytes[at.start + root.length] === 0x2f;
}

function equalsAt(bytes: Uint8Array, at: number, expected: Uint8Array): boolean {
  for (let k = 0; k < expected.length; k++) if (bytes[at + k] !== expected[k]) return false;
  return true;
}

function uint32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) >>> 0) + ((bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]);
}

/** Bytes of the header of the str whose first byte is `b` (only called on a str). */
function strHeader(b: number): number {
  return b <= 0xbf ? 1 : b === 0xd9 ? 2 : b === 0xda ? 3 : 5;
}

/** The offset after the str at `at`, or -1 when there is none there (another type, or cut short). */
function strAt(bytes: Uint8Array, at: number): number {
  const end = bytes.length;
  if (at >= end) return -1;
  const b = bytes[at];
  let next: number;
  if (b >= 0xa0 && b <= 0xbf) next = at + 1 + (b & 0x1f);
  else if (b === 0xd9 && at + 2 <= end) next = at + 2 + bytes[at + 1];
  else if (b === 0xda && at + 3 <= end) next = at + 3 + ((bytes[at + 1] << 8) | bytes[at + 2]);
  else if (b === 0xdb && at + 5 <= end) next = at + 5 + uint32(bytes, at + 1);
  else return -1;
  return next <= end ? next : -1;
}

/**
 * The one extension type an event carries: the timestamp (-1, in its 32-, 64- and 96-bit forms), which MessagePack
 * writers use for dates (an `expirytime` may be one). Readers fail on types they do not know, so an event with
 * another one is malformed.
 */
const TIMESTAMP = 0xff;

/**
 * The offset after the MessagePack value at `at`, or -1 when it is cut short, uses the never-used byte 0xc1 or an
 * extension type other than the timestamp.
 * Iterative (arrays and maps add their elements to a count of values still to skip), so a deeply nested value
 * cannot exhaust the stack; each value takes at least one byte, so the loop ends within the input.
 */
function skip(bytes: Uint8Array, at: number): number {
  const end = bytes.length;
  let pending = 1;
  while (pending > 0) {
    if (at >= end) return -1;
    pending--;
    const b = bytes[at];
    if (b <= 0x7f || b >= 0xe0) {
      at += 1; // positive and negative fixint
    } else if (b <= 0x8f) {
      pending += 2 * (b & 0x0f);
      at += 1;
    } else if (b <= 0x9f) {
      pending += b & 0x0f;
      at += 1;
    } else if (b <= 0xbf) {
      at += 1 + (b & 0x1f);
    } else {
      switch (b) {
        case 0xc0: // nil
        case 0xc2: // false
        case 0xc3: // true
          at += 1;
          break;
        case 0xc4: // bin 8
        case 0xd9: // str 8
          if (at + 2 > end) return -1;
          at += 2 + bytes[at + 1];
          break;
        case 0xc5: // bin 16
        case 0xda: // str 16
          if (at + 3 > end) return -1;
          at += 3 + ((bytes[at + 1] << 8) | bytes[at + 2]);
          break;
        case 0xc6: // bin 32
        case 0xdb: // str 32
          if (at + 5 > end) return -1;
          at += 5 + uint32(bytes, at + 1);
          break;
        case 0xc7: // ext 8 (length, type, data): a timestamp of 96 bits
          if (at + 3 > end || bytes[at + 1] !== 12 || bytes[at + 2] !== TIMESTAMP) return -1;
          at += 15;
          break;
        case 0xcc: // uint 8
        case 0xd0: // int 8
          at += 2;
          break;
        case 0xcd: // uint 16
        case 0xd1: // int 16
          at += 3;
          break;
        case 0xca: // float 32
        case 0xce: // uint 32
        case 0xd2: // int 32
          at += 5;
          break;
        case 0xcb: // float 64
        case 0xcf: // uint 64
        case 0xd3: // int 64
          at += 9;
          break;
        case 0xd6: // fixext 4 (type, data): a timestamp of 32 bits
          if (at + 2 > end || bytes[at + 1] !== TIMESTAMP) return -1;
          at += 6;
          break;
        case 0xd7: // fixext 8: a timestamp of 64 bits
          if (at + 2 > end || bytes[at + 1] !== TIMESTAMP) return -1;
          at += 10;
          break;
        case 0xdc: // array 16
          if (at + 3 > end) return -1;
          pending += (bytes[at + 1] << 8) | bytes[at + 2];
          at += 3;
          break;
        case 0xdd: // array 32
          if (at + 5 > end) return -1;
          pending += uint32(bytes, at + 1);
          at += 5;
          break;
        case 0xde: // map 16
          if (at + 3 > end) return -1;
          pending += 2 * ((bytes[at + 1] << 8) | bytes[at + 2]);
          at += 3;
          break;
        case 0xdf: // map 32
          if (at + 5 > end) return -1;
          pending += 2 * uint32(bytes, at + 1);
          at += 5;
          break;
        default: // 0xc1 (never used), and extensions that are not timestamps
          return -1;
      }
    }
  }
  return at <= end ? at : -1;
}
