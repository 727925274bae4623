/**
 * One simulated device: its own MQTT 3.1.1 connection (client id = device id), a telemetry profile, and a
 * message counter. The fleet's scheduler calls `run` when the device is due; the device publishes one reading per
 * interval to `telemetry/{deviceId}/{metric}` as JSON with `seq` (its own counter, from 0) and `ts` (epoch ms at
 * send), so a consumer can check exactly-once, in-order delivery and latency.
 *
 * At most `inflight` publishes are unacknowledged at a time (QoS 1: until PUBACK; QoS 0: until written to the
 * socket). A full window, or a lost connection, parks the device: it leaves the schedule and is woken by the
 * acknowledgement or the reconnect, so a down edge costs neither memory nor CPU. mqtt.js reconnects every
 * `reconnectPeriodMs` and re-sends unacknowledged QoS 1 publishes with DUP=1 (see dup-flag-store.ts).
 *
 * With `commands` on, the device subscribes (QoS 1) to `commands/{deviceId}` on every connect (a session the
 * edge lost, e.g. across an edge restart, has no subscription left [MQTT-3.2.2-3]) and answers each command with
 * `{"ok": true, "received": <the command's name>}` on `commands/{deviceId}/replies/{commandId}` at QoS 1. Replies
 * are counted apart from telemetry (`commands`, `replies`), so they never change `sent`, `acked` or `seq`.
 */
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { CommandTopic, decodeDeviceCommand, DEFAULT_COMMAND_TOPIC, DEFAULT_REPLY_TOPIC } from '../shared/command-wire.ts';
import { DupFlagStore } from './dup-flag-store.ts';
import type { TelemetryProfile } from './profiles.ts';
import type { ScheduledTask } from './scheduler.ts';

/** Counters the devices of one fleet share (so the fleet's totals cost nothing to read). */
export interface DeviceCounters {
  /** Devices with an open MQTT connection. */
  connected: number;
  /** Messages published (each counted once, however often it is re-sent). */
  sent: number;
  /** QoS 1 messages acknowledged by the edge. */
  acked: number;
  /** Published, not yet acknowledged (QoS 1) or written (QoS 0). */
  inflight: number;
  /** Re-sends of unacknowledged publishes after a reconnect. */
  resent: number;
  /** Connection and publish errors. */
  errors: number;
  /** Devices that sent all their messages and have nothing outstanding. */
  finished: number;
  /** Commands received from the edge. */
  commands: number;
  /** Replies to commands acknowledged by the edge. */
  replies: number;
}

export function emptyCounters(): DeviceCounters {
  return { connected: 0, sent: 0, acked: 0, inflight: 0, resent: 0, errors: 0, finished: 0, commands: 0, replies: 0 };
}

const COMMAND_TOPIC = new CommandTopic(DEFAULT_COMMAND_TOPIC, ['deviceId']);
const REPLY_TOPIC = new CommandTopic(DEFAULT_REPLY_TOPIC, ['deviceId', 'commandId']);

export interface DeviceHooks {
  /** The device can publish again (connected, or its window has room): put it back on the schedule at `at`. */
  wake(device: SimulatedDevice, at: number): void;
  /** A QoS 1 publish was acknowledged (PUBACK). */
  acked?(deviceId: string, seq: number): void;
  error?(device: SimulatedDevice, err: Error): void;
  /** The device has sent its last message and nothing is outstanding. */
  finished?(device: SimulatedDevice): void;
  /** A command arrived (before the device replies to it). */
  command?(deviceId: string, commandId: string, name: string | undefined): void;
}

export interface SimulatedDeviceOptions {
  id: string;
  profile: TelemetryProfile;
  url: string;
  qos: 0 | 1;
  /** Time between two readings. */
  intervalMs: number;
  /** Where in its first interval the device first publishes, 0-1 (spreads a fleet's messages over time). */
  phase: number;
  inflight: number;
  /** Stop after this many messages. */
  messages?: number;
  clean: boolean;
  /** Subscribe to this device's command topic and reply to commands. Default false. */
  commands?: boolean;
  keepalive: number;
  reconnectPeriodMs: number;
  connectTimeoutMs: number;
  username?: string;
  password?: string;
  /** CA certificate (PEM) to verify a TLS edge with. */
  ca?: string;
  counters: DeviceCounters;
  hooks: DeviceHooks;
  clock: () => number;
}

