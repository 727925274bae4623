/**
 * Ingest: every device publish becomes a CloudEvent in the buffer before it is acknowledged.
 *
 * In Aedes 1.x only `authorizePublish` runs before a QoS 1 PUBACK is written (`published` runs after it), so
 * this is where the event is built and buffered, and the hook's callback — which releases the PUBACK — is
 * called from the group commit's callback. A message that cannot become an event is kept as a dead letter
 * (durable, counted, logged) and acknowledged, so a device is never stuck re-sending a message the edge will
 * never accept.
 *
 * Each event travels in the buffer lane its topic and type choose (lanes.ts). When the buffer is full, a QoS 1
 * publish waits in a FIFO with its hook callback not called: no PUBACK goes out, and Aedes reads nothing more
 * from that client until the callback runs, so the device's in-flight window fills and it stops. The FIFO keeps
 * arrival order (and so each client's order); it moves on as the buffer frees room. A QoS 0 message that arrives
 * while the buffer is full (or publishes wait) has no acknowledgement to hold back: it is dropped and counted as
 * `tributary_edge_events_dropped_total{reason="full-qos0"}`.
 */
import type { Client, PublishPacket } from 'aedes';
import { ClosedError } from '../shared/errors.ts';
import type { InvalidEventError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import type { TopicMapper } from '../shared/topic-mapping.ts';
import type { DeadLetters } from './dead-letters.ts';
import type { EdgeBuffer, OverflowPolicy } from './edge-buffer.ts';
import type { Lane, LaneRouter } from './lanes.ts';
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
  /** Chooses each event's buffer lane. */
  lanes: LaneRouter;
  /** The buffer's overflow policy (for the log lines; the buffer's `hasRoom` applies it). */
  overflow: OverflowPolicy;
}

/** A QoS 1 publish held until the buffer has room for its event. */
interface Held {
  client: Client;
  packetId: number;
  hash: number;
  lane: Lane;
  event: Uint8Array;
  done: (err: Error | null) => void;
}

/** At most one "buffer full" warning per this interval. */
const FULL_LOG_INTERVAL_MS = 10_000;

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
  readonly #held: Counter;
  readonly #rejected = new Map<string, Counter>();
  readonly #lanes: LaneRouter;
  readonly #overflow: OverflowPolicy;
  /** Per topic, the lane of its last event's type: a topic's events have the same type unless they are structured. */
  /** Publishes waiting for room, oldest first from `#waitingHead`. */
  #waiting: (Held | undefined)[] = [];
  #waitingHead = 0;
  #fullSince = 0;
  #fullLoggedAt = -Infinity;
  readonly #unsubscribeRoom: () => void;

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
    this.#held = this.#metrics.counter('tributary_edge_publishes_held_total', 'QoS 1 publishes whose PUBACK waited for room in the full buffer.');
    this.#lanes = options.lanes;
    this.#overflow = options.overflow;
    this.#unsubscribeRoom = this.#buffer.onRoom(() => this.#drain());
  }

  /** QoS 1 publishes waiting for room in the buffer. */
  get waiting(): number {
    return this.#waiting.length - this.#waitingHead;
  }

  /** Stops waiting for room: the held publishes fail (unacknowledged, so their devices re-send them). */
  close(): void {
    this.#unsubscribeRoom();
    const held = this.#waiting;
    const head = this.#waitingHead;
    this.#waiting = [];
    this.#waitingHead = 0;
    for (let i = head; i < held.length; i++) held[i]!.done(new ClosedError('the edge ingest'));
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
      this.#ingest(client, packet, payload, 0, (err) => err && this.#logger.error('could not buffer a QoS 0 message', { clientId: client.id, topic, err }));
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
        () => this.#ingest(client, packet, payload, hash, callback),
      );
      return;
    }
    this.#ingest(client, packet, payload, hash, callback);
  };

  #ingest(client: Client, packet: PublishPacket, payload: Uint8Array, hash: number, done: (err: Error | null) => void): void {
    let result;
    try {
      result = this.#mapper.mapEncoded(packet.topic, payload);
    } catch (err) {
      // The mapper rejects what it knows to be bad; anything it did not foresee must not reach Aedes, which would
      // let the exception end the process.
      this.#logger.error('mapping a message failed unexpectedly', { clientId: client.id, topic: packet.topic, err });
      this.#reject(client.id, packet.topic, payload, 'unmappable', `the message could not be turned into an event: ${(err as Error).message}`, packet.qos, done);
      return;
    }
    if (!result.ok) {
      this.#reject(client.id, packet.topic, payload, result.error.reason, result.error.message, packet.qos, done);
      return;
    }
    const lane = this.#lanes.laneOf(packet.topic, result.type);
    const event = result.bytes;
    if (this.#waitingHead < this.#waiting.length || !this.#buffer.hasRoom(event.byteLength)) {
      if (packet.qos === 0) {
        this.#buffer.countDropped('full-qos0', lane, 1);
        done(null);
        return;
      }
      this.#hold({ client, packetId: packet.messageId!, hash, lane, event, done });
      return;
    }
    this.#append(client.id, packet.qos > 0 ? packet.messageId! : -1, hash, lane, event, done);
  }

  /** `packetId` -1: QoS 0, no re-send record. */
  #append(clientId: string, packetId: number, hash: number, lane: Lane, event: Uint8Array, done: (err: Error | null) => void): void {
    this.#buffer.append(lane, event, (err) => this.#committed(err, done));
    // The record joins the batch the append just joined: the event and its record commit together.
    if (packetId >= 0) this.#guard.remember(clientId, packetId, hash);
  }

  #hold(held: Held): void {
    if (this.#waitingHead === this.#waiting.length) {
      this.#fullSince = Date.now();
      if (this.#fullSince - this.#fullLoggedAt >= FULL_LOG_INTERVAL_MS) {
        this.#fullLoggedAt = this.#fullSince;
        const stats = this.#buffer.stats();
        this.#logger.warn('buffer full: holding QoS 1 acknowledgements until there is room', { overflow: this.#overflow, bufferedBytes: stats.bytes, maxBytes: stats.maxBytes });
      }
    }
    this.#held.inc();
    this.#waiting.push(held);
  }

  /** Appends held publishes, oldest first, while they fit. */
  #drain(): void {
    const waiting = this.#waiting;
    let head = this.#waitingHead;
    if (head === waiting.length) return;
    while (head < waiting.length) {
      const held = waiting[head]!;
      if (held.client.closed) {
        // Its device never got a PUBACK and re-sends it on its next connection [MQTT-4.4.0-1]; that copy may already
        // wait behind this one, which must not become a second event.
        waiting[head++] = undefined;
        held.done(new ClosedError(`the connection of client "${held.client.id}"`));
        continue;
      }
      if (!this.#buffer.hasRoom(held.event.byteLength)) break;
      waiting[head++] = undefined;
      this.#append(held.client.id, held.packetId, held.hash, held.lane, held.event, held.done);
    }
    if (head === waiting.length) {
      this.#logger.debug('buffer has room again; held publishes accepted', { accepted: head - this.#waitingHead, waitedMs: Date.now() - this.#fullSince });
      this.#waiting = [];
      this.#waitingHead = 0;
    } else if (head > 1024 && head * 2 > waiting.length) {
      this.#waiting = waiting.slice(head);
      this.#waitingHead = 0;
    } else {
      this.#waitingHead = head;
    }
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
