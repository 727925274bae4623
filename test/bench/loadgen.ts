/**
 * The load generator: many MQTT publishers in one process, each a raw connection (see `mqtt-wire.ts`) that
 * publishes the 200-byte telemetry payload with its own sequence numbers and send times. Two ways to drive a
 * broker:
 *
 * - `saturate`: as fast as the broker takes it. QoS 1 keeps a window of unacknowledged publishes per
 *   connection; QoS 0 writes until the socket pushes back. The rate counts what the broker finished: acked
 *   publishes (QoS 1) or publishes before a PINGREQ round trip that follows them (QoS 0).
 * - `paced`: a fixed total rate spread evenly over the connections, for latency at a given load.
 *
 * Either way it measures publish → PUBACK latency and reports its own CPU time, so a reader can see whether the
 * generator or the broker was the limit.
 */
import { performance } from 'node:perf_hooks';
import { LatencyRecorder } from './latency.ts';
import type { LatencySummary } from './latency.ts';
import type { PublishTemplate } from './mqtt-wire.ts';
import { publishTemplate, WireClient } from './mqtt-wire.ts';
import { payloadTemplate, stamp } from './payload.ts';

export interface LoadOptions {
  host?: string;
  port: number;
  /** Connections, one simulated device each. */
  devices: number;
  qos: 0 | 1;
  /** Device ids are `${prefix}${index}`; topics `telemetry/${id}/${metric}`. */
  prefix: string;
  metric?: string;
  payloadBytes?: number;
  /** Unacknowledged QoS 1 publishes per connection when saturating. */
  window?: number;
  keepaliveSeconds?: number;
  /** Connections opened at once while connecting. */
  connectConcurrency?: number;
}

export interface CpuUse {
  /** Share of one core the generator used over the measurement (1 = a whole core). */
  cores: number;
}

export interface LoadResult {
  qos: 0 | 1;
  devices: number;
  /** Publishes the broker finished (acked, or ahead of the final ping). */
  completed: number;
  sent: number;
  elapsedMs: number;
  rate: number;
  /** Publish → PUBACK (QoS 1 only). */
  ack: LatencySummary | null;
  loadgenCpu: CpuUse;
  /** QoS 1 publishes that had no PUBACK when the run ended. */
  unacked: number;
}

export interface Pace {
  durationMs: number;
  /** Checked every tick: true ends the run early. */
  until?: () => boolean;
  maxInflightPerDevice?: number;
}

interface Start {
  cpu0: NodeJS.CpuUsage;
  t0: number;
  sent0: number;
  acked0: number;
}

interface Publisher {
  index: number;
  client: WireClient;
  template: PublishTemplate;
  seq: number;
  inflight: number;
  nextPid: number;
  /** Send time by packet id (0 = free). */
  sentAt: Float64Array;
}

export class LoadGenerator {
  readonly options: Required<LoadOptions>;
  readonly #publishers: Publisher[];
  readonly #ack = new LatencyRecorder();
  #acked = 0;
  #running = false;
  #onIdle: (() => void) | undefined;
  #inflightTotal = 0;
  #onAck: (() => void) | undefined;
  #sent = 0;
  /** `publishCount` stops staging at this total. */
  #limit = Infinity;

  private constructor(options: Required<LoadOptions>, publishers: Publisher[]) {
    this.options = options;
    this.#publishers = publishers;
    for (const p of publishers) p.client.setHandlers({ onPuback: (pid) => this.#puback(p, pid) });
  }

  static async connect(options: LoadOptions): Promise<LoadGenerator> {
    const full: Required<LoadOptions> = {
      host: '127.0.0.1',
      metric: 'temperature',
      payloadBytes: 200,
      window: 64,
      keepaliveSeconds: 60,
      connectConcurrency: 64,
      ...options,
    };
    const payload = payloadTemplate(full.payloadBytes);
    const publishers: Publisher[] = new Array(full.devices);
    let next = 0;
    const worker = async () => {
      while (next < full.devices) {
        const index = next++;
        const id = `${full.prefix}${index}`;
        const client = await WireClient.open({ host: full.host, port: full.port, clientId: id, keepaliveSeconds: full.keepaliveSeconds });
        publishers[index] = {
          index,
          client,
          template: publishTemplate(`telemetry/${id}/${full.metric}`, payload, full.qos),
          seq: 0,
          inflight: 0,
          nextPid: 1,
          sentAt: full.qos > 0 ? new Float64Array(65_536) : new Float64Array(0),
        };
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(full.connectConcurrency, full.devices) }, worker));
    } catch (err) {
      for (const p of publishers) p?.client.destroy();
      throw err;
    }
    return new LoadGenerator(full, publishers);
  }

