/**
 * The uplink: forwards the buffer to the cloud over MQTT. The edge dials out (gateways sit behind NAT), sends
 * each batch as one QoS 1 publish, and releases a batch from the buffer only when the cloud's PUBACK says the
 * batch is committed there. Several batches are in flight at once. On any link failure the in-flight batches
 * are forgotten and, after a reconnect with exponential backoff and jitter, the uplink re-sends from the oldest
 * unacknowledged event; the cloud drops what it already has (per-edge high-water mark).
 */
import { setTimeout as delay } from 'node:timers';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import type { LogEntry } from '../shared/append-log.ts';
import { Backoff } from '../shared/backoff.ts';
import type { Logger } from '../shared/logger.ts';
import type { Counter, Metrics } from '../shared/metrics.ts';
import { encodeBatch, uplinkTopic } from '../shared/uplink-wire.ts';
import type { EdgeBuffer } from './edge-buffer.ts';

export interface UplinkOptions {
  url: string;
  edgeId: string;
  buffer: EdgeBuffer;
  batchMaxEvents: number;
  batchMaxBytes: number;
  inflight: number;
  keepaliveSeconds: number;
  backoff: Backoff;
  logger: Logger;
  metrics: Metrics;
}

export type LinkState = 'connecting' | 'connected' | 'waiting' | 'stopped';

interface InflightBatch {
  entries: LogEntry[];
  acked: boolean;
  /** Smaller than a full batch: sent because nothing more was committed yet. */
  partial: boolean;
}

export class Uplink {
  readonly #o: UplinkOptions;
  readonly #topic: string;
  #client: MqttClient | null = null;
  #state: LinkState = 'stopped';
  /** Bumped on every (re)connect; callbacks of an older connection are ignored. */
  #generation = 0;
  #nextSeq = 1;
  #inflight: InflightBatch[] = [];
  #reading = false;
  #retryTimer: ReturnType<typeof delay> | null = null;
  #unsubscribe: (() => void) | null = null;
  readonly #forwarded: Counter;
  readonly #batches: Counter;
  readonly #reconnects: Counter;

  constructor(options: UplinkOptions) {
    this.#o = options;
    this.#topic = uplinkTopic(options.edgeId);
    this.#forwarded = options.metrics.counter('tributary_edge_events_forwarded_total', 'Events the cloud acknowledged.');
    this.#batches = options.metrics.counter('tributary_edge_batches_forwarded_total', 'Batches the cloud acknowledged.');
    this.#reconnects = options.metrics.counter('tributary_edge_uplink_connects_total', 'Successful uplink connections.');
  }

  get state(): LinkState {
    return this.#state;
  }

  start(): void {
    if (this.#state !== 'stopped') return;
    this.#unsubscribe = this.#o.buffer.onCommit(() => this.#pump());
    this.#connect();
  }

  async stop(): Promise<void> {
    this.#state = 'stopped';
    this.#generation++;
    this.#unsubscribe?.();
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    const client = this.#client;
    this.#client = null;
    this.#inflight = [];
    if (client) await client.endAsync(true).catch(() => undefined);
  }

  #connect(): void {
    const generation = ++this.#generation;
    this.#state = 'connecting';
    const client = mqtt.connect(this.#o.url, {
      clientId: this.#o.edgeId,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0, // reconnects are ours: exponential backoff with jitter
      connectTimeout: 10_000,
      keepalive: this.#o.keepaliveSeconds,
      queueQoSZero: false,
    });
    this.#client = client;
    client.on('connect', () => {
      if (generation !== this.#generation) return;
      // mqtt.js leaves Nagle's algorithm on; it holds each batch's small packets back by up to 40 ms.
      (client.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
      this.#state = 'connected';
      this.#o.backoff.reset();
      this.#reconnects.inc();
      this.#nextSeq = this.#o.buffer.firstSeq;
      this.#o.logger.info('uplink connected', { url: this.#o.url, resendFrom: this.#nextSeq, buffered: this.#o.buffer.stats().depth });
      this.#pump();
    });
    const lost = (why: string) => {
      if (generation !== this.#generation || this.#state === 'stopped') return;
      this.#generation++;
      this.#inflight = [];
      this.#client = null;
      client.removeAllListeners();
      client.on('error', () => undefined);
      client.end(true);
      const wait = this.#o.backoff.next();
      this.#state = 'waiting';
      const attempt = this.#o.backoff.attempt;
      // The first failure and every tenth after it are warnings; the status line shows the link state meanwhile.
      const level = attempt === 1 || attempt % 10 === 0 ? 'warn' : 'debug';
      this.#o.logger[level]('uplink down; reconnecting', { url: this.#o.url, reason: why, retryInMs: wait, attempt });
      this.#retryTimer = delay(() => {
        this.#retryTimer = null;
        if (this.#state === 'waiting') this.#connect();
      }, wait);
    };
    client.on('error', (err) => lost(err.message));
    client.on('close', () => lost('connection closed'));
    client.on('offline', () => lost('offline'));
  }

  /**
   * Sends batches while the link is up and the window has room. Full batches (a backlog) fill the whole window;
   * of the partial ones (live traffic, sent as soon as it is committed), only one is in flight at a time, so
   * what commits meanwhile rides in the next one: at moderate rates that is one batch per round trip to the
   * cloud instead of one per group commit, with no added wait.
   */
  #pump(): void {
    if (this.#state !== 'connected' || this.#reading || this.#inflight.length >= this.#o.inflight) return;
    const waiting = this.#o.buffer.committedSeq - this.#nextSeq + 1;
    if (waiting <= 0) return;
    if (waiting < this.#o.batchMaxEvents && this.#inflight.some((b) => b.partial && !b.acked)) return;
    const generation = this.#generation;
    this.#reading = true;
    this.#o.buffer.read(this.#nextSeq, this.#o.batchMaxEvents, this.#o.batchMaxBytes).then(
      (entries) => {
        this.#reading = false;
        if (generation !== this.#generation || entries.length === 0) return;
        this.#send(entries, generation);
        this.#pump();
      },
      (err) => {
        this.#reading = false;
        this.#o.logger.error('cannot read the buffer', { err });
      },
    );
  }

  #send(entries: LogEntry[], generation: number): void {
    const client = this.#client!;
    const batch: InflightBatch = { entries, acked: false, partial: entries.length < this.#o.batchMaxEvents };
    this.#inflight.push(batch);
    this.#nextSeq = entries[entries.length - 1].seq + 1;
    const payload = encodeBatch({ v: 1, edge: this.#o.edgeId, seqs: entries.map((e) => e.seq), events: entries.map((e) => e.value) });
    client.publish(this.#topic, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), { qos: 1 }, (err) => {
      if (generation !== this.#generation) return;
      if (err) {
        this.#o.logger.warn('batch not acknowledged', { error: err.message, first: entries[0].seq, events: entries.length });
        return;
      }
      batch.acked = true;
      this.#release(generation);
    });
  }

  /** Frees acknowledged batches from the buffer, oldest first. */
  #release(generation: number): void {
    while (this.#inflight.length > 0 && this.#inflight[0].acked) {
      const { entries } = this.#inflight.shift()!;
      this.#forwarded.inc(entries.length);
      this.#batches.inc();
      this.#o.buffer.release(entries).then(
        () => undefined,
        (err) => this.#o.logger.error('cannot release acknowledged events from the buffer (they will be re-sent and dropped by the cloud)', { err }),
      );
    }
    if (generation === this.#generation) this.#pump();
  }
}
