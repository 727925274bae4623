/**
 * Recognises a device's re-send of a QoS 1 publish that the edge already made durable, so one acknowledged
 * publish is one event even when the PUBACK was lost (edge crash, dropped link).
 *
 * MQTT 3.1.1 [MQTT-3.3.1-1]: a client re-delivering a PUBLISH sets DUP=1 and keeps its Packet Identifier
 * ([MQTT-4.4.0-1] re-delivery happens on reconnect). For every QoS 1 publish the edge records
 * `(client id, packet id) → hash of topic and payload` in the same group commit as the event. A later publish with
 * DUP=1, the same packet id and the same hash is the same message: it is acknowledged without a second event. A
 * publish with DUP=0 is always new (a client reuses a packet id only after its PUBACK) and replaces the record.
 *
 * Storage, so that a commit costs one LevelDB put however many publishes it holds (a put per publish was a large
 * part of the ingest hot path), and the hot path keeps nothing in memory:
 * - the records of one commit are one **journal** record, written by the store's seal hook into the batch that
 *   holds their events;
 * - once `foldAt` records are in the journal, they are **folded** into per-client **pages** of 256 packet ids
 *   (1 KiB each: a 4-byte hash per id, 0 for none), in one batch that also deletes the folded journal records.
 * A lookup (only for DUP=1, which is rare) reads the journal into an index in memory, kept until the next fold,
 * then falls back to the page.
 *
 * What it keeps is bounded per client id. A client re-sends only its unacknowledged publishes, which are its
 * most recent ones, and clients hand out packet ids in sequence (mqtt.js, Paho, ...). So a fold that writes page
 * `p` of a client deletes its page `p - WINDOW_PAGES`: each client keeps its last `WINDOW_PAGES` pages (the last
 * 768 to 1,024 packet ids, 4 KiB) plus the pages of the fold. A client with more unacknowledged publishes than
 * that, or one that picks packet ids at random, may get a second event for a re-send of an old one (a duplicate,
 * never a loss). Clean sessions are recorded too: mqtt.js re-sends its unacknowledged publishes after a
 * reconnect whatever the session flag.
 */
import process from 'node:process';
import { keySeq, seqKey } from '../shared/append-log.ts';
import type { LevelStore, WriteCallback } from '../shared/level-store.ts';

export const RESEND_JOURNAL_NAMESPACE = 0x31;
export const RESEND_PAGE_NAMESPACE = 0x32;

/** A page holds the records of 256 packet ids, 4 bytes each. */
const PAGE_BYTES = 256 * 4;
/** Pages kept per client behind the newest one written: see the module comment. */
export const WINDOW_PAGES = 4;
/** Client ids whose encoded bytes are cached. */
const CLIENT_CACHE = 100_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Per client id, its pages (packet id >> 8) as 256 hashes (packet id & 0xff), 0 for no record. */
type Records = Map<string, Map<number, Uint32Array>>;

export interface ResendGuardOptions {
  /** How many records the journal gathers before they are folded into pages. */
  foldAt?: number;
}

export class ResendGuard {
  readonly #store: LevelStore;
  readonly #foldAt: number;
  readonly #clientBytes = new Map<string, Uint8Array>();
  /** Records waiting for the current batch to be sealed. */
  #pendingClients: string[] = [];
  #pendingIds: number[] = [];
  #pendingHashes: number[] = [];
  /** Journal sequence numbers: the oldest unfolded record, the last committed one and the next to write. */
  #journalFirst: number;
  #journalCommitted: number;
  #journalNext: number;
  /** Records in the journal (committed, not folded), and whether a fold is queued. */
  #unfolded: number;
  #foldQueued = false;
  /** The journal up to `through`, indexed; built by the first lookup after a fold. */
  #index: { records: Records; through: number } | null = null;
  /** Lookups and folds, one at a time: a fold deletes journal records that a lookup may be reading. */
  #queue: Promise<void> = Promise.resolve();

