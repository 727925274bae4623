import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/logger.ts';
import { startMqttServer } from '../../shared/mqtt-server.ts';
import type { RunningMqttServer } from '../../shared/mqtt-server.ts';
import { DeliveryTracker } from './delivery.ts';
import { LatencyRecorder } from './latency.ts';
import { LoadGenerator } from './loadgen.ts';
import { MqttSink } from './mqtt-sink.ts';
import { WireClient } from './mqtt-wire.ts';
import { payloadTemplate, readSeq, readTs, stamp } from './payload.ts';

describe('payload', () => {
  it('is valid JSON of the requested size whose seq and ts can be rewritten in place', () => {
    const p = payloadTemplate(200);
    expect(p.length).toBe(200);
    stamp(p, 0, 123_456, 98_765.4321);
    const parsed = JSON.parse(p.toString('latin1')) as { seq: number; ts: number };
    expect(parsed.seq).toBe(123_456);
    expect(parsed.ts).toBe(98_765.432);
    expect(readSeq(p)).toBe(123_456);
    expect(readTs(p)).toBe(98_765.432);
  });

  it('stamps small, large and fractional values exactly', () => {
    const p = payloadTemplate(120);
    for (const [seq, ts] of [[0, 0], [7, 0.001], [999_999_999_999, 123_456_789.5], [42, 0.5]]) {
      stamp(p, 0, seq, ts);
      const parsed = JSON.parse(p.toString('latin1')) as { seq: number; ts: number };
      expect([parsed.seq, parsed.ts, readSeq(p), readTs(p)]).toEqual([seq, ts, seq, ts]);
    }
  });

  it('refuses a size too small for its fields', () => {
    expect(() => payloadTemplate(50)).toThrow(/below the \d+ bytes/);
  });
});

describe('LatencyRecorder', () => {
  it('reports nearest-rank percentiles over every sample', () => {
    const r = new LatencyRecorder();
    for (let i = 1; i <= 1000; i++) r.record(i);
    expect(r.summary()).toEqual({ count: 1000, p50: 500, p90: 900, p99: 990, max: 1000, mean: 500.5 });
  });
});

describe('DeliveryTracker', () => {
  it('counts duplicates and lost messages per device, and times only first arrivals', () => {
    const t = new DeliveryTracker();
    t.record(0, 0, 10, 15);
    t.record(0, 1, 10, 20);
    t.record(0, 1, 10, 99); // duplicate
    t.record(1, 0, 10, 11);
    t.record(1, 2, 10, 12); // device 1 seq 1 never arrives
    expect(t.report([2, 3])).toEqual({ received: 5, unique: 4, duplicates: 1, lost: 1 });
    expect(t.latency.summary().max).toBe(10);
  });
});

describe('LoadGenerator against a real Aedes broker', () => {
  let server: RunningMqttServer | undefined;

  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function broker(hooks = {}): Promise<{ port: number }> {
    server = await startMqttServer({ host: '127.0.0.1', port: 0, wsPort: null, hooks, logger: silentLogger });
    return { port: server.port! };
  }

  it.each([0, 1] as const)('saturating at QoS %i, every message the broker finished reaches a subscriber once', async (qos) => {
    const { port } = await broker();
    const sink = await MqttSink.open(port, 'sat-', 1);
    const load = await LoadGenerator.connect({ port, devices: 3, qos, prefix: 'sat-', window: 16 });
    const result = await load.saturate(300);
    await load.close();
    await sink.tracker.reached(result.sent, 5000);
    await sink.close();
    expect(result.sent).toBeGreaterThan(100);
    expect(result.completed).toBe(result.sent);
    expect(result.unacked).toBe(0);
    expect(result.ack === null).toBe(qos === 0);
    expect(sink.tracker.report(load.sentPerDevice)).toEqual({ received: result.sent, unique: result.sent, duplicates: 0, lost: 0 });
    expect(sink.tracker.latency.summary().p50).toBeGreaterThan(0);
  });

  it('paces publishes at the asked rate, spread over the devices', async () => {
    const { port } = await broker();
    const load = await LoadGenerator.connect({ port, devices: 4, qos: 1, prefix: 'pace-' });
    const result = await load.paced(2000, { durationMs: 500 });
    await load.close();
    // 500 ms at 2000/s is 1000 publishes, issued round-robin.
    expect(result.sent).toBe(1000);
    expect(load.sentPerDevice).toEqual([250, 250, 250, 250]);
    expect(result.completed).toBe(1000);
    expect(result.stalled).toBe(0);
  });

  it('publishes an exact count, e.g. to fill a backlog', async () => {
    const { port } = await broker();
    const load = await LoadGenerator.connect({ port, devices: 3, qos: 1, prefix: 'count-', window: 8 });
    const result = await load.publishCount(1000);
    await load.close();
    expect(result.completed).toBe(1000);
    expect(load.sent).toBe(1000);
  });

  it('reports a refused CONNECT with its return code', async () => {
    const { port } = await broker({ authenticate: (_c: unknown, _u: unknown, _p: unknown, done: (e: Error | null, ok: boolean) => void) => done(null, false) });
    await expect(WireClient.open({ host: '127.0.0.1', port, clientId: 'nope' })).rejects.toThrow(/nope: CONNACK return code [45]/);
  });

  it('reports a closed port by address', async () => {
    await expect(WireClient.open({ host: '127.0.0.1', port: 9, clientId: 'c', timeoutMs: 2000 })).rejects.toThrow(/cannot connect to 127.0.0.1:9/);
  });
});
