/**
 * Exponential backoff with jitter for reconnects and retries. The delay for attempt n is drawn from
 * [base/2, base] with base = min(maxMs, initialMs * factor^n) ("equal jitter"): spread out so a fleet of edges
 * does not reconnect in step, never so short that a down peer is hammered.
 */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  factor?: number;
  random?: () => number;
}

export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 500;
    this.maxMs = options.maxMs ?? 30_000;
    this.factor = options.factor ?? 2;
    this.#random = options.random ?? Math.random;
  }

  get attempt(): number {
    return this.#attempt;
  }

  /** The delay before the next attempt; each call moves one attempt further. */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** this.#attempt);
    this.#attempt++;
    return Math.round(base / 2 + (this.#random() * base) / 2);
  }

  reset(): void {
    this.#attempt = 0;
  }
}
