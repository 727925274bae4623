/**
 * Fuzzing the edge's device listener. A real edge and a real cloud run as child processes; a few well-behaved
 * devices (the simulator) publish QoS 1 and record every PUBACK. For FUZZ_SECONDS (default 10) many raw sockets
 * throw at the edge what a broken or hostile device might: random bytes, valid packets with random mutations,
 * truncated frames, wrong and huge remaining lengths, invalid UTF-8 topics, oversized payloads, publishes before
 * CONNECT, malformed CONNECTs and subscriptions, and invalid CloudEvents (structured-mode JSON with missing or
 * wrong attributes, deep nesting). Then: the edge is alive and accepts new connections, its memory stayed
 * bounded, its rejection counters moved, and every acknowledged message of the good devices is in the cloud log
 * exactly once.
 *
 * The attacks come from one seed: `FUZZ_SEED=<seed>` replays a run's choices (scheduling still varies).
 */
import { Buffer } from 'node:buffer';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { deriveSeed, Prng } from '../../devices/prng.ts';
import { readCloudLog } from '../e2e/mesh.ts';
import type { Mesh } from '../e2e/mesh.ts';
import { countAcks, expectExactlyOnce, readAcks, waitForDrain } from '../fault/exactly-once.ts';
import { freePort } from '../helpers/free-port.ts';
import { NodeProcess } from '../helpers/node-process.ts';
import { connectPacket, packet, PacketType, PINGREQ, publishPacket, stringField, subscribePacket } from '../helpers/raw-mqtt.ts';
import { tempDir } from '../helpers/temp-dir.ts';
import { waitFor } from '../helpers/wait.ts';

const FUZZ_SECONDS = positiveNumber('FUZZ_SECONDS', 10);
const SEED = fuzzSeed();
const EDGE_ID = 'edge-fuzz';
const DEVICES = 4;
const RATE = 20;
// The good devices publish from before the fuzzing until about its end.
const MESSAGES = Math.ceil(RATE * (FUZZ_SECONDS + 1));
/** Sockets attacking at once. */
const CONCURRENCY = 16;
const LIMITS = {
  maxPacketBytes: 64 * 1024,
  maxPayloadBytes: 16 * 1024,
  maxTopicLength: 128,
  maxTopicLevels: 8,
  maxClientIdLength: 64,
  maxConnectionsPerIp: 1000,
  publishRatePerSecond: 200,
  publishBurst: 400,
  maxInflight: 200,
  drainTimeoutMs: 2_000,
  connectTimeoutMs: 1_000,
};
const MiB = 1024 * 1024;

