/**
 * Time-sortable event ids: UUIDv7 (RFC 9562 §5.7) with a 12-bit counter in `rand_a` (the "fixed bit-length
 * dedicated counter" method of RFC 9562 §6.2), so ids from one process are strictly increasing even within one
 * millisecond. The random tail is drawn once per millisecond, and the text of a millisecond's ids is kept as
 * ASCII bytes with only the counter to fill in: the ingest hot path writes an id straight into an event's
 * MessagePack bytes (`writeNext`) without building a string.
 */
import { randomFillSync } from 'node:crypto';

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
/** ASCII code of each hex digit. */
const HEX_CODE = Uint8Array.from('0123456789abcdef', (c) => c.charCodeAt(0));

/** Length of an id's text (and of its ASCII bytes). */
export const EVENT_ID_LENGTH = 36;
/** Offset of the version nibble `7`; the three counter digits follow it. */
const COUNTER_AT = 14;

export class EventIdGenerator {
  #ms = -1;
  #counter = 0;
  /** The current millisecond's id with counter 000, as ASCII. */
  readonly #text = new Uint8Array(EVENT_ID_LENGTH);
  readonly #clock: () => number;
  readonly #random = new Uint8Array(8);

  constructor(clock: () => number = Date.now) {
    this.#clock = clock;
  }

  next(): string {
    const bytes = new Uint8Array(EVENT_ID_LENGTH);
    this.writeNext(bytes, 0);
    return String.fromCharCode.apply(null, bytes as unknown as number[]);
  }

  /** Writes the next id as 36 ASCII bytes at `offset` of `target`. */
  writeNext(target: Uint8Array, offset: number): void {
    const now = this.#clock();
    if (now > this.#ms) {
      this.#roll(now);
    } else if (++this.#counter > 0xfff) {
      // 4096 ids in one millisecond: borrow the next millisecond rather than repeat or go backwards.
      this.#roll(this.#ms + 1);
    }
    target.set(this.#text, offset);
    const c = this.#counter;
    target[offset + COUNTER_AT + 1] = HEX_CODE[c >> 8];
    target[offset + COUNTER_AT + 2] = HEX_CODE[(c >> 4) & 0xf];
    target[offset + COUNTER_AT + 3] = HEX_CODE[c & 0xf];
  }

  #roll(ms: number): void {
    this.#ms = ms;
    this.#counter = 0;
    const hi = Math.floor(ms / 0x10000);
    const lo = ms & 0xffff;
    const r = this.#random;
    randomFillSync(r);
    r[0] = (r[0] & 0x3f) | 0x80; // variant 10xx (RFC 9562 §4.1)
    const text =
      hi.toString(16).padStart(8, '0') + '-' + lo.toString(16).padStart(4, '0') + '-7000' +
      '-' + HEX[r[0]] + HEX[r[1]] + '-' + HEX[r[2]] + HEX[r[3]] + HEX[r[4]] + HEX[r[5]] + HEX[r[6]] + HEX[r[7]];
    for (let i = 0; i < EVENT_ID_LENGTH; i++) this.#text[i] = text.charCodeAt(i);
  }
}

/** The millisecond timestamp encoded in a UUIDv7. */
export function eventIdTime(id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}
