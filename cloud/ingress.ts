/**
 * Ingress: the MQTT listener that edges dial into. Each QoS 1 publish on an edge's uplink topic carries one
 * batch of one buffer lane; the batch is committed to the cloud log exactly once (the log drops what is at or
 * below the high-water mark of that edge and lane) and only then acknowledged. In Aedes 1.x only
 * `authorizePublish` runs before a QoS 1 PUBACK is written, so the commit happens there.
 *
 * An edge may send only its own events: each event's `source` must be `/edges/{edgeId}` or under it (the edge id
 * is the authenticated client's, edge-auth.ts). The others are left out of the commit, counted in
 * `tributary_cloud_events_rejected_total{reason="foreign-source"}` (an event without a source too; `"malformed"`
 * for one that is not a well-formed MessagePack map), and logged a few times per edge every 10 s; the rest of the
 * batch is committed and acknowledged, so the edge's link is not stuck on a batch it will never get accepted. The
 * source is read from the event's bytes without decoding it (shared/event-source.ts): about 150 to 300 ns for a
 * 280-byte telemetry event on this kind of machine, against about 2 µs for decoding it.
 */
import type { Client, PublishPacket } from 'aedes';
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import { decodeBatch, edgeOfUplinkTopic } from '../shared/uplink-wire.ts';
import { eventSource, locateSource, sourceIsWithin } from '../shared/event-source.ts';
import { LogThrottle } from '../shared/log-throttle.ts';
import type { CloudLog } from './cloud-log.ts';

export class Ingress {
  readonly #log: CloudLog;
  readonly #logger: Logger;
  readonly #committed: Counter;
  readonly #duplicates: Counter;
  readonly #batches: Counter;
  readonly #rejected: Counter;
  readonly #foreign: Counter;
  readonly #malformed: Counter;
  readonly #throttle = new LogThrottle({ burst: 3 });
  /** `/edges/{edgeId}` as UTF-8, per edge: the root every source of the edge's events must be within. */
  readonly #roots = new Map<string, Uint8Array>();

  constructor(log: CloudLog, metrics: Metrics, logger: Logger) {
    this.#log = log;
    this.#logger = logger;
    this.#committed = metrics.counter('tributary_cloud_events_committed_total', 'Events committed to the cloud log from edges.');
    this.#duplicates = metrics.counter('tributary_cloud_events_duplicate_total', 'Re-sent events dropped because the log already held them.');
    this.#batches = metrics.counter('tributary_cloud_batches_total', 'Uplink batches committed.');
    this.#rejected = metrics.counter('tributary_cloud_batches_rejected_total', 'Uplink publishes refused (bad topic, wrong edge, undecodable batch).');
    const help = 'Events left out of committed uplink batches, by reason.';
    this.#foreign = metrics.counter('tributary_cloud_events_rejected_total', help, { reason: 'foreign-source' });
    this.#malformed = metrics.counter('tributary_cloud_events_rejected_total', help, { reason: 'malformed' });
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
    const { seqs, events } = this.#ownEvents(edgeId, batch.lane, batch.seqs, batch.events);
    this.#log.commitBatch(edgeId, batch.lane, seqs, events).then(
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

  /**
   * The events of the batch whose source is the edge's own, with their sequence numbers. The common case, a batch
   * with none to leave out, returns the arrays it was given.
   */
  #ownEvents(edgeId: string, lane: number, seqs: number[], events: Uint8Array[]): { seqs: number[]; events: Uint8Array[] } {
    let root = this.#roots.get(edgeId);
    if (root === undefined) {
      // Anonymous edges (auth.allowAnonymous) may come with any number of client ids: keep the cache bounded.
      if (this.#roots.size >= 10_000) this.#roots.clear();
      root = utf8.encode(`/edges/${edgeId}`);
      this.#roots.set(edgeId, root);
    }
    let keptSeqs: number[] | undefined;
    let keptEvents: Uint8Array[] | undefined;
    let foreign = 0;
    let malformed = 0;
    let example: string | undefined;
    for (let i = 0; i < events.length; i++) {
      const event = events[i];
      const at = locateSource(event);
      if (at.found && sourceIsWithin(event, at, root)) {
        keptSeqs?.push(seqs[i]);
        keptEvents?.push(event);
        continue;
      }
      keptSeqs ??= seqs.slice(0, i);
      keptEvents ??= events.slice(0, i);
      if (at.found || at.reason === 'missing') foreign++;
      else malformed++;
      example ??= at.found ? `source ${JSON.stringify(truncate(eventSource(event) ?? ''))}` : at.message;
    }
    if (keptSeqs === undefined || keptEvents === undefined) return { seqs, events };
    this.#foreign.inc(foreign);
    this.#malformed.inc(malformed);
    const suppressed = this.#throttle.admit(edgeId);
    if (suppressed !== undefined) {
      this.#logger.warn(`events left out of a batch: an edge may send only events whose source is /edges/${edgeId} or under it`, {
        edgeId,
        lane,
        foreignSource: foreign,
        malformed,
        kept: keptEvents.length,
        example,
        ...(suppressed > 0 ? { linesSuppressed: suppressed } : {}),
      });
    }
    return { seqs: keptSeqs, events: keptEvents };
  }

  #refuse(client: Client, message: string, callback: (error?: Error | null) => void): void {
    this.#rejected.inc();
    this.#logger.warn('uplink publish refused', { clientId: client.id, error: message });
    // MQTT 3.1.1 has no negative PUBACK; an error closes the connection [MQTT-3.3.5-2].
    callback(new Error(message));
  }
}

const utf8 = new TextEncoder();

function truncate(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}
