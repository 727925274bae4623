/**
 * Keeps a flood of one kind of log line readable: at most `burst` lines per key (a client, an address) in each
 * window; the lines left out are counted and reported with the next line that is written. Someone hammering a
 * listener with refused connections then costs a few lines per window, not one per attempt.
 */
export interface LogThrottleOptions {
  /** Default 10 s. */
  windowMs?: number;
  /** Lines per key per window. Default 5. */
  burst?: number;
  /** Most keys remembered; all are forgotten when there are more (a flood from many keys). Default 10 000. */
  maxKeys?: number;
  /** Milliseconds; injectable for tests. */
  clock?: () => number;
}

interface Window {
  startMs: number;
  lines: number;
  suppressed: number;
}

export class LogThrottle {
  readonly #windowMs: number;
  readonly #burst: number;
  readonly #maxKeys: number;
  readonly #clock: () => number;
  readonly #windows = new Map<string, Window>();

  constructor(options: LogThrottleOptions = {}) {
    this.#windowMs = options.windowMs ?? 10_000;
    this.#burst = options.burst ?? 5;
    this.#maxKeys = options.maxKeys ?? 10_000;
    this.#clock = options.clock ?? Date.now;
  }

  /** Undefined: leave this line out. Otherwise write it, with the number of lines left out before it (usually 0). */
  admit(key: string): number | undefined {
    const now = this.#clock();
    const w = this.#windows.get(key);
    if (w === undefined || now - w.startMs >= this.#windowMs) {
      if (w === undefined && this.#windows.size >= this.#maxKeys) this.#windows.clear();
      const suppressed = w?.suppressed ?? 0;
      this.#windows.set(key, { startMs: now, lines: 1, suppressed: 0 });
      return suppressed;
    }
    if (w.lines < this.#burst) {
      w.lines++;
      return 0;
    }
    w.suppressed++;
    return undefined;
  }
}
