import { Buffer } from 'node:buffer';
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { Aedes } from 'aedes';
import type { Client, PublishPacket, Subscription } from 'aedes';
import { edgeConfigSchema } from '../../edge/config.ts';
import type { EdgeConfig } from '../../edge/config.ts';
import type { DeadLetter, DeadLetters } from '../../edge/dead-letters.ts';
import { MqttLimits } from '../../edge/mqtt-limits.ts';
import { LimitExceededError } from '../../shared/errors.ts';
import type { PublishCallback } from '../../edge/mqtt-limits.ts';
import { parseConfig } from '../../shared/config.ts';
import { Logger } from '../../shared/logger.ts';
import { Metrics } from '../../shared/metrics.ts';
import { connectPacket } from '../bench/mqtt-wire.ts';
import { waitFor } from '../helpers/wait.ts';

function limitsConfig(overrides: Partial<EdgeConfig['limits']> = {}): EdgeConfig['limits'] {
  return parseConfig(edgeConfigSchema, { limits: overrides }).limits;
}

/** Limits under test with a fake clock, a log that keeps its records, and dead letters kept in memory. */
function setup(overrides: Partial<EdgeConfig['limits']> = {}) {
  let now = 1_000;
  const lines: Record<string, unknown>[] = [];
  const logger = new Logger({ level: 'debug', sink: { write: (line) => void lines.push(JSON.parse(line)) } });
  const metrics = new Metrics();
  const letters: DeadLetter[] = [];
  const deadLetters = { add: (letter: DeadLetter, done: (err: Error | null) => void) => (letters.push(letter), setImmediate(done, null)) } as unknown as DeadLetters;
  const limits = new MqttLimits({ limits: limitsConfig(overrides), deadLetters, metrics, logger, clock: () => now });
  return {
    limits,
    metrics,
    lines,
    letters,
    advance: (ms: number) => void (now += ms),
    breaches: () => metrics.byLabel('tributary_edge_limit_breaches_total', 'limit'),
    warnings: () => lines.filter((l) => l.msg === 'limit exceeded'),
  };
}

/** What MqttLimits reads of an Aedes client. */
function fakeClient(id = 'dev-1'): Client & { conn: EventEmitter & { destroyed: boolean; remoteAddress: string } } {
  const conn = Object.assign(new EventEmitter(), { destroyed: false, remoteAddress: '127.0.0.7' });
  return Object.assign(new EventEmitter(), { id, closed: false, conn }) as unknown as Client & { conn: typeof conn };
}

function publish(topic: string, qos: 0 | 1, payload: Buffer | string = Buffer.from('{}'), messageId = 1): PublishPacket {
  return { cmd: 'publish', topic, qos, payload, messageId, retain: false, dup: false } as PublishPacket;
}

/** Calls admitPublish and records what it did: the callback's outcome, or that it passed the publish on. */
function admit(limits: MqttLimits, client: Client, packet: PublishPacket) {
  const outcome: { called?: Error | null; passed?: PublishCallback } = {};
  limits.admitPublish(
    client,
    packet,
    (err) => void (outcome.called = err ?? null),
    (_client, _packet, done) => void (outcome.passed = done),
  );
  return outcome;
}

