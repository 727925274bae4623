import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.ts';
import type { Mesh } from '../e2e/mesh.ts';
import { cloudLastOffset, readCloudLog, startMesh, startSimulator } from '../e2e/mesh.ts';
import { countAcks, expectExactlyOnce, readAcks, waitForDrain } from './exactly-once.ts';
import { faultSeed } from './fault-seed.ts';

const DEVICES = 10;
const MESSAGES = 250;
const RATE = 30; // per device: 300 publishes/s in all, 8 s of sending
const seed = faultSeed();

describe(`an edge restarted while its uplink is partitioned (${seed.label})`, () => {
  let mesh: Mesh;

  beforeAll(async () => {
    mesh = await startMesh('node', { edgeId: 'edge-offline', edgeConfig: { statusIntervalMs: 100 }, proxy: true });
  });

  afterAll(async () => {
    await mesh?.stop();
  });

  /** Waits until the devices' acknowledged publishes grow by `n`: the edge accepts and buffers. */
  async function acksGrow(ackFile: string, n: number, what: string): Promise<void> {
    const from = countAcks(ackFile);
    await waitFor(`${n} more publishes acknowledged ${what}`, () => countAcks(ackFile) >= from + n, 20_000, 20);
  }

  it('starts, accepts devices and keeps buffering; once the link heals, everything arrives exactly once', async () => {
    const proxy = mesh.proxy!;
    const ackFile = `${mesh.dir}/acks.txt`;
    const sim = startSimulator(mesh, { devices: DEVICES, messages: MESSAGES, rate: RATE, ackFile, seed: seed.seed, runtime: 'node' });
    await waitFor('events in the cloud', async () => ((await cloudLastOffset(mesh.httpUrl)) ?? 0) > 0, 20_000, 20);

    // A black hole: the edge's uplink connects to nothing that answers (a dead route, not a refused port).
    proxy.partition();
    await acksGrow(ackFile, 100, 'while partitioned');

    // A clean restart while offline: the edge stops, and starts again with its buffer.
    expect(await mesh.killEdge('SIGTERM')).toBe(0);
    const first = await (await mesh.startEdge()).waitForLog('edge node started');
    expect(Number(first.buffered)).toBeGreaterThan(0);
    await acksGrow(ackFile, 100, 'after a clean restart while partitioned');
    const offset = await cloudLastOffset(mesh.httpUrl);

    // A crash and restart while offline.
    await mesh.killEdge('SIGKILL');
    const second = await (await mesh.startEdge()).waitForLog('edge node started');
    // Nothing can have left the buffer while partitioned, and more was acknowledged since the first restart.
    expect(Number(second.buffered)).toBeGreaterThan(Number(first.buffered));
    await acksGrow(ackFile, 100, 'after a crash and restart while partitioned');
    await waitFor('a status line that counts the new publishes', () => mesh.edge.records.some((r) => r.msg === 'status' && Number(r.buffered) > Number(second.buffered)), 5000, 20);
    expect(mesh.edge.records.filter((r) => r.msg === 'status').every((r) => r.link !== 'connected')).toBe(true);
    expect(await cloudLastOffset(mesh.httpUrl)).toBe(offset);
    expect(sim.child.exitCode, 'the devices were still sending while partitioned').toBeNull();

    proxy.heal();
    expect(await sim.exited).toBe(0);
    const acked = readAcks(ackFile);
    expect(acked).toHaveLength(DEVICES * MESSAGES);
    await waitForDrain(mesh);
    expectExactlyOnce(acked, await readCloudLog(mesh), DEVICES, MESSAGES);
  });
});

describe('an edge whose cloud has never run', () => {
  let mesh: Mesh;

  beforeAll(async () => {
    mesh = await startMesh('node', { edgeId: 'edge-no-cloud', edgeConfig: { statusIntervalMs: 100 }, cloud: false });
  });

  afterAll(async () => {
    await mesh?.stop();
  });

  it('starts, acknowledges every publish into its buffer, and forwards it all once the cloud comes up', async () => {
    const [devices, messages] = [5, 40];
    const ackFile = `${mesh.dir}/acks.txt`;
    const sim = startSimulator(mesh, { devices, messages, rate: 20, ackFile, seed: seed.seed, runtime: 'node' });
    expect(await sim.exited).toBe(0);
    await waitFor('a status line with every publish buffered', () => mesh.edge.records.some((r) => r.msg === 'status' && r.buffered === devices * messages), 5000, 20);
    expect(mesh.edge.records.some((r) => r.msg === 'uplink connected')).toBe(false);

    await mesh.startCloud();
    await waitForDrain(mesh);
    expectExactlyOnce(readAcks(ackFile), await readCloudLog(mesh), devices, messages);
    expect(await cloudLastOffset(mesh.httpUrl)).toBe(devices * messages);
  });
});
