/**
 * A small seeded pseudo-random number generator (mulberry32: 32 bits of state, period 2^32), so that a fleet
 * started with the same seed produces the same readings. Not for cryptography.
 *
 * Each device draws from its own generator, derived from the fleet seed and the device's index with `deriveSeed`,
 * so a device's values do not depend on how many devices there are or in which order they publish.
 */

/** Mixes `parts` into a 32-bit seed (MurmurHash3's finaliser over each part in turn). */
export function deriveSeed(seed: number, ...parts: (number | string)[]): number {
  let h = fmix32(foldToUint32(seed) ^ 0x9e3779b9);
  for (const part of parts) {
    if (typeof part === 'number') {
      h = fmix32(h ^ foldToUint32(part));
    } else {
      for (let i = 0; i < part.length; i++) h = Math.imul(h ^ part.charCodeAt(i), 0x01000193);
      h = fmix32(h ^ part.length);
    }
    h = (h + 0x6d2b79f5) >>> 0;
  }
  return h >>> 0;
}

export class Prng {
  /** The seed this generator started from (what `fork` derives from). */
  readonly seed: number;
  #state: number;
  /** Box-Muller yields two normal values; the second is kept for the next call. */
  #spareNormal: number | undefined;

  constructor(seed: number) {
    this.seed = foldToUint32(seed);
    this.#state = this.seed;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) | 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform in [min, max). */
  uniform(min: number, max: number): number {
    return min + (max - min) * this.next();
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** Normally distributed with the given mean and standard deviation (Box-Muller transform). */
  normal(mean = 0, sd = 1): number {
    let z = this.#spareNormal;
    if (z === undefined) {
      // 1 - next() is in (0, 1], so the logarithm is finite.
      const r = Math.sqrt(-2 * Math.log(1 - this.next()));
      const theta = 2 * Math.PI * this.next();
      z = r * Math.cos(theta);
      this.#spareNormal = r * Math.sin(theta);
    } else {
      this.#spareNormal = undefined;
    }
    return mean + sd * z;
  }

  /** An independent generator for a named sub-stream; the same label always gives the same generator. */
  fork(label: number | string): Prng {
    return new Prng(deriveSeed(this.seed, label));
  }
}

/** Any finite number to 32 bits, keeping the high bits of seeds past 2^32 instead of dropping them. */
function foldToUint32(n: number): number {
  if (!Number.isFinite(n)) throw new RangeError(`a seed must be a finite number, got ${n}`);
  const int = Math.trunc(Math.abs(n));
  const high = Math.floor(int / 4294967296);
  return (int ^ Math.imul(high, 0x85ebca6b) ^ (n < 0 ? 0x80000000 : 0)) >>> 0;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
