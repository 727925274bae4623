import { describe, expect, it } from 'vitest';
import { RateMeter } from '../../devices/rate-meter.ts';

describe('RateMeter', () => {
  it('is 0 until it has two samples', () => {
    const m = new RateMeter();
    expect(m.perSecond()).toBe(0);
    m.record(0, 100);
    expect(m.perSecond()).toBe(0);
  });

  it('measures the growth per second over its window', () => {
    const m = new RateMeter(5000, 250);
    for (let t = 0; t <= 10_000; t += 500) m.record(t, t < 5000 ? t / 10 : 500 + ((t - 5000) / 1000) * 200);
    // The last five seconds grew by 200 a second (earlier: 100 a second).
    expect(m.perSecond()).toBeCloseTo(200, 5);
  });

  it('skips samples closer together than the minimum gap', () => {
    const m = new RateMeter(5000, 250);
    m.record(0, 0);
    m.record(100, 1000);
    m.record(1000, 10);
    expect(m.perSecond()).toBe(10);
  });
});