describe(`the edge's device listener under fuzzing (FUZZ_SEED=${SEED}, ${FUZZ_SECONDS} s)`, () => {
  const dir = tempDir('tributary-fuzz-');
  const processes: NodeProcess[] = [];

  afterAll(async () => {
    for (const p of processes.reverse()) await p.stop();
    dir.remove();
  });

  it('stays up with bounded memory, counts what it refused, and loses nothing it acknowledged', { timeout: (FUZZ_SECONDS + 45) * 1000 }, async () => {
    const [uplinkPort, httpPort, mqttPort] = [await freePort(), await freePort(), await freePort()];
    const cloudHttp = `http://127.0.0.1:${httpPort}`;
    const cloud = new NodeProcess('node', ['cloud', '--data-dir', `${dir.path}/cloud`, '--uplink-port', String(uplinkPort), '--http-port', String(httpPort), '--status-interval', '0', '--durability', 'crash-safe', '--allow-anonymous']);
    processes.push(cloud);
    await cloud.waitForLog('cloud node started');

    const edgeConfig = `${dir.path}/edge.json`;
    writeFileSync(
      edgeConfig,
      JSON.stringify({
        edgeId: EDGE_ID,
        dataDir: `${dir.path}/edge`,
        mqtt: { host: '127.0.0.1', port: mqttPort, wsPort: null },
        http: { port: 0 },
        auth: { allowAnonymous: true },
        limits: LIMITS,
        buffer: { durability: 'crash-safe' },
        uplink: { url: `mqtt://127.0.0.1:${uplinkPort}`, reconnectInitialMs: 50, reconnectMaxMs: 500 },
        statusIntervalMs: 200,
      }),
    );
    const edge = new NodeProcess('node', ['edge', '--config', edgeConfig]);
    processes.push(edge);
    const edgeHttp = String((await edge.waitForLog('edge node started')).http);

    const ackFile = `${dir.path}/acks.txt`;
    const fleetConfig = `${dir.path}/fleet.json`;
    writeFileSync(fleetConfig, JSON.stringify({ reconnectPeriodMs: 200 }));
    const sim = new NodeProcess('node', ['simulate', '--config', fleetConfig, '--edge', `mqtt://127.0.0.1:${mqttPort}`, '--devices', String(DEVICES), '--messages', String(MESSAGES), '--rate', String(RATE), '--qos', '1', '--status-interval', '0', '--ack-file', ackFile, '--seed', String(SEED)]);
    processes.push(sim);
    await waitFor('the good devices to be acknowledged', () => countAcks(ackFile) >= DEVICES, 15_000);

    const pid = edge.child.pid!;
    const rssBefore = rssBytes(pid);
    let rssMax = rssBefore;
    const sampler = setInterval(() => {
      if (edge.child.exitCode === null && edge.child.signalCode === null) rssMax = Math.max(rssMax, rssBytes(pid));
    }, 100);
    const stats = await fuzz(mqttPort, FUZZ_SECONDS * 1000);
    clearInterval(sampler);
    const context = `FUZZ_SEED=${SEED}; ${JSON.stringify(stats)}; edge output:\n${edge.output.slice(-20).join('\n')}`;

    // Alive, and it still takes new devices.
    expect(edge.child.exitCode, context).toBeNull();
    expect(edge.child.signalCode, context).toBeNull();
    rssMax = Math.max(rssMax, rssBytes(pid));
    const after = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'after-fuzz', protocolVersion: 4, reconnectPeriod: 0 });
    await after.publishAsync('telemetry/after-fuzz/t', JSON.stringify({ ok: true }), { qos: 1 });
    await after.endAsync();

    console.log(`mqtt fuzz test: ${stats.attacks} attacks; edge RSS ${mib(rssBefore)} before, at most ${mib(rssMax)}`);
    // Memory stayed bounded.
    expect(rssMax, `${context}; RSS before ${mib(rssBefore)}, at most ${mib(rssMax)}`).toBeLessThan(2 * rssBefore + 64 * MiB);

    // What it refused, it counted.
    const metrics = parsePrometheus(await (await fetch(`${edgeHttp}/metrics`)).text());
    const breaches = byLabel(metrics, 'tributary_edge_limit_breaches_total', 'limit');
    expect(breaches['packet-size'], context).toBeGreaterThan(0);
    expect(breaches['payload-size'], context).toBeGreaterThan(0);
    expect(breaches['topic-length'] + breaches['topic-levels'], context).toBeGreaterThan(0);
    expect(sum(byLabel(metrics, 'tributary_edge_messages_rejected_total', 'reason')), context).toBeGreaterThan(0);

    // Every acknowledged message of the good devices is in the cloud log, once, in order.
    expect(await sim.exited, context).toBe(0);
    const acks = readAcks(ackFile);
    expect(acks).toHaveLength(DEVICES * MESSAGES);
    await waitForDrain({ edge } as Mesh);
    const events = (await readCloudLog(cloudHttp)).filter(({ event }) => event.subject?.startsWith('sim-'));
    expectExactlyOnce(acks, events, DEVICES, MESSAGES);
  });
});

interface FuzzStats {
  attacks: number;
  byKind: Record<string, number>;
}

/** Runs CONCURRENCY attackers until `ms` have passed. */
async function fuzz(port: number, ms: number): Promise<FuzzStats> {
  const stats: FuzzStats = { attacks: 0, byKind: {} };
  const deadline = Date.now() + ms;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, worker) => {
      const prng = new Prng(deriveSeed(SEED, 'attacker', worker));
      for (let n = 0; Date.now() < deadline; n++) {
        const kind = ATTACKS[prng.int(0, ATTACKS.length - 1)];
        stats.attacks++;
        stats.byKind[kind.name] = (stats.byKind[kind.name] ?? 0) + 1;
        await attack(port, kind.build(prng, `fuzz-${worker}-${n}`), prng);
      }
    }),
  );
  return stats;
}

/**
 * One connection: writes each chunk (some after a short pause), then goes: at once or after a moment (the edge
 * may not have read everything: a hasty client), or once the edge closed the connection or 300 ms passed (a
 * patient one, whose attack the edge has surely seen).
 */
