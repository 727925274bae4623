/**
 * Limits against abuse on the device broker (`limits.*` in the edge config; 0 turns a limit off). Each breach is
 * counted in `tributary_edge_limit_breaches_total{limit}` and logged as a warning with the client id and remote
 * address, at most one line per client (or, before CONNECT, per address) per 10 s and 100 lines per 10 s in all.
 *
 * - packet-size: the remaining length of every packet is checked as soon as the parser has read it, before the
 *   body is buffered; a larger one closes the connection. mqtt-packet buffers a packet's bytes (a `bl` list of the
 *   chunks read) until the whole body is there, so without this a client could make the edge hold up to 256 MiB
 *   per connection by announcing a large packet and trickling its bytes.
 * - payload-size: a publish whose payload is larger (but whose packet is within the packet size) is acknowledged
 *   and kept as a dead letter without its payload (reason `payload-too-large`), so the device is not stuck
 *   re-sending it.
 * - topic-length and topic-levels: a publish closes the connection (MQTT 3.1.1 has no negative PUBACK
 *   [MQTT-3.3.5-2]); a subscription is refused with SUBACK 0x80 [MQTT-3.9.3-2].
 * - publish-rate: a token bucket per device (publish-rate.ts). A QoS 1 publish over the rate waits for a token:
 *   its hook callback is not called, so Aedes reads nothing more from that client and its in-flight window fills
 *   (one timer per waiting client). A QoS 0 publish over the rate has no acknowledgement to hold back: it is
 *   dropped and counted in `tributary_edge_messages_dropped_total{reason="publish-rate"}`.
 * - inflight: QoS 1 publishes of one client between this hook and their callback (waiting for a token, for the
 *   group commit, or for room in a full buffer); one more closes the connection. Aedes hands every packet of a
 *   socket read to the hooks at once, so this bounds what a client can make the edge hold.
 * - slow-consumer and connect-timeout are Aedes's own (`drainTimeout`, `connectTimeout`); they are counted and
 *   logged here when they fire.
 */
import { Buffer } from 'node:buffer';
import type { Client, PublishPacket, Subscription } from 'aedes';
import { LimitExceededError } from '../shared/errors.ts';
import { LogThrottle } from '../shared/log-throttle.ts';
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import type { EdgeConfig } from './config.ts';
import type { DeadLetters } from './dead-letters.ts';
import { remoteAddressOf } from './device-auth.ts';
import { PublishRate } from './publish-rate.ts';

export const LIMIT_NAMES = ['packet-size', 'payload-size', 'topic-length', 'topic-levels', 'topic-encoding', 'publish-rate', 'inflight', 'slow-consumer', 'connect-timeout'] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

/** What happened to the client or its message when it went past a limit (a field of the log line). */
export type LimitAction = 'disconnected' | 'refused' | 'dead-lettered' | 'slowed' | 'dropped';

export type PublishCallback = (error?: Error | null) => void;
/** Where an admitted publish goes next; it must hand its outcome to `done`. */
export type PublishRoute = (client: Client, packet: PublishPacket, done: PublishCallback) => void;

export interface MqttLimitsOptions {
  limits: EdgeConfig['limits'];
  /** Where a publish with a payload over the limit is kept (without its payload). */
  deadLetters: DeadLetters;
  metrics: Metrics;
  logger: Logger;
  /** Monotonic milliseconds; injectable for the token bucket's tests. Default `performance.now`. */
  clock?: () => number;
}

/** The parts of mqtt-packet's parser (node_modules/mqtt-packet/parser.js) that the packet-size guard uses. */
interface PacketParser {
  client?: Client;
  packet: { cmd?: string; length: number };
  _parseLength(): boolean;
  _emitError(error: Error): void;
}

/** A QoS 1 publish waiting for a token. */
interface Waiting {
  packet: PublishPacket;
  done: PublishCallback;
  next: PublishRoute;
}

/** What the limits keep for a connected client that publishes; dropped when its connection closes. */
interface ClientState {
  readonly client: Client;
  /** QoS 1 publishes between `admitPublish` and their callback. */
  inflight: number;
  /** Publishes waiting for a token, oldest first from `head`. */
  waiting: (Waiting | undefined)[];
  head: number;
  timer: ReturnType<typeof setTimeout> | null;
}

const LOG_WINDOW_MS = 10_000;
/** Log lines per 10 s over all clients. */
const LOG_LINES_OVERALL = 100;
const NO_PAYLOAD = new Uint8Array(0);
/** Aedes's messages for the errors it closes a connection with (node_modules/aedes/lib/client.js). */
const DRAIN_TIMEOUT = 'drain timeout';
const CONNECT_TIMEOUT = 'connect did not arrive in time';

