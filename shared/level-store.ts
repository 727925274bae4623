/**
 * One LevelDB database with a group-committing writer. Every write of the node (buffer appends, dead letters,
 * high-water marks, deletes) goes through `write` (or `join`, for a write whose data a seal hook adds), and all
 * writes that arrive while one batch is on its way to disk leave together in the next one: one synced LevelDB
 * batch for many events, which is what makes an fsync per acknowledged publish affordable (see DESIGN.md, "facts
 * measured"). Seal hooks go one step further: a component gathers its writes of one batch into a single record.
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

/**
 * Adds records to a batch as it is sealed for writing. A component that gathers many small writes into one
 * record per commit (a segment of events, a journal of resend records) registers one, so that a commit costs it
 * one LevelDB put rather than one per write. `put` adds to the sealed batch; the returned callback, if any, runs
 * when that batch has committed (or failed), before the callbacks of the batch's writes.
 */
export type SealHook = (put: (key: Uint8Array, value: Uint8Array) => void) => WriteCallback | null;

export interface LevelStoreOptions {
  durability?: Durability;
  /** Most operations in one LevelDB batch (a single larger write is not split); more waits for the next commit. */
  maxBatchOps?: number;
}

type Db = ClassicLevel<Uint8Array, Uint8Array>;
type ChainedBatch = ReturnType<Db['batch']>;

/** A batch that is full or due, with the callbacks of its seal hooks and of its writes. */
interface SealedBatch {
  batch: ChainedBatch;
  ops: number;
  sealCallbacks: WriteCallback[];
  callbacks: WriteCallback[];
  /** Why a seal hook's put failed; the batch then fails as a whole. */
  error: unknown;
}

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
  #full: SealedBatch[] = [];
  readonly #sealHooks: SealHook[] = [];
  /** The batch the seal hooks are adding to, and why adding to it failed (e.g. the database was closed). */
  #sealing: ChainedBatch | null = null;
  #sealError: unknown = null;
  readonly #sealPut = (key: Uint8Array, value: Uint8Array): void => {
    try {
      this.#sealing!.put(key, value);
    } catch (err) {
      this.#sealError ??= err;
    }
  };
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

  /**
   * Joins the current batch without operations of its own: `done` runs when the batch has committed. For a write
   * whose data a seal hook adds to the batch; `ops` counts it towards `maxBatchOps`. Returns false (having called
   * `done` with a `ClosedError`) when the store is closed.
   */
  join(done: WriteCallback, ops = 1): boolean {
    if (this.#closed) {
      done(new ClosedError('the store'));
      return false;
    }
    this.#room(ops);
    this.#batch ??= this.db.batch();
    this.#batchOps += ops;
    this.#callbacks.push(done);
    this.#schedule();
    return true;
  }

  /** Calls `hook` whenever a batch is sealed (see `SealHook`). Returns the function that removes it. */
  addSealHook(hook: SealHook): () => void {
    this.#sealHooks.push(hook);
    return () => {
      const i = this.#sealHooks.indexOf(hook);
      if (i >= 0) this.#sealHooks.splice(i, 1);
    };
  }

  writeAsync(puts: readonly (readonly [Uint8Array, Uint8Array])[], dels: readonly Uint8Array[] = []): Promise<void> {
    return new Promise((resolve, reject) => this.write(puts, dels, (err) => (err ? reject(err) : resolve())));
  }

  /** Starts a new batch when `ops` more would take the current one past `maxBatchOps` (each write stays whole). */
  #room(ops: number): void {
    if (this.#batch && this.#batchOps + ops > this.#maxBatchOps) this.#full.push(this.#seal());
  }

  /** Takes the current batch for writing, after the seal hooks have added to it. */
  #seal(): SealedBatch {
    const batch = this.#batch!;
    const sealCallbacks: WriteCallback[] = [];
    this.#sealing = batch;
    try {
      for (const hook of this.#sealHooks) {
        const callback = hook(this.#sealPut);
        if (callback) sealCallbacks.push(callback);
      }
    } finally {
      this.#sealing = null;
    }
    const sealed = { batch, ops: this.#batchOps, sealCallbacks, callbacks: this.#callbacks, error: this.#sealError };
    this.#sealError = null;
    this.#batch = null;
    this.#batchOps = 0;
    this.#callbacks = [];
    return sealed;
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
    if (!this.#full.length && !this.#batch) return;
    const sealed = this.#full.shift() ?? this.#seal();
    this.#writing = true;
    const failed = (err: unknown) => this.#finish(sealed, new StorageError(`LevelDB write of ${sealed.ops} operations failed: ${(err as Error).message}`, { cause: err }));
    if (sealed.error) failed(sealed.error);
    else sealed.batch.write({ sync: this.durability === 'power-safe' }).then(() => this.#finish(sealed, null), failed);
  }

  #finish(sealed: SealedBatch, err: Error | null): void {
    this.#writing = false;
    if (!err) {
      this.stats.commits++;
      this.stats.committedOps += sealed.ops;
    }
    runCallbacks(sealed.sealCallbacks, err);
    runCallbacks(sealed.callbacks, err);
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

function runCallbacks(callbacks: WriteCallback[], err: Error | null): void {
  for (let i = 0; i < callbacks.length; i++) {
    try {
      callbacks[i](err);
    } catch (cbErr) {
      process.emitWarning(`a LevelStore write callback threw: ${(cbErr as Error).message}`);
    }
  }
}