const CLOSE_TIMEOUT_MS = 2000;

export class SimulatedDevice implements ScheduledTask {
  readonly id: string;
  readonly topic: string;
  readonly commandTopic: string;
  readonly #o: SimulatedDeviceOptions;
  readonly #counters: DeviceCounters;
  #client: MqttClient | null = null;
  #online = false;
  #closed = false;
  /** Set once `close` is done: from then on nothing the old client reports counts. */
  #ended = false;
  #seq = 0;
  #acked = 0;
  #inflight = 0;
  /** Bumped on every lost connection: a QoS 0 write callback of an older connection no longer counts. */
  #generation = 0;
  #dueAt: number | null = null;
  #parked = true;
  #finished = false;

  constructor(options: SimulatedDeviceOptions) {
    this.#o = options;
    this.#counters = options.counters;
    this.id = options.id;
    this.topic = `telemetry/${options.id}/${options.profile.metric}`;
    this.commandTopic = COMMAND_TOPIC.format({ deviceId: options.id });
  }

  get metric(): string {
    return this.#o.profile.metric;
  }
  /** Messages published so far (the next message's `seq`). */
  get sent(): number {
    return this.#seq;
  }
  get acked(): number {
    return this.#acked;
  }
  get inflight(): number {
    return this.#inflight;
  }
  get online(): boolean {
    return this.#online;
  }
  get finished(): boolean {
    return this.#finished;
  }

