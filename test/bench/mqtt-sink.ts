/**
 * A subscriber on a plain MQTT broker (the Aedes and Mosquitto baselines): it receives the load generator's
 * raw payloads and records, per device, each seq and its latency from the send time in the payload.
 */
import { performance } from 'node:perf_hooks';
import { DeliveryTracker } from './delivery.ts';
import { WireClient } from './mqtt-wire.ts';
import { readSeq, readTs } from './payload.ts';

export class MqttSink {
  readonly tracker = new DeliveryTracker();
  readonly #client: WireClient;

  private constructor(client: WireClient) {
    this.#client = client;
  }

  /** Subscribes to `telemetry/#` and tracks devices whose id is `${prefix}${index}`. */
  static async open(port: number, prefix: string, qos: 0 | 1, host = '127.0.0.1'): Promise<MqttSink> {
    const client = await WireClient.open({ host, port, clientId: `${prefix}sink`, keepaliveSeconds: 60 });
    const sink = new MqttSink(client);
    const head = Buffer.from(`telemetry/${prefix}`, 'latin1');
    client.setHandlers({
      onPublish: (topic, payload) => {
        if (topic.length <= head.length || topic.compare(head, 0, head.length, 0, head.length) !== 0) return;
        let device = 0;
        for (let i = head.length; i < topic.length; i++) {
          const c = topic[i];
          if (c < 0x30 || c > 0x39) break;
          device = device * 10 + (c - 0x30);
        }
        sink.tracker.record(device, readSeq(payload), readTs(payload), performance.now());
      },
    });
    await client.subscribe('telemetry/#', qos);
    return sink;
  }

  close(): Promise<void> {
    return this.#client.disconnect();
  }
}
