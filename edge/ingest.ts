/**
 * Ingest: every device publish becomes a CloudEvent in the buffer before it is acknowledged.
 *
 * In Aedes 1.x only `authorizePublish` runs before a QoS 1 PUBACK is written (`published` runs after it), so
 * this is where the event is built and buffered, and the hook's callback — which releases the PUBACK — is
 * called from the group commit's callback. A message that cannot become an event is kept as a dead letter
 * (durable, counted, logged) and acknowledged, so a device is never stuck re-sending a message the edge will
 * never accept.
 */
import type { Client, PublishPacket } from 'aedes';
import type { InvalidEventError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import type { TopicMapper } from '../shared/topic-mapping.ts';
import type { DeadLetters } from './dead-letters.ts';
import type { EdgeBuffer } from './edge-buffer.ts';
import type { ResendGuard } from './resend-guard.ts';
import { publishHash } from './resend-guard.ts';

export type AuthorizePublish = (client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void) => void;

export interface IngestOptions {
  mapper: TopicMapper;
  buffer: EdgeBuffer;
  resendGuard: ResendGuard;
  deadLetters: DeadLetters;
  metrics: Metrics;
  logger: Logger;
}

export class Ingest {
  readonly #mapper: TopicMapper;
  readonly #buffer: EdgeBuffer;
  readonly #guard: ResendGuard;
  readonly #deadLetters: DeadLetters;
  readonly #logger: Logger;
  readonly #metrics: Metrics;
  readonly #accepted: Counter;
  readonly #duplicates: Counter;
  readonly #storageErrors: Counter;
  readonly #rejected = new Map<string, Counter>();

  constructor(options: IngestOptions) {
    this.#mapper = options.mapper;
    this.#buffer = options.buffer;
    this.#guard = options.resendGuard;
    this.#deadLetters = options.deadLetters;
    this.#logger = options.logger;
    this.#metrics = options.metrics;
    this.#accepted = this.#metrics.counter('tributary_edge_events_accepted_total', 'Device messages turned into buffered CloudEvents.');
    this.#duplicates = this.#metrics.counter('tributary_edge_resends_deduplicated_total', 'Re-sent QoS 1 publishes (DUP=1) recognised as already buffered.');
    this.#storageErrors = this.#metrics.counter('tributary_edge_storage_errors_total', 'Buffer writes that failed; the publish was not acknowledged.');
  }

  /** The Aedes `authorizePublish` hook. */
  readonly authorizePublish: AuthorizePublish = (client, packet, callback) => {
    if (!client) {
      callback(null);
      return;
    }
    const topic = packet.topic;
    if (topic.charCodeAt(0) === 0x24 /* $ */) {
      // [MQTT-4.7.2-1] $-topics are the server's; a device may not publish there.
      this.#reject(client.id, topic, packet.payload as Uint8Array, 'reserved-topic', `topic "${topic}" starts with "$", which is reserved for the broker`, packet.qos, callback);
      return;
    }
    const payload = packet.payload as Uint8Array;
    if (packet.qos === 0) {
      this.#ingest(client.id, packet, payload, 0, (err) => err && this.#logger.error('could not buffer a QoS 0 message', { clientId: client.id, topic, err }));
      callback(null);
      return;
    }
    const hash = publishHash(topic, payload);
    const pid = packet.messageId!;
    if (packet.dup) {
      this.#guard.check(
        client.id,
        pid,
        hash,
        (err) => {
          if (!err) this.#duplicates.inc();
          callback(err);
        },
        () => this.#ingest(client.id, packet, payload, hash, callback),
      );
      return;
    }
    this.#ingest(client.id, packet, payload, hash, callback);
  };

  #ingest(clientId: string, packet: PublishPacket, payload: Uint8Array, hash: number, done: (err: Error | null) => void): void {
    const result = this.#mapper.mapEncoded(packet.topic, payload);
    if (!result.ok) {
      this.#reject(clientId, packet.topic, payload, result.error.reason, result.error.message, packet.qos, done);
      return;
    }
    this.#buffer.append(result.bytes, (err) => this.#committed(err, done));
    // The record joins the batch the append just joined: the event and its record commit together.
    if (packet.qos > 0) this.#guard.remember(clientId, packet.messageId!, hash);
  }

  #committed(err: Error | null, done: (err: Error | null) => void): void {
    if (err) {
      this.#storageErrors.inc();
      this.#logger.error('buffer write failed; the publish is not acknowledged and the device will re-send it', { err });
    } else {
      this.#accepted.inc();
    }
    done(err);
  }

  #reject(clientId: string, topic: string, payload: Uint8Array, reason: string, message: string, qos: number, done: (err: Error | null) => void): void {
    this.#rejectedCounter(reason).inc();
    this.#logger.warn('message rejected', { clientId, topic, reason, error: message, qos });
    this.#deadLetters.add({ time: new Date().toISOString(), clientId, topic, reason, message, payload }, (err) => {
      if (err) this.#logger.error('could not store a dead letter', { clientId, topic, err });
      done(err);
    });
  }

  #rejectedCounter(reason: string): Counter {
    let counter = this.#rejected.get(reason);
    if (!counter) {
      counter = this.#metrics.counter('tributary_edge_messages_rejected_total', 'Device messages that could not become CloudEvents, by reason (kept as dead letters).', { reason });
      this.#rejected.set(reason, counter);
    }
    return counter;
  }
}

export type { InvalidEventError };
