/**
 * Reproducible randomness for fault tests: the kill points, cut moments and delays of a run all come from one
 * seed, named in the test's title, so a failing run can be replayed with `FAULT_SEED=<seed> npx vitest run ...`.
 * Without FAULT_SEED each run draws a new seed. (Process scheduling still varies from run to run; the seed fixes
 * what the test chooses.)
 */
import { deriveSeed, Prng } from '../../devices/prng.ts';

export interface FaultSeed {
  seed: number;
  /** `FAULT_SEED=<seed>`, for test titles and messages. */
  label: string;
  /** A generator of its own for `purpose`, so adding a draw in one place does not shift the others. */
  prng(purpose: string): Prng;
}

export function faultSeed(env: Record<string, string | undefined> = process.env): FaultSeed {
  const raw = env.FAULT_SEED;
  let seed: number;
  if (raw === undefined || raw === '') {
    seed = Math.floor(Math.random() * 2 ** 31);
  } else {
    seed = Number(raw);
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`FAULT_SEED must be a non-negative whole number, got "${raw}"`);
  }
  const label = `FAULT_SEED=${seed}`;
  // Printed as well as put in the title, so that it shows in a CI log even when the reporter trims titles.
  if (env === process.env) console.log(`fault tests: ${label}`);
  return { seed, label, prng: (purpose) => new Prng(deriveSeed(seed, purpose)) };
}

/** The outage length for outage tests, in seconds: FAULT_OUTAGE_SECONDS, default `fallback`. */
export function outageSeconds(fallback: number, env: Record<string, string | undefined> = process.env): number {
  const raw = env.FAULT_OUTAGE_SECONDS;
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!(value > 0) || !Number.isFinite(value)) throw new Error(`FAULT_OUTAGE_SECONDS must be a positive number of seconds, got "${raw}"`);
  return value;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
