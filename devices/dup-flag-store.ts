/**
 * An outgoing store for mqtt.js that marks the publishes it re-sends after a reconnect as re-deliveries.
 *
 * mqtt.js (5.x) keeps every unacknowledged QoS 1/2 packet in its outgoing store and, once a new connection is
 * accepted, re-sends them in order: `_onConnect` → `startStreamProcess` reads `outgoingStore.createStream()` one
 * packet at a time and writes each as it is, without setting DUP. MQTT 3.1.1 [MQTT-3.3.1-1]: "The DUP flag MUST be
 * set to 1 by the Client or Server when it attempts to re-deliver a PUBLISH Packet." The edge relies on DUP=1 to
 * recognise a re-send of a publish it already made durable (edge/resend-guard.ts); without it, a PUBACK lost in a
 * broken connection turns into a second event.
 *
 * The stream yields copies with `dup: true`; the stored packets stay as they were. A first send never comes
 * from this stream while the client is connected (mqtt.js stores a clone and writes its own packet), and a device
 * of this fleet does not publish while disconnected, so every packet the stream yields has been written before.
 * (A packet that has not would still be correct with DUP=1, which says only that it "might be" a re-delivery.)
 */
import { Transform } from 'node:stream';
import mqtt from 'mqtt';
import type { Packet } from 'mqtt';

type StoreStream = ReturnType<InstanceType<typeof mqtt.Store>['createStream']>;

export interface DupFlagStoreOptions {
  /** As mqtt.js's `Store`: drop the stored packets when the client ends (default true). */
  clean?: boolean;
  /** Called with each publish the store hands out for re-sending. */
  onRedeliver?: (packet: Packet) => void;
}

export class DupFlagStore extends mqtt.Store {
  readonly #onRedeliver: ((packet: Packet) => void) | undefined;

  constructor(options: DupFlagStoreOptions = {}) {
    const { onRedeliver, ...storeOptions } = options;
    super(storeOptions);
    this.#onRedeliver = onRedeliver;
  }

  override createStream(): StoreStream {
    const stored = super.createStream();
    const onRedeliver = this.#onRedeliver;
    const marked = new Transform({
      objectMode: true,
      transform(packet: Packet, _encoding, done) {
        if (packet.cmd !== 'publish') return done(null, packet);
        onRedeliver?.(packet);
        done(null, { ...packet, dup: true });
      },
    });
    stored.on('error', (err: Error) => marked.destroy(err));
    // mqtt.js destroys the stream it reads when the connection closes mid-way; stop the source with it.
    marked.on('close', () => stored.destroy());
    stored.pipe(marked);
    // The client reads it with read(1) and `readable`/`end` events, which node:stream provides like
    // readable-stream (the package mqtt.js's types name).
    return marked as unknown as StoreStream;
  }
}
