/**
 * Publish rate per device: a token bucket for each key (the edge keys it by connection, and Aedes keeps one
 * connection per client id [MQTT-3.1.4-2]). A bucket fills at `ratePerSecond` up to `burst` tokens and each
 * publish takes one, so a device may send `burst` messages at once after a quiet spell and `ratePerSecond` for
 * as long as it likes. A bucket starts full. Memory stays bounded by the devices connected: the owner `forget`s
 * the bucket of a client that disconnected (so a device that reconnects starts with a full bucket: refilling it
 * that way costs a whole CONNECT, and authentication, each time).
 */
export interface PublishRateOptions {
  /** Tokens per second; 0 turns the limit off (every `take` succeeds). */
  ratePerSecond: number;
  /** Most tokens a bucket holds: the burst a device may send above its rate. At least 1 is used. */
  burst: number;
  /** Monotonic milliseconds; injectable so tests need not wait. Default `performance.now`. */
  clock?: () => number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date. */
  at: number;
}

export class PublishRate<K> {
  readonly #perMs: number;
  readonly #capacity: number;
  readonly #clock: () => number;
  readonly #buckets = new Map<K, Bucket>();

  constructor(options: PublishRateOptions) {
    if (!(options.ratePerSecond >= 0) || !Number.isFinite(options.ratePerSecond)) throw new RangeError(`a publish rate must be 0 or more per second, got ${options.ratePerSecond}`);
    this.#perMs = options.ratePerSecond / 1000;
    this.#capacity = Math.max(1, options.burst);
    this.#clock = options.clock ?? (() => performance.now());
  }

  /** False when the rate is 0 (no limit). */
  get enabled(): boolean {
    return this.#perMs > 0;
  }

  /** Buckets held (one per key seen and not forgotten). */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Takes a token for `key` and returns 0 when one was free; otherwise takes nothing and returns the milliseconds
   * until one will be (at least 1).
   */
  take(key: K): number {
    if (this.#perMs === 0) return 0;
    const now = this.#clock();
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      bucket = { tokens: this.#capacity, at: now };
      this.#buckets.set(key, bucket);
    } else if (now > bucket.at) {
      bucket.tokens = Math.min(this.#capacity, bucket.tokens + (now - bucket.at) * this.#perMs);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.#perMs));
  }

  /** Drops the bucket of `key` (its client disconnected). */
  forget(key: K): void {
    this.#buckets.delete(key);
  }

  clear(): void {
    this.#buckets.clear();
  }
}
