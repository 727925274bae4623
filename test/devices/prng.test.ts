import { describe, expect, it } from 'vitest';
import { deriveSeed, Prng } from '../../devices/prng.ts';

function draw(prng: Prng, n: number): number[] {
  return Array.from({ length: n }, () => prng.next());
}

describe('Prng', () => {
  it('matches the reference mulberry32 output', () => {
    // From the public-domain reference implementation (Tommy Ettinger's mulberry32) seeded with 1 and 0xdeadbeef.
    expect(draw(new Prng(1), 3)).toEqual([0.6270739405881613, 0.002735721180215478, 0.5274470399599522]);
    expect(draw(new Prng(0xdeadbeef), 2)).toEqual([0.9413696140982211, 0.26719574979506433]);
  });

  it('repeats its sequence for the same seed and changes it for another', () => {
    expect(draw(new Prng(42), 100)).toEqual(draw(new Prng(42), 100));
    expect(draw(new Prng(42), 100)).not.toEqual(draw(new Prng(43), 100));
  });

  it('draws uniformly from [0, 1)', () => {
    const prng = new Prng(7);
    const buckets = new Array<number>(10).fill(0);
    const n = 100_000;
    let outside = 0;
    for (let i = 0; i < n; i++) {
      const x = prng.next();
      if (x < 0 || x >= 1) outside++;
      else buckets[Math.floor(x * 10)]++;
    }
    expect(outside).toBe(0);
    for (const count of buckets) expect(Math.abs(count - n / 10)).toBeLessThan(n / 10 / 20);
  });

  it('draws integers from both ends of an inclusive range', () => {
    const prng = new Prng(3);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) seen.add(prng.int(1, 6));
    expect([...seen].sort()).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('draws normal values with the asked mean and standard deviation', () => {
    const prng = new Prng(11);
    const xs = Array.from({ length: 50_000 }, () => prng.normal(10, 2));
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
    expect(mean).toBeCloseTo(10, 1);
    expect(sd).toBeCloseTo(2, 1);
  });

  it('forks the same sub-stream for a label, whatever was drawn before', () => {
    const a = new Prng(5);
    const b = new Prng(5);
    draw(b, 17);
    expect(draw(a.fork('x'), 10)).toEqual(draw(b.fork('x'), 10));
    expect(draw(a.fork('x'), 10)).not.toEqual(draw(a.fork('y'), 10));
    expect(draw(a.fork(1), 10)).not.toEqual(draw(a, 10));
  });
});

describe('deriveSeed', () => {
  it('gives different seeds for different parts and the same for the same parts', () => {
    const seeds = new Set(Array.from({ length: 10_000 }, (_, i) => deriveSeed(1, i)));
    expect(seeds.size).toBe(10_000);
    expect(deriveSeed(1, 'phase', 3)).toBe(deriveSeed(1, 'phase', 3));
    expect(deriveSeed(1, 'phase')).not.toBe(deriveSeed(2, 'phase'));
    expect(deriveSeed(1, 'ab', 'c')).not.toBe(deriveSeed(1, 'a', 'bc'));
  });

  it('keeps the high bits of seeds past 2^32 and the sign', () => {
    expect(deriveSeed(2 ** 32 + 5)).not.toBe(deriveSeed(5));
    expect(deriveSeed(-5)).not.toBe(deriveSeed(5));
    expect(() => new Prng(Number.NaN)).toThrow(RangeError);
  });
});
