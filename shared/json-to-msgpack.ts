/**
 * JSON text (UTF-8 bytes, RFC 8259) to MessagePack in one pass, without building the value in between: the
 * bytes `encode(JSON.parse(text))` (codec.ts) gives, in about half the time and without the garbage. Device
 * payloads are JSON, so parsing each into objects only to pack them again was a large part of the ingest hot path.
 *
 * It is a fast path, not a second JSON parser with its own opinions: whenever the text is not JSON, or uses
 * something whose encoding it does not reproduce exactly (escaped surrogates, keys that are array indices or
 * carry escapes, duplicate keys, deep nesting, very large objects), it returns `undefined` and the caller takes
 * the `JSON.parse` path, which decides. So it never accepts a text `JSON.parse` rejects, and what it returns is
 * byte for byte what the slow path writes (the tests compare the two on many texts).
 *
 * MessagePack forms follow msgpackr as configured in codec.ts (`useRecords: false`, `variableMapSize: true`):
 * the smallest header for each string, array and map; integers of 32 bits or less as MessagePack integers, every
 * other number as float 64.
 */

/** Deeper nesting is left to the slow path (which has the call stack's limit). */
const MAX_DEPTH = 64;
/** Objects with more keys are left to the slow path (keys are checked for duplicates pairwise). */
const MAX_KEYS = 64;
/** Exact powers of ten: 10^22 is the largest a double holds exactly. */
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);
/** Below this, `m * 10 + digit` stays an exact integer in a double (< 2^53). */
const MANTISSA_LIMIT = 9e14;

