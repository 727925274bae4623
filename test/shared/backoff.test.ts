import { describe, expect, it } from 'vitest';
import { Backoff } from '../../shared/backoff.ts';

/** A small deterministic PRNG (mulberry32) so a failure can be replayed. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const delays = (b: Backoff, n: number) => Array.from({ length: n }, () => b.next());

describe('Backoff', () => {
  it('waits the full base when random is at its top, doubling up to the cap', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2, random: () => 1 });
    expect(delays(b, 7)).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it('waits half the base when random is 0, so a down peer is never hammered', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2, random: () => 0 });
    expect(delays(b, 7)).toEqual([50, 100, 200, 400, 500, 500, 500]);
  });

  it('spreads the delay linearly between half the base and the base', () => {
    const b = new Backoff({ initialMs: 1000, maxMs: 60_000, factor: 3, random: () => 0.5 });
    expect(delays(b, 4)).toEqual([750, 2250, 6750, 20_250]);
  });

  it('keeps every delay in [base/2, base] for arbitrary random draws', () => {
    const initialMs = 200;
    const maxMs = 45_000;
    const factor = 1.7;
    const b = new Backoff({ initialMs, maxMs, factor, random: seeded(42) });
    for (let n = 0; n < 200; n++) {
      const base = Math.min(maxMs, initialMs * factor ** n);
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(Math.floor(base / 2));
      expect(d).toBeLessThanOrEqual(Math.ceil(base));
      expect(Number.isInteger(d)).toBe(true);
    }
  });

  it('counts attempts and starts over after reset()', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 10_000, random: () => 1 });
    expect(b.attempt).toBe(0);
    const first = delays(b, 5);
    expect(b.attempt).toBe(5);
    b.reset();
    expect(b.attempt).toBe(0);
    expect(delays(b, 5)).toEqual(first);
  });

  it('stays at the cap after very many attempts instead of overflowing', () => {
    const b = new Backoff({ random: () => 1 });
    for (let i = 0; i < 5000; i++) b.next();
    expect(b.next()).toBe(b.maxMs);
  });

  it('has defaults that grow and stay capped', () => {
    const b = new Backoff({ random: () => 1 });
    const ds = delays(b, 40);
    for (let i = 1; i < ds.length; i++) expect(ds[i]).toBeGreaterThanOrEqual(ds[i - 1]);
    expect(ds[0]).toBe(b.initialMs);
    expect(ds[1]).toBe(b.initialMs * b.factor);
    expect(Math.max(...ds)).toBe(b.maxMs);
    expect(b.factor).toBeGreaterThan(1);
  });
});
