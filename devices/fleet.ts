/**
 * A fleet of simulated devices against one edge node: `new Fleet(options)`, `await start()`, `await stop()`,
 * `stats()`. Connections open at `connectRate` per second (a gateway does not see ten thousand sockets in one
 * tick), publishing is paced by one shared scheduler, and the same `seed` gives every device the same readings.
 */
import { ClosedError } from '../shared/errors.ts';
import { silentLogger } from '../shared/logger.ts';
import type { Logger } from '../shared/logger.ts';
import { deriveSeed, Prng } from './prng.ts';
import { createProfile, profileNameFor } from './profiles.ts';
import type { ProfileName } from './profiles.ts';
import { RateMeter } from './rate-meter.ts';
import { Scheduler } from './scheduler.ts';
import { emptyCounters, SimulatedDevice } from './simulated-device.ts';
import type { DeviceCounters, DeviceHooks } from './simulated-device.ts';

export interface FleetOptions {
  /** The edge's MQTT URL: `mqtt://host:1883`, `ws://host:9001`, `mqtts://`, `wss://`. */
  url: string;
  /** How many devices. */
  devices: number;
  /** Messages per second per device (may be fractional: 0.1 is one message every 10 s). */
  rate: number;
  /** Default 1. */
  qos?: 0 | 1;
  /** Same seed, same readings. Default 1. */
  seed?: number;
  /** Device ids are the prefix and a 4-digit number from 1: `sim-0001`. Default `sim-`. */
  prefix?: string;
  /** Every device measures this; default: round-robin over all profiles. */
  profile?: ProfileName;
  /** Each device stops after this many messages; the fleet is then done (`whenDone`). */
  messagesPerDevice?: number;
  /** MQTT clean session. Default false: persistent sessions. */
  clean?: boolean;
  /**
   * Each device subscribes to `commands/{deviceId}` and replies `{ok: true, received: <name>}` on
   * `commands/{deviceId}/replies/{commandId}`. Default true.
   */
  commands?: boolean;
  /** MQTT keepalive in seconds. Default 30. */
  keepalive?: number;
  username?: string;
  password?: string;
  /** Per-device passwords (username = device id), e.g. from `tributary devices add --json`; wins over `username`/`password`. */
  credentials?: ReadonlyMap<string, string>;
  /** CA certificate (PEM) for `mqtts://` and `wss://` edges. */
  ca?: string;
  /** Unacknowledged publishes per device before it pauses. Default 32. */
  inflight?: number;
  /** New connections per second while starting. Default 250. */
  connectRate?: number;
  /** Time between reconnect attempts of each device. Default 1000 ms. */
  reconnectPeriodMs?: number;
  /** Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** Scheduler tick. Default 10 ms. */
  tickMs?: number;
  /** Called for every acknowledged (PUBACK) message. Not called at QoS 0, where nothing is acknowledged. */
  ackLog?: (deviceId: string, seq: number) => void;
  logger?: Logger;
  clock?: () => number;
}

export interface FleetStats extends DeviceCounters {
  devices: number;
  sentPerSec: number;
  ackedPerSec: number;
  /** Every device finished (only with `messagesPerDevice`). */
  done: boolean;
}

const ERROR_LOG_INTERVAL_MS = 5000;
const RAMP_TICK_MS = 20;

export class Fleet {
  readonly options: Readonly<FleetOptions>;
  readonly devices: readonly SimulatedDevice[];
  readonly #logger: Logger;
  readonly #clock: () => number;
  readonly #counters: DeviceCounters = emptyCounters();
  readonly #scheduler: Scheduler;
  readonly #sentRate = new RateMeter();
  readonly #ackedRate = new RateMeter();
  #state: 'new' | 'running' | 'stopped' = 'new';
  #rateTimer: ReturnType<typeof setInterval> | undefined;
  #lastErrorLogAt = -Infinity;
  #done: { promise: Promise<void>; resolve(): void; reject(err: Error): void } | undefined;

