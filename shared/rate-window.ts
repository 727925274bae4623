/**
 * Per-second rates of monotonically increasing counters over a sliding window. The counters are sampled at a
 * steady interval (each second by default); a rate is the increase between the oldest sample still in the window
 * and the newest one, divided by the time between them. Smoothing over a window keeps a rate readable when
 * traffic comes in bursts (a group commit acknowledges many events at once), and reading a rate costs nothing
 * more than a subtraction, however often a status page is fetched.
 *
 * A counter that goes down was reset (its process restarted, say): the rate counts only from the reset on, never
 * a negative increase, the same rule as Prometheus' `rate()`.
 */
export interface RateWindowOptions {
  /** Span of the window. Default 10 s. */
  windowMs?: number;
  /** Milliseconds since some epoch; injectable so tests need not wait. Default `Date.now`. */
  clock?: () => number;
}

interface Sample<K extends string> {
  atMs: number;
  values: Record<K, number>;
}

export class RateWindow<K extends string> {
  readonly #read: () => Record<K, number>;
  readonly #windowMs: number;
  readonly #clock: () => number;
  /** Oldest first. The first sample may be older than the window: it is the base the window's increase starts from. */
  readonly #samples: Sample<K>[] = [];
  #timer: ReturnType<typeof setInterval> | null = null;

  /** `read` returns the current value of every counter, by name. */
  constructor(read: () => Record<K, number>, options: RateWindowOptions = {}) {
    this.#read = read;
    this.#windowMs = options.windowMs ?? 10_000;
    this.#clock = options.clock ?? Date.now;
    if (!(this.#windowMs > 0)) throw new RangeError(`a rate window must span more than 0 ms, got ${this.#windowMs}`);
  }

  /** Reads the counters now and forgets samples no longer needed for the window. */
  sample(): void {
    const atMs = this.#clock();
    this.#samples.push({ atMs, values: { ...this.#read() } });
    // Keep one sample at or before the window's start as the base, drop the ones before it.
    while (this.#samples.length > 2 && this.#samples[1].atMs <= atMs - this.#windowMs) this.#samples.shift();
  }

  /** Events per second of `key` over the window; 0 until two samples exist. */
  rate(key: K): number {
    const samples = this.#samples;
    const last = samples.length - 1;
    if (last < 1) return 0;
    // Walk back while the counter did not go down: the base is the oldest sample since its last reset.
    let base = last;
    while (base > 0 && samples[base - 1].values[key] <= samples[base].values[key]) base--;
    const seconds = (samples[last].atMs - samples[base].atMs) / 1000;
    if (seconds <= 0) return 0;
    return (samples[last].values[key] - samples[base].values[key]) / seconds;
  }

  /** Every counter's rate. */
  rates(): Record<K, number> {
    const newest = this.#samples.at(-1);
    const out = {} as Record<K, number>;
    if (!newest) return out;
    for (const key of Object.keys(newest.values) as K[]) out[key] = this.rate(key);
    return out;
  }

  /** Samples now and then every `intervalMs` until `stop()`. The timer does not keep the process alive. */
  start(intervalMs = 1_000): void {
    if (this.#timer) return;
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
    this.#timer.unref?.();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
