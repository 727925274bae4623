import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClosedError, StorageError } from '../../shared/errors.ts';
import { LevelStore } from '../../shared/level-store.ts';
import { tempDir } from '../helpers/temp-dir.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();
const key = (s: string) => enc.encode(s);
const val = (s: string) => enc.encode(s);

function putAsync(store: LevelStore, k: string, v: string): Promise<void> {
  return new Promise((resolve, reject) => store.put(key(k), val(v), (err) => (err ? reject(err) : resolve())));
}

async function read(store: LevelStore, k: string): Promise<string | undefined> {
  const v = await store.db.get(key(k));
  return v === undefined ? undefined : dec.decode(v);
}

describe('LevelStore', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dir: string;
  let dbPath: string;
  const open: LevelStore[] = [];

  async function openStore(options?: Parameters<typeof LevelStore.open>[1]): Promise<LevelStore> {
    const store = await LevelStore.open(dbPath, options);
    open.push(store);
    return store;
  }

  beforeEach(() => {
    tmp = tempDir();
    dir = tmp.path;
    dbPath = path.join(dir, 'db');
  });

  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
    tmp.remove();
  });

  it('keeps a write once its callback has run, across close and reopen', async () => {
    const store = await openStore();
    await putAsync(store, 'a', 'alpha');
    await store.writeAsync([[key('b'), val('beta')], [key('c'), val('gamma')]]);
    await store.close();
    const again = await openStore();
    expect(await read(again, 'a')).toBe('alpha');
    expect(await read(again, 'b')).toBe('beta');
    expect(await read(again, 'c')).toBe('gamma');
  });

  it('applies deletes durably', async () => {
    const store = await openStore();
    await store.writeAsync([[key('a'), val('1')], [key('b'), val('2')]]);
    await store.writeAsync([[key('c'), val('3')]], [key('a')]);
    await store.close();
    const again = await openStore();
    expect(await read(again, 'a')).toBeUndefined();
    expect(await read(again, 'b')).toBe('2');
    expect(await read(again, 'c')).toBe('3');
  });

  it('is durable in crash-safe mode too', async () => {
    const store = await openStore({ durability: 'crash-safe' });
    expect(store.durability).toBe('crash-safe');
    await putAsync(store, 'k', 'v');
    await store.close();
    expect(await read(await openStore(), 'k')).toBe('v');
  });

  it('syncs every commit to disk by default', async () => {
    expect((await openStore()).durability).toBe('power-safe');
  });

  it('commits many writes queued in one tick together, in few commits', async () => {
    const store = await openStore();
    const n = 2000;
    const done: Promise<void>[] = [];
    for (let i = 0; i < n; i++) done.push(putAsync(store, `k${String(i).padStart(5, '0')}`, `v${i}`));
    await Promise.all(done);
    expect(store.stats.committedOps).toBe(n);
    expect(store.stats.commits).toBeGreaterThanOrEqual(1);
    expect(store.stats.commits).toBeLessThan(n / 100);
    expect(await read(store, 'k01999')).toBe('v1999');
  });

  it('counts every operation of a multi-operation write', async () => {
    const store = await openStore();
    await store.writeAsync([[key('a'), val('1')], [key('b'), val('2')]], [key('z')]);
    expect(store.stats).toEqual({ commits: 1, committedOps: 3 });
  });

  it('runs callbacks in the order the writes were queued, across several commits', async () => {
    const store = await openStore();
    const order: number[] = [];
    const all: Promise<void>[] = [];
    let next = 0;
    const queue = (count: number) => {
      for (let i = 0; i < count; i++) {
        const me = next++;
        all.push(
          new Promise((resolve, reject) => {
            const cb = (err: Error | null) => {
              order.push(me);
              if (err) reject(err);
              else resolve();
            };
            if (me % 2) store.put(key(`k${me}`), val('x'), cb);
            else store.write([[key(`k${me}`), val('y')]], [], cb);
          }),
        );
      }
    };
    queue(300);
    // More writes while the first commit is in flight join a later commit.
    setImmediate(() => queue(300));
    await new Promise((resolve) => setTimeout(resolve, 0));
    await Promise.all(all);
    await store.flushed();
    expect(order).toEqual(Array.from({ length: next }, (_, i) => i));
    expect(store.stats.committedOps).toBe(600);
    expect(store.stats.commits).toBeGreaterThanOrEqual(2);
  });

  it('applies writes in the order they were queued, so a later put of the same key wins', async () => {
    const store = await openStore();
    const all = [putAsync(store, 'k', 'first'), store.writeAsync([[key('k'), val('second')]]), store.writeAsync([], [key('k')]), putAsync(store, 'k', 'last')];
    await Promise.all(all);
    expect(await read(store, 'k')).toBe('last');
  });

  it('limits a single commit to maxBatchOps operations', async () => {
    const store = await openStore({ maxBatchOps: 10 });
    const all: Promise<void>[] = [];
    for (let i = 0; i < 100; i++) all.push(putAsync(store, `k${i}`, 'v'));
    await Promise.all(all);
    expect(store.stats.committedOps).toBe(100);
    // "Most operations in one LevelDB batch; more waits for the next commit."
    expect(store.stats.commits).toBeGreaterThanOrEqual(10);
  });

  it('resolves flushed() at once when idle and after every queued write otherwise', async () => {
    const store = await openStore();
    await store.flushed();
    let called = 0;
    for (let i = 0; i < 50; i++) store.put(key(`k${i}`), val('v'), () => called++);
    expect(called).toBe(0);
    await store.flushed();
    expect(called).toBe(50);
    expect(store.stats.committedOps).toBe(50);
  });

  it('commits writes that are still queued when close() is called', async () => {
    const store = await openStore();
    const results: (Error | null)[] = [];
    for (let i = 0; i < 20; i++) store.put(key(`k${i}`), val(`v${i}`), (err) => results.push(err));
    await store.close();
    expect(results).toEqual(Array.from({ length: 20 }, () => null));
    const again = await openStore();
    expect(await read(again, 'k19')).toBe('v19');
  });

  it('commits or refuses with ClosedError a write queued while close() is finishing', async () => {
    const store = await openStore();
    const first = store.writeAsync([[key('a'), val('1')]]);
    const closing = store.close();
    let result: Error | null | 'not called' = 'not called';
    // Runs in the microtask right after the last commit's callbacks, before close() goes on.
    const late = first.then(() => store.put(key('b'), val('2'), (err) => (result = err)));
    await Promise.all([closing, late]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    if (result === null) {
      expect(await read(await openStore(), 'b')).toBe('2');
    } else {
      expect(result).toBeInstanceOf(ClosedError);
    }
  });

  it('fails writes after close with ClosedError', async () => {
    const store = await openStore();
    await store.close();
    const errors: (Error | null)[] = [];
    store.put(key('a'), val('1'), (err) => errors.push(err));
    store.write([[key('b'), val('2')]], [], (err) => errors.push(err));
    expect(errors).toHaveLength(2);
    for (const err of errors) {
      expect(err).toBeInstanceOf(ClosedError);
      expect((err as ClosedError).code).toBe('ERR_CLOSED');
      expect(err!.message).toBe('the store is closed');
    }
    await expect(store.writeAsync([[key('c'), val('3')]])).rejects.toBeInstanceOf(ClosedError);
    // close() twice is harmless.
    await store.close();
  });

  it('refuses to open a directory that another store has open, suggesting another node uses it', async () => {
    await openStore();
    let caught: unknown;
    try {
      await LevelStore.open(dbPath);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(StorageError);
    const err = caught as StorageError;
    expect(err.code).toBe('ERR_STORAGE');
    expect(err.message).toContain(dbPath);
    expect(err.message).toMatch(/another node/i);
    expect(err.cause).toBeDefined();
  });

  it('reports a failed commit to every waiting callback as a StorageError and does not count it', async () => {
    const store = await openStore();
    await putAsync(store, 'before', 'x');
    const errors: (Error | null)[] = [];
    store.put(key('a'), val('1'), (err) => errors.push(err));
    store.put(key('b'), val('2'), (err) => errors.push(err));
    // The database goes away under the store before the group commit runs.
    await store.db.close();
    await store.flushed();
    expect(errors).toHaveLength(2);
    for (const err of errors) {
      expect(err).toBeInstanceOf(StorageError);
      expect(err!.message).toContain('LevelDB write of 2 operations failed');
    }
    expect(store.stats).toEqual({ commits: 1, committedOps: 1 });
  });

  it('lets a seal hook add records to each batch as it is sealed, and runs its callback before the writes\' callbacks', async () => {
    const store = await openStore();
    const order: string[] = [];
    let pending: string[] = [];
    store.addSealHook((put) => {
      if (pending.length === 0) return null;
      const joined = pending.join(',');
      pending = [];
      put(key('segment'), val(joined));
      return (err) => order.push(`sealed ${joined} ${err === null}`);
    });
    const commits = store.stats.commits;
    for (const v of ['a', 'b']) {
      store.join((err) => order.push(`joined ${v} ${err === null}`));
      pending.push(v);
    }
    store.put(key('k'), val('v'), (err) => order.push(`put ${err === null}`));
    await store.flushed();
    expect(order).toEqual(['sealed a,b true', 'joined a true', 'joined b true', 'put true']);
    expect(store.stats.commits).toBe(commits + 1);
    expect(await read(store, 'segment')).toBe('a,b');
    expect(await read(store, 'k')).toBe('v');
  });

  it('seals a batch that reached maxBatchOps with what was added before the write that did not fit', async () => {
    const store = await openStore({ maxBatchOps: 3 });
    let pending: string[] = [];
    const segments: string[] = [];
    store.addSealHook((put) => {
      if (pending.length === 0) return null;
      const joined = pending.join(',');
      pending = [];
      put(key(`segment-${segments.length}`), val(joined));
      segments.push(joined);
      return null;
    });
    for (const v of ['a', 'b', 'c', 'd', 'e']) {
      // Join first, then add: joining may seal the batch the earlier values belong to.
      store.join(() => undefined);
      pending.push(v);
    }
    await store.flushed();
    expect(segments).toEqual(['a,b,c', 'd,e']);
    expect(store.stats.commits).toBe(2);
    expect(store.stats.committedOps).toBe(5);
  });

  it('stops calling a seal hook once it is removed', async () => {
    const store = await openStore();
    let calls = 0;
    const remove = store.addSealHook(() => {
      calls++;
      return null;
    });
    await putAsync(store, 'a', '1');
    remove();
    await putAsync(store, 'b', '2');
    expect(calls).toBe(1);
  });

  it('refuses a join once closed, calling back with ClosedError', async () => {
    const store = await openStore();
    await store.close();
    let error: Error | null = null;
    expect(store.join((err) => (error = err))).toBe(false);
    expect(error).toBeInstanceOf(ClosedError);
  });

  it('fails the whole batch, hook callbacks included, when a seal hook cannot add to it', async () => {
    const store = await openStore();
    const errors: (Error | null)[] = [];
    store.addSealHook((put) => {
      put(key('segment'), val('x'));
      return (err) => errors.push(err);
    });
    store.join((err) => errors.push(err));
    // The database goes away under the store before the batch is sealed: the hook's put fails.
    await store.db.close();
    await store.flushed();
    expect(errors).toHaveLength(2);
    for (const err of errors) expect(err).toBeInstanceOf(StorageError);
  });
});
