/**
 * Who is told when a log's committed sequence advances (the uplink waits on the edge buffer, live streams on the
 * cloud log). A listener that throws is reported as a process warning and does not stop the others, nor the
 * commit's own callbacks (and so the acknowledgements waiting on them).
 */
import process from 'node:process';

export class CommitListeners {
  readonly #listeners = new Set<(committedSeq: number) => void>();

  /** Calls `listener` with each new committed sequence. Returns the unsubscribe function. */
  add(listener: (committedSeq: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  notify(committedSeq: number): void {
    for (const listener of this.#listeners) {
      try {
        listener(committedSeq);
      } catch (err) {
        process.emitWarning(`a log commit listener threw: ${(err as Error).message}`);
      }
    }
  }
}
