import { describe, expect, it } from 'vitest';
import { PublishRate } from '../../edge/publish-rate.ts';

function fakeClock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe('PublishRate', () => {
  it('lets a burst through at once, then says how long until the next token', () => {
    const clock = fakeClock();
    const rate = new PublishRate<string>({ ratePerSecond: 10, burst: 3, clock: clock.now });
    expect([rate.take('a'), rate.take('a'), rate.take('a')]).toEqual([0, 0, 0]);
    expect(rate.take('a')).toBe(100);
    clock.advance(40);
    expect(rate.take('a')).toBe(60);
  });

  it('refills at the rate, never above the burst', () => {
    const clock = fakeClock();
    const rate = new PublishRate<string>({ ratePerSecond: 10, burst: 3, clock: clock.now });
    for (let i = 0; i < 3; i++) rate.take('a');
    clock.advance(100);
    expect(rate.take('a')).toBe(0);
    expect(rate.take('a')).toBeGreaterThan(0);
    clock.advance(60_000);
    const taken = Array.from({ length: 5 }, () => rate.take('a'));
    expect(taken.filter((wait) => wait === 0)).toHaveLength(3);
  });

  it('does not take a token when it says to wait', () => {
    const clock = fakeClock();
    const rate = new PublishRate<string>({ ratePerSecond: 2, burst: 1, clock: clock.now });
    expect(rate.take('a')).toBe(0);
    expect(rate.take('a')).toBe(500);
    expect(rate.take('a')).toBe(500);
    clock.advance(500);
    expect(rate.take('a')).toBe(0);
  });

  it('keeps one bucket per key', () => {
    const clock = fakeClock();
    const rate = new PublishRate<object>({ ratePerSecond: 1, burst: 1, clock: clock.now });
    const a = {};
    const b = {};
    expect(rate.take(a)).toBe(0);
    expect(rate.take(a)).toBeGreaterThan(0);
    expect(rate.take(b)).toBe(0);
    expect(rate.size).toBe(2);
  });

  it('drops a forgotten bucket: memory stays bounded by the clients connected', () => {
    const clock = fakeClock();
    const rate = new PublishRate<string>({ ratePerSecond: 1, burst: 1, clock: clock.now });
    for (let i = 0; i < 100; i++) rate.take(`dev-${i}`);
    expect(rate.size).toBe(100);
    for (let i = 0; i < 100; i++) rate.forget(`dev-${i}`);
    expect(rate.size).toBe(0);
    // A client that comes back starts with a full bucket.
    expect(rate.take('dev-1')).toBe(0);
  });

  it('treats a burst of 0 as 1, so the rate alone applies', () => {
    const clock = fakeClock();
    const rate = new PublishRate<string>({ ratePerSecond: 4, burst: 0, clock: clock.now });
    expect(rate.take('a')).toBe(0);
    expect(rate.take('a')).toBe(250);
  });

  it('is off at rate 0: every take succeeds and no bucket is kept', () => {
    const rate = new PublishRate<string>({ ratePerSecond: 0, burst: 0 });
    expect(rate.enabled).toBe(false);
    for (let i = 0; i < 10_000; i++) expect(rate.take('a')).toBe(0);
    expect(rate.size).toBe(0);
  });

  it('refuses a negative or infinite rate', () => {
    expect(() => new PublishRate({ ratePerSecond: -1, burst: 1 })).toThrow(RangeError);
    expect(() => new PublishRate({ ratePerSecond: Infinity, burst: 1 })).toThrow(RangeError);
  });
});
