import { describe, expect, it } from 'vitest';
import { EventIdGenerator, eventIdTime } from '../../shared/event-id.ts';

/** RFC 9562 §5.7: 48-bit ms timestamp, version 7, 12 bits, variant 10, 62 bits. Lower-case hex. */
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function expectStrictlyIncreasing(ids: string[]): void {
  for (let i = 1; i < ids.length; i++) {
    if (!(ids[i - 1] < ids[i])) throw new Error(`id ${i} (${ids[i]}) is not after id ${i - 1} (${ids[i - 1]})`);
  }
}

describe('EventIdGenerator', () => {
  it('produces 36-character UUIDv7 strings with version nibble 7 and variant bits 10', () => {
    const gen = new EventIdGenerator(() => 1_714_564_800_123);
    for (let i = 0; i < 50; i++) {
      const id = gen.next();
      expect(id).toHaveLength(36);
      expect(id).toMatch(UUID_V7);
      expect(id[14]).toBe('7');
      expect(parseInt(id[19], 16) & 0b1100).toBe(0b1000);
    }
  });

  it('puts the clock time in the first 48 bits, most significant first', () => {
    const ms = 0x0123_4567_89ab;
    const id = new EventIdGenerator(() => ms).next();
    expect(id.slice(0, 8)).toBe('01234567');
    expect(id.slice(9, 13)).toBe('89ab');
  });

  it('keeps ids strictly increasing in string order within one millisecond', () => {
    const gen = new EventIdGenerator(() => 1_700_000_000_000);
    const ids = Array.from({ length: 2000 }, () => gen.next());
    expectStrictlyIncreasing(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('keeps ids strictly increasing in string order across milliseconds', () => {
    let now = 1_700_000_000_000;
    const gen = new EventIdGenerator(() => now);
    const ids: string[] = [];
    for (let ms = 0; ms < 300; ms++) {
      for (let i = 0; i < 1 + (ms % 7); i++) ids.push(gen.next());
      now += 1 + (ms % 3);
    }
    expectStrictlyIncreasing(ids);
  });

  it('stays increasing past 4096 ids in one millisecond by borrowing the next millisecond', () => {
    let now = 1_700_000_000_000;
    const gen = new EventIdGenerator(() => now);
    const ids = Array.from({ length: 10_000 }, () => gen.next());
    expectStrictlyIncreasing(ids);
    expect(eventIdTime(ids[0])).toBe(now);
    expect(eventIdTime(ids[ids.length - 1])).toBeGreaterThan(now);
    // When the real clock catches up with the borrowed millisecond, ids still go forward.
    now += 1;
    const later = Array.from({ length: 100 }, () => gen.next());
    expectStrictlyIncreasing([...ids, ...later]);
  });

  it('never goes backwards when the clock steps back', () => {
    let now = 1_700_000_000_500;
    const gen = new EventIdGenerator(() => now);
    const ids = [gen.next(), gen.next()];
    now -= 400;
    ids.push(gen.next(), gen.next());
    now += 1000;
    ids.push(gen.next());
    expectStrictlyIncreasing(ids);
  });

  it('gives different ids to two generators in the same millisecond', () => {
    const a = new EventIdGenerator(() => 1_700_000_000_000);
    const b = new EventIdGenerator(() => 1_700_000_000_000);
    expect(a.next()).not.toBe(b.next());
  });

  it('writes the same ids as ASCII bytes at an offset, continuing the same sequence', () => {
    let now = 1_700_000_000_000;
    const gen = new EventIdGenerator(() => now);
    const ids: string[] = [];
    const target = new Uint8Array(40).fill(0xee);
    for (let i = 0; i < 5000; i++) {
      if (i % 3 === 0) ids.push(gen.next());
      else {
        gen.writeNext(target, 2);
        expect(target[1]).toBe(0xee);
        expect(target[38]).toBe(0xee);
        ids.push(new TextDecoder().decode(target.subarray(2, 38)));
      }
      if (i % 700 === 0) now++;
    }
    for (const id of ids) expect(id).toMatch(UUID_V7);
    expectStrictlyIncreasing(ids);
  });

  it('uses the wall clock when no clock is given', () => {
    const before = Date.now();
    const id = new EventIdGenerator().next();
    const after = Date.now();
    expect(eventIdTime(id)).toBeGreaterThanOrEqual(before);
    expect(eventIdTime(id)).toBeLessThanOrEqual(after);
  });
});

describe('eventIdTime', () => {
  it('recovers the millisecond an id was made at', () => {
    for (const ms of [0, 1, 65_535, 65_536, 1_714_564_800_123, 2 ** 40 + 7, 2 ** 48 - 1]) {
      expect(eventIdTime(new EventIdGenerator(() => ms).next())).toBe(ms);
    }
  });

  it('reads the time of a UUIDv7 made elsewhere (RFC 9562 appendix A.6 example)', () => {
    // Tuesday, February 22, 2022 2:22:22.00 PM GMT-05:00 = 1645557742000 ms.
    expect(eventIdTime('017f22e2-79b0-7cc3-98c4-dc0c0c07398f')).toBe(1_645_557_742_000);
  });
});