describe('MqttLimits', () => {
  describe('publishes', () => {
    it('passes a publish within every limit on, with a callback that reaches the original', () => {
      const t = setup();
      const outcome = admit(t.limits, fakeClient(), publish('telemetry/dev-1/t', 1));
      expect(outcome.called).toBeUndefined();
      expect(outcome.passed).toBeTypeOf('function');
      let acked: Error | null | undefined;
      t.limits.admitPublish(fakeClient('dev-2'), publish('telemetry/dev-2/t', 1), (err) => void (acked = err ?? null), (_client, _packet, done) => done(null));
      expect(acked).toBeNull();
      expect(Object.values(t.breaches()).every((n) => n === 0)).toBe(true);
    });

    it('refuses a topic longer than maxTopicLength (bytes, not characters) with an error that closes the connection', () => {
      const t = setup({ maxTopicLength: 20 });
      const client = fakeClient();
      expect(admit(t.limits, client, publish('telemetry/dev-1/0123456789', 1)).called).toBeInstanceOf(LimitExceededError);
      // 8 characters, 24 bytes in UTF-8.
      const outcome = admit(t.limits, client, publish('€€€€/€€€€', 0));
      expect(outcome.called).toMatchObject({ limit: 'topic-length' });
      expect(outcome.passed).toBeUndefined();
      expect(admit(t.limits, client, publish('€€€/€€', 0)).passed).toBeTypeOf('function');
      expect(t.breaches()['topic-length']).toBe(2);
      expect(t.warnings()[0]).toMatchObject({ level: 'warn', limit: 'topic-length', action: 'disconnected', clientId: 'dev-1', remoteAddress: '127.0.0.7' });
    });

    it('refuses a topic with more levels than maxTopicLevels', () => {
      const t = setup({ maxTopicLevels: 3 });
      expect(admit(t.limits, fakeClient(), publish('a/b/c', 1)).passed).toBeTypeOf('function');
      const outcome = admit(t.limits, fakeClient(), publish('a/b/c/d', 1));
      expect(outcome.called).toMatchObject({ limit: 'topic-levels', message: expect.stringContaining('limits.maxTopicLevels (3)') });
      expect(t.breaches()['topic-levels']).toBe(1);
    });

    it('keeps a publish whose payload is over maxPayloadBytes as a dead letter without its payload, and acknowledges it', async () => {
      const t = setup({ maxPayloadBytes: 100 });
      const client = fakeClient();
      expect(admit(t.limits, client, publish('telemetry/dev-1/t', 1, Buffer.alloc(100))).passed).toBeTypeOf('function');
      const outcome = admit(t.limits, client, publish('telemetry/dev-1/t', 1, Buffer.alloc(101)));
      expect(outcome.passed).toBeUndefined();
      await waitFor('the acknowledgement', () => outcome.called !== undefined);
      expect(outcome.called).toBeNull();
      expect(t.letters).toEqual([expect.objectContaining({ clientId: 'dev-1', topic: 'telemetry/dev-1/t', reason: 'payload-too-large', payload: new Uint8Array(0) })]);
      expect(t.letters[0].message).toContain('101 bytes');
      expect(t.breaches()['payload-size']).toBe(1);
      expect(t.metrics.byLabel('tributary_edge_messages_rejected_total', 'reason')).toEqual({ 'payload-too-large': 1 });
      expect(t.warnings()[0]).toMatchObject({ limit: 'payload-size', action: 'dead-lettered', topic: 'telemetry/dev-1/t' });
    });

    it('drops QoS 0 publishes over the rate and counts them', () => {
      const t = setup({ publishRatePerSecond: 10, publishBurst: 2, maxInflight: 0 });
      const client = fakeClient();
      const outcomes = Array.from({ length: 5 }, () => admit(t.limits, client, publish('telemetry/dev-1/t', 0)));
      expect(outcomes.map((o) => (o.passed ? 'passed' : o.called === null ? 'dropped' : 'other'))).toEqual(['passed', 'passed', 'dropped', 'dropped', 'dropped']);
      expect(t.metrics.byLabel('tributary_edge_messages_dropped_total', 'reason')).toEqual({ 'publish-rate': 3 });
      expect(t.breaches()['publish-rate']).toBe(3);
      t.advance(100);
      expect(admit(t.limits, client, publish('telemetry/dev-1/t', 0)).passed).toBeTypeOf('function');
    });

    it('holds QoS 1 publishes over the rate until a token is free, in order, with one timer for the client', async () => {
      const t = setup({ publishRatePerSecond: 50, publishBurst: 1, maxInflight: 0 });
      const client = fakeClient();
      const outcomes = [1, 2, 3].map((id) => admit(t.limits, client, publish('telemetry/dev-1/t', 1, Buffer.from(String(id)), id)));
      expect(outcomes.map((o) => o.passed !== undefined)).toEqual([true, false, false]);
      // The timer fires (20 ms of real time) but the clock has not moved: nothing passes yet.
      await new Promise((r) => setTimeout(r, 60));
      expect(outcomes.map((o) => o.passed !== undefined)).toEqual([true, false, false]);
      t.advance(20);
      await waitFor('the second publish to pass', () => outcomes[1].passed);
      expect(outcomes[2].passed).toBeUndefined();
      t.advance(20);
      await waitFor('the third publish to pass', () => outcomes[2].passed);
      expect(outcomes.every((o) => o.called === undefined)).toBe(true);
      expect(t.breaches()['publish-rate']).toBe(2);
      expect(t.warnings()).toHaveLength(1);
      expect(t.warnings()[0]).toMatchObject({ limit: 'publish-rate', action: 'slowed' });
    });

    it('fails the publishes waiting for a token when the connection closes, and forgets the client', async () => {
      const t = setup({ publishRatePerSecond: 1, publishBurst: 1, maxInflight: 0 });
      const client = fakeClient();
      admit(t.limits, client, publish('telemetry/dev-1/t', 1));
      const waiting = admit(t.limits, client, publish('telemetry/dev-1/t', 1, undefined, 2));
      expect(t.limits.clients).toBe(1);
      client.conn.emit('close');
      expect(waiting.called).toBeInstanceOf(Error);
      expect(waiting.passed).toBeUndefined();
      expect(t.limits.clients).toBe(0);
    });

    it('closes the connection of a client with more than maxInflight QoS 1 publishes awaiting their callback', () => {
      const t = setup({ maxInflight: 2, publishRatePerSecond: 0 });
      const client = fakeClient();
      const [a, b] = [1, 2].map((id) => admit(t.limits, client, publish('telemetry/dev-1/t', 1, undefined, id)));
      expect(admit(t.limits, client, publish('telemetry/dev-1/t', 0)).passed).toBeTypeOf('function');
      const third = admit(t.limits, client, publish('telemetry/dev-1/t', 1, undefined, 3));
      expect(third.called).toMatchObject({ limit: 'inflight' });
      expect(t.breaches().inflight).toBe(1);
      // One acknowledged: room for one more.
      a.passed!(null);
      expect(admit(t.limits, client, publish('telemetry/dev-1/t', 1, undefined, 4)).passed).toBeTypeOf('function');
      expect(b.passed).toBeTypeOf('function');
    });

    it('checks nothing but its topic and payload on a closed client (its will): no state is kept for it', () => {
      const t = setup({ publishRatePerSecond: 1, publishBurst: 1 });
      const client = fakeClient();
      (client as { closed: boolean }).closed = true;
      for (let i = 0; i < 3; i++) expect(admit(t.limits, client, publish('status/dev-1', 1)).passed).toBeTypeOf('function');
      expect(t.limits.clients).toBe(0);
    });

    it('turns each limit off at 0', () => {
      const t = setup({ maxPacketBytes: 0, maxPayloadBytes: 0, maxTopicLength: 0, maxTopicLevels: 0, publishRatePerSecond: 0, maxInflight: 0 });
      const client = fakeClient();
      const topic = Array.from({ length: 100 }, (_, i) => `level-${i}`).join('/');
      const payload = Buffer.alloc(1_000_000);
      for (let i = 0; i < 1000; i++) expect(admit(t.limits, client, publish(topic, (i % 2) as 0 | 1, payload, i + 1)).passed).toBeTypeOf('function');
      expect(t.limits.checkSubscribe(client, { topic, qos: 1 } as Subscription)).toBeNull();
      expect(t.limits.clients).toBe(0);
      expect(Object.values(t.breaches()).every((n) => n === 0)).toBe(true);
    });
  });

  describe('subscriptions', () => {
    it('refuses a filter over the topic limits with a reason, and accepts one within them', () => {
      const t = setup({ maxTopicLength: 32, maxTopicLevels: 4 });
      const client = fakeClient();
      expect(t.limits.checkSubscribe(client, { topic: 'commands/dev-1/#', qos: 1 } as Subscription)).toBeNull();
      expect(t.limits.checkSubscribe(client, { topic: 'a/b/c/d/#', qos: 1 } as Subscription)).toMatch(/5 levels.*limits\.maxTopicLevels \(4\)/);
      expect(t.limits.checkSubscribe(client, { topic: 'x'.repeat(33), qos: 0 } as Subscription)).toMatch(/33 bytes.*limits\.maxTopicLength \(32\)/);
      expect(t.breaches()).toMatchObject({ 'topic-levels': 1, 'topic-length': 1 });
      expect(t.warnings()[0]).toMatchObject({ limit: 'topic-levels', action: 'refused', topic: 'a/b/c/d/#' });
    });
  });

  describe('log lines', () => {
    it('logs at most one line per client per 10 s, and counts every breach', () => {
      const t = setup({ maxTopicLevels: 2 });
      const a = fakeClient('a');
      const b = fakeClient('b');
      for (let i = 0; i < 5; i++) t.limits.checkSubscribe(a, { topic: 'x/y/z', qos: 0 } as Subscription);
      t.limits.checkSubscribe(b, { topic: 'x/y/z', qos: 0 } as Subscription);
      expect(t.warnings().map((l) => l.clientId)).toEqual(['a', 'b']);
      t.advance(10_000);
      t.limits.checkSubscribe(a, { topic: 'x/y/z', qos: 0 } as Subscription);
      expect(t.warnings().map((l) => l.clientId)).toEqual(['a', 'b', 'a']);
      expect(t.warnings()[2]).toMatchObject({ suppressed: 4 });
      expect(t.breaches()['topic-levels']).toBe(7);
    });

    it('logs at most 100 lines per 10 s over all clients, then says how many it left out', () => {
      const t = setup({ maxTopicLevels: 2 });
      for (let i = 0; i < 150; i++) t.limits.checkSubscribe(fakeClient(`c-${i}`), { topic: 'x/y/z', qos: 0 } as Subscription);
      expect(t.warnings()).toHaveLength(100);
      t.advance(10_000);
      t.limits.checkSubscribe(fakeClient('late'), { topic: 'x/y/z', qos: 0 } as Subscription);
      expect(t.warnings().at(-1)).toMatchObject({ clientId: 'late', suppressedOverall: 50 });
      expect(t.breaches()['topic-levels']).toBe(151);
    });
  });

  describe("Aedes's timeouts", () => {
    it('counts a drain timeout (slow consumer) once, however often the client reports it', () => {
      const t = setup({ maxPacketBytes: 0 });
      const client = fakeClient();
      t.limits.onConnection(client);
      client.emit('error', new Error('drain timeout'));
      // Aedes marks the client errored, then fails its pending writes with the same error.
      (client as unknown as { errored: boolean }).errored = true;
      client.emit('error', new Error('drain timeout'));
      client.emit('error', new Error('connect did not arrive in time'));
      expect(t.breaches()).toMatchObject({ 'slow-consumer': 1, 'connect-timeout': 0 });
      expect(t.warnings()).toEqual([expect.objectContaining({ limit: 'slow-consumer', action: 'disconnected', clientId: 'dev-1', remoteAddress: '127.0.0.7' })]);
    });

    it('counts a connection that sent no CONNECT in time', () => {
      const t = setup({ maxPacketBytes: 0 });
      const client = fakeClient();
      t.limits.onConnection(client);
      client.emit('error', new Error('connect did not arrive in time'));
      expect(t.breaches()['connect-timeout']).toBe(1);
    });
  });

  describe('the packet-size guard, on real Aedes clients', () => {
    let aedes: Aedes | undefined;
    afterEach(async () => {
      await new Promise<void>((resolve) => (aedes ? aedes.close(() => resolve()) : resolve()));
      aedes = undefined;
    });

    /** An Aedes client on an in-memory connection: `feed` is what the device sends. */
    async function connection(t: ReturnType<typeof setup> | null) {
      aedes ??= await Aedes.createBroker({ connectTimeout: 60_000 });
      const conn = new Duplex({ read() {}, write: (_chunk, _encoding, done) => done() });
      const client = aedes.handle(conn);
      t?.limits.onConnection(client);
      const parser = (client as unknown as { _parser: { _list: { length: number } } })._parser;
      return { client, conn, parser, feed: (bytes: Buffer) => void conn.push(bytes) };
    }

    it('closes a connection whose packet announces more than maxPacketBytes, before its body arrives', async () => {
      const t = setup({ maxPacketBytes: 1024 });
      const { conn, parser, feed } = await connection(t);
      feed(connectPacket({ host: '', port: 0, clientId: 'dev-1' }));
      // A PUBLISH header announcing 2 MiB - 1: nothing of its body has been sent.
      feed(Buffer.from([0x32, 0xff, 0xff, 0x7f]));
      await waitFor('the connection to be closed', () => conn.destroyed);
      expect(parser._list.length).toBeLessThan(16);
      expect(t.breaches()['packet-size']).toBe(1);
      expect(t.warnings()[0]).toMatchObject({ limit: 'packet-size', action: 'disconnected', error: expect.stringContaining('2097151 bytes') });
    });

    it('closes a connection whose very first packet is too large, and passes packets within the limit', async () => {
      const t = setup({ maxPacketBytes: 1024 });
      const ok = await connection(t);
      ok.feed(connectPacket({ host: '', port: 0, clientId: 'dev-ok' }));
      await waitFor('the client to connect', () => ok.client.connected);
      const big = await connection(t);
      big.feed(Buffer.from([0x10, 0x80, 0x80, 0x01]));
      await waitFor('the connection to be closed', () => big.conn.destroyed);
      expect(ok.conn.destroyed).toBe(false);
      expect(t.breaches()['packet-size']).toBe(1);
    });

    it('wraps each connection\'s parser, not mqtt-packet\'s prototype, and only when the limit is on', async () => {
      const guarded = await connection(setup({ maxPacketBytes: 1024 }));
      const off = await connection(setup({ maxPacketBytes: 0 }));
      const untouched = await connection(null);
      expect(Object.hasOwn(guarded.parser, '_parseLength')).toBe(true);
      expect(Object.hasOwn(off.parser, '_parseLength')).toBe(false);
      expect(Object.hasOwn(untouched.parser, '_parseLength')).toBe(false);
      // Without the guard the parser waits for the announced body, connection open.
      off.feed(Buffer.from([0x10, 0x80, 0x80, 0x01]));
      await new Promise((r) => setTimeout(r, 20));
      expect(off.conn.destroyed).toBe(false);
    });
  });
});
