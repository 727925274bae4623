import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { publishHash, RESEND_JOURNAL_NAMESPACE, RESEND_PAGE_NAMESPACE, ResendGuard, WINDOW_PAGES } from '../../edge/resend-guard.ts';
import { LevelStore } from '../../shared/level-store.ts';
import { tempDir } from '../helpers/temp-dir.ts';

/** Records a publish as ingest does: it joins a batch (its event's append), then the record follows. */
function remember(store: LevelStore, guard: ResendGuard, client: string, id: number, hash: number): Promise<void> {
  return new Promise((resolve, reject) => {
    store.join((err) => (err ? reject(err) : resolve()));
    guard.remember(client, id, hash);
  });
}

function check(guard: ResendGuard, client: string, id: number, hash: number): Promise<'duplicate' | 'new'> {
  return new Promise((resolve, reject) => guard.check(client, id, hash, (err) => (err ? reject(err) : resolve('duplicate')), () => resolve('new')));
}

async function keysIn(store: LevelStore, namespace: number): Promise<number> {
  return (await store.db.keys({ gte: Uint8Array.of(namespace), lt: Uint8Array.of(namespace + 1) }).all()).length;
}

describe('ResendGuard', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dbPath: string;
  let store: LevelStore;

  beforeEach(async () => {
    tmp = tempDir();
    dbPath = path.join(tmp.path, 'db');
    store = await LevelStore.open(dbPath, { durability: 'crash-safe' });
  });

  afterEach(async () => {
    await store.close();
    tmp.remove();
  });

  async function reopen(options?: Parameters<typeof ResendGuard.open>[1]): Promise<ResendGuard> {
    await store.close();
    store = await LevelStore.open(dbPath, { durability: 'crash-safe' });
    return ResendGuard.open(store, options);
  }

  it('recognises a re-send of a recorded publish by client, packet id and hash', async () => {
    const guard = await ResendGuard.open(store);
    await remember(store, guard, 'dev-1', 7, 1111);
    expect(await check(guard, 'dev-1', 7, 1111)).toBe('duplicate');
    expect(await check(guard, 'dev-1', 7, 2222)).toBe('new');
    expect(await check(guard, 'dev-1', 8, 1111)).toBe('new');
    expect(await check(guard, 'dev-2', 7, 1111)).toBe('new');
  });

  it('keeps the newest record of a packet id', async () => {
    const guard = await ResendGuard.open(store);
    await remember(store, guard, 'dev-1', 7, 1111);
    await remember(store, guard, 'dev-1', 7, 3333);
    expect(await check(guard, 'dev-1', 7, 1111)).toBe('new');
    expect(await check(guard, 'dev-1', 7, 3333)).toBe('duplicate');
  });

  it('writes the records of one commit as one journal record', async () => {
    const guard = await ResendGuard.open(store);
    await Promise.all(Array.from({ length: 50 }, (_, i) => remember(store, guard, `dev-${i % 3}`, i + 1, 1000 + i)));
    expect(await keysIn(store, RESEND_JOURNAL_NAMESPACE)).toBe(1);
    expect(await check(guard, 'dev-1', 50, 1049)).toBe('duplicate');
  });

  it('sees a publish whose commit is still on its way, once it is durable', async () => {
    const guard = await ResendGuard.open(store);
    const committed = remember(store, guard, 'dev-1', 9, 4242);
    // The re-send arrives before the original's commit.
    const verdict = check(guard, 'dev-1', 9, 4242);
    await committed;
    expect(await verdict).toBe('duplicate');
  });

  it('does not remember a publish whose commit failed', async () => {
    const guard = await ResendGuard.open(store);
    const failed = expect(remember(store, guard, 'dev-1', 5, 555)).rejects.toThrow('LevelDB write');
    await store.db.close();
    await failed;
    store = await LevelStore.open(dbPath);
    const again = await ResendGuard.open(store);
    expect(await check(again, 'dev-1', 5, 555)).toBe('new');
  });

  it('remembers across a restart', async () => {
    const guard = await ResendGuard.open(store);
    await remember(store, guard, 'dev-ü', 65_535, 77);
    await remember(store, guard, 'dev-1', 1, 88);
    const again = await reopen();
    expect(await check(again, 'dev-ü', 65_535, 77)).toBe('duplicate');
    expect(await check(again, 'dev-1', 1, 88)).toBe('duplicate');
    expect(await check(again, 'dev-1', 2, 88)).toBe('new');
  });

  it('folds the journal into pages, deleting it, and still answers from the pages, before and after a restart', async () => {
    let guard = await ResendGuard.open(store, { foldAt: 10 });
    for (let i = 0; i < 9; i++) await remember(store, guard, 'dev-1', 250 + i, 500 + i); // ids 250-258: pages 0 and 1
    expect(await keysIn(store, RESEND_PAGE_NAMESPACE)).toBe(0);
    await remember(store, guard, 'dev-2', 3, 903);
    // The fold runs after the commit that reached foldAt; a lookup queues behind it.
    expect(await check(guard, 'dev-1', 251, 501)).toBe('duplicate');
    expect(await keysIn(store, RESEND_JOURNAL_NAMESPACE)).toBe(0);
    expect(await keysIn(store, RESEND_PAGE_NAMESPACE)).toBe(3);
    // A newer record in the journal wins over the page.
    await remember(store, guard, 'dev-1', 251, 999);
    expect(await check(guard, 'dev-1', 251, 501)).toBe('new');
    expect(await check(guard, 'dev-1', 251, 999)).toBe('duplicate');
    guard = await reopen({ foldAt: 10 });
    expect(await check(guard, 'dev-1', 251, 999)).toBe('duplicate');
    expect(await check(guard, 'dev-1', 258, 508)).toBe('duplicate');
    expect(await check(guard, 'dev-2', 3, 903)).toBe('duplicate');
    expect(await check(guard, 'dev-2', 4, 903)).toBe('new');
    // A second fold (the journal read back on open holds one record) merges into the existing pages.
    for (let i = 0; i < 9; i++) await remember(store, guard, 'dev-1', 256 + i, 600 + i);
    expect(await check(guard, 'dev-1', 250, 500)).toBe('duplicate');
    expect(await check(guard, 'dev-1', 256, 600)).toBe('duplicate');
    expect(await check(guard, 'dev-1', 251, 999)).toBe('duplicate');
    expect(await keysIn(store, RESEND_JOURNAL_NAMESPACE)).toBe(0);
  });

  it("keeps a client's last WINDOW_PAGES pages as its packet ids move on, wrapping at 65,535", async () => {
    const guard = await ResendGuard.open(store, { foldAt: 256 });
    // A client counting ids 1, 2, 3, ... up to 65,535, then from 1 again; a fold every 256 records.
    const hashOf = (id: number, round: number) => id * 7 + round;
    const ids = Array.from({ length: 65_535 }, (_, i) => i + 1);
    for (let i = 0; i < ids.length; i += 256) {
      await Promise.all(ids.slice(i, i + 256).map((id) => remember(store, guard, 'dev-1', id, hashOf(id, 1))));
    }
    for (let id = 1; id <= 300; id++) await remember(store, guard, 'dev-1', id, hashOf(id, 2));
    await remember(store, guard, 'dev-2', 1, 5);
    expect(await check(guard, 'dev-1', 300, hashOf(300, 2))).toBe('duplicate');
    // The last ids before the wrap are still known (pages 254 and 255), older ones are not.
    expect(await check(guard, 'dev-1', 65_535, hashOf(65_535, 1))).toBe('duplicate');
    expect(await check(guard, 'dev-1', 65_024, hashOf(65_024, 1))).toBe('duplicate');
    for (const id of [3 * 256, 100 * 256 + 7, 252 * 256 + 255]) expect(await check(guard, 'dev-1', id, hashOf(id, 1))).toBe('new');
    const pages = await store.db.keys({ gte: Uint8Array.of(RESEND_PAGE_NAMESPACE), lt: Uint8Array.of(RESEND_PAGE_NAMESPACE + 1) }).all();
    const ofDev1 = pages.filter((k) => new TextDecoder().decode(k.subarray(1, 6)) === 'dev-1').map((k) => k[k.length - 1]);
    expect(ofDev1.sort((a, b) => a - b)).toEqual([0, 1, 254, 255]);
    expect(ofDev1.length).toBeLessThanOrEqual(WINDOW_PAGES);
  });
});