function attack(port: number, chunks: Buffer[], prng: Prng): Promise<void> {
  const linger = prng.chance(0.5) ? 300 : prng.int(0, 80);
  const pauses = chunks.map(() => (prng.chance(0.2) ? prng.int(1, 30) : 0));
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    const done = () => {
      socket.destroy();
      resolve();
    };
    socket.on('error', done);
    socket.on('close', done);
    // Whatever the edge answers is read and dropped (a client that reads nothing is the slow-consumer test's).
    socket.on('data', () => undefined);
    socket.once('connect', async () => {
      for (let i = 0; i < chunks.length && !socket.destroyed; i++) {
        if (pauses[i]) await sleep(pauses[i]);
        socket.write(chunks[i]);
      }
      setTimeout(done, linger);
    });
  });
}

interface Attack {
  name: string;
  /** The bytes to send, in the chunks to write them in. */
  build(prng: Prng, clientId: string): Buffer[];
}

const hello = (clientId: string) => connectPacket({ host: '', port: 0, clientId, keepaliveSeconds: 30 });
const topicOf = (clientId: string) => `telemetry/${clientId}/fuzz`;

const ATTACKS: Attack[] = [
  { name: 'random-bytes', build: (prng) => [randomBytes(prng, prng.int(1, 4096))] },
  { name: 'random-after-connect', build: (prng, id) => [hello(id), randomBytes(prng, prng.int(1, 2048))] },
  {
    name: 'mutated-packets',
    build: (prng, id) => {
      const bytes = Buffer.concat([hello(id), ...Array.from({ length: prng.int(1, 8) }, () => validPacket(prng, id))]);
      const flips = prng.int(1, 8);
      for (let i = 0; i < flips; i++) bytes[prng.int(prng.chance(0.8) ? 14 : 0, bytes.length - 1)] = prng.int(0, 255);
      return [bytes];
    },
  },
  {
    name: 'truncated-frame',
    build: (prng, id) => {
      const p = validPacket(prng, id);
      return [hello(id), p.subarray(0, prng.int(1, p.length - 1))];
    },
  },
  {
    name: 'wrong-remaining-length',
    build: (prng, id) => {
      const p = validPacket(prng, id);
      const body = p.subarray(1 + remainingLengthBytes(p));
      const claimed = prng.chance(0.5) ? prng.int(0, Math.max(0, body.length - 1)) : body.length + prng.int(1, 5000);
      return [hello(id), Buffer.concat([Buffer.from([p[0]]), varInt(claimed), body]), validPacket(prng, id)];
    },
  },
  {
    name: 'huge-remaining-length',
    build: (prng, id) => {
      const header = Buffer.concat([Buffer.from([prng.chance(0.5) ? 0x32 : 0x82]), varInt(prng.int(LIMITS.maxPacketBytes + 1, 268_435_455))]);
      const start = Buffer.concat([header, randomBytes(prng, prng.int(0, 1000))]);
      return prng.chance(0.3) ? [Buffer.concat([Buffer.from([0x10]), varInt(prng.int(LIMITS.maxPacketBytes + 1, 268_435_455))])] : [hello(id), start];
    },
  },
  {
    // Without the packet-size guard the edge would buffer all of this, waiting for the rest of the packet.
    name: 'huge-packet-streamed',
    build: (prng, id) => {
      const header = Buffer.concat([Buffer.from([0x30]), varInt(256 * MiB - 1)]);
      const body = Buffer.alloc(64 * 1024, 0x62);
      return [hello(id), header, ...Array.from({ length: prng.int(16, 64) }, () => body)];
    },
  },
  {
    name: 'invalid-utf8-topic',
    build: (prng, id) => {
      const bad = [Buffer.from([0xc3, 0x28]), Buffer.from([0xff, 0xfe]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xc0, 0xaf]), Buffer.from([0x00]), Buffer.from([0xf4, 0x90, 0x80, 0x80])][prng.int(0, 5)];
      const topic = Buffer.concat([Buffer.from(`telemetry/${id}/`), bad, Buffer.from('x')]);
      return [hello(id), prng.chance(0.7) ? publishPacket({ topic, qos: 1, messageId: 1, payload: '{"v":1}' }) : subscribePacket(1, [{ topic, qos: 0 }])];
    },
  },
  {
    name: 'oversized-payload',
    build: (prng, id) => {
      const size = prng.chance(0.7) ? prng.int(LIMITS.maxPayloadBytes + 1, LIMITS.maxPacketBytes - 200) : prng.int(LIMITS.maxPacketBytes, 4 * LIMITS.maxPacketBytes);
      return [hello(id), publishPacket({ topic: topicOf(id), qos: prng.chance(0.5) ? 1 : 0, messageId: 9, payload: Buffer.alloc(size, 0x61) })];
    },
  },
  {
    name: 'publish-before-connect',
    build: (prng, id) => Array.from({ length: prng.int(1, 5) }, () => publishPacket({ topic: topicOf(id), qos: prng.chance(0.5) ? 1 : 0, messageId: 3, payload: '{"v":1}' })),
  },
  {
    name: 'invalid-cloudevent',
    build: (prng, id) => [hello(id), ...Array.from({ length: prng.int(1, 4) }, (_, i) => publishPacket({ topic: topicOf(id), qos: 1, messageId: i + 1, payload: invalidCloudEvent(prng, id) }))],
  },
  {
    name: 'deep-nesting',
    build: (prng, id) => {
      const depth = prng.int(1000, (LIMITS.maxPayloadBytes - 200) / 2);
      const nested = prng.chance(0.5) ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth / 3) + '1' + '}'.repeat(depth / 3);
      const payload = prng.chance(0.5) ? nested : `{"specversion":"1.0","id":"x","source":"/fuzz","type":"io.fuzz","datacontenttype":"application/json","data":${nested}}`;
      return [hello(id), publishPacket({ topic: topicOf(id), qos: 1, messageId: 1, payload })];
    },
  },
  {
    name: 'bad-connect',
    build: (prng, id) => {
      const variants = [
        () => packet(PacketType.connect, 0, Buffer.concat([stringField('MQTX'), Buffer.from([4, 2, 0, 30]), stringField(id)])),
        () => packet(PacketType.connect, 0, Buffer.concat([stringField('MQTT'), Buffer.from([99, 2, 0, 30]), stringField(id)])),
        () => packet(PacketType.connect, 0, Buffer.concat([stringField('MQTT'), Buffer.from([4, 3, 0, 30]), stringField(id)])),
        // Will flag with QoS 3, and a will topic with wildcards.
        () => packet(PacketType.connect, 0, Buffer.concat([stringField('MQTT'), Buffer.from([4, 0x1e, 0, 30]), stringField(id), stringField('a/#/+'), stringField('x')])),
        // Password without user name.
        () => packet(PacketType.connect, 0, Buffer.concat([stringField('MQTT'), Buffer.from([4, 0x42, 0, 30]), stringField(id), stringField('secret')])),
        () => hello('x'.repeat(prng.int(LIMITS.maxClientIdLength + 1, 5000))),
        () => hello(''),
        () => Buffer.concat([hello(id), hello(id)]),
        () => packet(PacketType.connect, 0, Buffer.concat([stringField('MQTT'), Buffer.from([4, 2])])),
      ];
      return [variants[prng.int(0, variants.length - 1)]()];
    },
  },
  {
    name: 'odd-subscriptions',
    build: (prng, id) => {
      const filters = ['#', '+/+/#', 'a/#/b', '', '$SYS/#', 'commands/+', `commands/${id}/${'l/'.repeat(prng.int(5, 60))}x`, 'z'.repeat(prng.int(100, 3000)), `commands/${id}`];
      const chosen = Array.from({ length: prng.int(1, 20) }, () => ({ topic: filters[prng.int(0, filters.length - 1)], qos: prng.int(0, 3) as 0 | 1 | 2 }));
      return [hello(id), subscribePacket(prng.int(0, 65535), chosen), PINGREQ];
    },
  },
  {
    name: 'stray-acks-and-qos2',
    build: (prng, id) => {
      const id16 = () => {
        const b = Buffer.alloc(2);
        b.writeUInt16BE(prng.int(0, 65535), 0);
        return b;
      };
      const out = [hello(id)];
      for (let i = 0; i < prng.int(1, 20); i++) {
        const pick = prng.int(0, 4);
        if (pick === 0) out.push(packet(PacketType.puback, 0, id16()));
        else if (pick === 1) out.push(packet(6, 2, id16())); // PUBREL
        else if (pick === 2) out.push(packet(5, 0, id16())); // PUBREC
        else if (pick === 3) out.push(packet(7, 0, id16())); // PUBCOMP
        else out.push(publishPacket({ topic: topicOf(id), qos: 2, messageId: prng.int(1, 65535), payload: '{"v":2}' }));
      }
      return [Buffer.concat(out)];
    },
  },
  {
    name: 'publish-flood',
    build: (prng, id) => [hello(id), Buffer.concat(Array.from({ length: prng.int(100, 600) }, (_, i) => publishPacket({ topic: topicOf(id), qos: 1, messageId: (i % 65535) + 1, payload: `{"i":${i}}` })))],
  },
  {
    name: 'slow-connect',
    build: (_prng, id) => [...hello(id).subarray(0, 6)].map((b) => Buffer.from([b])),
  },
];