  private constructor(store: LevelStore, foldAt: number, journal: { first: number; next: number; records: number }) {
    this.#store = store;
    this.#foldAt = foldAt;
    this.#journalFirst = journal.first;
    this.#journalCommitted = journal.next - 1;
    this.#journalNext = journal.next;
    this.#unfolded = journal.records;
    store.addSealHook((put) => this.#seal(put));
  }

  /** Opens the guard of `store`. */
  static async open(store: LevelStore, options: ResendGuardOptions = {}): Promise<ResendGuard> {
    let first = 0;
    let last = 0;
    let records = 0;
    for await (const [key, value] of store.db.iterator(journalRange(0, Infinity))) {
      const seq = keySeq(key);
      if (first === 0) first = seq;
      last = seq;
      records += decodeJournal(value, null);
    }
    return new ResendGuard(store, options.foldAt ?? 50_000, { first: first || 1, next: last + 1, records });
  }

  /**
   * Records a new QoS 1 publish. Call it right after the append of the publish's event, in the same synchronous
   * run: the record is then sealed into the batch that the append joined, so both commit or neither does.
   */
  remember(clientId: string, packetId: number, hash: number): void {
    this.#pendingClients.push(clientId);
    this.#pendingIds.push(packetId);
    this.#pendingHashes.push(hash);
  }

  /**
   * For a publish with DUP=1: calls `onDuplicate` when it is a re-send of a committed publish, `onNew` otherwise.
   * It first waits for every write queued before it, so an original still on its way to disk is seen once it
   * is there (or is not, if its commit failed).
   */
  check(clientId: string, packetId: number, hash: number, onDuplicate: WriteCallback, onNew: () => void): void {
    this.#store.join(() => {
      this.#enqueue(() =>
        this.#lookup(clientId, packetId).then(
          (stored) => (stored === hash ? onDuplicate(null) : onNew()),
          (err: unknown) => {
            process.emitWarning(`a resend guard lookup failed; the publish is taken as new: ${(err as Error).message}`);
            onNew();
          },
        ),
      );
    }, 0);
  }

  /** The hash last recorded for a client's packet id, 0 for none. */
  async #lookup(clientId: string, packetId: number): Promise<number> {
    const index = (this.#index ??= { records: new Map(), through: this.#journalFirst - 1 });
    const through = this.#journalCommitted;
    if (index.through < through) {
      // Journal records are never changed once written: only the ones committed since the last lookup are read.
      for await (const value of this.#store.db.values(journalRange(index.through + 1, through))) decodeJournal(value, index.records);
      index.through = through;
    }
    const known = index.records.get(clientId)?.get(packetId >> 8)?.[packetId & 0xff];
    if (known) return known;
    const page = await this.#store.db.get(pageKey(this.#clientKey(clientId), packetId >> 8));
    return page && page.byteLength === PAGE_BYTES ? new DataView(page.buffer, page.byteOffset, PAGE_BYTES).getUint32((packetId & 0xff) * 4) : 0;
  }

  /** Runs `task` after the lookups and folds queued before it. */
  #enqueue(task: () => Promise<void>): void {
    this.#queue = this.#queue.then(task);
  }

  /** The seal hook: the pending records become one journal record of the sealed batch. */
  #seal(put: (key: Uint8Array, value: Uint8Array) => void): WriteCallback | null {
    const clients = this.#pendingClients;
    if (clients.length === 0) return null;
    const value = this.#encodeJournal(clients, this.#pendingIds, this.#pendingHashes);
    this.#pendingClients = [];
    this.#pendingIds = [];
    this.#pendingHashes = [];
    const seq = this.#journalNext++;
    put(seqKey(RESEND_JOURNAL_NAMESPACE, seq), value);
    return (err) => {
      if (err) return;
      // Batches commit in the order they were sealed, so this is the newest journal record.
      this.#journalCommitted = seq;
      this.#unfolded += clients.length;
      if (this.#unfolded >= this.#foldAt && !this.#foldQueued) {
        this.#foldQueued = true;
        this.#enqueue(() => this.#fold());
      }
    };
  }

  /** Folds the committed journal into the pages, and deletes the journal records folded. */
  async #fold(): Promise<void> {
    const from = this.#journalFirst;
    const through = this.#journalCommitted;
    const records: Records = new Map();
    const newestPage = new Map<string, number>();
    let folded = 0;
    try {
      for await (const value of this.#store.db.values(journalRange(from, through))) folded += decodeJournal(value, records, newestPage);
      const keys: Uint8Array[] = [];
      const pages: Uint32Array[] = [];
      const dels: Uint8Array[] = [];
      for (const [client, ofClient] of records) {
        const prefix = this.#clientKey(client);
        // The client's window is its newest page and the WINDOW_PAGES - 1 before it (ids wrap, and so do pages).
        const newest = newestPage.get(client)!;
        const inWindow = (page: number) => ((newest - page) & 0xff) < WINDOW_PAGES;
        for (const [page, hashes] of ofClient) {
          if (inWindow(page)) {
            keys.push(pageKey(prefix, page));
            pages.push(hashes);
          } else dels.push(pageKey(prefix, page));
          // A sequential client writes every page in turn, so this reaches each page that left the window.
          const behind = (page - WINDOW_PAGES) & 0xff;
          if (!inWindow(behind) && !ofClient.has(behind)) dels.push(pageKey(prefix, behind));
        }
      }
      const old = await this.#store.db.getMany(keys);
      const puts: [Uint8Array, Uint8Array][] = [];
      for (let i = 0; i < keys.length; i++) {
        const before = old[i];
        const page = before && before.byteLength === PAGE_BYTES ? Uint8Array.from(before) : new Uint8Array(PAGE_BYTES);
        const view = new DataView(page.buffer);
        const hashes = pages[i];
        for (let slot = 0; slot < 256; slot++) if (hashes[slot] !== 0) view.setUint32(slot * 4, hashes[slot]);
        puts.push([keys[i], page]);
      }
      for (let seq = from; seq <= through; seq++) dels.push(seqKey(RESEND_JOURNAL_NAMESPACE, seq));
      await this.#store.writeAsync(puts, dels);
      this.#journalFirst = through + 1;
      this.#unfolded -= folded;
      // The index cannot catch up any more: the journal records it has not read yet are gone (into the pages).
      this.#index = null;
    } catch (err) {
      // The journal still holds every record; the next commit tries again (none will, if the store was closed).
      if (this.#store.db.status === 'open') process.emitWarning(`the resend guard could not fold its journal into pages (it will try again): ${(err as Error).message}`);
    } finally {
      this.#foldQueued = false;
    }
  }

  #encodeJournal(clients: string[], ids: number[], hashes: number[]): Uint8Array {
    let size = 0;
    const keys: Uint8Array[] = new Array(clients.length);
    for (let i = 0; i < clients.length; i++) {
      keys[i] = this.#clientKey(clients[i]);
      size += 2 + keys[i].length + 6;
    }
    const out = new Uint8Array(size);
    const view = new DataView(out.buffer);
    let at = 0;
    for (let i = 0; i < clients.length; i++) {
      const key = keys[i];
      view.setUint16(at, key.length);
      out.set(key, at + 2);
      at += 2 + key.length;
      view.setUint16(at, ids[i]);
      view.setUint32(at + 2, hashes[i]);
      at += 6;
    }
    return out;
  }

  /** The client id's UTF-8 bytes, cached: the hot path does not re-encode it. */
  #clientKey(clientId: string): Uint8Array {
    let bytes = this.#clientBytes.get(clientId);
    if (!bytes) {
      bytes = encoder.encode(clientId);
      if (this.#clientBytes.size >= CLIENT_CACHE) this.#clientBytes.clear();
      this.#clientBytes.set(clientId, bytes);
    }
    return bytes;
  }
}