function asciiBytes(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

const TRUE = asciiBytes('true');
const FALSE = asciiBytes('false');
const NULL = asciiBytes('null');

/**
 * One conversion's state. The converter is synchronous and never re-entered, so one instance (and its output
 * buffer) serves every call.
 */
class Converter {
  src: Uint8Array = new Uint8Array(0);
  pos = 0;
  out: Uint8Array = new Uint8Array(4096);
  view: DataView = new DataView(this.out.buffer);
  at = 0;
  /** Start and end (in `src`) of the keys of the objects being read, for the duplicate check. */
  keyStarts: Int32Array = new Int32Array(256);
  keyEnds: Int32Array = new Int32Array(256);
  keyTop = 0;
  rejectText: string | undefined = undefined;
  reject: Uint8Array | null = null;

  convert(text: Uint8Array, rejectKey: string | undefined): Uint8Array | undefined {
    this.src = text;
    this.pos = 0;
    this.at = 0;
    this.keyTop = 0;
    // MessagePack never needs more than 3 bytes per byte of JSON (a 3-character number such as 0.5 becomes a
    // 9-byte float 64), plus a few for the outermost header.
    const need = 3 * text.length + 16;
    if (this.out.length < need) {
      this.out = new Uint8Array(Math.max(need, 2 * this.out.length));
      this.view = new DataView(this.out.buffer);
    }
    if (rejectKey !== this.rejectText) {
      this.rejectText = rejectKey;
      this.reject = rejectKey === undefined ? null : asciiBytes(rejectKey);
    }
    this.skipWhitespace();
    if (!this.value(0)) return undefined;
    this.skipWhitespace();
    if (this.pos !== text.length) return undefined;
    return this.out.subarray(0, this.at);
  }

  skipWhitespace(): void {
    // RFC 8259 §2: space, horizontal tab, line feed, carriage return.
    const src = this.src;
    let pos = this.pos;
    while (pos < src.length) {
      const b = src[pos];
      if (b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09) break;
      pos++;
    }
    this.pos = pos;
  }

  value(depth: number): boolean {
    if (this.pos >= this.src.length) return false;
    switch (this.src[this.pos]) {
      case 0x7b: // {
        return this.object(depth);
      case 0x5b: // [
        return this.array(depth);
      case 0x22: // "
        return this.string(false);
      case 0x74: // t
        return this.literal(TRUE, 0xc3);
      case 0x66: // f
        return this.literal(FALSE, 0xc2);
      case 0x6e: // n
        return this.literal(NULL, 0xc0);
      default:
        return this.number();
    }
  }

  literal(word: Uint8Array, code: number): boolean {
    const src = this.src;
    const pos = this.pos;
    if (pos + word.length > src.length) return false;
    for (let i = 0; i < word.length; i++) if (src[pos + i] !== word[i]) return false;
    this.pos = pos + word.length;
    this.out[this.at++] = code;
    return true;
  }

  /** Writes the header of a map or array of `count` entries at `headerAt`, where one byte was reserved. */
  containerHeader(headerAt: number, count: number, fix: number, code16: number): void {
    const out = this.out;
    if (count < 0x10) {
      out[headerAt] = fix | count;
      return;
    }
    const extra = count < 0x10000 ? 2 : 4;
    out.copyWithin(headerAt + 1 + extra, headerAt + 1, this.at);
    this.at += extra;
    if (extra === 2) {
      out[headerAt] = code16;
      out[headerAt + 1] = count >> 8;
      out[headerAt + 2] = count & 0xff;
    } else {
      out[headerAt] = code16 + 1; // map 32 / array 32
      this.view.setUint32(headerAt + 1, count);
    }
  }

  array(depth: number): boolean {
    if (depth >= MAX_DEPTH) return false;
    this.pos++;
    const headerAt = this.at++;
    let count = 0;
    this.skipWhitespace();
    if (this.src[this.pos] === 0x5d /* ] */) {
      this.pos++;
      this.out[headerAt] = 0x90;
      return true;
    }
    for (;;) {
      if (!this.value(depth + 1)) return false;
      count++;
      this.skipWhitespace();
      const b = this.src[this.pos++];
      if (b === 0x5d /* ] */) break;
      if (b !== 0x2c /* , */) return false;
      this.skipWhitespace();
    }
    this.containerHeader(headerAt, count, 0x90, 0xdc);
    return true;
  }

  object(depth: number): boolean {
    if (depth >= MAX_DEPTH) return false;
    this.pos++;
    const headerAt = this.at++;
    const firstKey = this.keyTop;
    let count = 0;
    this.skipWhitespace();
    if (this.src[this.pos] === 0x7d /* } */) {
      this.pos++;
      this.out[headerAt] = 0x80;
      return true;
    }
    for (;;) {
      if (this.src[this.pos] !== 0x22 || count >= MAX_KEYS) return false;
      const keyStart = this.pos + 1;
      if (!this.string(true)) return false;
      const keyEnd = this.pos - 1;
      if (!this.distinctKey(firstKey, keyStart, keyEnd)) return false;
      if (depth === 0 && this.reject !== null && this.sameBytes(keyStart, keyEnd, this.reject)) return false;
      count++;
      this.skipWhitespace();
      if (this.src[this.pos++] !== 0x3a /* : */) return false;
      this.skipWhitespace();
      if (!this.value(depth + 1)) return false;
      this.skipWhitespace();
      const b = this.src[this.pos++];
      if (b === 0x7d /* } */) break;
      if (b !== 0x2c /* , */) return false;
      this.skipWhitespace();
    }
    this.keyTop = firstKey;
    this.containerHeader(headerAt, count, 0x80, 0xde);
    return true;
  }

  /**
   * Records a key of the current object; false when the object already has it (JSON.parse keeps the last value
   * at the first key's place, which a one-pass writer cannot reproduce).
   */
  distinctKey(firstKey: number, start: number, end: number): boolean {
    const src = this.src;
    const length = end - start;
    for (let k = firstKey; k < this.keyTop; k++) {
      const other = this.keyStarts[k];
      if (this.keyEnds[k] - other !== length) continue;
      let i = 0;
      while (i < length && src[other + i] === src[start + i]) i++;
      if (i === length) return false;
    }
    if (this.keyTop === this.keyStarts.length) {
      this.keyStarts = growInt32(this.keyStarts);
      this.keyEnds = growInt32(this.keyEnds);
    }
    this.keyStarts[this.keyTop] = start;
    this.keyEnds[this.keyTop] = end;
    this.keyTop++;
    return true;
  }

  sameBytes(start: number, end: number, bytes: Uint8Array): boolean {
    if (end - start !== bytes.length) return false;
    for (let i = 0; i < bytes.length; i++) if (this.src[start + i] !== bytes[i]) return false;
    return true;
  }

  /**
   * A JSON string at `pos` (the opening quote) as a MessagePack str, in one pass: the bytes are copied behind a
   * one-byte header, which grows (moving them) when they turn out to be 32 or more. A key must not contain escapes
   * or begin with a digit: JavaScript orders integer-like keys first, so `encode(JSON.parse(text))` would not
   * keep the text's order.
   */
  string(isKey: boolean): boolean {
    const src = this.src;
    const out = this.out;
    const end = src.length;
    let i = this.pos + 1;
    const headerAt = this.at;
    let at = headerAt + 1;
    if (isKey && i < end && src[i] >= 0x30 && src[i] <= 0x39) return false;
    for (;;) {
      if (i >= end) return false;
      const b = src[i];
      if (b === 0x22) break;
      if (b < 0x20) return false; // RFC 8259 §7: control characters must be escaped
      if (b === 0x5c /* \ */) {
        if (isKey) return false;
        this.at = at;
        if (!this.escape(i + 1)) return false;
        at = this.at;
        i += src[i + 1] === 0x75 /* u */ ? 6 : 2;
      } else if (b < 0x80) {
        out[at++] = b;
        i++;
      } else {
        const n = this.utf8Sequence(i);
        if (n === 0) return false;
        for (let k = 0; k < n; k++) out[at++] = src[i + k];
        i += n;
      }
    }
    this.pos = i + 1;
    const length = at - headerAt - 1;
    if (length < 0x20) {
      out[headerAt] = 0xa0 | length;
      this.at = at;
      return true;
    }
    const extra = length < 0x100 ? 1 : length < 0x10000 ? 2 : 4;
    out.copyWithin(headerAt + 1 + extra, headerAt + 1, at);
    this.at = at + extra;
    if (extra === 1) {
      out[headerAt] = 0xd9;
      out[headerAt + 1] = length;
    } else if (extra === 2) {
      out[headerAt] = 0xda;
      out[headerAt + 1] = length >> 8;
      out[headerAt + 2] = length & 0xff;
    } else {
      out[headerAt] = 0xdb;
      this.view.setUint32(headerAt + 1, length);
    }
    return true;
  }

  /** Writes the character of the escape whose letter is at `i`; false for an invalid one or a surrogate. */
  escape(i: number): boolean {
    const src = this.src;
    const out = this.out;
    const e = src[i];
    switch (e) {
      case 0x22: // \"
      case 0x5c: // \\
      case 0x2f: // \/
        out[this.at++] = e;
        return true;
      case 0x62: // \b
        out[this.at++] = 0x08;
        return true;
      case 0x66: // \f
        out[this.at++] = 0x0c;
        return true;
      case 0x6e: // \n
        out[this.at++] = 0x0a;
        return true;
      case 0x72: // \r
        out[this.at++] = 0x0d;
        return true;
      case 0x74: // \t
        out[this.at++] = 0x09;
        return true;
      case 0x75: {
        // \uXXXX
        if (i + 5 > src.length) return false;
        let c = 0;
        for (let k = 1; k <= 4; k++) {
          const h = hexValue(src[i + k]);
          if (h < 0) return false;
          c = (c << 4) | h;
        }
        // A surrogate (paired or lone) is left to the slow path, which turns a lone one into U+FFFD.
        if (c >= 0xd800 && c <= 0xdfff) return false;
        if (c < 0x80) out[this.at++] = c;
        else if (c < 0x800) {
          out[this.at++] = 0xc0 | (c >> 6);
          out[this.at++] = 0x80 | (c & 0x3f);
        } else {
          out[this.at++] = 0xe0 | (c >> 12);
          out[this.at++] = 0x80 | ((c >> 6) & 0x3f);
          out[this.at++] = 0x80 | (c & 0x3f);
        }
        return true;
      }
      default:
        return false;
    }
  }

  /**
   * Length of the well-formed UTF-8 sequence at `i` (Unicode table 3-7, as a fatal TextDecoder checks it), or 0.
   * A valid sequence is copied unchanged: decoding it and encoding it again gives the same bytes.
   */
  utf8Sequence(i: number): number {
    const src = this.src;
    const b = src[i];
    const c1 = i + 1 < src.length ? src[i + 1] : 0;
    if (b >= 0xc2 && b <= 0xdf) return isContinuation(c1) ? 2 : 0;
    if (i + 2 >= src.length || !isContinuation(src[i + 2])) return 0;
    if (b >= 0xe0 && b <= 0xef) {
      const lo = b === 0xe0 ? 0xa0 : 0x80;
      const hi = b === 0xed ? 0x9f : 0xbf;
      return c1 >= lo && c1 <= hi ? 3 : 0;
    }
    if (i + 3 >= src.length || !isContinuation(src[i + 3])) return 0;
    if (b >= 0xf0 && b <= 0xf4) {
      const lo = b === 0xf0 ? 0x90 : 0x80;
      const hi = b === 0xf4 ? 0x8f : 0xbf;
      return c1 >= lo && c1 <= hi ? 4 : 0;
    }
    return 0;
  }

  /** A JSON number (RFC 8259 §6), written as msgpackr writes the JavaScript number JSON.parse makes of it. */
  number(): boolean {
    const src = this.src;
    const end = src.length;
    const start = this.pos;
    let i = start;
    const negative = src[i] === 0x2d; /* - */
    if (negative) i++;
    // The digits as an integer mantissa m and a power of ten e, while m stays exact.
    let m = 0;
    let e = 0;
    let exact = true;
    let b = i < end ? src[i] : 0;
    if (b === 0x30 /* 0 */) {
      b = ++i < end ? src[i] : 0;
    } else if (b >= 0x31 && b <= 0x39) {
      do {
        if (m < MANTISSA_LIMIT) m = m * 10 + (b - 0x30);
        else exact = false;
        b = ++i < end ? src[i] : 0;
      } while (b >= 0x30 && b <= 0x39);
    } else {
      return false;
    }
    if (b === 0x2e /* . */) {
      b = ++i < end ? src[i] : 0;
      if (b < 0x30 || b > 0x39) return false;
      do {
        if (m < MANTISSA_LIMIT) {
          m = m * 10 + (b - 0x30);
          e--;
        } else exact = false;
        b = ++i < end ? src[i] : 0;
      } while (b >= 0x30 && b <= 0x39);
    }
    if (b === 0x65 || b === 0x45 /* e E */) {
      b = ++i < end ? src[i] : 0;
      const minus = b === 0x2d;
      if (minus || b === 0x2b) b = ++i < end ? src[i] : 0;
      if (b < 0x30 || b > 0x39) return false;
      let x = 0;
      do {
        if (x < 10_000) x = x * 10 + (b - 0x30);
        b = ++i < end ? src[i] : 0;
      } while (b >= 0x30 && b <= 0x39);
      e += minus ? -x : x;
    }
    this.pos = i;
    let v: number;
    if (exact && e >= -22 && e <= 22) {
      // Clinger's fast path: an exact mantissa times or divided by an exact power of ten is one correctly
      // rounded operation, so it equals the correctly rounded conversion JSON.parse does.
      v = e < 0 ? m / POW10[-e] : m * POW10[e];
    } else {
      let text = '';
      for (let k = negative ? start + 1 : start; k < i; k++) text += String.fromCharCode(src[k]);
      v = Number(text);
    }
    this.writeNumber(negative ? -v : v);
    return true;
  }

  /** msgpackr's choice of form for a number (pack.js, `type === 'number'`, with `useRecords: false`). */
  writeNumber(v: number): void {
    const out = this.out;
    if (v >>> 0 === v) {
      if (v < 0x80) out[this.at++] = v;
      else if (v < 0x100) {
        out[this.at++] = 0xcc;
        out[this.at++] = v;
      } else if (v < 0x10000) {
        out[this.at++] = 0xcd;
        out[this.at++] = v >> 8;
        out[this.at++] = v & 0xff;
      } else {
        out[this.at++] = 0xce;
        this.view.setUint32(this.at, v);
        this.at += 4;
      }
    } else if (v >> 0 === v) {
      if (v >= -0x20) out[this.at++] = 0x100 + v;
      else if (v >= -0x80) {
        out[this.at++] = 0xd0;
        out[this.at++] = v + 0x100;
      } else if (v >= -0x8000) {
        out[this.at++] = 0xd1;
        this.view.setInt16(this.at, v);
        this.at += 2;
      } else {
        out[this.at++] = 0xd2;
        this.view.setInt32(this.at, v);
        this.at += 4;
      }
    } else {
      out[this.at++] = 0xcb;
      this.view.setFloat64(this.at, v);
      this.at += 8;
    }
  }
}

function growInt32(a: Int32Array): Int32Array {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x61 && b <= 0x66) return b - 0x57;
  if (b >= 0x41 && b <= 0x46) return b - 0x37;
  return -1;
}

function isContinuation(b: number): boolean {
  return b >= 0x80 && b <= 0xbf;
}

const converter = new Converter();

/**
 * The MessagePack encoding of the JSON text `text`, or `undefined` when the fast path cannot tell (see above).
 * The result is a view of a scratch buffer, valid until the next call: copy it before calling again.
 * `rejectKey` names a top-level object key that also sends the text to the slow path.
 */
export function jsonToMessagePack(text: Uint8Array, rejectKey?: string): Uint8Array | undefined {
  return converter.convert(text, rejectKey);
}
