/**
 * Messages the edge could not turn into CloudEvents, kept with the reason so that nothing a device sent is
 * dropped silently. Each record is durable before the device's publish is acknowledged. The log keeps the most
 * recent `capacity` records.
 */
import { AppendLog } from '../shared/append-log.ts';
import { decode, encode } from '../shared/codec.ts';
import type { LevelStore, WriteCallback } from '../shared/level-store.ts';

export const DEAD_LETTER_NAMESPACE = 0x20;

export interface DeadLetter {
  time: string;
  clientId: string;
  topic: string;
  reason: string;
  message: string;
  payload: Uint8Array;
}

export class DeadLetters {
  readonly #log: AppendLog;
  readonly #capacity: number;
  #trimming = false;

  private constructor(log: AppendLog, capacity: number) {
    this.#log = log;
    this.#capacity = capacity;
  }

  static async open(store: LevelStore, capacity = 10_000): Promise<DeadLetters> {
    return new DeadLetters(await AppendLog.open(store, DEAD_LETTER_NAMESPACE), capacity);
  }

  add(letter: DeadLetter, done: WriteCallback): void {
    this.#log.append(encode(letter), (err) => {
      done(err);
      if (!err && this.#log.count > this.#capacity * 1.1) this.#trim();
    });
  }

  get count(): number {
    return this.#log.count;
  }

  /** The newest records, newest last. */
  async recent(limit: number): Promise<DeadLetter[]> {
    const from = Math.max(this.#log.firstSeq, this.#log.committedSeq - limit + 1);
    const entries = await this.#log.read(from, limit);
    return entries.map((e) => decode<DeadLetter>(e.value));
  }

  #trim(): void {
    if (this.#trimming) return;
    this.#trimming = true;
    const excess = this.#log.count - this.#capacity;
    this.#log
      .read(this.#log.firstSeq, excess)
      .then((old) => this.#log.deleteEntries(old.map((e) => e.seq), old.map((e) => e.value.byteLength)))
      // A failed trim is retried on the next add; the records themselves are safe.
      .catch(() => undefined)
      .finally(() => {
        this.#trimming = false;
      });
  }
}
