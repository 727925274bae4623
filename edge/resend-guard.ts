/**
 * Recognises a device's re-send of a QoS 1 publish that the edge already made durable, so one acknowledged
 * publish is one event even when the PUBACK was lost (edge crash, dropped link).
 *
 * MQTT 3.1.1 [MQTT-3.3.1-1]: a client re-delivering a PUBLISH sets DUP=1 and keeps its Packet Identifier
 * ([MQTT-4.4.0-1] re-delivery happens on reconnect). For every QoS 1 publish the edge stores
 * `(client id, packet id) → hash of topic and payload` in the same group commit as the event. A later publish with
 * DUP=1, the same packet id and the same hash is the same message: it is acknowledged without a second event. A
 * publish with DUP=0 is always new (a client reuses a packet id only after its PUBACK) and overwrites the record.
 * The records stay on disk, one per packet id a client uses (at most 65,535 per client id).
 */
import type { WriteCallback } from '../shared/level-store.ts';
import type { LevelStore } from '../shared/level-store.ts';

export const RESEND_NAMESPACE = 0x30;

const encoder = new TextEncoder();

export class ResendGuard {
  readonly #store: LevelStore;
  /** Key prefix per client id, so the hot path does not re-encode it. */
  readonly #prefixes = new Map<string, Uint8Array>();
  /** Publishes whose commit is under way: waiting re-sends are acknowledged when it completes. */
  readonly #pending = new Map<string, { hash: number; waiters: WriteCallback[] }>();

  constructor(store: LevelStore) {
    this.#store = store;
  }

  /** The record to commit with a new publish's event. */
  record(clientId: string, packetId: number, hash: number): readonly [Uint8Array, Uint8Array] {
    const key = this.#key(clientId, packetId);
    const value = new Uint8Array(4);
    new DataView(value.buffer).setUint32(0, hash);
    return [key, value];
  }

  /** Marks a publish as committing; call `settle` from its commit callback. */
  begin(clientId: string, packetId: number, hash: number): void {
    this.#pending.set(`${clientId}\0${packetId}`, { hash, waiters: [] });
  }

  settle(clientId: string, packetId: number, err: Error | null): void {
    const id = `${clientId}\0${packetId}`;
    const entry = this.#pending.get(id);
    if (!entry) return;
    this.#pending.delete(id);
    for (const waiter of entry.waiters) waiter(err);
  }

  /**
   * For a publish with DUP=1: calls `onDuplicate` (with the original's commit result) when it is a re-send
   * of a durable or committing publish, `onNew` otherwise.
   */
  check(clientId: string, packetId: number, hash: number, onDuplicate: WriteCallback, onNew: () => void): void {
    const pending = this.#pending.get(`${clientId}\0${packetId}`);
    if (pending) {
      if (pending.hash === hash) pending.waiters.push(onDuplicate);
      else onNew();
      return;
    }
    this.#store.db.get(this.#key(clientId, packetId)).then(
      (value) => {
        const stored = value && value.byteLength === 4 ? new DataView(value.buffer, value.byteOffset, 4).getUint32(0) : undefined;
        if (stored === hash) onDuplicate(null);
        else onNew();
      },
      () => onNew(),
    );
  }

  #key(clientId: string, packetId: number): Uint8Array {
    let prefix = this.#prefixes.get(clientId);
    if (!prefix) {
      const id = encoder.encode(clientId);
      prefix = new Uint8Array(id.length + 2);
      prefix[0] = RESEND_NAMESPACE;
      prefix.set(id, 1);
      prefix[id.length + 1] = 0; // separator: a client id cannot contain U+0000 [MQTT-1.5.3-2]
      if (this.#prefixes.size > 100_000) this.#prefixes.clear();
      this.#prefixes.set(clientId, prefix);
    }
    const key = new Uint8Array(prefix.length + 2);
    key.set(prefix);
    key[prefix.length] = packetId >> 8;
    key[prefix.length + 1] = packetId & 0xff;
    return key;
  }
}

/** FNV-1a (32 bit) over the topic and the payload: enough to tell a re-send from a new message. */
export function publishHash(topic: string, payload: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < topic.length; i++) {
    h ^= topic.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  for (let i = 0; i < payload.length; i++) {
    h ^= payload[i];
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
