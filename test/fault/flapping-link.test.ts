import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portOf } from '../helpers/node-process.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';
import { waitFor } from '../helpers/wait.ts';
import type { Mesh } from '../e2e/mesh.ts';
import { cloudLastOffset, readCloudLog, startMesh, startSimulator } from '../e2e/mesh.ts';
import { expectExactlyOnce, readAcks, waitForDrain } from './exactly-once.ts';
import { faultSeed } from './fault-seed.ts';

const DEVICES = 10;
const MESSAGES = 300;
const RATE = 40; // per device: 400 publishes/s in all, 7.5 s of sending
const CUTS = 8;
const seed = faultSeed();

describe(`a flapping uplink: cut at random moments, packets delayed (${seed.label})`, () => {
  let mesh: Mesh;

  beforeAll(async () => {
    const delays = seed.prng('delay');
    const cuts = seed.prng('cuts');
    mesh = await startMesh('node', {
      edgeId: 'edge-flapping',
      edgeConfig: { statusIntervalMs: 100 },
      proxy: { delayMs: () => delays.uniform(0, 20), random: () => cuts.next() },
    });
  });

  afterAll(async () => {
    await mesh?.stop();
  });

  it('delivers every acknowledged publish to the cloud exactly once, in order per device', async () => {
    const proxy = mesh.proxy!;
    const ackFile = `${mesh.dir}/acks.txt`;
    const sim = startSimulator(mesh, { devices: DEVICES, messages: MESSAGES, rate: RATE, ackFile, seed: seed.seed, runtime: 'node' });
    await waitFor('events in the cloud', async () => ((await cloudLastOffset(mesh.httpUrl)) ?? 0) > 0, 20_000, 20);

    proxy.flap(100, 600);
    await waitFor(`${CUTS} cuts of a live connection`, () => proxy.stats.connectionsCut >= CUTS, 20_000, 20);
    proxy.steady();
    expect(sim.child.exitCode, 'the devices were still sending while the link flapped').toBeNull();

    expect(await sim.exited).toBe(0);
    const acked = readAcks(ackFile);
    expect(acked).toHaveLength(DEVICES * MESSAGES);
    await waitForDrain(mesh);
    console.log(`flapping-link: ${JSON.stringify(proxy.stats)}`);
    expectExactlyOnce(acked, await readCloudLog(mesh), DEVICES, MESSAGES);
    // Every cut broke the uplink, and the edge came back each time.
    const connects = mesh.edge.records.filter((r) => r.msg === 'uplink connected').length;
    expect(connects).toBeGreaterThan(CUTS);
  });
});

describe(`a flapping device link: devices cut off at random moments, PUBACKs lost (${seed.label})`, () => {
  let mesh: Mesh;
  let proxy: TcpProxy;

  beforeAll(async () => {
    mesh = await startMesh('node', { edgeId: 'edge-flapping-devices', edgeConfig: { statusIntervalMs: 100 } });
    const delays = seed.prng('device delay');
    const cuts = seed.prng('device cuts');
    proxy = await TcpProxy.start({ target: { port: portOf(mesh.edgeUrl) }, delayMs: () => delays.uniform(0, 10), random: () => cuts.next() });
  });

  afterAll(async () => {
    await proxy?.close();
    await mesh?.stop();
  });

  it('turns each publish into one event however often a device re-sends it', async () => {
    const ackFile = `${mesh.dir}/acks.txt`;
    const sim = startSimulator(mesh, { devices: DEVICES, messages: MESSAGES, rate: RATE, ackFile, seed: seed.seed, runtime: 'node', url: proxy.url, reconnectPeriodMs: 50 });
    await waitFor('events in the cloud', async () => ((await cloudLastOffset(mesh.httpUrl)) ?? 0) > 0, 20_000, 20);

    proxy.flap(150, 600);
    await waitFor(`${CUTS} cuts of the devices' connections`, () => proxy.stats.cuts >= CUTS, 20_000, 20);
    proxy.steady();
    expect(sim.child.exitCode, 'the devices were still sending while their link flapped').toBeNull();

    expect(await sim.exited).toBe(0);
    const acked = readAcks(ackFile);
    expect(acked).toHaveLength(DEVICES * MESSAGES);
    await waitForDrain(mesh);
    const stopped = await sim.waitForLog('stopped');
    console.log(`flapping device link: ${JSON.stringify(proxy.stats)}; devices re-sent ${String(stopped.resent)} publishes`);
    expectExactlyOnce(acked, await readCloudLog(mesh), DEVICES, MESSAGES);
    expect(Number(stopped.resent), 'cuts left publishes unacknowledged, re-sent with DUP=1').toBeGreaterThan(0);
  });
});