/** Journal records `from` to `through`. */
function journalRange(from: number, through: number): { gte: Uint8Array; lt: Uint8Array } {
  return {
    gte: seqKey(RESEND_JOURNAL_NAMESPACE, from),
    lt: through === Infinity ? Uint8Array.of(RESEND_JOURNAL_NAMESPACE + 1) : seqKey(RESEND_JOURNAL_NAMESPACE, through + 1),
  };
}

function setRecord(records: Records, client: string, id: number, hash: number): void {
  let pages = records.get(client);
  if (!pages) {
    pages = new Map();
    records.set(client, pages);
  }
  let hashes = pages.get(id >> 8);
  if (!hashes) {
    hashes = new Uint32Array(256);
    pages.set(id >> 8, hashes);
  }
  hashes[id & 0xff] = hash;
}

/**
 * Reads a journal record's entries into `records` (when given), and the page of each client's last entry into
 * `newestPage` (when given); returns how many entries there were.
 */
function decodeJournal(value: Uint8Array, records: Records | null, newestPage?: Map<string, number>): number {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  let at = 0;
  let count = 0;
  // Consecutive entries are mostly of the same client: decode its id once.
  let lastBytes: Uint8Array | null = null;
  let lastClient = '';
  while (at < value.length) {
    const length = view.getUint16(at);
    if (records) {
      const bytes = value.subarray(at + 2, at + 2 + length);
      if (!lastBytes || !sameBytes(bytes, lastBytes)) {
        lastBytes = bytes;
        lastClient = decoder.decode(bytes);
      }
      const id = view.getUint16(at + 2 + length);
      setRecord(records, lastClient, id, view.getUint32(at + 4 + length));
      newestPage?.set(lastClient, id >> 8);
    }
    at += 2 + length + 6;
    count++;
  }
  return count;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The page of `page` (packet id >> 8) of a client: namespace, client id, 0 (not in a client id [MQTT-1.5.3-2]), page. */
function pageKey(client: Uint8Array, page: number): Uint8Array {
  const key = new Uint8Array(client.length + 3);
  key[0] = RESEND_PAGE_NAMESPACE;
  key.set(client, 1);
  key[client.length + 1] = 0;
  key[client.length + 2] = page;
  return key;
}

/**
 * A 32-bit hash of the topic and the payload: enough to tell a re-send from a new message. Never 0 (0 marks an
 * empty page slot). FNV-1a over the topic, then over the payload four bytes at a time (murmur3's mixing step),
 * which is several times faster than FNV byte by byte.
 */
export function publishHash(topic: string, payload: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < topic.length; i++) {
    h ^= topic.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  const n = payload.length;
  const whole = n & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = payload[i] | (payload[i + 1] << 8) | (payload[i + 2] << 16) | (payload[i + 3] << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  for (let i = whole; i < n; i++) {
    h ^= payload[i];
    h = Math.imul(h, 0x01000193);
  }
  h ^= n;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0 || 1;
}