  /** Messages sent so far by each device (their seqs are 0..n-1). */
  get sentPerDevice(): number[] {
    return this.#publishers.map((p) => p.seq);
  }

  get sent(): number {
    return this.#sent;
  }

  /** QoS 1 publishes sent and not yet acknowledged. */
  get unacked(): number {
    return this.#inflightTotal;
  }

  /** Publishes as fast as the broker accepts them for `durationMs`, then waits for the broker to finish. */
  async saturate(durationMs: number): Promise<LoadResult> {
    const { qos } = this.options;
    const start = this.#begin();
    const t0 = start.t0;
    this.#running = true;
    if (qos === 1) {
      for (const p of this.#publishers) this.#fillWindow(p, this.options.window);
      await sleep(durationMs);
      this.#running = false;
      await this.#waitForAcks(30_000);
    } else {
      const deadline = t0 + durationMs;
      await Promise.all(this.#publishers.map((p) => this.#blast(p, deadline)));
      this.#running = false;
      await Promise.all(this.#publishers.map((p) => p.client.ping()));
    }
    return this.#finish(start);
  }

  /**
   * Publishes `rate` messages/s in total, round-robin over the devices, for `durationMs` or until `until()`
   * says stop. A device with `maxInflightPerDevice` unacknowledged publishes skips its turn (counted as
   * `stalled`): the broker is not keeping up.
   */
  async paced(rate: number, pace: Pace): Promise<LoadResult & { stalled: number }> {
    const { durationMs, until, maxInflightPerDevice = 10_000 } = pace;
    const { qos } = this.options;
    const start = this.#begin();
    const t0 = start.t0;
    let issued = 0;
    let stalled = 0;
    let cursor = 0;
    const publishers = this.#publishers;
    const touched = new Set<Publisher>();
    let measured = durationMs;
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        const stop = now - t0 >= durationMs || (until?.() ?? false);
        const elapsed = Math.min(now - t0, durationMs);
        const due = Math.floor((elapsed * rate) / 1000) - issued;
        for (let i = 0; i < due; i++) {
          const p = publishers[cursor];
          cursor = (cursor + 1) % publishers.length;
          issued++;
          if (p.inflight >= maxInflightPerDevice) {
            stalled++;
            continue;
          }
          this.#stagePublish(p, now);
          touched.add(p);
        }
        for (const p of touched) p.client.flush();
        touched.clear();
        if (stop) {
          measured = now - t0;
          clearInterval(timer);
          resolve();
        }
      };
      const timer = setInterval(tick, 1);
    });
    if (qos === 1) await this.#waitForAcks(30_000);
    else await Promise.all(publishers.map((p) => p.client.ping()));
    // The rate is over the pacing window: acks that come in after it still count, their wait does not.
    return { ...this.#finish(start, measured), stalled };
  }

  /** Publishes `count` messages as fast as the broker takes them (QoS 1 windowed), e.g. to fill a backlog. */
  async publishCount(count: number, onProgress?: (done: number) => void): Promise<LoadResult> {
    const start = this.#begin();
    this.#running = true;
    this.#limit = this.sent + count;
    for (const p of this.#publishers) this.#fillWindow(p, this.options.window);
    const progress = setInterval(() => onProgress?.(this.#acked - start.acked0), 1000);
    await new Promise<void>((resolve) => {
      const check = () => {
        if (this.#acked - start.acked0 >= count) {
          this.#onAck = undefined;
          resolve();
        }
      };
      this.#onAck = check;
      check();
    });
    clearInterval(progress);
    this.#running = false;
    this.#limit = Infinity;
    return this.#finish(start);
  }

  /** Starts a measurement: latency samples, CPU and counters from now on. */
  #begin(): Start {
    this.#ack.reset();
    return { cpu0: process.cpuUsage(), t0: performance.now(), sent0: this.sent, acked0: this.#acked };
  }

  /** The result of a measurement begun at `start`; the rate is over `windowMs` (default: until now). */
  #finish(start: Start, windowMs?: number): LoadResult {
    const { qos } = this.options;
    const elapsedMs = performance.now() - start.t0;
    const sent = this.sent - start.sent0;
    const completed = qos === 1 ? this.#acked - start.acked0 : sent;
    return {
      qos,
      devices: this.options.devices,
      completed,
      sent,
      elapsedMs: Math.round(elapsedMs),
      rate: Math.round((completed * 1000) / (windowMs ?? elapsedMs)),
      ack: qos === 1 ? this.#ack.summary() : null,
      loadgenCpu: cpuSince(start.cpu0, elapsedMs),
      unacked: this.#inflightTotal,
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.#publishers.map((p) => p.client.disconnect().catch(() => p.client.destroy())));
  }

  #stagePublish(p: Publisher, now: number): void {
    const { template, client } = p;
    const length = template.bytes.length;
    const at = client.reserve(length);
    const out = client.staging;
    template.bytes.copy(out, at);
    stamp(out, at + template.payloadOffset, p.seq++, now);
    this.#sent++;
    if (this.options.qos === 1) {
      let pid = p.nextPid;
      while (p.sentAt[pid] !== 0) pid = pid === 65_535 ? 1 : pid + 1;
      p.nextPid = pid === 65_535 ? 1 : pid + 1;
      out[at + template.pidOffset] = pid >> 8;
      out[at + template.pidOffset + 1] = pid & 0xff;
      p.sentAt[pid] = now;
      p.inflight++;
      this.#inflightTotal++;
    }
  }

  #fillWindow(p: Publisher, n: number): void {
    const now = performance.now();
    for (let i = 0; i < n && this.#sent < this.#limit; i++) this.#stagePublish(p, now);
    p.client.flush();
  }

  #puback(p: Publisher, pid: number): void {
    const sentAt = p.sentAt[pid];
    if (sentAt === 0) return;
    const now = performance.now();
    p.sentAt[pid] = 0;
    p.inflight--;
    this.#inflightTotal--;
    this.#acked++;
    this.#ack.record(now - sentAt);
    // The replacement is staged here and written by the client's flush after the whole chunk is read.
    if (this.#running && this.#sent < this.#limit) this.#stagePublish(p, now);
    this.#onAck?.();
    if (this.#inflightTotal === 0) this.#onIdle?.();
  }

  #waitForAcks(timeoutMs: number): Promise<void> {
    if (this.#inflightTotal === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#onIdle = undefined;
        resolve();
      }, timeoutMs);
      this.#onIdle = () => {
        clearTimeout(timer);
        this.#onIdle = undefined;
        resolve();
      };
    });
  }

  /** QoS 0: stage publishes in chunks while the socket takes them; wait for 'drain' when it pushes back. */
  #blast(p: Publisher, deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const step = () => {
        const now = performance.now();
        if (now >= deadline || p.client.closed) {
          resolve();
          return;
        }
        for (let i = 0; i < 32; i++) this.#stagePublish(p, now);
        if (p.client.flush()) setImmediate(step);
        else p.client.socket.once('drain', step);
      };
      step();
    });
  }
}

function cpuSince(start: NodeJS.CpuUsage, elapsedMs: number): CpuUse {
  const used = process.cpuUsage(start);
  return { cores: Math.round(((used.user + used.system) / 1000 / elapsedMs) * 100) / 100 };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