export class MqttLimits {
  readonly #limits: EdgeConfig['limits'];
  readonly #deadLetters: DeadLetters;
  readonly #logger: Logger;
  readonly #clock: () => number;
  readonly #rate: PublishRate<Client>;
  readonly #logPerClient: LogThrottle;
  readonly #logOverall: LogThrottle;
  readonly #breaches = {} as Record<LimitName, Counter>;
  readonly #metrics: Metrics;
  readonly #dropped: Counter;
  /** Created on first use: ingest's family, whose series other code lists. */
  #rejected: Counter | null = null;
  readonly #states = new Map<Client, ClientState>();
  /** Whether publishes need per-client state (a rate or an inflight limit). */
  readonly #stateful: boolean;
  /** mqtt-packet's own `_parseLength`, which the guard calls first. */
  #parseLength: (() => boolean) | null = null;
  readonly #guardedParseLength: (this: PacketParser) => boolean;
  readonly #onClientError: (this: Client, error: Error) => void;

  constructor(options: MqttLimitsOptions) {
    const limits = options.limits;
    this.#limits = limits;
    this.#deadLetters = options.deadLetters;
    this.#logger = options.logger;
    this.#clock = options.clock ?? (() => performance.now());
    this.#rate = new PublishRate({ ratePerSecond: limits.publishRatePerSecond, burst: limits.publishBurst, clock: this.#clock });
    this.#logPerClient = new LogThrottle({ windowMs: LOG_WINDOW_MS, burst: 1, clock: this.#clock });
    this.#logOverall = new LogThrottle({ windowMs: LOG_WINDOW_MS, burst: LOG_LINES_OVERALL, clock: this.#clock });
    this.#stateful = this.#rate.enabled || limits.maxInflight > 0;
    const m = options.metrics;
    this.#metrics = m;
    for (const limit of LIMIT_NAMES) {
      this.#breaches[limit] = m.counter('tributary_edge_limit_breaches_total', 'Times a client went past one of the limits (limits.* in the edge config), by limit.', { limit });
    }
    this.#dropped = m.counter('tributary_edge_messages_dropped_total', 'QoS 0 messages dropped before they became events, by reason (publish-rate: over the device\'s publish rate).', { reason: 'publish-rate' });

    this.#guardedParseLength = MqttLimits.#parseLengthGuard(this);
    this.#onClientError = MqttLimits.#clientErrorListener(this);
  }

  /**
   * mqtt-packet's `_parseLength`, then the packet-size check: one function for every connection, installed on
   * each parser instance (not on the prototype: the uplink's mqtt.js client uses the same mqtt-packet).
   */
  static #parseLengthGuard(limits: MqttLimits): (this: PacketParser) => boolean {
    return function guardedParseLength(this: PacketParser): boolean {
      if (!limits.#parseLength!.call(this)) return false;
      const max = limits.#limits.maxPacketBytes;
      const length = this.packet.length;
      if (length <= max) return true;
      const message = `a ${this.packet.cmd ?? 'packet'} of ${length} bytes is larger than limits.maxPacketBytes (${max})`;
      if (this.client) limits.#breach(this.client, 'packet-size', 'disconnected', message, {});
      else limits.#breaches['packet-size'].inc();
      // Stops the parser before it buffers the body; the client closes its connection on the parser's error.
      this._emitError(new LimitExceededError('packet-size', message));
      return false;
    };
  }

