/**
 * Latency samples in milliseconds, kept whole (a 10 s run at 100k/s is 8 MB) so percentiles are exact.
 */
export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export class LatencyRecorder {
  #samples = new Float64Array(1024);
  #count = 0;

  record(ms: number): void {
    if (this.#count === this.#samples.length) {
      const grown = new Float64Array(this.#samples.length * 2);
      grown.set(this.#samples);
      this.#samples = grown;
    }
    this.#samples[this.#count++] = ms;
  }

  get count(): number {
    return this.#count;
  }

  reset(): void {
    this.#count = 0;
  }

  summary(): LatencySummary {
    const n = this.#count;
    if (n === 0) return { count: 0, p50: NaN, p90: NaN, p99: NaN, max: NaN, mean: NaN };
    const sorted = this.#samples.slice(0, n).sort();
    let sum = 0;
    for (let i = 0; i < n; i++) sum += sorted[i];
    // Nearest-rank percentile.
    const at = (p: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(p * n) - 1))];
    return { count: n, p50: round(at(0.5)), p90: round(at(0.9)), p99: round(at(0.99)), max: round(sorted[n - 1]), mean: round(sum / n) };
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
