/**
 * One timer for a whole fleet: tasks wait in a min-heap ordered by due time, and a tick runs those that are due.
 * Thousands of devices cost one interval timer and O(log n) per run, not a timer each. A task that cannot run
 * (its device is offline or its in-flight window is full) leaves the heap and is scheduled again by whoever
 * unblocks it, so blocked devices cost nothing per tick.
 */

export interface ScheduledTask {
  /** Runs the task; returns when it is next due (epoch ms), or null to leave the schedule until `schedule` again. */
  run(now: number): number | null;
}

export interface SchedulerOptions {
  /** Time between ticks; also the worst-case lateness of a run. Default 10 ms. */
  tickMs?: number;
  clock?: () => number;
  /** Called when a task throws; the task is not rescheduled, the others run on. Default: rethrow. */
  onError?: (err: unknown, task: ScheduledTask) => void;
}

interface Entry {
  at: number;
  /** Insertion order, so tasks due at the same time run first-come first-served. */
  order: number;
  task: ScheduledTask;
  /** False once the task was rescheduled earlier or cancelled (lazy deletion). */
  live: boolean;
}

export class Scheduler {
  readonly tickMs: number;
  readonly #clock: () => number;
  readonly #onError: (err: unknown, task: ScheduledTask) => void;
  readonly #heap: Entry[] = [];
  readonly #entries = new Map<ScheduledTask, Entry>();
  #order = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #running = false;
  /** Tasks scheduled while a tick runs wait here, so a task runs at most once per tick. */
  #deferred: Entry[] = [];

  constructor(options: SchedulerOptions = {}) {
    this.tickMs = options.tickMs ?? 10;
    this.#clock = options.clock ?? Date.now;
    this.#onError =
      options.onError ??
      ((err) => {
        throw err;
      });
  }

  /** Tasks waiting to run. */
  get size(): number {
    return this.#entries.size;
  }

  /** Runs `task` at `at` (epoch ms); a task already waiting keeps the earlier of its two times. */
  schedule(task: ScheduledTask, at: number): void {
    const existing = this.#entries.get(task);
    if (existing) {
      if (existing.at <= at) return;
      existing.live = false;
    }
    const entry: Entry = { at, order: this.#order++, task, live: true };
    this.#entries.set(task, entry);
    if (this.#running) this.#deferred.push(entry);
    else this.#push(entry);
  }

  cancel(task: ScheduledTask): void {
    const entry = this.#entries.get(task);
    if (!entry) return;
    entry.live = false;
    this.#entries.delete(task);
  }

  /** Runs every task due at or before `now`, each at most once; returns how many ran. */
  runDue(now: number = this.#clock()): number {
    let ran = 0;
    this.#running = true;
    try {
      while (this.#heap.length > 0 && this.#heap[0].at <= now) {
        const entry = this.#pop();
        if (!entry.live) continue;
        this.#entries.delete(entry.task);
        ran++;
        let next: number | null = null;
        try {
          next = entry.task.run(now);
        } catch (err) {
          this.#onError(err, entry.task);
        }
        if (next !== null) this.schedule(entry.task, next);
      }
    } finally {
      this.#running = false;
      for (const entry of this.#deferred) if (entry.live) this.#push(entry);
      this.#deferred = [];
    }
    return ran;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.runDue(), this.tickMs);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #push(entry: Entry): void {
    const heap = this.#heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i], heap[parent])) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
  }

  #pop(): Entry {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < heap.length && before(heap[left], heap[smallest])) smallest = left;
        if (right < heap.length && before(heap[right], heap[smallest])) smallest = right;
        if (smallest === i) break;
        [heap[i], heap[smallest]] = [heap[smallest], heap[i]];
        i = smallest;
      }
    }
    return top;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.at < b.at || (a.at === b.at && a.order < b.order);
}
