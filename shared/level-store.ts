/**
 * One LevelDB database with a group-committing writer. Every write of the node (buffer appends, dead letters,
 * high-water marks, deletes) goes through `write`, and all writes that arrive while one batch is on its way to
 * disk leave together in the next one: one synced LevelDB batch for many events, which is what makes an fsync
 * per acknowledged publish affordable (see DESIGN.md, "facts measured").
 */
import process from 'node:process';
import { setImmediate } from 'node:timers';
import { ClassicLevel } from 'classic-level';
import { ClosedError, StorageError } from './errors.ts';

/**
 * `power-safe`: every group commit is synced to disk (fsync) before it is acknowledged; survives a power cut.
 * `crash-safe`: the commit is in the operating system's page cache before it is acknowledged; survives kill -9
 * of the process, not a power cut.
 */
export type Durability = 'power-safe' | 'crash-safe';

export type WriteCallback = (err: Error | null) => void;

export interface LevelStoreOptions {
  durability?: Durability;
  /** Most operations in one LevelDB batch (a single larger write is not split); more waits for the next commit. */
  maxBatchOps?: number;
}

type Db = ClassicLevel<Uint8Array, Uint8Array>;
type ChainedBatch = ReturnType<Db['batch']>;

export interface StoreStats {
  commits: number;
  committedOps: number;
}

export class LevelStore {
  readonly db: Db;
  readonly path: string;
  readonly durability: Durability;
  readonly #maxBatchOps: number;
  #batch: ChainedBatch | null = null;
  #batchOps = 0;
  #callbacks: WriteCallback[] = [];
  /** Batches that reached `maxBatchOps`, waiting their turn, oldest first. */
  #full: { batch: ChainedBatch; ops: number; callbacks: WriteCallback[] }[] = [];
  #writing = false;
  #scheduled = false;
  #closed = false;
  #idle: (() => void)[] = [];
  readonly stats: StoreStats = { commits: 0, committedOps: 0 };

  private constructor(db: Db, path: string, options: LevelStoreOptions) {
    this.db = db;
    this.path = path;
    this.durability = options.durability ?? 'power-safe';
    this.#maxBatchOps = options.maxBatchOps ?? 20_000;
  }

  static async open(path: string, options: LevelStoreOptions = {}): Promise<LevelStore> {
    const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: Error }).cause ?? err;
      throw new StorageError(`cannot open the LevelDB store at ${path}: ${(cause as Error).message}. Is another node using this data directory?`, { cause: err });
    }
    return new LevelStore(db, path, options);
  }

  /**
   * Queues puts and deletes; `done` runs once they are durable (per the store's durability) or failed. Each call
   * is committed atomically, and calls commit in the order they were made; calls of one tick share a commit up
   * to `maxBatchOps` operations.
   */
  write(puts: readonly (readonly [Uint8Array, Uint8Array])[], dels: readonly Uint8Array[], done: WriteCallback): void {
    if (this.#closed) {
      done(new ClosedError('the store'));
      return;
    }
    this.#room(puts.length + dels.length);
    const batch = (this.#batch ??= this.db.batch());
    for (let i = 0; i < puts.length; i++) batch.put(puts[i][0], puts[i][1]);
    for (let i = 0; i < dels.length; i++) batch.del(dels[i]);
    this.#batchOps += puts.length + dels.length;
    this.#callbacks.push(done);
    this.#schedule();
  }

  /** One put; the hot path's form of `write`, without the arrays. */
  put(key: Uint8Array, value: Uint8Array, done: WriteCallback): void {
    if (this.#closed) {
      done(new ClosedError('the store'));
      return;
    }
    this.#room(1);
    (this.#batch ??= this.db.batch()).put(key, value);
    this.#batchOps++;
    this.#callbacks.push(done);
    this.#schedule();
  }

  writeAsync(puts: readonly (readonly [Uint8Array, Uint8Array])[], dels: readonly Uint8Array[] = []): Promise<void> {
    return new Promise((resolve, reject) => this.write(puts, dels, (err) => (err ? reject(err) : resolve())));
  }

  /** Starts a new batch when `ops` more would take the current one past `maxBatchOps` (each write stays whole). */
  #room(ops: number): void {
    if (this.#batch && this.#batchOps + ops > this.#maxBatchOps) {
      this.#full.push({ batch: this.#batch, ops: this.#batchOps, callbacks: this.#callbacks });
      this.#batch = null;
      this.#batchOps = 0;
      this.#callbacks = [];
    }
  }

  #schedule(): void {
    if (this.#writing || this.#scheduled) return;
    this.#scheduled = true;
    // Wait for the rest of this I/O phase (e.g. every publish in one socket read) to join the batch.
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#writing) return;
    let next = this.#full.shift();
    if (!next) {
      if (!this.#batch) return;
      next = { batch: this.#batch, ops: this.#batchOps, callbacks: this.#callbacks };
      this.#batch = null;
      this.#batchOps = 0;
      this.#callbacks = [];
    }
    const { batch, ops, callbacks } = next;
    this.#writing = true;
    batch.write({ sync: this.durability === 'power-safe' }).then(
      () => this.#finish(callbacks, ops, null),
      (err: unknown) => this.#finish(callbacks, ops, new StorageError(`LevelDB write of ${ops} operations failed: ${(err as Error).message}`, { cause: err })),
    );
  }

  #finish(callbacks: WriteCallback[], ops: number, err: Error | null): void {
    this.#writing = false;
    if (!err) {
      this.stats.commits++;
      this.stats.committedOps += ops;
    }
    for (let i = 0; i < callbacks.length; i++) {
      try {
        callbacks[i](err);
      } catch (cbErr) {
        process.emitWarning(`a LevelStore write callback threw: ${(cbErr as Error).message}`);
      }
    }
    if (this.#full.length) {
      this.#flush();
    } else if (this.#batch) {
      this.#schedule();
    } else {
      const idle = this.#idle;
      this.#idle = [];
      for (const fn of idle) fn();
    }
  }

  /** Resolves when every queued write has been committed. */
  flushed(): Promise<void> {
    if (!this.#batch && !this.#writing && !this.#full.length) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // A write may be queued by a callback of the last commit; loop until none is left, then refuse new ones.
    do await this.flushed();
    while (this.#batch || this.#writing || this.#full.length);
    this.#closed = true;
    await this.db.close();
  }
}