  /** Opens the connection; mqtt.js keeps reconnecting until `close`. */
  connect(): void {
    if (this.#client || this.#closed) return;
    const o = this.#o;
    const options: IClientOptions = {
      clientId: o.id,
      protocolVersion: 4,
      clean: o.clean,
      keepalive: o.keepalive,
      reconnectPeriod: o.reconnectPeriodMs,
      connectTimeout: o.connectTimeoutMs,
      username: o.username,
      password: o.password,
      ...(o.ca === undefined ? {} : { ca: o.ca, rejectUnauthorized: true }),
      outgoingStore: new DupFlagStore({ onRedeliver: () => this.#counters.resent++ }),
      // A QoS 0 message published while offline fails instead of waiting in an unbounded queue.
      queueQoSZero: false,
      resubscribe: false,
    };
    const client = mqtt.connect(o.url, options);
    this.#client = client;
    // mqtt.js emits `connect` only after it has re-sent (and had acknowledged) what its store held.
    client.on('connect', () => {
      if (this.#closed || this.#online) return;
      this.#online = true;
      this.#counters.connected++;
      if (o.commands) {
        client.subscribe(this.commandTopic, { qos: 1 }, (err) => {
          if (err && !this.#ended) this.#error(err);
        });
      }
      this.#wake();
    });
    if (o.commands) client.on('message', (topic, payload) => this.#command(topic, payload));
    client.on('close', () => this.#offline());
    // mqtt.js leaves Nagle's algorithm on: a publish written while an earlier one awaits its TCP ACK waits up to
    // ~40 ms (delayed ACK), which would show up as edge latency. mqtt.connect has opened the first socket; each
    // reconnect opens a new one, whose first write is CONNECT.
    setNoDelay(client);
    client.on('packetsend', (packet) => {
      if (packet.cmd === 'connect') setNoDelay(client);
    });
    client.on('error', (err) => this.#error(err));
  }

  run(now: number): number | null {
    if (this.#dueAt === null) this.#dueAt = now;
    while (this.#dueAt <= now && this.#canPublish()) {
      this.#publish(now);
      this.#dueAt += this.#o.intervalMs;
    }
    // Still due but unable (offline, window full, all sent): wait for #wake instead of polling every tick.
    if (!this.#canPublish()) {
      this.#parked = true;
      return null;
    }
    return this.#dueAt;
  }

  /** Closes the connection: a DISCONNECT when connected with nothing outstanding, otherwise the socket is dropped. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#parked = true;
    const client = this.#client;
    if (!client) return;
    const force = !(client.connected && this.#inflight === 0);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      client.endAsync(force).catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          client.stream?.destroy();
          resolve();
        }, CLOSE_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    this.#ended = true;
    this.#offline();
    this.#counters.inflight -= this.#inflight;
    this.#inflight = 0;
  }

  #canPublish(): boolean {
    const limit = this.#o.messages;
    return this.#online && !this.#closed && this.#inflight < this.#o.inflight && (limit === undefined || this.#seq < limit);
  }

  #publish(now: number): void {
    const seq = this.#seq++;
    const reading = this.#o.profile.next(this.#o.intervalMs);
    const payload = JSON.stringify({ ...reading, seq, ts: now });
    this.#inflight++;
    this.#counters.inflight++;
    this.#counters.sent++;
    const generation = this.#generation;
    const qos = this.#o.qos;
    this.#client!.publish(this.topic, payload, { qos }, (err) => {
      // A QoS 1 callback survives reconnects (mqtt.js keeps it with the stored packet); a QoS 0 write of a
      // connection that has since closed was already written off in #offline.
      if (this.#ended || (qos === 0 && generation !== this.#generation)) return;
      this.#inflight--;
      this.#counters.inflight--;
      if (err) {
        this.#error(err);
      } else if (qos === 1) {
        this.#acked++;
        this.#counters.acked++;
        this.#o.hooks.acked?.(this.id, seq);
      }
      this.#checkFinished();
      this.#wake();
    });
  }

  #command(topic: string, payload: Uint8Array): void {
    if (topic !== this.commandTopic || this.#ended) return;
    let command;
    try {
      command = decodeDeviceCommand(payload);
    } catch (err) {
      this.#error(err as Error);
      return;
    }
    this.#counters.commands++;
    this.#o.hooks.command?.(this.id, command.id, command.name);
    const reply = JSON.stringify({ ok: true, received: command.name ?? null });
    this.#client?.publish(REPLY_TOPIC.format({ deviceId: this.id, commandId: command.id }), reply, { qos: 1 }, (err) => {
      if (this.#ended) return;
      if (err) this.#error(err);
      else this.#counters.replies++;
    });
  }

  #offline(): void {
    this.#generation++;
    if (this.#o.qos === 0 && this.#inflight > 0) {
      // Lost with the socket; QoS 0 promises no more.
      this.#counters.inflight -= this.#inflight;
      this.#inflight = 0;
      if (!this.#ended) this.#checkFinished();
    }
    if (!this.#online) return;
    this.#online = false;
    this.#counters.connected--;
  }

  #wake(): void {
    if (!this.#parked || !this.#canPublish()) return;
    this.#parked = false;
    const now = this.#o.clock();
    // The first reading lands `phase` into the first interval; after a pause, carry on from now without a burst.
    this.#dueAt = this.#dueAt === null ? now + this.#o.phase * this.#o.intervalMs : Math.max(this.#dueAt, now);
    this.#o.hooks.wake(this, this.#dueAt);
  }

  #checkFinished(): void {
    const limit = this.#o.messages;
    if (this.#finished || limit === undefined || this.#seq < limit || this.#inflight > 0) return;
    this.#finished = true;
    this.#counters.finished++;
    this.#o.hooks.finished?.(this);
  }

  #error(err: Error): void {
    this.#counters.errors++;
    this.#o.hooks.error?.(this, err);
  }
}

function setNoDelay(client: MqttClient): void {
  // A TCP or TLS socket has setNoDelay; a WebSocket stream does not (the ws library already turns Nagle off).
  (client.stream as { setNoDelay?: (noDelay: boolean) => void } | undefined)?.setNoDelay?.(true);
}