  /** An 'error' listener for every client (`this` is the client): counts Aedes's own timeouts. */
  static #clientErrorListener(limits: MqttLimits): (this: Client, error: Error) => void {
    return function onClientError(this: Client, error: Error): void {
      // A client errors more than once as it is torn down (Aedes fails its pending writes with the same error):
      // only the first, before Aedes marks it, is the cause. This listener runs before Aedes's own.
      if ((this as Client & { errored?: boolean }).errored) return;
      const { drainTimeoutMs, connectTimeoutMs } = limits.#limits;
      if (error.message === DRAIN_TIMEOUT) {
        limits.#breach(this, 'slow-consumer', 'disconnected', `the client read nothing for limits.drainTimeoutMs (${drainTimeoutMs} ms) while the edge had messages for it`, {});
      } else if (error.message === CONNECT_TIMEOUT) {
        limits.#breach(this, 'connect-timeout', 'disconnected', `no CONNECT within limits.connectTimeoutMs (${connectTimeoutMs} ms)`, {});
      }
    };
  }

  /** Called for every new connection (before CONNECT): installs the packet-size guard. */
  onConnection(client: Client): void {
    if (this.#limits.maxPacketBytes > 0) {
      const parser = (client as Client & { _parser: PacketParser })._parser;
      this.#parseLength ??= parser._parseLength;
      parser._parseLength = this.#guardedParseLength;
    }
    client.prependListener('error', this.#onClientError);
    // Read the peer's address while the socket is open (Node keeps it once read): a slow consumer is found only
    // after Aedes destroyed its socket.
    remoteAddressOf(client);
  }

  /**
   * Checks a publish against the limits: calls `callback` with an error (refused: Aedes closes the connection),
   * or `callback(null)` (dropped, or kept as a dead letter), or `next(client, packet, done)` — at once, or later
   * when the device's rate allows. `next` must hand its outcome to the `done` it is given. It takes the client and
   * packet so that the caller can pass one function for every publish instead of a closure per message.
   */
  admitPublish(client: Client, packet: PublishPacket, callback: PublishCallback, next: PublishRoute): void {
    const topicBreach = this.#topicBreach(packet.topic);
    if (topicBreach !== null) {
      const message = `publish to ${topicBreach.message}`;
      // A will is published after its client closed: refusing it is all there is to do.
      this.#breach(client, topicBreach.limit, client.closed ? 'refused' : 'disconnected', message, { topic: clip(packet.topic) });
      callback(new LimitExceededError(topicBreach.limit, message));
      return;
    }
    if (!this.#stateful || client.closed || client.conn.destroyed) {
      this.#admitted(client, packet, callback, next);
      return;
    }
    const state = this.#stateOf(client);
    let done = callback;
    const maxInflight = this.#limits.maxInflight;
    if (packet.qos > 0 && maxInflight > 0) {
      if (state.inflight >= maxInflight) {
        const message = `more than limits.maxInflight (${maxInflight}) QoS ${packet.qos} publishes awaiting their acknowledgement`;
        this.#breach(client, 'inflight', 'disconnected', message, {});
        callback(new LimitExceededError('inflight', message));
        return;
      }
      state.inflight++;
      done = (err) => {
        state.inflight--;
        callback(err);
      };
    }
    if (this.#rate.enabled) {
      // Behind publishes already waiting, a publish waits too: a device's publishes keep their order.
      const wait = state.head < state.waiting.length ? -1 : this.#rate.take(client);
      if (wait !== 0) {
        const rate = `limits.publishRatePerSecond (${this.#limits.publishRatePerSecond}/s, burst ${this.#limits.publishBurst})`;
        if (packet.qos === 0) {
          this.#dropped.inc();
          this.#breach(client, 'publish-rate', 'dropped', `QoS 0 publishes above ${rate} are dropped`, {});
          done(null);
          return;
        }
        state.waiting.push({ packet, done, next });
        if (wait > 0) this.#arm(state, wait);
        this.#breach(client, 'publish-rate', 'slowed', `QoS ${packet.qos} publishes above ${rate} wait for their acknowledgement`, {});
        return;
      }
    }
    this.#admitted(client, packet, done, next);
  }

  /** Null when the subscription is within the limits; else why not (the caller refuses it: SUBACK 0x80). */
  checkSubscribe(client: Client, subscription: Subscription): string | null {
    const topicBreach = this.#topicBreach(subscription.topic);
    if (topicBreach === null) return null;
    const message = `subscription to ${topicBreach.message}`;
    this.#breach(client, topicBreach.limit, 'refused', message, { topic: clip(subscription.topic) });
    return message;
  }

  /** Connected clients the limits keep state for (the publishing ones). */
  get clients(): number {
    return this.#states.size;
  }

  /** Fails the publishes waiting for a token and drops every client's state. */
  close(): void {
    for (const client of [...this.#states.keys()]) this.#forget(client);
    this.#rate.clear();
  }

  #admitted(client: Client, packet: PublishPacket, done: PublishCallback, next: PublishRoute): void {
    const max = this.#limits.maxPayloadBytes;
    if (max > 0) {
      const payload = packet.payload;
      const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
      if (size > max) {
        this.#deadLetter(client, packet, size, max, done);
        return;
      }
    }
    next(client, packet, done);
  }

  #deadLetter(client: Client, packet: PublishPacket, size: number, max: number, done: PublishCallback): void {
    const message = `a payload of ${size} bytes is larger than limits.maxPayloadBytes (${max}); the message is kept as a dead letter without its payload`;
    // The family ingest counts its rejections in (same help text: whichever registers first names it).
    this.#rejected ??= this.#metrics.counter('tributary_edge_messages_rejected_total', 'Device messages that could not become CloudEvents, by reason (kept as dead letters).', { reason: 'payload-too-large' });
    this.#rejected.inc();
    this.#breach(client, 'payload-size', 'dead-lettered', message, { topic: clip(packet.topic), qos: packet.qos });
    const letter = { time: new Date().toISOString(), clientId: client.id, topic: packet.topic, reason: 'payload-too-large', message, payload: NO_PAYLOAD };
    // Acknowledged once the record is durable, as ingest does for the messages it cannot turn into events.
    this.#deadLetters.add(letter, (err) => {
      if (err) this.#logger.error('could not store a dead letter', { clientId: client.id, topic: packet.topic, err });
      done(err);
    });
  }

  #stateOf(client: Client): ClientState {
    let state = this.#states.get(client);
    if (state) return state;
    state = { client, inflight: 0, waiting: [], head: 0, timer: null };
    this.#states.set(client, state);
    // Callers make sure the connection is open, so 'close' is still to come.
    client.conn.once('close', () => this.#forget(client));
    return state;
  }

  #arm(state: ClientState, wait: number): void {
    if (state.timer !== null) return;
    state.timer = setTimeout(this.#release, wait, state);
    state.timer.unref?.();
  }

  /** Lets waiting publishes through, oldest first, while the client's bucket has tokens. */
  readonly #release = (state: ClientState): void => {
    state.timer = null;
    if (this.#states.get(state.client) !== state) return;
    while (state.head < state.waiting.length) {
      const wait = this.#rate.take(state.client);
      if (wait > 0) {
        this.#arm(state, wait);
        return;
      }
      const waiting = state.waiting[state.head]!;
      state.waiting[state.head++] = undefined;
      this.#admitted(state.client, waiting.packet, waiting.done, waiting.next);
    }
    state.waiting = [];
    state.head = 0;
  };

  #forget(client: Client): void {
    const state = this.#states.get(client);
    if (!state) return;
    this.#states.delete(client);
    this.#rate.forget(client);
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
    const waiting = state.waiting;
    const head = state.head;
    state.waiting = [];
    state.head = 0;
    // Never acknowledged: the device re-sends them on its next connection [MQTT-4.4.0-1].
    const error = new Error(`the connection of client "${client.id}" closed while its publishes waited for its publish rate`);
    for (let i = head; i < waiting.length; i++) waiting[i]!.done(error);
  }

  /** Which topic limit `topic` (a name or a filter) breaks, or null. */
  #topicBreach(topic: string): { limit: LimitName; message: string } | null {
    const maxLength = this.#limits.maxTopicLength;
    // UTF-8 takes at most 3 bytes per UTF-16 code unit: most topics need no byte count.
    if (maxLength > 0 && topic.length * 3 > maxLength) {
      const bytes = Buffer.byteLength(topic);
      if (bytes > maxLength) return { limit: 'topic-length', message: `a topic of ${bytes} bytes, longer than limits.maxTopicLength (${maxLength})` };
    }
    // [MQTT-1.5.3-1] ill-formed UTF-8 (mqtt-packet decodes it to U+FFFD) and [MQTT-1.5.3-2] U+0000 close the connection.
    if (topic.includes('\uFFFD') || topic.includes('\u0000')) {
      return { limit: 'topic-encoding', message: 'a topic that is not well-formed UTF-8 or contains U+0000 [MQTT-1.5.3-1, MQTT-1.5.3-2]' };
    }
    const maxLevels = this.#limits.maxTopicLevels;
    if (maxLevels > 0) {
      let levels = 1;
      for (let i = topic.indexOf('/'); i !== -1; i = topic.indexOf('/', i + 1)) levels++;
      if (levels > maxLevels) return { limit: 'topic-levels', message: `a topic of ${levels} levels, more than limits.maxTopicLevels (${maxLevels})` };
    }
    return null;
  }

  #breach(client: Client, limit: LimitName, action: LimitAction, message: string, fields: Record<string, unknown>): void {
    this.#breaches[limit].inc();
    const remoteAddress = remoteAddressOf(client) ?? null;
    const suppressed = this.#logPerClient.admit(client.id ? `client ${client.id}` : `address ${remoteAddress}`);
    if (suppressed === undefined) return;
    const suppressedOverall = this.#logOverall.admit('');
    if (suppressedOverall === undefined) return;
    this.#logger.warn('limit exceeded', {
      limit,
      action,
      clientId: client.id ?? null,
      remoteAddress,
      error: message,
      ...fields,
      // Lines left out before this one: of this client, and of any client.
      ...(suppressed > 0 ? { suppressed } : {}),
      ...(suppressedOverall > 0 ? { suppressedOverall } : {}),
    });
  }
}

/** A topic short enough for a log line. */
function clip(topic: string): string {
  return topic.length > 120 ? `${topic.slice(0, 120)}…` : topic;
}
