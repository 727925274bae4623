/**
 * A per-second rate of a growing counter over a sliding window: samples of (time, total) are kept for
 * `windowMs`, and the rate is the growth from the oldest sample to the newest.
 */
export class RateMeter {
  readonly windowMs: number;
  readonly #minGapMs: number;
  readonly #samples: { at: number; total: number }[] = [];

  constructor(windowMs = 5000, minGapMs = 250) {
    this.windowMs = windowMs;
    this.#minGapMs = minGapMs;
  }

  /** Records the counter's `total` at `now`; samples closer than the minimum gap to the previous one are skipped. */
  record(now: number, total: number): void {
    const samples = this.#samples;
    const last = samples[samples.length - 1];
    if (last && now - last.at < this.#minGapMs) return;
    samples.push({ at: now, total });
    while (samples.length > 2 && now - samples[1].at >= this.windowMs) samples.shift();
  }

  /** Growth per second over the window (0 until two samples exist). */
  perSecond(): number {
    const samples = this.#samples;
    if (samples.length < 2) return 0;
    const first = samples[0];
    const last = samples[samples.length - 1];
    return ((last.total - first.total) * 1000) / (last.at - first.at);
  }
}