describe('publishHash', () => {
  const bytes = (s: string) => new TextEncoder().encode(s);

  it('is the same for the same topic and payload, and differs when either differs', () => {
    const payloads = ['', 'a', 'ab', 'abc', 'abcd', 'abcde', '{"celsius":21.5}', 'x'.repeat(200)];
    const hashes = new Set<number>();
    for (const topic of ['telemetry/a/t', 'telemetry/b/t']) {
      for (const p of payloads) {
        const h = publishHash(topic, bytes(p));
        expect(publishHash(topic, bytes(p))).toBe(h);
        expect(Number.isInteger(h) && h > 0 && h < 2 ** 32).toBe(true);
        hashes.add(h);
      }
    }
    expect(hashes.size).toBe(16);
    // Every byte counts, wherever it is.
    const base = bytes('x'.repeat(37));
    const seen = new Set([publishHash('t', base)]);
    for (let i = 0; i < base.length; i++) {
      const changed = Uint8Array.from(base);
      changed[i] ^= 1;
      seen.add(publishHash('t', changed));
    }
    expect(seen.size).toBe(38);
  });

  it('reads a payload that is a window on a larger buffer', () => {
    const backing = bytes('..hello..');
    expect(publishHash('t', backing.subarray(2, 7))).toBe(publishHash('t', bytes('hello')));
  });
});
