/**
 * Ingress: the MQTT listener that edges dial into. Each QoS 1 publish on an edge's uplink topic carries one
 * batch of one buffer lane; the batch is committed to the cloud log exactly once (the log drops what is at or
 * below the high-water mark of that edge and lane) and only then acknowledged. In Aedes 1.x only
 * `authorizePublish` runs before a QoS 1 PUBACK is written, so the commit happens there.
 */
import type { Client, PublishPacket } from 'aedes';
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import { decodeBatch, edgeOfUplinkTopic } from '../shared/uplink-wire.ts';
import type { CloudLog } from './cloud-log.ts';

export class Ingress {
  readonly #log: CloudLog;
  readonly #logger: Logger;
  readonly #committed: Counter;
  readonly #duplicates: Counter;
  readonly #batches: Counter;
  readonly #rejected: Counter;

  constructor(log: CloudLog, metrics: Metrics, logger: Logger) {
    this.#log = log;
    this.#logger = logger;
    this.#committed = metrics.counter('tributary_cloud_events_committed_total', 'Events committed to the cloud log from edges.');
    this.#duplicates = metrics.counter('tributary_cloud_events_duplicate_total', 'Re-sent events dropped because the log already held them.');
    this.#batches = metrics.counter('tributary_cloud_batches_total', 'Uplink batches committed.');
    this.#rejected = metrics.counter('tributary_cloud_batches_rejected_total', 'Uplink publishes refused (bad topic, wrong edge, undecodable batch).');
  }

  readonly authorizePublish = (client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void): void => {
    if (!client) {
      callback(null);
      return;
    }
    const edgeId = edgeOfUplinkTopic(packet.topic);
    if (edgeId === undefined || edgeId !== client.id) {
      this.#refuse(client, `publish to "${packet.topic}" refused: an edge publishes only to tributary/v1/edges/{its client id}/batches`, callback);
      return;
    }
    if (packet.qos !== 1) {
      this.#refuse(client, 'uplink batches must be published at QoS 1 so they are acknowledged after commit', callback);
      return;
    }
    let batch;
    try {
      batch = decodeBatch(packet.payload as Uint8Array);
    } catch (err) {
      this.#refuse(client, `undecodable batch: ${(err as Error).message}`, callback);
      return;
    }
    if (batch.edge !== edgeId) {
      this.#refuse(client, `batch names edge "${batch.edge}" but was sent by "${edgeId}"`, callback);
      return;
    }
    this.#log.commitBatch(edgeId, batch.lane, batch.seqs, batch.events).then(
      (result) => {
        this.#batches.inc();
        this.#committed.inc(result.appended);
        this.#duplicates.inc(result.duplicates);
        if (result.duplicates) this.#logger.debug('dropped re-sent events', { edgeId, lane: batch.lane, duplicates: result.duplicates });
        callback(null);
      },
      (err: Error) => {
        // No PUBACK: the edge keeps the batch and re-sends it after reconnecting.
        this.#logger.error('cannot commit a batch; closing the link so the edge re-sends it', { edgeId, lane: batch.lane, err });
        callback(err);
      },
    );
  };

  #refuse(client: Client, message: string, callback: (error?: Error | null) => void): void {
    this.#rejected.inc();
    this.#logger.warn('uplink publish refused', { clientId: client.id, error: message });
    // MQTT 3.1.1 has no negative PUBACK; an error closes the connection [MQTT-3.3.5-2].
    callback(new Error(message));
  }
}