/** A well-formed packet a device might send after CONNECT. */
function validPacket(prng: Prng, clientId: string): Buffer {
  switch (prng.int(0, 4)) {
    case 0:
      return publishPacket({ topic: topicOf(clientId), qos: prng.int(0, 2) as 0 | 1 | 2, messageId: prng.int(1, 65535), payload: JSON.stringify({ v: prng.int(0, 1000) }) });
    case 1:
      return subscribePacket(prng.int(1, 65535), [{ topic: `commands/${clientId}`, qos: 1 }]);
    case 2:
      return packet(10, 2, Buffer.concat([Buffer.from([0, 1]), stringField(`commands/${clientId}`)])); // UNSUBSCRIBE
    case 3:
      return PINGREQ;
    default:
      return publishPacket({ topic: topicOf(clientId), qos: 1, messageId: prng.int(1, 65535), payload: invalidCloudEvent(prng, clientId) });
  }
}

/** Structured-mode JSON that is not a valid CloudEvent (or barely is). Never names a good device. */
function invalidCloudEvent(prng: Prng, clientId: string): string {
  const base: Record<string, unknown> = { specversion: '1.0', id: `e-${prng.int(0, 1e9)}`, source: `/edges/${EDGE_ID}/devices/${clientId}`, type: 'io.fuzz.reading', data: { v: 1 } };
  const mutations: (() => void)[] = [
    () => delete base.id,
    () => delete base.source,
    () => delete base.type,
    () => (base.specversion = prng.chance(0.5) ? '0.3' : 2),
    () => (base.id = prng.chance(0.5) ? 5 : ''),
    () => (base.source = { nested: true }),
    () => (base.type = ['array']),
    () => (base.time = 'yesterday'),
    () => (base.datacontenttype = 'application/json'),
    () => (base.data_base64 = '!!!not base64!!!'),
    () => (base['Bad-Extension!'] = 'x'),
    () => (base.subject = null),
    () => (base.source = '/edges/another-edge/devices/x'),
    () => (base.dataschema = 'not a uri'),
    () => (base.expirytime = -1),
  ];
  for (let i = prng.int(1, 3); i > 0; i--) mutations[prng.int(0, mutations.length - 1)]();
  const json = JSON.stringify(base);
  return prng.chance(0.1) ? json.slice(0, prng.int(1, json.length - 1)) : json;
}