  constructor(options: FleetOptions) {
    checkOptions(options);
    this.options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#clock = options.clock ?? Date.now;
    this.#scheduler = new Scheduler({
      tickMs: options.tickMs,
      clock: this.#clock,
      onError: (err) => this.#logger.error('device failed to publish', { err }),
    });
    const seed = options.seed ?? 1;
    const phases = new Prng(deriveSeed(seed, 'phase'));
    const hooks: DeviceHooks = {
      wake: (device, at) => this.#scheduler.schedule(device, at),
      acked: options.ackLog,
      error: (device, err) => this.#deviceError(device, err),
      command: (deviceId, commandId, name) => this.#logger.debug('command received', { deviceId, commandId, name }),
      finished: () => {
        if (this.#counters.finished === this.devices.length) {
          this.#logger.info('every device sent its messages', { devices: this.devices.length, acked: this.#counters.acked });
          this.#done?.resolve();
        }
      },
    };
    const devices: SimulatedDevice[] = [];
    for (let i = 0; i < options.devices; i++) {
      const id = `${options.prefix ?? 'sim-'}${String(i + 1).padStart(4, '0')}`;
      devices.push(
        new SimulatedDevice({
          id,
          profile: createProfile(profileNameFor(i, options.profile), new Prng(deriveSeed(seed, i))),
          url: options.url,
          qos: options.qos ?? 1,
          intervalMs: 1000 / options.rate,
          phase: phases.next(),
          inflight: options.inflight ?? 32,
          messages: options.messagesPerDevice,
          clean: options.clean ?? false,
          commands: options.commands ?? true,
          keepalive: options.keepalive ?? 30,
          reconnectPeriodMs: options.reconnectPeriodMs ?? 1000,
          connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
          username: options.credentials?.has(id) ? id : options.username,
          password: options.credentials?.get(id) ?? options.password,
          ca: options.ca,
          counters: this.#counters,
          hooks,
          clock: this.#clock,
        }),
      );
    }
    this.devices = devices;
  }

  /** Opens every device's connection, ramping up at `connectRate`; resolves when the last one is opening. */
  async start(): Promise<void> {
    if (this.#state === 'stopped') throw new ClosedError('fleet');
    if (this.#state === 'running') throw new Error('Fleet.start() was already called');
    this.#state = 'running';
    const { url, rate } = this.options;
    this.#logger.info('fleet starting', { url, devices: this.devices.length, rate, qos: this.options.qos ?? 1, seed: this.options.seed ?? 1 });
    this.#scheduler.start();
    this.#rateTimer = setInterval(() => this.#sampleRates(), 250);
    const connectRate = this.options.connectRate ?? 250;
    const perStep = Math.max(1, Math.ceil((connectRate * RAMP_TICK_MS) / 1000));
    const stepMs = (perStep * 1000) / connectRate;
    for (let i = 0; i < this.devices.length; i++) {
      if (this.#state !== 'running') return;
      this.devices[i].connect();
      if ((i + 1) % perStep === 0 && i + 1 < this.devices.length) await delay(stepMs);
    }
  }

  /** Closes every connection. Waiting `whenDone` promises reject with a ClosedError unless the fleet was done. */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#state = 'stopped';
    this.#scheduler.stop();
    clearInterval(this.#rateTimer);
    await Promise.all(this.devices.map((d) => d.close()));
    this.#done?.reject(new ClosedError('fleet'));
    this.#logger.info('fleet stopped', { sent: this.#counters.sent, acked: this.#counters.acked });
  }

  /** Resolves when every device has sent `messagesPerDevice` messages and nothing is outstanding. */
  whenDone(): Promise<void> {
    if (!this.#done) {
      let resolve!: () => void;
      let reject!: (err: Error) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#done = { promise, resolve, reject };
      if (this.#isDone()) resolve();
      else if (this.#state === 'stopped') reject(new ClosedError('fleet'));
    }
    return this.#done.promise;
  }

  stats(): FleetStats {
    return {
      devices: this.devices.length,
      ...this.#counters,
      sentPerSec: Math.round(this.#sentRate.perSecond() * 10) / 10,
      ackedPerSec: Math.round(this.#ackedRate.perSecond() * 10) / 10,
      done: this.#isDone(),
    };
  }

  #isDone(): boolean {
    return this.options.messagesPerDevice !== undefined && this.#counters.finished === this.devices.length;
  }

  #sampleRates(): void {
    const now = this.#clock();
    this.#sentRate.record(now, this.#counters.sent);
    this.#ackedRate.record(now, this.#counters.acked);
  }

  #deviceError(device: SimulatedDevice, err: Error): void {
    this.#logger.debug('device error', { deviceId: device.id, err });
    const now = this.#clock();
    if (now - this.#lastErrorLogAt < ERROR_LOG_INTERVAL_MS) return;
    this.#lastErrorLogAt = now;
    this.#logger.warn('device error (further ones for 5 s only at debug level)', { deviceId: device.id, error: err.message, errors: this.#counters.errors });
  }
}

function checkOptions(o: FleetOptions): void {
  const fail = (what: string) => {
    throw new RangeError(`Fleet: ${what}`);
  };
  if (!Number.isInteger(o.devices) || o.devices < 1) fail(`devices must be a whole number of at least 1, got ${o.devices}`);
  if (!(o.rate > 0) || !Number.isFinite(o.rate)) fail(`rate must be a positive number of messages per second, got ${o.rate}`);
  if (o.qos !== undefined && o.qos !== 0 && o.qos !== 1) fail(`qos must be 0 or 1, got ${String(o.qos)}`);
  if (o.inflight !== undefined && (!Number.isInteger(o.inflight) || o.inflight < 1 || o.inflight > 65_535)) fail(`inflight must be 1-65535, got ${o.inflight}`);
  if (o.messagesPerDevice !== undefined && (!Number.isInteger(o.messagesPerDevice) || o.messagesPerDevice < 1)) fail(`messagesPerDevice must be a whole number of at least 1, got ${o.messagesPerDevice}`);
  if (o.connectRate !== undefined && !(o.connectRate > 0)) fail(`connectRate must be positive, got ${o.connectRate}`);
  if (o.prefix !== undefined && /[/+#\0]/.test(o.prefix)) fail(`prefix must not contain "/", "+", "#" or NUL (it becomes a topic level), got "${o.prefix}"`);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
