import { describe, expect, it } from 'vitest';
import type { Packet } from 'mqtt';
import { DupFlagStore } from '../../devices/dup-flag-store.ts';

function put(store: DupFlagStore, packet: Packet): Promise<void> {
  return new Promise((resolve) => store.put(packet, () => resolve()));
}

/** Reads the store's stream the way mqtt.js's `_onConnect` does: read(1), waiting for `readable`, until `end`. */
function readAll(store: DupFlagStore): Promise<Packet[]> {
  const stream = store.createStream();
  const packets: Packet[] = [];
  return new Promise((resolve, reject) => {
    const next = () => {
      for (;;) {
        const packet = stream.read(1) as Packet | null;
        if (!packet) {
          stream.once('readable', next);
          return;
        }
        packets.push(packet);
      }
    };
    stream.on('end', () => resolve(packets));
    stream.on('error', reject);
    next();
  });
}

const publish = (messageId: number): Packet => ({
  cmd: 'publish',
  topic: `telemetry/d/${messageId}`,
  payload: Buffer.from(`{"seq":${messageId}}`),
  qos: 1,
  retain: false,
  dup: false,
  messageId,
});

describe('DupFlagStore', () => {
  it('hands out stored publishes in order, as copies with DUP set, and keeps the stored ones unchanged', async () => {
    const redelivered: Packet[] = [];
    const store = new DupFlagStore({ onRedeliver: (p) => redelivered.push(p) });
    await put(store, publish(3));
    await put(store, publish(1));
    await put(store, { cmd: 'pubrel', messageId: 2 });
    const packets = await readAll(store);
    expect(packets).toEqual([{ ...publish(3), dup: true }, { ...publish(1), dup: true }, { cmd: 'pubrel', messageId: 2 }]);
    expect(redelivered.map((p) => p.messageId)).toEqual([3, 1]);
    const stored = await new Promise<Packet | undefined>((resolve) => store.get({ messageId: 3 }, (_err, p) => resolve(p)));
    expect(stored).toEqual(publish(3));
  });

  it('ends an empty stream at once', async () => {
    expect(await readAll(new DupFlagStore())).toEqual([]);
  });

  it('stops handing out packets once the reader destroys the stream', async () => {
    const store = new DupFlagStore();
    for (let id = 1; id <= 100; id++) await put(store, publish(id));
    const stream = store.createStream();
    const first = await new Promise<Packet>((resolve) => {
      const tryRead = () => {
        const p = stream.read(1) as Packet | null;
        if (p) resolve(p);
        else stream.once('readable', tryRead);
      };
      tryRead();
    });
    expect(first.messageId).toBe(1);
    await new Promise<void>((resolve) => {
      stream.once('close', () => resolve());
      stream.destroy();
    });
    expect(stream.destroyed).toBe(true);
  });
});