function randomBytes(prng: Prng, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = prng.int(0, 255);
  return out;
}

/** MQTT's variable-length integer (up to 4 bytes; larger values are cut to 4, which is itself malformed). */
function varInt(value: number): Buffer {
  const bytes: number[] = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    bytes.push(byte);
  } while (value > 0 && bytes.length < 4);
  return Buffer.from(bytes);
}

function remainingLengthBytes(p: Buffer): number {
  let n = 1;
  while (p[n] & 0x80) n++;
  return n;
}

function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

/** Prometheus text → `name{labels}` → value. */
function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

function byLabel(metrics: Map<string, number>, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const pattern = new RegExp(`^${name}\\{.*${label}="([^"]*)"`);
  for (const [series, value] of metrics) {
    const match = pattern.exec(series);
    if (match) out[match[1]] = (out[match[1]] ?? 0) + value;
  }
  return out;
}

function sum(values: Record<string, number>): number {
  return Object.values(values).reduce((a, b) => a + b, 0);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!(value > 0) || !Number.isFinite(value)) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

function fuzzSeed(): number {
  const raw = process.env.FUZZ_SEED;
  const seed = raw === undefined || raw === '' ? Math.floor(Math.random() * 2 ** 31) : Number(raw);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`FUZZ_SEED must be a non-negative whole number, got "${raw}"`);
  // Printed as well as put in the title, so that it shows in a CI log even when the reporter trims titles.
  console.log(`mqtt fuzz test: FUZZ_SEED=${seed}`);
  return seed;
}
