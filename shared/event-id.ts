/**
 * Time-sortable event ids: UUIDv7 (RFC 9562 §5.7) with a 12-bit counter in `rand_a` (the "fixed bit-length
 * dedicated counter" method of RFC 9562 §6.2), so ids from one process are strictly increasing even within one
 * millisecond. The random tail is drawn once per millisecond; the string for a millisecond is built once and
 * reused, which keeps id generation off the profile of the ingest hot path.
 */
import { randomFillSync } from 'node:crypto';

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export class EventIdGenerator {
  #ms = -1;
  #counter = 0;
  #prefix = '';
  #suffix = '';
  readonly #clock: () => number;
  readonly #random = new Uint8Array(8);

  constructor(clock: () => number = Date.now) {
    this.#clock = clock;
  }

  next(): string {
    const now = this.#clock();
    if (now > this.#ms) {
      this.#roll(now);
    } else if (++this.#counter > 0xfff) {
      // 4096 ids in one millisecond: borrow the next millisecond rather than repeat or go backwards.
      this.#roll(this.#ms + 1);
    }
    const c = this.#counter;
    return this.#prefix + '7' + HEX[c >> 8][1] + HEX[c & 0xff] + this.#suffix;
  }

  #roll(ms: number): void {
    this.#ms = ms;
    this.#counter = 0;
    const hi = Math.floor(ms / 0x10000);
    const lo = ms & 0xffff;
    const tsHex = hi.toString(16).padStart(8, '0') + '-' + lo.toString(16).padStart(4, '0') + '-';
    this.#prefix = tsHex;
    const r = this.#random;
    randomFillSync(r);
    r[0] = (r[0] & 0x3f) | 0x80; // variant 10xx (RFC 9562 §4.1)
    this.#suffix = '-' + HEX[r[0]] + HEX[r[1]] + '-' + HEX[r[2]] + HEX[r[3]] + HEX[r[4]] + HEX[r[5]] + HEX[r[6]] + HEX[r[7]];
  }
}

/** The millisecond timestamp encoded in a UUIDv7. */
export function eventIdTime(id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}
