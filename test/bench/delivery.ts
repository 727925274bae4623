/**
 * What a subscriber received, checked against what the load generator sent: per device, which sequence
 * numbers arrived (once, twice or never) and how long each took.
 */
import { LatencyRecorder } from './latency.ts';

export interface DeliveryReport {
  received: number;
  unique: number;
  duplicates: number;
  /** Sent messages (below each device's sent count) that never arrived. */
  lost: number;
}

export class DeliveryTracker {
  readonly latency = new LatencyRecorder();
  #seen: Uint8Array[] = [];
  #received = 0;
  #duplicates = 0;
  #lastArrival = 0;

  /** One arrival: `device` index, its `seq`, send time `ts` and arrival time `now` (same clock). */
  record(device: number, seq: number, ts: number, now: number): void {
    this.#received++;
    this.#lastArrival = now;
    let seen = this.#seen[device];
    if (!seen || seq >= seen.length) {
      const grown = new Uint8Array(Math.max(1024, (seq + 1) * 2));
      if (seen) grown.set(seen);
      this.#seen[device] = seen = grown;
    }
    if (seen[seq]) {
      this.#duplicates++;
      return;
    }
    seen[seq] = 1;
    this.latency.record(now - ts);
  }

  get received(): number {
    return this.#received;
  }

  get unique(): number {
    return this.#received - this.#duplicates;
  }

  /** Waits until `count` distinct messages have arrived or `timeoutMs` has passed; says which. */
  async reached(count: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.unique < count) {
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return true;
  }

  /** `performance.now()` of the latest arrival. */
  get lastArrival(): number {
    return this.#lastArrival;
  }

  /** Checks arrivals against `sent[device]` = the number of messages sent by each device (seqs 0..n-1). */
  report(sent: readonly number[]): DeliveryReport {
    let lost = 0;
    for (let d = 0; d < sent.length; d++) {
      const seen = this.#seen[d];
      for (let s = 0; s < sent[d]; s++) if (!seen || !seen[s]) lost++;
    }
    return { received: this.#received, unique: this.unique, duplicates: this.#duplicates, lost };
  }
}
