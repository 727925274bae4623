/**
 * One timer for the nearest of many deadlines (say, the expiries of a set of commands): the owner computes the
 * earliest deadline and `set`s it; the timer calls `run` once that time has come, and the owner sets the next one.
 * A deadline further away than setTimeout can wait (about 24.8 days) is reached in steps: `run` is then called
 * early and finds nothing due. The timer does not keep a process alive.
 */
import { clearTimeout, setTimeout } from 'node:timers';

/** setTimeout's longest delay, 2^31 - 1 ms. */
const MAX_DELAY_MS = 0x7fffffff;

export class DeadlineTimer {
  readonly #run: () => void;
  readonly #clock: () => number;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #at = Infinity;

  constructor(run: () => void, clock: () => number = Date.now) {
    this.#run = run;
    this.#clock = clock;
  }

  /** Calls `run` at `at` (ms since the epoch) instead of any earlier setting; Infinity: never. */
  set(at: number): void {
    if (at === this.#at) return;
    this.clear();
    this.#at = at;
    if (at === Infinity) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        this.#at = Infinity;
        this.#run();
      },
      Math.min(MAX_DELAY_MS, Math.max(0, at - this.#clock())),
    );
    this.#timer.unref();
  }

  clear(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#at = Infinity;
  }
}
